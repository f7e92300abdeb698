#!/usr/bin/env python3
"""Sends login records to an SQS queue the way the original environment did: each body is json.dumps(record).

    send-messages.py --endpoint-url URL --queue-name NAME [--file FILE] [--repeat N]

Reads a JSON array of records (default Tests/Fixtures/fetch-sample-messages.json, the 100 messages of the original
queue). Creates the queue if needed. Uses botocore, an independent SQS client.
"""
import argparse
import json
import os
import sys

import botocore.session


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_file = os.path.join(here, "..", "Tests", "Fixtures", "fetch-sample-messages.json")
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--queue-name", default="login-queue")
    parser.add_argument("--file", default=default_file)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    with open(args.file, encoding="utf-8") as f:
        records = json.load(f)
    print(f"send-messages: {len(records)} records from {os.path.normpath(args.file)}", file=sys.stderr)

    session = botocore.session.get_session()
    client = session.create_client(
        "sqs", endpoint_url=args.endpoint_url, region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"))
    queue_url = client.create_queue(QueueName=args.queue_name)["QueueUrl"]
    sent = 0
    for _ in range(args.repeat):
        for start in range(0, len(records), 10):
            chunk = records[start:start + 10]
            entries = [{"Id": str(i), "MessageBody": json.dumps(record)} for i, record in enumerate(chunk)]
            result = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            if result.get("Failed"):
                print(f"send-messages: error: {len(result['Failed'])} messages were refused", file=sys.stderr)
                return 1
            sent += len(entries)
    print(f"send-messages: sent {sent} messages to {queue_url}", file=sys.stderr)
    print(queue_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

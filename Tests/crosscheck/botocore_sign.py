#!/usr/bin/env python3
"""Signs requests with botocore's SigV4Auth at a fixed time, for the Swift cross-check test.

stdin:  {"requests": [{"method", "url", "headers": [[name, value], ...], "body_base64", "access_key",
          "secret_key", "session_token" (or null), "region", "service", "amz_date": "YYYYMMDDTHHMMSSZ"}]}
stdout: {"results": [{"authorization", "canonical_request", "headers": [[name, value], ...]}]}
Exit status 3 with a message on stderr when botocore is not installed.
"""
import base64
import datetime
import json
import sys
from unittest import mock

try:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError as error:  # the Swift test turns this into a failure that says what to install
    sys.stderr.write(f"botocore is not installed ({error}); install awscli (pip install awscli) to get it\n")
    sys.exit(3)


def sign(item):
    fixed = datetime.datetime.strptime(item["amz_date"], "%Y%m%dT%H%M%SZ")
    request = AWSRequest(method=item["method"], url=item["url"], data=base64.b64decode(item["body_base64"]))
    for name, value in item["headers"]:
        request.headers[name] = value
    credentials = Credentials(item["access_key"], item["secret_key"], item.get("session_token"))
    signer = botocore.auth.SigV4Auth(credentials, item["service"], item["region"])
    captured = []
    original_canonical_request = signer.canonical_request

    def capture(req):
        captured.append(original_canonical_request(req))
        return captured[-1]

    signer.canonical_request = capture
    # botocore reads the clock through get_current_datetime (older versions: datetime.datetime.utcnow).
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=fixed, create=True):
        signer.add_auth(request)
    return {
        "authorization": request.headers["Authorization"],
        "canonical_request": captured[0],
        "headers": [[k, v] for k, v in request.headers.items()],
    }


def main():
    payload = json.load(sys.stdin)
    json.dump({"results": [sign(item) for item in payload["requests"]]}, sys.stdout)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""KMS on the test emulator (moto_server) through boto3, independent of piivault's own KMS client.

Usage: kms_tool.py COMMAND < REQUEST_JSON > ANSWER_JSON
  create-key  {"endpoint", "alias" (optional)}            -> {"key_id", "arn"}
  decrypt     {"endpoint", "file"}                        -> {"kind", "key_id", "kms_key", "plaintext_hex", "key_arn"}
              reads a KMS-wrapped piivault key file's key line (LABEL KMS-KEY KEY-ID BASE64) and decrypts the blob
              with the encryption context SECURITY.md documents: {"piivault:key": "token"|"vault",
              "piivault:key-id": KEY-ID}
Credentials: fixed test keys; region us-east-1 (the tests' AWS_REGION).
"""
import base64
import json
import sys

import boto3

LABELS = {"PIIVAULT-TOKEN-KEY-KMS-1": "token", "PIIVAULT-VAULT-SECRET-KEY-KMS-1": "vault"}


def client(request):
    return boto3.client("kms", endpoint_url=request["endpoint"], region_name="us-east-1",
                        aws_access_key_id="AKIDKMSTOOL", aws_secret_access_key="kms-tool-secret")


def create_key(request):
    kms = client(request)
    key = kms.create_key(Description="piivault test key")["KeyMetadata"]
    if request.get("alias"):
        kms.create_alias(AliasName=request["alias"], TargetKeyId=key["KeyId"])
    return {"key_id": key["KeyId"], "arn": key["Arn"]}


def decrypt(request):
    with open(request["file"]) as handle:
        lines = [line.strip() for line in handle if line.strip() and not line.strip().startswith("#")]
    assert len(lines) == 1, "one key line"
    label, kms_key, key_id, blob = lines[0].split()
    kind = LABELS[label]
    answer = client(request).decrypt(CiphertextBlob=base64.b64decode(blob), KeyId=kms_key,
                                     EncryptionContext={"piivault:key": kind, "piivault:key-id": key_id})
    return {"kind": kind, "key_id": key_id, "kms_key": kms_key, "plaintext_hex": answer["Plaintext"].hex(),
            "key_arn": answer["KeyId"]}


COMMANDS = {"create-key": create_key, "decrypt": decrypt}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.stderr.write(__doc__)
        sys.exit(2)
    json.dump(COMMANDS[sys.argv[1]](json.load(sys.stdin)), sys.stdout)

#!/usr/bin/env python3
"""Independent implementations of piivault's key ids, tokens, canonical IPs and sealed format, for XCTest.

Usage: crosscheck.py COMMAND < request.json > answer.json
  tokens     {"master": hex, "version": n, "values": [{"field": "ip"|"device_id", "canonical": str}]}
             -> {"key_id": hex, "tokens": [str], "vault_key_ids": {hex: hex}}
  canonical  {"values": [str]} -> {"ip": [str or null]}   (Python's ipaddress module)
  open       {"vault_sk": hex, "sealed_key": hex, "values": [{"ad": str, "sealed": hex}]} -> {"plain": [hex]}
  seal       {"vault_pk": hex, "values": [{"ad": str, "plain": hex}]} -> {"sealed_key": hex, "sealed": [hex]}
  xml        {"documents": [base64]} -> {"trees": [[[local name, text]] or null]}   (expat, through ElementTree)
  receive    {"documents": [base64]} -> {"answers": [[[MessageId, ReceiptHandle, Body]] or null]}   (botocore's QueryParser)

Only the standard library for tokens (hashlib's BLAKE2b with salt and personal reproduces crypto_kdf_derive_from_key)
and XML; PyNaCl for sealing. Never run on real keys or values.
"""
import base64
import hashlib
import hmac
import ipaddress
import json
import struct
import sys
import xml.etree.ElementTree as ElementTree


def kdf(master: bytes, subkey_id: int, ctx: bytes) -> bytes:
    # crypto_kdf_derive_from_key: BLAKE2b(key=master, salt=LE64(id) || 0^8, personal=ctx || 0^8), 32 bytes.
    assert len(ctx) == 8 and len(master) == 32
    return hashlib.blake2b(digest_size=32, key=master, salt=struct.pack('<Q', subkey_id) + b'\0' * 8,
                           person=ctx + b'\0' * 8).digest()


def key_id(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def tokens(req):
    master = bytes.fromhex(req["master"])
    n = req.get("version", 1)
    sub = {"ip": (b"PIIV-IP_", "ip"), "device_id": (b"PIIV-DEV", "dev")}
    out = []
    for item in req["values"]:
        ctx, prefix = sub[item["field"]]
        mac = hmac.new(kdf(master, n, ctx), item["canonical"].encode("utf-8"), hashlib.sha256).hexdigest()
        out.append(f"{prefix}.v{n}.{mac}")
    ids = {pk: key_id(bytes.fromhex(pk)) for pk in req.get("public_keys", [])}
    return {"key_id": key_id(master), "tokens": out, "vault_key_ids": ids}


def canonical(req):
    result = []
    for value in req["values"]:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            result.append(None)
            continue
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if addr.version == 6 and addr.scope_id:
            result.append(None)
            continue
        result.append(addr.compressed)
    return {"ip": result}


def need_nacl():
    try:
        import nacl.bindings  # noqa: F401
        import nacl.public  # noqa: F401
    except ImportError:
        sys.stderr.write("PyNaCl is missing: pip install pynacl (the Makefile installs it)\n")
        sys.exit(3)


def open_values(req):
    need_nacl()
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt
    from nacl.public import PrivateKey, SealedBox
    data_key = SealedBox(PrivateKey(bytes.fromhex(req["vault_sk"]))).decrypt(bytes.fromhex(req["sealed_key"]))
    plain = []
    for item in req["values"]:
        sealed = bytes.fromhex(item["sealed"])
        nonce, ciphertext = sealed[:24], sealed[24:]
        plain.append(crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, item["ad"].encode("utf-8"), nonce, data_key).hex())
    return {"plain": plain}


def seal_values(req):
    need_nacl()
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt
    from nacl.public import PublicKey, SealedBox
    from nacl.utils import random
    data_key = random(32)
    sealed_key = SealedBox(PublicKey(bytes.fromhex(req["vault_pk"]))).encrypt(data_key)
    sealed = []
    for item in req["values"]:
        nonce = random(24)
        sealed.append((nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(
            bytes.fromhex(item["plain"]), item["ad"].encode("utf-8"), nonce, data_key)).hex())
    return {"sealed_key": sealed_key.hex(), "sealed": sealed}


def xml_trees(req):
    """Each document's elements in document order as [name without namespace, text before its first child (what
    botocore reads for a field)], or None when expat refuses the document."""
    trees = []
    for document in req["documents"]:
        try:
            root = ElementTree.fromstring(base64.b64decode(document))
        except ElementTree.ParseError:
            trees.append(None)
            continue
        trees.append([[element.tag.rsplit("}", 1)[-1], element.text or ""] for element in root.iter()])
    return {"trees": trees}


def receive_answers(req):
    """Each ReceiveMessage answer (query protocol, XML) read by botocore's own QueryParser, as
    [[MessageId, ReceiptHandle, Body], ...], or None when botocore cannot read it. The output shape is the query
    protocol's (flattened list of Message, flattened map of Attribute), as botocore's SQS model had it before SQS
    moved to JSON."""
    from botocore import model, parsers
    shapes = {
        "ReceiveMessageResult": {"type": "structure", "resultWrapper": "ReceiveMessageResult",
                                 "members": {"Messages": {"shape": "MessageList", "locationName": "Message"}}},
        "MessageList": {"type": "list", "member": {"shape": "Message", "locationName": "Message"}, "flattened": True},
        "Message": {"type": "structure", "members": {
            "MessageId": {"shape": "String"}, "ReceiptHandle": {"shape": "String"}, "Body": {"shape": "String"}}},
        "String": {"type": "string"},
    }
    shape = model.ShapeResolver(shapes).get_shape_by_name("ReceiveMessageResult")
    answers = []
    for document in req["documents"]:
        try:
            parsed = parsers.QueryParser().parse(
                {"body": base64.b64decode(document), "headers": {}, "status_code": 200}, shape)
        except Exception:  # botocore raises its own parse errors; any of them means "cannot read"
            answers.append(None)
            continue
        answers.append([[m.get("MessageId", ""), m.get("ReceiptHandle", ""), m.get("Body", "")]
                        for m in parsed.get("Messages", [])])
    return {"answers": answers}


COMMANDS = {"xml": xml_trees, "receive": receive_answers, "tokens": tokens, "canonical": canonical, "open": open_values, "seal": seal_values,
            "check-nacl": lambda req: (need_nacl(), {"ok": True})[1]}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.stderr.write(__doc__)
        sys.exit(64)
    json.dump(COMMANDS[sys.argv[1]](json.load(sys.stdin)), sys.stdout)

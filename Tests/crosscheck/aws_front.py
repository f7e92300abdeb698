#!/usr/bin/env python3
"""A local stand-in for the AWS endpoints piivault talks to, on an ephemeral loopback port.

Usage: aws_front.py SETTINGS_JSON
Settings (all optional):
  "upstream": "http://127.0.0.1:PORT"   forward SQS requests (POST) there (moto_server) and return its answers
  "deny": "InvalidClientTokenId"        answer every SQS request with this AWS error code (HTTP 403, XML); a JSON
                                        protocol request (X-Amz-Target: TrentService.*, KMS) gets HTTP 400 and
                                        {"__type": CODE, "message": ...}, as KMS answers
  "verify_sigv4": {AKID: SECRET, ...}   strict: recompute every POST's SigV4 signature with botocore's SigV4Auth
                                        (the signed headers, X-Amz-Date, body and scope the request names) and
                                        answer 403 InvalidSignatureException to a mismatch, an unknown access key or a
                                        date more than 5 minutes off; each POST's log entry gets "signature_ok"
  "oversize_first_receive": N           pad the first ReceiveMessage answer from upstream with N bytes of XML comments
  "container": {"token": T, "lifetime": S}  GET any other path: container credentials (JSON) that expire S seconds
                                        after issue; with "token", the Authorization header must equal it (else 401)
  "imds": {"role": R, "lifetime": S}    IMDSv2: PUT /latest/api/token, then GET /latest/meta-data/iam/security-
                                        credentials/[R] with X-aws-ec2-metadata-token (a GET without it gets 401)
  "tls": {"cert": PATH, "key": PATH}    serve HTTPS with this certificate chain and key (PEM); a client that
                                        refuses the certificate is logged as kind "tls_refused" with the alert
  "log": PATH                           append one JSON line per request: kind, action or path, the access key id
                                        that signed it, whether a token was presented; for STS AssumeRole* calls
                                        (kind "sts") their parameters and the access key id STS issued
Issued credentials are numbered: access key ids KEYPREFIX1, KEYPREFIX2, ... ("key_prefix", default ASIATESTFRONT).
The first stdout line is the port; the server runs until stdin closes.
"""
import datetime
import json
import re
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

settings = json.loads(sys.argv[1])
lock = threading.Lock()
state = {"issued": 0, "receives": 0, "imds_tokens": set()}


def log(entry):
    path = settings.get("log")
    if not path:
        return
    with lock:
        with open(path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def issue(lifetime):
    with lock:
        state["issued"] += 1
        number = state["issued"]
    expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime)
    prefix = settings.get("key_prefix", "ASIATESTFRONT")
    return {
        "AccessKeyId": f"{prefix}{number}",
        "SecretAccessKey": f"front-secret-{number}-never-printed",
        "Token": f"front-session-token-{number}-never-printed",
        "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Code": "Success",
        "Type": "AWS-HMAC",
        "LastUpdated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def verify_signature(handler, body):
    """Whether the request's SigV4 signature is the one botocore computes for it with the known secret."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})", handler.headers.get("Authorization", ""))
    if not match:
        return False
    key, day, region, service, signed, signature = match.groups()
    secret = settings["verify_sigv4"].get(key)
    amz_date = handler.headers.get("X-Amz-Date", "")
    if secret is None or not amz_date.startswith(day):
        return False
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return False
    if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > 300:
        return False
    names = signed.split(";")
    if "host" not in names or any(handler.headers.get(name) is None for name in names):
        return False
    request = AWSRequest(method=handler.command, url=f"http://{handler.headers['Host']}{handler.path}", data=body)
    for name in names:
        request.headers[name] = handler.headers[name]
    request.context["timestamp"] = amz_date
    signer = botocore.auth.SigV4Auth(Credentials(key, secret, handler.headers.get("X-Amz-Security-Token")), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return expected == signature


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        match = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
        key = match.group(1) if match else None
        target = self.headers.get("X-Amz-Target", "")
        action_match = re.search(rb"(?:^|&)Action=([A-Za-z]+)", body)
        action = target.split(".")[-1] if target else (action_match.group(1).decode() if action_match else "?")
        if action.startswith("AssumeRole"):
            params = dict(urllib.parse.parse_qsl(body.decode("utf-8")))
            params.pop("Action", None)
            params.pop("Version", None)
            sts_entry = {"kind": "sts", "action": action, "key": key, "params": params}
        else:
            sts_entry = None
        kind = "kms" if target.startswith("TrentService.") else "sqs"
        signature_ok = verify_signature(self, body) if settings.get("verify_sigv4") is not None else None
        if sts_entry is None:
            entry = {"kind": kind, "action": action, "key": key}
            if signature_ok is not None:
                entry["signature_ok"] = signature_ok
            if kind == "kms":
                entry["target"] = target
                entry["content_type"] = self.headers.get("Content-Type")
                try:
                    entry["encryption_context"] = json.loads(body).get("EncryptionContext")
                except ValueError:
                    entry["encryption_context"] = None
            log(entry)
        if signature_ok is False:
            if kind == "kms":
                self.answer(400, json.dumps({"__type": "InvalidSignatureException", "message": "signature mismatch"}),
                            "application/x-amz-json-1.1")
            else:
                self.answer(403, "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>signature mismatch</Message></Error></ErrorResponse>", "text/xml")
            return
        if settings.get("deny") and kind == "kms":
            self.answer(400, json.dumps({"__type": settings["deny"], "message": "User: arn:aws:iam::123456789012:user/test is not authorized to perform: kms:Decrypt"}),
                        "application/x-amz-json-1.1")
            return
        if settings.get("deny"):
            code = settings["deny"]
            self.answer(403, f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>The security token included in the request is invalid.</Message></Error><RequestId>1</RequestId></ErrorResponse>", "text/xml")
            return
        request = urllib.request.Request(settings["upstream"] + self.path, data=body, method="POST")
        for name, value in self.headers.items():
            if name.lower() not in ("host", "content-length", "connection"):
                request.add_header(name, value)
        try:
            with urllib.request.urlopen(request) as response:
                status, data, content_type = response.status, response.read(), response.headers.get("Content-Type", "text/xml")
        except urllib.error.HTTPError as error:
            status, data, content_type = error.code, error.read(), error.headers.get("Content-Type", "text/xml")
        if sts_entry is not None:
            issued = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", data)
            sts_entry["status"] = status
            sts_entry["issued_key"] = issued.group(1).decode() if issued else None
            # The secrets STS handed out, so that a test can check that no output shows them.
            for field, tag in (("issued_secret", rb"SecretAccessKey"), ("issued_token", rb"SessionToken")):
                found = re.search(rb"<" + tag + rb">([^<]+)</" + tag + rb">", data)
                sts_entry[field] = found.group(1).decode() if found else None
            log(sts_entry)
        if action == "ReceiveMessage" and settings.get("oversize_first_receive"):
            with lock:
                state["receives"] += 1
                first = state["receives"] == 1
            if first:
                # Comments of 1 MiB each: one huge comment would trip the XML parser's own node-size limit.
                size = settings["oversize_first_receive"]
                chunk = 1024 * 1024
                pad = b"".join(b"<!--" + b"x" * min(chunk, size - offset) + b"-->" for offset in range(0, size, chunk))
                data = data.replace(b"</ReceiveMessageResponse>", pad + b"</ReceiveMessageResponse>")
                log({"kind": "oversized", "bytes": len(data)})
        self.answer(status, data, content_type)

    def do_PUT(self):
        imds = settings.get("imds")
        if imds is not None and self.path == "/latest/api/token":
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            log({"kind": "imds", "method": "PUT", "path": self.path, "ttl": ttl})
            if not ttl:
                self.answer(400, "missing ttl", "text/plain")
                return
            token = f"imds-session-{len(state['imds_tokens']) + 1}"
            with lock:
                state["imds_tokens"].add(token)
            self.answer(200, token, "text/plain", [("X-aws-ec2-metadata-token-ttl-seconds", ttl)])
            return
        self.answer(404, "not found", "text/plain")

    def do_GET(self):
        imds = settings.get("imds")
        if imds is not None and self.path.startswith("/latest/"):
            token = self.headers.get("X-aws-ec2-metadata-token")
            valid = token in state["imds_tokens"]
            log({"kind": "imds", "method": "GET", "path": self.path, "token_ok": valid})
            if not valid:
                self.answer(401, "", "text/plain")
                return
            base = "/latest/meta-data/iam/security-credentials/"
            if self.path == base:
                self.answer(200, imds["role"], "text/plain")
            elif self.path == base + imds["role"]:
                self.answer(200, json.dumps(issue(imds.get("lifetime", 3600))))
            else:
                self.answer(404, "not found", "text/plain")
            return
        container = settings.get("container")
        if container is not None:
            authorization = self.headers.get("Authorization")
            expected = container.get("token")
            log({"kind": "container", "path": self.path, "token_ok": expected is None or authorization == expected})
            if expected is not None and authorization != expected:
                self.answer(401, json.dumps({"message": "unauthorized"}))
                return
            self.answer(200, json.dumps(issue(container.get("lifetime", 3600))))
            return
        self.answer(404, "not found", "text/plain")

    def log_message(self, fmt, *args):
        pass


class TLSServer(ThreadingHTTPServer):
    """Handshakes in each connection's own thread, so that one refused handshake does not hold up the others."""

    def __init__(self, address, handler, context):
        super().__init__(address, handler)
        self.context = context

    def get_request(self):
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def finish_request(self, request, client_address):
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as error:
            log({"kind": "tls_refused", "error": str(error)})
            return
        super().finish_request(request, client_address)


if settings.get("tls"):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(settings["tls"]["cert"], settings["tls"]["key"])
    server = TLSServer(("127.0.0.1", 0), Handler, context)
else:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()  # returns when the test closes our stdin or exits
server.shutdown()

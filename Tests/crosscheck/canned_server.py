#!/usr/bin/env python3
"""A tiny HTTP server on an ephemeral loopback port that answers with canned responses, in order.

Usage: canned_server.py RESPONSES_JSON
RESPONSES_JSON is a list of {"status": int, "body": str, "headers": {name: value}}; after the last one the last
response repeats. The server prints its port on the first line of stdout, then serves until stdin closes (so it
never outlives the test that started it). Each request is logged to stderr.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

responses = json.loads(sys.argv[1])
lock = threading.Lock()
served = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with lock:
            index = min(served[0], len(responses) - 1)
            served[0] += 1
        response = responses[index]
        body = response.get("body", "").encode("utf-8")
        self.send_response(response["status"])
        for name, value in response.get("headers", {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("canned_server: " + (fmt % args) + "\n")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()  # returns when the test closes our stdin or exits
server.shutdown()

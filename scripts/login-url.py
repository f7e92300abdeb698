#!/usr/bin/env python3
"""Prints a PostgreSQL URL with another login: login-url.py URL USER PASSWORD (used by the demo and benchmarks)."""
import sys
import urllib.parse

url, user, password = sys.argv[1:]
parts = urllib.parse.urlsplit(url)
host = parts.netloc.rsplit("@", 1)[-1]
credentials = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
print(urllib.parse.urlunsplit((parts.scheme, f"{credentials}@{host}", parts.path, parts.query, "")))

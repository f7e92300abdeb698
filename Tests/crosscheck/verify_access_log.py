#!/usr/bin/env python3
"""Recompute piivault's access-log hash chain independently of piivault (SECURITY.md, "The access log").

Reads the log either from a database with psql (--database-url URL; psql from PIIVAULT_PG_BINDIR or PATH) or as a
JSON array of rows on standard input: objects with seq, at, db_user, os_user, client_host, action, reason, subject,
row_count, outcome, prev_hash, hash (the hashes as hex, optionally with a leading "\\x"; `at` as Postgres prints a
timestamptz in UTC, e.g. "2024-05-01 12:00:00.5+00", or as "2024-05-01T12:00:00.500000Z").

    hash(n) = SHA-256(hash(n-1) || bytes(entry n)),  hash(0) = 32 zero bytes
    bytes(entry) = for each field in order seq, at, db_user, os_user, client_host, action, reason, subject,
                   row_count, outcome: 4-byte big-endian length of the field's UTF-8 bytes, then those bytes;
                   seq and row_count in decimal, at as UTC YYYY-MM-DDTHH:MM:SS.ffffffZ (always 6 digits).

Prints "intact N HEADSEQ:HEADHASH" and exits 0, or "broken N KIND" (the first bad entry) and exits 1.
Standard library only, so that an auditor can run it anywhere Python 3 runs.
"""
import csv
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys

FIELDS = ["seq", "at", "db_user", "os_user", "client_host", "action", "reason", "subject", "row_count", "outcome"]
TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(?:Z|\+00(?::?00)?)$")


def canonical_time(text):
    match = TIME.match(text)
    if not match:
        raise ValueError("timestamp not in UTC: %r" % text)
    date, clock, fraction = match.groups()
    return "%sT%s.%sZ" % (date, clock, (fraction or "").ljust(6, "0"))


def entry_bytes(row):
    out = bytearray()
    for name in FIELDS:
        value = row[name]
        if name == "at":
            value = canonical_time(value)
        data = str(value).encode("utf-8")
        out += struct.pack(">I", len(data)) + data
    return bytes(out)


def unhex(text):
    return bytes.fromhex(text[2:] if text.startswith("\\x") else text)


def rows_from_psql(url):
    bindir = os.environ.get("PIIVAULT_PG_BINDIR", "")
    psql = os.path.join(bindir, "psql") if bindir else "psql"
    sql = ("SET TimeZone = 'UTC'; COPY (SELECT seq, at, db_user, os_user, client_host, action, reason, subject, "
           "row_count, outcome, prev_hash, hash FROM audit.access_log ORDER BY seq) TO STDOUT WITH (FORMAT csv, HEADER)")
    text = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                          check=True, capture_output=True, text=True, encoding="utf-8").stdout
    return list(csv.DictReader(io.StringIO(text)))


def verify(rows, anchor=None):
    rows = sorted(rows, key=lambda r: int(r["seq"]))
    stored = {int(r["seq"]): unhex(r["hash"]) for r in rows}
    seq_of_hash = {h: s for s, h in stored.items()}
    previous = bytes(32)
    expected = 1
    for row in rows:
        seq = int(row["seq"])
        if seq != expected:
            return "broken %d missing" % expected
        prev_hash = unhex(row["prev_hash"])
        if prev_hash != previous:
            linked = seq_of_hash.get(prev_hash)
            kind = "reordered" if linked is not None and linked != seq - 1 else "modified"
            return "broken %d %s" % (seq, kind)
        try:
            recomputed = hashlib.sha256(prev_hash + entry_bytes(row)).digest()
        except ValueError:  # a time the log never holds (BC, infinite): changed after it was appended
            return "broken %d modified" % seq
        if recomputed != stored[seq]:
            return "broken %d modified" % seq
        previous = recomputed
        expected = seq + 1
    head = expected - 1
    if anchor is not None:
        anchor_seq, anchor_hash = anchor.split(":")
        anchor_seq = int(anchor_seq)
        if anchor_seq > head:
            return "broken %d rewritten" % (head + 1)
        if anchor_seq > 0 and stored[anchor_seq] != bytes.fromhex(anchor_hash):
            return "broken %d rewritten" % anchor_seq
    return "intact %d %d:%s" % (len(rows), head, previous.hex())


def main(argv):
    anchor = None
    url = None
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag == "--anchor":
            anchor = args.pop(0)
        elif flag == "--database-url":
            url = args.pop(0)
        else:
            print("usage: verify_access_log.py [--database-url URL] [--anchor SEQ:HASH] < rows.json", file=sys.stderr)
            return 64
    rows = rows_from_psql(url) if url else json.load(sys.stdin)
    verdict = verify(rows, anchor)
    print(verdict)
    return 0 if verdict.startswith("intact") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

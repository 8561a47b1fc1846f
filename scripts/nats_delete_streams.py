#!/usr/bin/env python3
"""Deletes the JetStream streams whose names start with PREFIX, so a demo rerun starts clean.

Speaks the NATS client protocol (https://docs.nats.io/reference/reference-protocols/nats-protocol)
over a plain socket and JetStream's JSON API ($JS.API.STREAM.NAMES, $JS.API.STREAM.DELETE.<name>),
with only Python's standard library. Usage:
    nats_delete_streams.py HOST:PORT PREFIX
"""
import json
import socket
import sys

INBOX = "_INBOX.demo_reset"


def main(addr, prefix):
    host, port = addr.rsplit(":", 1)
    try:
        sock = socket.create_connection((host, int(port)), timeout=5)
    except OSError as err:
        sys.exit(f"nats_delete_streams: cannot reach NATS at {addr}: {err}")
    reader = sock.makefile("rb")
    reader.readline()  # INFO {...}
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
    sock.sendall(f"SUB {INBOX} 1\r\n".encode())

    def request(subject, payload=b""):
        sock.sendall(f"PUB {subject} {INBOX} {len(payload)}\r\n".encode() + payload + b"\r\n")
        sock.sendall(b"PING\r\n")
        while True:
            line = reader.readline().decode().strip()
            if line.startswith("MSG "):
                size = int(line.split()[-1])
                body = reader.read(size + 2)[:size]
                return json.loads(body)
            if line.startswith("-ERR"):
                sys.exit(f"nats: {line}")

    names = []
    while True:  # the API answers a page of names at a time (total, offset, limit)
        page = request("$JS.API.STREAM.NAMES", json.dumps({"offset": len(names)}).encode())
        if "error" in page:
            sys.exit(f"nats_delete_streams: {page['error']}")
        got = page.get("streams") or []
        names += got
        if not got or len(names) >= page.get("total", 0):
            break
    for name in names:
        if name.startswith(prefix):
            answer = request(f"$JS.API.STREAM.DELETE.{name}")
            print(f"  deleted stream {name}" if answer.get("success") else f"  {name}: {answer}")
    sock.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])

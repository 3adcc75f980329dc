#!/usr/bin/env python3
"""A NATS publisher over a raw socket with a small send buffer, and a
subscriber on another connection, for tests/brokers.rs.

    nats_raw.py MODE SUBJECT N SIZE

MODE is `blocking` (one sendall of all N publishes: the kernel takes them
in pieces, each send's count decides the next) or `nonblocking` (send()
on a non-blocking socket, polling for room on EAGAIN, advancing by each
count send returns). Message i's body is SIZE bytes: `i:` and filler.
The subscriber checks every body arrives exactly as published, in order,
and prints one line per message: `i <traceparent or ->`. Exits non-zero
on any mismatch, an -ERR or a closed connection."""
import select
import socket
import sys

mode, subject, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def connect():
    s = socket.create_connection(("127.0.0.1", 4222))
    f = s.makefile("rb")
    info = f.readline()
    assert info.startswith(b"INFO "), info
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n')
    return s, f


def body(i):
    head = f"{i}:".encode()
    return head + bytes([97 + (i + j) % 26 for j in range(size - len(head))])


sub, subf = connect()
sub.sendall(f"SUB {subject} 1\r\nPING\r\n".encode())
assert subf.readline() == b"PONG\r\n"

pub, pubf = connect()
pub.sendall(b"PING\r\n")
assert pubf.readline() == b"PONG\r\n"
pub.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

data = b"".join(
    f"PUB {subject} {size}\r\n".encode() + body(i) + b"\r\n" for i in range(n)
) + b"PING\r\n"

if mode == "blocking":
    pub.sendall(data)
else:
    pub.setblocking(False)
    view = memoryview(data)
    calls = 0
    while view:
        try:
            sent = pub.send(view)
        except BlockingIOError:
            select.select([], [pub], [], 10)
            continue
        assert 0 < sent <= len(view), sent
        view = view[sent:]
        calls += 1
    pub.setblocking(True)
    print(f"calls {calls}", flush=True)

i = 0
while i < n:
    line = subf.readline()
    parts = line.split()
    if parts == [b"PING"]:
        # The server measures round trips.
        sub.sendall(b"PONG\r\n")
        continue
    if not parts or parts[0] not in (b"MSG", b"HMSG"):
        print(f"bad line {line!r}", file=sys.stderr)
        sys.exit(2)
    tp = "-"
    if parts[0] == b"HMSG":
        hsize, total = int(parts[-2]), int(parts[-1])
        block = subf.read(hsize)
        for h in block.split(b"\r\n")[1:]:
            if h.lower().startswith(b"traceparent:"):
                tp = h.split(b":", 1)[1].strip().decode()
        got = subf.read(total - hsize)
    else:
        got = subf.read(int(parts[-1]))
    subf.read(2)
    if got != body(i):
        print(f"message {i}: got {got[:40]!r}", file=sys.stderr)
        sys.exit(3)
    print(f"{i} {tp}", flush=True)
    i += 1

# The publisher's connection is still in step: its PING is answered.
pub.setblocking(True)
while (line := pubf.readline()) == b"PING\r\n":
    pub.sendall(b"PONG\r\n")
assert line == b"PONG\r\n", line
pub.close()
sub.close()

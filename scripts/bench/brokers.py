#!/usr/bin/env python3
"""Added cost per published and per consumed broker message (NATS, MQTT 5).

    python3 scripts/bench/brokers.py [--protocol nats|mqtt] [--run target/release/lumigo-run] [-n N] [--rounds R]

A publisher writes N messages of 100 bytes to the local NATS server
(127.0.0.1:4222) or MQTT broker (127.0.0.1:1883, MQTT 5, QoS 0), one
`sendall` per message, over a raw socket (so the client library's own cost
does not drown ours); a subscriber on its own connection reads them. Each
is run untraced, under lumigo-run with `OTEL_PROPAGATORS=none` (messages
parsed, spans made, nothing injected) and under lumigo-run as shipped (a
`traceparent` injected into every message: NATS `PUB` rewritten to `HPUB`,
an MQTT 5 user property added). The number is the process's own CPU
time (user + system, from `getrusage` of the child) per message; rounds
alternate the variants and the table gives medians. Spans go nowhere (no
destination configured): the export is not in these numbers.

Must run untraced itself; every child gets an environment without
LD_PRELOAD, LUMIGO_* and OTEL_* unless a variant sets them."""
import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r'''
import socket, sys, time
role, subject, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", 4222))
f = s.makefile("rb")
f.readline()
s.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nPING\r\n')
assert f.readline() == b"PONG\r\n"
if role == "sub":
    s.sendall(f"SUB {subject} 1\r\nPING\r\n".encode())
    assert f.readline() == b"PONG\r\n"
    print("ready", flush=True)
    got = 0
    while got < n:
        line = f.readline().split()
        if line[0] == b"PING":
            s.sendall(b"PONG\r\n")
            continue
        assert line[0] in (b"MSG", b"HMSG"), line
        f.read(int(line[-1]) + 2)
        got += 1
else:
    body = b"x" * 100
    msg = f"PUB {subject} {len(body)}\r\n".encode() + body + b"\r\n"
    for _ in range(n):
        s.sendall(msg)
    s.sendall(b"PING\r\n")
    while (line := f.readline()) == b"PING\r\n":
        s.sendall(b"PONG\r\n")
    assert line == b"PONG\r\n", line
'''

MQTT_CHILD = r'''
import os, socket, sys
role, topic, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])

def varint(v):
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)

def packet(kind, body):
    return bytes([kind]) + varint(len(body)) + body

def s16(b):
    return len(b).to_bytes(2, "big") + b

s = socket.create_connection(("127.0.0.1", 1883))
f = s.makefile("rb")

def read():
    kind = f.read(1)[0]
    mult, length = 1, 0
    while True:
        b = f.read(1)[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if b < 0x80:
            break
    return kind, f.read(length)

cid = ("bench-%s-%d" % (role, os.getpid())).encode()
s.sendall(packet(0x10, s16(b"MQTT") + bytes([5, 0x02, 0, 60, 0]) + s16(cid)))
assert read()[0] == 0x20
if role == "sub":
    s.sendall(packet(0x82, b"\x00\x01" + b"\x00" + s16(topic) + b"\x00"))
    assert read()[0] == 0x90
    print("ready", flush=True)
    got = 0
    while got < n:
        kind, _ = read()
        if kind & 0xF0 == 0x30:
            got += 1
else:
    msg = packet(0x30, s16(topic) + b"\x00" + b"x" * 100)
    for _ in range(n):
        s.sendall(msg)
    s.sendall(b"\xc0\x00")
    assert read()[0] == 0xD0
    s.sendall(b"\xe0\x00")
'''


def clean_env():
    return {
        k: v
        for k, v in os.environ.items()
        if k != "LD_PRELOAD" and not k.startswith(("LUMIGO_", "OTEL_"))
    }


def cpu_of(cmd, env, stdin=None):
    """Runs cmd to completion; its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def one_round(variant, run_bin, n, tag, child=CHILD):
    env = clean_env()
    prefix = []
    if variant != "untraced":
        prefix = [run_bin, "--"]
        if variant == "no-injection":
            env["OTEL_PROPAGATORS"] = "none"
    subject = f"bench.{os.getpid()}.{tag}"
    # The subscriber, traced the same way: its CPU per message received.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sub = subprocess.Popen(
        prefix + [sys.executable, "-c", child, "sub", subject, str(n)],
        env=env,
        stdout=subprocess.PIPE,
    )
    assert sub.stdout.readline().strip() == b"ready"
    pub_cpu = cpu_of(prefix + [sys.executable, "-c", child, "pub", subject, str(n)], env)
    sub.wait(timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return pub_cpu, total - pub_cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="target/release/lumigo-run")
    ap.add_argument("-n", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--protocol", choices=["nats", "mqtt"], default="nats")
    args = ap.parse_args()
    child = MQTT_CHILD if args.protocol == "mqtt" else CHILD
    variants = ["untraced", "no-injection", "injection"]
    # Start-up cost, measured with 0 messages, is taken off.
    base = {v: [] for v in variants}
    got = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            base[v].append(one_round(v, args.run, 0, f"z{r}{v}", child))
            got[v].append(one_round(v, args.run, args.n, f"r{r}{v}", child))
    name = "MQTT 5, QoS 0" if args.protocol == "mqtt" else "NATS"
    print(f"{name}, {args.n} messages of 100 bytes, {args.rounds} rounds, medians")
    print()
    print("| variant | publisher CPU per message | subscriber CPU per message |")
    print("| --- | --- | --- |")
    for v in variants:
        pub = statistics.median(p - b[0] for (p, _), b in zip(got[v], base[v]))
        sub = statistics.median(s - b[1] for (_, s), b in zip(got[v], base[v]))
        print(f"| {v} | {pub / args.n * 1e6:.2f} µs | {sub / args.n * 1e6:.2f} µs |")


if __name__ == "__main__":
    main()

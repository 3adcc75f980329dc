#!/usr/bin/env python3
"""Added cost per published and per consumed broker message (NATS).

    python3 scripts/bench/brokers.py [--run target/release/lumigo-run] [-n N] [--rounds R]

A publisher writes N messages of 100 bytes to the local NATS server
(127.0.0.1:4222), one `sendall` per message, over a raw socket (so the
client library's own cost does not drown ours); a subscriber on its own
connection reads them. Each is run untraced, under lumigo-run with
`OTEL_PROPAGATORS=none` (messages parsed, spans made, nothing injected)
and under lumigo-run as shipped (a `traceparent` injected into every
message: `PUB` rewritten to `HPUB`). The number is the process's own CPU
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


def one_round(variant, run_bin, n, tag):
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
        prefix + [sys.executable, "-c", CHILD, "sub", subject, str(n)],
        env=env,
        stdout=subprocess.PIPE,
    )
    assert sub.stdout.readline().strip() == b"ready"
    pub_cpu = cpu_of(prefix + [sys.executable, "-c", CHILD, "pub", subject, str(n)], env)
    sub.wait(timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return pub_cpu, total - pub_cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="target/release/lumigo-run")
    ap.add_argument("-n", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    variants = ["untraced", "no-injection", "injection"]
    # Start-up cost, measured with 0 messages, is taken off.
    base = {v: [] for v in variants}
    got = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            base[v].append(one_round(v, args.run, 0, f"z{r}{v}"))
            got[v].append(one_round(v, args.run, args.n, f"r{r}{v}"))
    print(f"NATS, {args.n} messages of 100 bytes, {args.rounds} rounds, medians")
    print()
    print("| variant | publisher CPU per message | subscriber CPU per message |")
    print("| --- | --- | --- |")
    for v in variants:
        pub = statistics.median(p - b[0] for (p, _), b in zip(got[v], base[v]))
        sub = statistics.median(s - b[1] for (_, s), b in zip(got[v], base[v]))
        print(f"| {v} | {pub / args.n * 1e6:.2f} µs | {sub / args.n * 1e6:.2f} µs |")


if __name__ == "__main__":
    main()

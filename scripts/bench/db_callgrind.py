#!/usr/bin/env python3
"""Instruction counts of database queries under tracing (callgrind).

    python3 scripts/bench/db_callgrind.py LIB [LIB ...] [--db pg|mysql|redis] [--queries N]

A database's own command-line client runs N simple queries (one round
trip and one span each) on one TCP connection to the local server:
psql `SELECT 1;`, mariadb `SELECT 1;`, redis-cli `PING` (or, with
--value-bytes, a SET of a value that long); untraced and
with each LD_PRELOAD library given (exporting over OTLP to
scripts/bench/otlp_sink.py). Each variant runs twice, with 20 and with
20+N queries, so that start-up, connection and exit cancel: what is
left, over N, is the cost per query. Printed per variant: the client's
thread (the app's) and the library's other threads. The instruction
counts of one variant vary little between runs; run it twice to see how
little.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import Sink, clean_env  # noqa: E402

BASE = 20
VALUE_BYTES = 0


def threads(d):
    """Instructions per thread of the one process counted in `d`."""
    out = {}
    for name in os.listdir(d):
        m = re.fullmatch(r"cg\.(\d+)(?:-(\d+))?", name)
        if not m:
            continue
        with open(os.path.join(d, name)) as f:
            s = re.search(r"^summary: (\d+)", f.read(), re.M)
        # With --separate-threads, one file per thread (-01 the main one)
        # and an empty one without a number.
        if s:
            out[int(m.group(2) or 1)] = int(s.group(1))
    return out


def psql():
    """The psql binary itself (Debian's `psql` is a Perl wrapper that execs it)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    return found[-1] if found else "psql"


def client(db, queries, d):
    """The command line and its standard input for `queries` queries."""
    sql = os.path.join(d, "q.sql")
    with open(sql, "w") as f:
        f.write("SELECT 1;\n" * queries)
    if db == "pg":
        return [psql(), "host=127.0.0.1 user=postgres dbname=postgres sslmode=disable",
                "-qtA", "-o", "/dev/null", "-f", sql], None
    if db == "mysql":
        return ["mariadb", "-h", "127.0.0.1", "-u", "root", "--skip-ssl", "--batch",
                "test"], sql
    if VALUE_BYTES:
        return ["redis-cli", "-h", "127.0.0.1", "-r", str(queries), "SET", "lumigo:bench",
                "v" * VALUE_BYTES], None
    return ["redis-cli", "-h", "127.0.0.1", "-r", str(queries), "PING"], None


def count(env, db, queries, work, tag):
    d = tempfile.mkdtemp(prefix="cg-%s-%d-" % (tag, queries), dir=work)
    argv, stdin = client(db, queries, d)
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
           "--callgrind-out-file=%s/cg.%%p" % d] + argv
    with open(stdin or os.devnull, "rb") as i:
        subprocess.run(cmd, env=env, stdin=i, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
    return threads(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--db", choices=["pg", "mysql", "redis"], default="pg")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--value-bytes", type=int, default=0,
                    help="redis: SET a value of this many bytes instead of PING")
    a = ap.parse_args()
    global VALUE_BYTES
    VALUE_BYTES = a.value_bytes
    work = tempfile.mkdtemp(prefix="db-cg-")
    sink = Sink(work)
    n = a.queries
    variants = [("untraced", clean_env())] + [
        (lib, clean_env(LD_PRELOAD=os.path.abspath(lib), OTEL_EXPORTER_OTLP_ENDPOINT=sink.url,
                        OTEL_SERVICE_NAME="bench-" + a.db, OTEL_BSP_SCHEDULE_DELAY="200"))
        for lib in a.libs]
    app0 = None
    for tag, env in variants:
        small = count(env, a.db, BASE, work, "u" if tag == "untraced" else "t")
        big = count(env, a.db, BASE + n, work, "u" if tag == "untraced" else "t")
        app = (big.get(1, 0) - small.get(1, 0)) / n
        other = (sum(v for k, v in big.items() if k != 1) - sum(v for k, v in small.items() if k != 1)) / n
        if app0 is None:
            app0 = app
            print("%-40s client thread %8.0f per query" % (tag, app))
        else:
            print("%-40s client thread %8.0f per query (+%.0f); other threads %8.0f per query"
                  % (tag, app, app - app0, other))
    time.sleep(0.5)
    print("spans received by the sink: %d" % sink.spans())


if __name__ == "__main__":
    main()

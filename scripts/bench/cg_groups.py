#!/usr/bin/env python3
"""What tracing adds to one thread, grouped: the exclusive instructions of
each function in a traced callgrind dump minus those in an untraced one,
per request, in the groups BENCHMARKS.md uses.

usage: cg_groups.py UNTRACED_DUMP TRACED_DUMP [REQUESTS]

The dumps are the app thread's `cg.<pid>.1-01` files kept by
`run.py --only callgrind --keep` (REQUESTS: 300 for --smoke, 2000 otherwise).
"""
import collections
import re
import subprocess
import sys

GROUPS = [
    ("propagation", r"server_span|root_span|ids::next|activate_server|set_active|clear_active|context::|hint::started|Tracer::"),
    ("framing", r"scan_fresh|scan_remembered|__memcmp|LineReader|next_state|Framing::|Body::|memchr|Framer|frame::|Connection::step"),
    ("recording", r"Capture::push|Recorder|encode_identity|memcpy|framed_step|ring::"),
    ("hooks and the connection", r"out_of_line|feed_iov|feed_buf|on_data|Connection::feed|on_outbound|on_inbound|tls_get_addr|OnFd|Timespec|SystemTime|Stamp::now|clock_gettime|errno|^recv$|^writev$|^close$|^pread$|^open$|Once<|FilterMap|fdtable|traced|guard"),
    ("glibc in a process with threads", r"asynccancel|malloc|_int_free|^free$|unlink_chunk|systrim|epoll_wait|pthread_self|memset"),
]
# The app's own frames and callgrind's roll-ups, left out.
SKIP = r"below main|^0x0000|__libc_start_main|^main$|ngx_"


def exclusive(path):
    out = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--inclusive=no", "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    counts = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)$", line)
        if not m or "PROGRAM TOTALS" in m.group(2):
            continue
        name = m.group(2).split(":", 1)[-1]
        counts[re.sub(r" \[.*\]$", "", name)] += int(m.group(1).replace(",", ""))
    return counts


def main():
    untraced, traced = exclusive(sys.argv[1]), exclusive(sys.argv[2])
    n = float(sys.argv[3]) if len(sys.argv) > 3 else 300.0
    totals, rows = collections.Counter(), collections.defaultdict(list)
    for fn in set(untraced) | set(traced):
        d = (traced[fn] - untraced[fn]) / n
        if abs(d) < 0.5 or re.search(SKIP, fn):
            continue
        group = next((g for g, pat in GROUPS if re.search(pat, fn)), "other")
        totals[group] += d
        rows[group].append((d, fn))
    print("added per request: %.0f" % sum(totals.values()))
    for group, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        print("%8.0f  %s" % (total, group))
        for d, fn in sorted(rows[group], reverse=True)[:8]:
            print("      %7.0f  %s" % (d, fn[:110]))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The exclusive instructions of each function in one thread's callgrind
dump, per request: for the library's capture and export threads, whose
dumps `callgrind_annotate` cannot read alone.

usage: cg_thread.py DUMP [REQUESTS] [TOP]

DUMP is a thread's file of a `--separate-threads=yes` dump kept by
`run.py --only callgrind --keep` (`cg.<pid>.1-02`, `-03`: the capture and
the export thread). Callgrind writes a name once per dump, in the first
thread's file that uses it, and only its number in the others; so
`callgrind_annotate` shows a later thread's file as one `clone` line.
This reads the names from the dump's earlier files (`-01`, …) too.
REQUESTS: 300 for --smoke, 2000 otherwise; TOP: rows shown (40).
"""
import collections
import os
import re
import sys

NAME = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def names_of(path, names):
    with open(path, errors="replace") as f:
        for line in f:
            m = NAME.match(line.rstrip("\n"))
            if m and m.group(3):
                names.setdefault(m.group(2), m.group(3))


def exclusive(path, names):
    """Each function's own cost: cost lines under `fn=`, except the line
    after `calls=`, which is the callee's inclusive cost."""
    counts = collections.Counter()
    fn, after_call = None, False
    # One position (line) or, with `--dump-instr=yes`, two (instr line):
    # the cost follows them.
    at = 1
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("positions:"):
                at = len(line.split()) - 1
                continue
            m = NAME.match(line)
            if m:
                if m.group(1) == "fn":
                    fn = names.get(m.group(2), m.group(2))
                continue
            if line.startswith("calls="):
                after_call = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) <= at:
                    continue
                if after_call:
                    after_call = False
                elif fn is not None:
                    counts[fn] += int(parts[at])
    return counts


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    n = float(sys.argv[2]) if len(sys.argv) > 2 else 300.0
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    m = re.match(r"^(.*)-(\d+)$", path)
    names = {}
    if m:
        for i in range(1, int(m.group(2))):
            earlier = "%s-%02d" % (m.group(1), i)
            if os.path.exists(earlier):
                names_of(earlier, names)
    names_of(path, names)
    counts = exclusive(path, names)
    print("%s: %.0f instructions per request" % (os.path.basename(path), sum(counts.values()) / n))
    for fn, v in counts.most_common(top):
        print("%9.1f  %s" % (v / n, fn[:150]))


if __name__ == "__main__":
    main()

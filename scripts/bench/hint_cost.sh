#!/usr/bin/env bash
# Cost of one runtime hint (issue 16; README, "Event-loop servers"): what
# the Node.js and Python hint scripts spend per downstream request to tell
# the library its parent: one 16-byte write to the private fd, taken by the
# library without a system call. Compared with one real 16-byte write to
# /dev/null (a system call), in the same traced process.
#
#   bash scripts/bench/hint_cost.sh [path/to/lumigo-run]   (default: target/release)
set -euo pipefail
cd "$(dirname "$0")/../.."
L=${1:-target/release/lumigo-run}
N=${N:-500000}
[ -x "$L" ] || cargo build --release -q -p lumigo-run -p lumigo-preload -p lumigo-transport
export LUMIGO_DEBUG_SPANDUMP=${TMPDIR:-/tmp}/lumigo-hint-cost.$$.jsonl

"$L" -- node -e "
const fs = require('fs');
const msg = Buffer.alloc(16); msg.write('\0LUMIGO\x01', 0, 'latin1');
msg.writeInt32LE(100, 8); msg.writeInt32LE(101, 12);
const nul = fs.openSync('/dev/null', 'w');
function time(fd) {
  for (let i = 0; i < 20000; i++) fs.writeSync(fd, msg);
  const t = process.hrtime.bigint();
  for (let i = 0; i < $N; i++) fs.writeSync(fd, msg);
  return Number(process.hrtime.bigint() - t) / $N;
}
const h = time(2147483647), d = time(nul);
console.log('node:   hint ' + h.toFixed(0) + ' ns/call; write to /dev/null ' + d.toFixed(0) + ' ns/call');
"

"$L" -- python3 -c "
import os, struct, time
msg = b'\0LUMIGO\x01' + struct.pack('<ii', 100, 101)
nul = os.open('/dev/null', os.O_WRONLY)
def t(fd):
    for _ in range(20000): os.write(fd, msg)
    s = time.perf_counter_ns()
    for _ in range($N): os.write(fd, msg)
    return (time.perf_counter_ns() - s) / $N
h, d = t(2147483647), t(nul)
print('python: hint %.0f ns/call; write to /dev/null %.0f ns/call' % (h, d))
"

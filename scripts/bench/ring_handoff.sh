#!/usr/bin/env bash
# The app thread's cost of a record push while the capture thread drains
# on another core (examples/ring_handoff.rs), for the working tree against
# a base revision: the example (as it is in the working tree) is built
# against both, then run alternately, PAIRS pairs; medians printed.
#
# usage: scripts/bench/ring_handoff.sh BASE_REV [PAIRS] [EXCHANGES APP_NS DECODE_NS DOZE_MS]
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:?usage: ring_handoff.sh BASE_REV [PAIRS] [EXCHANGES APP_NS DECODE_NS]}
pairs=${2:-9}
shift $(($# < 2 ? $# : 2))
args=("$@")
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach -q "$work/base" "$base"
mkdir -p "$work/base/examples"
cp examples/ring_handoff.rs "$work/base/examples/"
for side in base new; do
  src=$([ "$side" = base ] && echo "$work/base" || pwd)
  (cd "$src" && CARGO_TARGET_DIR="$work/target-$side" cargo build -q --release --example ring_handoff)
  cp "$work/target-$side/release/examples/ring_handoff" "$work/bin-$side"
done
for _ in $(seq "$pairs"); do
  for side in base new; do
    echo "$side $("$work/bin-$side" "${args[@]}")"
  done
done | tee "$work/runs"
python3 - "$work/runs" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    if "=" not in line:
        continue
    side, *fields = line.split()
    kv = dict(f.split("=") for f in fields)
    runs.setdefault(side, []).append(kv)
for side in ("base", "new"):
    r = runs[side]
    ns = statistics.median(float(k["ns_per_push"]) for k in r)
    spilled = statistics.median(int(k["spilled"]) for k in r)
    print(f"{side}: median {ns:.1f} ns per push (of {len(r)} runs), median spilled {spilled:.0f}")
EOF

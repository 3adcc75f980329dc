#!/usr/bin/env bash
# Regenerates preload/startup-symbols.txt, the order in which the linker
# places the library's first functions (preload/build.rs passes it to LLD as
# --symbol-ordering-file). First the functions a traced process runs at
# start-up and while idle (`sleep`, an idle Python), then those a first
# traced HTTP exchange adds (curl against a local server, its span exported
# to a local OTLP sink). Packed together they make a few 64 KiB windows of
# the library's code resident instead of most of it (BENCHMARKS.md, row 6).
#
#   bash scripts/startup-order.sh           # needs valgrind, curl, python3
#   bash scripts/startup-order.sh --check   # fails when the list is stale
#
# --check (run by CI) grinds an idle traced `sleep` with the packaged build
# and fails when more than 8 of the library functions it runs are not in
# the list: a change to start-up code renames functions (a new closure, a
# new hash), and unlisted ones are scattered over the library, each
# making another 64 KiB of it resident in every traced process.
#
# Names come from the packaged library's symbol table (mangled) and do not
# depend on where the checkout is: the crates that run at start-up are built
# as one code unit (Cargo.toml), so rustc's local ThinLTO gives none of their
# functions a `.llvm.HASH` name, whose hash would differ in another checkout.
# A name a build does not have is skipped by the linker, so a stale list
# costs resident memory, never a build. Run it again after large changes to
# the start-up path or a new compiler; `package.sh --check` fails when fewer
# than nine tenths of the names are present.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

CHECK=false
[ "${1:-}" = "--check" ] && CHECK=true
for tool in valgrind curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "startup-order: needs $tool" >&2; exit 1; }
done
$CHECK && [ ! -x target/dist/lumigo-run/bin/lumigo-run ] &&
  { echo "startup-order: no package to check (bash scripts/package.sh first)" >&2; exit 1; }
$CHECK || bash scripts/package.sh >/dev/null
RUN=$PWD/target/dist/lumigo-run/bin/lumigo-run
PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/www" && echo hello >"$work/www/index.html"
python3 -m http.server 0 --bind 127.0.0.1 --directory "$work/www" >"$work/server.log" 2>&1 &
pids+=($!)
python3 scripts/bench/otlp_sink.py --port-file "$work/sink.port" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ -s "$work/sink.port" ] && grep -q "port" "$work/server.log" && break
  sleep 0.05
done
port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/server.log" | head -1)

# As users run it: through the launcher, with a destination configured.
grind() { # OUT-PREFIX COMMAND...
  local out=$1; shift
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$(cat "$work/sink.port")" \
    valgrind --tool=callgrind --demangle=no --trace-children=yes \
    --callgrind-out-file="$work/$out.%p" "$RUN" "$@" >/dev/null 2>&1
}

grind idle /bin/sleep 0.1
if ! $CHECK; then
  grind idle "$PY" -c 'import time; time.sleep(0.1)'
  grind exchange curl -s -o /dev/null "http://127.0.0.1:$port/"
fi

python3 - "$work" "$CHECK" >"$work/list" <<'EOF'
import glob, re, sys

def executed(paths):
    """Functions of the preload library with a cost in these dumps, in the
    order callgrind first wrote them."""
    out = []
    for path in paths:
        names, objs, cur = {}, {}, None
        for line in open(path, errors="replace"):
            line = line.rstrip("\n")
            m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line)
            if m:
                kind, i, name = m.groups()
                if name:
                    objs[i] = name
                if kind == "ob":
                    cur = objs.get(i)
                continue
            m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line)
            if m:
                kind, i, name = m.groups()
                if name:
                    names[i] = name
                fn = names.get(i)
                if kind == "fn" and cur and "liblumigo_preload" in cur and fn \
                        and not fn.startswith("0x") and fn not in out:
                    out.append(fn)
    return out

work = sys.argv[1]
idle = executed(sorted(glob.glob(work + "/idle.*")))
if sys.argv[2] == "true":
    listed = set(open("preload/startup-symbols.txt").read().split())
    missing = [f for f in idle if f not in listed and not f.startswith("0x")]
    print("startup-order: %d of the %d functions an idle traced sleep runs are not in "
          "preload/startup-symbols.txt" % (len(missing), len(idle)), file=sys.stderr)
    for f in missing[:20]:
        print("  " + f, file=sys.stderr)
    if len(missing) > 8:
        sys.exit("startup-order: the list is stale: run bash scripts/startup-order.sh "
                 "(and touch it, for preload/build.rs to link with it)")
    sys.exit(0)
more = [f for f in executed(sorted(glob.glob(work + "/exchange.*"))) if f not in idle]
if len(idle) < 20 or not more:
    sys.exit("startup-order: too few functions seen (%d idle, %d more)" % (len(idle), len(more)))
names = idle + more
# A `.llvm.HASH` name would not be found in a build made in another
# checkout: its crate should be one code unit (Cargo.toml).
hashed = [n for n in names if ".llvm." in n]
if hashed:
    sys.stderr.write("startup-order: left out %d path-hashed names, e.g. %s; give their crate "
                     "codegen-units = 1 in Cargo.toml\n" % (len(hashed), hashed[0]))
print("\n".join(n for n in names if ".llvm." not in n))
EOF
$CHECK && exit 0
cp "$work/list" preload/startup-symbols.txt
echo "preload/startup-symbols.txt: $(wc -l <preload/startup-symbols.txt) functions"

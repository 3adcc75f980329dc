#!/usr/bin/env bash
# Builds the installable layout of lumigo-run:
#
#   target/dist/lumigo-run/bin/lumigo-run                      (static launcher)
#   target/dist/lumigo-run/lib/lumigo/liblumigo_preload.so     (the preload library)
#   target/dist/lumigo-run/lib/lumigo/liblumigo_transport.so   (OTLP's HTTP client and TLS,
#                                                               loaded when first exporting)
#   target/dist/lumigo-run/lib/lumigo/node/lumigo-hint.js      (runtime hints for event-loop
#   target/dist/lumigo-run/lib/lumigo/python/sitecustomize.py   servers: Node.js, asyncio)
#   target/dist/lumigo-run/lib/lumigo/python/_lumigo_asyncio.py
#
# Copy the tree anywhere (e.g. `COPY target/dist/lumigo-run /opt/lumigo-run` in a
# Dockerfile): the launcher finds the library at ../lib/lumigo beside itself,
# and the library finds the transport library beside itself.
#
# The launcher is linked statically (glibc) and not position-independent: it
# runs once per traced command, a static executable skips the dynamic loader
# and a non-PIE one its own relocation, which on the project's machine saves
# about 0.2 ms on every start (BENCHMARKS.md, row 4). Its address is then not
# randomized, which matters little for a program that only sets variables
# and execs. The library cannot be static: it is loaded into dynamically
# linked programs. Both copies in the package lose their debug sections (the ones
# under target/ keep them, for profiling).
#
#   bash scripts/package.sh           # build the tree
#   bash scripts/package.sh --check   # build it, then trace a real curl with it
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

CHECK=false
[ "${1:-}" = "--check" ] && CHECK=true

HOST=$(rustc -vV | sed -n 's/^host: //p')
DIST=target/dist/lumigo-run
STATIC_TARGET=target/static

cargo build --release --quiet -p lumigo-preload -p lumigo-transport
# With an explicit --target, RUSTFLAGS reach only the target's crates, not
# build scripts or proc-macros (clap's derive), which must stay dynamic.
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" CARGO_TARGET_DIR="$STATIC_TARGET" \
  cargo build --release --quiet -p lumigo-run --target "$HOST"

rm -rf "$DIST"
mkdir -p "$DIST/bin" "$DIST/lib/lumigo"
cp "$STATIC_TARGET/$HOST/release/lumigo-run" "$DIST/bin/lumigo-run"
cp target/release/liblumigo_preload.so target/release/liblumigo_transport.so "$DIST/lib/lumigo/"
# The runtime hint scripts (event-loop parents; README, "Event-loop servers").
mkdir -p "$DIST/lib/lumigo/node" "$DIST/lib/lumigo/python"
cp preload/runtimes/node/lumigo-hint.js "$DIST/lib/lumigo/node/"
cp preload/runtimes/python/sitecustomize.py preload/runtimes/python/_lumigo_asyncio.py "$DIST/lib/lumigo/python/"
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$DIST/bin/lumigo-run" "$DIST/lib/lumigo/liblumigo_preload.so" \
    "$DIST/lib/lumigo/liblumigo_transport.so"
fi
echo "packaged: $DIST ($(du -sh "$DIST" | cut -f1))"

$CHECK || exit 0

# ---- check: the packaged launcher is static and traces a real program ----------
fail() { echo "package check failed: $*" >&2; exit 1; }
if command -v file >/dev/null 2>&1; then
  file "$DIST/bin/lumigo-run" | grep -q "static" || fail "the launcher is not statically linked"
fi
"$DIST/bin/lumigo-run" --version >/dev/null || fail "lumigo-run --version"
# The library carries its own unwinder (preload/build.rs): no libgcc_s to load.
if command -v readelf >/dev/null 2>&1; then
  ! readelf -d "$DIST/lib/lumigo/liblumigo_preload.so" | grep -q "libgcc_s" ||
    fail "the preload library needs libgcc_s.so.1"
fi
# The functions an idle traced process runs come first in the library's code
# (preload/build.rs, scripts/startup-order.sh), where the linker is LLD.
LIBSO="$DIST/lib/lumigo/liblumigo_preload.so"
if command -v nm >/dev/null 2>&1 && readelf -p .comment "$LIBSO" 2>/dev/null | grep -q "LLD"; then
  python3 - "$LIBSO" preload/startup-symbols.txt <<'PY' || fail "the start-up functions are not placed first (scripts/startup-order.sh regenerates the list)"
import subprocess, sys
lib, listed = sys.argv[1], set(open(sys.argv[2]).read().split())
syms = []
for line in subprocess.run(["nm", "--defined-only", lib], capture_output=True, text=True).stdout.splitlines():
    parts = line.split(None, 2)
    if len(parts) == 3 and parts[1] in "tT" and parts[2] not in ("_init", "_fini"):
        syms.append((int(parts[0], 16), parts[2]))
syms.sort()
first = [n for _, n in syms[:20]]
present = len({n for _, n in syms} & listed)
print("start-up order: %d of the library's first 20 functions are listed; %d of %d listed names present"
      % (sum(n in listed for n in first), present, len(listed)))
# Names carry no path (Cargo.toml: one code unit for the crates that run at
# start-up), so a build anywhere has nearly all of them.
assert sum(n in listed for n in first) >= 15 and present * 10 >= len(listed) * 9
PY
fi
# No LUMIGO_PRELOAD_PATH: the library must be found through ../lib/lumigo.
unset LUMIGO_PRELOAD_PATH LD_PRELOAD
seen=$("$DIST/bin/lumigo-run" -- /bin/sh -c 'echo "$LD_PRELOAD"')
[ "$seen" = "$(cd "$DIST/lib/lumigo" && pwd)/liblumigo_preload.so" ] ||
  fail "LD_PRELOAD is '$seen', not the packaged library"

WORK=$(mktemp -d -t lumigo-package-XXXXXX)
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$WORK" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=""
for _ in $(seq 100); do
  PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$WORK/server.log" | head -n 1)
  [ -n "$PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] || fail "the test server did not start"
echo hello >"$WORK/hello.txt"
"$DIST/bin/lumigo-run" --spandump "$WORK/spans.jsonl" -- \
  curl -s -o /dev/null "http://127.0.0.1:$PORT/hello.txt" || fail "traced curl failed"
python3 - "$WORK/spans.jsonl" "$PORT" <<'PY' || fail "no client span for the request"
import json, sys
spans = [json.loads(line) for line in open(sys.argv[1])]
ok = [s for s in spans
      if s["kind"] == "SpanKind.CLIENT"
      and s["attributes"].get("url.full") == "http://127.0.0.1:%s/hello.txt" % sys.argv[2]
      and s["attributes"].get("http.response.status_code") == 200]
assert len(ok) == 1, spans
PY
echo "package check passed: the packaged lumigo-run traced curl (1 client span)"

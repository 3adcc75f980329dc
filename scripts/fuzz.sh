#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a few seconds.
#
#   bash scripts/fuzz.sh                  # every target, 5 s each
#   bash scripts/fuzz.sh --seconds 60     # every target, 60 s each
#   bash scripts/fuzz.sh --seconds 60 redis http_head
#   bash scripts/fuzz.sh --build-only     # build them, run nothing
#   bash scripts/fuzz.sh --skip capture_differential   # all but one
#
# Seeds come from the captured byte streams under tests/fixtures/ (turned
# into the targets' script format, see fuzz/src/lib.rs) and a few heads and
# values written below; they and what the fuzzer finds go to
# fuzz/corpus/TARGET/ (ignored by git). A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes this script fail; replay it with
#   cd fuzz && cargo +nightly fuzz run -a TARGET artifacts/TARGET/crash-…
#
# libFuzzer needs instrumentation flags that only a nightly rustc takes.
# With a nightly toolchain installed it is used; without one, the stable
# toolchain is told to accept them (RUSTC_BOOTSTRAP=1), which works for
# these flags; if even that cannot build the targets, the script says so
# and exits 0 without fuzzing (FUZZ_REQUIRED=1 makes that a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SECONDS_EACH=5
BUILD_ONLY=false
TARGETS=()
SKIP=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    --seconds=*) SECONDS_EACH="${1#*=}"; shift ;;
    --skip) SKIP+=("$2"); shift 2 ;;
    --build-only) BUILD_ONLY=true; shift ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done

say() { echo "[fuzz] $*" >&2; }
skip() {
  if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then
    say "FAILED: $*"
    exit 1
  fi
  say "SKIPPED: $* (no fuzzing done; FUZZ_REQUIRED=1 makes this fatal)"
  exit 0
}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  say "installing cargo-fuzz (cargo install --locked cargo-fuzz)"
  cargo install --locked --quiet cargo-fuzz || skip "cargo-fuzz could not be installed"
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
else
  say "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi

cd fuzz
if [ "${#TARGETS[@]}" -eq 0 ]; then
  mapfile -t TARGETS < <("${FUZZ[@]}" list)
fi
for s in "${SKIP[@]+"${SKIP[@]}"}"; do
  mapfile -t TARGETS < <(printf '%s\n' "${TARGETS[@]}" | grep -vx "$s")
done

# -a: debug assertions and overflow checks, so an arithmetic slip in a
# parser is found here and not as a wrong number in production.
say "building the fuzz targets"
start=$(date +%s)
mkdir -p target
if ! "${FUZZ[@]}" build -a >target/fuzz-build.log 2>&1; then
  tail -30 target/fuzz-build.log >&2
  if grep -qE 'error: the option `Z`|only accepted on the nightly|unstable' target/fuzz-build.log; then
    skip "this toolchain cannot build libFuzzer targets"
  fi
  say "FAILED: building the fuzz targets (fuzz/target/fuzz-build.log)"
  exit 1
fi
say "built in $(($(date +%s) - start)) s"
$BUILD_ONLY && exit 0

# ---- seeds -------------------------------------------------------------------
python3 - "${TARGETS[@]}" <<'PY'
import glob, os, struct, sys

def record(outbound, data, opaque=False):
    h = (1 if outbound else 0) | (2 if opaque and outbound else 0)
    return bytes([h]) + struct.pack("<H", len(data)) + data

def script(records, server=False, close=0, piece=16):
    return bytes([(1 if server else 0) | (close << 1), piece]) + b"".join(records)

def fixture(path):
    """Connections of a fixture file: lists of (outbound, bytes)."""
    conns, cur = [], None
    for line in open(path):
        line = line.rstrip("\n")
        if line == "=":
            cur = []
            conns.append(cur)
        elif line[:1] in "<>":
            if cur is None:
                cur = []
                conns.append(cur)
            cur.append((line[0] == ">", bytes.fromhex(line.split()[-1])))
    return conns

seeds = {}
def add(target, data):
    seeds.setdefault(target, []).append(data)
    # The data path's targets start from the HTTP conversations too.
    if target == "http_connection":
        seeds.setdefault("capture_differential", []).append(data)
    if target in ("postgres", "mysql", "redis"):
        seeds.setdefault("db_differential", []).append(data)
    if target == "http_head":
        seeds.setdefault("payload_heads", []).append(bytes([255]) + data)
        seeds.setdefault("payload_heads", []).append(bytes([40]) + data)
        seeds.setdefault("capture_frame", []).append(bytes([0, 3]) + data)
        seeds.setdefault("capture_frame", []).append(bytes([1 | (7 << 1), 1]) + data)

for proto, pattern in [("redis", "redis/*.txt"), ("mysql", "mysql/*.txt"),
                       ("amqp", "amqp/*.txt"), ("mqtt", "mqtt/*.txt"),
                       ("nats", "nats/*.txt"), ("postgres", "postgres/*.pg")]:
    for path in sorted(glob.glob("../tests/fixtures/" + pattern)):
        for conn in fixture(path):
            if conn:
                add(proto, script([record(o, d) for o, d in conn]))
                add(proto, script([record(o, d) for o, d in conn], close=2, piece=0))

# MySQL as the TLS hooks see it: from the login (sequence id 2, the TLS
# bit set) on, the greeting and the TLS request having gone before.
for path in sorted(glob.glob("../tests/fixtures/mysql/cli_*.txt")):
    for conn in fixture(path):
        rest = [list(x) for x in conn[1:]]
        if not rest or not rest[0][0] or len(rest[0][1]) < 36:
            continue
        login = bytearray(rest[0][1])
        login[3] = 2
        login[5] |= 0x08
        rest[0][1] = bytes(login)
        seeds.setdefault("db_differential", []).append(script([record(o, d) for o, d in rest]))

req = [b"GET /a?b=1&password=x HTTP/1.1\r\nHost: h:8080\r\nUser-Agent: curl/8\r\n"
       b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
       b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
       b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
       b"HEAD / HTTP/1.0\r\nb3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n"
       b"baggage: k=v\r\n\r\n",
       b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
       b"CONNECT h:443 HTTP/1.1\r\n\r\n"]
resp = [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nuntil close",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n"]
for i, (q, r) in enumerate(zip(req, resp)):
    add("http_connection", script([record(True, q), record(False, r)] * 2))
    add("http_connection", script([record(False, q), record(True, r)], server=True, piece=0))
    add("http_head", q.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    add("http_head", r.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
add("http_connection", script([record(True, req[1][:-3]), record(True, b"abc", opaque=True),
                               record(False, resp[0])]))
add("http_head", b"GET / HTTP/1.1\nHost: a\nX-Y:\tz\n\n")
add("http_head", b"HTTP/1.1 200\r\nContent-Length: 1, 1\r\n\r\n")
# Invalid UTF-8 longer than a third of the field cap (each byte becomes a
# three-byte U+FFFD).
add("http_head", b"GET /" + b"\xff" * 1000 + b" HTTP/1.1\r\nHost: " + b"\xfe" * 900 + b"\r\n\r\n")
add("http_connection", script([record(True, b"GET /" + b"\xff" * 1000 + b" HTTP/1.1\r\n\r\n"),
                               record(False, resp[0])]))
# A message whose traceparent header is invalid UTF-8 (each byte becomes a
# three-byte U+FFFD).
hdr = b"NATS/1.0\r\ntraceparent: " + b"\xff" * 500 + b"\r\n\r\n"
add("nats", script([record(False, b'INFO {"headers":true}\r\n'), record(True, b"SUB a 1\r\n"),
                    record(False, b"HMSG a 1 %d %d\r\n" % (len(hdr), len(hdr) + 2) + hdr + b"hi\r\n")]))
add("propagation", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
add("propagation", b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
add("propagation", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")
add("propagation", b"b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d\nbaggage: k=v,a=b;p=1")
add("masking", b"\x00a=1&password=x&api_key=y&flag&%70assword=z")
add("masking", b"\x01.*secret.*\t[a-z]+_key\nsecret_x=1&b_key=2")
add("masking", b"\x00mysql\n-ppass\n--password\nhunter2\nsh\n-c\ncurl -H 'Authorization: Bearer x' https://u:pw@h/?token=t")
add("config", b"\x00".join([b"http://localhost:4318", b"https://[::1]:4318/v1/traces",
                            b"a=b,c=%20d", b"x=y", b"service.name=s,k=v", b"b3,tracecontext,baggage",
                            b"parentbased_traceidratio", b"0.5",
                            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                            b"a=b", b"t_123", b"https://ga-otlp.lumigo-tracer-edge.golumigo.com",
                            b'["pass.*"]', b"all", b'["x"]', b'["/health"]', b'["^/s$"]', b'["c"]',
                            b'["X-Tenant"]', b"100", b"200", b"10", b"1000"]))
add("sql", b"SELECT a, 'x''y', 1.5e3 FROM public.t WHERE b = $1 -- c\n/* d */")
add("sql", b"WITH c AS (SELECT 1) INSERT INTO `db`.`t` VALUES (\"s\", 0x1F, X'ab') ON CONFLICT DO NOTHING")
add("sql", b"COPY t FROM STDIN; $tag$ body $tag$ E'\\n' U&'d\\0061t' B'101'")
add("otlp", b"\x40\x10\x05GET /pay\ncongo=t\nHTTP 503\nhttps://h/p\nPOST \"q\" \xc3\xa9\n\n\nx")
add("otlp", b'{"partialSuccess":{"rejectedSpans":"3","errorMessage":"too many"}}')
add("otlp", bytes([0x0a, 0x06, 0x08, 0x03, 0x12, 0x02, 0x6f, 0x6b]))

# elf: the unit tests' synthetic object (src/elf.rs), dynamic section at 0.
img = bytearray(0x600)
def put(at, b): img[at:at + len(b)] = b
for i, (t, v) in enumerate([(5, 0x100), (10, 0x40), (6, 0x200), (11, 24), (7, 0x300),
                            (8, 48), (9, 24), (23, 0x400), (2, 72), (20, 7),
                            (0x6ffffef5, 0x500)]):
    put(i * 16, struct.pack("<qQ", t, v))
put(0x100, b"\0connect\0recv\0mine\0send\0")
for i, (name, info, shndx, value) in enumerate([(0, 0, 0, 0), (1, 0x12, 0, 0), (9, 0x12, 0, 0),
                                                (14, 0x12, 7, 0x1234), (19, 0x22, 0, 0)]):
    put(0x200 + i * 24, struct.pack("<IBBHQQ", name, info, 0, shndx, value, 0))
for at, off, kind, sym in [(0x300, 0x5000, 6, 4), (0x318, 0x5008, 8, 0), (0x400, 0x6000, 7, 1),
                           (0x418, 0x6008, 7, 2), (0x430, 0x6010, 99, 1)]:
    put(at, struct.pack("<QQ", off, (sym << 32) | kind))
put(0x500, struct.pack("<III", 1, 3, 1))
put(0x518, struct.pack("<III", 3, 0, 1))
add("elf", struct.pack("<QQ", 0, 0x7f0000000000) + bytes(img))

for target in sys.argv[1:]:
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(seeds.get(target, [])):
        with open(os.path.join(d, "seed-%03d" % i), "wb") as f:
            f.write(data)
PY

# ---- runs --------------------------------------------------------------------
failed=()
summary=()
for t in "${TARGETS[@]}"; do
  log="corpus/$t.log"
  say "$t: ${SECONDS_EACH} s"
  if "${FUZZ[@]}" run -a "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" \
    -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    summary+=("$t: ${execs:-?} execs, ${cov:-cov: ?}, corpus $(ls "corpus/$t" | wc -l)")
  else
    grep -E 'panicked|ERROR|SUMMARY|artifact_prefix|Test unit written' "$log" | head -10 >&2 || true
    summary+=("$t: CRASH (fuzz/$log, fuzz/artifacts/$t/)")
    failed+=("$t")
  fi
done
printf '[fuzz] %s\n' "${summary[@]}" >&2
if [ "${#failed[@]}" -gt 0 ]; then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "${#TARGETS[@]} targets, no crash"

#!/usr/bin/env bash
# Builds lumigo-run and shows it working: a traced Python HTTP server and a
# traced curl, both writing spans to a span dump, which is then printed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
bash scripts/install-deps.sh
cargo build --release --quiet --workspace
RUN=target/release/lumigo-run
DUMP=$(mktemp -t lumigo-demo-XXXXXX.jsonl)
PORT=${PORT:-18080}

echo "== lumigo-run python3 -m http.server $PORT"
# The server is stopped with SIGTERM, which skips exit handlers: export often.
OTEL_BSP_SCHEDULE_DELAY=200 $RUN --service-name demo-server --spandump "$DUMP" -- python3 -m http.server "$PORT" --bind 127.0.0.1 >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.05; done

echo "== lumigo-run curl http://127.0.0.1:$PORT/README.md?api_key=secret"
$RUN --service-name demo-client --spandump "$DUMP" -- curl -s -o /dev/null -w 'curl got HTTP %{http_code}\n' "http://127.0.0.1:$PORT/README.md?api_key=secret"
sleep 1
kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT

echo "== spans in $DUMP"
python3 - "$DUMP" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
if not lines:
    sys.exit("demo failed: no spans in the dump")
for line in lines:
    s = json.loads(line)
    a = s["attributes"]
    print(f'{s["kind"]:<16} {s["name"]:<5} {a.get("url.full") or a.get("url.path")}  '
          f'status={a.get("http.response.status_code")}  service={s["resource"]["attributes"]["service.name"]}  '
          f'trace={s["context"]["trace_id"]}')
PY
echo "(full JSON: cat $DUMP)"

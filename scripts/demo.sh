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
# Wait for it without an HTTP request: a request would be answered, and
# traced, as a SERVER span in a trace of its own. A bare connect is not.
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done

echo "== lumigo-run curl http://127.0.0.1:$PORT/README.md?api_key=secret"
$RUN --service-name demo-client --spandump "$DUMP" -- curl -s -o /dev/null -w 'curl got HTTP %{http_code}\n' "http://127.0.0.1:$PORT/README.md?api_key=secret"
sleep 1
kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT

echo "== spans in $DUMP"
python3 - "$DUMP" <<'PY'
import json, sys
spans = [json.loads(line) for line in open(sys.argv[1]).read().splitlines() if line.strip()]
if not spans:
    sys.exit("demo failed: no spans in the dump")
for s in spans:
    a = s["attributes"]
    print(f'{s["kind"]:<16} {s["name"]:<5} {a.get("url.full") or a.get("url.path")}  '
          f'status={a.get("http.response.status_code")}  service={s["resource"]["attributes"]["service.name"]}  '
          f'trace={s["context"]["trace_id"]}  span={s["context"]["span_id"]}  parent={s.get("parent_id")}')
traces = {s["context"]["trace_id"] for s in spans}
clients = [s for s in spans if s["kind"] == "SpanKind.CLIENT"]
servers = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
if (len(traces), len(clients), len(servers), len(spans)) != (1, 1, 1, 2) \
        or servers[0]["parent_id"] != clients[0]["context"]["span_id"]:
    sys.exit(f"demo failed: expected one trace of two spans, the SERVER span a child of the CLIENT span; "
             f"got {len(spans)} spans in {len(traces)} traces")
print(f"== one trace ({traces.pop()}): curl's CLIENT span, and the server's SERVER span as its child "
      f"(parent {servers[0]['parent_id']} = the client's span id); no other spans")
PY
echo "(full JSON: cat $DUMP)"

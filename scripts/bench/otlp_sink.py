#!/usr/bin/env python3
"""A minimal OTLP/HTTP receiver for the benchmarks (standard library only).

Accepts POSTs on any path (``/v1/traces`` in practice), answers 200 with an
empty ExportTraceServiceResponse as soon as the body is read, and counts
requests, bytes and spans. Spans are counted by walking the protobuf wire
format three levels deep (ExportTraceServiceRequest.resource_spans →
ResourceSpans.scope_spans → ScopeSpans.spans) without decoding span bodies,
so the sink stays cheap next to the servers it measures. JSON bodies are
counted too.

``GET /stats`` returns the counters as JSON; ``POST /reset`` zeroes them.
``--delay-ms N`` makes every export answer N ms late, to simulate a slow
backend (export capacity benchmark).

Run it untraced: the caller must not have LD_PRELOAD set for it.
"""

import argparse
import gzip
import json
import os
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.requests = 0
        self.spans = 0
        self.bytes = 0
        self.bad = 0
        self.user_agents = {}

    def snapshot(self):
        with self.lock:
            return {
                "requests": self.requests,
                "spans": self.spans,
                "bytes": self.bytes,
                "bad": self.bad,
                "user_agents": dict(self.user_agents),
            }


COUNTERS = Counters()
DELAY = 0.0


def varint(buf, i):
    shift = 0
    value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def fields(buf):
    """Yields (field_number, wire_type, value) of one protobuf message;
    value is a memoryview for length-delimited fields, None otherwise."""
    i, n = 0, len(buf)
    while i < n:
        key, i = varint(buf, i)
        number, wtype = key >> 3, key & 7
        if wtype == 0:
            _, i = varint(buf, i)
            yield number, wtype, None
        elif wtype == 1:
            i += 8
            yield number, wtype, None
        elif wtype == 2:
            length, i = varint(buf, i)
            yield number, wtype, buf[i : i + length]
            i += length
        elif wtype == 5:
            i += 4
            yield number, wtype, None
        else:
            raise ValueError("unsupported wire type %d" % wtype)


def count_protobuf_spans(body):
    spans = 0
    for num, wt, rs in fields(memoryview(body)):
        if num != 1 or wt != 2:
            continue
        for num2, wt2, ss in fields(rs):
            if num2 != 2 or wt2 != 2:
                continue
            for num3, wt3, _ in fields(ss):
                if num3 == 2 and wt3 == 2:
                    spans += 1
    return spans


def count_json_spans(body):
    doc = json.loads(body)
    return sum(
        len(ss.get("spans", []))
        for rs in doc.get("resourceSpans", [])
        for ss in rs.get("scopeSpans", [])
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as exporters expect

    def log_message(self, *args):
        pass

    def _reply(self, code, body=b"", ctype="application/x-protobuf"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/stats"):
            self._reply(200, json.dumps(COUNTERS.snapshot()).encode(), "application/json")
        else:
            self._reply(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/reset"):
            with COUNTERS.lock:
                COUNTERS.reset()
            self._reply(200, b"{}", "application/json")
            return
        spans, bad = 0, 0
        try:
            enc = (self.headers.get("Content-Encoding") or "").lower()
            if enc == "gzip":
                body = gzip.decompress(body)
            elif enc == "deflate":
                body = zlib.decompress(body)
            if "json" in (self.headers.get("Content-Type") or ""):
                spans = count_json_spans(body)
            else:
                spans = count_protobuf_spans(body)
        except Exception:  # noqa: BLE001 - count and answer anyway
            bad = 1
        ua = (self.headers.get("User-Agent") or "?").split("/")[0][:40]
        with COUNTERS.lock:
            COUNTERS.requests += 1
            COUNTERS.spans += spans
            COUNTERS.bytes += length
            COUNTERS.bad += bad
            COUNTERS.user_agents[ua] = COUNTERS.user_agents.get(ua, 0) + spans
        if DELAY:
            time.sleep(DELAY)
        # An empty ExportTraceServiceResponse is an empty protobuf message.
        ctype = "application/json" if "json" in (self.headers.get("Content-Type") or "") else "application/x-protobuf"
        self._reply(200, b"{}" if ctype == "application/json" else b"", ctype)


def main():
    global DELAY
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="0: pick a free port")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--delay-ms", type=float, default=0.0)
    args = p.parse_args()
    DELAY = args.delay_ms / 1000.0
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(args.port_file + ".tmp", args.port_file)
    print("otlp sink listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""A thread-per-request HTTP server: GET /req/N waits a few milliseconds,
calls the downstream service at /down/N with urllib, waits and answers.
argv: PORT DOWNSTREAM_PORT"""
import signal
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DOWN = int(sys.argv[1]), int(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        n = self.path.rsplit("/", 1)[-1]
        time.sleep((1 + int(n) % 5) / 1000)
        with urllib.request.urlopen(f"http://127.0.0.1:{DOWN}/down/{n}") as r:
            body = r.read()
        time.sleep((1 + int(n) % 3) / 1000)
        text = b"req " + n.encode() + b": " + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()

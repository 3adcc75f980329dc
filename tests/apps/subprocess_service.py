"""A Python HTTP service that does its downstream call through a child
process (curl, started with subprocess) on each request.

argv: PORT DOWNSTREAM_PORT
"""
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

DOWN = int(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/len/1" % DOWN],
            check=True,
        )
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()

"""A threaded Python HTTP service that calls a downstream service on each
request (the middle hop of a distributed trace).

argv: PORT DOWNSTREAM_PORT
"""
import http.client
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOWN = int(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        conn = http.client.HTTPConnection("127.0.0.1", DOWN, timeout=10)
        conn.request("GET", "/downstream" + self.path)
        body = conn.getresponse().read()
        conn.close()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.serve_forever()

"""A small HTTP server for the signal tests.

usage: signal_server.py PORT MODE
  MODE default: SIGINT back to SIG_DFL (Python catches it otherwise), so
                SIGTERM, SIGINT, SIGHUP and SIGQUIT all kill it by default.
  MODE handler: its own SIGTERM handler prints and exits with status 7.
Prints what signal.getsignal reports, then serves GET with "ok".
"""
import http.server
import signal
import sys

port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "default":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
elif mode == "handler":
    def on_term(sig, frame):
        print("handled", sig, flush=True)
        sys.exit(7)

    signal.signal(signal.SIGTERM, on_term)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
    handler = signal.getsignal(sig)
    print(sig.name, handler if not callable(handler) else handler.__name__, flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()

"""Load for the event-loop tests (never traced).

  serve PORT [close]    the downstream service: GET /down/N answers "down N"
                        (with close: as HTTP/1.0, closing after each answer)
  load PORT TOTAL CONC  TOTAL requests GET /req/N (N = 0..TOTAL-1) from CONC
                        threads, each on its own keep-alive connection;
                        prints how many answered 200 with their own N
"""
import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Down(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        text = b"down " + self.path.rsplit("/", 1)[-1].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


def load(port, total, conc):
    next_n, ok, lock = [0], [0], threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                n = next_n[0]
                next_n[0] += 1
            if n >= total:
                break
            try:
                conn.request("GET", f"/req/{n}")
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            if r.status == 200 and body == f"req {n}: down {n}".encode():
                with lock:
                    ok[0] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(ok[0])


if sys.argv[1] == "serve":
    if sys.argv[3:] == ["close"]:
        Down.protocol_version = "HTTP/1.0"
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Down).serve_forever()
else:
    load(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))

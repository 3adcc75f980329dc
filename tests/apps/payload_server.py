"""An HTTP/1.1 server whose answers carry secrets, for payload tests.

POST /login    reads the body (Content-Length or chunked), answers JSON
               with a nested token and a Set-Cookie header
POST /echo/... answers JSON holding the request body as text (a server
               that shows back what it got)
GET /chunked   a JSON body sent in small chunks
GET /binary    bytes of a PNG-like image
GET /big       a JSON body of about 6000 bytes, secrets throughout
GET /gzip      a gzip-encoded JSON body with a secret
argv: PORT [CERTFILE KEYFILE] (with them, over TLS)
"""
import gzip
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESP_SECRET = "resp-QsecretQ-7719"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def send(self, status, ctype, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        got = self.body()
        if self.path.startswith("/echo"):
            answer = {"received": got.decode("utf-8", "replace")}
            self.send(200, "application/json", json.dumps(answer).encode())
            return
        answer = {"ok": True, "session": {"id": 7, "access_token": RESP_SECRET}}
        self.send(
            200,
            "application/json",
            json.dumps(answer).encode(),
            [("Set-Cookie", "sid=" + RESP_SECRET), ("X-Served-By", "payload-server")],
        )

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/chunked":
            body = json.dumps({"items": [1, 2, 3], "refresh_token": RESP_SECRET}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 5):
                piece = body[i : i + 5]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/binary":
            self.send(200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
        elif path == "/gzip":
            body = gzip.compress(json.dumps({"id_token": RESP_SECRET, "n": 1}).encode())
            self.send(200, "application/json", body, [("Content-Encoding", "gzip")])
        elif path == "/big":
            items = [{"n": i, "name": "item-%04d" % i, "password": RESP_SECRET} for i in range(120)]
            self.send(200, "application/json", json.dumps({"items": items}).encode())
        else:
            self.send(404, "text/plain", b"no")


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()

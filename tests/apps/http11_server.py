"""A small HTTP/1.1 keep-alive server for the tests.

GET /len/N      N bytes with Content-Length
GET /chunked/N  N bytes in chunks of 7, Transfer-Encoding: chunked
GET /status/C   an empty response with status C
GET /gather/N   N bytes of text with Content-Length, head and body sent by
                one sendmsg in buffers of 5 bytes (a gathered write)
POST /echo      the request body back, with Content-Length
Listens on 127.0.0.1:PORT (argv[1]); threaded, so concurrent clients work.
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "len":
            body = b"x" * int(parts[1])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif parts[0] == "chunked":
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < n:
                piece = b"y" * min(7, n - sent)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        elif parts[0] == "gather":
            body = bytes(b"abcdefghij"[i % 10] for i in range(int(parts[1])))
            self.wfile.flush()
            whole = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                % len(body)
                + body
            )
            bufs = [whole[i : i + 5] for i in range(0, len(whole), 5)]
            view = memoryview(whole)
            while view:
                sent = self.connection.sendmsg(bufs)
                view = view[sent:]
                bufs = [view[i : i + 5] for i in range(0, len(view), 5)]
        elif parts[0] == "status":
            self.send_response(int(parts[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_error(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()

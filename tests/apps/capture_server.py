"""Records exactly what clients send: one JSON line per connection with the
hex of every byte of the request (head and Content-Length body), then
answers 200 and closes.

argv: PORT LOGFILE [DELAY_SECONDS before reading each connection]
"""
import json
import socket
import sys
import threading
import time

port, log = int(sys.argv[1]), sys.argv[2]
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
lock = threading.Lock()


def handle(conn):
    time.sleep(delay)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    with lock, open(log, "a") as f:
        f.write(json.dumps({"bytes": data[: len(head) + 4].hex() + body.hex()}) + "\n")
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    conn.close()


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()

"""One HTTP/1.1 exchange over Multipath TCP (IPPROTO_MPTCP), both ends in
this process: a server thread on the port given as argument, and a client. Exits 77 when the kernel has no
MPTCP (net.mptcp.enabled=0 or no support)."""

import socket
import sys
import threading

IPPROTO_MPTCP = 262

try:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
except OSError:
    sys.exit(77)
port = int(sys.argv[1])
# As every server here does: a port with TIME_WAIT leftovers of an earlier
# test process (free_port checks with SO_REUSEADDR) is still bindable.
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)


def serve():
    conn, _ = srv.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    conn.close()


thread = threading.Thread(target=serve)
thread.start()
cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
cli.connect(("127.0.0.1", port))
cli.sendall(b"GET /over-mptcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
resp = b""
while True:
    chunk = cli.recv(4096)
    if not chunk:
        break
    resp += chunk
cli.close()
thread.join()
assert resp.endswith(b"ok"), resp
print(resp.split(b"\r\n")[0].decode())

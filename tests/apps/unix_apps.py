"""Programs talking over Unix domain sockets, for tests/unix.rs; one
scenario per argv[1].

psycopg           psycopg 3 to PostgreSQL's socket directory (argv[2]): one query
pymysql           PyMySQL to MariaDB's socket (argv[2]): one query
http-server       an HTTP server on the Unix socket argv[2]; each request runs
                  one PostgreSQL query over the socket directory argv[3]
scm-rights        a Unix stream listener and a client in one process (socket
                  path argv[2]): fds passed both ways with SCM_RIGHTS, under an
                  HTTP exchange and under raw bytes; prints what was received
abstract          an HTTP/1.0 exchange without Host over the abstract socket
                  "\0" + argv[2], server and client in one process
dgram-seqpacket   a datagram and a seqpacket exchange carrying an HTTP request
                  (argv[2]: a directory for the sockets)
"""
import array
import json
import os
import signal
import socket
import sys
import threading

mode = sys.argv[1]


def pg_select(socket_dir):
    import psycopg

    with psycopg.connect(f"host={socket_dir} user=postgres dbname=test") as c:
        return c.execute("select 40 + %s as x", (2,)).fetchone()[0]


def recv_exactly_head(conn):
    """Reads an HTTP head (up to the empty line) with recvmsg, collecting any
    fds passed alongside; returns (bytes, fds)."""
    data = b""
    fds = []
    while b"\r\n\r\n" not in data:
        msg, anc, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
        if not msg:
            break
        data += msg
        for level, typ, payload in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[: len(payload) - (len(payload) % a.itemsize)])
                fds.extend(a)
    return data, fds


def read_fd(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    out = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return out
        out += chunk


def temp_file(directory, name, content):
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, content)
    os.unlink(path)
    return fd


if mode == "psycopg":
    print(pg_select(sys.argv[2]))
elif mode == "pymysql":
    import pymysql

    c = pymysql.connect(unix_socket=sys.argv[2], user="root", password="", database="test")
    with c.cursor() as cur:
        cur.execute("select 1 + %s", (41,))
        print(cur.fetchone()[0])
    c.close()
elif mode == "http-server":
    import socketserver
    from http.server import BaseHTTPRequestHandler

    path, socket_dir = sys.argv[2], sys.argv[3]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def address_string(self):
            return "unix"

        def do_GET(self):
            body = ("answer %s\n" % pg_select(socket_dir)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    if os.path.exists(path):
        os.unlink(path)
    with Server(path, Handler) as server:
        server.serve_forever()
elif mode == "scm-rights":
    path = sys.argv[2]
    tmpdir = os.path.dirname(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    report = {}

    def serve():
        # 1: an HTTP request arrives with an fd; the response carries one back.
        conn, _ = listener.accept()
        head, fds = recv_exactly_head(conn)
        report["server_got_head"] = head.decode("latin-1")
        report["server_got_fd_content"] = read_fd(fds[0]).decode() if fds else None
        body = b"pong"
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" + body
        back = temp_file(tmpdir, "from-server", b"file from the server")
        sent = conn.sendmsg([reply], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [back]))])
        report["server_sent"] = sent
        conn.close()
        # 2: raw bytes (no protocol we parse) with fds, both ways.
        conn, _ = listener.accept()
        msg, fds = b"", []
        while len(msg) < 14:
            m, anc, _f, _a = conn.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
            if not m:
                break
            msg += m
            for level, typ, payload in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(payload[: len(payload) - (len(payload) % a.itemsize)])
                    fds.extend(a)
        report["raw_server_got"] = msg.hex()
        report["raw_server_fd_content"] = read_fd(fds[0]).decode() if fds else None
        socket.send_fds(conn, [b"\x00\x01raw back\xff"], [fds[0]])
        conn.close()

    t = threading.Thread(target=serve)
    t.start()

    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    request = b"GET /with-fd HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    mine = temp_file(tmpdir, "from-client", b"file from the client")
    report["client_sent"] = socket.send_fds(c, [request], [mine])
    head, fds = recv_exactly_head(c)
    report["client_got"] = head.decode("latin-1")
    report["client_got_fd_content"] = read_fd(fds[0]).decode() if fds else None
    c.close()

    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    raw = b"\x00\x00\x00\x0araw-bytes\xfe"
    raw_fd = temp_file(tmpdir, "raw", b"raw file")
    report["raw_client_sent"] = socket.send_fds(c, [raw], [raw_fd])
    msg, fds, _flags, _addr = socket.recv_fds(c, 4096, 4)
    report["raw_client_got"] = msg.hex()
    report["raw_client_fd_content"] = read_fd(fds[0]).decode() if fds else None
    c.close()
    t.join()
    print(json.dumps(report))
elif mode == "abstract":
    name = "\0" + sys.argv[2]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(name)
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        head, _fds = recv_exactly_head(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(name)
    c.sendall(b"GET /abstract HTTP/1.0\r\n\r\n")
    reply = b""
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        reply += chunk
    c.close()
    t.join()
    print(reply.decode())
elif mode == "dgram-seqpacket":
    directory = sys.argv[2]
    request = b"GET /not-a-stream HTTP/1.1\r\nHost: localhost\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    # Datagram: connect + send, the server answers with sendto.
    dpath = os.path.join(directory, "dgram.sock")
    cpath = os.path.join(directory, "dgram-client.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(dpath)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.bind(cpath)
    client.connect(dpath)
    client.send(request)
    got, addr = server.recvfrom(4096)
    server.sendto(response, addr)
    print(client.recv(4096) == response and got == request)
    # Seqpacket: connect/accept like a stream, but messages.
    spath = os.path.join(directory, "seq.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(spath)
    listener.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client.connect(spath)
    conn, _ = listener.accept()
    client.send(request)
    got = conn.recv(4096)
    conn.send(response)
    print(client.recv(4096) == response and got == request)
    conn.close()
    client.close()
else:
    sys.exit("unknown mode " + mode)

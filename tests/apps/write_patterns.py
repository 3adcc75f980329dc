"""Sends HTTP requests in awkward ways, to check that what reaches the peer
is the app's bytes plus one traceparent line, whatever the write pattern.

argv: PORT MODE
  split    : the head split in two sends at every offset (one connection each)
  writev   : one sendmsg with the head and body in 3-byte buffers
  nonblock : a non-blocking socket with a small send buffer and a 2 MB body,
             sent with select() around partial writes and EAGAIN
  forward  : first serves one request that carries FORWARDED (read on this
             thread), then, as a proxy does, sends requests carrying that same
             traceparent, the head split in two sends at every offset
Prints the requests it sent as hex, one per line, to stdout; the last line
(nonblock) says how often EAGAIN and partial writes happened.
"""
import select
import socket
import sys

port, mode = int(sys.argv[1]), sys.argv[2]
HEAD = b"POST /p?q=1 HTTP/1.1\r\nHost: capture\r\nX-Test: write-patterns\r\nContent-Length: %d\r\n\r\n"


def connect():
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def finish(s):
    s.setblocking(True)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.endswith(b"ok"), data


if mode == "split":
    body = b"0123456789"
    req = HEAD % len(body) + body
    head_len = req.index(b"\r\n\r\n") + 4
    for split in range(1, head_len + 1):
        s = connect()
        assert s.send(req[:split]) == split
        s.sendall(req[split:])
        finish(s)
        print(req.hex())
elif mode == "writev":
    body = b"abcdefghijklmnopqrstuvwxyz" * 4
    req = HEAD % len(body) + body
    s = connect()
    bufs = [req[i : i + 3] for i in range(0, len(req), 3)]
    sent = s.sendmsg(bufs)
    assert sent == len(req), sent
    finish(s)
    print(req.hex())
elif mode == "forward":
    FORWARDED = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    listener = socket.create_server(("127.0.0.1", 0))
    caller = socket.create_connection(listener.getsockname())
    caller.sendall(b"GET /in HTTP/1.1\r\nHost: me\r\ntraceparent: " + FORWARDED + b"\r\n\r\n")
    inbound, _ = listener.accept()
    got = b""
    while b"\r\n\r\n" not in got:
        got += inbound.recv(4096)
    body = b"0123456789"
    req = (HEAD % len(body)).replace(b"\r\n\r\n", b"\r\ntraceparent: " + FORWARDED + b"\r\n\r\n") + body
    head_len = req.index(b"\r\n\r\n") + 4
    for split in range(1, head_len + 1):
        s = connect()
        assert s.send(req[:split]) == split
        s.sendall(req[split:])
        finish(s)
        print(req.hex())
elif mode == "nonblock":
    body = bytes(i % 251 for i in range(2_000_000))
    req = HEAD % len(body) + body
    s = connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    s.setblocking(False)
    view, eagain, partial = memoryview(req), 0, 0
    while view:
        try:
            n = s.send(view[:65536])
            if n < min(len(view), 65536):
                partial += 1
            view = view[n:]
        except BlockingIOError:
            eagain += 1
            select.select([], [s], [], 5)
    finish(s)
    print(req.hex())
    print("eagain=%d partial=%d" % (eagain, partial))

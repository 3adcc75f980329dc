"""Takes over every descriptor number it did not open itself, as daemons
and careless apps do, while making traced HTTP requests.

usage: fd_takeover.py HTTP_PORT MODE TARGET
  MODE  closerange  os.closerange(3, 1024), then open TARGET (issue 11's
                    reproduction: the app's next descriptor gets the lowest
                    free number)
        closeall    os.closerange(3, soft RLIMIT_NOFILE) (close_range over
                    every descriptor, ours included), then open TARGET
        rawclose    the close_range system call itself, over every descriptor
                    above 2: no hook of ours sees it
        closefrom   glibc's closefrom(3) (which closes through an internal
                    close_range), then open TARGET
        replace     open TARGET, then dup2 it onto every other open
                    descriptor above 2 (whatever their numbers)
  TARGET  file:PATH   a file the app writes and reads back
          tcp:PORT    a socket to a server that sends a banner first
Prints what the app read back; exits 0 if it saw only its own bytes.
"""
import ctypes
import os
import resource
import select
import socket
import sys
import time
import urllib.request

port, mode, target = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def get(n):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/len/{n}", timeout=10) as r:
        assert r.read() == b"x" * n


def open_target():
    kind, _, where = target.partition(":")
    if kind == "file":
        return os.open(where, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600), None
    s = socket.create_connection(("127.0.0.1", int(where)))
    return s.detach(), None


get(1)
time.sleep(1.0)  # the first span is exported: our file or socket is open

if mode == "closerange":
    os.closerange(3, 1024)
    fd, _ = open_target()
elif mode == "closeall":
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    fd, _ = open_target()
elif mode == "rawclose":
    SYS_close_range = 436  # x86_64 and aarch64 alike
    assert ctypes.CDLL(None).syscall(SYS_close_range, 3, 0xFFFFFFFF, 0) == 0
    fd, _ = open_target()
elif mode == "closefrom":
    ctypes.CDLL(None).closefrom(3)
    fd, _ = open_target()
else:
    fd, _ = open_target()
    for name in os.listdir("/proc/self/fd"):
        n = int(name)
        if n > 2 and n != fd:
            try:
                os.dup2(fd, n)
            except OSError:
                pass  # the directory's own descriptor, closed by now

is_socket = target.startswith("tcp:")
if is_socket:
    banner = b""
    while not banner.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], 10)
        assert ready, f"no banner (someone else read it?): {banner!r}"
        chunk = os.read(fd, 100)
        assert chunk, "banner server closed early"
        banner += chunk
    assert banner == b"BANNER\n", banner

os.write(fd, b"app-1\n")
get(2)
get(3)
time.sleep(1.0)  # exported after the takeover
os.write(fd, b"app-2\n")

if is_socket:
    os.close(fd)
    print("banner ok")
else:
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 1 << 20)
    sys.stdout.write(data.decode("latin-1"))
    assert data == b"app-1\napp-2\n", data

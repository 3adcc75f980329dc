"""Prints what sigaction/signal report back for SIGTERM, SIGINT, SIGHUP and
SIGQUIT after various changes, normalised so that two runs compare equal
(handler addresses and glibc's restorer differ between processes)."""
import ctypes
import signal
import struct

libc = ctypes.CDLL(None, use_errno=True)
libc.signal.restype = ctypes.c_void_p
libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.sysv_signal.restype = ctypes.c_void_p
libc.sysv_signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
SIZE = 152  # struct sigaction on x86-64 glibc: handler, 128-byte mask, flags, restorer


def restorer_of_glibc():
    act = ctypes.create_string_buffer(SIZE)
    libc.sigaction(signal.SIGUSR2, act, None)
    out = ctypes.create_string_buffer(SIZE)
    libc.sigaction(signal.SIGUSR2, None, out)
    return struct.unpack_from("<Q", out, 144)[0]


RESTORER = restorer_of_glibc()


def show(buf):
    handler, = struct.unpack_from("<Q", buf, 0)
    flags, = struct.unpack_from("<i", buf, 136)
    restorer, = struct.unpack_from("<Q", buf, 144)
    h = handler if handler in (0, 1) else "handler"
    r = "glibc" if restorer == RESTORER else hex(restorer)
    # Only the kernel's 64 signals of the mask are defined: glibc copies
    # the rest from its own uninitialised stack.
    return (h, buf.raw[8:16].hex(), hex(flags & 0xFFFFFFFF), r)


def read(sig):
    buf = ctypes.create_string_buffer(b"\xaa" * SIZE, SIZE)
    r = libc.sigaction(sig, None, buf)
    return (r, show(buf))


out = []
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
    out.append(("initial", int(sig), read(sig)))

act = ctypes.create_string_buffer(SIZE)
struct.pack_into("<Q", act, 8, (1 << (signal.SIGUSR1 - 1)) | (1 << (signal.SIGKILL - 1)))
struct.pack_into("<Q", act, 16, 0xFFFF)  # beyond the kernel's 64 signals
struct.pack_into("<i", act, 136, 0x10000000 | 0x40000000 | 0x400)
old = ctypes.create_string_buffer(b"\xaa" * SIZE, SIZE)
r = libc.sigaction(signal.SIGTERM, act, old)
out.append(("set SIG_DFL with flags and mask", r, show(old), read(signal.SIGTERM)))
r = libc.sigaction(signal.SIGTERM, act, act)  # same buffer in and out
out.append(("again, in place", r, show(act)))

prev = signal.signal(signal.SIGHUP, lambda *a: None)
out.append(("python handler", str(prev), callable(signal.getsignal(signal.SIGHUP)), read(signal.SIGHUP)))
prev = signal.signal(signal.SIGHUP, signal.SIG_DFL)
out.append(("python SIG_DFL", callable(prev), str(signal.getsignal(signal.SIGHUP)), read(signal.SIGHUP)))

out.append(("signal(SIG_DFL)", libc.signal(signal.SIGQUIT, 0), read(signal.SIGQUIT)))
out.append(("signal(SIG_IGN)", libc.signal(signal.SIGQUIT, 1), read(signal.SIGQUIT)))
out.append(("signal back", libc.signal(signal.SIGQUIT, 0), read(signal.SIGQUIT)))
out.append(("sysv_signal", libc.sysv_signal(signal.SIGQUIT, 0), read(signal.SIGQUIT)))
out.append(("python SIGINT default", str(signal.signal(signal.SIGINT, signal.SIG_DFL)), read(signal.SIGINT)))
for line in out:
    print(line)

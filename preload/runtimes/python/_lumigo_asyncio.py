# lumigo-run's hint for Python asyncio, loaded by lumigo-run's
# sitecustomize only when the app imports asyncio's selector loop.
#
# An asyncio loop serves many requests on one thread, so the preload library
# alone cannot tell which inbound request an outbound call belongs to. This
# hook follows each accepted connection with a context variable (the fd it
# arrived on: set where the loop makes the connection's transport, so every
# task started from its protocol inherits it) and, when a client transport
# writes, tells the library "the head on fd F belongs to the request on fd
# G" by a write of 16 bytes to fd 2147483647: a number that is never open,
# so without the library the write fails with EBADF and the hook stops; with
# it, the library takes the message without a system call. Only the parent
# is chosen this way: parsing and spans stay in the library.
import sys


def install(selector_events):
    import os
    import struct
    import contextvars

    hint_fd = 2147483647
    magic = b"\0LUMIGO\x01"
    inbound = contextvars.ContextVar("lumigo_inbound_fd", default=-1)
    state = {"on": True}
    loop_class = selector_events.BaseSelectorEventLoop
    transport_class = selector_events._SelectorSocketTransport
    make_transport = loop_class._make_socket_transport
    write = transport_class.write
    writelines = getattr(transport_class, "writelines", None)

    def fd_of(sock):
        try:
            return sock.fileno()
        except Exception:
            return -1

    def make_socket_transport(self, sock, protocol, *args, **kwargs):
        try:
            if kwargs.get("server") is not None:
                # An accepted connection: this runs in the accepting task,
                # whose context the protocol's callbacks and tasks copy.
                inbound.set(fd_of(sock))
        except Exception:
            pass
        transport = make_transport(self, sock, protocol, *args, **kwargs)
        try:
            if kwargs.get("server") is None:
                transport._lumigo_client = True
        except Exception:
            pass
        return transport

    def hint(transport):
        if not state["on"] or not getattr(transport, "_lumigo_client", False):
            return
        in_fd = inbound.get()
        if in_fd < 0:
            return
        out_fd = fd_of(transport._sock)
        if out_fd < 0:
            return
        try:
            if os.write(hint_fd, magic + struct.pack("<ii", out_fd, in_fd)) != 16:
                state["on"] = False
        except OSError:
            state["on"] = False  # No library here (EBADF): stop.

    def transport_write(self, data):
        try:
            hint(self)
        except Exception:
            pass
        return write(self, data)

    def transport_writelines(self, list_of_data):
        try:
            hint(self)
        except Exception:
            pass
        return writelines(self, list_of_data)

    loop_class._make_socket_transport = make_socket_transport
    transport_class.write = transport_write
    if writelines is not None:
        transport_class.writelines = transport_writelines


class _LumigoLoader(object):
    """The loader of asyncio.selector_events, which installs the hint
    right after the module runs; everything else goes to the real loader."""

    def __init__(self, inner):
        self._lumigo_inner = inner

    def __getattr__(self, name):
        return getattr(self._lumigo_inner, name)

    def create_module(self, spec):
        return self._lumigo_inner.create_module(spec)

    def exec_module(self, module):
        self._lumigo_inner.exec_module(module)
        try:
            install(module)
        except Exception:
            pass


def find_spec(name, path=None, target=None):
    """The spec of asyncio.selector_events from the other finders, its
    loader wrapped so that the hint is installed once the module ran."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(name, path, target) if find is not None else None
        if spec is not None:
            break
    else:
        return None
    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
        spec.loader = _LumigoLoader(spec.loader)
    return spec

# lumigo-run's hint for Python asyncio, on the PYTHONPATH lumigo-run sets.
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
#
# Then the app's own sitecustomize (the next one on sys.path) is imported,
# as if this file were not here. Anything that fails here fails silently.
import sys


def _lumigo_hint(selector_events):
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


def _lumigo_chain():
    """Runs the next sitecustomize on sys.path, if there is one, as the
    module `sitecustomize`, leaving sys.path as it is."""
    import importlib.machinery
    import importlib.util
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    me = sys.modules.get("sitecustomize")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if me is not None:
            sys.modules["sitecustomize"] = me
        raise


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
            _lumigo_hint(module)
        except Exception:
            pass


class _LumigoFinder(object):
    """Waits for the app to import asyncio's selector loop (importing it
    here would cost every Python program tens of milliseconds at start)."""

    def find_spec(self, name, path=None, target=None):
        if name != "asyncio.selector_events":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
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


try:
    if "asyncio.selector_events" in sys.modules:
        _lumigo_hint(sys.modules["asyncio.selector_events"])
    else:
        sys.meta_path.insert(0, _LumigoFinder())
except Exception:
    pass
_lumigo_chain()

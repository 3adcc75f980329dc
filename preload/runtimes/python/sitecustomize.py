# lumigo-run's sitecustomize, on the PYTHONPATH lumigo-run sets. Every
# Python program compiles it at start (its directory is seldom writable, so
# no bytecode is kept): it stays small. The event-loop hint is in
# _lumigo_asyncio.py beside it, loaded only when the app imports asyncio's
# selector loop. Then the app's own sitecustomize (the next one on
# sys.path) is imported, as if this file were not here. Anything that
# fails here fails silently.
import sys


def _lumigo_load():
    import importlib.util
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "_lumigo_asyncio", os.path.join(here, "_lumigo_asyncio.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
        try:
            return _lumigo_load().find_spec(name, path, target)
        except Exception:
            return None


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


try:
    if "asyncio.selector_events" in sys.modules:
        _lumigo_load().install(sys.modules["asyncio.selector_events"])
    else:
        sys.meta_path.insert(0, _LumigoFinder())
except Exception:
    pass
_lumigo_chain()

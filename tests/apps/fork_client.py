"""A request before fork, one in the child, one in the parent after it.

argv: PORT. The child exits through sys.exit, so atexit handlers run.
"""
import http.client
import os
import sys

port = int(sys.argv[1])


def get(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    c.getresponse().read()
    c.close()


get("/len/1?who=parent-before")
pid = os.fork()
if pid == 0:
    get("/len/2?who=child")
    sys.exit(0)
os.waitpid(pid, 0)
get("/len/3?who=parent-after")

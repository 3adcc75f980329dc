"""Several requests over one keep-alive connection with http.client.

argv: PORT. Prints one line per response: status and body length.
"""
import http.client
import sys

conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for method, path, body in [
    ("GET", "/len/100", None),
    ("GET", "/chunked/50", None),
    ("POST", "/echo", b"hello world"),
    ("GET", "/status/503", None),
]:
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    data = resp.read()
    print(resp.status, len(data))
conn.close()

"""Event-loop HTTP servers in Python asyncio: for GET /req/N wait a few
milliseconds, call the downstream service at /down/N, wait again and answer.

argv: PORT DOWNSTREAM_PORT MODE
  aiohttp:  an aiohttp server calling downstream with aiohttp.ClientSession
  streams:  a plain asyncio streams server calling downstream over
            asyncio.open_connection (one new connection per call)
"""
import asyncio
import re
import signal
import sys

PORT, DOWN, MODE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def delay(n, k):
    return (1 + int(n) % k) / 1000


async def aiohttp_main():
    from aiohttp import ClientSession, web

    session = None

    async def handle(request):
        n = request.match_info["n"]
        await asyncio.sleep(delay(n, 5))
        async with session.get(f"http://127.0.0.1:{DOWN}/down/{n}") as r:
            body = await r.text()
        await asyncio.sleep(delay(n, 3))
        return web.Response(text=f"req {n}: {body}")

    app = web.Application()
    app.router.add_get("/req/{n}", handle)
    session = ClientSession()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    await asyncio.Event().wait()


async def downstream(n):
    reader, writer = await asyncio.open_connection("127.0.0.1", DOWN)
    writer.write(f"GET /down/{n} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data.split(b"\r\n\r\n", 1)[-1].decode()


async def serve(reader, writer):
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        m = re.match(rb"GET /req/(\d+) ", head)
        n = m.group(1).decode() if m else "0"
        await asyncio.sleep(delay(n, 5))
        body = await downstream(n)
        await asyncio.sleep(delay(n, 3))
        text = f"req {n}: {body}".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(text) + text)
        await writer.drain()


async def streams_main():
    async def guarded(reader, writer):
        try:
            await serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
asyncio.run(aiohttp_main() if MODE == "aiohttp" else streams_main())

#!/usr/bin/env python3
"""Producers and consumers for tests/brokers.rs, one process each.

    brokers.py SYSTEM produce DEST N
    brokers.py SYSTEM consume DEST N URL READY_FILE
    brokers.py amqp serve DEST PORT
    brokers.py nats jetstream DEST N

SYSTEM is amqp (pika, RabbitMQ 5672, DEST a queue on the default
exchange), mqtt5 or mqtt311 (paho-mqtt, Mosquitto 1883, DEST a topic) or
nats (nats-py, 4222, DEST a subject). A producer publishes N messages
`message i`, 0.3 s apart (so that each is read on its own). A consumer
creates READY_FILE once subscribed, then for each of N messages calls URL
(GET) before taking the next, and exits. `serve` is the front of seed 004:
an HTTP server on PORT that publishes `message i` (i from the query,
`/publish?i=0`) for each request, on the request's thread.

With CARRY_TRACEPARENT set, a producer puts that value in each message's
headers itself as `traceparent` (AMQP headers table, MQTT 5 user property,
NATS header), as an instrumented producer would; over MQTT 3.1.1, which
has no headers, in the payload: a JSON envelope
`{"headers": {"traceparent": …}, "body": "message i"}` (the pattern of
seed 004), which the consumer opens."""
import json
import asyncio
import os
import sys
import time
import urllib.request


def carry():
    tp = os.environ.get("CARRY_TRACEPARENT")
    return {"traceparent": tp} if tp else None


def call(url):
    urllib.request.urlopen(url, timeout=10).read()


def ready(path):
    open(path, "w").close()


def show(tp):
    """The consumer prints the traceparent each message's headers carried
    (and, on stderr, that a message came: a test that times out says how
    far the consumer got)."""
    print(f"tp {tp or '-'}", flush=True)
    print(f"{time.monotonic():.3f} received one ({tp or '-'})", file=sys.stderr, flush=True)


def expect(seen, body):
    """Each message arrives exactly as published: `message i`, in order."""
    want = f"message {len(seen)}".encode()
    if bytes(body).startswith(b"{\"headers\""):
        body = json.loads(body)["body"].encode()
    if bytes(body) != want:
        print(f"got {bytes(body)!r}, want {want!r}", file=sys.stderr, flush=True)
        os._exit(3)


def amqp(role, dest, n, url=None, ready_file=None):
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    ch = conn.channel()
    ch.queue_declare(queue=dest)
    if role == "produce":
        for i in range(n):
            ch.basic_publish(exchange="", routing_key=dest, body=f"message {i}".encode(),
                             properties=pika.BasicProperties(message_id=f"id-{i}", headers=carry()))
            time.sleep(0.3)
    else:
        ch.basic_qos(prefetch_count=1)
        seen = []

        def on_message(chan, method, props, body):
            expect(seen, body)
            show((props.headers or {}).get("traceparent"))
            call(url)
            chan.basic_ack(method.delivery_tag)
            seen.append(body)
            if len(seen) == n:
                chan.stop_consuming()

        ch.basic_consume(queue=dest, on_message_callback=on_message)
        ready(ready_file)
        ch.start_consuming()
        ch.queue_delete(queue=dest)
    conn.close()


def mqtt(version, role, dest, n, url=None, ready_file=None):
    import paho.mqtt.client as mqtt

    proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
    # The topic's last two parts (the test process, a port) are unique to
    # the test: a broker closes a client's older connection when the same
    # id connects again, and the port alone can repeat in another test
    # process using the same broker.
    client_id = f"lumigo-{role}-{version}-" + "-".join(dest.rsplit("/", 2)[-2:])
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
    c.connect("127.0.0.1", 1883)
    if role == "produce":
        c.loop_start()
        for i in range(n):
            props = None
            if carry() and version == 5:
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties

                props = Properties(PacketTypes.PUBLISH)
                props.UserProperty = list(carry().items())
            payload = f"message {i}"
            if carry() and version != 5:
                payload = json.dumps({"headers": carry(), "body": payload})
            c.publish(dest, payload, qos=1, properties=props).wait_for_publish()
            time.sleep(0.3)
        c.disconnect()
        c.loop_stop()
        return
    seen = []

    def on_message(cl, ud, msg):
        expect(seen, msg.payload)
        user = getattr(msg.properties, "UserProperty", None) or []
        show(dict(user).get("traceparent"))
        call(url)
        seen.append(msg.payload)
        if len(seen) == n:
            cl.disconnect()

    def on_subscribe(cl, ud, mid, codes, props):
        ready(ready_file)

    c.on_message = on_message
    c.on_subscribe = on_subscribe
    c.subscribe(dest, qos=1)
    c.loop_forever()


async def nats_main(role, dest, n, url=None, ready_file=None):
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    if role == "produce":
        for i in range(n):
            await nc.publish(dest, f"message {i}".encode(), headers=carry())
            await nc.flush()
            await asyncio.sleep(0.3)
    else:
        done = asyncio.Event()
        seen = []

        async def handler(msg):
            expect(seen, msg.data)
            show((msg.headers or {}).get("traceparent"))
            call(url)
            seen.append(msg.data)
            if len(seen) == n:
                done.set()

        await nc.subscribe(dest, cb=handler)
        await nc.flush()
        ready(ready_file)
        await asyncio.wait_for(done.wait(), 30)
    await nc.close()


async def nats_jetstream(dest, n):
    """Publishes N messages `message i` to JetStream subject DEST, in a
    stream of its own, then one naming another stream (refused: a JSON
    error) and one to a subject no stream takes (a 503 status); prints each
    acknowledgement `ack STREAM SEQ` or `refused CODE`."""
    import nats
    from nats.errors import NoRespondersError
    from nats.js.errors import APIError, NoStreamResponseError

    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    stream = dest.replace(".", "_").upper()
    await js.add_stream(name=stream, subjects=[dest])
    try:
        for i in range(n):
            ack = await js.publish(dest, f"message {i}".encode())
            print(f"ack {ack.stream} {ack.seq}", flush=True)
        try:
            await js.publish(dest, b"message x", stream=stream + "_OTHER")
        except APIError as e:
            print(f"refused {e.code}", flush=True)
        try:
            await js.publish(dest + ".nostream", b"message y")
        except (NoRespondersError, NoStreamResponseError):
            print("refused 503", flush=True)
    finally:
        await js.delete_stream(stream)
    await nc.close()


def serve(dest, port):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    ch = conn.channel()
    ch.queue_declare(queue=dest)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            i = int(self.path.rsplit("=", 1)[1])
            ch.basic_publish(exchange="", routing_key=dest, body=f"message {i}".encode(),
                             properties=pika.BasicProperties(message_id=f"id-{i}"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    if sys.argv[2] == "serve":
        serve(sys.argv[3], sys.argv[4])
        sys.exit(0)
    system, role, dest, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rest = sys.argv[5:]
    if system == "amqp":
        amqp(role, dest, n, *rest)
    elif system in ("mqtt5", "mqtt311"):
        mqtt(5 if system == "mqtt5" else 4, role, dest, n, *rest)
    elif system == "nats" and role == "jetstream":
        asyncio.run(nats_jetstream(dest, n))
    elif system == "nats":
        asyncio.run(nats_main(role, dest, n, *rest))

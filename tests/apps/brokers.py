#!/usr/bin/env python3
"""Producers and consumers for tests/brokers.rs, one process each.

    brokers.py SYSTEM produce DEST N
    brokers.py SYSTEM consume DEST N URL READY_FILE

SYSTEM is amqp (pika, RabbitMQ 5672, DEST a queue on the default
exchange), mqtt5 or mqtt311 (paho-mqtt, Mosquitto 1883, DEST a topic) or
nats (nats-py, 4222, DEST a subject). A producer publishes N messages
`message i`, 0.3 s apart (so that each is read on its own). A consumer
creates READY_FILE once subscribed, then for each of N messages calls URL
(GET) before taking the next, and exits.

With CARRY_TRACEPARENT set, a producer puts that value in each message's
headers itself as `traceparent` (AMQP headers table, MQTT 5 user property,
NATS header), as an instrumented producer would."""
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
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"lumigo-{role}-{version}", protocol=proto)
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
            c.publish(dest, f"message {i}", qos=1, properties=props).wait_for_publish()
            time.sleep(0.3)
        c.disconnect()
        c.loop_stop()
        return
    seen = []

    def on_message(cl, ud, msg):
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
            call(url)
            seen.append(msg.data)
            if len(seen) == n:
                done.set()

        await nc.subscribe(dest, cb=handler)
        await nc.flush()
        ready(ready_file)
        await asyncio.wait_for(done.wait(), 30)
    await nc.close()


if __name__ == "__main__":
    system, role, dest, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rest = sys.argv[5:]
    if system == "amqp":
        amqp(role, dest, n, *rest)
    elif system in ("mqtt5", "mqtt311"):
        mqtt(5 if system == "mqtt5" else 4, role, dest, n, *rest)
    elif system == "nats":
        asyncio.run(nats_main(role, dest, n, *rest))

//! Message brokers from the wire: real clients (pika, paho-mqtt with MQTT 5
//! and 3.1.1, nats-py) against the RabbitMQ, Mosquitto and NATS servers on
//! this machine, producer and consumer each a traced process. The producer
//! makes PRODUCER spans, the consumer CONSUMER spans, and the HTTP call the
//! consumer makes while processing a message is that CONSUMER span's child.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(60);
const MESSAGES: usize = 3;

fn app() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apps/brokers.py")
        .display()
        .to_string()
}

fn a<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

/// Runs a traced consumer and, once it is subscribed, a traced producer,
/// of `MESSAGES` messages to `dest`; returns (producer spans, consumer spans).
fn produce_and_consume(system: &str, dest: &str) -> (Vec<Value>, Vec<Value>) {
    produce_and_consume_carrying(system, dest, None)
}

/// [`produce_and_consume`]; with `carry`, the producer runs untraced and
/// puts that `traceparent` in each message's headers itself.
fn produce_and_consume_carrying(
    system: &str,
    dest: &str,
    carry: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    let tmp = TempDir::new(&format!("brokers-{system}"));
    let port = free_port();
    let mut cmd = std::process::Command::new("python3");
    cmd.args([
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        &port.to_string(),
    ])
    .current_dir(&tmp.0);
    let _http = Server::spawn(cmd, port);
    let url = format!("http://127.0.0.1:{port}/");
    let (pdump, cdump, ready) = (tmp.path("p.jsonl"), tmp.path("c.jsonl"), tmp.path("ready"));
    let n = MESSAGES.to_string();

    let mut consumer = traced("python3");
    consumer
        .args([&app(), system, "consume", dest, &n, &url])
        .arg(&ready)
        .env("LUMIGO_DEBUG_SPANDUMP", &cdump)
        .env("OTEL_SERVICE_NAME", "consumer")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let consumer = consumer.spawn().expect("spawn consumer");
    let deadline = Instant::now() + T;
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready.exists(), "the consumer never subscribed");

    let mut producer = match carry {
        Some(tp) => {
            let mut cmd = std::process::Command::new("python3");
            cmd.env("CARRY_TRACEPARENT", tp).env_remove("LD_PRELOAD");
            cmd
        }
        None => traced("python3"),
    };
    producer
        .args([&app(), system, "produce", dest, &n])
        .env("LUMIGO_DEBUG_SPANDUMP", &pdump)
        .env("OTEL_SERVICE_NAME", "producer");
    let out = run(producer, T);
    assert!(out.status.success(), "producer: {out:?}");
    let out = wait_output(consumer, T);
    assert!(out.status.success(), "consumer: {out:?}");
    (read_spandump(&pdump), read_spandump(&cdump))
}

/// Checks both sides' spans: `MESSAGES` PRODUCER spans named
/// `publish {dest_name}`, as many CONSUMER spans, each the parent of the
/// consumer's HTTP call made while processing it. Returns them.
fn check<'a>(
    system: &str,
    dest_name: &str,
    producer: &'a [Value],
    consumer: &'a [Value],
) -> (Vec<&'a Value>, Vec<&'a Value>) {
    let published = of_kind(producer, "SpanKind.PRODUCER");
    let received = of_kind(consumer, "SpanKind.CONSUMER");
    assert_eq!(published.len(), MESSAGES, "{producer:#?}");
    assert_eq!(received.len(), MESSAGES, "{consumer:#?}");
    for p in &published {
        assert_eq!(p["name"], format!("publish {dest_name}"), "{p:#}");
        assert_eq!(a(p, "messaging.system"), system);
        assert_eq!(a(p, "messaging.operation.type"), "send");
        assert_eq!(a(p, "messaging.operation.name"), "publish");
        assert_eq!(a(p, "messaging.destination.name"), dest_name);
        assert_eq!(a(p, "messaging.message.body.size"), "message 0".len());
        assert!(a(p, "server.port").is_i64(), "{p:#}");
    }
    let calls: Vec<&Value> = http_spans(consumer)
        .into_iter()
        .filter(|s| kind(s) == "SpanKind.CLIENT")
        .collect();
    assert_eq!(calls.len(), MESSAGES, "{consumer:#?}");
    for c in &received {
        assert_eq!(a(c, "messaging.system"), system);
        assert_eq!(a(c, "messaging.destination.name"), dest_name);
        assert_eq!(a(c, "messaging.message.body.size"), "message 0".len());
        // The call made while processing this message is its child.
        let children: Vec<&&Value> = calls
            .iter()
            .filter(|h| parent_id(h) == Some(span_id(c)) && trace_id(h) == trace_id(c))
            .collect();
        assert_eq!(children.len(), 1, "{c:#} in {consumer:#?}");
    }
    (published, received)
}

fn unique(prefix: &str, sep: &str) -> String {
    format!("{prefix}{sep}{}{sep}{}", std::process::id(), free_port())
}

#[test]
fn rabbitmq_pika_publish_and_consume_make_producer_and_consumer_spans() {
    assert!(python_has("pika"), "pip install pika");
    let queue = unique("lumigo-test", ".");
    let (p, c) = produce_and_consume("amqp", &queue);
    let (published, received) = check("rabbitmq", &queue, &p, &c);
    for (i, s) in published.iter().enumerate() {
        assert_eq!(
            a(s, "messaging.rabbitmq.destination.routing_key"),
            queue.as_str()
        );
        assert_eq!(a(s, "messaging.message.id"), format!("id-{i}").as_str());
        assert_eq!(a(s, "server.port"), 5672);
    }
    for (i, s) in received.iter().enumerate() {
        assert_eq!(s["name"], format!("process {queue}"));
        assert_eq!(a(s, "messaging.operation.type"), "process");
        assert_eq!(a(s, "messaging.message.id"), format!("id-{i}").as_str());
        assert!(a(s, "messaging.rabbitmq.message.delivery_tag").is_i64());
    }
}

fn mqtt(system: &str, version: &str) {
    assert!(python_has("paho.mqtt"), "pip install paho-mqtt");
    let topic = unique("lumigo/test", "/");
    let (p, c) = produce_and_consume(system, &topic);
    let (published, received) = check("mqtt", &topic, &p, &c);
    for s in &published {
        assert_eq!(
            a(s, "messaging.client.id"),
            format!("lumigo-produce-{version}").as_str()
        );
        assert_eq!(a(s, "server.port"), 1883);
    }
    for s in &received {
        assert_eq!(s["name"], format!("process {topic}"));
        assert_eq!(
            a(s, "messaging.client.id"),
            format!("lumigo-consume-{version}").as_str()
        );
    }
}

#[test]
fn mqtt5_paho_publish_and_receive_make_producer_and_consumer_spans() {
    mqtt("mqtt5", "5");
}

#[test]
fn mqtt311_paho_publish_and_receive_make_producer_and_consumer_spans() {
    mqtt("mqtt311", "4");
}

#[test]
fn nats_py_publish_and_receive_make_producer_and_consumer_spans() {
    assert!(python_has("nats"), "pip install nats-py");
    let subject = unique("lumigo.test", ".");
    let (p, c) = produce_and_consume("nats", &subject);
    let (published, received) = check("nats", &subject, &p, &c);
    for s in published.iter().chain(&received) {
        assert!(a(s, "messaging.client.id").is_string(), "{s:#}");
    }
    assert_eq!(a(published[0], "server.port"), 4222);
}

/// A message whose headers carry a `traceparent` (put there by an untraced,
/// say OTel-instrumented, producer): its CONSUMER span continues that trace
/// as the child of the span it names, and the worker's call follows.
fn carried(system: &str, dest: &str) {
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (p, c) = produce_and_consume_carrying(system, dest, Some(tp));
    assert!(p.is_empty(), "the producer was not traced");
    let received = of_kind(&c, "SpanKind.CONSUMER");
    assert_eq!(received.len(), MESSAGES, "{c:#?}");
    for s in &received {
        assert_eq!(trace_id(s), "0x0af7651916cd43dd8448eb211c80319c", "{s:#}");
        assert_eq!(parent_id(s), Some("0xb7ad6b7169203331"), "{s:#}");
        let calls: Vec<&Value> = http_spans(&c)
            .into_iter()
            .filter(|h| parent_id(h) == Some(span_id(s)))
            .collect();
        assert_eq!(calls.len(), 1, "{c:#?}");
        assert_eq!(trace_id(calls[0]), trace_id(s));
    }
}

#[test]
fn rabbitmq_a_traceparent_in_the_message_headers_is_continued_by_the_consumer() {
    carried("amqp", &unique("lumigo-test", "."));
}

#[test]
fn mqtt5_a_traceparent_user_property_is_continued_by_the_consumer() {
    carried("mqtt5", &unique("lumigo/test", "/"));
}

#[test]
fn nats_a_traceparent_header_is_continued_by_the_consumer() {
    carried("nats", &unique("lumigo.test", "."));
}

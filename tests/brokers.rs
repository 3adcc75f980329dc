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
    let (p, c, _) = produce_and_consume_carrying(system, dest, None);
    (p, c)
}

/// [`produce_and_consume`]; with `carry`, the producer runs untraced and
/// puts that `traceparent` in each message's headers itself.
fn produce_and_consume_carrying(
    system: &str,
    dest: &str,
    carry: Option<&str>,
) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let r = run_pair(system, dest, carry, carry.is_none(), true);
    (r.producer, r.consumer, r.server)
}

/// What one producer/consumer run left: each side's spans, the called
/// service's, and the `traceparent` the consumer app saw in each message's
/// headers (`-`: none).
struct Pair {
    producer: Vec<Value>,
    consumer: Vec<Value>,
    server: Vec<Value>,
    seen: Vec<String>,
}

/// Runs a consumer and, once it is subscribed, a producer of `MESSAGES`
/// messages to `dest`, each traced or not; with `carry`, the producer puts
/// that `traceparent` in each message's headers itself.
fn run_pair(
    system: &str,
    dest: &str,
    carry: Option<&str>,
    producer_traced: bool,
    consumer_traced: bool,
) -> Pair {
    let n = MESSAGES.to_string();
    run_pair_with(system, dest, consumer_traced, &mut |pdump| {
        let mut producer = if producer_traced {
            traced("python3")
        } else {
            untraced("python3")
        };
        if let Some(tp) = carry {
            producer.env("CARRY_TRACEPARENT", tp);
        }
        producer
            .args([&app(), system, "produce", dest, &n])
            .env("LUMIGO_DEBUG_SPANDUMP", pdump)
            .env("OTEL_SERVICE_NAME", "producer");
        let out = run(producer, T);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("producer: {out:?}"))
        }
    })
}

/// [`run_pair`] with the producing done by `produce` (given the producer's
/// span dump path), once the consumer is subscribed.
fn run_pair_with(
    system: &str,
    dest: &str,
    consumer_traced: bool,
    produce: &mut dyn FnMut(&Path) -> Result<(), String>,
) -> Pair {
    run_pair_consuming_with(("python3", &app()), system, dest, consumer_traced, produce)
}

/// [`run_pair_with`] with the consumer run as `program app_path …` (the
/// same command line as `tests/apps/brokers.py`).
fn run_pair_consuming_with(
    (program, consumer_app): (&str, &str),
    system: &str,
    dest: &str,
    consumer_traced: bool,
    produce: &mut dyn FnMut(&Path) -> Result<(), String>,
) -> Pair {
    let tmp = TempDir::new(&format!("brokers-{system}"));
    let port = free_port();
    // The service the worker calls, traced too.
    let mut cmd = traced("python3");
    cmd.env("LUMIGO_DEBUG_SPANDUMP", tmp.path("s.jsonl"))
        .env("OTEL_SERVICE_NAME", "downstream");
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

    let mut consumer = if consumer_traced {
        traced(program)
    } else {
        untraced(program)
    };
    consumer
        .args([consumer_app, system, "consume", dest, &n, &url])
        .arg(&ready)
        .env("LUMIGO_DEBUG_SPANDUMP", &cdump)
        .env("OTEL_SERVICE_NAME", "consumer")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut consumer = consumer.spawn().expect("spawn consumer");
    let deadline = Instant::now() + T;
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !ready.exists() {
        let _ = consumer.kill();
        let _ = consumer.wait();
        panic!("the consumer never subscribed");
    }

    if let Err(why) = produce(&pdump) {
        // Not left behind to reconnect.
        let _ = consumer.kill();
        let _ = consumer.wait();
        panic!("{why}");
    }
    let out = wait_output(consumer, T);
    assert!(out.status.success(), "consumer: {out:?}");
    drop(_http);
    let sdump = tmp.path("s.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_spandump(&sdump).len() < MESSAGES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Pair {
        producer: read_spandump(&pdump),
        consumer: read_spandump(&cdump),
        server: read_spandump(&sdump),
        seen: String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("tp "))
            .map(str::to_owned)
            .collect(),
    }
}

fn untraced(program: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env_remove("LD_PRELOAD");
    cmd
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

/// The (trace id, span id) of a span's one link, as the span dump writes
/// ids.
fn link(span: &Value) -> (&str, &str) {
    let links = span["links"].as_array().expect("links");
    assert_eq!(links.len(), 1, "{span:#}");
    let cx = &links[0]["context"];
    (
        cx["trace_id"].as_str().expect("trace id"),
        cx["span_id"].as_str().expect("span id"),
    )
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
    // The apps' client ids end with the topic's last two parts.
    let mut parts = topic.rsplit('/');
    let (port, pid) = (parts.next().unwrap(), parts.next().unwrap());
    let suffix = format!("{pid}-{port}");
    let (p, c) = produce_and_consume(system, &topic);
    let (published, received) = check("mqtt", &topic, &p, &c);
    for s in &published {
        assert_eq!(
            a(s, "messaging.client.id"),
            format!("lumigo-produce-{version}-{suffix}").as_str()
        );
        assert_eq!(a(s, "server.port"), 1883);
    }
    for s in &received {
        assert_eq!(s["name"], format!("process {topic}"));
        assert_eq!(
            a(s, "messaging.client.id"),
            format!("lumigo-consume-{version}-{suffix}").as_str()
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
    let (p, c, _) = produce_and_consume_carrying(system, dest, Some(tp));
    assert!(p.is_empty(), "the producer was not traced");
    let received = of_kind(&c, "SpanKind.CONSUMER");
    assert_eq!(received.len(), MESSAGES, "{c:#?}");
    for s in &received {
        assert_eq!(trace_id(s), "0x0af7651916cd43dd8448eb211c80319c", "{s:#}");
        assert_eq!(parent_id(s), Some("0xb7ad6b7169203331"), "{s:#}");
        assert_eq!(
            link(s),
            ("0x0af7651916cd43dd8448eb211c80319c", "0xb7ad6b7169203331")
        );
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

/// MQTT 3.1.1 has no headers: the producer put the `traceparent` in the
/// payload itself (a JSON envelope, as in seed 004).
#[test]
fn mqtt311_a_traceparent_in_the_payload_is_continued_by_the_consumer() {
    carried("mqtt311", &unique("lumigo/test", "/"));
}

#[test]
fn nats_a_traceparent_header_is_continued_by_the_consumer() {
    carried("nats", &unique("lumigo.test", "."));
}

/// The topology of seed 004 with the context carried by the broker: a
/// traced producer publishes, a traced worker receives each message and
/// calls a traced HTTP service. One trace per message, by ids: PRODUCER
/// span (the producer's) → CONSUMER span (the worker's) → the worker's
/// CLIENT span → the service's SERVER span. The worker got each body as
/// published (the app checks).
fn one_trace_through(system: &str, dest_name: &str, dest: &str) {
    let (p, c, s) = produce_and_consume_carrying(system, dest, None);
    let (published, received) = check(system_name(system), dest_name, &p, &c);
    let served = of_kind(&s, "SpanKind.SERVER");
    assert_eq!(served.len(), MESSAGES, "{s:#?}");
    for r in &received {
        let producer = published
            .iter()
            .find(|p| Some(span_id(p)) == parent_id(r))
            .unwrap_or_else(|| panic!("no PRODUCER parent: {r:#} in {p:#?}"));
        assert_eq!(trace_id(producer), trace_id(r));
        assert_eq!(link(r), (trace_id(producer), span_id(producer)));
        let call = http_spans(&c)
            .into_iter()
            .find(|h| kind(h) == "SpanKind.CLIENT" && parent_id(h) == Some(span_id(r)))
            .expect("the worker's call");
        assert_eq!(trace_id(call), trace_id(r));
        let server = served
            .iter()
            .find(|v| parent_id(v) == Some(span_id(call)))
            .unwrap_or_else(|| panic!("no SERVER span under {call:#} in {s:#?}"));
        assert_eq!(trace_id(server), trace_id(r));
    }
    // Each message its own trace.
    let mut traces: Vec<&str> = received.iter().map(|r| trace_id(r)).collect();
    traces.dedup();
    assert_eq!(traces.len(), MESSAGES);
}

fn system_name(system: &str) -> &'static str {
    match system {
        "amqp" => "rabbitmq",
        "nats" => "nats",
        _ => "mqtt",
    }
}

#[test]
fn nats_one_trace_from_publisher_to_the_workers_downstream_call() {
    assert!(python_has("nats"), "pip install nats-py");
    let subject = unique("lumigo.test", ".");
    one_trace_through("nats", &subject, &subject);
}

#[test]
fn rabbitmq_one_trace_from_publisher_to_the_workers_downstream_call() {
    assert!(python_has("pika"), "pip install pika");
    let queue = unique("lumigo-test", ".");
    one_trace_through("amqp", &queue, &queue);
}

#[test]
fn mqtt5_one_trace_from_publisher_to_the_workers_downstream_call() {
    assert!(python_has("paho.mqtt"), "pip install paho-mqtt");
    let topic = unique("lumigo/test", "/");
    one_trace_through("mqtt5", &topic, &topic);
}

/// `tests/apps/nats_raw.py`: many publishes written at once through a
/// socket with a small send buffer, so the kernel takes them in pieces
/// that end anywhere, inside the rewritten headers too. Every message
/// arrives exactly as published, with the `traceparent` of its own
/// PRODUCER span; the app's counts add up (its connection stays in step:
/// its PING after the messages is answered).
fn nats_small_send_buffer(mode: &str) {
    let tmp = TempDir::new(&format!("brokers-nats-raw-{mode}"));
    let dump = tmp.path("spans.jsonl");
    let subject = unique("lumigo.raw", ".");
    let n = 300;
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/nats_raw.py");
    let mut cmd = traced("python3");
    cmd.arg(&app)
        .args([mode, &subject, &n.to_string(), "700"])
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    if mode == "nonblocking" {
        let calls: usize = stdout
            .lines()
            .find_map(|l| l.strip_prefix("calls "))
            .and_then(|c| c.parse().ok())
            .expect("calls");
        assert!(calls > 1, "the kernel took it all at once: {calls}");
    }
    let carried: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("calls"))
        .map(|l| l.split(' ').nth(1).unwrap_or("-"))
        .collect();
    assert_eq!(carried.len(), n);
    let spans = read_spandump(&dump);
    let published = of_kind(&spans, "SpanKind.PRODUCER");
    assert_eq!(published.len(), n);
    for (i, tp) in carried.iter().enumerate() {
        let span = tp
            .split('-')
            .nth(2)
            .unwrap_or_else(|| panic!("message {i}: {tp}"));
        let p = published
            .iter()
            .find(|p| span_id(p) == format!("0x{span}"))
            .unwrap_or_else(|| panic!("message {i}: no PRODUCER span {tp}"));
        assert_eq!(
            trace_id(p),
            format!("0x{}", tp.split('-').nth(1).unwrap()),
            "{p:#}"
        );
    }
}

#[test]
fn nats_publishes_through_a_small_send_buffer_blocking() {
    nats_small_send_buffer("blocking");
}

#[test]
fn nats_publishes_through_a_small_send_buffer_nonblocking() {
    nats_small_send_buffer("nonblocking");
}

/// The context a traced producer put in the messages, as an untraced
/// consumer's app sees it in their headers: each names one of the
/// producer's PRODUCER spans.
fn untraced_consumer_sees(system: &str, dest: &str) {
    let r = run_pair(system, dest, None, true, false);
    assert!(r.consumer.is_empty(), "the consumer was not traced");
    let published = of_kind(&r.producer, "SpanKind.PRODUCER");
    assert_eq!(published.len(), MESSAGES);
    assert_eq!(r.seen.len(), MESSAGES, "{:?}", r.seen);
    for (tp, p) in r.seen.iter().zip(&published) {
        let ids: Vec<&str> = tp.split('-').collect();
        assert_eq!(ids.len(), 4, "{tp}");
        assert_eq!(format!("0x{}", ids[1]), trace_id(p), "{tp} {p:#}");
        assert_eq!(format!("0x{}", ids[2]), span_id(p), "{tp} {p:#}");
    }
}

/// A traced producer whose app put its own `traceparent` in the message:
/// left alone, so the consumer continues the app's context, not ours.
fn own_traceparent_left_alone(system: &str, dest: &str) {
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = run_pair(system, dest, Some(tp), true, true);
    assert_eq!(of_kind(&r.producer, "SpanKind.PRODUCER").len(), MESSAGES);
    assert_eq!(r.seen, vec![tp.to_owned(); MESSAGES]);
    for s in of_kind(&r.consumer, "SpanKind.CONSUMER") {
        assert_eq!(parent_id(s), Some("0xb7ad6b7169203331"), "{s:#}");
    }
}

#[test]
fn nats_untraced_consumer_sees_the_injected_traceparent() {
    untraced_consumer_sees("nats", &unique("lumigo.test", "."));
}

#[test]
fn rabbitmq_untraced_consumer_sees_the_injected_traceparent() {
    untraced_consumer_sees("amqp", &unique("lumigo-test", "."));
}

#[test]
fn mqtt5_untraced_consumer_sees_the_injected_traceparent() {
    untraced_consumer_sees("mqtt5", &unique("lumigo/test", "/"));
}

#[test]
fn nats_a_traced_producers_own_traceparent_is_left_alone() {
    own_traceparent_left_alone("nats", &unique("lumigo.test", "."));
}

#[test]
fn rabbitmq_a_traced_producers_own_traceparent_is_left_alone() {
    own_traceparent_left_alone("amqp", &unique("lumigo-test", "."));
}

#[test]
fn mqtt5_a_traced_producers_own_traceparent_is_left_alone() {
    own_traceparent_left_alone("mqtt5", &unique("lumigo/test", "/"));
}

/// Seed 004 whole, over RabbitMQ: curl calls an HTTP server that publishes
/// a message on the request's thread; a worker consumes it and calls
/// another service. One trace per request, by ids: curl's CLIENT span →
/// the server's SERVER span → its PRODUCER span → the worker's CONSUMER
/// span → the worker's CLIENT span → the service's SERVER span.
#[test]
fn rabbitmq_seed_004_one_trace_from_curl_to_the_workers_downstream_service() {
    assert!(python_has("pika"), "pip install pika");
    let queue = unique("lumigo-test", ".");
    let tmp = TempDir::new("brokers-seed-004");
    let (front_dump, curl_dump) = (tmp.path("front.jsonl"), tmp.path("curl.jsonl"));
    let port = free_port();
    let mut front = traced("python3");
    front
        .args([&app(), "amqp", "serve", &queue, &port.to_string()])
        .env("LUMIGO_DEBUG_SPANDUMP", &front_dump)
        .env("OTEL_SERVICE_NAME", "front");
    let front = Server::spawn(front, port);
    // The worker and the service it calls, from the usual harness, with
    // curl as the producer.
    let r = run_pair_with("amqp", &queue, true, &mut |_| {
        for i in 0..MESSAGES {
            let mut curl = traced("curl");
            curl.args(["-sf", &format!("http://127.0.0.1:{port}/publish?i={i}")])
                .env("LUMIGO_DEBUG_SPANDUMP", &curl_dump)
                .env("OTEL_SERVICE_NAME", "curl");
            let out = run(curl, T);
            if !out.status.success() {
                return Err(format!("curl: {out:?}"));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while of_kind(&read_spandump(&front_dump), "SpanKind.PRODUCER").len() < MESSAGES
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(front);
    let front = read_spandump(&front_dump);
    let curl = read_spandump(&curl_dump);
    let calls = of_kind(&curl, "SpanKind.CLIENT");
    assert_eq!(calls.len(), MESSAGES, "{curl:#?}");
    let received = of_kind(&r.consumer, "SpanKind.CONSUMER");
    assert_eq!(received.len(), MESSAGES, "{:#?}", r.consumer);
    for call in &calls {
        let served = of_kind(&front, "SpanKind.SERVER")
            .into_iter()
            .find(|s| parent_id(s) == Some(span_id(call)))
            .unwrap_or_else(|| panic!("no SERVER span under {call:#} in {front:#?}"));
        let published = of_kind(&front, "SpanKind.PRODUCER")
            .into_iter()
            .find(|p| parent_id(p) == Some(span_id(served)))
            .unwrap_or_else(|| panic!("no PRODUCER span under {served:#} in {front:#?}"));
        let consumed = received
            .iter()
            .find(|c| parent_id(c) == Some(span_id(published)))
            .unwrap_or_else(|| panic!("no CONSUMER span under {published:#}"));
        let worker_call = http_spans(&r.consumer)
            .into_iter()
            .find(|h| kind(h) == "SpanKind.CLIENT" && parent_id(h) == Some(span_id(consumed)))
            .expect("the worker's call");
        let downstream = of_kind(&r.server, "SpanKind.SERVER")
            .into_iter()
            .find(|s| parent_id(s) == Some(span_id(worker_call)))
            .expect("the service's SERVER span");
        for s in [served, published, consumed, worker_call, downstream] {
            assert_eq!(trace_id(s), trace_id(call), "{s:#}");
        }
    }
}

/// `tests/fixtures/node-brokers/brokers.js` (MQTT.js, MQTT 5), with its
/// packages installed by `scripts/install-deps.sh` (`npm ci`).
fn node_app() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-brokers");
    assert!(
        dir.join("node_modules/mqtt").is_dir(),
        "run scripts/install-deps.sh (npm ci in {})",
        dir.display()
    );
    dir.join("brokers.js").display().to_string()
}

/// A traced Node.js producer (MQTT.js, MQTT 5) publishes `MESSAGES`
/// messages to a consumer run as `consumer`; returns both sides' spans and
/// what the consumer saw, after the usual checks ([`check`]) and those of
/// the Node producer: its PRODUCER spans carry its client id, and each
/// CONSUMER span is the child of one of them (the context went in the
/// message's user properties, which the consumer app saw too). The
/// consumer app checked each payload arrived as published.
fn node_mqtt5_producer_to(consumer: (&str, &str)) -> Pair {
    let topic = unique("lumigo/test", "/");
    let suffix = topic.rsplit('/').next().unwrap().to_owned();
    let n = MESSAGES.to_string();
    let node = node_app();
    let r = run_pair_consuming_with(consumer, "mqtt5", &topic, true, &mut |pdump| {
        let mut producer = traced("node");
        producer
            .args([&node, "mqtt5", "produce", &topic, &n])
            .env("LUMIGO_DEBUG_SPANDUMP", pdump)
            .env("OTEL_SERVICE_NAME", "node-producer");
        let out = run(producer, T);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("node producer: {out:?}"))
        }
    });
    let (published, received) = check("mqtt", &topic, &r.producer, &r.consumer);
    for p in &published {
        assert_eq!(service(p), "node-producer", "{p:#}");
        assert_eq!(
            a(p, "messaging.client.id"),
            format!("lumigo-node-produce-5-{suffix}").as_str()
        );
        assert_eq!(a(p, "server.port"), 1883);
    }
    assert_eq!(r.seen.len(), MESSAGES, "{:?}", r.seen);
    for (c, tp) in received.iter().zip(&r.seen) {
        assert_eq!(c["name"], format!("process {topic}"));
        let parent = published
            .iter()
            .find(|p| Some(span_id(p)) == parent_id(c))
            .unwrap_or_else(|| panic!("no PRODUCER parent: {c:#} in {:#?}", r.producer));
        assert_eq!(trace_id(parent), trace_id(c));
        let ids: Vec<&str> = tp.split('-').collect();
        assert_eq!(ids.len(), 4, "{tp}");
        assert_eq!(format!("0x{}", ids[2]), span_id(parent), "{tp}");
    }
    r
}

#[test]
fn mqtt5_node_mqttjs_producer_to_python_consumer_one_trace() {
    assert!(python_has("paho.mqtt"), "pip install paho-mqtt");
    let r = node_mqtt5_producer_to(("python3", &app()));
    for c in of_kind(&r.consumer, "SpanKind.CONSUMER") {
        assert_eq!(service(c), "consumer", "{c:#}");
    }
}

#[test]
fn mqtt5_node_mqttjs_producer_to_node_consumer_one_trace() {
    let r = node_mqtt5_producer_to(("node", &node_app()));
    for c in of_kind(&r.consumer, "SpanKind.CONSUMER") {
        assert_eq!(service(c), "consumer", "{c:#}");
        let id = a(c, "messaging.client.id").as_str().unwrap_or_default();
        assert!(id.starts_with("lumigo-node-consume-5-"), "{c:#}");
    }
}

/// nats-py publishing to JetStream (`tests/apps/brokers.py nats jetstream`,
/// against the local nats-server, which runs with JetStream): each
/// publish's PRODUCER span ends with its acknowledgement and says the
/// stream and sequence the app was told; one naming another stream is
/// refused with a JSON error (`error.type=400`), one to a subject no stream
/// takes with a 503 status (no responders). Acknowledgements are no
/// messages of their own: the only CONSUMER spans are the replies to the
/// JetStream API requests (creating and deleting the stream).
#[test]
fn nats_jetstream_publish_spans_end_with_their_acknowledgement() {
    assert!(python_has("nats"), "pip install nats-py");
    let tmp = TempDir::new("brokers-nats-jetstream");
    let dump = tmp.path("spans.jsonl");
    let subject = unique("lumigo.js", ".");
    let mut cmd = traced("python3");
    cmd.args([&app(), "nats", "jetstream", &subject, &MESSAGES.to_string()])
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let told: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(told.len(), MESSAGES + 2, "{told:?}");
    assert_eq!(told[MESSAGES..], ["refused 400", "refused 503"]);
    let spans = read_spandump(&dump);
    let published = of_kind(&spans, "SpanKind.PRODUCER");
    let to = |name: &str| -> Vec<&Value> {
        published
            .iter()
            .copied()
            .filter(|s| s["name"] == format!("publish {name}"))
            .collect()
    };
    let sent = to(&subject);
    assert_eq!(sent.len(), MESSAGES + 1, "{spans:#?}");
    for (s, ack) in sent[..MESSAGES].iter().zip(&told) {
        let (stream, seq) = ack
            .strip_prefix("ack ")
            .and_then(|a| a.split_once(' '))
            .unwrap_or_else(|| panic!("{ack}"));
        assert_eq!(a(s, "messaging.nats.jetstream.stream"), stream, "{s:#}");
        assert_eq!(
            a(s, "messaging.nats.jetstream.sequence"),
            seq.parse::<i64>().unwrap(),
            "{s:#}"
        );
        assert_eq!(s["status"]["status_code"], "UNSET", "{s:#}");
        // Ended with the acknowledgement read, after the payload went out.
        assert!(s["end_time"].as_str() > s["start_time"].as_str(), "{s:#}");
    }
    for (s, code) in [
        (sent[MESSAGES], "400"),
        (to(&format!("{subject}.nostream"))[0], "503"),
    ] {
        assert_eq!(a(s, "error.type"), code, "{s:#}");
        assert_eq!(s["status"]["status_code"], "ERROR", "{s:#}");
        assert!(a(s, "messaging.nats.jetstream.stream").is_null(), "{s:#}");
    }
    let api = published
        .iter()
        .filter(|s| {
            s["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("publish $JS.API.")
        })
        .count();
    assert_eq!(api, 2, "{spans:#?}");
    assert_eq!(
        of_kind(&spans, "SpanKind.CONSUMER").len(),
        api,
        "{spans:#?}"
    );
}

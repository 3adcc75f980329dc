//! Tests of [`Connection`]: spans from both directions, identities,
//! insertion and replacement of `traceparent`, and responses read before
//! their request was fed.

use super::*;
use crate::mask::Masker;
use crate::propagation::parse_traceparent;
use crate::span::SpanRecord;
use std::sync::{Arc, Mutex};

#[derive(Default, Clone)]
struct Collect(Arc<Mutex<Vec<SpanRecord>>>);
impl SpanSink for Collect {
    fn submit(&self, span: SpanRecord) {
        self.0.lock().unwrap().push(span);
    }
}

fn tracer() -> (Tracer, Collect) {
    let c = Collect::default();
    let patterns: Vec<String> = crate::config::DEFAULT_SECRET_PATTERNS
        .iter()
        .map(|s| s.to_string())
        .collect();
    (Tracer::new(Masker::new(&patterns), Box::new(c.clone())), c)
}

fn addr(s: &str) -> Option<Address> {
    Some(Address::Inet(s.parse().unwrap()))
}

#[test]
fn client_exchange_split_into_single_bytes_makes_one_span() {
    let (t, spans) = tracer();
    let mut c = Connection::client(addr("127.0.0.1:8080"), addr("127.0.0.1:5555"));
    let now = SystemTime::now();
    for b in b"GET /a?token=s HTTP/1.1\r\nHost: example\r\n\r\n".chunks(1) {
        assert!(matches!(c.on_outbound(b, now, &t), Flow::Continue));
    }
    assert_eq!(c.in_flight(), 1);
    for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".chunks(1) {
        assert!(matches!(c.on_inbound(b, now, &t), Flow::Continue));
    }
    let spans = spans.0.lock().unwrap();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.name, "GET");
    assert_eq!(s.attr("url.query"), Some(&"token=****".into()));
    assert_eq!(s.attr("http.response.status_code"), Some(&200i64.into()));
}

#[test]
fn server_speaking_first_is_not_http() {
    let (t, spans) = tracer();
    let mut c = Connection::client(addr("127.0.0.1:25"), None);
    let flow = c.on_inbound(
        b"220 mail.example.com ESMTP ready\r\n",
        SystemTime::now(),
        &t,
    );
    assert!(matches!(flow, Flow::Stop));
    assert!(spans.0.lock().unwrap().is_empty());
}

#[test]
fn tls_client_hello_is_not_http() {
    let (t, _) = tracer();
    let mut c = Connection::client(addr("127.0.0.1:443"), None);
    let flow = c.on_outbound(b"\x16\x03\x01\x02\x00\x01", SystemTime::now(), &t);
    assert!(matches!(flow, Flow::Stop));
}

#[test]
fn close_with_request_in_flight_reports_error() {
    let (t, spans) = tracer();
    let mut c = Connection::server(addr("127.0.0.1:40000"), addr("127.0.0.1:8000"));
    let now = SystemTime::now();
    let _ = c.on_inbound(b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", now, &t);
    c.on_close(now, CloseReason::Closed, &t);
    let spans = spans.0.lock().unwrap();
    assert_eq!(spans.len(), 1);
    assert!(spans[0].attr("error.type").is_some());
}

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn server_continues_the_request_trace_and_client_calls_become_children() {
    let (t, spans) = tracer();
    let now = SystemTime::now();
    let mut server = Connection::server(addr("127.0.0.1:40000"), addr("127.0.0.1:8000"));
    let req = format!("GET /in HTTP/1.1\r\ntraceparent: {TP}\r\ntracestate: k=v\r\n\r\n");
    let _ = server.on_inbound(req.as_bytes(), now, &t);

    // While serving, this thread calls downstream.
    let mut client = Connection::client(addr("127.0.0.1:9000"), None);
    let head = b"GET /down HTTP/1.1\r\nHost: d\r\n\r\n";
    let plan = client.plan_outbound(&[head], &t).expect("inject");
    assert_eq!(plan.at(), head.len() - 2);
    let line = String::from_utf8(plan.insert().to_vec()).unwrap();
    assert!(
        line.starts_with("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{line}"
    );
    assert!(line.ends_with("-01\r\ntracestate: k=v\r\n"), "{line}");
    assert_eq!(
        client.commit_outbound(&plan, head.len() + plan.insert().len()),
        head.len()
    );
    let _ = client.on_outbound(head, now, &t);
    let _ = client.on_inbound(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", now, &t);
    let _ = server.on_outbound(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", now, &t);
    assert_eq!(
        context::active(),
        None,
        "the response ends the active request"
    );

    let spans = spans.0.lock().unwrap();
    let (c, s) = (&spans[0], &spans[1]);
    assert_eq!(s.kind, crate::span::SpanKind::Server);
    assert_eq!(
        crate::span::hex(&s.context.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        s.parent_span_id.map(|p| crate::span::hex(&p)).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert!(s.parent_is_remote);
    assert_eq!(c.context.trace_id, s.context.trace_id);
    assert_eq!(c.parent_span_id, Some(s.context.span_id));
    let injected_span = &line[49..65];
    assert_eq!(
        injected_span,
        crate::span::hex(&c.context.span_id),
        "the line names the client span"
    );
}

#[test]
fn partial_writes_send_the_line_exactly_once() {
    let (t, _) = tracer();
    let mut c = Connection::client(addr("127.0.0.1:9000"), None);
    let head: &[u8] = b"GET / HTTP/1.1\r\nHost: d\r\n\r\n";
    let plan = c.plan_outbound(&[head], &t).unwrap();
    let (k, m) = (plan.at(), plan.insert().len());
    // The kernel takes the app bytes before the line and 10 line bytes.
    assert_eq!(c.commit_outbound(&plan, k + 10), k);
    let _ = c.on_outbound(&head[..k], SystemTime::now(), &t);
    // The app retries with the rest: the rest of the line goes first.
    let plan2 = c.plan_outbound(&[&head[k..]], &t).unwrap();
    assert_eq!(plan2.at(), 0);
    assert_eq!(plan2.insert(), &plan.insert()[10..]);
    assert_eq!(c.commit_outbound(&plan2, m - 10), 0);
    let plan3 = c.plan_outbound(&[&head[k..]], &t);
    assert_eq!(plan3, None, "the whole line is out: nothing more to insert");
}

#[test]
fn an_apps_own_traceparent_is_kept_and_becomes_the_parent() {
    let (t, spans) = tracer();
    let now = SystemTime::now();
    let mut c = Connection::client(addr("127.0.0.1:9000"), None);
    let head = format!("GET / HTTP/1.1\r\nTRACEPARENT: {TP}\r\n\r\n");
    assert_eq!(c.plan_outbound(&[head.as_bytes()], &t), None);
    let _ = c.on_outbound(head.as_bytes(), now, &t);
    let _ = c.on_inbound(b"HTTP/1.1 204 No Content\r\n\r\n", now, &t);
    let spans = spans.0.lock().unwrap();
    assert_eq!(
        crate::span::hex(&spans[0].parent_span_id.unwrap()),
        "00f067aa0ba902b7"
    );
}

#[test]
fn unsampled_traces_are_not_exported_but_propagate() {
    let (t, spans) = tracer();
    let now = SystemTime::now();
    let mut s = Connection::server(addr("127.0.0.1:40000"), None);
    let tp = TP.replace("-01", "-00");
    let _ = s.on_inbound(
        format!("GET / HTTP/1.1\r\ntraceparent: {tp}\r\n\r\n").as_bytes(),
        now,
        &t,
    );
    let mut c = Connection::client(addr("127.0.0.1:9000"), None);
    let plan = c.plan_outbound(&[b"GET / HTTP/1.1\r\n\r\n"], &t).unwrap();
    assert!(String::from_utf8_lossy(plan.insert()).contains("-00\r\n"));
    let _ = s.on_outbound(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", now, &t);
    assert!(spans.0.lock().unwrap().is_empty());
}

#[test]
fn environment_parent_adopts_root_spans() {
    let c = Collect::default();
    let t = Tracer::new(Masker::lumigo_defaults(), Box::new(c.clone()))
        .with_root(parse_traceparent(TP), Some("e=1".into()));
    let a = t.root_span();
    assert_eq!(
        crate::span::hex(&a.context.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(a.parent_is_remote);
    assert_eq!(a.context.trace_state.as_deref(), Some("e=1"));
}

/// Sends `head` as the preload does: plan, the real write taking
/// `sent` bytes of the combined write, commit, feed the app's bytes.
/// Returns the plan and how many app bytes went.
fn write(
    c: &mut Connection,
    head: &[u8],
    sent: Option<usize>,
    t: &Tracer,
) -> (Option<OutboundPlan>, usize) {
    let plan = c.plan_outbound(&[head], t);
    let wire = head.len() + plan.as_ref().map_or(0, |p| p.insert().len() - p.replace());
    let sent = sent.unwrap_or(wire).min(wire);
    let app = match &plan {
        Some(p) => c.commit_outbound(p, sent),
        None => sent,
    };
    let _ = c.on_outbound(&head[..app], SystemTime::now(), t);
    (plan, app)
}

fn cookie_head(cookie: usize, tail: &str) -> Vec<u8> {
    let mut h = b"GET /big HTTP/1.1\r\nHost: h\r\nCookie: c=".to_vec();
    h.resize(h.len() + cookie, b'j');
    h.extend_from_slice(format!("\r\n{tail}\r\n").as_bytes());
    h
}

#[test]
fn a_request_head_over_16_kib_gets_a_traceparent_and_an_ordinary_span() {
    let (t, spans) = tracer();
    let mut c = Connection::client(addr("127.0.0.1:9000"), None);
    let head = cookie_head(40 * 1024, "Accept: */*\r\n");
    for round in 0..3 {
        // The head in two writes, split before and after the cap.
        let split = [100, crate::http::MAX_HEAD_BYTES + 5, head.len() - 3][round];
        let (p1, _) = write(&mut c, &head[..split], None, &t);
        let (p2, _) = write(&mut c, &head[split..], None, &t);
        let plan = p1.or(p2).expect("a traceparent is inserted");
        let line = String::from_utf8(plan.insert().to_vec()).unwrap();
        let _ = c.on_inbound(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            SystemTime::now(),
            &t,
        );
        let spans = spans.0.lock().unwrap();
        assert_eq!(
            spans.len(),
            round + 1,
            "round {round}: the connection stays traced"
        );
        let s = &spans[round];
        assert_eq!(s.attr("http.response.status_code"), Some(&200i64.into()));
        assert_eq!(s.attr("error.type"), None);
        assert_eq!(s.attr("url.path"), Some(&"/big".into()));
        assert_eq!(&line[49..65], crate::span::hex(&s.context.span_id));
    }
}

const FORWARDED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A server connection on this thread serving a request that came with
/// [`FORWARDED`].
fn serving(t: &Tracer) -> Connection {
    let mut server = Connection::server(addr("127.0.0.1:40000"), addr("127.0.0.1:8000"));
    let req = format!("GET /in HTTP/1.1\r\nTraceparent: {FORWARDED}\r\n\r\n");
    let _ = server.on_inbound(req.as_bytes(), SystemTime::now(), t);
    server
}

#[test]
fn a_proxy_forwarding_the_inbound_traceparent_gets_it_replaced_in_place() {
    let (t, spans) = tracer();
    let mut server = serving(&t);
    let head = format!("GET /up HTTP/1.1\r\nHost: u\r\ntraceparent: {FORWARDED}\r\nX: y\r\n\r\n");
    let value_at = head.find(FORWARDED).unwrap();
    // Every way a partial write can cut the value.
    for cut in [
        0,
        value_at,
        value_at + 1,
        value_at + 30,
        value_at + 54,
        head.len(),
    ] {
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let mut wire = Vec::new();
        let mut sent = 0;
        let mut first = true;
        while sent < head.len() {
            let rest = &head.as_bytes()[sent..];
            let plan = c.plan_outbound(&[rest], &t);
            let mut combined = rest.to_vec();
            if let Some(p) = &plan {
                assert_eq!(p.insert().len(), p.replace(), "same length");
                combined.splice(p.at()..p.at() + p.replace(), p.insert().iter().copied());
            }
            let take = if first {
                (cut - sent).max(1).min(rest.len())
            } else {
                rest.len()
            };
            first = false;
            wire.extend_from_slice(&combined[..take]);
            let app = plan.as_ref().map_or(take, |p| c.commit_outbound(p, take));
            assert_eq!(app, take, "counts are the app's");
            let _ = c.on_outbound(&rest[..app], SystemTime::now(), &t);
            sent += app;
        }
        assert_eq!(wire.len(), head.len());
        let wire = String::from_utf8(wire).unwrap();
        let _ = c.on_inbound(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            SystemTime::now(),
            &t,
        );
        let spans = spans.0.lock().unwrap();
        let client = spans.last().unwrap();
        let ours = format_traceparent(&client.context);
        assert_eq!(wire, head.replace(FORWARDED, &ours), "cut {cut}");
        assert_eq!(
            crate::span::hex(&client.context.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            client.parent_span_id,
            Some(context::active().unwrap().span_id),
            "child of our SERVER span"
        );
    }
    let _ = server.on_outbound(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        SystemTime::now(),
        &t,
    );
    assert_eq!(context::forwarded_parent(), None);
}

#[test]
fn a_traceparent_the_app_made_itself_is_not_replaced() {
    let (t, spans) = tracer();
    let mut server = serving(&t);
    let own = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
    let mut c = Connection::client(addr("127.0.0.1:9000"), None);
    let head = format!("GET / HTTP/1.1\r\ntraceparent: {own}\r\n\r\n");
    let (plan, _) = write(&mut c, head.as_bytes(), None, &t);
    assert_eq!(plan, None);
    let _ = c.on_inbound(b"HTTP/1.1 204 No Content\r\n\r\n", SystemTime::now(), &t);
    let _ = server.on_outbound(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        SystemTime::now(),
        &t,
    );
    let spans = spans.0.lock().unwrap();
    assert_eq!(
        crate::span::hex(&spans[0].parent_span_id.unwrap()),
        "1111111111111111"
    );
    // Without an inbound request, the forwarded value is just a value.
    let mut c = Connection::client(addr("127.0.0.1:9000"), None);
    let head = format!("GET / HTTP/1.1\r\ntraceparent: {FORWARDED}\r\n\r\n");
    assert_eq!(write(&mut c, head.as_bytes(), None, &t).0, None);
}

#[test]
fn a_response_read_before_its_request_was_fed_still_pairs() {
    let (t, spans) = tracer();
    let mut c = Connection::client(addr("127.0.0.1:9000"), None);
    let now = SystemTime::now();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    for (i, req) in [&b"GET /1 HTTP/1.1\r\n\r\n"[..], b"GET /2 HTTP/1.1\r\n\r\n"]
        .iter()
        .enumerate()
    {
        // The write is planned and goes out; another thread reads the
        // response before this one feeds the request.
        let plan = c.plan_outbound(&[req], &t).unwrap();
        for piece in ok.chunks(7) {
            assert_eq!(c.on_inbound(piece, now, &t), Flow::Continue);
        }
        let app = c.commit_outbound(&plan, req.len() + plan.insert().len());
        assert_eq!(c.on_outbound(&req[..app], now, &t), Flow::Continue);
        let spans = spans.0.lock().unwrap();
        assert_eq!(spans.len(), i + 1, "request {i} has its span");
        let s = &spans[i];
        assert_eq!(s.attr("http.response.status_code"), Some(&200i64.into()));
        assert_eq!(s.attr("http.response.body.size"), Some(&2i64.into()));
        let line = String::from_utf8_lossy(plan.insert());
        assert_eq!(&line[49..65], crate::span::hex(&s.context.span_id));
    }
    // A response with no write under way is not held: no span is made up.
    assert_eq!(c.on_inbound(ok, now, &t), Flow::Stop);
    assert_eq!(spans.0.lock().unwrap().len(), 2);
}

#[test]
fn a_held_response_whose_write_never_went_out_makes_no_span() {
    let (t, spans) = tracer();
    let now = SystemTime::now();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    // The write is planned and fails (EAGAIN, EPIPE): nothing is fed.
    let mut c = Connection::client(addr("127.0.0.1:9000"), None);
    let _ = c.plan_outbound(&[b"GET / HTTP/1.1\r\n\r\n"], &t);
    assert_eq!(c.on_inbound(ok, now, &t), Flow::Continue, "held");
    c.on_close(now, CloseReason::PeerClosed, &t);
    assert!(spans.0.lock().unwrap().is_empty(), "no span made up");
    // More than a response could be: not held, as before.
    let mut c = Connection::client(addr("127.0.0.1:9000"), None);
    let _ = c.on_outbound(b"GET /a HTTP/1.1\r\n\r\n", now, &t);
    let _ = c.on_inbound(ok, now, &t);
    let _ = c.plan_outbound(&[b"GET /b HTTP/1.1\r\n\r\n"], &t);
    let flood = vec![b'x'; MAX_HELD + 1];
    assert_eq!(c.on_inbound(&flood, now, &t), Flow::Stop);
    assert_eq!(spans.0.lock().unwrap().len(), 1, "only /a");
}

#[test]
fn a_database_over_a_unix_socket_names_it_and_has_no_port() {
    let (t, spans) = tracer();
    let now = SystemTime::now();
    let mut c = Connection::client(Address::unix(b"/tmp/redis.sock\0"), None);
    let _ = c.on_outbound(b"*1\r\n$4\r\nPING\r\n", now, &t);
    let _ = c.on_inbound(b"+PONG\r\n", now, &t);
    let spans = spans.0.lock().unwrap();
    assert_eq!(spans.len(), 1);
    let get = |k: &str| {
        spans[0]
            .attributes
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone())
    };
    let text = |v: &str| Some(crate::span::AttrValue::from(v));
    assert_eq!(get("server.address"), text("/tmp/redis.sock"));
    assert_eq!(get("network.peer.address"), text("/tmp/redis.sock"));
    assert_eq!(get("network.transport"), text("unix"));
    assert_eq!(get("server.port"), None);
    assert_eq!(get("network.peer.port"), None);
}

#[test]
fn message_brokers_are_recognised_from_their_first_bytes() {
    // Each protocol's captured client traffic, fed to a client connection:
    // the broker's spans come out, with the broker's address.
    let cases = [
        (
            include_str!("../tests/fixtures/amqp/pika.txt"),
            "127.0.0.1:5672",
            "publish amq.topic",
            "rabbitmq",
        ),
        (
            include_str!("../tests/fixtures/mqtt/paho_v5.txt"),
            "127.0.0.1:1883",
            "publish lumigo/fx/q1",
            "mqtt",
        ),
        (
            include_str!("../tests/fixtures/nats/nats_py.txt"),
            "127.0.0.1:4222",
            "process lumigo.fx.plain",
            "nats",
        ),
    ];
    for (fixture, server, name, system) in cases {
        let (t, spans) = tracer();
        let mut c = Connection::client(addr(server), None);
        let chunks = &crate::testkit::fixture::parse(fixture)[0];
        let now = SystemTime::now();
        for (outbound, _, bytes) in chunks {
            let flow = if *outbound {
                c.on_outbound(bytes, now, &t)
            } else {
                c.on_inbound(bytes, now, &t)
            };
            assert_eq!(flow, Flow::Continue, "{system}");
        }
        let spans = spans.0.lock().unwrap();
        let s = spans.iter().find(|s| s.name == name).expect(name);
        assert_eq!(s.attr("messaging.system"), Some(&system.into()));
        let port = i64::from(server.rsplit(':').next().unwrap().parse::<u16>().unwrap());
        assert_eq!(s.attr("server.port"), Some(&port.into()));
    }
}

#[test]
fn a_received_message_is_the_threads_context_until_the_next() {
    let (t, spans) = tracer();
    let now = SystemTime::now();
    let mut nats = Connection::client(addr("127.0.0.1:4222"), None);
    let _ = nats.on_inbound(b"INFO {\"headers\":true}\r\n", now, &t);
    let _ = nats.on_inbound(b"MSG jobs 1 2\r\nhi\r\n", now, &t);
    let first = spans.0.lock().unwrap()[0].context.clone();
    assert_eq!(context::active().map(|c| c.span_id), Some(first.span_id));
    // The worker calls a service while processing it: a child.
    let mut http = Connection::client(addr("127.0.0.1:8080"), None);
    let _ = http.on_outbound(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", now, &t);
    let _ = http.on_inbound(b"HTTP/1.1 204 No Content\r\n\r\n", now, &t);
    {
        let spans = spans.0.lock().unwrap();
        let call = spans.iter().find(|s| s.name == "GET").unwrap();
        assert_eq!(call.context.trace_id, first.trace_id);
        assert_eq!(call.parent_span_id, Some(first.span_id));
    }
    // The next message takes over, in a trace of its own.
    let _ = nats.on_inbound(b"MSG jobs 1 2\r\nho\r\n", now, &t);
    let second = spans.0.lock().unwrap().last().unwrap().clone();
    assert_eq!(second.name, "process jobs");
    assert_ne!(second.context.trace_id, first.trace_id);
    assert_eq!(
        context::active().map(|c| c.span_id),
        Some(second.context.span_id)
    );
    nats.on_close(now, CloseReason::Closed, &t);
    assert_eq!(context::active(), None);
}

#[test]
fn a_received_message_continues_the_trace_its_headers_carry() {
    let (t, spans) = tracer();
    let now = SystemTime::now();
    let mut nats = Connection::client(addr("127.0.0.1:4222"), None);
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let hdr = format!("NATS/1.0\r\ntraceparent: {tp}\r\n\r\n");
    let msg = format!("HMSG jobs 1 {} {}\r\n{hdr}hi\r\n", hdr.len(), hdr.len() + 2);
    let _ = nats.on_inbound(b"INFO {\"headers\":true}\r\n", now, &t);
    let _ = nats.on_inbound(msg.as_bytes(), now, &t);
    let spans = spans.0.lock().unwrap();
    let s = &spans[0];
    assert_eq!(s.name, "process jobs");
    assert_eq!(s.context.trace_id, parse_traceparent(tp).unwrap().trace_id);
    assert_eq!(
        s.parent_span_id,
        Some(parse_traceparent(tp).unwrap().span_id)
    );
    assert!(s.parent_is_remote);
    assert_eq!(
        context::active().map(|c| c.span_id),
        Some(s.context.span_id)
    );
    // And links to the context it continues.
    let link = crate::span::SpanLink {
        context: crate::span::SpanContext {
            trace_id: s.context.trace_id,
            span_id: s.parent_span_id.unwrap(),
            trace_flags: 1,
            trace_state: None,
        },
        remote: true,
    };
    assert_eq!(s.links, vec![link]);
}

/// With propagation off (`OTEL_PROPAGATORS=none`) a received message's
/// span starts its own trace, linked to the context the message carried.
#[test]
fn without_propagation_a_received_message_links_to_what_it_carries() {
    let (t, spans) = tracer();
    let t = t.with_propagators(crate::propagators::Propagators::NONE);
    let now = SystemTime::now();
    let mut nats = Connection::client(addr("127.0.0.1:4222"), None);
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let hdr = format!("NATS/1.0\r\nTraceParent: {tp}\r\ntracestate: a=b\r\n\r\n");
    let msg = format!("HMSG jobs 1 {} {}\r\n{hdr}hi\r\n", hdr.len(), hdr.len() + 2);
    let _ = nats.on_inbound(b"INFO {\"headers\":true}\r\n", now, &t);
    let _ = nats.on_inbound(msg.as_bytes(), now, &t);
    let spans = spans.0.lock().unwrap();
    let s = &spans[0];
    let carried = parse_traceparent(tp).unwrap();
    assert_eq!(s.parent_span_id, None);
    assert_ne!(s.context.trace_id, carried.trace_id);
    assert_eq!(s.links.len(), 1);
    let link = &s.links[0];
    assert_eq!(
        (link.context.trace_id, link.context.span_id),
        (carried.trace_id, carried.span_id)
    );
    assert_eq!(link.context.trace_flags, 0, "unsampled, as carried");
    assert_eq!(link.context.trace_state.as_deref(), Some("a=b"));
    assert!(link.remote);
}

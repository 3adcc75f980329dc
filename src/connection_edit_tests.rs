//! Broker messages made to carry a context, through [`Connection`]: the
//! captured client streams written in two writes cut at every point, with a
//! kernel that takes only a few bytes per call (a small send buffer). The
//! app's counts must add up to its own bytes exactly, every published
//! message must carry its PRODUCER span's `traceparent`, and the bytes on
//! the wire, parsed again, must give the same messages.

use super::*;
use crate::mask::Masker;
use crate::span::SpanRecord;
use crate::testkit::fixture::{parse, Chunk};
use std::sync::{Arc, Mutex};

#[derive(Default, Clone)]
struct Collect(Arc<Mutex<Vec<SpanRecord>>>);
impl SpanSink for Collect {
    fn submit(&self, span: SpanRecord) {
        self.0.lock().unwrap().push(span);
    }
}

fn tracer(inject: bool) -> (Tracer, Collect) {
    let c = Collect::default();
    let t = Tracer::new(Masker::new(&[]), Box::new(c.clone())).with_propagation(inject);
    (t, c)
}

/// What the preload's write path does for one write of `app`, with a
/// kernel that takes at most `room` bytes per call: the app's count, and
/// the bytes that went out.
fn write(c: &mut Connection, t: &Tracer, app: &[u8], room: usize, wire: &mut Vec<u8>) -> usize {
    let now = SystemTime::now();
    let Some(mut plan) = c.plan_outbound(&[app], t) else {
        let n = app.len().min(room);
        wire.extend_from_slice(&app[..n]);
        let _ = c.on_outbound(&app[..n], now, t);
        return n;
    };
    assert!(!plan.is_single());
    let mut done = 0;
    loop {
        let rest = &app[done..];
        let out = plan.apply(rest).expect("edits fit");
        let sent = out.len().min(room);
        wire.extend_from_slice(&out[..sent]);
        let accounted = plan.account(sent);
        assert_eq!(c.commit_outbound(&plan, sent), accounted.app);
        let _ = c.on_outbound(&rest[..accounted.app], now, t);
        done += accounted.app;
        if accounted.cut.is_none() || done >= app.len() {
            return done;
        }
        let rest = plan.remainder(&accounted).expect("the rest of the edit");
        // The connection plans the same again.
        plan = c
            .plan_outbound(&[&app[done..]], t)
            .expect("the rest of the edit");
        assert_eq!(plan, rest);
    }
}

/// The connection's chunks through a client connection, the outbound
/// stream written as the app would: `first` bytes in one write, the rest
/// in another, each retried until all is out. Returns the bytes that went
/// out and the spans.
fn run(chunks: &[Chunk], cut: usize, room: usize, inject: bool) -> (Vec<u8>, Vec<SpanRecord>) {
    let (t, spans) = tracer(inject);
    let mut c = Connection::client(Some(Address::Inet("127.0.0.1:4222".parse().unwrap())), None);
    let now = SystemTime::now();
    let mut wire = Vec::new();
    let mut written = 0usize;
    for (outbound, _, bytes) in chunks {
        if !outbound {
            let _ = c.on_inbound(bytes, now, &t);
            continue;
        }
        // This chunk's part of the stream, cut where the stream is cut.
        let (a, b) = if cut > written && cut < written + bytes.len() {
            bytes.split_at(cut - written)
        } else {
            (&bytes[..], &[][..])
        };
        written += bytes.len();
        for mut part in [a, b] {
            while !part.is_empty() {
                let n = write(&mut c, &t, part, room, &mut wire);
                assert!(n > 0 && n <= part.len(), "app told {n} of {}", part.len());
                part = &part[n..];
            }
        }
    }
    c.on_close(now, CloseReason::Closed, &t);
    let spans = spans.0.lock().unwrap().clone();
    (wire, spans)
}

fn producers(spans: &[SpanRecord]) -> Vec<(String, Option<AttrValue>)> {
    spans
        .iter()
        .filter(|s| s.kind == SpanKind::Producer)
        .map(|s| {
            (
                s.name.to_string(),
                s.attr("messaging.message.body.size").cloned(),
            )
        })
        .collect()
}

use crate::span::AttrValue;

/// Replays `fixture` at every cut and several send-buffer sizes; `edited`
/// says how many of its published messages get a context (when the
/// stream is not cut inside one's header).
fn every_way(fixture: &str, edited: usize) {
    let connections = parse(fixture);
    for chunks in &connections {
        let app: Vec<u8> = chunks
            .iter()
            .filter(|c| c.0)
            .flat_map(|c| c.2.clone())
            .collect();
        let (plain, plain_spans) = run(chunks, 0, usize::MAX, false);
        assert_eq!(plain, app);
        let want = producers(&plain_spans);
        for room in [usize::MAX, 1, 7, 64] {
            for cut in 0..=app.len() {
                let (wire, spans) = run(chunks, cut, room, true);
                let got = producers(&spans);
                assert_eq!(got, want, "cut {cut} room {room}");
                // Parsed again, the wire's messages are the app's.
                let (_, again) = run_wire(chunks, &wire);
                assert_eq!(producers(&again), want, "cut {cut} room {room}");
                // Each PRODUCER span's context went out in its message.
                let carried = spans
                    .iter()
                    .filter(|s| s.kind == SpanKind::Producer)
                    .filter(|s| {
                        let tp = format_traceparent(&s.context);
                        wire.windows(tp.len()).any(|w| w == tp.as_bytes())
                    })
                    .count();
                // A cut inside a message's header leaves that one alone.
                assert!(
                    carried == edited || (cut > 0 && carried + 1 == edited),
                    "{carried} of {edited}: cut {cut} room {room}"
                );
            }
        }
    }
}

/// The bytes that went out, replayed (with the inbound chunks) into a
/// connection that changes nothing.
fn run_wire(chunks: &[Chunk], wire: &[u8]) -> (Vec<u8>, Vec<SpanRecord>) {
    let mut replay: Vec<Chunk> = chunks.iter().filter(|c| !c.0).cloned().collect();
    // Inbound chunks first would reorder the exchange: interleave by
    // putting the whole wire where the first outbound chunk was.
    let first_out = chunks.iter().position(|c| c.0).unwrap_or(0);
    let inbound_before = chunks[..first_out].iter().filter(|c| !c.0).count();
    replay.insert(inbound_before, (true, 0.0, wire.to_vec()));
    run(&replay, 0, usize::MAX, false)
}

#[test]
fn nats_publishes_carry_their_producer_context_at_every_cut() {
    every_way(include_str!("../tests/fixtures/nats/nats_py.txt"), 4);
}

#[test]
fn amqp_publishes_carry_their_producer_context_at_every_cut() {
    every_way(include_str!("../tests/fixtures/amqp/pika.txt"), 3);
}

#[test]
fn mqtt5_publishes_carry_their_producer_context_at_every_cut() {
    let fixture = include_str!("../tests/fixtures/mqtt/paho_v5.txt");
    let publishes = producers(&run(&parse(fixture)[0], 0, usize::MAX, false).1).len();
    assert!(publishes > 0);
    every_way(fixture, publishes);
}

#[test]
fn mqtt311_publishes_are_left_as_they_are() {
    every_way(include_str!("../tests/fixtures/mqtt/paho_v311.txt"), 0);
}

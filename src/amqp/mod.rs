//! AMQP 0-9-1 (RabbitMQ), client side: the messages a process publishes
//! (`basic.publish`) and receives (`basic.deliver`, `basic.get-ok`) on one
//! connection, turned into PRODUCER and CONSUMER [`Operation`]s
//! (`messaging.system=rabbitmq`).
//!
//! Pure: bytes and timestamps in, operations out; no panic on any input,
//! bounded memory (at most [`MAX_KEEP_BYTES`] of a frame are kept, bodies
//! only counted; at most [`MAX_CHANNELS`] channels and [`MAX_CONSUMERS`]
//! consumer tags remembered).
//!
//! The client speaks first, with the protocol header `AMQP\0\0\x09\x01`
//! ([`detect`]); then both directions are frames: type, channel, size,
//! payload, `0xCE`. A message is a method frame, a content header (the body
//! size and the basic properties, among them `message-id`) and body frames,
//! all on one channel; a channel carries one message at a time in each
//! direction. A message's span starts with its method frame and ends with
//! its last body byte. `messaging.destination.name` is the exchange, or
//! for the default exchange (which routes by queue name) the routing key;
//! on a received message, the queue it was consumed from when known
//! (`basic.consume`, `basic.get`). Anything not AMQP stops tracing the
//! connection.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::messaging::{name, Message, Stamps};
use crate::protocol::{CloseReason, Detect, Flow, Operation};
use crate::span::AttrValue;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod fuzz;
mod inject;

/// The protocol header a 0-9-1 client sends first.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Most bytes kept of one frame's payload (a method's arguments, a content
/// header's properties); the rest, and every body, is counted only.
pub const MAX_KEEP_BYTES: usize = 8 * 1024;

/// Most channels followed on one connection; a frame on one more stops
/// tracing (servers allow 2047 by default).
pub const MAX_CHANNELS: usize = 2048;

/// Most consumer tags remembered (to name the queue of a delivery).
pub const MAX_CONSUMERS: usize = 1024;

const FRAME_END: u8 = 0xce;

/// Decides whether a connection's first outbound bytes are the AMQP 0-9-1
/// protocol header.
///
/// ```
/// use lumigo_core::amqp::detect;
/// use lumigo_core::protocol::Detect;
/// assert_eq!(detect(b"AMQP\x00\x00\x09\x01"), Detect::Yes);
/// assert_eq!(detect(b"AMQP"), Detect::NeedMore);
/// assert_eq!(detect(b"AMQP\x00\x01\x00\x00"), Detect::No);
/// ```
pub fn detect(first_outbound: &[u8]) -> Detect {
    Detect::literal(first_outbound, PROTOCOL_HEADER)
}

/// One direction's frame reader.
#[derive(Debug, Default)]
struct Reader {
    /// The 7-byte frame header gathered so far.
    head: Vec<u8>,
    /// Type, channel and payload size of the frame being read.
    frame: Option<(u8, u16, u32)>,
    kept: Vec<u8>,
    /// Payload bytes still to come, then the frame end.
    left: u32,
    end_left: bool,
    /// When the frame's first byte came.
    start: Option<SystemTime>,
}

/// A message under way on a channel, in one direction.
#[derive(Debug)]
struct Content {
    /// `None` for content that is not traced (a `basic.return`).
    message: Option<Message>,
    /// The body size, once the content header is in.
    size: Option<u64>,
    received: u64,
    /// A published message's number among those the connection sent.
    ordinal: u64,
}

#[derive(Debug, Default)]
struct Channel {
    sending: Option<Content>,
    receiving: Option<Content>,
    /// The queue of the last `basic.consume` awaiting its `consume-ok`.
    consuming: Option<String>,
    /// The queue of the last `basic.get`.
    getting: Option<String>,
}

/// One AMQP connection, client side. See the module docs.
#[derive(Debug, Default)]
pub struct AmqpConnection {
    stopped: bool,
    /// Protocol header bytes the client has sent.
    header_sent: usize,
    out: Reader,
    inb: Reader,
    channels: HashMap<u16, Channel>,
    /// Consumer tag to queue.
    consumers: Vec<(String, String)>,
    /// Contexts injected into messages not yet reported.
    stamps: Stamps,
}

impl AmqpConnection {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes the process sent.
    pub fn on_outbound(
        &mut self,
        mut data: &[u8],
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        while self.header_sent < PROTOCOL_HEADER.len() {
            let Some((&b, rest)) = data.split_first() else {
                return Flow::Continue;
            };
            if b != PROTOCOL_HEADER[self.header_sent] {
                return self.stop();
            }
            self.header_sent += 1;
            data = rest;
        }
        self.feed(true, data, now, done)
    }

    /// Bytes the process received.
    pub fn on_inbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        self.feed(false, data, now, done)
    }

    /// The connection ended: a message cut short is not reported.
    pub fn on_close(&mut self, _now: SystemTime, _reason: CloseReason, _done: &mut Vec<Operation>) {
        self.stopped = true;
    }

    /// Nothing waits for an answer: a publish ends when its body is sent.
    pub fn in_flight(&self) -> usize {
        0
    }

    /// Bytes held by the frame readers, for bounds checks (tests, `fuzz/`).
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        [&self.out, &self.inb]
            .iter()
            .map(|r| r.head.len() + r.kept.len())
            .sum()
    }

    /// Channels and consumers tracked, for bounds checks (tests, `fuzz/`).
    #[doc(hidden)]
    pub fn entries(&self) -> (usize, usize) {
        (self.channels.len(), self.consumers.len())
    }

    fn stop(&mut self) -> Flow {
        self.stopped = true;
        self.channels.clear();
        Flow::Stop
    }

    fn feed(
        &mut self,
        outbound: bool,
        mut data: &[u8],
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> Flow {
        while !data.is_empty() {
            let r = if outbound {
                &mut self.out
            } else {
                &mut self.inb
            };
            if r.frame.is_none() {
                if r.head.is_empty() {
                    r.start = Some(now);
                }
                let n = data.len().min(7 - r.head.len());
                r.head.extend_from_slice(&data[..n]);
                data = &data[n..];
                if r.head.len() < 7 {
                    break;
                }
                let h = &r.head;
                let kind = h[0];
                if !matches!(kind, 1 | 2 | 3 | 8) {
                    return self.stop();
                }
                let r = if outbound {
                    &mut self.out
                } else {
                    &mut self.inb
                };
                let h = &r.head;
                let channel = u16::from_be_bytes([h[1], h[2]]);
                let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
                r.frame = Some((kind, channel, size));
                r.left = size;
                r.end_left = true;
                r.head.clear();
                r.kept.clear();
                // A body frame must fit in what its content header
                // announced. Decided here, once per frame, so that the
                // verdict does not depend on how its bytes are split into
                // calls (counted piece by piece, a body too long could
                // first complete its message, then stop).
                if kind == 3 && size > 0 && !self.body_fits(outbound, channel, size) {
                    return self.stop();
                }
                continue;
            }
            if r.left > 0 {
                let n = data.len().min(r.left as usize);
                let keep = n.min(MAX_KEEP_BYTES.saturating_sub(r.kept.len()));
                r.kept.extend_from_slice(&data[..keep]);
                r.left -= n as u32;
                data = &data[n..];
                // Body bytes count as they come.
                if let Some((3, channel, _)) = r.frame {
                    if self.body(outbound, channel, n as u64, now, done).is_none() {
                        return self.stop();
                    }
                }
                continue;
            }
            // The frame end.
            if data[0] != FRAME_END {
                return self.stop();
            }
            data = &data[1..];
            let r = if outbound {
                &mut self.out
            } else {
                &mut self.inb
            };
            r.end_left = false;
            let Some((kind, channel, size)) = r.frame.take() else {
                continue;
            };
            let kept = std::mem::take(&mut r.kept);
            let start = r.start.unwrap_or(now);
            let ok = match kind {
                1 => self.method(outbound, channel, &kept, start),
                2 => self.content_header(outbound, channel, &kept, now, done),
                3 => Some(()).filter(|_| size > 0 || self.content(outbound, channel).is_some()),
                _ => Some(()),
            };
            let r = if outbound {
                &mut self.out
            } else {
                &mut self.inb
            };
            r.kept = kept;
            r.kept.clear();
            if ok.is_none() {
                return self.stop();
            }
        }
        Flow::Continue
    }

    fn channel(&mut self, channel: u16) -> Option<&mut Channel> {
        if !self.channels.contains_key(&channel) && self.channels.len() >= MAX_CHANNELS {
            return None;
        }
        Some(self.channels.entry(channel).or_default())
    }

    fn content(&mut self, outbound: bool, channel: u16) -> Option<&mut Content> {
        let ch = self.channels.get_mut(&channel)?;
        if outbound {
            ch.sending.as_mut()
        } else {
            ch.receiving.as_mut()
        }
    }

    /// A method frame; `None` if it breaks the protocol.
    fn method(&mut self, outbound: bool, channel: u16, p: &[u8], start: SystemTime) -> Option<()> {
        let class = u16::from_be_bytes([*p.first()?, *p.get(1)?]);
        let method = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]);
        let args = &p[4..];
        let queue_of = |consumers: &[(String, String)], tag: &str| {
            consumers
                .iter()
                .find(|(t, _)| t == tag)
                .map(|(_, q)| q.clone())
        };
        match (class, method, outbound) {
            // basic.publish: reserved short, exchange, routing key, bits.
            (60, 40, true) => {
                let (exchange, at) = shortstr(args, 2)?;
                let (key, _) = shortstr(args, at)?;
                let mut m = Message::new("rabbitmq", true, destination(exchange, key), start);
                m.extra = routing_key(key);
                let ordinal = self.stamps.next_message();
                self.channel(channel)?.sending = Some(Content {
                    message: Some(m),
                    size: None,
                    received: 0,
                    ordinal,
                });
            }
            // basic.consume: reserved short, queue, consumer tag.
            (60, 20, true) => {
                let (queue, at) = shortstr(args, 2)?;
                let (tag, _) = shortstr(args, at)?;
                let queue = name(queue);
                if !tag.is_empty() && self.consumers.len() < MAX_CONSUMERS {
                    self.consumers.push((name(tag), queue.clone()));
                }
                self.channel(channel)?.consuming = Some(queue);
            }
            // basic.consume-ok: the tag (the server's, if the client gave none).
            (60, 21, false) => {
                let (tag, _) = shortstr(args, 0)?;
                let tag = name(tag);
                let queue = self.channel(channel)?.consuming.take();
                if let Some(queue) = queue {
                    if queue_of(&self.consumers, &tag).is_none()
                        && self.consumers.len() < MAX_CONSUMERS
                    {
                        self.consumers.push((tag, queue));
                    }
                }
            }
            // basic.get: reserved short, queue.
            (60, 70, true) => {
                let (queue, _) = shortstr(args, 2)?;
                self.channel(channel)?.getting = Some(name(queue));
            }
            // basic.deliver: consumer tag, delivery tag, redelivered, exchange, routing key.
            (60, 60, false) => {
                let (tag, at) = shortstr(args, 0)?;
                let delivery = u64::from_be_bytes(args.get(at..at + 8)?.try_into().ok()?);
                let (exchange, at2) = shortstr(args, at + 9)?;
                let (key, _) = shortstr(args, at2)?;
                let queue = queue_of(&self.consumers, &name(tag));
                let m = received(exchange, key, queue, delivery, false, start);
                self.channel(channel)?.receiving = Some(Content {
                    message: Some(m),
                    size: None,
                    received: 0,
                    ordinal: 0,
                });
            }
            // basic.get-ok: delivery tag, redelivered, exchange, routing key, count.
            (60, 71, false) => {
                let delivery = u64::from_be_bytes(args.get(..8)?.try_into().ok()?);
                let (exchange, at) = shortstr(args, 9)?;
                let (key, _) = shortstr(args, at)?;
                let queue = self.channel(channel)?.getting.take();
                let m = received(exchange, key, queue, delivery, true, start);
                self.channel(channel)?.receiving = Some(Content {
                    message: Some(m),
                    size: None,
                    received: 0,
                    ordinal: 0,
                });
            }
            // basic.return: an unroutable message comes back; not traced.
            (60, 50, false) => {
                self.channel(channel)?.receiving = Some(Content {
                    message: None,
                    size: None,
                    received: 0,
                    ordinal: 0,
                });
            }
            // channel.close, channel.close-ok: its state goes.
            (20, 40 | 41, _) => {
                self.channels.remove(&channel);
            }
            _ => {}
        }
        Some(())
    }

    /// A content header: the body size and the properties.
    fn content_header(
        &mut self,
        outbound: bool,
        channel: u16,
        p: &[u8],
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> Option<()> {
        let size = u64::from_be_bytes(p.get(4..12)?.try_into().ok()?);
        let (id, carried) = properties(p);
        let content = self.content(outbound, channel)?;
        if content.size.is_some() {
            return None;
        }
        content.size = Some(size);
        if let Some(m) = content.message.as_mut() {
            m.body_size = Some(size);
            m.message_id = id;
            if !outbound {
                m.carried = carried;
            }
        }
        if size == 0 {
            self.finish(outbound, channel, now, done);
        }
        Some(())
    }

    /// `n` body bytes of a message on `channel`.
    /// Whether a body frame of `size` bytes fits in the content under way
    /// on `channel` (one whose header came, not yet complete).
    fn body_fits(&mut self, outbound: bool, channel: u16, size: u32) -> bool {
        self.content(outbound, channel).is_some_and(|c| {
            c.size
                .is_some_and(|total| c.received.saturating_add(u64::from(size)) <= total)
        })
    }

    fn body(
        &mut self,
        outbound: bool,
        channel: u16,
        n: u64,
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> Option<()> {
        let content = self.content(outbound, channel)?;
        let size = content.size?;
        content.received = content.received.saturating_add(n);
        if content.received > size {
            return None;
        }
        if content.received == size {
            self.finish(outbound, channel, now, done);
        }
        Some(())
    }

    fn finish(&mut self, outbound: bool, channel: u16, now: SystemTime, done: &mut Vec<Operation>) {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        let content = if outbound {
            ch.sending.take()
        } else {
            ch.receiving.take()
        };
        let Some(content) = content else {
            return;
        };
        if let Some(mut m) = content.message {
            m.end = now;
            if outbound {
                // Its header was planned after its method went out.
                m.carried = self.stamps.take(content.ordinal);
            }
            done.push(m.into_operation());
        }
    }
}

/// The destination of a published message: the exchange, or for the
/// default exchange the routing key (the queue it goes to).
fn destination(exchange: &[u8], key: &[u8]) -> String {
    if exchange.is_empty() {
        name(key)
    } else {
        name(exchange)
    }
}

fn routing_key(key: &[u8]) -> Vec<(&'static str, AttrValue)> {
    if key.is_empty() {
        Vec::new()
    } else {
        vec![(
            "messaging.rabbitmq.destination.routing_key",
            name(key).into(),
        )]
    }
}

/// A delivered message: named after its queue when known.
fn received(
    exchange: &[u8],
    key: &[u8],
    queue: Option<String>,
    delivery: u64,
    pulled: bool,
    start: SystemTime,
) -> Message {
    let dest = queue
        .filter(|q| !q.is_empty())
        .unwrap_or_else(|| destination(exchange, key));
    let mut m = Message::new("rabbitmq", false, dest, start);
    m.pulled = pulled;
    m.extra = routing_key(key);
    m.extra
        .push(("messaging.rabbitmq.message.delivery_tag", delivery.into()));
    m
}

/// A short string at `at`: its bytes and the position after it.
fn shortstr(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let n = usize::from(*b.get(at)?);
    Some((b.get(at + 1..at + 1 + n)?, at + 1 + n))
}

/// The `message-id` basic property of a content header payload, and the
/// `traceparent` and `tracestate` of its `headers` table.
type Properties = (Option<String>, Option<(String, Option<String>)>);

fn properties(p: &[u8]) -> Properties {
    let mut carried = None;
    let id = message_id(p, &mut carried);
    (id, carried)
}

fn message_id(p: &[u8], carried: &mut Option<(String, Option<String>)>) -> Option<String> {
    let flags = u16::from_be_bytes([*p.get(12)?, *p.get(13)?]);
    let mut at = 14;
    for bit in (7..=15).rev() {
        if flags & (1 << bit) == 0 {
            continue;
        }
        match bit {
            // headers: a table, its size first.
            13 => {
                let n = u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?) as usize;
                if let Some(table) = p.get(at + 4..at + 4 + n) {
                    headers(table, carried);
                }
                at += 4 + n;
            }
            // delivery-mode, priority: an octet.
            12 | 11 => at += 1,
            7 => return shortstr(p, at).map(|(id, _)| name(id)),
            // content-type, content-encoding, correlation-id, reply-to, expiration.
            _ => at = shortstr(p, at)?.1,
        }
    }
    None
}

/// Notes the `traceparent` and `tracestate` string fields of a field table.
fn headers(table: &[u8], carried: &mut Option<(String, Option<String>)>) -> Option<()> {
    let mut at = 0;
    while at < table.len() {
        let (key, next) = shortstr(table, at)?;
        let kind = *table.get(next)?;
        at = next + 1;
        let fixed = match kind {
            b't' | b'b' | b'B' => 1,
            b's' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'D' => 5,
            b'V' => 0,
            b'S' | b'x' | b'F' | b'A' => {
                let n = u32::from_be_bytes(table.get(at..at + 4)?.try_into().ok()?) as usize;
                let value = table.get(at + 4..at + 4 + n)?;
                if kind == b'S' || kind == b'x' {
                    crate::messaging::carried_header(carried, key, value);
                }
                4 + n
            }
            _ => return None,
        };
        at += fixed;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::at;

    pub(crate) fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(FRAME_END);
        f
    }

    pub(crate) fn publish(exchange: &str, key: &str) -> Vec<u8> {
        let mut p = vec![0, 60, 0, 40, 0, 0, exchange.len() as u8];
        p.extend_from_slice(exchange.as_bytes());
        p.push(key.len() as u8);
        p.extend_from_slice(key.as_bytes());
        p.push(0);
        frame(1, 1, &p)
    }

    pub(crate) fn header(size: u64, id: Option<&str>) -> Vec<u8> {
        let mut p = vec![0, 60, 0, 0];
        p.extend_from_slice(&size.to_be_bytes());
        match id {
            Some(id) => {
                // content-type and message-id.
                p.extend_from_slice(&[0x80, 0x80, 4]);
                p.extend_from_slice(b"text");
                p.push(id.len() as u8);
                p.extend_from_slice(id.as_bytes());
            }
            None => p.extend_from_slice(&[0, 0]),
        }
        frame(2, 1, &p)
    }

    /// Found by `fuzz/` (target amqp): a body frame longer than its
    /// content header announced reported the message when its bytes came
    /// in small pieces (the count reached the size mid-frame) and not when
    /// they came whole. It now stops tracing at the frame's header either
    /// way, reporting nothing.
    #[test]
    fn a_body_longer_than_announced_stops_however_it_is_split() {
        let body = frame(3, 1, &[b'x'; 12]);
        for piece in [body.len(), 1, 5] {
            let mut c = AmqpConnection::new();
            let mut done = Vec::new();
            for bytes in [PROTOCOL_HEADER.to_vec(), publish("", "q"), header(10, None)] {
                assert_eq!(c.on_outbound(&bytes, at(1), &mut done), Flow::Continue);
            }
            let flows: Vec<Flow> = body
                .chunks(piece)
                .map(|p| c.on_outbound(p, at(2), &mut done))
                .collect();
            assert_eq!(flows.last(), Some(&Flow::Stop), "pieces of {piece}");
            assert!(done.is_empty(), "pieces of {piece}: {done:?}");
        }
    }

    #[test]
    fn a_body_in_several_frames_ends_with_its_last() {
        let mut c = AmqpConnection::new();
        let mut done = Vec::new();
        assert_eq!(
            c.on_outbound(PROTOCOL_HEADER, at(0), &mut done),
            Flow::Continue
        );
        assert_eq!(
            c.on_outbound(&publish("logs", "a.b"), at(1), &mut done),
            Flow::Continue
        );
        assert_eq!(
            c.on_outbound(&header(5, Some("id-7")), at(1), &mut done),
            Flow::Continue
        );
        assert_eq!(
            c.on_outbound(&frame(3, 1, b"abc"), at(2), &mut done),
            Flow::Continue
        );
        assert!(done.is_empty());
        assert_eq!(
            c.on_outbound(&frame(3, 1, b"de"), at(3), &mut done),
            Flow::Continue
        );
        assert_eq!(done.len(), 1);
        let op = &done[0];
        assert_eq!(
            (op.name.as_str(), op.start, op.end),
            ("publish logs", at(1), at(3))
        );
        assert!(op
            .attributes
            .contains(&("messaging.message.id", "id-7".into())));
        assert!(op
            .attributes
            .contains(&("messaging.rabbitmq.destination.routing_key", "a.b".into())));
        assert!(op
            .attributes
            .contains(&("messaging.message.body.size", 5u64.into())));
    }

    #[test]
    fn a_delivered_messages_traceparent_header_is_carried() {
        let mut c = AmqpConnection::new();
        let mut done = Vec::new();
        let _ = c.on_outbound(PROTOCOL_HEADER, at(0), &mut done);
        let mut deliver = vec![0, 60, 0, 60, 1, b't'];
        deliver.extend_from_slice(&9u64.to_be_bytes());
        deliver.extend_from_slice(&[0, 0, 1, b'q']);
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut table = vec![1, b'n', b'I', 0, 0, 0, 7, 11];
        table.extend_from_slice(b"traceparent");
        table.push(b'S');
        table.extend_from_slice(&(tp.len() as u32).to_be_bytes());
        table.extend_from_slice(tp.as_bytes());
        let mut h = vec![0, 60, 0, 0];
        h.extend_from_slice(&2u64.to_be_bytes());
        h.extend_from_slice(&[0x20, 0x00]);
        h.extend_from_slice(&(table.len() as u32).to_be_bytes());
        h.extend_from_slice(&table);
        let wire = [frame(1, 1, &deliver), frame(2, 1, &h), frame(3, 1, b"hi")].concat();
        for b in wire.chunks(5) {
            assert_eq!(c.on_inbound(b, at(1), &mut done), Flow::Continue);
        }
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].name, "process q");
        assert_eq!(done[0].carried, Some((tp.to_owned(), None)));
    }

    #[test]
    fn not_amqp_stops() {
        let mut done = Vec::new();
        let mut c = AmqpConnection::new();
        assert_eq!(
            c.on_outbound(b"AMQP\x00\x00\x09\x02", at(0), &mut done),
            Flow::Stop
        );
        let mut c = AmqpConnection::new();
        let _ = c.on_outbound(PROTOCOL_HEADER, at(0), &mut done);
        // A frame whose end byte is wrong.
        let mut f = frame(8, 0, b"");
        f[7] = 0;
        assert_eq!(c.on_inbound(&f, at(1), &mut done), Flow::Stop);
        // A body with no message before it.
        let mut c = AmqpConnection::new();
        let _ = c.on_outbound(PROTOCOL_HEADER, at(0), &mut done);
        assert_eq!(
            c.on_outbound(&frame(3, 1, b"x"), at(1), &mut done),
            Flow::Stop
        );
        assert!(done.is_empty());
    }
}

//! NATS, client side: the messages a process publishes (`PUB`, `HPUB`) and
//! receives (`MSG`, `HMSG`) on one connection, turned into PRODUCER and
//! CONSUMER [`Operation`]s (`messaging.system=nats`).
//!
//! Pure: bytes and timestamps in, operations out; no panic on any input,
//! bounded memory (one control line of at most [`MAX_LINE_BYTES`] per
//! direction; payloads are counted and skipped, never kept).
//!
//! The server speaks first (`INFO {…}`): that is how a connection is
//! recognised ([`detect`]). Both directions are then lines (`VERB args\r\n`),
//! some followed by a payload whose size the line gives. A message's span
//! starts with its line and ends with its payload's last byte. Replies to a
//! request go to a generated `_INBOX.…` subject: their spans say
//! `(temporary)` instead of the subject. Anything that is not the protocol
//! stops tracing the connection.
//!
//! A publish with a reply subject (a request: JetStream publishes are
//! requests) waits for its reply, at most [`REPLY_WINDOW`] and
//! [`MAX_AWAITING`] of them at a time. A reply that is a JetStream
//! acknowledgement ([`jetstream`]) ends the publish's span and makes no
//! span of its own; any other reply, or none, leaves the span as it was,
//! ended with its payload, and the reply is a received message as usual.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::messaging::{name, Message, Stamps};
use crate::protocol::{CloseReason, Detect, Flow, Operation};

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod fuzz;
mod inject;
mod jetstream;

pub use jetstream::MAX_ACK_BYTES;

/// Most bytes of one control line (an `INFO` with a cluster's URLs is the
/// longest a server sends).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Decides whether a client connection's first inbound bytes are a NATS
/// server's greeting, `INFO {`.
///
/// ```
/// use lumigo_core::nats::detect;
/// use lumigo_core::protocol::Detect;
/// assert_eq!(detect(b"INFO {\"server_id\""), Detect::Yes);
/// assert_eq!(detect(b"INF"), Detect::NeedMore);
/// assert_eq!(detect(b"+OK\r\n"), Detect::No);
/// ```
pub fn detect(first_inbound: &[u8]) -> Detect {
    Detect::literal(first_inbound, b"INFO {")
}

/// One direction's reader: a control line being gathered, or a payload
/// being skipped.
#[derive(Debug, Default)]
struct Reader {
    line: Vec<u8>,
    /// Payload bytes (and their CRLF) still to skip, and the message they
    /// end.
    skip: u64,
    /// Of those, the header block's bytes still to come, and what is kept
    /// of it (received messages only, up to [`MAX_HEADER_BYTES`]).
    headers_left: u64,
    headers: Vec<u8>,
    message: Option<Message>,
    /// The message under way has a reply subject (outbound: a request,
    /// which waits for its reply) or is a reply to an awaiting publish
    /// (inbound): that subject.
    reply: Option<String>,
    /// An inbound reply's body, its first [`MAX_ACK_BYTES`].
    body: Vec<u8>,
}

/// Most publishes waiting for their reply; over it, the oldest ends as
/// if it had none.
pub const MAX_AWAITING: usize = 512;

/// How long a publish waits for its reply; after it, it ends as if it had
/// none (nats-py's JetStream context gives up after 5 s by default).
pub const REPLY_WINDOW: Duration = Duration::from_secs(10);

/// A publish waiting for its reply.
#[derive(Debug)]
struct Awaiting {
    reply: String,
    message: Message,
}

/// Most bytes kept of a received message's header block (where a
/// `traceparent` may be).
pub const MAX_HEADER_BYTES: usize = 4096;

/// What one control line is.
enum Line {
    /// A message, its payload's size on the wire and its header block's,
    /// and its reply subject.
    Message(Box<Message>, u64, u64, Option<String>),
    Info(Vec<u8>),
    Connect(Vec<u8>),
    Other,
    Bad,
}

/// One NATS connection, client side. See the module docs.
#[derive(Debug, Default)]
pub struct NatsConnection {
    stopped: bool,
    out: Reader,
    inb: Reader,
    /// `messaging.client.id`: the id the server's INFO gave this client.
    client_id: Option<String>,
    /// The server's INFO and the client's CONNECT both said `"headers":
    /// true`: a `PUB` may become an `HPUB`.
    server_headers: bool,
    client_headers: bool,
    /// Contexts injected into messages not yet reported.
    stamps: Stamps,
    /// Publishes waiting for their reply, oldest first.
    awaiting: VecDeque<Awaiting>,
}

impl NatsConnection {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes the process sent.
    pub fn on_outbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        self.feed(true, data, now, done)
    }

    /// Bytes the process received.
    pub fn on_inbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        self.feed(false, data, now, done)
    }

    /// The connection ended: a message cut short is not reported; a
    /// publish waiting for its reply ends as if it had none.
    pub fn on_close(&mut self, _now: SystemTime, _reason: CloseReason, done: &mut Vec<Operation>) {
        if !self.stopped {
            let _ = self.stop(done);
        }
    }

    /// Tracing of this connection ends: publishes still waiting for their
    /// reply are reported now, as if they had none (nothing is reported
    /// after Stop).
    fn stop(&mut self, done: &mut Vec<Operation>) -> Flow {
        self.unawait(usize::MAX, None, done);
        self.stopped = true;
        Flow::Stop
    }

    /// Publishes waiting for their reply.
    pub fn in_flight(&self) -> usize {
        self.awaiting.len()
    }

    /// Bytes held: the control lines and the header block being gathered,
    /// for bounds checks (tests, `fuzz/`).
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        [&self.out, &self.inb]
            .iter()
            .map(|r| r.line.len() + r.headers.len() + r.body.len())
            .sum()
    }

    /// Ends, as if they had no reply, the oldest `n` awaiting publishes
    /// and, with `now`, those that waited longer than [`REPLY_WINDOW`].
    fn unawait(&mut self, mut n: usize, now: Option<SystemTime>, done: &mut Vec<Operation>) {
        while let Some(a) = self.awaiting.front() {
            let expired = now.is_some_and(|now| {
                now.duration_since(a.message.end)
                    .is_ok_and(|waited| waited > REPLY_WINDOW)
            });
            if n == 0 && !expired {
                break;
            }
            n = n.saturating_sub(1);
            if let Some(a) = self.awaiting.pop_front() {
                done.push(a.message.into_operation());
            }
        }
    }

    /// A publish sent in full: with a reply subject, it waits for the
    /// reply.
    fn sent(&mut self, m: Message, reply: Option<String>, done: &mut Vec<Operation>) {
        match reply {
            Some(reply) => {
                if self.awaiting.len() >= MAX_AWAITING {
                    self.unawait(self.awaiting.len() + 1 - MAX_AWAITING, None, done);
                }
                self.awaiting.push_back(Awaiting { reply, message: m });
            }
            None => done.push(m.into_operation()),
        }
    }

    /// A message received in full; `reply`: it came to the reply subject
    /// of an awaiting publish. An acknowledgement ends that publish and is
    /// no message of its own.
    fn received(
        &mut self,
        m: Message,
        reply: Option<String>,
        headers: &[u8],
        body: &[u8],
        done: &mut Vec<Operation>,
    ) {
        let answered = reply.and_then(|r| self.awaiting.iter().position(|a| a.reply == r));
        if let Some(a) = answered.and_then(|i| self.awaiting.remove(i)) {
            let mut publish = a.message;
            if let Some(ack) = jetstream::ack(headers, body) {
                publish.end = m.end;
                ack.apply(&mut publish);
                done.push(publish.into_operation());
                return;
            }
            done.push(publish.into_operation());
        }
        done.push(m.into_operation());
    }

    fn feed(
        &mut self,
        outbound: bool,
        mut data: &[u8],
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        if !self.awaiting.is_empty() {
            self.unawait(0, Some(now), done);
        }
        while !data.is_empty() {
            let reader = if outbound {
                &mut self.out
            } else {
                &mut self.inb
            };
            if reader.skip > 0 {
                let n = (data.len() as u64).min(reader.skip) as usize;
                let h = (n as u64).min(reader.headers_left) as usize;
                if h > 0 {
                    reader.headers_left -= h as u64;
                    let keep = h.min(MAX_HEADER_BYTES.saturating_sub(reader.headers.len()));
                    reader.headers.extend_from_slice(&data[..keep]);
                }
                if !outbound && reader.reply.is_some() {
                    let body = &data[h..n];
                    let keep = body
                        .len()
                        .min(MAX_ACK_BYTES.saturating_sub(reader.body.len()));
                    reader.body.extend_from_slice(&body[..keep]);
                }
                reader.skip -= n as u64;
                data = &data[n..];
                if reader.skip == 0 {
                    let reply = reader.reply.take();
                    if let Some(mut m) = reader.message.take() {
                        m.end = now;
                        if outbound {
                            self.sent(m, reply, done);
                        } else {
                            m.carried = carried(&reader.headers);
                            let (headers, body) = (
                                std::mem::take(&mut reader.headers),
                                std::mem::take(&mut reader.body),
                            );
                            self.received(m, reply, &headers, &body, done);
                            self.inb.headers = headers;
                            self.inb.body = body;
                        }
                    }
                    let reader = if outbound {
                        &mut self.out
                    } else {
                        &mut self.inb
                    };
                    reader.headers.clear();
                    reader.body.clear();
                }
                continue;
            }
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                if reader.line.len() + data.len() > MAX_LINE_BYTES {
                    return self.stop(done);
                }
                reader.line.extend_from_slice(data);
                break;
            };
            if reader.line.len() + nl > MAX_LINE_BYTES {
                return self.stop(done);
            }
            reader.line.extend_from_slice(&data[..nl]);
            data = &data[nl + 1..];
            let line = std::mem::take(&mut reader.line);
            match parse_line(&line, outbound, now) {
                Line::Bad => return self.stop(done),
                Line::Message(mut m, payload, headers, reply) => {
                    m.client_id = self.client_id.clone();
                    let reply = if outbound {
                        let ordinal = self.stamps.next_message();
                        m.carried = self.stamps.take(ordinal);
                        reply
                    } else {
                        // A reply to an awaiting publish comes to its subject.
                        let d = &m.destination;
                        self.awaiting
                            .iter()
                            .any(|a| a.reply == *d)
                            .then(|| d.clone())
                    };
                    let reader = if outbound {
                        &mut self.out
                    } else {
                        &mut self.inb
                    };
                    reader.skip = payload.saturating_add(2);
                    reader.headers_left = if outbound { 0 } else { headers };
                    reader.headers.clear();
                    reader.body.clear();
                    reader.reply = reply;
                    reader.message = Some(*m);
                }
                Line::Info(json) => {
                    if let Some(id) = json_number(&json, b"\"client_id\"") {
                        self.client_id = Some(name(id));
                    }
                    self.server_headers = json_true(&json, b"\"headers\"");
                }
                Line::Connect(json) => self.client_headers = json_true(&json, b"\"headers\""),
                Line::Other => {}
            }
            let reader = if outbound {
                &mut self.out
            } else {
                &mut self.inb
            };
            reader.line = line;
            reader.line.clear();
        }
        Flow::Continue
    }
}

/// Parses one control line (without its `\n`).
fn parse_line(line: &[u8], outbound: bool, now: SystemTime) -> Line {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let Some(verb) = words.next() else {
        return Line::Bad;
    };
    let verb = verb.to_ascii_uppercase();
    let args: Vec<&[u8]> = words.take(6).collect();
    match (verb.as_slice(), outbound) {
        (b"PUB", true) | (b"HPUB", true) | (b"MSG", false) | (b"HMSG", false) => {
            let headers = verb[0] == b'H';
            message(&args, outbound, headers, now).map_or(Line::Bad, |(m, n, h, r)| {
                Line::Message(Box::new(m), n, h, r)
            })
        }
        (b"INFO", false) => {
            let at = line.iter().position(|&b| b == b'{').unwrap_or(line.len());
            Line::Info(line[at..].to_vec())
        }
        (b"CONNECT", true) => {
            let at = line.iter().position(|&b| b == b'{').unwrap_or(line.len());
            Line::Connect(line[at..].to_vec())
        }
        (b"SUB", true) | (b"UNSUB", true) => Line::Other,
        (b"PING", _) | (b"PONG", _) | (b"+OK", false) | (b"-ERR", false) => Line::Other,
        _ => Line::Bad,
    }
}

/// A message line's subject, reply subject and sizes: `PUB subject
/// [reply] size`, `HPUB subject [reply] header-size total-size`, `MSG
/// subject sid [reply] size`, `HMSG subject sid [reply] header-size
/// total-size`. Returns the message, its payload's size on the wire, its
/// header block's, and its reply subject (one longer than
/// [`MAX_NAME_BYTES`](crate::messaging::MAX_NAME_BYTES) is not kept).
fn message(
    args: &[&[u8]],
    outbound: bool,
    headers: bool,
    now: SystemTime,
) -> Option<(Message, u64, u64, Option<String>)> {
    let fixed = 1 + usize::from(!outbound) + 1 + usize::from(headers);
    if args.len() != fixed && args.len() != fixed + 1 {
        return None;
    }
    let subject = *args.first()?;
    let sizes = &args[args.len() - 1 - usize::from(headers)..];
    let total = number(sizes.last()?)?;
    let header_size = if headers { number(sizes.first()?)? } else { 0 };
    if header_size > total {
        return None;
    }
    let mut m = Message::new("nats", outbound, name(subject), now);
    m.temporary = subject.starts_with(b"_INBOX.");
    m.body_size = Some(total - header_size);
    let reply = (args.len() == fixed + 1)
        .then(|| args[1 + usize::from(!outbound)])
        .filter(|r| r.len() <= crate::messaging::MAX_NAME_BYTES)
        .map(name);
    Some((m, total, header_size, reply))
}

/// The `traceparent` and `tracestate` of a header block (`NATS/1.0`, then
/// `Name: value` lines).
fn carried(block: &[u8]) -> Option<(String, Option<String>)> {
    let mut found = None;
    for line in block.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            crate::messaging::carried_header(&mut found, &line[..colon], &line[colon + 1..]);
        }
    }
    found
}

/// Whether a top-level field `key` of a JSON object is `true`.
fn json_true(json: &[u8], key: &[u8]) -> bool {
    let Some(at) = json.windows(key.len()).position(|w| w == key) else {
        return false;
    };
    let rest = &json[at + key.len()..];
    let skip = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b':' || b == b'\t')
        .count();
    rest[skip..].starts_with(b"true")
}

/// A decimal size (at most 18 digits).
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The digits of a top-level number field `key` in a JSON object.
fn json_number<'a>(json: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = json.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &json[at..];
    let rest = &rest[rest.iter().position(|&b| b != b' ' && b != b':')?..];
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    (n > 0).then(|| &rest[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::at;

    #[test]
    fn detects_the_greeting_only() {
        assert_eq!(detect(b""), Detect::NeedMore);
        assert_eq!(detect(b"INFO"), Detect::NeedMore);
        assert_eq!(detect(b"INFO {}"), Detect::Yes);
        assert_eq!(detect(b"INFO x"), Detect::No);
        assert_eq!(detect(b"\x4a\x00\x00\x00\x0a5.5"), Detect::No);
    }

    #[test]
    fn publish_with_headers_counts_the_body_only() {
        let mut c = NatsConnection::new();
        let mut done = Vec::new();
        let hdr = b"NATS/1.0\r\nA: b\r\n\r\n";
        let mut wire =
            format!("HPUB s.x _INBOX.1 {} {}\r\n", hdr.len(), hdr.len() + 5).into_bytes();
        wire.extend_from_slice(hdr);
        wire.extend_from_slice(b"hello\r\n");
        assert_eq!(
            c.on_inbound(b"INFO {\"client_id\": 42}\r\n", at(0), &mut done),
            Flow::Continue
        );
        assert_eq!(c.on_outbound(&wire, at(1), &mut done), Flow::Continue);
        // A request: it waits for its reply, or the connection's end.
        assert_eq!((done.len(), c.in_flight()), (0, 1));
        c.on_close(at(2), CloseReason::PeerClosed, &mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].end, at(1));
        assert_eq!(done[0].name, "publish s.x");
        assert!(done[0]
            .attributes
            .contains(&("messaging.message.body.size", 5u64.into())));
        assert!(done[0]
            .attributes
            .contains(&("messaging.client.id", "42".into())));
    }

    #[test]
    fn a_received_messages_traceparent_header_is_carried() {
        let mut c = NatsConnection::new();
        let mut done = Vec::new();
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let hdr = format!("NATS/1.0\r\nTraceparent: {tp}\r\ntracestate: a=b\r\n\r\n");
        let wire = format!("HMSG s 1 {} {}\r\n{hdr}hi\r\n", hdr.len(), hdr.len() + 2);
        let _ = c.on_inbound(b"INFO {}\r\n", at(0), &mut done);
        for b in wire.as_bytes().chunks(3) {
            assert_eq!(c.on_inbound(b, at(1), &mut done), Flow::Continue);
        }
        assert_eq!(
            done[0].carried,
            Some((tp.to_owned(), Some("a=b".to_owned())))
        );
    }

    #[test]
    fn not_nats_stops() {
        let mut c = NatsConnection::new();
        let mut done = Vec::new();
        assert_eq!(
            c.on_outbound(b"GET / HTTP/1.1\r\n", at(0), &mut done),
            Flow::Stop
        );
        assert_eq!(c.on_inbound(b"PING\r\n", at(0), &mut done), Flow::Stop);
        let mut c = NatsConnection::new();
        assert_eq!(
            c.on_outbound(b"PUB a b c d\r\n", at(0), &mut done),
            Flow::Stop
        );
        assert!(done.is_empty());
    }

    #[test]
    fn stopping_reports_publishes_awaiting_their_reply_and_nothing_after() {
        let mut c = NatsConnection::new();
        let mut done = Vec::new();
        let _ = c.on_inbound(b"INFO {}\r\n", at(0), &mut done);
        let pubs = b"PUB orders _INBOX.r1 2\r\nhi\r\n";
        assert_eq!(c.on_outbound(pubs, at(1), &mut done), Flow::Continue);
        assert_eq!(c.in_flight(), 1);
        assert!(done.is_empty());
        assert_eq!(
            c.on_inbound(b"NOT NATS AT ALL\r\n", at(2), &mut done),
            Flow::Stop
        );
        assert_eq!(done.len(), 1, "the publish is reported when tracing stops");
        assert_eq!(done[0].name, "publish orders");
        c.on_close(at(3), CloseReason::Closed, &mut done);
        assert_eq!(done.len(), 1, "nothing after Stop");
    }
}

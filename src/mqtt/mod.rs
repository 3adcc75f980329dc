//! MQTT 3.1, 3.1.1 and 5, client side: the messages a process publishes
//! and receives on one connection, turned into PRODUCER and CONSUMER
//! [`Operation`]s (`messaging.system=mqtt`).
//!
//! Pure: bytes and timestamps in, operations out; no panic on any input,
//! bounded memory (at most [`MAX_KEEP_BYTES`] of a packet are kept, payloads
//! only counted; at most [`MAX_IN_FLIGHT`] publishes await their
//! acknowledgement).
//!
//! A connection is recognised by the client's CONNECT ([`detect`]), whose
//! protocol level says the version and whose payload the client id. A
//! PUBLISH sent with QoS 0 ends when sent; with QoS 1 at its PUBACK; with
//! QoS 2 at its PUBCOMP (or at a PUBREC that refuses it). A PUBLISH
//! received is a CONSUMER span ending with its last byte. MQTT 5 topic
//! aliases are followed. A packet type that cannot travel in its direction
//! stops tracing the connection.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::http::errors;
use crate::messaging::{name, Message, Stamps};
use crate::protocol::{CloseReason, Detect, Flow, Operation};

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod fuzz;
mod inject;

/// Most bytes kept of one packet (its variable header: topic, packet id,
/// properties); the rest is counted.
pub const MAX_KEEP_BYTES: usize = 8 * 1024;

/// Most QoS 1 and 2 publishes awaiting acknowledgement; past it, a publish
/// ends when sent.
pub const MAX_IN_FLIGHT: usize = 1024;

/// Most topic aliases remembered per direction.
#[doc(hidden)]
pub const MAX_ALIASES: usize = 256;

const CONNECT: u8 = 1;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBCOMP: u8 = 7;

/// Decides whether a connection's first outbound bytes are an MQTT
/// CONNECT: type 1, a remaining length, and the protocol name `MQTT`
/// (level 4 or 5) or `MQIsdp` (level 3).
///
/// ```
/// use lumigo_core::mqtt::detect;
/// use lumigo_core::protocol::Detect;
/// assert_eq!(detect(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c"), Detect::Yes);
/// assert_eq!(detect(b"\x10\x10\x00\x04MQ"), Detect::NeedMore);
/// assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Detect::No);
/// ```
pub fn detect(first_outbound: &[u8]) -> Detect {
    let Some((&first, rest)) = first_outbound.split_first() else {
        return Detect::NeedMore;
    };
    if first != CONNECT << 4 {
        return Detect::No;
    }
    let rest = match varint(rest) {
        Varint::Short => return Detect::NeedMore,
        Varint::Bad => return Detect::No,
        Varint::Done(_, n) => &rest[n..],
    };
    for want in [&b"\x00\x04MQTT"[..], &b"\x00\x06MQIsdp"[..]] {
        let n = rest.len().min(want.len());
        if rest[..n] != want[..n] {
            continue;
        }
        return match rest.get(want.len()) {
            None => Detect::NeedMore,
            Some(4 | 5) if want.len() == 6 => Detect::Yes,
            Some(3) if want.len() == 8 => Detect::Yes,
            Some(_) => Detect::No,
        };
    }
    Detect::No
}

enum Varint {
    Short,
    Bad,
    /// The value and how many bytes it took.
    Done(u32, usize),
}

/// MQTT's variable byte integer (1 to 4 bytes).
fn varint(b: &[u8]) -> Varint {
    let mut v: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = b.get(i) else {
            return Varint::Short;
        };
        v |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Varint::Done(v, i + 1);
        }
    }
    Varint::Bad
}

/// One direction's reader.
#[derive(Debug, Default)]
struct Reader {
    /// The fixed header gathered so far (type byte and remaining length).
    head: Vec<u8>,
    /// The packet's type byte and remaining length, once the header is in.
    packet: Option<(u8, u32)>,
    /// The packet's first bytes (up to [`MAX_KEEP_BYTES`]).
    kept: Vec<u8>,
    /// Body bytes of the packet still to come.
    left: u32,
    /// When its first byte came.
    start: Option<SystemTime>,
    /// Topic aliases (MQTT 5) set in this direction.
    aliases: Vec<(u16, String)>,
}

/// A publish awaiting its acknowledgement.
#[derive(Debug)]
struct Pending {
    id: u16,
    qos: u8,
    message: Message,
}

/// One MQTT connection, client side. See the module docs.
#[derive(Debug, Default)]
pub struct MqttConnection {
    stopped: bool,
    /// Protocol level from CONNECT: 3 (3.1), 4 (3.1.1), 5.
    level: u8,
    client_id: Option<String>,
    out: Reader,
    inb: Reader,
    pending: VecDeque<Pending>,
    /// Contexts injected into messages not yet reported.
    stamps: Stamps,
}

impl MqttConnection {
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

    /// The connection ended: publishes still unacknowledged end with it.
    pub fn on_close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<Operation>) {
        let why = match reason {
            CloseReason::ProcessExit => errors::PROCESS_EXIT,
            _ => errors::CONNECTION_CLOSED,
        };
        self.fail_pending(now, why, done);
        self.stopped = true;
    }

    /// Publishes awaiting acknowledgement.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held by the packet readers, for bounds checks (tests, `fuzz/`).
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        [&self.out, &self.inb]
            .iter()
            .map(|r| r.head.len() + r.kept.len())
            .sum()
    }

    /// Topic aliases kept, per direction, for bounds checks (tests, `fuzz/`).
    #[doc(hidden)]
    pub fn aliases(&self) -> (usize, usize) {
        (self.out.aliases.len(), self.inb.aliases.len())
    }

    fn fail_pending(&mut self, now: SystemTime, why: &str, done: &mut Vec<Operation>) {
        for p in self.pending.drain(..) {
            let mut m = p.message;
            m.end = now;
            m.error = Some((why.to_owned(), "no acknowledgement".to_owned()));
            done.push(m.into_operation());
        }
    }

    fn stop(&mut self, now: SystemTime, done: &mut Vec<Operation>) -> Flow {
        self.fail_pending(now, errors::PROTOCOL_ERROR, done);
        self.stopped = true;
        Flow::Stop
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
        while !data.is_empty() {
            let r = if outbound {
                &mut self.out
            } else {
                &mut self.inb
            };
            if r.packet.is_none() {
                if r.head.is_empty() {
                    r.start = Some(now);
                }
                r.head.push(data[0]);
                data = &data[1..];
                match varint(&r.head[1..]) {
                    Varint::Short => continue,
                    Varint::Bad => return self.stop(now, done),
                    Varint::Done(len, _) => {
                        r.packet = Some((r.head[0], len));
                        r.left = len;
                        r.head.clear();
                        r.kept.clear();
                    }
                }
            } else {
                let n = data.len().min(r.left as usize);
                let keep = n.min(MAX_KEEP_BYTES - r.kept.len().min(MAX_KEEP_BYTES));
                r.kept.extend_from_slice(&data[..keep]);
                r.left -= n as u32;
                data = &data[n..];
            }
            let r = if outbound {
                &mut self.out
            } else {
                &mut self.inb
            };
            if let (Some((first, len)), 0) = (r.packet, r.left) {
                r.packet = None;
                let kept = std::mem::take(&mut r.kept);
                let start = r.start.unwrap_or(now);
                let ok = self.packet(outbound, first, len, &kept, start, now, done);
                let r = if outbound {
                    &mut self.out
                } else {
                    &mut self.inb
                };
                r.kept = kept;
                r.kept.clear();
                if !ok {
                    return self.stop(now, done);
                }
            }
        }
        Flow::Continue
    }

    /// Handles one whole packet; false if it cannot be MQTT.
    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        outbound: bool,
        first: u8,
        len: u32,
        kept: &[u8],
        start: SystemTime,
        now: SystemTime,
        done: &mut Vec<Operation>,
    ) -> bool {
        let kind = first >> 4;
        match (kind, outbound) {
            (CONNECT, true) => self.connect(kept),
            (PUBLISH, _) => {
                let Some(mut m) = self.publish(outbound, first, len, kept, now) else {
                    return false;
                };
                m.start = start;
                m.client_id = self.client_id.clone();
                if outbound {
                    let ordinal = self.stamps.next_message();
                    m.carried = self.stamps.take(ordinal);
                }
                let qos = (first >> 1) & 3;
                let id = packet_id(kept);
                if outbound && qos > 0 && self.pending.len() < MAX_IN_FLIGHT {
                    if let Some(id) = id {
                        self.pending.push_back(Pending {
                            id,
                            qos,
                            message: m,
                        });
                        return true;
                    }
                }
                done.push(m.into_operation());
                true
            }
            (PUBACK | PUBREC | PUBCOMP, false) => {
                let Some(id) = kept.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
                    return false;
                };
                let code = kept.get(2).copied().unwrap_or(0);
                let refused = self.level >= 5 && code >= 0x80;
                let ends = |p: &Pending| {
                    p.id == id
                        && match kind {
                            PUBACK => p.qos == 1,
                            PUBREC => p.qos == 2 && refused,
                            _ => p.qos == 2,
                        }
                };
                if let Some(i) = self.pending.iter().position(ends) {
                    if let Some(p) = self.pending.remove(i) {
                        let mut m = p.message;
                        m.end = now;
                        if refused {
                            m.error = Some((format!("0x{code:02x}"), "publish refused".to_owned()));
                        }
                        done.push(m.into_operation());
                    }
                }
                true
            }
            // Acknowledgements of received messages, subscriptions,
            // keep-alives, disconnects, authentication.
            (PUBACK..=PUBCOMP, true) | (8 | 10 | 12 | 14 | 15, true) => true,
            (2 | 6 | 9 | 11 | 13 | 14 | 15, false) => true,
            _ => false,
        }
    }

    fn connect(&mut self, kept: &[u8]) -> bool {
        let Some(name_len) = kept
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return false;
        };
        let at = 2 + name_len;
        let Some(&level) = kept.get(at) else {
            return false;
        };
        self.level = level;
        // Level, flags, keep-alive; then MQTT 5's properties.
        let mut at = at + 4;
        if level >= 5 {
            match kept.get(at..).map(varint) {
                Some(Varint::Done(n, k)) => at += k + n as usize,
                _ => return true,
            }
        }
        if let Some(id) = string(kept, at) {
            if !id.is_empty() {
                self.client_id = Some(name(id));
            }
        }
        true
    }

    /// A PUBLISH packet's message: topic, body size (MQTT 5 aliases followed).
    fn publish(
        &mut self,
        outbound: bool,
        first: u8,
        len: u32,
        kept: &[u8],
        now: SystemTime,
    ) -> Option<Message> {
        let qos = (first >> 1) & 3;
        if qos == 3 {
            return None;
        }
        let topic_len = usize::from(u16::from_be_bytes([*kept.first()?, *kept.get(1)?]));
        let topic = kept.get(2..(2 + topic_len).min(kept.len()))?;
        let mut header = 2 + topic_len + if qos > 0 { 2 } else { 0 };
        let mut alias = None;
        let mut carried = None;
        if self.level >= 5 {
            if let Some(Varint::Done(n, k)) = kept.get(header..).map(varint) {
                let props = kept.get(header + k..).unwrap_or_default();
                alias = properties(props, n as usize, &mut carried);
                header += k + n as usize;
            } else if header as u64 <= u64::from(len) && kept.len() == len as usize {
                return None;
            }
        }
        let r = if outbound {
            &mut self.out
        } else {
            &mut self.inb
        };
        let topic = match alias {
            Some(a) if topic.is_empty() => r
                .aliases
                .iter()
                .find(|(k, _)| *k == a)
                .map(|(_, t)| t.clone())
                .unwrap_or_default(),
            Some(a) => {
                let topic = name(topic);
                r.aliases.retain(|(k, _)| *k != a);
                if r.aliases.len() < MAX_ALIASES {
                    r.aliases.push((a, topic.clone()));
                }
                topic
            }
            None => name(topic),
        };
        let mut m = Message::new("mqtt", outbound, topic, now);
        m.body_size = Some(u64::from(len).saturating_sub(header as u64));
        if !outbound {
            // Without one in its properties (MQTT 3.1.1 has none), one the
            // producer put in the payload itself.
            m.carried = carried.or_else(|| {
                crate::messaging::payload_traceparent(kept.get(header..).unwrap_or_default())
            });
        }
        Some(m)
    }
}

/// A PUBLISH's packet id, after its topic (unknown if the topic was longer
/// than what is kept).
fn packet_id(kept: &[u8]) -> Option<u16> {
    let topic_len = usize::from(u16::from_be_bytes([*kept.first()?, *kept.get(1)?]));
    let b = kept.get(2 + topic_len..4 + topic_len)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// A length-prefixed string at `at`.
fn string(b: &[u8], at: usize) -> Option<&[u8]> {
    let n = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
    b.get(at + 2..at + 2 + n)
}

/// Among a PUBLISH's MQTT 5 properties of `len` bytes: the Topic Alias
/// (0x23), returned; user properties (0x26) `traceparent` and `tracestate`,
/// noted in `carried`.
fn properties(
    props: &[u8],
    len: usize,
    carried: &mut Option<(String, Option<String>)>,
) -> Option<u16> {
    let props = props.get(..len.min(props.len()))?;
    let mut at = 0;
    let mut alias = None;
    while let Some(&id) = props.get(at) {
        at += 1;
        let skip = match id {
            0x01 => 1,
            0x02 => 4,
            0x23 => {
                alias = Some(u16::from_be_bytes([*props.get(at)?, *props.get(at + 1)?]));
                2
            }
            0x03 | 0x08 | 0x09 => 2 + string(props, at).map_or(usize::MAX / 2, <[u8]>::len),
            0x26 => {
                let Some(key) = string(props, at) else {
                    return alias;
                };
                let Some(value) = string(props, at + 2 + key.len()) else {
                    return alias;
                };
                crate::messaging::carried_header(carried, key, value);
                2 + key.len() + 2 + value.len()
            }
            0x0b => match varint(props.get(at..)?) {
                Varint::Done(_, k) => k,
                _ => return alias,
            },
            _ => return alias,
        };
        at = at.saturating_add(skip);
    }
    alias
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::at;

    #[test]
    fn detects_connect_of_each_version() {
        assert_eq!(detect(b""), Detect::NeedMore);
        assert_eq!(detect(b"\x10"), Detect::NeedMore);
        assert_eq!(detect(b"\x10\x80"), Detect::NeedMore);
        assert_eq!(detect(b"\x10\x0c\x00\x04MQTT\x05"), Detect::Yes);
        assert_eq!(detect(b"\x10\x0c\x00\x06MQIsdp\x03"), Detect::Yes);
        assert_eq!(detect(b"\x10\x0c\x00\x04MQTT\x03"), Detect::No);
        assert_eq!(detect(b"\x10\xff\xff\xff\xff"), Detect::No);
        assert_eq!(detect(b"\x20\x02"), Detect::No);
        assert_eq!(detect(b"*1\r\n$4\r\nPING"), Detect::No);
    }

    fn connect(level: u8) -> Vec<u8> {
        let mut body = b"\x00\x04MQTT".to_vec();
        body.extend_from_slice(&[level, 0x02, 0x00, 0x3c]);
        if level == 5 {
            body.push(0);
        }
        body.extend_from_slice(b"\x00\x02c1");
        let mut p = vec![0x10, body.len() as u8];
        p.extend(body);
        p
    }

    #[test]
    fn qos2_ends_at_pubcomp_and_a_refusal_at_pubrec() {
        let mut c = MqttConnection::new();
        let mut done = Vec::new();
        assert_eq!(c.on_outbound(&connect(5), at(0), &mut done), Flow::Continue);
        // QoS 2, topic "t", id 7, no properties, body "ab".
        let publish = b"\x34\x08\x00\x01t\x00\x07\x00ab";
        assert_eq!(c.on_outbound(publish, at(1), &mut done), Flow::Continue);
        assert_eq!(
            c.on_inbound(b"\x50\x02\x00\x07", at(2), &mut done),
            Flow::Continue
        );
        assert!(done.is_empty());
        assert_eq!(
            c.on_inbound(b"\x70\x02\x00\x07", at(3), &mut done),
            Flow::Continue
        );
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].start, done[0].end), (at(1), at(3)));
        assert!(done[0]
            .attributes
            .contains(&("messaging.message.body.size", 2u64.into())));
        assert!(done[0]
            .attributes
            .contains(&("messaging.client.id", "c1".into())));
        // Refused at PUBREC (0x87 not authorized).
        let publish = b"\x34\x08\x00\x01t\x00\x08\x00ab";
        let _ = c.on_outbound(publish, at(4), &mut done);
        let _ = c.on_inbound(b"\x50\x03\x00\x08\x87", at(5), &mut done);
        assert_eq!(done.len(), 2);
        assert!(done[1].attributes.contains(&("error.type", "0x87".into())));
    }

    #[test]
    fn unacknowledged_publishes_end_at_close() {
        let mut c = MqttConnection::new();
        let mut done = Vec::new();
        let _ = c.on_outbound(&connect(4), at(0), &mut done);
        let _ = c.on_outbound(b"\x32\x06\x00\x01t\x00\x01x", at(1), &mut done);
        assert_eq!(c.in_flight(), 1);
        c.on_close(at(2), CloseReason::PeerClosed, &mut done);
        assert_eq!(done.len(), 1);
        assert!(done[0]
            .attributes
            .contains(&("error.type", errors::CONNECTION_CLOSED.into())));
    }

    #[test]
    fn a_received_messages_traceparent_user_property_is_carried() {
        let mut c = MqttConnection::new();
        let mut done = Vec::new();
        let _ = c.on_outbound(&connect(5), at(0), &mut done);
        let tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        // Topic "t", QoS 0; properties: payload format, the user property, an alias.
        let mut props = vec![0x01, 0x01, 0x26, 0x00, 11];
        props.extend_from_slice(b"traceparent");
        props.extend_from_slice(&[0x00, tp.len() as u8]);
        props.extend_from_slice(tp);
        props.extend_from_slice(&[0x23, 0x00, 0x01]);
        let mut body = b"\x00\x01t".to_vec();
        body.push(props.len() as u8);
        body.extend_from_slice(&props);
        body.extend_from_slice(b"hi");
        let mut packet = vec![0x30, body.len() as u8];
        packet.extend_from_slice(&body);
        assert_eq!(c.on_inbound(&packet, at(1), &mut done), Flow::Continue);
        let tp = String::from_utf8(tp.to_vec()).unwrap();
        assert_eq!(done[0].carried, Some((tp, None)));
        assert!(done[0]
            .attributes
            .contains(&("messaging.message.body.size", 2u64.into())));
        assert_eq!(c.inb.aliases, [(1, "t".to_owned())]);
    }

    #[test]
    fn a_connect_from_the_server_stops() {
        let mut c = MqttConnection::new();
        let mut done = Vec::new();
        let _ = c.on_outbound(&connect(4), at(0), &mut done);
        assert_eq!(c.on_inbound(&connect(4), at(1), &mut done), Flow::Stop);
        assert_eq!(
            c.on_inbound(b"\x20\x02\x00\x00", at(1), &mut done),
            Flow::Stop
        );
    }
}

//! MQTT 5: published messages made to carry a context, before they go out.
//!
//! A PUBLISH gets a `traceparent` (and `tracestate`) user property added
//! after its own properties; the properties' length and the packet's
//! remaining length follow (both variable byte integers, which may grow by
//! a byte). MQTT 3.1 and 3.1.1 have no properties: no injection there. A
//! message whose user properties already carry a `traceparent` is left
//! alone, and so is a PUBLISH whose variable header is not wholly in the
//! bytes planned (its start went out already). Payloads are never touched.
//!
//! Pure: the parser's outbound state and the bytes about to go out in,
//! edits out; nothing is fed.

use super::{properties, varint, MqttConnection, Varint, PUBLISH};
use crate::protocol::{Carry, MessageEdit};

/// The largest remaining length MQTT can say.
const MAX_REMAINING: usize = 268_435_455;

impl MqttConnection {
    /// See `Wire::plan_edits` (crate::protocol).
    pub fn plan_edits(
        &self,
        data: &[u8],
        from: usize,
        make: &mut dyn FnMut() -> Option<Carry>,
    ) -> Vec<MessageEdit> {
        let mut edits = Vec::new();
        if self.stopped || self.level < 5 {
            return edits;
        }
        // The packet under way, as far as it is known, goes before `data`.
        let mut prefix = Vec::new();
        let mut skip = 0;
        match self.out.packet {
            None => prefix.extend_from_slice(&self.out.head),
            Some((first, len)) => {
                if self.out.kept.len() == (len - self.out.left) as usize {
                    prefix.push(first);
                    encode_varint(&mut prefix, len as usize);
                    prefix.extend_from_slice(&self.out.kept);
                } else {
                    skip = self.out.left as usize;
                }
            }
        }
        if skip > data.len() {
            return edits;
        }
        let stream = [&prefix[..], &data[skip..]].concat();
        let base = prefix.len() as isize - skip as isize;
        let mut ordinal = self.stamps.next;
        let mut pos = 0usize;
        while let Some(&first) = stream.get(pos) {
            let Varint::Done(len, k) = varint(&stream[pos + 1..]) else {
                break;
            };
            let end = pos + 1 + k + len as usize;
            if first >> 4 == PUBLISH {
                let this = ordinal;
                ordinal += 1;
                let at = pos as isize - base;
                if at >= from as isize {
                    let body = &stream[pos + 1 + k..end.min(stream.len())];
                    if let Some((replace, insert, traceparent)) =
                        rewrite(first, len as usize, body, make)
                    {
                        edits.push(MessageEdit {
                            at: at as usize,
                            replace: 1 + k + replace,
                            insert,
                            ordinal: this,
                            traceparent,
                        });
                    }
                }
            }
            pos = end;
        }
        edits
    }

    /// See `Wire::stamp` (crate::protocol).
    pub fn stamp(&mut self, ordinal: u64, traceparent: String) {
        self.stamps.put(ordinal, traceparent);
    }
}

/// A PUBLISH (type byte `first`, remaining length `len`, of which `body`
/// holds the first bytes), made to carry `make()`'s context: how many of
/// `body`'s bytes (the variable header) the new fixed and variable header
/// replace, those headers, and the `traceparent` put in.
fn rewrite(
    first: u8,
    len: usize,
    body: &[u8],
    make: &mut dyn FnMut() -> Option<Carry>,
) -> Option<(usize, Vec<u8>, String)> {
    let qos = (first >> 1) & 3;
    if qos == 3 {
        return None;
    }
    let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let props_at = 2 + topic_len + if qos > 0 { 2 } else { 0 };
    let Varint::Done(n, k) = varint(body.get(props_at..)?) else {
        return None;
    };
    let props = body.get(props_at + k..props_at + k + n as usize)?;
    let mut carried = None;
    let _ = properties(props, props.len(), &mut carried);
    if carried.is_some_and(|(tp, _)| !tp.is_empty()) {
        return None;
    }
    let carry = make()?;
    let mut added = Vec::with_capacity(128);
    user_property(&mut added, b"traceparent", carry.traceparent.as_bytes());
    if let Some(state) = carry.tracestate.as_deref().filter(|s| !s.is_empty()) {
        user_property(&mut added, b"tracestate", state.as_bytes());
    }
    let mut variable = Vec::with_capacity(props_at + k + props.len() + added.len() + 4);
    variable.extend_from_slice(&body[..props_at]);
    encode_varint(&mut variable, props.len() + added.len());
    variable.extend_from_slice(props);
    variable.extend_from_slice(&added);
    let replaced = props_at + k + props.len();
    let new_len = len - replaced + variable.len();
    if new_len > MAX_REMAINING {
        return None;
    }
    let mut out = vec![first];
    encode_varint(&mut out, new_len);
    out.extend_from_slice(&variable);
    Some((replaced, out, carry.traceparent))
}

/// A user property (0x26): two length-prefixed strings.
fn user_property(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.push(0x26);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// MQTT's variable byte integer.
fn encode_varint(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Flow;
    use crate::testkit::{apply_edits as apply, at, TP};

    fn carry() -> Option<Carry> {
        crate::testkit::carry(None)
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

    /// A QoS 1 PUBLISH to `t` with `props` and a body of `n` bytes.
    fn publish(props: &[u8], n: usize) -> Vec<u8> {
        let mut v = b"\x00\x01t\x00\x05".to_vec();
        encode_varint(&mut v, props.len());
        v.extend_from_slice(props);
        v.extend(std::iter::repeat_n(b'x', n));
        let mut p = vec![0x32];
        encode_varint(&mut p, v.len());
        p.extend(v);
        p
    }

    type Carried = Option<(String, Option<String>)>;

    /// The messages a subscriber would get from `wire`: (carried, body).
    fn received(wire: &[u8]) -> Vec<(Carried, Option<u64>)> {
        let mut c = MqttConnection::new();
        let mut done = Vec::new();
        let _ = c.on_outbound(&connect(5), at(0), &mut done);
        assert_eq!(c.on_inbound(wire, at(1), &mut done), Flow::Continue);
        done.iter()
            .map(|op| {
                let size = op.attributes.iter().find_map(|(k, v)| {
                    let n = match v {
                        crate::span::AttrValue::Int(n) => *n as u64,
                        _ => 0,
                    };
                    (*k == "messaging.message.body.size").then_some(n)
                });
                (op.carried.clone(), size)
            })
            .collect()
    }

    #[test]
    fn a_user_property_is_added_and_the_lengths_follow() {
        let mut c = MqttConnection::new();
        let mut done = Vec::new();
        let _ = c.on_outbound(&connect(5), at(0), &mut done);
        // No properties and a body whose remaining length grows to two
        // bytes; an alias; one already carrying a traceparent.
        let mut data = publish(&[], 60);
        data.extend(publish(&[0x23, 0x00, 0x01], 3));
        let mut carried = Vec::new();
        user_property(&mut carried, b"traceparent", TP.as_bytes());
        data.extend(publish(&carried, 1));
        let edits = c.plan_edits(&data, 0, &mut carry);
        assert_eq!(edits.len(), 2);
        let wire = apply(&data, &edits);
        assert_eq!(wire[1] & 0x80, 0x80, "the remaining length grew a byte");
        let tp = Some((TP.to_owned(), None));
        assert_eq!(
            received(&wire),
            [(tp.clone(), Some(60)), (tp.clone(), Some(3)), (tp, Some(1))]
        );
    }

    #[test]
    fn mqtt_3_1_1_gets_nothing() {
        let mut c = MqttConnection::new();
        let mut done = Vec::new();
        let _ = c.on_outbound(&connect(4), at(0), &mut done);
        assert!(c
            .plan_edits(b"\x30\x04\x00\x01tx", 0, &mut carry)
            .is_empty());
    }
}

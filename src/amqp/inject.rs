//! AMQP 0-9-1: published messages made to carry a context, before they go
//! out.
//!
//! The content header frame that follows a `basic.publish` gets a
//! `traceparent` (and `tracestate`) long-string field in its basic
//! properties' `headers` table: added to the table if there is one (its
//! size grows), or a table added (the `headers` property flag set) after
//! the content type and encoding, where the properties' order puts it. The
//! frame's size follows. A message whose headers already carry a
//! `traceparent` is left alone, and so is a content header not wholly in
//! the bytes planned (its start went out already) or one that would
//! outgrow the smallest frame a server may allow. Bodies are never
//! touched.
//!
//! Pure: the parser's outbound state and the bytes about to go out in,
//! edits out; nothing is fed.

use std::collections::HashMap;

use super::{headers, shortstr, AmqpConnection, FRAME_END, PROTOCOL_HEADER};
use crate::protocol::{Carry, MessageEdit};

/// The largest frame every server accepts (`frame-max` may not be lower).
const MIN_FRAME_MAX: usize = 4096;

/// The `headers` basic property's flag.
const HEADERS_FLAG: u16 = 1 << 13;

impl AmqpConnection {
    /// See `Wire::plan_edits` (crate::protocol).
    pub fn plan_edits(
        &self,
        data: &[u8],
        from: usize,
        make: &mut dyn FnMut() -> Option<Carry>,
    ) -> Vec<MessageEdit> {
        let mut edits = Vec::new();
        if self.stopped {
            return edits;
        }
        // The frame under way, as far as it is known, goes before `data`:
        // frames are then read from the start of `stream`.
        let mut prefix = Vec::new();
        let mut skip = PROTOCOL_HEADER.len().saturating_sub(self.header_sent);
        match self.out.frame {
            None => prefix.extend_from_slice(&self.out.head),
            Some((kind, channel, size)) => {
                let seen = size.saturating_sub(self.out.left) as usize;
                if self.out.kept.len() == seen {
                    prefix.push(kind);
                    prefix.extend_from_slice(&channel.to_be_bytes());
                    prefix.extend_from_slice(&size.to_be_bytes());
                    prefix.extend_from_slice(&self.out.kept);
                } else {
                    // Too long to have been kept: not a publish; skipped.
                    skip = self.out.left as usize + usize::from(self.out.end_left);
                }
            }
        }
        if skip > data.len() {
            return edits;
        }
        let stream = [&prefix[..], &data[skip..]].concat();
        // Where `data` starts in `stream` (it may be before it: skipped).
        let base = prefix.len() as isize - skip as isize;
        // Channels whose next frame is a published message's header, and
        // that message's number.
        let mut awaiting: HashMap<u16, u64> = self
            .channels
            .iter()
            .filter_map(|(&ch, c)| {
                let s = c.sending.as_ref()?;
                (s.size.is_none() && s.message.is_some()).then_some((ch, s.ordinal))
            })
            .collect();
        let mut ordinal = self.stamps.next;
        let mut pos = 0usize;
        while let Some(h) = stream.get(pos..pos + 7) {
            let kind = h[0];
            let channel = u16::from_be_bytes([h[1], h[2]]);
            let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
            let end = pos + 7 + size + 1;
            let payload = &stream[pos + 7..(pos + 7 + size).min(stream.len())];
            match kind {
                1 if payload.len() >= 4 && payload[..4] == [0, 60, 0, 40] => {
                    awaiting.insert(channel, ordinal);
                    ordinal += 1;
                }
                2 => {
                    let this = awaiting.remove(&channel);
                    let at = pos as isize - base;
                    if let (Some(this), Some(frame)) = (this, stream.get(pos..end)) {
                        if at >= from as isize && frame.last() == Some(&FRAME_END) {
                            if let Some((insert, traceparent)) = rewrite(frame, make) {
                                edits.push(MessageEdit {
                                    at: at as usize,
                                    replace: frame.len(),
                                    insert,
                                    ordinal: this,
                                    traceparent,
                                });
                            }
                        }
                    }
                }
                1 | 3 | 8 => {}
                _ => break,
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

/// A whole content header frame, made to carry `make()`'s context: the new
/// frame and the `traceparent` put in; `None` to leave it alone.
fn rewrite(frame: &[u8], make: &mut dyn FnMut() -> Option<Carry>) -> Option<(Vec<u8>, String)> {
    let p = frame.get(7..frame.len() - 1)?;
    let flags = u16::from_be_bytes([*p.get(12)?, *p.get(13)?]);
    if flags & 1 != 0 {
        // More property flags follow: not a basic.publish's.
        return None;
    }
    // The table goes after content-type and content-encoding.
    let mut at = 14;
    for bit in [15, 14] {
        if flags & (1 << bit) != 0 {
            at = shortstr(p, at)?.1;
        }
    }
    let existing = if flags & HEADERS_FLAG != 0 {
        let n = u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?) as usize;
        let table = p.get(at + 4..at + 4 + n)?;
        let mut carried = None;
        headers(table, &mut carried)?;
        if carried.is_some_and(|(tp, _)| !tp.is_empty()) {
            return None;
        }
        Some(table)
    } else {
        None
    };
    let carry = make()?;
    let mut fields = Vec::with_capacity(128);
    field(&mut fields, b"traceparent", carry.traceparent.as_bytes());
    if let Some(state) = carry.tracestate.as_deref().filter(|s| !s.is_empty()) {
        field(&mut fields, b"tracestate", state.as_bytes());
    }
    let mut payload = Vec::with_capacity(p.len() + fields.len() + 4);
    payload.extend_from_slice(&p[..12]);
    payload.extend_from_slice(&(flags | HEADERS_FLAG).to_be_bytes());
    payload.extend_from_slice(&p[14..at]);
    let rest = match existing {
        Some(table) => {
            payload.extend_from_slice(&((table.len() + fields.len()) as u32).to_be_bytes());
            payload.extend_from_slice(table);
            at + 4 + table.len()
        }
        None => {
            payload.extend_from_slice(&(fields.len() as u32).to_be_bytes());
            at
        }
    };
    payload.extend_from_slice(&fields);
    payload.extend_from_slice(&p[rest..]);
    if 7 + payload.len() + 1 > MIN_FRAME_MAX {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&frame[..3]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out.push(FRAME_END);
    Some((out, carry.traceparent))
}

/// A field-table entry: a short-string name and a long-string value.
fn field(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.push(b'S');
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{frame, header, publish};
    use super::*;
    use crate::protocol::Flow;
    use crate::testkit::{apply_edits as apply, at, TP};

    fn carry() -> Option<Carry> {
        crate::testkit::carry(Some("k=v"))
    }

    /// What a broker would read: the received side of the same frames.
    fn delivered(wire: &[u8]) -> Vec<Option<(String, Option<String>)>> {
        let mut c = AmqpConnection::new();
        let mut done = Vec::new();
        // Turn each basic.publish into a basic.deliver to parse the
        // header as received.
        let mut pos = 0;
        let mut inbound = Vec::new();
        while pos + 7 <= wire.len() {
            let size = u32::from_be_bytes(wire[pos + 3..pos + 7].try_into().unwrap()) as usize;
            let f = &wire[pos..pos + 8 + size];
            if f[0] == 1 && f[7..11] == [0, 60, 0, 40] {
                let mut p = vec![0, 60, 0, 60, 1, b't'];
                p.extend_from_slice(&1u64.to_be_bytes());
                p.extend_from_slice(&[0, 0, 1, b'q']);
                inbound.extend(frame(1, 1, &p));
            } else {
                inbound.extend_from_slice(f);
            }
            pos += 8 + size;
        }
        assert_eq!(pos, wire.len());
        let _ = c.on_inbound(&inbound, at(1), &mut done);
        done.into_iter().map(|op| op.carried).collect()
    }

    #[test]
    fn a_headers_table_is_added_or_extended_and_a_carried_one_left_alone() {
        let mut c = AmqpConnection::new();
        let mut done = Vec::new();
        let _ = c.on_outbound(PROTOCOL_HEADER, at(0), &mut done);
        // No properties; content-type and message-id; a headers table.
        let mut data = publish("", "q");
        data.extend(header(2, None));
        data.extend(frame(3, 1, b"hi"));
        data.extend(publish("x", "k"));
        data.extend(header(0, Some("id-1")));
        let mut table = Vec::new();
        field(&mut table, b"a", b"b");
        let mut p = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0];
        p.extend_from_slice(&(table.len() as u32).to_be_bytes());
        p.extend_from_slice(&table);
        data.extend(publish("", "q"));
        data.extend(frame(2, 1, &p));
        let mut carried = Vec::new();
        field(&mut carried, b"traceparent", TP.as_bytes());
        let mut p = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0];
        p.extend_from_slice(&(carried.len() as u32).to_be_bytes());
        p.extend_from_slice(&carried);
        data.extend(publish("", "q"));
        data.extend(frame(2, 1, &p));

        let edits = c.plan_edits(&data, 0, &mut carry);
        assert_eq!(edits.len(), 3);
        assert_eq!(
            edits.iter().map(|e| e.ordinal).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let wire = apply(&data, &edits);
        let want = Some((TP.to_owned(), Some("k=v".to_owned())));
        assert_eq!(
            delivered(&wire),
            [
                want.clone(),
                want.clone(),
                want,
                Some((TP.to_owned(), None))
            ]
        );
        // The producer's parser reads the same messages from the wire.
        let mut again = AmqpConnection::new();
        let _ = again.on_outbound(PROTOCOL_HEADER, at(0), &mut done);
        done.clear();
        assert_eq!(again.on_outbound(&wire, at(1), &mut done), Flow::Continue);
        assert_eq!(done.len(), 4);
        assert_eq!(
            done[1]
                .attributes
                .iter()
                .find(|a| a.0 == "messaging.message.id")
                .map(|a| a.1.clone()),
            Some("id-1".into())
        );
    }

    #[test]
    fn a_header_whose_publish_went_earlier_is_edited_one_under_way_is_not() {
        let mut c = AmqpConnection::new();
        let mut done = Vec::new();
        let _ = c.on_outbound(PROTOCOL_HEADER, at(0), &mut done);
        let _ = c.on_outbound(&publish("", "q"), at(1), &mut done);
        let h = header(2, None);
        let edits = c.plan_edits(&h, 0, &mut carry);
        assert_eq!(edits.len(), 1);
        assert_eq!((edits[0].at, edits[0].ordinal), (0, 0));
        let _ = c.on_outbound(&h[..3], at(1), &mut done);
        assert!(c.plan_edits(&h[3..], 0, &mut carry).is_empty());
    }
}

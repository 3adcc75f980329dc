//! NATS: published messages made to carry a context, before they go out.
//!
//! A `PUB subject [reply] size` line becomes `HPUB subject [reply]
//! header-size total-size` followed by a `NATS/1.0` header block with a
//! `traceparent` (and `tracestate`) field; an `HPUB`'s header block gets
//! the fields added before its closing empty line, and both of its sizes
//! grow by as much. Only when the server's INFO and the client's CONNECT
//! both said `"headers": true` (otherwise the server would refuse an
//! `HPUB`). A message whose headers already carry a `traceparent` is left
//! alone. Payloads are never touched.
//!
//! Pure: the parser's outbound state and the bytes about to go out in,
//! edits out; nothing is fed.

use std::time::UNIX_EPOCH;

use super::{carried, parse_line, Line, NatsConnection, MAX_LINE_BYTES};
use crate::protocol::{Carry, MessageEdit};

impl NatsConnection {
    /// See `Wire::plan_edits` (crate::protocol).
    pub fn plan_edits(
        &self,
        data: &[u8],
        from: usize,
        make: &mut dyn FnMut() -> Option<Carry>,
    ) -> Vec<MessageEdit> {
        let mut edits = Vec::new();
        if self.stopped || !(self.server_headers && self.client_headers) {
            return edits;
        }
        let mut ordinal = self.stamps.next;
        // Where the outbound reader stands: inside a payload, or a line.
        let mut pos = usize::try_from(self.out.skip)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let mut partial: &[u8] = if self.out.skip > 0 {
            &[]
        } else {
            &self.out.line
        };
        while pos < data.len() {
            let rest = &data[pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                break;
            };
            if partial.len() + nl > MAX_LINE_BYTES {
                break;
            }
            let began_here = partial.is_empty();
            let line = [partial, &rest[..nl]].concat();
            partial = &[];
            let line_start = pos;
            pos += nl + 1;
            match parse_line(&line, true, UNIX_EPOCH) {
                Line::Message(_, total, header_size, _) => {
                    let this = ordinal;
                    ordinal += 1;
                    if began_here && line_start >= from {
                        if let Some((block_len, insert, traceparent)) =
                            rewrite(&line, &data[pos..], header_size, make)
                        {
                            edits.push(MessageEdit {
                                at: line_start,
                                replace: pos - line_start + block_len,
                                insert,
                                ordinal: this,
                                traceparent,
                            });
                        }
                    }
                    let skip = usize::try_from(total.saturating_add(2)).unwrap_or(usize::MAX);
                    pos = pos.saturating_add(skip);
                }
                Line::Bad => break,
                _ => {}
            }
        }
        edits
    }

    /// See `Wire::stamp` (crate::protocol).
    pub fn stamp(&mut self, ordinal: u64, traceparent: String) {
        self.stamps.put(ordinal, traceparent);
    }
}

/// A publish line (without its `\n`) and the bytes after it: the number
/// of those that are its header block (replaced too), the line and block
/// that carry `make()`'s context, and the `traceparent` put in. `None`:
/// leave it alone (it carries a `traceparent`, its header block is not all
/// here, or the line is not one we rewrite).
fn rewrite(
    line: &[u8],
    after: &[u8],
    header_size: u64,
    make: &mut dyn FnMut() -> Option<Carry>,
) -> Option<(usize, Vec<u8>, String)> {
    let crlf = line.ends_with(b"\r");
    let body = line.strip_suffix(b"\r").unwrap_or(line);
    let words: Vec<&[u8]> = body
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty())
        .collect();
    let hpub = words.first()?.eq_ignore_ascii_case(b"HPUB");
    let sizes = 1 + usize::from(hpub);
    if words.len() < 1 + 1 + sizes {
        return None;
    }
    let names = &words[1..words.len() - sizes];
    let total: u64 = super::number(words[words.len() - 1])?;
    let old_block: &[u8] = if hpub {
        let h = usize::try_from(header_size).ok()?;
        let block = after.get(..h)?;
        if !block.ends_with(b"\r\n\r\n") {
            return None;
        }
        if carried(block).is_some_and(|(tp, _)| !tp.is_empty()) {
            return None;
        }
        block
    } else {
        b""
    };
    let carry = make()?;
    let mut block = Vec::with_capacity(old_block.len() + 128);
    if hpub {
        block.extend_from_slice(&old_block[..old_block.len() - 2]);
    } else {
        block.extend_from_slice(b"NATS/1.0\r\n");
    }
    block.extend_from_slice(b"traceparent: ");
    block.extend_from_slice(carry.traceparent.as_bytes());
    block.extend_from_slice(b"\r\n");
    if let Some(state) = carry.tracestate.as_deref().filter(|s| !s.is_empty()) {
        block.extend_from_slice(b"tracestate: ");
        block.extend_from_slice(state.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    block.extend_from_slice(b"\r\n");
    let added = (block.len() - old_block.len()) as u64;
    let mut out = b"HPUB".to_vec();
    for n in names {
        out.push(b' ');
        out.extend_from_slice(n);
    }
    out.extend_from_slice(format!(" {} {}", block.len(), total + added).as_bytes());
    out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    out.extend_from_slice(&block);
    Some((old_block.len(), out, carry.traceparent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{apply_edits as apply, at, TP};

    fn ready() -> NatsConnection {
        let mut c = NatsConnection::new();
        let mut done = Vec::new();
        let _ = c.on_inbound(
            b"INFO {\"headers\":true,\"client_id\":7}\r\n",
            at(0),
            &mut done,
        );
        let _ = c.on_outbound(b"CONNECT {\"headers\": true}\r\n", at(0), &mut done);
        c
    }

    fn carry() -> Option<Carry> {
        crate::testkit::carry(None)
    }

    #[test]
    fn pub_becomes_hpub_with_a_traceparent() {
        let c = ready();
        let data = b"PUB a.b _INBOX.x 5\r\nhello\r\nPING\r\nPUB c 0\r\n\r\n";
        let edits = c.plan_edits(data, 0, &mut carry);
        assert_eq!(edits.len(), 2);
        assert_eq!((edits[0].ordinal, edits[1].ordinal), (0, 1));
        let wire = apply(data, &edits);
        let block = format!("NATS/1.0\r\ntraceparent: {TP}\r\n\r\n");
        let want = format!(
            "HPUB a.b _INBOX.x {h} {t}\r\n{block}hello\r\nPING\r\nHPUB c {h} {h}\r\n{block}\r\n",
            h = block.len(),
            t = block.len() + 5
        );
        assert_eq!(String::from_utf8(wire).unwrap(), want);
    }

    #[test]
    fn hpub_is_extended_and_one_with_a_traceparent_left_alone() {
        let c = ready();
        let hdr = "NATS/1.0\r\nA: b\r\n\r\n";
        let data = format!("HPUB s {} {}\r\n{hdr}hi\r\n", hdr.len(), hdr.len() + 2);
        let edits = c.plan_edits(data.as_bytes(), 0, &mut carry);
        let wire = String::from_utf8(apply(data.as_bytes(), &edits)).unwrap();
        let block = format!("NATS/1.0\r\nA: b\r\ntraceparent: {TP}\r\n\r\n");
        assert_eq!(
            wire,
            format!(
                "HPUB s {} {}\r\n{block}hi\r\n",
                block.len(),
                block.len() + 2
            )
        );
        let hdr = format!("NATS/1.0\r\nTraceparent: {TP}\r\n\r\n");
        let data = format!("HPUB s {} {}\r\n{hdr}hi\r\n", hdr.len(), hdr.len() + 2);
        assert!(c.plan_edits(data.as_bytes(), 0, &mut carry).is_empty());
    }

    #[test]
    fn no_headers_no_edits() {
        let mut c = NatsConnection::new();
        let mut done = Vec::new();
        let _ = c.on_inbound(b"INFO {\"headers\":true}\r\n", at(0), &mut done);
        let _ = c.on_outbound(b"CONNECT {\"verbose\":false}\r\n", at(0), &mut done);
        assert!(c.plan_edits(b"PUB a 1\r\nx\r\n", 0, &mut carry).is_empty());
    }

    #[test]
    fn a_line_begun_in_an_earlier_write_is_left_and_the_next_edited() {
        let mut c = ready();
        let mut done = Vec::new();
        let _ = c.on_outbound(b"PUB a ", at(1), &mut done);
        let edits = c.plan_edits(b"3\r\nabc\r\nPUB b 1\r\nx\r\n", 0, &mut carry);
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].at, 8);
        assert_eq!(edits[0].ordinal, 1);
    }
}

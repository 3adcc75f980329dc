//! The capture thread's side: records back into connections, then spans.
//!
//! Each captured connection has a [`Connection`] in replay mode here: it
//! gets the head bytes, body prefixes and skipped byte counts the app's
//! threads recorded, in the order they recorded them (by sequence number:
//! a connection written on one thread and read on another has records in
//! two rings), and the span identities the app's threads chose. It parses
//! and builds spans exactly as the app's thread once did.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::ring::{flag, kind, Header};
use super::{from_ns, Opened};
use crate::connection::{CloseReason, Connection};
use crate::sharded::IdMap;
use crate::tracer::{Assigned, Tracer};

/// Records waiting for an earlier one of their connection, at most.
const MAX_WAITING: usize = 1024;

/// Connections decoded at once, at most. A connection whose CLOSE record
/// was refused by a full ring would otherwise stay forever: past this, the
/// oldest-opened one is dropped (its exchanges in flight unreported).
const MAX_CONNS: usize = 65_536;

/// How long a connection's records may wait for an earlier one before the
/// gap is taken as lost.
const GAP_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Decoder {
    conns: IdMap<u64, Back>,
    /// Records of connections whose OPEN is not in yet: it sits in another
    /// thread's ring, drained later (a connection written on one thread
    /// and read on another). At most [`MAX_WAITING`] records in all.
    early: IdMap<u64, Early>,
    early_records: usize,
    /// Connections given up because records went missing.
    pub gaps: u64,
    /// Connections dropped to keep within [`MAX_CONNS`].
    pub evicted: u64,
}

struct Back {
    conn: Connection,
    next: u64,
    waiting: BTreeMap<u64, (Header, Vec<u8>)>,
    since: Option<Instant>,
}

/// A connection's records that came before its OPEN.
struct Early {
    records: BTreeMap<u64, (Header, Vec<u8>)>,
    since: Instant,
}

impl Decoder {
    /// One record from a ring.
    pub fn record(&mut self, h: &Header, payload: &[u8], tracer: &Tracer) {
        if h.kind == kind::OPEN {
            // SAFETY: an OPEN record's `extra` is a `Box<Opened>` leaked by
            // the pusher, which gave up ownership when the push succeeded;
            // each record is drained exactly once.
            let opened = unsafe { Box::from_raw(h.extra as usize as *mut Opened) };
            if self.conns.len() >= MAX_CONNS {
                if let Some(&oldest) = self.conns.keys().min() {
                    self.conns.remove(&oldest);
                    self.evicted += 1;
                }
            }
            let mut conn = Connection::replay(opened.role, opened.peer, opened.local);
            if let Some(name) = opened.tls {
                conn.set_tls(name);
            }
            let mut back = Back {
                conn,
                next: h.seq + 1,
                waiting: BTreeMap::new(),
                since: None,
            };
            if let Some(early) = self.early.remove(&h.conn) {
                self.early_records -= early.records.len();
                back.waiting = early.records;
                back.since = Some(early.since);
                if advance(&mut back, tracer) {
                    return;
                }
            }
            self.conns.insert(h.conn, back);
            return;
        }
        let Some(back) = self.conns.get_mut(&h.conn) else {
            // Its OPEN is in a ring not drained yet: it waits (bounded,
            // and for at most [`GAP_TIMEOUT`]).
            if self.early_records < MAX_WAITING {
                let early = self.early.entry(h.conn).or_insert_with(|| Early {
                    records: BTreeMap::new(),
                    since: Instant::now(),
                });
                if early
                    .records
                    .insert(h.seq, (*h, payload.to_vec()))
                    .is_none()
                {
                    self.early_records += 1;
                }
            }
            return;
        };
        if h.flags & flag::RESYNC != 0 && h.seq >= back.next {
            back.conn.resync();
            back.waiting.retain(|&s, _| s > h.seq);
            back.next = h.seq;
        }
        if h.seq != back.next {
            if h.seq > back.next && back.waiting.len() < MAX_WAITING {
                back.waiting.insert(h.seq, (*h, payload.to_vec()));
                back.since.get_or_insert_with(Instant::now);
            }
            return;
        }
        let closed = apply(&mut back.conn, h, payload, tracer);
        back.next += 1;
        if closed | advance(back, tracer) {
            self.conns.remove(&h.conn);
        }
    }

    /// Gives up on gaps that lasted too long: the connection goes on from
    /// the records after the gap.
    pub fn tick(&mut self, tracer: &Tracer) {
        let before = self.early.len();
        self.early.retain(|_, e| e.since.elapsed() < GAP_TIMEOUT);
        if self.early.len() < before {
            self.gaps += (before - self.early.len()) as u64;
            self.early_records = self.early.values().map(|e| e.records.len()).sum();
        }
        let mut lost = Vec::new();
        for (&id, back) in &mut self.conns {
            if back.since.is_some_and(|t| t.elapsed() >= GAP_TIMEOUT) {
                lost.push(id);
            }
        }
        for id in lost {
            self.gaps += 1;
            let Some(back) = self.conns.get_mut(&id) else {
                continue;
            };
            back.conn.resync();
            let mut closed = false;
            let waiting = std::mem::take(&mut back.waiting);
            for (seq, (h, p)) in waiting {
                back.next = seq + 1;
                closed |= apply(&mut back.conn, &h, &p, tracer);
            }
            back.since = None;
            if closed {
                self.conns.remove(&id);
            }
        }
    }

    /// Some records wait for earlier ones.
    pub fn waiting(&self) -> bool {
        !self.early.is_empty() || self.conns.values().any(|b| !b.waiting.is_empty())
    }

    /// Connections being decoded.
    pub fn open(&self) -> usize {
        self.conns.len()
    }
}

/// Applies the waiting records that are next in order; true when one
/// closed the connection.
fn advance(back: &mut Back, tracer: &Tracer) -> bool {
    let mut closed = false;
    while let Some((h, p)) = back.waiting.remove(&back.next) {
        closed |= apply(&mut back.conn, &h, &p, tracer);
        back.next += 1;
    }
    if back.waiting.is_empty() {
        back.since = None;
    }
    closed
}

/// Applies one record; true when it closed the connection.
fn apply(conn: &mut Connection, h: &Header, payload: &[u8], tracer: &Tracer) -> bool {
    let now = from_ns(h.time_ns);
    let outbound = h.dir == 1;
    let mut payload = payload;
    if h.kind == kind::DATA && h.flags & flag::HAS_IDENT != 0 {
        let n = payload
            .get(..2)
            .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
        if let Some((who, tags)) = payload.get(2..2 + n).and_then(decode_identity) {
            conn.give_identity(who, tags, now);
        }
        payload = payload.get(2 + n..).unwrap_or_default();
    }
    // A SKIP riding on a DATA record: its 9 bytes end the payload.
    let mut skip = None;
    if h.kind == kind::DATA && h.flags & flag::SKIP_AFTER != 0 {
        let at = payload.len().saturating_sub(9);
        skip = Some(&payload[at..]);
        payload = &payload[..at];
    }
    match h.kind {
        kind::DATA if outbound => {
            let _ = conn.on_outbound(payload, stamp(h), tracer);
        }
        kind::DATA => {
            let _ = conn.on_inbound(payload, stamp(h), tracer);
        }
        kind::SKIP => skip = Some(payload),
        kind::IDENT => {
            if let Some((who, tags)) = decode_identity(payload) {
                conn.give_identity(who, tags, now);
            }
        }
        kind::CLOSE => {
            let reason = match h.extra {
                1 => CloseReason::PeerClosed,
                2 => CloseReason::ProcessExit,
                _ => CloseReason::Closed,
            };
            conn.on_close(now, reason, tracer);
            return true;
        }
        _ => {}
    }
    if let Some(p) = skip {
        let total = p
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        let ended = p.get(8).is_some_and(|&b| b != 0);
        let _ = conn.on_skipped(outbound, h.extra, total, ended, now, tracer);
    }
    false
}

/// A record's time, as the app's call read it.
fn stamp(h: &Header) -> super::Stamp {
    super::Stamp { ns: h.time_ns }
}

/// The wire form of a close reason.
pub fn close_code(reason: CloseReason) -> u64 {
    match reason {
        CloseReason::Closed => 0,
        CloseReason::PeerClosed => 1,
        CloseReason::ProcessExit => 2,
    }
}

/// A span identity (and the execution tags of its local parent) as record
/// payload: trace id, span id, flags, parent presence and remoteness,
/// parent id, then `tracestate` and the tags, each with a u16 length, then
/// the parent candidates (u16, see [`crate::hint`]).
pub fn encode_identity(who: &Assigned, tags: &[u8], out: &mut Vec<u8>) {
    let state = who.context.trace_state.as_deref().unwrap_or("").as_bytes();
    let state = &state[..state.len().min(u16::MAX as usize)];
    let tags = &tags[..tags.len().min(u16::MAX as usize)];
    // The fixed part is assembled on the stack and copied once (this runs
    // on the app's thread, for every sampled request head).
    let mut fixed = [0u8; 36];
    fixed[..16].copy_from_slice(&who.context.trace_id);
    fixed[16..24].copy_from_slice(&who.context.span_id);
    fixed[24] = who.context.trace_flags;
    fixed[25] = u8::from(who.parent.is_some()) | (u8::from(who.parent_is_remote) << 1);
    fixed[26..34].copy_from_slice(&who.parent.unwrap_or_default());
    fixed[34..36].copy_from_slice(&(state.len() as u16).to_le_bytes());
    out.reserve(36 + state.len() + 2 + tags.len() + 2);
    out.extend_from_slice(&fixed);
    out.extend_from_slice(state);
    out.extend_from_slice(&(tags.len() as u16).to_le_bytes());
    out.extend_from_slice(tags);
    let candidates = u16::try_from(who.candidates).unwrap_or(u16::MAX);
    out.extend_from_slice(&candidates.to_le_bytes());
}

/// The inverse of [`encode_identity`]; tags unpacked as
/// [`context::set_tags`](crate::context::set_tags) packs them.
pub fn decode_identity(p: &[u8]) -> Option<(Assigned, Vec<(u8, String)>)> {
    let trace_id: [u8; 16] = p.get(0..16)?.try_into().ok()?;
    let span_id: [u8; 8] = p.get(16..24)?.try_into().ok()?;
    let flags = *p.get(24)?;
    let bits = *p.get(25)?;
    let parent: [u8; 8] = p.get(26..34)?.try_into().ok()?;
    let n = usize::from(u16::from_le_bytes(p.get(34..36)?.try_into().ok()?));
    let state = p.get(36..36 + n)?;
    let at = 36 + n;
    let m = usize::from(u16::from_le_bytes(p.get(at..at + 2)?.try_into().ok()?));
    let packed = p.get(at + 2..at + 2 + m)?;
    let at = at + 2 + m;
    let candidates = usize::from(u16::from_le_bytes(p.get(at..at + 2)?.try_into().ok()?));
    let who = Assigned {
        context: crate::span::SpanContext {
            trace_id,
            span_id,
            trace_flags: flags,
            trace_state: (!state.is_empty()).then(|| String::from_utf8_lossy(state).into_owned()),
        },
        parent: (bits & 1 != 0).then_some(parent),
        parent_is_remote: bits & 2 != 0,
        candidates,
    };
    Some((who, crate::context::unpack_tags(packed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records whose OPEN never comes (a connection evicted, or a bug)
    /// wait bounded, then go as a gap.
    #[test]
    fn records_without_their_open_are_bounded_and_time_out() {
        let (t, _spans) = crate::capture::differential::tracer_capturing(0);
        let mut d = Decoder::default();
        for i in 0..(2 * MAX_WAITING as u64) {
            let h = Header {
                conn: 1 + i % 7,
                seq: 1 + i,
                kind: kind::DATA,
                ..Header::default()
            };
            d.record(&h, b"GET / HTTP/1.1\r\n", &t);
        }
        assert_eq!(d.early_records, MAX_WAITING);
        assert!(d.waiting());
        d.tick(&t);
        assert_eq!(d.gaps, 0, "not yet");
        std::thread::sleep(GAP_TIMEOUT);
        d.tick(&t);
        assert_eq!((d.early_records, d.gaps), (0, 7));
        assert!(!d.waiting());
    }

    #[test]
    fn identities_survive_the_record() {
        let who = Assigned {
            context: crate::span::SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                trace_flags: 1,
                trace_state: Some("a=b".into()),
            },
            parent: Some([3; 8]),
            parent_is_remote: true,
            candidates: 3,
        };
        let mut buf = Vec::new();
        encode_identity(&who, &[0, 2, b'h', b'i'], &mut buf);
        let (back, tags) = decode_identity(&buf).unwrap();
        assert_eq!(back.context, who.context);
        assert_eq!(back.parent, who.parent);
        assert!(back.parent_is_remote);
        assert_eq!(back.candidates, 3);
        assert_eq!(tags, vec![(0, "hi".to_owned())]);
        for cut in 0..buf.len() {
            assert!(decode_identity(&buf[..cut]).is_none(), "cut at {cut}");
        }
    }
}

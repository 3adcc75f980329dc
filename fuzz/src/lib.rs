//! What the connection fuzz targets share: the input format (a script of
//! calls on one connection), the replay of a script whole and cut into
//! pieces, and the checks every parser must pass whatever the bytes.
//!
//! A script is `FLAGS PIECE` then records `HEADER LEN_LO LEN_HI BYTES…`:
//! - FLAGS bit 0: the traced process is the server (HTTP only); bits 1-2:
//!   how the connection ends (peer closed, closed, process exit, or not at
//!   all);
//! - PIECE: how the second replay cuts each record: 0 byte by byte, else
//!   pieces of 1 to PIECE bytes (pseudo-random, seeded by PIECE);
//! - HEADER bit 0: outbound (the process sent it), else inbound; bit 1 on an
//!   outbound record: bytes sent unseen (`sendfile`), HTTP only;
//! - LEN: little-endian length, cut to what is left of the input.
//!
//! `scripts/fuzz.sh` writes seeds in this format from the captured
//! fixtures under `tests/fixtures/`.

use std::fmt::Debug;
use std::time::{Duration, SystemTime};

pub use lumigo_core::protocol::{CloseReason, Flow, Operation};
use lumigo_core::span::AttrValue;

/// Most records of a script that are replayed (bounds a run's time).
pub const MAX_RECORDS: usize = 512;

/// One call on the connection.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub outbound: bool,
    /// Sent unseen: `data.len()` bytes through `sendfile`.
    pub opaque: bool,
    pub data: &'a [u8],
}

/// A decoded script (see the module docs).
#[derive(Debug)]
pub struct Script<'a> {
    pub server: bool,
    pub close: Option<CloseReason>,
    pub piece: u8,
    pub records: Vec<Record<'a>>,
}

impl<'a> Script<'a> {
    pub fn parse(input: &'a [u8]) -> Script<'a> {
        let flags = input.first().copied().unwrap_or(0);
        let piece = input.get(1).copied().unwrap_or(0);
        let mut rest = input.get(2..).unwrap_or_default();
        let mut records = Vec::new();
        while !rest.is_empty() && records.len() < MAX_RECORDS {
            let header = rest[0];
            let len = match rest.get(1..3) {
                Some(l) => usize::from(u16::from_le_bytes([l[0], l[1]])),
                None => rest.len(),
            };
            rest = rest.get(3..).unwrap_or_default();
            let (data, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            records.push(Record {
                outbound: header & 1 == 1,
                opaque: header & 3 == 3,
                data,
            });
        }
        let close = match (flags >> 1) & 3 {
            0 => Some(CloseReason::PeerClosed),
            1 => Some(CloseReason::Closed),
            2 => Some(CloseReason::ProcessExit),
            _ => None,
        };
        Script {
            server: flags & 1 == 1,
            close,
            piece,
            records,
        }
    }

    /// The script as the data path's differential check takes it, and its
    /// longest seen record (at least 1): the calls of the differential
    /// targets.
    pub fn steps(&self) -> (Vec<lumigo_core::capture::differential::Step<'a>>, usize) {
        use lumigo_core::capture::differential::Step;
        let steps: Vec<Step<'a>> = self
            .records
            .iter()
            .map(|r| match (r.outbound, r.opaque) {
                (true, true) => Step::Opaque(r.data.len()),
                (true, false) => Step::Out(r.data),
                (false, _) => Step::In(r.data),
            })
            .collect();
        let longest = self
            .records
            .iter()
            .filter(|r| !r.opaque)
            .map(|r| r.data.len())
            .max()
            .unwrap_or(1);
        (steps, longest.max(1))
    }

    /// Bytes of the records in one direction (unseen ones included).
    pub fn bytes(&self, outbound: bool) -> u64 {
        self.records
            .iter()
            .filter(|r| r.outbound == outbound)
            .map(|r| r.data.len() as u64)
            .sum()
    }
}

/// A connection parser as the targets drive it.
pub trait Conn {
    /// What the parser reports: an operation, an HTTP exchange.
    type Out: Clone + Debug + PartialEq;
    fn outbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Self::Out>) -> Flow;
    fn inbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Self::Out>) -> Flow;
    /// `n` bytes sent unseen; `None` where the parser has no such call.
    fn opaque(&mut self, _n: usize, _now: SystemTime, _done: &mut Vec<Self::Out>) -> Option<Flow> {
        None
    }
    fn close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<Self::Out>);
    /// What of a report may depend on how the bytes were split (compared
    /// as this leaves it); nothing by default.
    fn normalize(_out: &mut Self::Out) {}
    /// The caps, checked after every call.
    fn check(&self);
    /// What must hold once the connection is closed.
    fn check_closed(&self);
}

/// The time of record `i`: its own second, so that timing is compared too.
pub fn at(i: usize) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1 + i as u64)
}

/// A tiny xorshift generator (never seeded with 0).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Replays `script` into a fresh connection, each record in one call
/// (`cut` false) or in pieces; checks the caps after every call and the
/// Stop contract (once a call says Stop, every later one does and nothing
/// more is reported). Returns what was reported.
pub fn replay<C: Conn>(make: &dyn Fn() -> C, script: &Script, cut: bool) -> Vec<C::Out> {
    let mut conn = make();
    let mut done = Vec::new();
    let mut stopped: Option<usize> = None;
    let mut rng = Rng(u64::from(script.piece) | 0x100);
    // LUMIGO_FUZZ_TRACE=1 prints every call, to see where two replays part.
    let trace = std::env::var_os("LUMIGO_FUZZ_TRACE").is_some();
    let mut note = |flow: Flow, done: &Vec<C::Out>| match stopped {
        Some(n) => {
            assert_eq!(flow, Flow::Stop, "Stop is sticky");
            assert_eq!(done.len(), n, "nothing is reported after Stop");
        }
        None if flow == Flow::Stop => stopped = Some(done.len()),
        None => {}
    };
    for (i, r) in script.records.iter().enumerate() {
        let now = at(i);
        if r.opaque {
            if let Some(flow) = conn.opaque(r.data.len(), now, &mut done) {
                note(flow, &done);
                conn.check();
                continue;
            }
        }
        let mut rest = r.data;
        loop {
            let n = match (cut, script.piece) {
                (false, _) => rest.len(),
                (true, 0) => 1,
                (true, p) => 1 + rng.below(usize::from(p)),
            };
            let (piece, tail) = rest.split_at(n.min(rest.len()));
            let flow = if r.outbound {
                conn.outbound(piece, now, &mut done)
            } else {
                conn.inbound(piece, now, &mut done)
            };
            if trace {
                let dir = if r.outbound { ">" } else { "<" };
                eprintln!(
                    "{i} {dir} {} bytes: {flow:?}, {} reported",
                    piece.len(),
                    done.len()
                );
            }
            note(flow, &done);
            conn.check();
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
    }
    if let Some(reason) = script.close {
        let before = done.len();
        conn.close(at(script.records.len()), reason, &mut done);
        if stopped.is_some() {
            assert_eq!(done.len(), before, "nothing is reported after Stop");
        }
        conn.check();
        conn.check_closed();
    }
    done
}

/// Replays `input` whole and cut into pieces: both must report the same
/// (a parser must not depend on how the kernel split the bytes). Returns
/// what was reported.
pub fn run<'a, C: Conn>(input: &'a [u8], make: &dyn Fn() -> C) -> (Script<'a>, Vec<C::Out>) {
    let script = Script::parse(input);
    let mut whole = replay(make, &script, false);
    let mut cut = replay(make, &script, true);
    whole
        .iter_mut()
        .chain(cut.iter_mut())
        .for_each(C::normalize);
    assert_eq!(
        whole, cut,
        "the same bytes cut differently report differently"
    );
    (script, whole)
}

/// The checks every reported operation passes: a bounded name, a bounded
/// number of attributes, string values within `max_value` bytes, an end
/// not before the start, a bounded carried context.
pub fn check_operation(op: &Operation, max_name: usize, max_value: usize) {
    assert!(
        op.name.len() <= max_name,
        "name of {} bytes: {op:?}",
        op.name.len()
    );
    assert!(
        op.attributes.len() <= 32,
        "{} attributes",
        op.attributes.len()
    );
    assert!(op.end >= op.start, "ends before it starts: {op:?}");
    for (key, value) in &op.attributes {
        if let AttrValue::Str(s) = value {
            assert!(s.len() <= max_value, "{key} of {} bytes", s.len());
        }
    }
    if let Some((parent, state)) = &op.carried {
        let max = lumigo_core::messaging::MAX_CONTEXT_BYTES;
        assert!(
            parent.len() <= max,
            "carried traceparent of {} bytes",
            parent.len()
        );
        assert!(
            state.as_ref().is_none_or(|s| s.len() <= max),
            "carried tracestate"
        );
    }
}

/// Defines `Target`, a parser of [`Operation`]s with the usual methods
/// wrapped to implement [`Conn`] with the given cap checks.
#[macro_export]
macro_rules! operation_conn {
    ($t:ty, |$c:ident| $check:block, |$d:ident| $closed:block) => {
        struct Target($t);

        impl $crate::Conn for Target {
            type Out = $crate::Operation;
            fn outbound(
                &mut self,
                d: &[u8],
                now: std::time::SystemTime,
                done: &mut Vec<$crate::Operation>,
            ) -> $crate::Flow {
                self.0.on_outbound(d, now, done)
            }
            fn inbound(
                &mut self,
                d: &[u8],
                now: std::time::SystemTime,
                done: &mut Vec<$crate::Operation>,
            ) -> $crate::Flow {
                self.0.on_inbound(d, now, done)
            }
            fn close(
                &mut self,
                now: std::time::SystemTime,
                reason: $crate::CloseReason,
                done: &mut Vec<$crate::Operation>,
            ) {
                self.0.on_close(now, reason, done)
            }
            fn check(&self) {
                let $c = &self.0;
                $check
            }
            fn check_closed(&self) {
                let $d = &self.0;
                $closed
            }
        }
    };
}

//! The shared harness for the protocol parsers' unit tests (HTTP, MySQL,
//! PostgreSQL, Redis): the events a test feeds a connection, the ways a
//! replay cuts their bytes into calls, a deterministic random generator, the
//! replay's clock, and the check of the Stop contract. Each parser's tests
//! keep what is their own: message builders, summaries, bounds, outcomes.

use std::time::{Duration, SystemTime};

use crate::protocol::{CloseReason, Flow};

/// One call on the connection.
#[derive(Clone, Debug)]
pub(crate) enum Ev {
    Out(Vec<u8>),
    In(Vec<u8>),
    Close(CloseReason),
}

/// How a replay cuts each event's bytes into calls. Whatever the split, a
/// parser must report the same.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Split {
    /// One call per event.
    Whole,
    /// One call per byte.
    Bytes,
    /// Pieces of random length; the seed names one way of cutting a replay.
    Random(u64),
}

impl Split {
    /// Starts cutting a replay this way; random pieces are 1 to `max` bytes.
    pub(crate) fn cutter(self, max: usize) -> Cutter {
        let rng = match self {
            Split::Random(seed) => Rng(seed | 1),
            _ => Rng(1),
        };
        Cutter {
            split: self,
            max,
            rng,
        }
    }
}

/// A [`Split`] under way. One generator serves all of a replay's events, so
/// that a seed cuts a whole replay the same way every time.
pub(crate) struct Cutter {
    split: Split,
    max: usize,
    rng: Rng,
}

impl Cutter {
    /// The pieces of `data`, in order, one per call.
    pub(crate) fn pieces<'a>(&'a mut self, data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = data;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let n = match self.split {
                Split::Whole => rest.len(),
                Split::Bytes => 1,
                Split::Random(_) => 1 + self.rng.below(self.max),
            };
            let (piece, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            Some(piece)
        })
    }
}

/// A tiny xorshift generator: deterministic, no dependency. The state must
/// not be 0, which the generator would never leave.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The time of event `i`: every event has its own second, so a summary of
/// an operation's start and end also checks its timing.
pub(crate) fn at(i: usize) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(i as u64)
}

/// Where in a replay the connection first said Stop, checking on the way
/// the contract of [`Flow::Stop`]: every later call says Stop again and
/// reports nothing.
#[derive(Debug, Default)]
pub(crate) struct StopWatch {
    /// Index of the event at which the connection first said Stop.
    pub(crate) at: Option<usize>,
}

impl StopWatch {
    /// Notes event `i`: the flows of its calls, and how many operations
    /// had been reported before it and after it.
    pub(crate) fn note(&mut self, i: usize, flows: &[Flow], before: usize, after: usize) {
        if self.at.is_some() {
            assert_eq!(after, before, "nothing is reported after Stop");
            assert!(flows.iter().all(|f| *f == Flow::Stop), "Stop is sticky");
        } else if flows.contains(&Flow::Stop) {
            self.at = Some(i);
        }
    }
}

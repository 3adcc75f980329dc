//! The shared harness for the protocol parsers' unit tests (HTTP, MySQL,
//! PostgreSQL, Redis): the events a test feeds a connection, the ways a
//! replay cuts their bytes into calls, a deterministic random generator, the
//! replay's clock, and the check of the Stop contract. Each parser's tests
//! keep what is their own: message builders, summaries, bounds, outcomes.

use std::time::{Duration, SystemTime};

use crate::protocol::{Carry, CloseReason, Flow, MessageEdit};

/// One call on the connection.
#[derive(Clone, Debug)]
pub(crate) enum Ev {
    Out(Vec<u8>),
    In(Vec<u8>),
    Close(CloseReason),
}

/// A captured conversation as the data path's differential harness takes
/// it (see `crate::capture::differential`); it has no closes.
pub(crate) fn steps(events: &[Ev]) -> Vec<crate::capture::differential::Step<'_>> {
    use crate::capture::differential::Step;
    events
        .iter()
        .map(|e| match e {
            Ev::Out(b) => Step::Out(b),
            Ev::In(b) => Step::In(b),
            other => panic!("{other:?}"),
        })
        .collect()
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

/// What [`fuzz_connection`] throws at a client connection: pieces for each
/// direction (one list may serve both), and, one time in `noise`, a run of
/// random bytes instead.
pub(crate) struct Pieces<'a> {
    pub(crate) outbound: &'a [&'a [u8]],
    pub(crate) inbound: &'a [&'a [u8]],
    pub(crate) noise: usize,
}

/// Feeds `conn` 1 to 30 random pieces (events `first..`), each split at
/// random into calls of 1 to 8 bytes; checks the Stop contract and calls
/// `check` after every piece (the caps). Returns how many operations the
/// connection reported.
pub(crate) fn fuzz_connection<W: crate::protocol::Wire>(
    rng: &mut Rng,
    conn: &mut W,
    pieces: &Pieces,
    first: usize,
    check: impl Fn(&W),
) -> usize {
    let mut done = Vec::new();
    let mut stop = StopWatch::default();
    for i in first..(first + 1 + rng.below(30)) {
        let outbound = rng.below(2) == 0;
        let mut data = Vec::new();
        if rng.below(pieces.noise) == 0 {
            for _ in 0..rng.below(40) {
                data.push(rng.next() as u8);
            }
        } else {
            let list = if outbound {
                pieces.outbound
            } else {
                pieces.inbound
            };
            data.extend_from_slice(list[rng.below(list.len())]);
        }
        let before = done.len();
        let mut flows = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(8)).min(rest.len());
            if outbound {
                // A message broker's look-ahead, from wherever the parser
                // stands, never panics and plans edits that fit the bytes.
                let mut make = || {
                    Some(crate::protocol::Carry {
                        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                            .to_owned(),
                        tracestate: None,
                    })
                };
                let mut end = 0;
                for e in conn.plan_edits(rest, 0, &mut make) {
                    assert!(e.at >= end && e.at + e.replace <= rest.len(), "{e:?}");
                    end = e.at + e.replace;
                }
            }
            flows.push(if outbound {
                conn.outbound(&rest[..n], at(i), &mut done)
            } else {
                conn.inbound(&rest[..n], at(i), &mut done)
            });
            rest = &rest[n..];
        }
        stop.note(i, &flows, before, done.len());
        check(conn);
    }
    done.len()
}

/// Replays of captured client traffic (the fixture files under
/// `tests/fixtures/`, written by `tests/fixtures/redis/capture.py`), for any
/// parser behind [`Wire`](crate::protocol::Wire).
pub(crate) mod fixture {
    use std::time::{Duration, SystemTime};

    use super::Rng;
    use crate::protocol::{CloseReason, Flow, Operation, Wire};
    use crate::span::AttrValue;

    /// One recorded chunk: outbound or not, seconds since accept, bytes.
    pub(crate) type Chunk = (bool, f64, Vec<u8>);

    /// A fixture file's connections: `=` starts one; `> SECONDS HEX` and
    /// `< SECONDS HEX` are chunks; `#` lines are comments.
    pub(crate) fn parse(text: &str) -> Vec<Vec<Chunk>> {
        let mut connections: Vec<Vec<Chunk>> = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if line == "=" {
                connections.push(Vec::new());
                continue;
            }
            let mut fields = line.split(' ');
            let outbound = match fields.next() {
                Some(">") => true,
                Some("<") => false,
                other => panic!("bad direction {other:?}"),
            };
            let at: f64 = fields.next().unwrap().parse().unwrap();
            let hex = fields.next().unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            connections
                .last_mut()
                .expect("'=' first")
                .push((outbound, at, bytes));
        }
        connections
    }

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    /// Replays one connection into a fresh parser, each chunk cut into
    /// pieces by `cut` (given the chunk's index and length, it returns the
    /// piece lengths), then closes it. Every call must say Continue.
    pub(crate) fn replay<W: Wire>(
        chunks: &[Chunk],
        make: &dyn Fn() -> W,
        mut cut: impl FnMut(usize, usize) -> Vec<usize>,
    ) -> Vec<Operation> {
        let mut conn = make();
        let mut done = Vec::new();
        for (i, (outbound, secs, bytes)) in chunks.iter().enumerate() {
            let now = at(*secs);
            let mut pos = 0;
            for n in cut(i, bytes.len()) {
                let piece = &bytes[pos..pos + n];
                pos += n;
                let flow = if *outbound {
                    conn.outbound(piece, now, &mut done)
                } else {
                    conn.inbound(piece, now, &mut done)
                };
                assert_eq!(flow, Flow::Continue, "chunk {i}");
            }
            assert_eq!(pos, bytes.len());
        }
        let last = chunks.last().map_or(0.0, |c| c.1);
        conn.close(at(last), CloseReason::PeerClosed, &mut done);
        done
    }

    /// The operations of every connection of a fixture, after checking that
    /// every way of splitting the chunks gives the same: whole, byte by
    /// byte, at random, and each chunk cut in two at every offset.
    pub(crate) fn replay_every_way<W: Wire>(text: &str, make: &dyn Fn() -> W) -> Vec<Operation> {
        let mut all = Vec::new();
        for chunks in parse(text) {
            let want = replay(&chunks, make, |_, len| vec![len]);
            assert_eq!(
                replay(&chunks, make, |_, len| vec![1; len]),
                want,
                "byte by byte"
            );
            let mut rng = Rng(0x5eed);
            for _ in 0..10 {
                let got = replay(&chunks, make, |_, len| {
                    let mut pieces = Vec::new();
                    let mut left = len;
                    while left > 0 {
                        let n = (1 + rng.below(16)).min(left);
                        pieces.push(n);
                        left -= n;
                    }
                    pieces
                });
                assert_eq!(got, want, "random splits");
            }
            for (c, chunk) in chunks.iter().enumerate() {
                for k in 1..chunk.2.len() {
                    let got = replay(&chunks, make, |i, len| {
                        if i == c {
                            vec![k, len - k]
                        } else {
                            vec![len]
                        }
                    });
                    assert_eq!(got, want, "chunk {c} split at {k}");
                }
            }
            all.extend(want);
        }
        all
    }

    /// An operation in one line, without timing: `KIND name [error] key=value…`.
    pub(crate) fn summary(op: &Operation) -> String {
        let mut s = format!("{:?} {}", op.kind, op.name);
        if let crate::span::SpanStatus::Error(d) = &op.status {
            s.push_str(&format!(" [error: {d}]"));
        }
        for (k, v) in &op.attributes {
            match v {
                AttrValue::Str(v) => s.push_str(&format!(" {k}={v}")),
                AttrValue::Int(v) => s.push_str(&format!(" {k}={v}")),
                AttrValue::Bool(v) => s.push_str(&format!(" {k}={v}")),
            }
        }
        s
    }
}

/// The `traceparent` the injection tests carry.
pub(crate) const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// [`TP`] with `tracestate`, as the tracer hands it to an injector.
pub(crate) fn carry(tracestate: Option<&str>) -> Option<Carry> {
    Some(Carry {
        traceparent: TP.to_owned(),
        tracestate: tracestate.map(str::to_owned),
    })
}

/// `data` with `edits` (in order) applied: the bytes the broker receives.
pub(crate) fn apply_edits(data: &[u8], edits: &[MessageEdit]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    for e in edits {
        out.extend_from_slice(&data[pos..e.at]);
        out.extend_from_slice(&e.insert);
        pos = e.at + e.replace;
    }
    out.extend_from_slice(&data[pos..]);
    out
}

//! The app thread's HTTP framer: any bytes, in any pieces, frame the same
//! way (the same heads, body bytes, content and body ends, the same stop),
//! its segments are exactly the bytes fed, and it never holds more than its
//! cap of an unfinished head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::capture::frame::{Expect, Framer, Seg, Side, MAX_FRAMED_HEAD};

#[derive(Debug, PartialEq)]
struct Framed {
    heads: Vec<Vec<u8>>,
    body: Vec<u8>,
    content: u64,
    ends: usize,
    kept: usize,
    stopped: bool,
    tunnel: bool,
    ignoring: bool,
}

fn frame(side: Side, prefix: usize, data: &[u8], step: usize) -> Framed {
    let mut f = Framer::new(side).with_prefix(prefix);
    // Responses answer requests: as many as a connection keeps.
    let mut expect = match side {
        Side::Requests => Expect::default(),
        Side::Responses => Expect::awaiting(lumigo_core::http::MAX_IN_FLIGHT),
    };
    let mut out = Framed {
        heads: Vec::new(),
        body: Vec::new(),
        content: 0,
        ends: 0,
        kept: 0,
        stopped: false,
        tunnel: false,
        ignoring: false,
    };
    let mut head = Vec::new();
    let mut fed = 0;
    for piece in data.chunks(step.max(1)) {
        let mut seen = 0;
        let r = f.feed(piece, &mut expect, &mut |seg| match seg {
            Seg::Head {
                bytes, complete, ..
            } => {
                seen += bytes.len();
                head.extend_from_slice(bytes);
                if let Some(whole) = complete {
                    assert_eq!(whole, &head[..]);
                    out.heads.push(std::mem::take(&mut head));
                }
            }
            Seg::Tunnel { bytes, .. } => {
                seen += bytes.len();
                out.tunnel = true;
            }
            Seg::Body {
                bytes,
                content,
                ended,
                keep,
            } => {
                seen += bytes.len();
                assert!(keep <= bytes.len());
                assert!(content <= bytes.len() as u64);
                out.body.extend_from_slice(bytes);
                out.content += content;
                out.ends += usize::from(ended);
                out.kept += keep;
            }
        });
        assert!(f.partial_head().len() <= MAX_FRAMED_HEAD + step);
        if r.is_err() {
            out.stopped = true;
            break;
        }
        // Requests ignored after a tunnel or broken framing take bytes
        // without segments.
        if !out.tunnel && !f.ignoring() {
            assert_eq!(seen, piece.len(), "every byte of a call is in a segment");
        }
        fed += piece.len();
    }
    let _ = fed;
    out.ignoring = f.ignoring();
    out
}

fuzz_target!(|input: &[u8]| {
    let (Some(&flags), Some(&step)) = (input.first(), input.get(1)) else {
        return;
    };
    let data = &input[2..];
    let side = if flags & 1 == 0 {
        Side::Requests
    } else {
        Side::Responses
    };
    let prefix = usize::from(flags >> 1);
    let whole = frame(side, prefix, data, data.len().max(1));
    let cut = frame(side, prefix, data, usize::from(step).max(1));
    if !whole.stopped && !cut.stopped && !whole.tunnel && !cut.tunnel && !whole.ignoring {
        assert_eq!(whole, cut, "the same framing whole and in pieces of {step}");
    }
});

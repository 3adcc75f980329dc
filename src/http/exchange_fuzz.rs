//! Fuzz-style test of [`HttpConnection`]: pseudo-random mixtures of HTTP
//! fragments and noise, split and interleaved at random, must never panic
//! and must keep every buffer within its cap.

use std::time::SystemTime;

use super::*;
use crate::http::{MAX_FIELD_BYTES, MAX_HEAD_BYTES, MAX_IN_FLIGHT};
use crate::testkit::Rng;

/// Pieces that look enough like HTTP to reach deep states, mixed with noise.
const FRAGMENTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"POST /x HTTP/1.0\r\n",
    b"CONNECT h:1 HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 101 Switching\r\n",
    b"HTTP/1.0 204 x\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Upgrade: x\r\n",
    b"Host: [::1]:80\r\n",
    b"\r\n",
    b"\r\n\r\n",
    b"3\r\nabc\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"abc",
    b"\n",
];

const REQUEST_START: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";

/// Whole messages, to start a call with half of the time.
const REQUESTS: &[&[u8]] = &[
    REQUEST_START,
    b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HEAD / HTTP/1.0\r\n\r\n",
];
const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\n",
];

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut reported, mut answered) = (0, 0);
    for round in 0..3000 {
        let role = if round % 2 == 0 {
            Role::Client
        } else {
            Role::Server
        };
        let mut conn = HttpConnection::new(role);
        // Half the rounds capture payloads, with a small limit.
        let capture = if round % 4 < 2 { 1 + rng.below(100) } else { 0 };
        conn.capture_payloads(capture);
        let mut done = Vec::new();
        let mut stopped = false;
        let t = SystemTime::UNIX_EPOCH;
        // Most rounds start with a valid request, to get past detection.
        if rng.below(4) != 0 {
            let flow = match role {
                Role::Client => conn.on_outbound(REQUEST_START, t, &mut done),
                Role::Server => conn.on_inbound(REQUEST_START, t, &mut done),
            };
            assert_eq!(flow, Flow::Continue);
        }
        for _ in 0..(1 + rng.below(40)) {
            let outbound = rng.below(2) == 0;
            let requests = outbound == (role == Role::Client);
            let mut data = Vec::new();
            if rng.below(2) == 0 {
                let starts = if requests { REQUESTS } else { RESPONSES };
                data.extend_from_slice(starts[rng.below(starts.len())]);
            }
            for _ in 0..rng.below(8) {
                if rng.below(6) == 0 {
                    let max = if rng.below(50) == 0 {
                        3 * MAX_HEAD_BYTES
                    } else {
                        64
                    };
                    let n = rng.below(max);
                    data.extend((0..n).map(|_| rng.next() as u8));
                } else {
                    data.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
                }
            }
            let flow = if rng.below(12) == 0 {
                conn.on_outbound_opaque(rng.below(10), t, &mut done)
            } else if outbound {
                conn.on_outbound(&data, t, &mut done)
            } else {
                conn.on_inbound(&data, t, &mut done)
            };
            if stopped {
                assert_eq!(flow, Flow::Stop);
            }
            stopped |= flow == Flow::Stop;
            assert!(conn.buffered() <= 2 * MAX_HEAD_BYTES);
            assert!(conn.pending.len() <= MAX_IN_FLIGHT);
            assert!(conn.in_flight() <= MAX_IN_FLIGHT + 1);
        }
        let before = done.len();
        conn.on_close(t, CloseReason::Closed, &mut done);
        if stopped {
            assert_eq!(done.len(), before);
        }
        assert_eq!(conn.buffered(), 0);
        assert_eq!(conn.in_flight(), 0);
        let rules = crate::payload::PayloadRules::default();
        for ex in &done {
            assert!(ex.method.len() <= MAX_FIELD_BYTES && ex.target.len() <= MAX_FIELD_BYTES);
            assert!(capture > 0 || ex.captured.is_none());
            if let Some(c) = ex.captured.as_deref() {
                assert!(c.request_body.len() <= capture && c.response_body.len() <= capture);
                assert!(c.request_head.len() <= MAX_HEAD_BYTES);
                assert!(c.response_head.len() <= MAX_HEAD_BYTES);
                // (A framing error stops the count of the bytes before it,
                // not their capture.)
                if ex.error.is_none() {
                    assert!(c.request_body.len() as u64 <= ex.request_body_size);
                    assert!(c.response_body.len() as u64 <= ex.response_body_size);
                }
            }
            let mut attrs = Vec::new();
            rules.push_attributes(ex, role, &mut attrs);
            for (_, v) in &attrs {
                if let crate::span::AttrValue::Str(t) = v {
                    assert!(t.len() <= 2048);
                }
            }
        }
        reported += done.len();
        answered += done.iter().filter(|ex| ex.status.is_some()).count();
    }
    // The input reaches deep states, not only the detector.
    assert!(
        reported > 2000 && answered > 400,
        "{reported} reported, {answered} answered"
    );
}

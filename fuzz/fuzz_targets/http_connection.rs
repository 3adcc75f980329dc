//! `HttpConnection`, client or server side, fed a script of calls (see
//! `fuzz/src/lib.rs`) whole and cut into pieces: the same exchanges either
//! way, every buffer within its cap, the Stop contract, body byte counts no
//! larger than the bytes seen, and spans built from the exchanges with a
//! bounded number of bounded attributes.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use lumigo_core::address::Address;
use lumigo_core::http::{
    span_parts, CloseReason, Endpoints, Flow, HttpConnection, HttpExchange, Role, MAX_FIELD_BYTES,
    MAX_HEAD_BYTES, MAX_IN_FLIGHT,
};
use lumigo_core::mask::Masker;
use lumigo_core::span::AttrValue;
use lumigo_fuzz::{run, Conn};

struct Http(HttpConnection);

impl Conn for Http {
    type Out = HttpExchange;
    fn outbound(&mut self, d: &[u8], now: SystemTime, done: &mut Vec<HttpExchange>) -> Flow {
        self.0.on_outbound(d, now, done)
    }
    fn inbound(&mut self, d: &[u8], now: SystemTime, done: &mut Vec<HttpExchange>) -> Flow {
        self.0.on_inbound(d, now, done)
    }
    fn opaque(&mut self, n: usize, now: SystemTime, done: &mut Vec<HttpExchange>) -> Option<Flow> {
        Some(self.0.on_outbound_opaque(n, now, done))
    }
    fn close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<HttpExchange>) {
        self.0.on_close(now, reason, done)
    }
    /// An exchange that broke its framing in a chunked body keeps the
    /// content counted by the calls before the one that broke it, not the
    /// content decoded within that call (`Body::feed` returns no progress
    /// with its error): its body sizes depend on the split. Known, left to
    /// the data path rewrite (issue 13); compared without them.
    fn normalize(ex: &mut HttpExchange) {
        if ex.error == Some(lumigo_core::http::errors::PROTOCOL_ERROR) {
            ex.request_body_size = 0;
            ex.response_body_size = 0;
        }
    }
    fn check(&self) {
        assert!(
            self.0.buffered() <= 2 * MAX_HEAD_BYTES,
            "{} buffered",
            self.0.buffered()
        );
        assert!(self.0.pending().count() <= MAX_IN_FLIGHT);
        assert!(self.0.in_flight() <= MAX_IN_FLIGHT + 1);
    }
    fn check_closed(&self) {
        assert_eq!(self.0.buffered(), 0);
        assert_eq!(self.0.in_flight(), 0);
        assert!(!self.0.awaits_response());
    }
}

fuzz_target!(|input: &[u8]| {
    let role = match input.first() {
        Some(f) if f & 1 == 1 => Role::Server,
        _ => Role::Client,
    };
    let (script, done) = run(input, &|| Http(HttpConnection::new(role)));
    // Requests are what the client sends, or what the server receives.
    let request_bytes = script.bytes(role == Role::Client);
    let response_bytes = script.bytes(role == Role::Server);
    let (mut requested, mut responded) = (0u64, 0u64);
    let peer = Address::Inet(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)));
    let local = Address::Inet(SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)));
    let ends = Endpoints::new(Some(peer), Some(local));
    let masker = Masker::lumigo_defaults();
    let mut last_seq = None;
    for ex in &done {
        for s in [
            Some(&*ex.target),
            ex.host.as_deref(),
            ex.user_agent.as_deref(),
        ]
        .into_iter()
        .chain([ex.traceparent.as_deref(), ex.tracestate.as_deref()])
        .flatten()
        {
            assert!(s.len() <= MAX_FIELD_BYTES, "a field of {} bytes", s.len());
        }
        assert!(ex.method.len() <= MAX_FIELD_BYTES);
        assert!(ex.end >= ex.start);
        // Three digits (the grammar allows 000 to 999).
        assert!(ex.status.is_none_or(|s| s < 1000));
        assert!(last_seq < Some(ex.seq), "exchanges reported out of order");
        last_seq = Some(ex.seq);
        requested += ex.request_body_size;
        responded += ex.response_body_size;
        let parts = span_parts(ex, role, &ends, &masker, Vec::new());
        assert!(
            parts.attributes.len() <= 19,
            "{} attributes",
            parts.attributes.len()
        );
        for (key, value) in &parts.attributes {
            if let AttrValue::Str(s) = value {
                // url.full joins the scheme, the authority and the target.
                assert!(
                    s.len() <= 3 * MAX_FIELD_BYTES + 64,
                    "{key} of {} bytes",
                    s.len()
                );
            }
        }
    }
    assert!(
        requested <= request_bytes,
        "{requested} request body bytes of {request_bytes}"
    );
    assert!(
        responded <= response_bytes,
        "{responded} response body bytes of {response_bytes}"
    );
});

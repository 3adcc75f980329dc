//! One tracked TCP connection: protocol recognition, parsing, span making.
//!
//! The preload library creates a [`Connection`] when the app connects or
//! accepts a TCP socket and feeds it every byte the app actually sent or
//! received on it. The first bytes in the request direction decide the
//! protocol; anything not recognised returns [`Flow::Stop`], after which the
//! preload stops looking at the fd at all (one array lookup per call).
//! Finished exchanges become [`SpanRecord`]s and go to the [`Tracer`]'s sink.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::http::{self, Detect, HttpConnection, HttpExchange, Role};
use crate::mask::Masker;
use crate::span::{SpanContext, SpanRecord};

pub use crate::http::{CloseReason, Flow};

/// Where finished spans go. The export pipeline implements it; tests collect.
pub trait SpanSink: Send + Sync {
    fn submit(&self, span: SpanRecord);
}

impl SpanSink for crate::export::Pipeline {
    fn submit(&self, span: SpanRecord) {
        crate::export::Pipeline::submit(self, span)
    }
}

impl<T: SpanSink + ?Sized> SpanSink for std::sync::Arc<T> {
    fn submit(&self, span: SpanRecord) {
        (**self).submit(span)
    }
}

/// What every connection of a process shares: masking rules and the sink.
pub struct Tracer {
    masker: Masker,
    sink: Box<dyn SpanSink>,
}

impl Tracer {
    pub fn new(masker: Masker, sink: Box<dyn SpanSink>) -> Tracer {
        Tracer { masker, sink }
    }

    pub fn sink(&self) -> &dyn SpanSink {
        &*self.sink
    }

    /// Turns a finished HTTP exchange into a span and submits it.
    fn emit_http(&self, ex: &HttpExchange, role: Role, ends: &http::Endpoints) {
        let parts = http::span_parts(ex, role, ends, &self.masker);
        let context = SpanContext {
            trace_id: crate::ids::trace_id(),
            span_id: crate::ids::span_id(),
            trace_flags: 1,
            trace_state: None,
        };
        self.sink.submit(SpanRecord {
            name: parts.name,
            kind: parts.kind,
            context,
            parent_span_id: None,
            parent_is_remote: false,
            start: ex.start,
            end: ex.end,
            status: parts.status,
            attributes: parts.attributes,
        });
    }
}

/// Bytes kept while the protocol is not yet known (a method token is short).
const DETECT_PREFIX: usize = 16;

enum Protocol {
    /// Nothing seen yet, or too little to tell.
    Detecting {
        prefix: [u8; DETECT_PREFIX],
        len: usize,
    },
    Http(Box<HttpConnection>),
    /// Not ours: the caller should already have stopped feeding us.
    Ignored,
}

/// One tracked TCP connection, from connect/accept to close.
pub struct Connection {
    role: Role,
    ends: http::Endpoints,
    protocol: Protocol,
    /// Reused buffer for finished exchanges, so a call that finishes nothing
    /// allocates nothing.
    done: Vec<HttpExchange>,
}

impl Connection {
    /// A connection the app opened with `connect` (we are the client).
    pub fn client(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> Connection {
        Connection::new(Role::Client, peer, local)
    }

    /// A connection the app accepted (we are the server).
    pub fn server(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> Connection {
        Connection::new(Role::Server, peer, local)
    }

    fn new(role: Role, peer: Option<SocketAddr>, local: Option<SocketAddr>) -> Connection {
        Connection {
            role,
            ends: http::Endpoints {
                peer,
                local,
                scheme: "http",
            },
            protocol: Protocol::Detecting {
                prefix: [0; DETECT_PREFIX],
                len: 0,
            },
            done: Vec::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The app sent `data` (bytes the kernel accepted).
    pub fn on_outbound(&mut self, data: &[u8], now: SystemTime, tracer: &Tracer) -> Flow {
        let requests_outbound = self.role == Role::Client;
        self.feed(data, requests_outbound, now, tracer, |h, d, now, done| {
            h.on_outbound(d, now, done)
        })
    }

    /// The app received `data`.
    pub fn on_inbound(&mut self, data: &[u8], now: SystemTime, tracer: &Tracer) -> Flow {
        let requests_inbound = self.role == Role::Server;
        self.feed(data, requests_inbound, now, tracer, |h, d, now, done| {
            h.on_inbound(d, now, done)
        })
    }

    /// The app sent `n` bytes we cannot see (`sendfile`).
    pub fn on_outbound_opaque(&mut self, n: usize, now: SystemTime, tracer: &Tracer) -> Flow {
        match &mut self.protocol {
            Protocol::Http(h) => {
                let flow = h.on_outbound_opaque(n, now, &mut self.done);
                self.flush(tracer);
                flow
            }
            // Invisible bytes before we know the protocol: give up.
            _ => {
                self.protocol = Protocol::Ignored;
                Flow::Stop
            }
        }
    }

    /// The connection ended: the peer closed, the app closed, or the process exits.
    pub fn on_close(&mut self, now: SystemTime, reason: CloseReason, tracer: &Tracer) {
        if let Protocol::Http(h) = &mut self.protocol {
            h.on_close(now, reason, &mut self.done);
            self.flush(tracer);
        }
        self.protocol = Protocol::Ignored;
    }

    /// Requests still waiting for their response.
    pub fn in_flight(&self) -> usize {
        match &self.protocol {
            Protocol::Http(h) => h.in_flight(),
            _ => 0,
        }
    }

    fn feed(
        &mut self,
        data: &[u8],
        request_direction: bool,
        now: SystemTime,
        tracer: &Tracer,
        step: impl FnOnce(&mut HttpConnection, &[u8], SystemTime, &mut Vec<HttpExchange>) -> Flow,
    ) -> Flow {
        if data.is_empty() {
            return Flow::Continue;
        }
        if let Protocol::Detecting { prefix, len } = &mut self.protocol {
            if !request_direction {
                // The other side spoke first: not a protocol we parse.
                self.protocol = Protocol::Ignored;
                return Flow::Stop;
            }
            let seen = *len;
            let take = data.len().min(DETECT_PREFIX - seen);
            prefix[seen..seen + take].copy_from_slice(&data[..take]);
            match http::detect_request(&prefix[..seen + take]) {
                Detect::NeedMore => {
                    *len = seen + take;
                    return Flow::Continue;
                }
                Detect::NotHttp => {
                    self.protocol = Protocol::Ignored;
                    return Flow::Stop;
                }
                Detect::Http => {
                    let earlier = *prefix;
                    let mut h = Box::new(HttpConnection::new(self.role));
                    if seen > 0 {
                        let flow =
                            step_earlier(&mut h, self.role, &earlier[..seen], now, &mut self.done);
                        if let Flow::Stop = flow {
                            self.flush(tracer);
                            self.protocol = Protocol::Ignored;
                            return Flow::Stop;
                        }
                    }
                    self.protocol = Protocol::Http(h);
                }
            }
        }
        let flow = match &mut self.protocol {
            Protocol::Http(h) => step(h, data, now, &mut self.done),
            _ => return Flow::Stop,
        };
        self.flush(tracer);
        if let Flow::Stop = flow {
            self.protocol = Protocol::Ignored;
        }
        flow
    }

    fn flush(&mut self, tracer: &Tracer) {
        for ex in self.done.drain(..) {
            tracer.emit_http(&ex, self.role, &self.ends);
        }
    }
}

/// Feeds the bytes held back during detection, in the request direction.
fn step_earlier(
    h: &mut HttpConnection,
    role: Role,
    bytes: &[u8],
    now: SystemTime,
    done: &mut Vec<HttpExchange>,
) -> Flow {
    match role {
        Role::Client => h.on_outbound(bytes, now, done),
        Role::Server => h.on_inbound(bytes, now, done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default, Clone)]
    struct Collect(Arc<Mutex<Vec<SpanRecord>>>);
    impl SpanSink for Collect {
        fn submit(&self, span: SpanRecord) {
            self.0.lock().unwrap().push(span);
        }
    }

    fn tracer() -> (Tracer, Collect) {
        let c = Collect::default();
        let patterns: Vec<String> = crate::config::DEFAULT_SECRET_PATTERNS
            .iter()
            .map(|s| s.to_string())
            .collect();
        (Tracer::new(Masker::new(&patterns), Box::new(c.clone())), c)
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn client_exchange_split_into_single_bytes_makes_one_span() {
        let (t, spans) = tracer();
        let mut c = Connection::client(addr("127.0.0.1:8080"), addr("127.0.0.1:5555"));
        let now = SystemTime::now();
        for b in b"GET /a?token=s HTTP/1.1\r\nHost: example\r\n\r\n".chunks(1) {
            assert!(matches!(c.on_outbound(b, now, &t), Flow::Continue));
        }
        assert_eq!(c.in_flight(), 1);
        for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".chunks(1) {
            assert!(matches!(c.on_inbound(b, now, &t), Flow::Continue));
        }
        let spans = spans.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.name, "GET");
        assert_eq!(s.attr("url.query"), Some(&"token=****".into()));
        assert_eq!(s.attr("http.response.status_code"), Some(&200i64.into()));
    }

    #[test]
    fn server_speaking_first_is_not_http() {
        let (t, spans) = tracer();
        let mut c = Connection::client(addr("127.0.0.1:3306"), None);
        let flow = c.on_inbound(b"\x4a\x00\x00\x00\x0a5.5.5-MariaDB", SystemTime::now(), &t);
        assert!(matches!(flow, Flow::Stop));
        assert!(spans.0.lock().unwrap().is_empty());
    }

    #[test]
    fn tls_client_hello_is_not_http() {
        let (t, _) = tracer();
        let mut c = Connection::client(addr("127.0.0.1:443"), None);
        let flow = c.on_outbound(b"\x16\x03\x01\x02\x00\x01", SystemTime::now(), &t);
        assert!(matches!(flow, Flow::Stop));
    }

    #[test]
    fn close_with_request_in_flight_reports_error() {
        let (t, spans) = tracer();
        let mut c = Connection::server(addr("127.0.0.1:40000"), addr("127.0.0.1:8000"));
        let now = SystemTime::now();
        let _ = c.on_inbound(b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", now, &t);
        c.on_close(now, CloseReason::Closed, &t);
        let spans = spans.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        assert!(spans[0].attr("error.type").is_some());
    }
}

//! [`HttpConnection`]: both directions of one HTTP/1.x connection, turned
//! into exchanges.
//!
//! Requests flow one way and responses the other ([`Role`] says which is
//! outbound). A parsed request head becomes a pending [`HttpExchange`] at the
//! back of a FIFO (keep-alive and pipelining: responses come back in request
//! order); each final response completes the exchange at the front. Interim
//! `1xx` responses are skipped. A `101 Switching Protocols`, or a `2xx` to a
//! `CONNECT`, completes its exchange and ends HTTP on the connection.
//!
//! A head longer than the cap is an ordinary head: its framing is read past
//! the cap, and the exchange carries what was kept.
//!
//! Whenever tracing stops early (bytes that are not HTTP where a head should
//! be, too many requests in flight, unseen bytes that
//! cannot be skipped) every unfinished exchange is reported at once, with the
//! reason as its `error`, so no request goes unreported; the caller then
//! drops the connection's state. Closes report the same way, except that a
//! response framed by the close ends successfully.

use std::collections::VecDeque;
use std::time::SystemTime;

use super::body::Body;
use super::inject::SentHead;
use super::parser::{
    oversized_request, oversized_response, parse_request, parse_response, salvage_request,
    salvage_status, HeadKind, HeadReader, HeadStep, RequestHead, ResponseHead,
};
use super::{errors, Captured, CloseReason, Flow, HttpExchange, Role, MAX_IN_FLIGHT};

/// Where the connection stands as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No request recognised yet.
    Detecting,
    Http,
    /// Not HTTP, or tracing gave up; nothing more is reported.
    Stopped,
}

/// The request direction.
#[derive(Clone, Debug)]
enum RequestState {
    Head,
    /// Inside the body of the request numbered `seq`.
    Body {
        body: Body,
        seq: u64,
    },
    /// Bytes that cannot be framed (a tunnel opened optimistically after
    /// `CONNECT`, or a request whose framing headers are broken): ignored
    /// until the pending responses are in, then tracing stops.
    Ignore,
}

/// The response direction.
#[derive(Clone, Debug)]
enum ResponseState {
    Head,
    /// Inside the body of the response to the front exchange.
    Body(Body),
}

/// One HTTP/1.x connection: feed it the bytes of both directions in order;
/// it reports each finished exchange. See the module docs.
#[derive(Debug)]
pub struct HttpConnection {
    role: Role,
    phase: Phase,
    request_head: HeadReader,
    request: RequestState,
    response_head: HeadReader,
    response: ResponseState,
    /// Requests whose head was parsed, awaiting their final response, oldest first.
    pending: VecDeque<HttpExchange>,
    next_seq: u64,
    /// The latest request asked to switch protocols (an `Upgrade` header).
    upgrade_requested: bool,
    /// Most body content bytes kept per message for payloads; 0: payloads
    /// are not captured (heads are not kept either).
    capture: usize,
}

/// A request head's fate, owned so the head reader's borrow can end.
enum RequestOutcome {
    Partial,
    /// The head, the input it took, and its raw bytes when captured.
    Parsed(RequestHead, usize, Option<Box<Captured>>),
    /// A head that looked like HTTP but failed to parse; what it tells.
    Malformed(RequestHead),
    NotHttp,
}

enum ResponseOutcome {
    Partial,
    /// The head and the input it took (its raw bytes, when captured, are
    /// in the exchange's [`Captured`] already).
    Parsed(ResponseHead, usize),
    Malformed(Option<u16>),
    NotHttp,
}

impl HttpConnection {
    pub fn new(role: Role) -> Self {
        HttpConnection {
            role,
            phase: Phase::Detecting,
            request_head: HeadReader::new(HeadKind::Request),
            request: RequestState::Head,
            response_head: HeadReader::new(HeadKind::Response),
            response: ResponseState::Head,
            pending: VecDeque::new(),
            next_seq: 0,
            upgrade_requested: false,
            capture: 0,
        }
    }

    /// Keeps each exchange's raw heads and the first `body_limit` bytes of
    /// each body's content in [`HttpExchange::captured`], for payload
    /// attributes; 0 keeps nothing (the default).
    pub fn capture_payloads(&mut self, body_limit: usize) {
        self.capture = body_limit;
    }

    /// The `body_limit` given to [`HttpConnection::capture_payloads`].
    pub fn payload_limit(&self) -> usize {
        self.capture
    }

    /// Whether payloads are captured.
    fn capturing(&self) -> bool {
        self.capture > 0
    }

    /// Bytes the process sent.
    pub fn on_outbound(
        &mut self,
        data: &[u8],
        now: SystemTime,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        match self.role {
            Role::Client => self.on_requests(data, now, done),
            Role::Server => self.on_responses(data, now, done),
        }
    }

    /// `n` bytes sent that we cannot see (sendfile): fine inside a body,
    /// anything else stops tracing.
    pub fn on_outbound_opaque(
        &mut self,
        n: usize,
        now: SystemTime,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        if self.phase != Phase::Http {
            return self.stop(now, errors::OPAQUE_DATA, done);
        }
        let n = n as u64;
        match self.role {
            Role::Client => self.skip_request_bytes(n, now, done),
            Role::Server => self.skip_response_bytes(n, now, done),
        }
    }

    /// Body bytes the app moved that were not recorded (capture): `wire`
    /// bytes, bringing the current body's content to `total`; `ended`: the
    /// body ends with them (the app's thread framed it).
    pub fn on_skipped(
        &mut self,
        outbound: bool,
        wire: u64,
        total: u64,
        ended: bool,
        now: SystemTime,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        if self.phase != Phase::Http {
            return if self.phase == Phase::Stopped {
                Flow::Stop
            } else {
                self.stop(now, errors::OPAQUE_DATA, done)
            };
        }
        let requests = (self.role == Role::Client) == outbound;
        if requests {
            match &mut self.request {
                RequestState::Ignore => Flow::Continue,
                RequestState::Head if wire == 0 => Flow::Continue,
                RequestState::Head => self.stop(now, errors::OPAQUE_DATA, done),
                RequestState::Body { seq, .. } => {
                    let seq = *seq;
                    if let Some(ex) = self.pending.back_mut().filter(|ex| ex.seq == seq) {
                        ex.request_body_size = ex.request_body_size.max(total);
                    }
                    if ended {
                        self.request = RequestState::Head;
                    }
                    Flow::Continue
                }
            }
        } else {
            match &mut self.response {
                ResponseState::Head if wire == 0 => Flow::Continue,
                ResponseState::Head => self.stop(now, errors::OPAQUE_DATA, done),
                ResponseState::Body(_) => {
                    if let Some(front) = self.pending.front_mut() {
                        front.response_body_size = front.response_body_size.max(total);
                    }
                    if ended {
                        self.response = ResponseState::Head;
                        return self.complete_front(now, done);
                    }
                    Flow::Continue
                }
            }
        }
    }

    /// Bytes the process received.
    pub fn on_inbound(
        &mut self,
        data: &[u8],
        now: SystemTime,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        match self.role {
            Role::Client => self.on_responses(data, now, done),
            Role::Server => self.on_requests(data, now, done),
        }
    }

    /// Peer closed (read returned 0) or we closed the fd, or the process exits.
    pub fn on_close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<HttpExchange>) {
        if self.phase != Phase::Http {
            let _ = self.stop(now, errors::CONNECTION_CLOSED, done);
            return;
        }
        let error = match reason {
            CloseReason::PeerClosed | CloseReason::Closed => {
                if matches!(self.response, ResponseState::Body(Body::UntilClose)) {
                    // The close is the end of this response, not an error.
                    self.response = ResponseState::Head;
                    let _ = self.complete_front(now, done);
                }
                errors::CONNECTION_CLOSED
            }
            CloseReason::ProcessExit => errors::PROCESS_EXIT,
        };
        let _ = self.stop(now, error, done);
    }

    /// Requests started and not yet reported: those awaiting a response plus
    /// one whose head is still arriving.
    pub fn in_flight(&self) -> usize {
        let arriving = self.phase == Phase::Http && self.request_head.started().is_some();
        self.pending.len() + usize::from(arriving)
    }

    /// Requests whose head was parsed and whose exchange is not finished,
    /// oldest first: lets a caller tie state (such as a span context) to an
    /// exchange as soon as its request is known, by [`HttpExchange::seq`].
    pub fn pending(&self) -> impl Iterator<Item = &HttpExchange> {
        self.pending.iter()
    }

    /// On a client connection whose next outbound bytes belong to a request
    /// head: what was sent of that head (nothing at a head's start).
    /// `None` inside a request body, on a server connection, or once
    /// tracing stopped: no head starts there.
    pub(crate) fn outbound_request_head(&self) -> Option<SentHead<'_>> {
        let at_head = self.role == Role::Client
            && self.phase != Phase::Stopped
            && matches!(self.request, RequestState::Head);
        at_head.then(|| self.request_head.sent_head())
    }

    /// Whether response bytes arriving now have a request to answer: one
    /// whose head was parsed and whose response is not complete. (On a
    /// client, a response can be read on one thread before the request
    /// written on another reached us.)
    pub fn awaits_response(&self) -> bool {
        self.phase == Phase::Http
            && (!self.pending.is_empty() || matches!(self.response, ResponseState::Body(_)))
    }

    fn on_requests(
        &mut self,
        mut data: &[u8],
        now: SystemTime,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        if self.phase == Phase::Stopped {
            return Flow::Stop;
        }
        while !data.is_empty() {
            match &mut self.request {
                RequestState::Ignore => return Flow::Continue,
                RequestState::Body { body, seq } => {
                    let seq = *seq;
                    let limit = self.capture;
                    let mut slot = self
                        .pending
                        .back_mut()
                        .filter(|ex| ex.seq == seq && limit > 0)
                        .and_then(|ex| ex.captured.as_deref_mut());
                    let fed = body.feed_with(data, &mut |content| {
                        if let Some(c) = slot.as_deref_mut() {
                            Captured::keep(&mut c.request_body, limit, content);
                        }
                    });
                    let Ok(progress) = fed else {
                        return self.stop(now, errors::PROTOCOL_ERROR, done);
                    };
                    self.add_request_content(seq, progress.content);
                    data = data.get(progress.consumed..).unwrap_or_default();
                    if progress.done {
                        self.request = RequestState::Head;
                    }
                }
                RequestState::Head => {
                    let capturing = self.capturing();
                    let raw = |head: &[u8]| capturing.then(|| Captured::with_request_head(head));
                    let outcome = match self.request_head.feed(data, now) {
                        HeadStep::Partial => RequestOutcome::Partial,
                        HeadStep::NotHttp => RequestOutcome::NotHttp,
                        HeadStep::Complete { head, consumed } => match parse_request(head) {
                            Ok(parsed) => RequestOutcome::Parsed(parsed, consumed, raw(head)),
                            Err(_) => RequestOutcome::Malformed(salvage_request(head)),
                        },
                        HeadStep::Oversized {
                            kept,
                            beyond,
                            consumed,
                        } => RequestOutcome::Parsed(
                            oversized_request(kept, beyond),
                            consumed,
                            raw(kept),
                        ),
                    };
                    if self.phase == Phase::Detecting && self.request_head.verified() {
                        self.phase = Phase::Http;
                    }
                    match outcome {
                        RequestOutcome::Partial => return Flow::Continue,
                        RequestOutcome::Parsed(head, consumed, raw) => {
                            data = data.get(consumed..).unwrap_or_default();
                            if let Flow::Stop = self.start_exchange(head, raw, now, done) {
                                return Flow::Stop;
                            }
                        }
                        RequestOutcome::NotHttp if self.phase == Phase::Detecting => {
                            return self.stop(now, errors::PROTOCOL_ERROR, done);
                        }
                        RequestOutcome::NotHttp if self.awaits_tunnel() => {
                            self.request_head.reset();
                            self.request = RequestState::Ignore;
                            return Flow::Continue;
                        }
                        RequestOutcome::NotHttp => {
                            return self.stop(now, errors::PROTOCOL_ERROR, done)
                        }
                        RequestOutcome::Malformed(head) => {
                            return self.stop_with_request(head, now, errors::PROTOCOL_ERROR, done)
                        }
                    }
                }
            }
        }
        Flow::Continue
    }

    fn on_responses(
        &mut self,
        mut data: &[u8],
        now: SystemTime,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        match self.phase {
            Phase::Stopped => return Flow::Stop,
            // The peer spoke first, or answered before any request: not HTTP.
            Phase::Detecting => return self.stop(now, errors::PROTOCOL_ERROR, done),
            Phase::Http => {}
        }
        while !data.is_empty() {
            match &mut self.response {
                ResponseState::Body(body) => {
                    let limit = self.capture;
                    let mut slot = self
                        .pending
                        .front_mut()
                        .filter(|_| limit > 0)
                        .and_then(|ex| ex.captured.as_deref_mut());
                    let fed = body.feed_with(data, &mut |content| {
                        if let Some(c) = slot.as_deref_mut() {
                            Captured::keep(&mut c.response_body, limit, content);
                        }
                    });
                    let Ok(progress) = fed else {
                        return self.stop(now, errors::PROTOCOL_ERROR, done);
                    };
                    if let Some(front) = self.pending.front_mut() {
                        front.response_body_size =
                            front.response_body_size.saturating_add(progress.content);
                    }
                    data = data.get(progress.consumed..).unwrap_or_default();
                    if progress.done {
                        self.response = ResponseState::Head;
                        if let Flow::Stop = self.complete_front(now, done) {
                            return Flow::Stop;
                        }
                    }
                }
                ResponseState::Head => {
                    let capturing = self.capturing();
                    // A final response's head goes straight into the
                    // exchange's buffer (an interim one is not kept).
                    let pending = &mut self.pending;
                    let mut keep = |head: &[u8], status: u16| {
                        let interim = (100..200).contains(&status) && status != 101;
                        let front = pending.front_mut().filter(|_| capturing && !interim);
                        if let Some(c) = front.and_then(|f| f.captured.as_deref_mut()) {
                            c.response_head.clear();
                            c.response_head.extend_from_slice(head);
                        }
                    };
                    let outcome = match self.response_head.feed(data, now) {
                        HeadStep::Partial => ResponseOutcome::Partial,
                        HeadStep::NotHttp => ResponseOutcome::NotHttp,
                        HeadStep::Complete { head, consumed } => match parse_response(head) {
                            Ok(parsed) => {
                                keep(head, parsed.status);
                                ResponseOutcome::Parsed(parsed, consumed)
                            }
                            Err(_) => ResponseOutcome::Malformed(salvage_status(head)),
                        },
                        HeadStep::Oversized {
                            kept,
                            beyond,
                            consumed,
                        } => match oversized_response(kept, beyond) {
                            Some(parsed) => {
                                keep(kept, parsed.status);
                                ResponseOutcome::Parsed(parsed, consumed)
                            }
                            None => ResponseOutcome::Malformed(None),
                        },
                    };
                    let (head, consumed) = match outcome {
                        ResponseOutcome::Partial => return Flow::Continue,
                        ResponseOutcome::Parsed(head, consumed) => (head, consumed),
                        ResponseOutcome::NotHttp => {
                            return self.stop(now, errors::PROTOCOL_ERROR, done)
                        }
                        ResponseOutcome::Malformed(status) => {
                            self.set_front_status(status);
                            return self.stop(now, errors::PROTOCOL_ERROR, done);
                        }
                    };
                    self.response_head.reset();
                    data = data.get(consumed..).unwrap_or_default();
                    let status = head.status;
                    let Some(front) = self.pending.front_mut() else {
                        return self.stop(now, errors::PROTOCOL_ERROR, done);
                    };
                    if (100..200).contains(&status) && status != 101 {
                        continue; // Interim (100 Continue, 103 Early Hints): the final response follows.
                    }
                    front.status = Some(status);
                    if status == 101 || (front.method == "CONNECT" && (200..300).contains(&status))
                    {
                        // The connection now carries another protocol.
                        let _ = self.complete_front(now, done);
                        return self.stop(now, errors::PROTOCOL_ERROR, done);
                    }
                    match head.framing.response_body(&front.method, status) {
                        Ok(Some(body)) => self.response = ResponseState::Body(body),
                        Ok(None) => {
                            if let Flow::Stop = self.complete_front(now, done) {
                                return Flow::Stop;
                            }
                        }
                        Err(_) => return self.stop(now, errors::PROTOCOL_ERROR, done),
                    }
                }
            }
        }
        Flow::Continue
    }

    /// A parsed request head: a new pending exchange, then its body.
    fn start_exchange(
        &mut self,
        head: RequestHead,
        captured: Option<Box<Captured>>,
        now: SystemTime,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        let start = self.request_head.started().unwrap_or(now);
        self.request_head.reset();
        let is_connect = head.method == "CONNECT";
        let framing = head.framing;
        self.upgrade_requested = head.upgrade;
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut ex = head.into_exchange(seq, start);
        if self.capturing() {
            ex.captured = captured;
        }
        self.pending.push_back(ex);
        if self.pending.len() > MAX_IN_FLIGHT {
            return self.stop(now, errors::PIPELINE_OVERFLOW, done);
        }
        self.request = match framing.request_body() {
            _ if is_connect => RequestState::Head,
            Ok(None) => RequestState::Head,
            Ok(Some(body)) => RequestState::Body { body, seq },
            Err(_) => RequestState::Ignore,
        };
        Flow::Continue
    }

    /// Whether bytes that are not a request may be a tunnel the client
    /// opened without waiting for the answer to its `CONNECT` or `Upgrade`.
    fn awaits_tunnel(&self) -> bool {
        self.pending
            .back()
            .is_some_and(|ex| ex.method == "CONNECT" || self.upgrade_requested)
    }

    fn add_request_content(&mut self, seq: u64, n: u64) {
        if let Some(ex) = self.pending.back_mut().filter(|ex| ex.seq == seq) {
            ex.request_body_size = ex.request_body_size.saturating_add(n);
        }
    }

    fn set_front_status(&mut self, status: Option<u16>) {
        if let Some(front) = self.pending.front_mut() {
            front.status = front.status.or(status);
        }
    }

    /// Reports the front exchange as finished. Stops once the last pending
    /// response is in if requests can no longer be framed.
    fn complete_front(&mut self, now: SystemTime, done: &mut Vec<HttpExchange>) -> Flow {
        if let Some(mut ex) = self.pending.pop_front() {
            ex.end = now;
            done.push(ex);
        }
        if self.pending.is_empty() && matches!(self.request, RequestState::Ignore) {
            return self.stop(now, errors::PROTOCOL_ERROR, done);
        }
        Flow::Continue
    }

    fn skip_request_bytes(
        &mut self,
        n: u64,
        now: SystemTime,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        match &mut self.request {
            RequestState::Ignore => Flow::Continue,
            RequestState::Head if n == 0 => Flow::Continue,
            RequestState::Head => self.stop(now, errors::OPAQUE_DATA, done),
            RequestState::Body { body, seq } => {
                let seq = *seq;
                match body.skip(n) {
                    Ok(progress) => {
                        self.add_request_content(seq, progress.content);
                        if progress.done {
                            self.request = RequestState::Head;
                        }
                        Flow::Continue
                    }
                    Err(_) => self.stop(now, errors::OPAQUE_DATA, done),
                }
            }
        }
    }

    fn skip_response_bytes(
        &mut self,
        n: u64,
        now: SystemTime,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        match &mut self.response {
            ResponseState::Head if n == 0 => Flow::Continue,
            ResponseState::Head => self.stop(now, errors::OPAQUE_DATA, done),
            ResponseState::Body(body) => match body.skip(n) {
                Ok(progress) => {
                    if let Some(front) = self.pending.front_mut() {
                        front.response_body_size =
                            front.response_body_size.saturating_add(progress.content);
                    }
                    if progress.done {
                        self.response = ResponseState::Head;
                        return self.complete_front(now, done);
                    }
                    Flow::Continue
                }
                Err(_) => self.stop(now, errors::OPAQUE_DATA, done),
            },
        }
    }

    /// Stops after a request head that could not be used: it is reported too.
    fn stop_with_request(
        &mut self,
        head: RequestHead,
        now: SystemTime,
        error: &'static str,
        done: &mut Vec<HttpExchange>,
    ) -> Flow {
        let start = self.request_head.started().unwrap_or(now);
        self.request_head.reset();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(head.into_exchange(seq, start));
        self.stop(now, error, done)
    }

    /// Ends tracing: every unfinished exchange (pending ones, then a request
    /// whose head was still arriving) is reported with `error`.
    fn stop(&mut self, now: SystemTime, error: &'static str, done: &mut Vec<HttpExchange>) -> Flow {
        if self.phase == Phase::Http {
            for mut ex in self.pending.drain(..) {
                ex.end = now;
                ex.error = Some(error);
                done.push(ex);
            }
            // A request whose head is still arriving is reported too, if it
            // looked like one.
            if let (Some(start), true) = (self.request_head.started(), self.request_head.verified())
            {
                let head = salvage_request(self.request_head.partial_head());
                let mut ex = head.into_exchange(self.next_seq, start);
                ex.end = now;
                ex.error = Some(error);
                done.push(ex);
            }
        }
        self.phase = Phase::Stopped;
        self.pending = VecDeque::new();
        self.request_head.release();
        self.response_head.release();
        self.request = RequestState::Ignore;
        self.response = ResponseState::Head;
        Flow::Stop
    }

    /// Bytes held by the connection, for bounds checks (tests, `fuzz/`).
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        self.request_head.buffered() + self.response_head.buffered()
    }
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "exchange_fuzz.rs"]
mod fuzz;

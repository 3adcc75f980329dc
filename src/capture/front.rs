//! The app's-thread side of a captured HTTP connection: framing, what
//! propagation needs, and records. A child module of `connection` (it
//! works on a [`Connection`]'s fields); see [`crate::capture`].

use super::*;
use crate::capture::decode::{close_code, encode_identity};
use crate::capture::frame::{Context, Expect, Framer, Seg, Side};
use crate::capture::ring::{flag, kind, Header, MAX_PAYLOAD};
use crate::capture::{time_ns, Capture, Opened, Stamp, BOX_OVER};
use crate::propagators::InboundCarriers;

/// Both directions of a captured HTTP connection.
pub(super) struct Framed {
    requests: Framer,
    responses: Framer,
    expect: Expect,
    /// On a server: the SERVER spans of requests whose response has not
    /// ended, oldest first (each is the thread's active context until then).
    serving: VecDeque<[u8; 8]>,
    /// Per direction (inbound, outbound): body content seen of the
    /// current message.
    content: [u64; 2],
    /// Per direction: when the head now arriving began (0: none is).
    head_start: [u64; 2],
}

impl Framed {
    /// Keeping `prefix` content bytes of each body.
    pub(super) fn new(prefix: usize) -> Framed {
        Framed {
            requests: Framer::new(Side::Requests).with_prefix(prefix),
            responses: Framer::new(Side::Responses).with_prefix(prefix),
            expect: Expect::default(),
            serving: VecDeque::new(),
            content: [0; 2],
            head_start: [0; 2],
        }
    }

    /// What was sent of an unfinished request head (client side).
    pub(super) fn outbound_request_head(&self) -> Option<SentHead<'_>> {
        if !self.requests.in_head() {
            return None;
        }
        let (kept, after_lf, after_lf_cr) = self.requests.sent_head();
        Some(SentHead {
            kept,
            beyond: None,
            after_lf,
            after_lf_cr,
        })
    }

    /// Heads still arriving are recorded as far as they came (before the
    /// connection ends, or before bytes that end it), once.
    fn record_partial_heads(&mut self, rec: &mut Recorder, role: Role, open: &dyn Fn() -> Opened) {
        for (framer, dir) in [
            (&self.requests, role == Role::Client),
            (&self.responses, role == Role::Server),
        ] {
            let partial = framer.partial_head();
            let began = std::mem::take(&mut self.head_start[usize::from(dir)]);
            if !partial.is_empty() && began != 0 {
                rec.data(open, u8::from(dir), began, partial);
            }
        }
    }

    /// A request is waiting for (the rest of) its response.
    pub(super) fn awaits_response(&self) -> bool {
        !self.expect.is_empty() || !self.responses.at_head_start()
    }

    /// Requests whose exchange is not over: awaiting their response, with
    /// a response arriving, or with a head arriving.
    pub(super) fn in_flight(&self) -> usize {
        let arriving = !self.requests.at_head_start() && self.requests.in_head();
        let answering = !self.responses.at_head_start();
        self.expect.len() + usize::from(arriving) + usize::from(answering)
    }
}

/// A captured connection's records: its id and sequence numbers.
pub(super) struct Recorder {
    cap: &'static Capture,
    id: u64,
    seq: u64,
    opened: bool,
    /// A record was refused: nothing more is recorded until the next
    /// request head that starts with nothing in flight.
    lost: bool,
    /// The next record starts afresh after a loss.
    resync: bool,
    /// An encoded identity waiting to ride on the next DATA record.
    scratch: Vec<u8>,
    ident_ready: bool,
    ring: crate::capture::ring::RingCache,
}

impl Recorder {
    pub(super) fn new(cap: &'static Capture) -> Recorder {
        Recorder {
            cap,
            id: cap.conn_id(),
            seq: 0,
            opened: false,
            lost: false,
            resync: false,
            scratch: Vec::new(),
            ident_ready: false,
            ring: Default::default(),
        }
    }

    /// Pushes one record (the connection's OPEN first, if not yet; and an
    /// identity that found no DATA record to ride on).
    fn push(
        &mut self,
        open: &dyn Fn() -> Opened,
        kind: u8,
        dir: u8,
        extra: u64,
        time_ns: u64,
        parts: &[&[u8]],
    ) -> bool {
        self.flush_identity(open, time_ns);
        self.push_flagged(open, kind, 0, dir, extra, time_ns, parts)
    }

    /// A waiting identity that no DATA record will carry goes alone.
    fn flush_identity(&mut self, open: &dyn Fn() -> Opened, time_ns: u64) {
        if self.ident_ready {
            self.ident_ready = false;
            let ident = std::mem::take(&mut self.scratch);
            self.push_flagged(open, kind::IDENT, 0, 0, 0, time_ns, &[&ident]);
            self.scratch = ident;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_flagged(
        &mut self,
        open: &dyn Fn() -> Opened,
        kind: u8,
        flags: u8,
        dir: u8,
        extra: u64,
        time_ns: u64,
        parts: &[&[u8]],
    ) -> bool {
        if self.lost {
            return false;
        }
        if !self.opened {
            let opened = Box::into_raw(Box::new(open()));
            let h = Header {
                conn: self.id,
                seq: 0,
                time_ns,
                extra: opened as usize as u64,
                kind: kind::OPEN,
                ..Header::default()
            };
            if !self.cap.push(&mut self.ring, h, &[]) {
                // SAFETY: not pushed, so still ours.
                drop(unsafe { Box::from_raw(opened) });
                self.lost = true;
                return false;
            }
            self.opened = true;
            self.seq = 1;
        }
        let h = Header {
            conn: self.id,
            seq: self.seq,
            time_ns,
            extra,
            kind,
            dir,
            flags: flags | if self.resync { flag::RESYNC } else { 0 },
            ..Header::default()
        };
        if self.cap.push(&mut self.ring, h, parts) {
            self.seq += 1;
            self.resync = false;
            true
        } else {
            self.lost = true;
            false
        }
    }

    /// Pushes bytes: in records of at most [`MAX_PAYLOAD`], or, when long,
    /// as one boxed record outside the ring (within the capture's budget).
    fn data(&mut self, open: &dyn Fn() -> Opened, dir: u8, time_ns: u64, bytes: &[u8]) {
        if self.lost {
            // Nothing is recorded until the next fresh request head (an
            // unsampled exchange, or one after a loss), an identity
            // waiting for these bytes included.
            self.ident_ready = false;
            return;
        }
        if bytes.len() > BOX_OVER && self.cap.reserve_boxed(bytes.len()) {
            let len = bytes.len();
            let boxed = Box::into_raw(Box::<[u8]>::from(bytes));
            let extra = boxed as *mut u8 as usize as u64;
            if !self.push(
                open,
                kind::DATA_BOXED,
                dir,
                extra,
                time_ns,
                &[&(len as u64).to_le_bytes()],
            ) {
                // SAFETY: not pushed, so still ours.
                drop(unsafe { Box::from_raw(boxed) });
                self.cap.release_boxed(len);
            }
            return;
        }
        let mut chunks = bytes.chunks(MAX_PAYLOAD);
        let first = chunks.next().unwrap_or_default();
        if (!first.is_empty() || self.ident_ready)
            && !self.push_bytes(open, 0, dir, 0, time_ns, first, &[])
        {
            return;
        }
        for chunk in chunks {
            if !self.push_bytes(open, 0, dir, 0, time_ns, chunk, &[]) {
                return;
            }
        }
    }

    /// Pushes bytes followed by skipped ones: as one DATA record carrying
    /// the SKIP ([`flag::SKIP_AFTER`]) when the bytes fit one record, else
    /// as the bytes' records and a SKIP record.
    fn data_then_skip(
        &mut self,
        open: &dyn Fn() -> Opened,
        dir: u8,
        time_ns: u64,
        bytes: &[u8],
        wire: u64,
        skip: &[u8; 9],
    ) {
        let ident = if self.ident_ready {
            self.scratch.len() + 2
        } else {
            0
        };
        if bytes.len() > BOX_OVER || bytes.len() + ident + skip.len() > MAX_PAYLOAD {
            self.data(open, dir, time_ns, bytes);
            self.push(open, kind::SKIP, dir, wire, time_ns, &[skip]);
        } else {
            self.push_bytes(open, flag::SKIP_AFTER, dir, wire, time_ns, bytes, skip);
        }
    }

    /// One DATA record of `bytes` then `trailer`, with `flags`; a waiting
    /// identity rides on it, ahead of its bytes.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn push_bytes(
        &mut self,
        open: &dyn Fn() -> Opened,
        flags: u8,
        dir: u8,
        extra: u64,
        time_ns: u64,
        bytes: &[u8],
        trailer: &[u8],
    ) -> bool {
        // A waiting identity rides ahead of the bytes.
        let riding = std::mem::take(&mut self.ident_ready);
        let ident = if riding {
            std::mem::take(&mut self.scratch)
        } else {
            Vec::new()
        };
        let len = (ident.len() as u16).to_le_bytes();
        let all = [&len[..], &ident, bytes, trailer];
        // Only the parts there are: no empty ones to copy.
        let from = if riding { 0 } else { 2 };
        let to = if trailer.is_empty() { 3 } else { 4 };
        let flags = flags | if riding { flag::HAS_IDENT } else { 0 };
        let ok = self.push_flagged(open, kind::DATA, flags, dir, extra, time_ns, &all[from..to]);
        if riding {
            self.scratch = ident;
        }
        ok
    }

    /// The exchange starting now is not recorded (unsampled): nothing is
    /// until the next request head with nothing in flight, which starts
    /// afresh, as after a loss (but not counted as one).
    fn skip_exchange(&mut self) {
        self.lost = true;
        self.ident_ready = false;
    }

    /// The identity of the request head about to be recorded: it goes
    /// with the head's first DATA record.
    fn identity(&mut self, open: &dyn Fn() -> Opened, time_ns: u64, who: &Assigned) {
        // Two heads in one run of bytes: the first identity goes alone.
        self.flush_identity(open, time_ns);
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        match who.parent.filter(|_| !who.parent_is_remote) {
            Some(parent) => {
                context::with_packed_tags(parent, |t| encode_identity(who, t, &mut buf))
            }
            None => encode_identity(who, &[], &mut buf),
        }
        self.scratch = buf;
        self.ident_ready = true;
    }
}

impl Connection {
    /// Bytes through a captured HTTP connection (see [`crate::capture`]).
    pub(super) fn framed_step(
        &mut self,
        data: &[u8],
        outbound: bool,
        now: Stamp,
        tracer: &Tracer,
    ) -> Flow {
        let Connection {
            role,
            protocol,
            mode,
            planned,
            replaced_head,
            ends,
            ..
        } = self;
        let (Protocol::Framed(f), Mode::Capture(rec)) = (protocol, mode) else {
            return Flow::Stop;
        };
        let f: &mut Framed = f;
        let role = *role;
        let open = || opened(role, ends);
        let requests = (role == Role::Client) == outbound;
        let dir = usize::from(outbound);
        let time = now.ns;
        if rec.lost
            && requests
            && f.requests.at_head_start()
            && f.responses.at_head_start()
            && f.expect.is_empty()
        {
            rec.lost = false;
            rec.resync = true;
        }
        let Framed {
            requests: req_framer,
            responses: resp_framer,
            expect,
            serving,
            content,
            head_start,
        } = f;
        // An unsampled exchange is not exported, so it is not recorded
        // either: only framed (issue 13). Skipped only when it starts with
        // nothing else in flight and is the call's first head, so that no
        // sampled exchange loses records; recording resumes, afresh, at the
        // next request head with nothing in flight.
        let mut may_skip = requests
            && expect.is_empty()
            && req_framer.at_head_start()
            && resp_framer.at_head_start();
        let framer = if requests { req_framer } else { resp_framer };
        let mut consumed = 0usize;
        // Bytes of this call to record, not yet pushed: runs of head and
        // copied body bytes go as one record.
        let mut run = 0..0;
        let d = outbound as u8;
        let result = framer.feed(data, expect, &mut |seg| match seg {
            Seg::Head {
                bytes,
                complete,
                ends_message,
                context: cx,
            } => {
                let at = consumed;
                consumed += bytes.len();
                let Some(whole) = complete else {
                    // A head split over calls is recorded once, whole,
                    // when it ends (see below), at the time of its first
                    // byte that is not a blank line's (the parser skips
                    // those, and starts the exchange at the next byte).
                    if head_start[dir] == 0 && bytes.iter().any(|&b| b != b'\r' && b != b'\n') {
                        head_start[dir] = time;
                    }
                    return;
                };
                {
                    content[dir] = 0;
                    if requests {
                        let who = match role {
                            Role::Server => {
                                let who = server_identity(whole, cx.unwrap_or_default(), tracer);
                                serving.push_back(who.context.span_id);
                                who
                            }
                            Role::Client => {
                                *replaced_head = false;
                                planned.take().unwrap_or_else(|| {
                                    let cx = cx.unwrap_or_default();
                                    tracer.client_span(text(cx.traceparent), text(cx.tracestate))
                                })
                            }
                        };
                        if std::mem::take(&mut may_skip) && !who.context.is_sampled() {
                            if run.start != run.end {
                                rec.data(&open, d, time, &data[std::mem::replace(&mut run, 0..0)]);
                            }
                            rec.skip_exchange();
                        } else {
                            rec.identity(&open, time, &who);
                        }
                    }
                }
                match std::mem::take(&mut head_start[dir]) {
                    0 => extend(&mut run, at, consumed, |r| {
                        rec.data(&open, d, time, &data[r])
                    }),
                    began => {
                        // Its bytes at the time it began (an exchange
                        // starts then), its last byte when it ended.
                        if run.start != run.end {
                            rec.data(&open, d, time, &data[std::mem::replace(&mut run, 0..0)]);
                        }
                        let (most, last) = whole.split_at(whole.len() - 1);
                        rec.data(&open, d, began, most);
                        rec.data(&open, d, time, last);
                    }
                }
                if ends_message && !requests && role == Role::Server {
                    if let Some(id) = serving.pop_front() {
                        context::clear_active(id);
                    }
                }
            }
            Seg::Tunnel { earlier, bytes } => {
                // The capture thread's parser takes these bytes as the
                // start of a tunnel too; what follows is not recorded.
                consumed += bytes.len();
                if run.start != run.end {
                    rec.data(&open, d, time, &data[std::mem::replace(&mut run, 0..0)]);
                }
                let began = std::mem::take(&mut head_start[dir]);
                if !earlier.is_empty() {
                    rec.data(&open, d, if began == 0 { time } else { began }, earlier);
                }
                rec.data(&open, d, time, &bytes[..bytes.len().min(MAX_PAYLOAD)]);
            }
            Seg::Body {
                bytes,
                content: c,
                ended,
                keep: k,
            } => {
                let at = consumed;
                consumed += bytes.len();
                content[dir] += c;
                if k > 0 {
                    extend(&mut run, at, at + k, |r| rec.data(&open, d, time, &data[r]));
                }
                if k < bytes.len() {
                    let mut p = [0u8; 9];
                    p[..8].copy_from_slice(&content[dir].to_le_bytes());
                    p[8] = u8::from(ended);
                    let wire = (bytes.len() - k) as u64;
                    if run.start != run.end {
                        // The bytes before and the skip go as one record.
                        let r = std::mem::replace(&mut run, 0..0);
                        rec.data_then_skip(&open, d, time, &data[r], wire, &p);
                    } else {
                        rec.push(&open, kind::SKIP, outbound as u8, wire, time, &[&p]);
                    }
                }
                if ended && !requests && role == Role::Server {
                    if let Some(id) = serving.pop_front() {
                        context::clear_active(id);
                    }
                }
            }
        });
        if run.start != run.end {
            let open = || opened(role, ends);
            rec.data(&open, d, time, &data[run]);
        }
        // Requests became a tunnel: once every answer is in, the parser
        // stops, and so does tracing here.
        let tunnel_over =
            f.requests.ignoring() && f.expect.is_empty() && f.responses.at_head_start();
        // After a `101` or a tunnel's `2xx`, the connection is another
        // protocol: the parser ends there, and tracing here.
        if result.is_ok() && (tunnel_over || f.responses.switched()) {
            self.framed_close(now.time(), CloseReason::Closed, None);
            return Flow::Stop;
        }
        match result {
            Ok(()) => Flow::Continue,
            Err(_) => {
                // The capture thread's parser gets the same bytes and comes
                // to its own end with them.
                let rest = data.get(consumed..).unwrap_or_default();
                let rest = &rest[..rest.len().min(MAX_PAYLOAD)];
                self.framed_close(now.time(), CloseReason::Closed, Some((outbound, rest)));
                Flow::Stop
            }
        }
    }

    /// `n` bytes sent unseen (`sendfile`).
    pub(super) fn framed_opaque(&mut self, n: usize, now: SystemTime) -> Flow {
        let Connection {
            role,
            protocol,
            mode,
            ends,
            ..
        } = self;
        let (Protocol::Framed(f), Mode::Capture(rec)) = (protocol, mode) else {
            return Flow::Stop;
        };
        let role = *role;
        let framer = if role == Role::Client {
            &mut f.requests
        } else {
            &mut f.responses
        };
        let skipped = framer.skip(n as u64, &mut f.expect);
        let open = || opened(role, ends);
        if skipped.is_err() {
            f.record_partial_heads(rec, role, &open);
        }
        f.content[1] += n as u64;
        let mut p = [0u8; 9];
        p[..8].copy_from_slice(&f.content[1].to_le_bytes());
        p[8] = u8::from(skipped == Ok(true));
        // Recorded either way: where the bytes cannot be skipped, the
        // capture thread's parser stops on them as the app's thread would
        // have.
        rec.push(&open, kind::SKIP, 1, n as u64, time_ns(now), &[&p]);
        match skipped {
            Ok(ended) => {
                if ended && role == Role::Server {
                    if let Some(id) = f.serving.pop_front() {
                        context::clear_active(id);
                    }
                }
                Flow::Continue
            }
            Err(_) => {
                self.framed_close(now, CloseReason::Closed, None);
                self.protocol = Protocol::Ignored;
                Flow::Stop
            }
        }
    }

    /// The connection ends: its CLOSE record, and the requests it served
    /// stop being the thread's context.
    /// `tail`: bytes of one direction that framing could not follow, to
    /// record after what it followed.
    pub(super) fn framed_close(
        &mut self,
        now: SystemTime,
        reason: CloseReason,
        tail: Option<(bool, &[u8])>,
    ) {
        let Connection {
            role,
            protocol,
            mode,
            ends,
            ..
        } = self;
        let (Protocol::Framed(f), Mode::Capture(rec)) = (protocol, mode) else {
            return;
        };
        for id in f.serving.drain(..) {
            context::clear_active(id);
        }
        if rec.opened || !f.requests.partial_head().is_empty() {
            let role = *role;
            let open = || opened(role, ends);
            f.record_partial_heads(rec, role, &open);
            if let Some((outbound, bytes)) = tail.filter(|(_, b)| !b.is_empty()) {
                rec.data(&open, u8::from(outbound), time_ns(now), bytes);
            }
            rec.lost = false;
            rec.push(&open, kind::CLOSE, 0, close_code(reason), time_ns(now), &[]);
        }
        rec.opened = false;
        rec.lost = true;
    }
}

/// A captured connection of a protocol parsed on the capture thread from
/// what its [`Compact`](crate::protocol::Compact) hands on.
pub(super) struct CompactConn {
    inner: Box<dyn crate::protocol::Compact>,
    /// Reused for each call's bytes to record.
    out: Vec<u8>,
}

/// More than this kept between calls is given back.
const KEEP_OUT: usize = 4 * 1024;

impl CompactConn {
    pub(super) fn new(inner: Box<dyn crate::protocol::Compact>) -> CompactConn {
        CompactConn {
            inner,
            out: Vec::new(),
        }
    }

    pub(super) fn in_flight(&self) -> usize {
        usize::from(self.inner.in_flight())
    }
}

impl Connection {
    /// Bytes through a captured connection parsed on the capture thread:
    /// what the parser needs of them goes as one record (with the thread's
    /// context, when they start requests).
    pub(super) fn compact_step(
        &mut self,
        data: &[u8],
        outbound: bool,
        now: Stamp,
        tracer: &Tracer,
    ) -> Flow {
        let Connection {
            role,
            protocol,
            mode,
            ends,
            consuming,
            ..
        } = self;
        let (Protocol::Compact(c), Mode::Capture(rec)) = (protocol, mode) else {
            return Flow::Stop;
        };
        let role = *role;
        let open = || opened(role, ends);
        let mut out = std::mem::take(&mut c.out);
        out.clear();
        let seen = c.inner.compact(data, outbound, &mut out);
        if seen.requests {
            rec.identity(&open, now.ns, &tracer.client_identity());
        }
        for _ in 0..seen.messages {
            // The app handles a message until it reads the next: its
            // CONSUMER span is the thread's active context till then.
            if let Some(previous) = consuming.take() {
                crate::context::clear_active(previous);
            }
            let who = tracer.client_identity();
            rec.identity(&open, now.ns, &who);
            crate::context::set_active(&who.context, None);
            *consuming = Some(who.context.span_id);
        }
        if !out.is_empty() {
            rec.data(&open, u8::from(outbound), now.ns, &out);
        }
        if out.capacity() <= KEEP_OUT {
            c.out = out;
        }
        // A record refused leaves a hole the parser cannot read across:
        // tracing the connection ends.
        if seen.flow == Flow::Stop || rec.lost {
            self.compact_close(now.time(), CloseReason::Closed);
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// The connection ends: its CLOSE record.
    pub(super) fn compact_close(&mut self, now: SystemTime, reason: CloseReason) {
        let Connection {
            role,
            protocol,
            mode,
            ends,
            ..
        } = self;
        let (Protocol::Compact(_), Mode::Capture(rec)) = (protocol, mode) else {
            return;
        };
        if rec.opened {
            let role = *role;
            let open = || opened(role, ends);
            rec.lost = false;
            rec.push(&open, kind::CLOSE, 0, close_code(reason), time_ns(now), &[]);
        }
        rec.opened = false;
        rec.lost = true;
    }
}

/// Adds `start..end` of a call's bytes to the run to record, pushing the
/// run first when the two are not contiguous.
fn extend(
    run: &mut std::ops::Range<usize>,
    start: usize,
    end: usize,
    mut push: impl FnMut(std::ops::Range<usize>),
) {
    if run.start == run.end {
        *run = start..end;
    } else if run.end == start {
        run.end = end;
    } else {
        push(std::mem::replace(run, start..end));
    }
}

/// Body content bytes a captured connection keeps per message.
pub(super) fn prefix(mode: &Mode) -> usize {
    match mode {
        Mode::Capture(rec) => rec.cap.body_prefix,
        _ => 0,
    }
}

/// The connection as the capture thread's copy starts it.
fn opened(role: Role, ends: &http::Endpoints) -> Opened {
    Opened {
        role,
        peer: ends.peer.clone(),
        local: ends.local.clone(),
        tls: (ends.scheme == "https").then(|| ends.server_name.clone()),
    }
}

/// The SERVER span of an inbound request head, made the thread's active
/// context: what in-process correlation needs, from the context the framer
/// read in its pass over the head (the rest is parsed on the capture
/// thread). Other carriers (B3, `baggage`, execution tags) are read from
/// the head only when the framer saw lines that may be theirs.
fn server_identity(head: &[u8], cx: Context<'_>, tracer: &Tracer) -> Assigned {
    let tp = text(cx.traceparent);
    let carriers = if cx.others {
        other_carriers(head)
    } else {
        None
    };
    let mut who = tracer.server_span(tp, text(cx.tracestate), carriers.as_deref());
    let filtered = tracer.server_filtered_bytes(|| cx.target());
    if filtered {
        who.context.trace_flags &= !1;
    }
    activate_server(&who, tp, carriers.as_deref(), filtered, tracer);
    who
}

/// A header value as text (context values are ASCII; others are invalid).
fn text(v: Option<&[u8]>) -> Option<&str> {
    v.and_then(|v| std::str::from_utf8(v).ok())
}

/// The B3, `baggage` and execution-tag lines of a complete request head.
fn other_carriers(head: &[u8]) -> Option<Box<InboundCarriers>> {
    let mut carriers = None;
    let after_first = memchr::memchr(b'\n', head).map_or(&[][..], |i| &head[i + 1..]);
    for_each_header(after_first, |name, value| {
        InboundCarriers::header(&mut carriers, name, value);
    });
    carriers
}

/// Each `name: value` line of a head's header section (values trimmed).
fn for_each_header(mut lines: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
    while !lines.is_empty() {
        let end = memchr::memchr(b'\n', lines).unwrap_or(lines.len());
        let line = &lines[..end];
        lines = lines.get(end + 1..).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(colon) = memchr::memchr(b':', line) {
            f(&line[..colon], line[colon + 1..].trim_ascii());
        }
    }
}

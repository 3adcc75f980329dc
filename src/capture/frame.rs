//! HTTP/1.x framing for the app's thread: where each head ends and how
//! long each body is, in one pass, with no parsing and no allocation on the
//! common path (a head that arrives whole in one call).
//!
//! A [`Framer`] follows one direction of one connection (requests, or
//! responses) and cuts the bytes of each call into [`Seg`]ments: head bytes
//! (copied into the capture ring by the caller) and body bytes (counted,
//! and copied only up to the payload prefix). Heads are found by their
//! empty line, wherever the calls split them. A complete head is read once,
//! line by line, for the only fields framing needs: the request method
//! (`HEAD`, `CONNECT`), the status code, `Content-Length`,
//! `Transfer-Encoding` and `Upgrade`. Bodies are framed by
//! [`Body`](crate::http::body::Body), the parser's own streaming decoder,
//! so both threads agree on where a body ends. Everything else (names,
//! values, the span) is read later, on the export thread, from the copied
//! head bytes.
//!
//! What the responses mean depends on their requests (a response to `HEAD`
//! has no body, a `2xx` to `CONNECT` opens a tunnel): the request framer
//! records each request's [`ReqKind`] in an [`Expect`] queue, which the
//! response framer reads.

use std::collections::VecDeque;

use crate::http::body::Body;
use crate::http::detect::MAX_METHOD_LEN;
use crate::http::parser::{is_header_value, Framing};
use crate::http::{MAX_HEAD_BYTES, MAX_IN_FLIGHT};

/// Which messages a framer sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Requests,
    Responses,
}

/// What a request means for the framing of its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqKind {
    Normal,
    /// `HEAD`: the response has no body.
    Head,
    /// `CONNECT`: a `2xx` response opens a tunnel.
    Connect,
    /// Asked to switch protocols (`Upgrade`): a `101` ends HTTP.
    Upgrade,
}

/// The requests whose responses have not started yet, oldest first; and
/// the one whose response body is arriving.
#[derive(Debug, Default)]
pub struct Expect(VecDeque<ReqKind>, Option<ReqKind>);

impl Expect {
    /// `n` ordinary requests awaiting their responses (tests and fuzzing).
    pub fn awaiting(n: usize) -> Expect {
        Expect(std::iter::repeat_n(ReqKind::Normal, n).collect(), None)
    }

    /// The latest request whose exchange is not over (its response not
    /// started, or its body still arriving), as the parser's pending
    /// exchanges: bytes that are not a request after a `CONNECT` or an
    /// upgrade request may be the tunnel it asked for.
    fn latest(&self) -> Option<ReqKind> {
        self.0.back().copied().or(self.1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn clear(&mut self) {
        self.0.clear();
        self.1 = None;
    }
}

/// A piece of the bytes of one call.
#[derive(Debug, PartialEq, Eq)]
pub enum Seg<'a> {
    /// Head bytes. `complete`: the head ends with these bytes, and this is
    /// the whole head (its earlier bytes included), for the caller to read
    /// what it needs (a `traceparent`). `ends_message`: the message has no
    /// body and is not an interim response: it ends with its head.
    Head {
        bytes: &'a [u8],
        complete: Option<&'a [u8]>,
        ends_message: bool,
        /// Of a complete request head: what it says about context.
        context: Option<Context<'a>>,
    },
    /// Body bytes: `content` of them are content (chunk data only, for
    /// chunked bodies); `ended`: the body ends with them. `keep`: how many
    /// of them (from the start) carry the body's first
    /// [`Framer::with_prefix`] bytes of content, framing included.
    Body {
        bytes: &'a [u8],
        content: u64,
        ended: bool,
        keep: usize,
    },
    /// Request bytes after a `CONNECT` or an upgrade that are not HTTP
    /// (`earlier`: those of the same non-head given before): from here on
    /// the requests are ignored.
    Tunnel { earlier: &'a [u8], bytes: &'a [u8] },
}

/// What a complete request head says about trace context, read in the
/// same pass as its framing fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context<'a> {
    /// The request line after the method's space: the target and version,
    /// read out only when asked for ([`Context::target`]; only a server
    /// filter needs it on the app's thread).
    after_method: &'a [u8],
    /// The first `traceparent` and `tracestate` values, trimmed.
    pub traceparent: Option<&'a [u8]>,
    pub tracestate: Option<&'a [u8]>,
    /// Lines of other carriers may be present (a name starting with `b`
    /// or `x`, or any name when execution tags are configured): the head
    /// must be read for them.
    pub others: bool,
}

impl<'a> Context<'a> {
    /// The request target (blanks before it skipped, as the parser does).
    pub fn target(&self) -> &'a [u8] {
        let rest = self.after_method;
        let rest = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
        let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        trim(&rest[..end])
    }
}

/// Framing can no longer follow the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Not HTTP where a head should start, or a head over the cap.
    NotHttp,
    /// The bytes that follow are another protocol: a `101` or a tunnel.
    Switched,
    /// A body's framing is broken (a bad chunk size).
    BadBody,
    /// More requests in flight than a connection keeps.
    TooMany,
}

/// How the bytes of an unfinished head seen so far end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    /// Nothing yet, or only blank lines before the head.
    Start,
    /// Inside a line.
    Line,
    /// Just after a line feed.
    Lf,
    /// After a line feed and a carriage return.
    LfCr,
}

#[derive(Debug)]
enum State {
    Head,
    Body(Body),
    /// After `101` or a tunnel: nothing more is HTTP.
    Done,
    /// Requests after a `CONNECT` or an upgrade that are not HTTP: a
    /// tunnel the client opened without waiting for the answer. Ignored
    /// (as the parser does) until the answers are in.
    Ignore,
}

/// One direction of one HTTP/1.x connection. See the module docs.
#[derive(Debug)]
pub struct Framer {
    side: Side,
    state: State,
    tail: Tail,
    /// The head so far, when it spans calls (at most [`MAX_HEAD_BYTES`]
    /// plus one call's bytes; a longer head stops the framing).
    partial: Vec<u8>,
    /// Content bytes of each body to keep (payload capture).
    prefix: u64,
    /// Of the current body: content bytes still to keep.
    budget: u64,
}

/// The most bytes of one head the framer follows. Heads are copied whole
/// into the ring; longer ones are not HTTP a server would accept either.
pub const MAX_FRAMED_HEAD: usize = 4 * MAX_HEAD_BYTES;

impl Framer {
    pub fn new(side: Side) -> Framer {
        Framer {
            side,
            state: State::Head,
            tail: Tail::Start,
            partial: Vec::new(),
            prefix: 0,
            budget: 0,
        }
    }

    /// Keeps the first `n` content bytes of each body (see [`Seg::Body`]).
    pub fn with_prefix(mut self, n: usize) -> Framer {
        self.prefix = n as u64;
        self
    }

    /// At the start of a head, with nothing of it seen yet.
    pub fn at_head_start(&self) -> bool {
        matches!(self.state, State::Head) && self.tail == Tail::Start && self.partial.is_empty()
    }

    /// Inside a message's head (started or not).
    pub fn in_head(&self) -> bool {
        matches!(self.state, State::Head)
    }

    /// Inside a body framed by the connection's close.
    pub fn until_close(&self) -> bool {
        matches!(self.state, State::Body(Body::UntilClose))
    }

    /// Inside a body.
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Body(_))
    }

    /// The connection switched protocols (`101`, a tunnel): nothing after
    /// is HTTP.
    pub fn switched(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Requests are ignored after a tunnel began (see [`Seg::Tunnel`]).
    pub fn ignoring(&self) -> bool {
        matches!(self.state, State::Ignore)
    }

    /// Bytes that are not HTTP where a head should start: the start of a
    /// tunnel after a `CONNECT` or an upgrade request (as the parser takes
    /// them), else the end of framing.
    fn not_http(
        &mut self,
        data: &[u8],
        expect: &Expect,
        out: &mut impl FnMut(Seg<'_>),
    ) -> Result<(), Stop> {
        let tunnel = self.side == Side::Requests
            && matches!(expect.latest(), Some(ReqKind::Connect | ReqKind::Upgrade));
        if !tunnel {
            return Err(Stop::NotHttp);
        }
        out(Seg::Tunnel {
            earlier: &self.partial,
            bytes: data,
        });
        self.partial = Vec::new();
        self.tail = Tail::Start;
        self.state = State::Ignore;
        Ok(())
    }

    /// The bytes of a head that has started and not ended.
    pub fn partial_head(&self) -> &[u8] {
        if matches!(self.state, State::Head) {
            &self.partial
        } else {
            &[]
        }
    }

    /// What was sent so far of the unfinished head (for inserting into it),
    /// and whether those bytes end after a line feed, or after a line feed
    /// and a CR.
    pub fn sent_head(&self) -> (&[u8], bool, bool) {
        (
            &self.partial,
            self.tail == Tail::Lf,
            self.tail == Tail::LfCr,
        )
    }

    /// Cuts `data` into segments, in order, through `out`. On `Err`, the
    /// segments given so far are still valid; the rest of the bytes are
    /// not framed.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        expect: &mut Expect,
        out: &mut impl FnMut(Seg<'_>),
    ) -> Result<(), Stop> {
        while !data.is_empty() {
            match &mut self.state {
                State::Done => return Err(Stop::Switched),
                State::Ignore => return Ok(()),
                State::Body(body) => {
                    // Where the content still wanted ends, in these bytes.
                    let (mut budget, mut cut) = (self.budget, None);
                    let base = data.as_ptr() as usize;
                    let p = if budget == 0 {
                        body.feed(data)
                    } else {
                        body.feed_with(data, &mut |piece| {
                            if budget > 0 {
                                let take = piece.len().min(budget as usize);
                                budget -= take as u64;
                                if budget == 0 {
                                    cut = Some(piece.as_ptr() as usize - base + take);
                                }
                            }
                        })
                    }
                    .map_err(|_| Stop::BadBody)?;
                    let wanted = self.budget > 0;
                    self.budget = budget;
                    let (bytes, rest) = data.split_at(p.consumed.min(data.len()));
                    let keep = match cut {
                        Some(c) => c.min(bytes.len()),
                        None if wanted => bytes.len(),
                        None => 0,
                    };
                    out(Seg::Body {
                        bytes,
                        content: p.content,
                        ended: p.done,
                        keep,
                    });
                    data = rest;
                    if p.done {
                        self.state = State::Head;
                        if self.side == Side::Responses {
                            expect.1 = None;
                        }
                    }
                }
                State::Head => {
                    // A head starting in these bytes: one pass finds its end
                    // and reads it.
                    // What the pass read is left in `fresh` (not moved out:
                    // the head's facts are a hundred bytes).
                    let mut fresh = LineReader::new(self.side);
                    let mut read_fresh = false;
                    let found = if self.tail == Tail::Start && self.partial.is_empty() {
                        match scan_remembered(data, &mut fresh) {
                            Fresh::Complete(end) => {
                                read_fresh = true;
                                Some(end)
                            }
                            Fresh::NotHttp => return self.not_http(data, expect, out),
                            Fresh::Partial => self.find_end(data),
                        }
                    } else {
                        self.find_end(data)
                    };
                    let Some(end) = found else {
                        if self.partial.len() + data.len() > MAX_FRAMED_HEAD {
                            return Err(Stop::NotHttp);
                        }
                        if !self.may_start(data) {
                            return self.not_http(data, expect, out);
                        }
                        self.partial.extend_from_slice(data);
                        out(Seg::Head {
                            bytes: data,
                            complete: None,
                            ends_message: false,
                            context: None,
                        });
                        return Ok(());
                    };
                    let (bytes, rest) = data.split_at(end);
                    let whole: &[u8] = if self.partial.is_empty() {
                        bytes
                    } else {
                        if self.partial.len() + bytes.len() > MAX_FRAMED_HEAD {
                            return Err(Stop::NotHttp);
                        }
                        self.partial.extend_from_slice(bytes);
                        &self.partial
                    };
                    let mut reread;
                    let info = if read_fresh {
                        &fresh.info
                    } else {
                        reread = LineReader::new(self.side);
                        if !read_head(whole, &mut reread) {
                            // Those bytes are given again, with the rest.
                            let before = self.partial.len().saturating_sub(bytes.len());
                            self.partial.truncate(before);
                            return self.not_http(data, expect, out);
                        }
                        &reread.info
                    };
                    let (next, interim) = next_state(self.side, info, expect)?;
                    out(Seg::Head {
                        bytes,
                        complete: Some(whole),
                        ends_message: !interim && !matches!(next, State::Body(_)),
                        context: (self.side == Side::Requests).then_some(info.context),
                    });
                    self.partial.clear();
                    if self.partial.capacity() > MAX_HEAD_BYTES {
                        self.partial = Vec::new();
                    }
                    self.tail = Tail::Start;
                    self.state = next;
                    self.budget = self.prefix;
                    data = rest;
                }
            }
        }
        Ok(())
    }

    /// Whether the unfinished head (what was kept of it, then `data`) can
    /// still become a start line: a response's `HTTP/`, a request's method
    /// token and its space. Checked as bytes arrive, as the parser does, so
    /// that both give up at the same byte.
    fn may_start(&self, data: &[u8]) -> bool {
        let both = self.partial.iter().chain(data).copied();
        let start = both.skip_while(|&b| b == b'\r' || b == b'\n');
        match self.side {
            Side::Responses => {
                // As far as it came, `HTTP/1.` and a digit.
                let mut n = 0;
                start.take(8).all(|b| {
                    let ok = match b"HTTP/1.".get(n) {
                        Some(&want) => b == want,
                        None => b.is_ascii_digit(),
                    };
                    n += 1;
                    ok
                })
            }
            Side::Requests => {
                // The method token, then its space; once the whole start
                // line is in, it must read as one.
                let mut line = Vec::new();
                let mut token = true;
                for b in start {
                    if b == b'\n' {
                        let line = line.strip_suffix(b"\r").unwrap_or(&line);
                        return LineReader::new(self.side).start_line(line).is_some();
                    }
                    if token && b == b' ' {
                        if line.is_empty() {
                            return false;
                        }
                        token = false;
                    } else if token && (line.len() >= MAX_METHOD_LEN || !method_byte(line.len(), b))
                    {
                        return false;
                    }
                    line.push(b);
                }
                true
            }
        }
    }

    /// `n` bytes went by unseen (`sendfile`): fine inside a body of known
    /// length or one framed by the close, none at all between messages, and
    /// any number while requests are ignored (as the parser takes them).
    /// Returns whether the body ended.
    pub fn skip(&mut self, n: u64, expect: &mut Expect) -> Result<bool, Stop> {
        match &mut self.state {
            State::Head if n == 0 => Ok(false),
            State::Ignore => Ok(false),
            State::Body(body) => {
                let p = body.skip(n).map_err(|_| Stop::BadBody)?;
                if p.done {
                    self.state = State::Head;
                    if self.side == Side::Responses {
                        expect.1 = None;
                    }
                }
                Ok(p.done)
            }
            _ => Err(Stop::NotHttp),
        }
    }

    /// Where the head ends in `data` (just past its empty line), given how
    /// the bytes before `data` ended; updates that state when it does not.
    fn find_end(&mut self, data: &[u8]) -> Option<usize> {
        let mut i = 0;
        // Blank lines before a head are skipped (RFC 9112 §2.2); they
        // belong to the head's bytes.
        if self.tail == Tail::Start {
            while i < data.len() && (data[i] == b'\r' || data[i] == b'\n') {
                i += 1;
            }
            if i == data.len() {
                return None;
            }
            self.tail = Tail::Line;
        }
        // Where the line containing position `i` started, relative to
        // `data` (negative: in earlier calls); `None`: started earlier and
        // already known not to be empty.
        let mut line_start: Option<isize> = match self.tail {
            Tail::Lf => Some(0),
            Tail::LfCr => Some(-1),
            _ => None,
        };
        if let (Some(-1), Some(&b)) = (line_start, data.first()) {
            if b == b'\n' {
                return Some(1);
            }
            line_start = None;
        }
        let mut from = i;
        while let Some(off) = memchr::memchr(b'\n', &data[from..]) {
            let lf = from + off;
            if let Some(s) = line_start {
                let len = lf as isize - s;
                if len == 0 || (len == 1 && s >= 0 && data[s as usize] == b'\r') {
                    return Some(lf + 1);
                }
            }
            line_start = Some(lf as isize + 1);
            from = lf + 1;
        }
        let n = data.len() as isize;
        self.tail = match (line_start, data.last()) {
            (Some(s), _) if s == n => Tail::Lf,
            (Some(s), Some(b'\r')) if s == n - 1 => Tail::LfCr,
            _ => Tail::Line,
        };
        None
    }
}

/// What follows a complete head: its body, or the next head; and whether
/// it was an interim response.
fn next_state(side: Side, info: &HeadInfo, expect: &mut Expect) -> Result<(State, bool), Stop> {
    match side {
        Side::Requests => {
            let kind = match info.method {
                Method::Head => ReqKind::Head,
                Method::Connect => ReqKind::Connect,
                _ if info.upgrade => ReqKind::Upgrade,
                _ => ReqKind::Normal,
            };
            if expect.0.len() >= MAX_IN_FLIGHT {
                return Err(Stop::TooMany);
            }
            expect.0.push_back(kind);
            let next = match info.framing.request_body() {
                _ if kind == ReqKind::Connect => State::Head,
                Ok(None) => State::Head,
                Ok(Some(body)) => State::Body(body),
                // Broken framing: the requests after it are ignored until
                // the answers are in, as the parser does.
                Err(_) => State::Ignore,
            };
            Ok((next, false))
        }
        Side::Responses => {
            let status = info.status.ok_or(Stop::NotHttp)?;
            if expect.0.is_empty() {
                // An answer to no request: the parser stops there too.
                return Err(Stop::NotHttp);
            }
            if (100..200).contains(&status) {
                if status == 101 {
                    expect.0.pop_front();
                    return Ok((State::Done, false));
                }
                // Interim: the final response is still to come.
                return Ok((State::Head, true));
            }
            let kind = expect.0.pop_front().unwrap_or(ReqKind::Normal);
            if kind == ReqKind::Connect && (200..300).contains(&status) {
                return Ok((State::Done, false));
            }
            let method = if kind == ReqKind::Head { "HEAD" } else { "" };
            let next = match info.framing.response_body(method, status) {
                Ok(None) => State::Head,
                Ok(Some(body)) => State::Body(body),
                Err(_) => return Err(Stop::NotHttp),
            };
            expect.1 = matches!(next, State::Body(_)).then_some(kind);
            Ok((next, false))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Head,
    Connect,
    Other,
}

/// What framing needs of a complete head.
#[derive(Debug)]
struct HeadInfo<'a> {
    context: Context<'a>,
    method: Method,
    status: Option<u16>,
    framing: Framing,
    upgrade: bool,
}

/// A head read line by line: the start line, then the header lines that
/// matter for framing and context.
struct LineReader<'a> {
    side: Side,
    tags: bool,
    info: HeadInfo<'a>,
    first: bool,
    start_failed: bool,
    /// A line starting with a blank was seen (a response's obs-fold).
    folds: bool,
}

impl<'a> LineReader<'a> {
    fn new(side: Side) -> LineReader<'a> {
        LineReader {
            side,
            tags: side == Side::Requests && crate::tags::key(0).is_some(),
            info: HeadInfo {
                context: Context::default(),
                method: Method::Other,
                status: None,
                framing: Framing::default(),
                upgrade: false,
            },
            first: true,
            start_failed: false,
            folds: false,
        }
    }

    /// The start line was the one that failed.
    fn first_failed(&self) -> bool {
        self.start_failed
    }

    /// One non-empty line, without its line end. `None`: not HTTP.
    #[inline(always)]
    fn line(&mut self, line: &'a [u8]) -> Option<()> {
        if std::mem::take(&mut self.first) {
            if self.start_line(line).is_some() {
                return Some(());
            }
            // The parser's detector rejects a status line at once only
            // when it does not start `HTTP/1.` and a digit; anything else
            // wrong in it (the code) only once the head has ended.
            self.start_failed = !(self.side == Side::Responses && status_prefix(line));
            return None;
        }
        let info = &mut self.info;
        let &c = line.first()?;
        match c | 0x20 {
            b'c' | b't' | b'u' => {}
            b'b' | b'x' if self.side == Side::Requests => {
                // Another carrier's line (`b3`, `baggage`, `X-B3-*`): the
                // head is read for them. Not any `X-` line: proxies add
                // `X-Forwarded-For` or `X-Request-Id` to most requests.
                info.context.others |= self.tags || may_be_carrier(line);
                return Some(());
            }
            _ => {
                info.context.others |= self.tags;
                // A blank: a line folded onto the one before (a response's,
                // which the parser has httparse allow): the head is read
                // again by `scan_folded`.
                self.folds |= self.side == Side::Responses && matches!(c, b' ' | b'\t');
                return Some(());
            }
        }
        // A name is matched by its length (where the colon must be) and
        // then its bytes: most lines are rejected by one or two compares.
        let named = |name: &[u8]| {
            line.get(name.len()) == Some(&b':') && line[..name.len()].eq_ignore_ascii_case(name)
        };
        let value = |name: &[u8]| trim(&line[name.len() + 1..]);
        let requests = self.side == Side::Requests;
        // Framing fields are read by the parser's own rules (`Framing`),
        // so both threads frame every body alike; a line httparse skips (a
        // control byte in its value) is skipped here too.
        if named(b"content-length") {
            info.framing.content_length_line(value(b"content-length"));
        } else if named(b"transfer-encoding") {
            info.framing
                .transfer_encoding_line(value(b"transfer-encoding"));
        } else if named(b"upgrade") {
            info.upgrade |= is_header_value(value(b"upgrade"));
        } else if requests && named(b"traceparent") {
            info.context
                .traceparent
                .get_or_insert(value(b"traceparent"));
        } else if requests && named(b"tracestate") {
            info.context.tracestate.get_or_insert(value(b"tracestate"));
        } else if !requests && FRAMING_NAMES.iter().any(|n| blank(line.get(n.len()))) {
            // Blanks where a framing name's colon would be: allowed in a
            // response (the parser lets httparse allow them), and rare.
            spaced_framing_line(info, line);
            info.context.others |= self.tags;
        } else if self.tags {
            info.context.others = true;
        }
        Some(())
    }

    /// A response's header line with the lines folded onto it (see
    /// [`scan_folded`]): a framing field's value is read as the parser reads
    /// it, CR LF and all (a length that is not a number then).
    #[cold]
    #[inline(never)]
    fn folded_line(&mut self, line: &'a [u8]) -> Option<()> {
        let info = &mut self.info;
        info.context.others |= self.tags;
        // A line without a colon httparse skips, as it skips it unfolded.
        if let Some(colon) = memchr::memchr(b':', line) {
            let name = line[..colon].trim_ascii_end();
            let value = trim(&line[colon + 1..]);
            if name.eq_ignore_ascii_case(b"upgrade") {
                info.upgrade = true;
            } else {
                info.framing.header(name, value);
            }
        }
        Some(())
    }

    fn start_line(&mut self, first: &'a [u8]) -> Option<()> {
        let info = &mut self.info;
        // Start lines are short: a byte loop finds their spaces sooner than
        // a call of a SIMD search.
        let space = |b: &[u8]| b.iter().position(|&c| c == b' ');
        if let Some(rest) = first.strip_prefix(b"HTTP/") {
            // "1.1 200 ...": the three digits after the spaces after the
            // version (several allowed, as the parser allows them).
            let sp = space(rest)?;
            let after = &rest[sp + 1..];
            let at = after.iter().position(|&b| b != b' ')?;
            let code = after.get(at..at + 3)?;
            if !code.iter().all(u8::is_ascii_digit) {
                return None;
            }
            info.status = Some(code.iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0')));
        } else {
            let sp = space(first)?;
            let method = &first[..sp];
            if !(1..=MAX_METHOD_LEN).contains(&method.len())
                || !method.iter().enumerate().all(|(i, &b)| method_byte(i, b))
            {
                return None;
            }
            info.method = match method {
                b"HEAD" => Method::Head,
                b"CONNECT" => Method::Connect,
                _ => Method::Other,
            };
            info.context.after_method = &first[sp + 1..];
        }
        Some(())
    }
}

/// Whether `b` may be the byte at `i` of a request method (of at most
/// `MAX_METHOD_LEN`), by the parser's detector's rule: upper-case letters, and `-` or `_` after the first. A
/// head the framer took and the parser refused (`get /`) was framed on and
/// had a `traceparent` inserted that the parser's path would not have.
fn method_byte(i: usize, b: u8) -> bool {
    b.is_ascii_uppercase() || (i > 0 && (b == b'-' || b == b'_'))
}

/// Whether a request's header line starting with `b` or `x` may be one of
/// the other carriers `InboundCarriers::header` reads (`b3`, `baggage`,
/// `x-b3-*`, in any case): its name starts as theirs do.
fn may_be_carrier(line: &[u8]) -> bool {
    let starts = |p: &[u8]| {
        line.get(..p.len())
            .is_some_and(|l| l.eq_ignore_ascii_case(p))
    };
    starts(b"x-b3-") || starts(b"b3") || starts(b"baggage")
}

/// The framing names of a response.
const FRAMING_NAMES: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"upgrade"];

fn blank(b: Option<&u8>) -> bool {
    matches!(b, Some(b' ' | b'\t'))
}

/// A response's framing line whose name blanks separate from its colon
/// (`Content-Length : 2`), read as the parser reads it.
#[cold]
#[inline(never)]
fn spaced_framing_line<'a>(info: &mut HeadInfo<'a>, line: &'a [u8]) {
    for (i, name) in FRAMING_NAMES.iter().enumerate() {
        let n = name.len();
        let colon = n + line
            .get(n..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if colon == n || line.get(colon) != Some(&b':') || !line[..n].eq_ignore_ascii_case(name) {
            continue;
        }
        let value = trim(&line[colon + 1..]);
        match i {
            0 => info.framing.content_length_line(value),
            1 => info.framing.transfer_encoding_line(value),
            _ => info.upgrade |= is_header_value(value),
        }
        return;
    }
}

/// Whether a status line starts as the parser's detector wants it:
/// `HTTP/1.` and a digit.
fn status_prefix(line: &[u8]) -> bool {
    line.starts_with(b"HTTP/1.") && line.get(7).is_some_and(u8::is_ascii_digit)
}

/// Leading blank lines (CR and LF bytes) of a head.
fn blank_prefix(data: &[u8]) -> usize {
    data.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len())
}

/// Reads a complete head's start line and framing fields into `reader`
/// (new); false if the start line is neither a request line nor a status
/// line.
fn read_head<'a>(head: &'a [u8], reader: &mut LineReader<'a>) -> bool {
    // No empty line (`Partial`): a head cut short (the bytes at a close).
    !matches!(scan_fresh(head, reader), Fresh::NotHttp)
}

/// What one pass over bytes that start a head found; what it read is in
/// the reader it was given.
enum Fresh {
    /// The head ends at this offset (just past its empty line).
    Complete(usize),
    /// Its start line is not HTTP.
    NotHttp,
    /// It does not end in these bytes.
    Partial,
}

/// One pass over bytes that start a head, with `reader` new: where it
/// ends, and (in `reader`) what it says.
fn scan_fresh<'a>(data: &'a [u8], reader: &mut LineReader<'a>) -> Fresh {
    let side = reader.side;
    let start = blank_prefix(data);
    let mut line_start = start;
    let mut end = None;
    // A start line that is not HTTP is known at once (the parser's detector
    // says so as the bytes arrive); a bad header line only once the head
    // has ended (where the parser finds it malformed).
    let (mut bad_start, mut bad_line) = (false, false);
    // Lines are read only where their first byte may matter (see
    // `read_first`); the others cost a table look.
    let read_first = match side {
        _ if reader.tags => &READ_ALL,
        Side::Requests => &READ_REQUEST,
        Side::Responses => &READ_RESPONSE,
    };
    let mut read = true;
    for i in LineFeeds::new(&data[start..]) {
        let lf = start + i;
        if read {
            let line = &data[line_start..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                end = Some(lf + 1);
                break;
            }
            if !bad_line && reader.line(line).is_none() {
                if reader.first_failed() {
                    bad_start = true;
                    break;
                }
                bad_line = true;
            }
        }
        line_start = lf + 1;
        read = data.get(lf + 1).is_none_or(|&b| read_first[usize::from(b)]);
    }
    match end {
        _ if bad_start => Fresh::NotHttp,
        Some(e) if reader.folds => scan_folded(data, start, e, reader),
        Some(_) if bad_line => Fresh::NotHttp,
        Some(e) => Fresh::Complete(e),
        None => Fresh::Partial,
    }
}

/// [`scan_fresh`], with the last complete head of each side this thread
/// read remembered: bytes that start with that head are that head again,
/// and what it says is taken from the memo instead of read line by line.
/// Clients send the same head over and over (a health check, a client
/// library's calls), and a server's responses differ only once a second
/// (their `Date`), so most heads are met before; a comparison of their
/// bytes is a tenth of the cost of reading them. A head with a
/// `traceparent` or `tracestate` is not kept (a traced caller's heads never
/// repeat), nor one over [`MEMO_BYTES`] or with folded lines.
fn scan_remembered<'a>(data: &'a [u8], reader: &mut LineReader<'a>) -> Fresh {
    let side = usize::from(reader.side == Side::Responses);
    let tags = reader.tags;
    let recalled = MEMO
        .try_with(|m| {
            let m = m.try_borrow().ok()?;
            let kept = &m.as_ref()?[side];
            let head = kept.bytes.get(..kept.len)?;
            if kept.tags != tags || !data.starts_with(head) {
                return None;
            }
            Some((kept.facts.clone()?, kept.len))
        })
        .ok()
        .flatten();
    if let Some((facts, end)) = recalled {
        let info = &mut reader.info;
        info.method = facts.method;
        info.status = facts.status;
        info.framing = facts.framing;
        info.upgrade = facts.upgrade;
        info.context.others = facts.others;
        info.context.after_method = data.get(facts.after_method.clone()).unwrap_or_default();
        return Fresh::Complete(end);
    }
    let fresh = scan_fresh(data, reader);
    if let Fresh::Complete(end) = fresh {
        let info = &reader.info;
        let cx = &info.context;
        if end <= MEMO_BYTES && !reader.folds && cx.traceparent.is_none() && cx.tracestate.is_none()
        {
            // Where the target and version start, as an offset into `data`
            // (the memo is read against other bytes).
            let at = (cx.after_method.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
            let after_method = if cx.after_method.is_empty() || at > end {
                0..0
            } else {
                at..at + cx.after_method.len()
            };
            let facts = Facts {
                method: info.method,
                status: info.status,
                framing: info.framing,
                upgrade: info.upgrade,
                others: cx.others,
                after_method,
            };
            let _ = MEMO.try_with(|m| {
                if let Ok(mut m) = m.try_borrow_mut() {
                    let kept = &mut m.get_or_insert_with(|| Box::new([NO_HEAD; 2]))[side];
                    kept.bytes[..end].copy_from_slice(&data[..end]);
                    kept.len = end;
                    kept.tags = tags;
                    kept.facts = Some(facts);
                }
            });
        }
    }
    fresh
}

/// The longest head [`scan_remembered`] keeps, per side and thread. Most
/// response heads are 150 to 300 bytes, most request heads from programs
/// (not browsers) under 200.
const MEMO_BYTES: usize = 512;

/// What a head kept by [`scan_remembered`] says: its [`HeadInfo`], with
/// the target as a range of the head's bytes.
#[derive(Clone, Debug)]
struct Facts {
    method: Method,
    status: Option<u16>,
    framing: Framing,
    upgrade: bool,
    others: bool,
    after_method: std::ops::Range<usize>,
}

/// One side's last head (see [`scan_remembered`]).
struct KeptHead {
    len: usize,
    /// Whether execution tags were configured when it was read.
    tags: bool,
    /// `None`: nothing kept.
    facts: Option<Facts>,
    bytes: [u8; MEMO_BYTES],
}

const NO_HEAD: KeptHead = KeptHead {
    len: 0,
    tags: false,
    facts: None,
    bytes: [0; MEMO_BYTES],
};

/// Requests', then responses' last head, on the heap: only threads that
/// frame HTTP have one, freed when the thread ends. (In the thread's static
/// TLS block it would take its size from the stack of every thread the app
/// starts, small stacks included.) A hook that runs after the thread's
/// destructors finds no memo and reads the head.
type Memo = std::cell::RefCell<Option<Box<[KeptHead; 2]>>>;

thread_local! {
    static MEMO: Memo = const { std::cell::RefCell::new(None) };
}

/// A complete response head with folded lines (obs-fold: a line starting
/// with a blank continues the one before), read again line by line: a
/// header line with those folded onto it is one line, its value CR LF and
/// all, as httparse gives it (see [`LineReader::folded_line`]).
#[cold]
#[inline(never)]
fn scan_folded<'a>(data: &'a [u8], start: usize, end: usize, reader: &mut LineReader<'a>) -> Fresh {
    let head = &data[..end];
    *reader = LineReader::new(reader.side);
    let mut at = start;
    let mut bad_line = false;
    while let Some(i) = memchr::memchr(b'\n', &head[at..]) {
        let mut lf = at + i;
        let line = &head[at..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let read = if !reader.first && matches!(head.get(lf + 1), Some(b' ' | b'\t')) {
            // Through the last line folded onto this one.
            while matches!(head.get(lf + 1), Some(b' ' | b'\t')) {
                match memchr::memchr(b'\n', &head[lf + 1..]) {
                    Some(j) => lf += 1 + j,
                    None => break,
                }
            }
            let whole = &head[at..lf];
            reader.folded_line(whole.strip_suffix(b"\r").unwrap_or(whole))
        } else {
            reader.line(line)
        };
        if !bad_line && read.is_none() {
            if reader.first_failed() {
                return Fresh::NotHttp;
            }
            bad_line = true;
        }
        at = lf + 1;
    }
    if bad_line {
        Fresh::NotHttp
    } else {
        Fresh::Complete(end)
    }
}

/// The first bytes of lines [`LineReader::line`] does something with: the
/// end of the head (CR, LF) and the initials of the names it reads, in
/// either case (`b` and `x` of other carriers for requests). Every other
/// line is passed over unread.
const fn first_bytes(initials: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    t[b'\r' as usize] = true;
    t[b'\n' as usize] = true;
    let mut i = 0;
    while i < initials.len() {
        t[initials[i] as usize] = true;
        t[initials[i].to_ascii_uppercase() as usize] = true;
        i += 1;
    }
    t
}
const fn with_blanks(mut t: [bool; 256]) -> [bool; 256] {
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t
}
static READ_REQUEST: [bool; 256] = first_bytes(b"ctubx");
/// And blanks: a folded line (see [`scan_folded`]).
static READ_RESPONSE: [bool; 256] = with_blanks(first_bytes(b"ctu"));
/// With execution tags configured, any line may be one.
static READ_ALL: [bool; 256] = [true; 256];

/// The offsets of the line feeds in `data`, in order. On x86-64, 16 bytes
/// are compared at a time (SSE2, part of the baseline), the last block
/// overlapping the one before it rather than read byte by byte, so a head
/// costs a few instructions per line; an iterator, so that the caller's
/// loop body is inlined where it is used.
pub(crate) struct LineFeeds<'a> {
    data: &'a [u8],
    /// Offset of bit 0 of `mask`.
    base: usize,
    /// The line feeds of the current block not yet given.
    mask: u32,
    /// Where the next block starts.
    next: usize,
}

impl<'a> LineFeeds<'a> {
    pub(crate) fn new(data: &'a [u8]) -> LineFeeds<'a> {
        LineFeeds {
            data,
            base: 0,
            mask: 0,
            next: 0,
        }
    }

    /// The line feeds among the 16 bytes at `at` (`at + 16 <= len`).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn block(&self, at: usize) -> u32 {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        debug_assert!(at + 16 <= self.data.len());
        // SAFETY: SSE2 is always available on x86-64, and the 16 bytes at
        // `at` are inside `data` (checked by every caller; unaligned loads
        // are allowed).
        unsafe {
            let v = _mm_loadu_si128(self.data.as_ptr().add(at).cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8))) as u32
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn block(&self, at: usize) -> u32 {
        self.data[at..at + 16]
            .iter()
            .enumerate()
            .fold(0, |m, (i, &b)| m | (u32::from(b == b'\n') << i))
    }
}

impl Iterator for LineFeeds<'_> {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.mask != 0 {
                let i = self.base + self.mask.trailing_zeros() as usize;
                self.mask &= self.mask - 1;
                return Some(i);
            }
            let len = self.data.len();
            if self.next >= len {
                return None;
            }
            if self.next + 16 <= len {
                self.base = self.next;
                self.mask = self.block(self.next);
                self.next += 16;
            } else if len >= 16 {
                // The last bytes: the final 16, without those already seen.
                let at = len - 16;
                let seen = self.next - at;
                self.base = at;
                self.mask = self.block(at) >> seen << seen;
                self.next = len;
            } else {
                self.base = self.next;
                self.mask = self.data[self.next..]
                    .iter()
                    .enumerate()
                    .fold(0, |m, (i, &b)| m | (u32::from(b == b'\n') << i));
                self.next = len;
            }
        }
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = v.iter().position(|b| !blank(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;

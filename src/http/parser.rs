//! Message heads: accumulating them across calls, and parsing them.
//!
//! A [`HeadReader`] collects one direction's head bytes until the empty line
//! that ends the head, with at most [`MAX_HEAD_BYTES`] buffered. A longer
//! head (a big cookie, a JWT) keeps its framing: past the cap the reader
//! streams over the bytes without keeping them, still finds the head's end,
//! and keeps only the header lines that matter ([`Beyond`]: framing,
//! `traceparent`, …), so the exchange goes on as usual with what was kept.
//! When a whole head arrives in one call it is parsed straight from the
//! caller's slice, without copying. Blank lines before a head are skipped (RFC 9112 §2.2),
//! and the first bytes of every head go through a detector, so garbage where
//! a head should be is reported after a byte or a few instead of after the
//! cap.
//!
//! Complete heads are parsed into owned [`RequestHead`]s and
//! [`ResponseHead`]s that keep only what spans and body framing need. A head
//! whose start line has the usual shape takes a quick path that reads only
//! the header lines it needs (two for a response, nine names for a request)
//! and skips the rest unread; anything out of the ordinary on a line that
//! matters goes to `httparse` (lenient options, as peers are lenient). The
//! tests hold both paths to the same answers. Heads that cannot be parsed (too long,
//! malformed) are salvaged line by line for whatever they tell.

use std::time::SystemTime;

use httparse::{Header, ParserConfig, Status, EMPTY_HEADER};

use crate::capture::frame::LineFeeds;

use super::body::{Body, Chunked, FramingError};
use super::detect::{Detect, RequestDetector, ResponseDetector};
use super::inject::SentHead;
use super::{capped_string, capped_text, HttpExchange, MAX_FIELD_BYTES, MAX_HEAD_BYTES};
use crate::span::Text;

/// Buffer capacity kept between heads; larger buffers are given back.
const KEEP_CAPACITY: usize = 2048;

/// Headers parsed without a heap allocation; heads with more retry on the heap.
const STACK_HEADERS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadKind {
    Request,
    Response,
}

/// Where the search for the head's end stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// Skipping blank lines before the head; nothing of it seen yet.
    Leading,
    /// Inside a line.
    Line,
    /// Just after a LF.
    Lf,
    /// After a LF and a CR.
    LfCr,
}

#[derive(Clone, Debug)]
enum Detector {
    Request(RequestDetector),
    Response(ResponseDetector),
}

/// Most bytes kept of one header line read past the cap: its name and as
/// much of its value as a span keeps.
const BEYOND_LINE_BYTES: usize = MAX_FIELD_BYTES + 64;

/// Most framing lines (`Content-Length`, `Transfer-Encoding`) kept from past
/// the cap, and the longest value kept of one: real ones are short.
const BEYOND_FRAMING_LINES: usize = 8;
const BEYOND_FRAMING_VALUE: usize = 128;

/// What a head longer than [`MAX_HEAD_BYTES`] says past the cap: the header
/// lines whose name matters (framing, and for requests what spans and
/// propagation read), taken as the bytes stream by. Bounded: the first line
/// of each other name that matters (at most [`BEYOND_LINE_BYTES`] of it, as
/// only the first is read), and at most [`BEYOND_FRAMING_LINES`] short
/// framing lines; framing that cannot be kept is marked lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Beyond {
    /// The first bytes of the line in progress (from its start, which may
    /// lie before the cap).
    line: Vec<u8>,
    /// The line in progress is longer than what is kept of it.
    line_cut: bool,
    /// Complete header lines that matter: name (lower case) and value.
    lines: Vec<(&'static [u8], Vec<u8>)>,
    /// A framing header could not be kept (too long, or too many lines):
    /// the body cannot be framed.
    framing_lost: bool,
}

impl Beyond {
    /// The kept header lines that matter, in order: name (lower case) and
    /// trimmed value.
    pub(crate) fn lines(&self) -> impl Iterator<Item = (&'static [u8], &[u8])> {
        self.lines.iter().map(|(n, v)| (*n, v.as_slice()))
    }

    /// The first bytes of the line in progress.
    pub(crate) fn line_so_far(&self) -> &[u8] {
        &self.line
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = BEYOND_LINE_BYTES.saturating_sub(self.line.len());
        self.line_cut |= bytes.len() > room;
        self.line
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
    }

    /// The line in progress ended: keep it if its name is one of `wanted`.
    fn end_line(&mut self, wanted: &[&'static [u8]]) {
        let line = std::mem::take(&mut self.line);
        let cut = std::mem::replace(&mut self.line_cut, false);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let Some(colon) = memchr::memchr(b':', line) else {
            return;
        };
        let name = line[..colon].trim_ascii_end();
        let Some(name) = wanted
            .iter()
            .copied()
            .find(|w| name.eq_ignore_ascii_case(w))
        else {
            return;
        };
        let value = line[colon + 1..].trim_ascii();
        if RESPONSE_HEADERS.contains(&name) {
            let kept = self
                .lines
                .iter()
                .filter(|(n, _)| RESPONSE_HEADERS.contains(n))
                .count();
            if cut || value.len() > BEYOND_FRAMING_VALUE || kept >= BEYOND_FRAMING_LINES {
                self.framing_lost = true;
                return;
            }
        } else if self.lines.iter().any(|(n, _)| *n == name) {
            return; // only the first of these is read
        }
        self.lines.push((name, value.to_vec()));
    }
}

/// One direction's head in progress.
#[derive(Clone, Debug)]
pub(crate) struct HeadReader {
    kind: HeadKind,
    buf: Vec<u8>,
    scan: Scan,
    detector: Detector,
    verified: bool,
    started: Option<SystemTime>,
    /// Past the cap: what is kept of the bytes beyond it.
    beyond: Option<Box<Beyond>>,
}

/// The outcome of [`HeadReader::feed`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadStep<'a> {
    /// All the input was taken; the head is not complete yet.
    Partial,
    /// The head is complete: its bytes (from the first non-blank byte to the
    /// empty line included) and how many bytes of the input it took.
    Complete { head: &'a [u8], consumed: usize },
    /// The head is complete and longer than the cap: its first
    /// [`MAX_HEAD_BYTES`] bytes, the lines that matter read past them, and
    /// how many bytes of the input it took.
    Oversized {
        kept: &'a [u8],
        beyond: &'a Beyond,
        consumed: usize,
    },
    /// The first bytes of the head are not HTTP/1.x.
    NotHttp,
}

impl HeadReader {
    pub(crate) fn new(kind: HeadKind) -> HeadReader {
        HeadReader {
            kind,
            buf: Vec::new(),
            scan: Scan::Leading,
            detector: Self::detector(kind),
            verified: false,
            started: None,
            beyond: None,
        }
    }

    fn detector(kind: HeadKind) -> Detector {
        match kind {
            HeadKind::Request => Detector::Request(RequestDetector::new()),
            HeadKind::Response => Detector::Response(ResponseDetector::new()),
        }
    }

    /// Time of the call that brought the head's first byte, once one came.
    pub(crate) fn started(&self) -> Option<SystemTime> {
        self.started
    }

    /// Whether the head's first bytes were recognised as HTTP/1.x.
    pub(crate) fn verified(&self) -> bool {
        self.verified
    }

    /// Bytes held, for bounds checks.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The bytes of an unfinished head seen so far (its first
    /// [`MAX_HEAD_BYTES`] if it is longer).
    pub(crate) fn partial_head(&self) -> &[u8] {
        &self.buf
    }

    /// What was sent so far of an unfinished (outbound) head, for
    /// [`scan_head`](super::inject::scan_head).
    pub(crate) fn sent_head(&self) -> SentHead<'_> {
        SentHead {
            kept: &self.buf,
            beyond: self.beyond.as_deref(),
            after_lf: self.scan == Scan::Lf,
            after_lf_cr: self.scan == Scan::LfCr,
        }
    }

    /// The header names worth keeping past the cap.
    fn wanted(&self) -> &'static [&'static [u8]] {
        match self.kind {
            HeadKind::Request => crate::tags::wanted(REQUEST_HEADERS),
            HeadKind::Response => RESPONSE_HEADERS,
        }
    }

    /// Forgets the head, ready for the next one.
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        self.scan = Scan::Leading;
        self.detector = Self::detector(self.kind);
        self.verified = false;
        self.started = None;
        self.beyond = None;
    }

    /// Forgets the head and frees the buffer.
    pub(crate) fn release(&mut self) {
        self.reset();
        self.buf = Vec::new();
    }

    /// Takes head bytes from the front of `data`.
    pub(crate) fn feed<'a>(&'a mut self, data: &'a [u8], now: SystemTime) -> HeadStep<'a> {
        let mut skipped = 0;
        let starting = self.scan == Scan::Leading;
        if starting {
            skipped = data
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(data.len());
            if skipped == data.len() {
                return HeadStep::Partial;
            }
            self.scan = Scan::Line;
            self.started = Some(now);
        }
        let data = data.get(skipped..).unwrap_or_default();
        if starting {
            // A head starting here (nothing of it buffered, nothing pushed
            // to the detector): if it is the last one of its kind this
            // thread parsed, where it ends is known (see `LastHead`).
            if let Some(end) = remembered_head(self.kind, data) {
                self.verified = true;
                return HeadStep::Complete {
                    head: &data[..end],
                    consumed: skipped + end,
                };
            }
        }
        if !self.verified {
            let verdict = match &mut self.detector {
                Detector::Request(d) => d.push(data),
                Detector::Response(d) => d.push(data),
            };
            match verdict {
                Detect::Yes => self.verified = true,
                Detect::No => return HeadStep::NotHttp,
                Detect::NeedMore => {}
            }
        }
        if self.beyond.is_some() {
            return match self.scan_beyond(data) {
                Some(end) => self.oversized(skipped + end),
                None => HeadStep::Partial,
            };
        }
        let room = MAX_HEAD_BYTES.saturating_sub(self.buf.len());
        let window = data.get(..room).unwrap_or(data);
        match self.find_end(window) {
            Some(end) => {
                let piece = window.get(..end).unwrap_or(window);
                let consumed = skipped + piece.len();
                if self.buf.is_empty() {
                    HeadStep::Complete {
                        head: piece,
                        consumed,
                    }
                } else {
                    self.buf.extend_from_slice(piece);
                    HeadStep::Complete {
                        head: &self.buf,
                        consumed,
                    }
                }
            }
            None if data.len() > window.len() => {
                // The cap: keep what is buffered, stream over the rest.
                self.buf.extend_from_slice(window);
                let mut beyond = Box::<Beyond>::default();
                if self.scan == Scan::Line {
                    let start = memchr::memrchr(b'\n', &self.buf).map_or(0, |i| i + 1);
                    beyond.push(self.buf.get(start..).unwrap_or_default());
                }
                self.beyond = Some(beyond);
                let rest = data.get(window.len()..).unwrap_or_default();
                match self.scan_beyond(rest) {
                    Some(end) => self.oversized(skipped + window.len() + end),
                    None => HeadStep::Partial,
                }
            }
            None => {
                self.buf.extend_from_slice(data);
                HeadStep::Partial
            }
        }
    }

    fn oversized(&self, consumed: usize) -> HeadStep<'_> {
        match &self.beyond {
            Some(beyond) => HeadStep::Oversized {
                kept: &self.buf,
                beyond,
                consumed,
            },
            None => HeadStep::Partial,
        }
    }

    /// Past the cap: advances the end-of-head search over `data`, keeping
    /// the header lines that matter; returns the offset just past the empty
    /// line if it is in there.
    fn scan_beyond(&mut self, data: &[u8]) -> Option<usize> {
        let wanted = self.wanted();
        let beyond = self.beyond.as_deref_mut()?;
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
            match self.scan {
                Scan::Leading | Scan::Line => match memchr::memchr(b'\n', rest) {
                    Some(i) => {
                        beyond.push(&rest[..i]);
                        beyond.end_line(wanted);
                        pos += i + 1;
                        self.scan = Scan::Lf;
                    }
                    None => {
                        beyond.push(rest);
                        return None;
                    }
                },
                Scan::Lf | Scan::LfCr => {
                    let b = rest[0];
                    pos += 1;
                    self.scan = match (self.scan, b) {
                        (_, b'\n') => return Some(pos),
                        (Scan::Lf, b'\r') => Scan::LfCr,
                        (scan, _) => {
                            if scan == Scan::LfCr {
                                beyond.push(b"\r");
                            }
                            beyond.push(&[b]);
                            Scan::Line
                        }
                    };
                }
            }
        }
        None
    }

    /// Advances the end-of-head search over `window`; returns the offset
    /// just past the empty line if it is in there.
    fn find_end(&mut self, window: &[u8]) -> Option<usize> {
        if self.scan == Scan::Line {
            // The usual case, the rest of the head in one piece: one SIMD
            // pass over its line feeds instead of a search per line. Otherwise
            // the line scan below keeps its state for the next piece.
            if let Some(end) = blank_line_end(window) {
                return Some(end);
            }
        }
        let mut pos = 0;
        while let Some(rest) = window.get(pos..).filter(|r| !r.is_empty()) {
            match self.scan {
                Scan::Leading | Scan::Line => {
                    let i = memchr::memchr(b'\n', rest)?;
                    pos += i + 1;
                    self.scan = Scan::Lf;
                }
                Scan::Lf | Scan::LfCr => {
                    let b = rest.first().copied().unwrap_or_default();
                    pos += 1;
                    self.scan = match (self.scan, b) {
                        (_, b'\n') => return Some(pos),
                        (Scan::Lf, b'\r') => Scan::LfCr,
                        _ => Scan::Line,
                    };
                }
            }
        }
        None
    }
}

/// Just past the first empty line (`\n\n` or `\n\r\n`) in `window`: one
/// pass over its line feeds (a search per terminator cost more).
fn blank_line_end(window: &[u8]) -> Option<usize> {
    LineFeeds::new(window).find_map(|i| match window.get(i + 1..) {
        Some([b'\n', ..]) => Some(i + 2),
        Some([b'\r', b'\n', ..]) => Some(i + 3),
        _ => None,
    })
}

/// A head `httparse` rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InvalidHead {
    Malformed,
    TooManyHeaders,
}

/// A `Content-Length` verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Length {
    #[default]
    Absent,
    Valid(u64),
    /// Not a number, or several different numbers.
    Invalid,
}

/// What a head's framing headers say about the body after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Framing {
    length: Length,
    /// A `Transfer-Encoding` header is present.
    encoded: bool,
    /// The last transfer coding is `chunked`.
    chunked: bool,
}

impl Framing {
    /// Records a framing header; false if `name` is not one.
    pub(crate) fn header(&mut self, name: &[u8], value: &[u8]) -> bool {
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_length(value);
            true
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding(value);
            true
        } else {
            false
        }
    }

    /// Records a `Content-Length` value (trimmed).
    pub(crate) fn content_length(&mut self, value: &[u8]) {
        self.length(value, false);
    }

    /// Records the value (trimmed) of a `Content-Length` line that httparse
    /// has not read: the framer's (`capture::frame`). A value for which
    /// httparse skips its line (see [`is_header_value`]) is ignored, as the
    /// parser never sees it.
    pub(crate) fn content_length_line(&mut self, value: &[u8]) {
        self.length(value, true);
    }

    #[inline(always)]
    fn length(&mut self, value: &[u8], unread: bool) {
        // The usual value, one plain number, without splitting.
        let one = value.len() <= 19 && !value.is_empty() && value.iter().all(u8::is_ascii_digit);
        if one && self.length == Length::Absent {
            let n = value
                .iter()
                .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            self.length = Length::Valid(n);
            return;
        }
        if unread && !one && !is_header_value(value) {
            return;
        }
        for part in value.split(|&b| b == b',') {
            self.length = match (self.length, parse_decimal(part.trim_ascii())) {
                (Length::Absent, Some(n)) => Length::Valid(n),
                (Length::Valid(m), Some(n)) if m == n => Length::Valid(n),
                _ => Length::Invalid,
            };
        }
    }

    /// Records a `Transfer-Encoding` value (trimmed).
    pub(crate) fn transfer_encoding(&mut self, value: &[u8]) {
        self.encoding(value, false);
    }

    /// As [`Framing::content_length_line`], for `Transfer-Encoding`.
    pub(crate) fn transfer_encoding_line(&mut self, value: &[u8]) {
        self.encoding(value, true);
    }

    #[inline(always)]
    fn encoding(&mut self, value: &[u8], unread: bool) {
        // The usual value, `chunked` alone, without splitting.
        if value.eq_ignore_ascii_case(b"chunked") {
            (self.encoded, self.chunked) = (true, true);
            return;
        }
        if unread && !is_header_value(value) {
            return;
        }
        self.encoded = true;
        let last = value
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .rfind(|c| !c.is_empty());
        self.chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
    }

    /// The body of a request (RFC 9112 §6.3): chunked, a length, or none.
    pub(crate) fn request_body(&self) -> Result<Option<Body>, FramingError> {
        if self.encoded {
            return if self.chunked {
                Ok(Some(Body::Chunked(Chunked::new())))
            } else {
                Err(FramingError)
            };
        }
        match self.length {
            Length::Absent | Length::Valid(0) => Ok(None),
            Length::Valid(n) => Ok(Some(Body::Length(n))),
            Length::Invalid => Err(FramingError),
        }
    }

    /// The body of a response to `method` with `status` (RFC 9112 §6.3).
    pub(crate) fn response_body(
        &self,
        method: &str,
        status: u16,
    ) -> Result<Option<Body>, FramingError> {
        if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(None);
        }
        if self.encoded {
            let body = if self.chunked {
                Body::Chunked(Chunked::new())
            } else {
                Body::UntilClose
            };
            return Ok(Some(body));
        }
        match self.length {
            Length::Absent => Ok(Some(Body::UntilClose)),
            Length::Valid(0) => Ok(None),
            Length::Valid(n) => Ok(Some(Body::Length(n))),
            Length::Invalid => Err(FramingError),
        }
    }
}

/// Whether httparse takes `value`, the value of one line, as a header
/// value: no control byte but a tab. The parser has httparse skip a header
/// line with any other (see `request_config`, `response_config`). (The
/// values httparse gives may hold the CR LF of a folded line: they are not
/// checked again.)
#[inline]
pub(crate) fn is_header_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// The methods of RFC 9110 and PATCH, kept without a copy.
const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A request method: a constant for a standard one, else a (capped) copy.
pub(crate) fn method_text(method: &[u8]) -> Text {
    match STANDARD_METHODS.iter().find(|m| m.as_bytes() == method) {
        Some(m) => Text::Static(m),
        None => Text::Owned(capped_string(method)),
    }
}

/// True for the methods of RFC 9110 and PATCH.
pub(crate) fn is_standard_method(method: &str) -> bool {
    STANDARD_METHODS.contains(&method)
}

/// What a request head tells spans and framing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub method: Text,
    pub target: Text,
    pub version: Option<u8>,
    pub host: Option<Text>,
    pub user_agent: Option<Text>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// B3 and baggage headers, when there are any.
    pub carriers: Option<Box<crate::propagators::InboundCarriers>>,
    pub aws_sigv4: bool,
    /// An `Upgrade` header: the connection may stop being HTTP.
    pub upgrade: bool,
    pub framing: Framing,
}

fn set_first(slot: &mut Option<String>, value: &[u8]) {
    if slot.is_none() {
        *slot = Some(capped_string(value));
    }
}

fn set_first_text(slot: &mut Option<Text>, value: &[u8]) {
    if slot.is_none() {
        *slot = Some(capped_text(value));
    }
}

impl RequestHead {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        if self.framing.header(name, value) {
            return;
        }
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if is(b"host") {
            set_first_text(&mut self.host, value);
        } else if is(b"user-agent") {
            set_first_text(&mut self.user_agent, value);
        } else if is(b"traceparent") {
            set_first(&mut self.traceparent, value);
        } else if is(b"tracestate") {
            set_first(&mut self.tracestate, value);
        } else if is(b"x-amz-content-sha256") {
            self.aws_sigv4 = true;
        } else if is(b"authorization") {
            self.aws_sigv4 |= value.starts_with(b"AWS4-HMAC-SHA256");
        } else if is(b"upgrade") {
            self.upgrade = true;
        } else {
            crate::propagators::InboundCarriers::header(&mut self.carriers, name, value);
        }
    }

    /// The exchange this request starts.
    pub(crate) fn into_exchange(self, seq: u64, start: SystemTime) -> HttpExchange {
        HttpExchange {
            method: self.method,
            target: self.target,
            version: self.version,
            host: self.host,
            user_agent: self.user_agent,
            traceparent: self.traceparent,
            tracestate: self.tracestate,
            carriers: self.carriers,
            aws_sigv4: self.aws_sigv4,
            ..HttpExchange::empty(seq, start)
        }
    }
}

/// What a response head tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
}

fn request_config() -> ParserConfig {
    let mut config = ParserConfig::default();
    config
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .ignore_invalid_headers_in_requests(true);
    config
}

fn response_config() -> ParserConfig {
    let mut config = ParserConfig::default();
    config
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .ignore_invalid_headers_in_responses(true);
    config
}

/// Runs `parse` with room for 64 headers on the stack, then, if the head has
/// more, again with room for as many as it can hold.
fn with_headers<T>(
    head: &[u8],
    parse: impl for<'b> Fn(&'b [u8], &mut [Header<'b>]) -> Result<T, InvalidHead>,
) -> Result<T, InvalidHead> {
    let mut stack = [EMPTY_HEADER; STACK_HEADERS];
    match parse(head, &mut stack) {
        Err(InvalidHead::TooManyHeaders) => {
            // Every header line takes at least 3 bytes ("a:\n").
            let mut heap = vec![EMPTY_HEADER; head.len() / 3 + 1];
            parse(head, &mut heap)
        }
        other => other,
    }
}

fn check(result: httparse::Result<usize>) -> Result<(), InvalidHead> {
    match result {
        Ok(Status::Complete(_)) => Ok(()),
        Err(httparse::Error::TooManyHeaders) => Err(InvalidHead::TooManyHeaders),
        Ok(Status::Partial) | Err(_) => Err(InvalidHead::Malformed),
    }
}

/// Header names a request's span or framing uses (lower case); the
/// execution tag headers are added to them (`crate::tags::wanted`).
pub(crate) const REQUEST_HEADERS: &[&[u8]] = &[
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"user-agent",
    b"traceparent",
    b"tracestate",
    b"x-amz-content-sha256",
    b"authorization",
    b"upgrade",
    b"b3",
    b"x-b3-traceid",
    b"x-b3-spanid",
    b"x-b3-sampled",
    b"x-b3-flags",
    b"baggage",
];

/// Header names a response's framing uses (lower case).
const RESPONSE_HEADERS: &[&[u8]] = &[b"content-length", b"transfer-encoding"];

/// The first bytes of [`REQUEST_HEADERS`] and of [`RESPONSE_HEADERS`] (see
/// [`initials`]).
pub(crate) const REQUEST_INITIALS: u64 = initials(REQUEST_HEADERS);
const RESPONSE_INITIALS: u64 = initials(RESPONSE_HEADERS);

/// The first bytes of `names` as a set of their six low bits (bit `b & 63`
/// for byte `b`): a header line whose first byte is not in it is none of
/// them, known by one test instead of a comparison with each name. Bytes
/// that share their low bits (`p` and `0`) share a bit: the set may let
/// through a line it could have refused, never the other way.
pub(crate) const fn initials(names: &[&[u8]]) -> u64 {
    let mut set = 0u64;
    let mut i = 0;
    while i < names.len() {
        if let Some(&b) = names[i].first() {
            set |= 1 << (b & 63);
        }
        i += 1;
    }
    set
}

/// Whether a name starting with `first` (lower case) may be one of the
/// names whose [`initials`] are `set`.
#[inline(always)]
fn may_be_wanted(set: u64, first: u8) -> bool {
    (set >> (first & 63)) & 1 != 0
}

/// The quick path's scan of the header lines of a complete head, from
/// `start` (just past the start line): calls `f(name, value)` for each line
/// whose name is one of `wanted`, in order, with the value trimmed; every
/// other line is skipped unread, as httparse (configured to ignore invalid
/// header lines) would skip or merely collect it. `None` whenever a line
/// that matters is out of the ordinary (a folded line, blanks before the
/// colon where `blanks_before_colon` is false, a control byte in a wanted
/// value) or the head has no empty line: httparse then decides.
fn quick_headers(
    head: &[u8],
    start: usize,
    wanted: &[&'static [u8]],
    initials: u64,
    blanks_before_colon: bool,
    mut f: impl FnMut(&'static [u8], &[u8]),
) -> Option<()> {
    let lines = head.get(start..)?;
    let mut line_start = 0;
    for lf in LineFeeds::new(lines) {
        let line = &lines[line_start..lf];
        line_start = lf + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let first = match line.first() {
            None => return Some(()),
            Some(b' ' | b'\t') => return None,
            Some(&b) => b.to_ascii_lowercase(),
        };
        if !may_be_wanted(initials, first) {
            continue;
        }
        let Some(name) = wanted
            .iter()
            .copied()
            .find(|name| name.first() == Some(&first) && starts_with_name(line, name))
        else {
            continue;
        };
        let rest = &line[name.len()..];
        let colon = match rest.iter().position(|&b| b != b' ' && b != b'\t') {
            Some(0) if rest[0] != b':' => continue, // a longer name: not ours
            Some(i) if i > 0 && !blanks_before_colon => return None,
            Some(i) if rest[i] == b':' => i,
            _ => return None,
        };
        let value = &rest[colon + 1..];
        if !is_header_value(value) {
            return None;
        }
        f(name, value.trim_ascii());
    }
    None
}

/// True when `line` starts with `name` (lower case) in any case. A name
/// of eight bytes or more is first compared as one word with the case bit
/// set (which leaves digits and `-` alone; fixed size, so no copy loop),
/// then confirmed byte by byte, only the line's bytes lowered (the name's
/// are): the case bit would also turn a CR into `-`.
fn starts_with_name(line: &[u8], name: &[u8]) -> bool {
    const CASE: u64 = 0x2020_2020_2020_2020;
    let Some(head) = line.get(..name.len()) else {
        return false;
    };
    if let (Some(h), Some(n)) = (head.first_chunk::<8>(), name.first_chunk::<8>()) {
        if u64::from_le_bytes(*h) | CASE != u64::from_le_bytes(*n) | CASE {
            return false;
        }
    }
    head.iter()
        .zip(name)
        .all(|(h, n)| h.to_ascii_lowercase() == *n)
}

/// The start line of a head and where the header lines begin.
fn start_line(head: &[u8]) -> Option<(&[u8], usize)> {
    let end = memchr::memchr(b'\n', head)?;
    let line = &head[..end];
    Some((line.strip_suffix(b"\r").unwrap_or(line), end + 1))
}

/// A request head whose request line has the usual shape (`METHOD SP
/// target SP HTTP/1.x`, a token method, a target of visible ASCII), read
/// without httparse; `None` for anything else.
pub(crate) fn quick_request(head: &[u8]) -> Option<RequestHead> {
    let (line, start) = start_line(head)?;
    let sp1 = memchr::memchr(b' ', line)?;
    let sp2 = sp1 + 1 + memchr::memchr(b' ', &line[sp1 + 1..])?;
    let (method, target) = (&line[..sp1], &line[sp1 + 1..sp2]);
    let version = match &line[sp2 + 1..] {
        b"HTTP/1.0" => 0,
        b"HTTP/1.1" => 1,
        _ => return None,
    };
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if method.is_empty()
        || !method.iter().all(token)
        || target.is_empty()
        || !target.iter().all(|&b| (0x21..0x7f).contains(&b))
    {
        return None;
    }
    let mut out = RequestHead {
        method: method_text(method),
        target: capped_text(target),
        version: Some(version),
        ..RequestHead::default()
    };
    let wanted = crate::tags::wanted(REQUEST_HEADERS);
    let initials = crate::tags::wanted_initials(REQUEST_INITIALS);
    quick_headers(head, start, wanted, initials, false, |name, value| {
        out.header(name, value)
    })?;
    Some(out)
}

/// A response head whose status line has the usual shape (`HTTP/1.x NNN`
/// and a printable reason), read without httparse; `None` for anything
/// else.
pub(crate) fn quick_response(head: &[u8]) -> Option<ResponseHead> {
    let (line, start) = start_line(head)?;
    if !matches!(line.get(..9)?, b"HTTP/1.0 " | b"HTTP/1.1 ") {
        return None;
    }
    let code = line.get(9..12)?;
    let reason = &line[12..];
    if !code.iter().all(u8::is_ascii_digit)
        || !(reason.is_empty() || reason[0] == b' ')
        || !reason
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return None;
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    let mut framing = Framing::default();
    let wanted = RESPONSE_HEADERS;
    quick_headers(
        head,
        start,
        wanted,
        RESPONSE_INITIALS,
        true,
        |name, value| {
            framing.header(name, value);
        },
    )?;
    Some(ResponseHead { status, framing })
}

/// Parses a complete request head: the quick path, or httparse.
pub(crate) fn parse_request(head: &[u8]) -> Result<RequestHead, InvalidHead> {
    LAST_REQUEST.with_memo(
        head,
        |h| match quick_request(h) {
            Some(out) => Ok(out),
            None => parse_request_httparse(h),
        },
        // A head with a `traceparent` is its request's alone: not kept.
        |parsed| parsed.traceparent.is_none(),
        |h| whole_head(HeadKind::Request, h),
    )
}

/// The last head of each kind parsed on a thread (the capture thread, which
/// parses every captured connection's), whole, and what it was parsed to: a
/// client that sends the same request again, a server that answers alike
/// (within a second, by its `Date`), are parsed once. A parse depends on
/// the head's bytes only, and the memo serves only bytes equal to the kept
/// ones. Heads over [`MEMO_HEAD`] bytes are not kept.
///
/// `whole`: the kept bytes are a head as [`HeadReader::feed`] finds one:
/// they start with no blank line, the detector takes them as HTTP by
/// themselves, they are within [`MAX_HEAD_BYTES`], and their first empty
/// line is their last. Bytes that start with such a head then end a head
/// there, whatever follows (the detector decides on a prefix, and the end
/// is the first empty line): the reader takes them without pushing them to
/// the detector or looking for their end ([`remembered_head`]).
struct LastHead<T>(std::cell::RefCell<Kept<T>>);

struct Kept<T> {
    head: Vec<u8>,
    parsed: Option<T>,
    whole: bool,
}

impl<T> Kept<T> {
    const NONE: Kept<T> = Kept {
        head: Vec::new(),
        parsed: None,
        whole: false,
    };
}

thread_local! {
    static LAST_REQUEST: LastHead<RequestHead> =
        const { LastHead(std::cell::RefCell::new(Kept::NONE)) };
    static LAST_RESPONSE: LastHead<ResponseHead> =
        const { LastHead(std::cell::RefCell::new(Kept::NONE)) };
}

/// Where the head that starts `data` ends, if it is the whole head kept by
/// this thread's [`LastHead`] of `kind`.
fn remembered_head(kind: HeadKind, data: &[u8]) -> Option<usize> {
    fn check<T: 'static>(
        memo: &'static std::thread::LocalKey<LastHead<T>>,
        data: &[u8],
    ) -> Option<usize> {
        memo.try_with(|m| {
            let m = m.0.try_borrow().ok()?;
            (m.whole && m.parsed.is_some() && data.starts_with(&m.head)).then_some(m.head.len())
        })
        .ok()
        .flatten()
    }
    match kind {
        HeadKind::Request => check(&LAST_REQUEST, data),
        HeadKind::Response => check(&LAST_RESPONSE, data),
    }
}

/// Whether `head` is a head as [`HeadReader::feed`] finds one (see
/// [`LastHead`]).
fn whole_head(kind: HeadKind, head: &[u8]) -> bool {
    let detected = match kind {
        HeadKind::Request => RequestDetector::new().push(head),
        HeadKind::Response => ResponseDetector::new().push(head),
    };
    !matches!(head.first(), None | Some(b'\r' | b'\n'))
        && head.len() <= MAX_HEAD_BYTES
        && detected == Detect::Yes
        && blank_line_end(head) == Some(head.len())
}

/// Longest head kept by [`LastHead`].
const MEMO_HEAD: usize = 2 << 10;

trait WithMemo<T> {
    fn with_memo(
        &'static self,
        head: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<T, InvalidHead>,
        keep: impl FnOnce(&T) -> bool,
        whole: impl FnOnce(&[u8]) -> bool,
    ) -> Result<T, InvalidHead>;
}

impl<T: Clone + 'static> WithMemo<T> for std::thread::LocalKey<LastHead<T>> {
    fn with_memo(
        &'static self,
        head: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<T, InvalidHead>,
        keep: impl FnOnce(&T) -> bool,
        whole: impl FnOnce(&[u8]) -> bool,
    ) -> Result<T, InvalidHead> {
        if head.len() > MEMO_HEAD {
            return parse(head);
        }
        let kept = self
            .try_with(|m| {
                let m = m.0.try_borrow().ok()?;
                (m.head.as_slice() == head)
                    .then(|| m.parsed.clone())
                    .flatten()
            })
            .ok()
            .flatten();
        if let Some(parsed) = kept {
            return Ok(parsed);
        }
        let parsed = parse(head)?;
        let _ = self.try_with(|m| {
            if let Ok(mut m) = m.0.try_borrow_mut() {
                m.head.clear();
                m.parsed = None;
                m.whole = false;
                if keep(&parsed) {
                    m.head.extend_from_slice(head);
                    m.parsed = Some(parsed.clone());
                    m.whole = whole(head);
                }
            }
        });
        Ok(parsed)
    }
}

/// Parses a complete request head with httparse.
pub(crate) fn parse_request_httparse(head: &[u8]) -> Result<RequestHead, InvalidHead> {
    with_headers(head, |head, headers| {
        let mut req = httparse::Request::new(headers);
        check(request_config().parse_request(&mut req, head))?;
        let mut out = RequestHead {
            method: method_text(req.method.unwrap_or_default().as_bytes()),
            target: capped_text(req.path.unwrap_or_default().as_bytes()),
            version: req.version,
            ..RequestHead::default()
        };
        for h in req.headers.iter() {
            out.header(h.name.as_bytes(), h.value);
        }
        Ok(out)
    })
}

/// Parses a complete response head: the quick path, or httparse.
pub(crate) fn parse_response(head: &[u8]) -> Result<ResponseHead, InvalidHead> {
    LAST_RESPONSE.with_memo(
        head,
        |h| match quick_response(h) {
            Some(out) => Ok(out),
            None => parse_response_httparse(h),
        },
        |_| true,
        |h| whole_head(HeadKind::Response, h),
    )
}

/// Parses a complete response head with httparse.
pub(crate) fn parse_response_httparse(head: &[u8]) -> Result<ResponseHead, InvalidHead> {
    with_headers(head, |head, headers| {
        let mut resp = httparse::Response::new(headers);
        check(response_config().parse_response(&mut resp, head))?;
        let mut framing = Framing::default();
        for h in resp.headers.iter() {
            framing.header(h.name.as_bytes(), h.value);
        }
        Ok(ResponseHead {
            status: resp.code.unwrap_or_default(),
            framing,
        })
    })
}

/// Complete lines of `head` (those ending in LF), without their line ends.
fn complete_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split_inclusive(|&b| b == b'\n')
        .filter_map(|line| line.strip_suffix(b"\n"))
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// Whatever can be read from a request head that cannot be parsed (cut at
/// the cap, or malformed): the request line's parts and the interesting
/// headers among its complete lines.
pub(crate) fn salvage_request(head: &[u8]) -> RequestHead {
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
    let mut parts = first_line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let method = parts.next().filter(|m| {
        m.iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
    });
    let target = parts.next();
    let version = match parts.next() {
        Some(b"HTTP/1.0") => Some(0),
        Some(b"HTTP/1.1") => Some(1),
        _ => None,
    };
    let mut out = RequestHead {
        method: method_text(method.unwrap_or_default()),
        target: capped_text(target.unwrap_or_default()),
        version,
        ..RequestHead::default()
    };
    for line in complete_lines(head).skip(1) {
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let (name, value) = line.split_at(colon);
            out.header(
                name.trim_ascii(),
                value.get(1..).unwrap_or_default().trim_ascii(),
            );
        }
    }
    out
}

/// A request head longer than the cap: what its kept complete lines say,
/// and the lines that matter read past the cap.
pub(crate) fn oversized_request(kept: &[u8], beyond: &Beyond) -> RequestHead {
    let mut out = salvage_request(kept);
    for (name, value) in beyond.lines() {
        out.header(name, value);
    }
    if beyond.framing_lost {
        out.framing.length = Length::Invalid;
    }
    out
}

/// A response head longer than the cap, if its status line is readable.
pub(crate) fn oversized_response(kept: &[u8], beyond: &Beyond) -> Option<ResponseHead> {
    let status = salvage_status(kept)?;
    let mut framing = Framing::default();
    for line in complete_lines(kept).skip(1) {
        if let Some(colon) = memchr::memchr(b':', line) {
            framing.header(line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        }
    }
    for (name, value) in beyond.lines() {
        framing.header(name, value);
    }
    if beyond.framing_lost {
        framing.length = Length::Invalid;
    }
    Some(ResponseHead { status, framing })
}

/// The status code of a response head that cannot be parsed, if its status
/// line is readable.
pub(crate) fn salvage_status(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?.get(1..)?.trim_ascii_start();
    let digits = rest.get(..3)?;
    let code = parse_decimal(digits)?;
    let next = rest.get(3).copied();
    (matches!(next, None | Some(b' ' | b'\r' | b'\n')) && (100..1000).contains(&code))
        .then_some(code as u16)
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;

//! Recognising HTTP/1.x on the first bytes of a message.
//!
//! A connection's first bytes decide whether it is traced as HTTP at all, so
//! the answer must come early and cheaply: a known method followed by a space
//! (`GET `) is HTTP after at most 8 bytes; a first byte that cannot start a
//! method (lower case, a digit, binary, TLS's `0x16`) is not HTTP after one.
//! Other upper-case tokens (WebDAV's `PROPFIND`, …) are accepted only once
//! the whole request line has the shape `TOKEN SP target SP HTTP/1.x CRLF`,
//! which also rejects HTTP/2's `PRI * HTTP/2.0` preface and line protocols
//! such as Redis inline commands.
//!
//! The detectors are resumable state machines: bytes can arrive one call at
//! a time and each byte is looked at once.

use super::MAX_HEAD_BYTES;

/// A recogniser's verdict on a prefix of a byte stream: does it start the
/// recogniser's protocol (HTTP, Redis, AMQP…)?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detect {
    /// The prefix starts the protocol.
    Yes,
    /// The prefix cannot start the protocol.
    No,
    /// Not decided yet: every byte so far fits; more are needed.
    NeedMore,
}

impl Detect {
    /// The verdict for a protocol whose streams start with the fixed bytes
    /// `start` (AMQP's protocol header, NATS's `INFO {`).
    pub fn literal(prefix: &[u8], start: &[u8]) -> Detect {
        let n = prefix.len().min(start.len());
        if prefix[..n] != start[..n] {
            Detect::No
        } else if n < start.len() {
            Detect::NeedMore
        } else {
            Detect::Yes
        }
    }
}

/// Decides whether `prefix` starts an HTTP/1.x request.
///
/// ```
/// use lumigo_core::http::{detect_request, Detect};
/// assert_eq!(detect_request(b"G"), Detect::NeedMore);
/// assert_eq!(detect_request(b"GET "), Detect::Yes);
/// assert_eq!(detect_request(b"PRI * HTTP/2.0\r\n"), Detect::No);
/// assert_eq!(detect_request(&[0x16, 0x03, 0x01]), Detect::No);
/// ```
pub fn detect_request(prefix: &[u8]) -> Detect {
    RequestDetector::new().push(prefix)
}

/// Methods recognised on their name alone (RFC 9110 plus PATCH).
const KNOWN_METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// Longest method token accepted (`VERSION-CONTROL` is 15).
pub(crate) const MAX_METHOD_LEN: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Method,
    Target,
    /// Matching `HTTP/1.`; the field is how many of its bytes matched.
    Version(u8),
    Minor,
    Cr,
    Lf,
    Decided(Detect),
}

/// Resumable [`detect_request`].
#[derive(Clone, Debug)]
pub(crate) struct RequestDetector {
    step: Step,
    method: [u8; MAX_METHOD_LEN],
    method_len: usize,
    /// Bytes of the request line looked at so far.
    line_len: usize,
}

impl RequestDetector {
    pub(crate) fn new() -> RequestDetector {
        RequestDetector {
            step: Step::Method,
            method: [0; MAX_METHOD_LEN],
            method_len: 0,
            line_len: 0,
        }
    }

    /// Looks at the next bytes of the stream; once decided, the verdict
    /// stays and further bytes are not looked at.
    pub(crate) fn push(&mut self, data: &[u8]) -> Detect {
        for &b in data {
            if let Step::Decided(_) = self.step {
                break;
            }
            self.line_len += 1;
            self.step = self.next(b);
        }
        match self.step {
            Step::Decided(d) => d,
            _ => Detect::NeedMore,
        }
    }

    fn next(&mut self, b: u8) -> Step {
        use Detect::{No, Yes};
        if self.line_len > MAX_HEAD_BYTES {
            return Step::Decided(No);
        }
        match self.step {
            Step::Decided(d) => Step::Decided(d),
            Step::Method => {
                let first = self.method_len == 0;
                if b == b' ' && !first {
                    let method = self.method.get(..self.method_len).unwrap_or_default();
                    if KNOWN_METHODS.contains(&method) {
                        Step::Decided(Yes)
                    } else {
                        Step::Target
                    }
                } else if b.is_ascii_uppercase() || (!first && (b == b'-' || b == b'_')) {
                    match self.method.get_mut(self.method_len) {
                        Some(slot) => {
                            *slot = b;
                            self.method_len += 1;
                            Step::Method
                        }
                        None => Step::Decided(No),
                    }
                } else {
                    Step::Decided(No)
                }
            }
            Step::Target => match b {
                b' ' if self.target_started() => Step::Version(0),
                0x21..=0x7e | 0x80..=0xff => Step::Target,
                _ => Step::Decided(No),
            },
            Step::Version(n) => match b"HTTP/1.".get(usize::from(n)) {
                Some(&want) if want == b => {
                    if usize::from(n) + 1 == b"HTTP/1.".len() {
                        Step::Minor
                    } else {
                        Step::Version(n + 1)
                    }
                }
                _ => Step::Decided(No),
            },
            Step::Minor => match b {
                b'0' | b'1' => Step::Cr,
                _ => Step::Decided(No),
            },
            Step::Cr => match b {
                b'\r' => Step::Lf,
                b'\n' => Step::Decided(Yes),
                _ => Step::Decided(No),
            },
            Step::Lf => match b {
                b'\n' => Step::Decided(Yes),
                _ => Step::Decided(No),
            },
        }
    }

    /// Whether at least one target byte follows the method and its space.
    fn target_started(&self) -> bool {
        self.line_len > self.method_len + 2
    }
}

/// Resumable check that a response starts with `HTTP/1.` and a digit.
#[derive(Clone, Debug)]
pub(crate) struct ResponseDetector {
    matched: usize,
    verdict: Detect,
}

impl ResponseDetector {
    const PREFIX: &'static [u8] = b"HTTP/1.";

    pub(crate) fn new() -> ResponseDetector {
        ResponseDetector {
            matched: 0,
            verdict: Detect::NeedMore,
        }
    }

    /// As [`RequestDetector::push`].
    pub(crate) fn push(&mut self, data: &[u8]) -> Detect {
        for &b in data {
            if self.verdict != Detect::NeedMore {
                break;
            }
            let ok = match Self::PREFIX.get(self.matched) {
                Some(&want) => want == b,
                None => b.is_ascii_digit(),
            };
            self.matched += 1;
            if !ok {
                self.verdict = Detect::No;
            } else if self.matched > Self::PREFIX.len() {
                self.verdict = Detect::Yes;
            }
        }
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Detect::{NeedMore, No, Yes};

    const REQUEST_CASES: &[(&[u8], Detect)] = &[
        (b"", NeedMore),
        (b"G", NeedMore),
        (b"GE", NeedMore),
        (b"GET", NeedMore),
        (b"GET ", Yes),
        (b"GET / HTTP/1.1\r\n", Yes),
        (b"POST ", Yes),
        (b"PUT ", Yes),
        (b"DELETE ", Yes),
        (b"HEAD ", Yes),
        (b"OPTIONS * HTTP/1.1\r\n", Yes),
        (b"PATCH ", Yes),
        (b"CONNECT example.com:443 HTTP/1.1\r\n", Yes),
        (b"TRACE ", Yes),
        (b"X", NeedMore),
        (b"x", No),
        (b"get / HTTP/1.1\r\n", No),
        (b"GET\r\n", No),
        (b" GET", No),
        (b"\x16\x03\x01\x02\x00", No),
        (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", No),
        (b"*1\r\n$4\r\nPING\r\n", No),
        (b"PING\r\n", No),
        (b"SSH-2.0-OpenSSH_9.6\r\n", No),
        (b"PRI", NeedMore),
        (b"PRI * HTTP/2", No),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", No),
        (b"PROPFIND", NeedMore),
        (b"PROPFIND /dav", NeedMore),
        (b"PROPFIND /dav HTTP/1.", NeedMore),
        (b"PROPFIND /dav HTTP/1.1", NeedMore),
        (b"PROPFIND /dav HTTP/1.1\r", NeedMore),
        (b"PROPFIND /dav HTTP/1.1\r\n", Yes),
        (b"VERSION-CONTROL /x HTTP/1.0\n", Yes),
        (b"PROPFIND  /dav HTTP/1.1\r\n", No),
        (b"PROPFIND /dav HTTP/1.2\r\n", No),
        (b"PROPFIND /dav\tHTTP/1.1\r\n", No),
        (b"PROPFIND /dav HTTP/1.1\rX", No),
        (b"EHLO mail.example.com\r\n", No),
        (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", No),
        (b"-GET ", No),
    ];

    #[test]
    fn request_prefixes() {
        for (input, want) in REQUEST_CASES {
            assert_eq!(
                detect_request(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn request_detection_is_resumable_byte_by_byte() {
        for (input, want) in REQUEST_CASES {
            let mut d = RequestDetector::new();
            let mut got = NeedMore;
            for b in input.chunks(1) {
                got = d.push(b);
            }
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn verdicts_stick() {
        let mut d = RequestDetector::new();
        assert_eq!(d.push(b"GET "), Yes);
        assert_eq!(d.push(b"\x00garbage"), Yes);
        let mut d = RequestDetector::new();
        assert_eq!(d.push(b"get"), No);
        assert_eq!(d.push(b"GET "), No);
        let mut d = ResponseDetector::new();
        assert_eq!(d.push(b"HTTP/1.1"), Yes);
        assert_eq!(d.push(b"x"), Yes);
    }

    #[test]
    fn an_endless_request_line_is_not_http() {
        let mut d = RequestDetector::new();
        assert_eq!(d.push(b"PROPFIND /"), NeedMore);
        let long = vec![b'a'; MAX_HEAD_BYTES];
        assert_eq!(d.push(&long), No);
    }

    #[test]
    fn response_prefixes() {
        let cases: &[(&[u8], Detect)] = &[
            (b"", NeedMore),
            (b"H", NeedMore),
            (b"HTTP/1.", NeedMore),
            (b"HTTP/1.1", Yes),
            (b"HTTP/1.0 200 OK\r\n", Yes),
            (b"HTTP/2 200", No),
            (b"http/1.1", No),
            (b"\x16\x03\x03", No),
            (b"HTTP/1.x", No),
            (b"<html>", No),
        ];
        for (input, want) in cases {
            assert_eq!(ResponseDetector::new().push(input), *want, "{input:?}");
            let mut d = ResponseDetector::new();
            let mut got = NeedMore;
            for b in input.chunks(1) {
                got = d.push(b);
            }
            assert_eq!(got, *want, "byte by byte {input:?}");
        }
    }
}

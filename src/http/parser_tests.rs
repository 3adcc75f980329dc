//! Tests of head reading and parsing: every input at every split, framing
//! tables, malformed and oversized heads.

use super::*;

const T: SystemTime = SystemTime::UNIX_EPOCH;

/// Feeds `input` in pieces of `step` bytes; returns the complete head (as
/// owned bytes) and the bytes left after it, or the step that ended it.
fn read(kind: HeadKind, input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut reader = HeadReader::new(kind);
    let mut pos = 0;
    while pos < input.len() {
        let end = (pos + step).min(input.len());
        let piece = &input[pos..end];
        match reader.feed(piece, T) {
            HeadStep::Partial => pos = end,
            HeadStep::Complete { head, consumed } => {
                return Ok((head.to_vec(), input[pos + consumed..].to_vec()));
            }
            HeadStep::Oversized { kept, consumed, .. } => {
                assert_eq!(kept.len(), MAX_HEAD_BYTES);
                return Ok((kept.to_vec(), input[pos + consumed..].to_vec()));
            }
            HeadStep::NotHttp => return Err("not http".into()),
        }
        assert!(reader.buffered() <= MAX_HEAD_BYTES);
    }
    Err("partial".into())
}

#[test]
fn heads_end_at_the_empty_line_whatever_the_split() {
    /// Input, and the head and the bytes after it (or how reading ended).
    type Row = (
        HeadKind,
        &'static [u8],
        Result<(&'static [u8], &'static [u8]), &'static str>,
    );
    let cases: &[Row] = &[
        (
            HeadKind::Request,
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY",
            Ok((b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"BODY")),
        ),
        (
            HeadKind::Request,
            b"\r\n\r\nGET / HTTP/1.1\n\nX",
            Ok((b"GET / HTTP/1.1\n\n", b"X")),
        ),
        (
            HeadKind::Request,
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            Err("partial"),
        ),
        (
            HeadKind::Request,
            b"GET / HTTP/1.1\r\n\rX\r\n\r\n",
            Ok((b"GET / HTTP/1.1\r\n\rX\r\n\r\n", b"")),
        ),
        (
            HeadKind::Request,
            b"GET / HTTP/1.1\nA: b\n\r\nZ\r\n\r\n",
            Ok((b"GET / HTTP/1.1\nA: b\n\r\n", b"Z\r\n\r\n")),
        ),
        (
            HeadKind::Request,
            b"GET / HTTP/1.1\r\nA: b\r\n\nZ\r\n\r\n",
            Ok((b"GET / HTTP/1.1\r\nA: b\r\n\n", b"Z\r\n\r\n")),
        ),
        (HeadKind::Request, b"\r\nhello\r\n\r\n", Err("not http")),
        (
            HeadKind::Response,
            b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1",
            Ok((b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1")),
        ),
        (HeadKind::Response, b"SSH-2.0\r\n", Err("not http")),
        (HeadKind::Response, b"\r\n", Err("partial")),
    ];
    for (kind, input, want) in cases {
        for step in 1..=input.len() {
            let got = read(*kind, input, step);
            let want = want
                .map(|(h, r)| (h.to_vec(), r.to_vec()))
                .map_err(str::to_owned);
            assert_eq!(
                got,
                want,
                "{:?} in pieces of {step}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

/// What a reader makes of `input` fed in two pieces split at `split`: the
/// head's kept bytes, what was kept past the cap, the bytes after the head.
fn read_split(kind: HeadKind, input: &[u8], split: usize) -> (Vec<u8>, Option<Beyond>, Vec<u8>) {
    let mut reader = HeadReader::new(kind);
    let (a, b) = input.split_at(split);
    let mut base = 0;
    for piece in [a, b] {
        match reader.feed(piece, T) {
            HeadStep::Partial => {}
            HeadStep::Complete { head, consumed } => {
                return (head.to_vec(), None, input[base + consumed..].to_vec())
            }
            HeadStep::Oversized {
                kept,
                beyond,
                consumed,
            } => {
                assert_eq!(kept.len(), MAX_HEAD_BYTES, "split {split}");
                return (
                    kept.to_vec(),
                    Some(beyond.clone()),
                    input[base + consumed..].to_vec(),
                );
            }
            HeadStep::NotHttp => panic!("not http at split {split}"),
        }
        assert!(reader.buffered() <= MAX_HEAD_BYTES);
        base += piece.len();
    }
    panic!("partial at split {split}")
}

/// A head with a 20 KiB cookie, and the headers that matter on both sides
/// of the cap.
fn big_request() -> Vec<u8> {
    let mut h = b"POST /big?q=1 HTTP/1.1\r\nHost: example.com\r\nCookie: c=".to_vec();
    h.resize(h.len() + 20 * 1024, b'a');
    h.extend_from_slice(
        b"\r\nContent-Length: 5\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
          User-Agent: big/1\r\n\r\nhelloGET /next HTTP/1.1\r\n\r\n",
    );
    h
}

#[test]
fn a_head_past_the_cap_keeps_its_framing_at_every_split() {
    let input = big_request();
    let want_rest = b"helloGET /next HTTP/1.1\r\n\r\n".to_vec();
    for split in 0..=input.len() {
        let (kept, beyond, rest) = read_split(HeadKind::Request, &input, split);
        assert_eq!(rest, want_rest, "split {split}");
        let beyond = beyond.unwrap_or_else(|| panic!("split {split}: not oversized"));
        let head = oversized_request(&kept, &beyond);
        assert_eq!(head.method, "POST", "split {split}");
        assert_eq!(head.target, "/big?q=1");
        assert_eq!(head.version, Some(1));
        assert_eq!(head.host.as_deref(), Some("example.com"));
        assert_eq!(head.user_agent.as_deref(), Some("big/1"));
        assert_eq!(
            head.traceparent.as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(head.framing.request_body(), Ok(Some(Body::Length(5))));
    }
    // Byte by byte, and in pieces of a few sizes, too.
    for step in [1, 7, 4096, input.len()] {
        let (kept, rest) = read(HeadKind::Request, &input, step).unwrap();
        assert_eq!((kept.len(), rest), (MAX_HEAD_BYTES, want_rest.clone()));
    }
    // A head of exactly the cap is an ordinary head.
    let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
    exact.resize(MAX_HEAD_BYTES - 4, b'a');
    exact.extend_from_slice(b"\r\n\r\n");
    assert!(matches!(
        HeadReader::new(HeadKind::Request).feed(&exact, T),
        HeadStep::Complete { .. }
    ));
}

#[test]
fn a_response_head_past_the_cap_keeps_its_status_and_framing_at_every_split() {
    let mut input = b"HTTP/1.1 404 Not Found\r\nSet-Cookie: s=".to_vec();
    input.resize(input.len() + 17 * 1024, b'z');
    input.extend_from_slice(b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    for split in 0..=input.len() {
        let (kept, beyond, rest) = read_split(HeadKind::Response, &input, split);
        assert_eq!(rest, b"0\r\n\r\n", "split {split}");
        let head = oversized_response(&kept, &beyond.unwrap()).unwrap();
        assert_eq!(head.status, 404);
        assert!(matches!(
            head.framing.response_body("GET", 404),
            Ok(Some(Body::Chunked(_)))
        ));
    }
}

#[test]
fn what_is_kept_past_the_cap_is_bounded() {
    // Many long lines that matter, and a framing line too long to keep.
    let mut input = b"GET / HTTP/1.1\r\n".to_vec();
    input.resize(MAX_HEAD_BYTES + 10, b'a');
    input.extend_from_slice(b"\r\n");
    for _ in 0..100 {
        input.extend_from_slice(b"Host: ");
        input.resize(input.len() + 5000, b'h');
        input.extend_from_slice(b"\r\nHost: short\r\n");
    }
    input.extend_from_slice(b"Content-Length: ");
    input.resize(input.len() + 5000, b'1');
    input.extend_from_slice(b"\r\n\r\n");
    let (kept, beyond, rest) = read_split(HeadKind::Request, &input, 100);
    let beyond = beyond.unwrap();
    assert!(rest.is_empty());
    assert!(beyond.lines().count() <= REQUEST_HEADERS.len() + BEYOND_FRAMING_LINES);
    assert!(beyond.lines().all(|(_, v)| v.len() <= BEYOND_LINE_BYTES));
    assert!(beyond.lines().map(|(_, v)| v.len()).sum::<usize>() <= 16 * 1024);
    let head = oversized_request(&kept, &beyond);
    assert_eq!(
        head.framing.request_body(),
        Err(FramingError),
        "a lost length"
    );
}

#[test]
fn a_whole_head_in_one_piece_is_not_copied() {
    let mut reader = HeadReader::new(HeadKind::Request);
    let data = b"GET / HTTP/1.1\r\n\r\n";
    match reader.feed(data, T) {
        HeadStep::Complete { head, .. } => assert_eq!(head.as_ptr(), data.as_ptr()),
        other => panic!("{other:?}"),
    }
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn request_heads() {
    let head = b"POST /up?x=1 HTTP/1.0\r\nhost: example.com:8080\r\nUser-Agent: curl/8\r\n\
        TraceParent: 00-aa-bb-01\r\ntraceparent: second\r\ntracestate: k=v\r\n\
        Content-Length: 12\r\n\r\n";
    let req = parse_request(head).unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.target, "/up?x=1");
    assert_eq!(req.version, Some(0));
    assert_eq!(req.host.as_deref(), Some("example.com:8080"));
    assert_eq!(req.user_agent.as_deref(), Some("curl/8"));
    assert_eq!(req.traceparent.as_deref(), Some("00-aa-bb-01"));
    assert_eq!(req.tracestate.as_deref(), Some("k=v"));
    assert!(!req.aws_sigv4);
    assert_eq!(req.framing.request_body(), Ok(Some(Body::Length(12))));
}

#[test]
fn sigv4_and_upgrade_flags() {
    let cases: &[(&[u8], bool, bool)] = &[
        (
            b"GET / HTTP/1.1\r\nX-Amz-Content-Sha256: UNSIGNED\r\n\r\n",
            true,
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=x\r\n\r\n",
            true,
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n",
            false,
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            false,
            true,
        ),
    ];
    for (head, sigv4, upgrade) in cases {
        let req = parse_request(head).unwrap();
        assert_eq!(
            (req.aws_sigv4, req.upgrade),
            (*sigv4, *upgrade),
            "{}",
            String::from_utf8_lossy(head)
        );
    }
}

#[test]
fn request_framing() {
    let chunked = || Ok(Some(Body::Chunked(Chunked::new())));
    let cases: &[(&str, Result<Option<Body>, FramingError>)] = &[
        ("", Ok(None)),
        ("Content-Length: 0\r\n", Ok(None)),
        ("Content-Length: 7\r\n", Ok(Some(Body::Length(7)))),
        (
            "Content-Length: 7, 7\r\nContent-Length: 7\r\n",
            Ok(Some(Body::Length(7))),
        ),
        (
            "Content-Length: 7\r\nContent-Length: 8\r\n",
            Err(FramingError),
        ),
        ("Content-Length: -1\r\n", Err(FramingError)),
        ("Content-Length: \r\n", Err(FramingError)),
        (
            "Content-Length: 99999999999999999999999\r\n",
            Err(FramingError),
        ),
        ("Transfer-Encoding: chunked\r\n", chunked()),
        (
            "Transfer-Encoding: gzip, Chunked\r\nContent-Length: 5\r\n",
            chunked(),
        ),
        ("Transfer-Encoding: chunked, gzip\r\n", Err(FramingError)),
    ];
    for (headers, want) in cases {
        let head = format!("POST / HTTP/1.1\r\n{headers}\r\n");
        let req = parse_request(head.as_bytes()).unwrap();
        assert_eq!(req.framing.request_body(), *want, "{headers:?}");
    }
}

#[test]
fn response_framing() {
    let chunked = || Ok(Some(Body::Chunked(Chunked::new())));
    type Row = (
        &'static str,
        u16,
        &'static str,
        Result<Option<Body>, FramingError>,
    );
    let cases: &[Row] = &[
        (
            "GET",
            200,
            "Content-Length: 5\r\n",
            Ok(Some(Body::Length(5))),
        ),
        ("HEAD", 200, "Content-Length: 5\r\n", Ok(None)),
        ("GET", 204, "Content-Length: 5\r\n", Ok(None)),
        ("GET", 304, "Transfer-Encoding: chunked\r\n", Ok(None)),
        ("GET", 100, "", Ok(None)),
        ("GET", 200, "", Ok(Some(Body::UntilClose))),
        ("GET", 200, "Content-Length: 0\r\n", Ok(None)),
        (
            "GET",
            200,
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            chunked(),
        ),
        (
            "GET",
            200,
            "Transfer-Encoding: gzip\r\n",
            Ok(Some(Body::UntilClose)),
        ),
        ("GET", 200, "Content-Length: x\r\n", Err(FramingError)),
        (
            "GET",
            200,
            "Content-Length : 5\r\n",
            Ok(Some(Body::Length(5))),
        ),
    ];
    for (method, status, headers, want) in cases {
        let head = format!("HTTP/1.1 {status} X\r\n{headers}\r\n");
        let resp = parse_response(head.as_bytes()).unwrap();
        assert_eq!(resp.status, *status);
        assert_eq!(
            resp.framing.response_body(method, *status),
            *want,
            "{method} {status} {headers:?}"
        );
    }
}

/// A framing line with a control byte in its value is one httparse skips:
/// the body is framed without it (the framer follows, see
/// `capture::frame`). A folded value, which httparse gives with the CR LF
/// of its fold, is read as it comes.
#[test]
fn framing_lines_httparse_skips_are_not_read() {
    let resp = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: \x13\r\n\r\n").unwrap();
    assert_eq!(
        resp.framing.response_body("GET", 200),
        Ok(Some(Body::UntilClose))
    );
    let req = parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\x01\r\n\r\n").unwrap();
    assert_eq!(req.framing.request_body(), Ok(None));
    let resp = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n 3\r\n\r\n").unwrap();
    assert_eq!(resp.framing.response_body("GET", 200), Err(FramingError));
}

#[test]
fn malformed_heads_are_rejected() {
    let requests: &[&[u8]] = &[
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1\r\n",
    ];
    for head in requests {
        assert_eq!(
            parse_request(head),
            Err(InvalidHead::Malformed),
            "{}",
            String::from_utf8_lossy(head)
        );
    }
    let responses: &[&[u8]] = &[
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n",
    ];
    for head in responses {
        assert_eq!(
            parse_response(head),
            Err(InvalidHead::Malformed),
            "{}",
            String::from_utf8_lossy(head)
        );
    }
}

#[test]
fn many_headers_parse_from_the_heap() {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..500 {
        head.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    head.extend_from_slice(b"Host: last\r\n\r\n");
    assert_eq!(parse_request(&head).unwrap().host.as_deref(), Some("last"));
    let resp = head.splitn(2, |&b| b == b'\n').nth(1).unwrap();
    let resp = [b"HTTP/1.1 200 OK\r\n".as_slice(), resp].concat();
    assert_eq!(parse_response(&resp).unwrap().status, 200);
}

#[test]
fn salvaging_broken_heads() {
    let req = salvage_request(b"PUT /x?y HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nX-Cut: aaa");
    assert_eq!(
        (req.method.as_str(), req.target.as_str(), req.version),
        ("PUT", "/x?y", Some(1))
    );
    assert_eq!(
        (req.host.as_deref(), req.user_agent.as_deref()),
        (Some("h"), Some("u"))
    );
    let req = salvage_request(b"GET /very-long");
    assert_eq!(
        (req.method.as_str(), req.target.as_str(), req.version),
        ("GET", "/very-long", None)
    );
    let req = salvage_request(b"\x00\x01 x");
    assert_eq!(req.method, "");

    let cases: &[(&[u8], Option<u16>)] = &[
        (b"HTTP/1.1 200 OK\r\nX: aaaa", Some(200)),
        (b"HTTP/1.0 404\r\n", Some(404)),
        (b"HTTP/1.1 20", None),
        (b"HTTP/1.1 2000", None),
        (b"HTTP/1.1 099 x", None),
        (b"garbage", None),
    ];
    for (head, want) in cases {
        assert_eq!(salvage_status(head), *want, "{head:?}");
    }
}

/// Heads of the usual shape, as real clients and servers send them.
const USUAL_REQUESTS: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    "GET /index.html HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: identity\r\n\r\n",
    "POST /pay?x=1&api_key=s HTTP/1.0\r\nhost: h\r\ncontent-length: 5\r\n\r\n",
    "PUT http://u:p@proxy.example:3128/a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nTraceState: a=1\r\n\r\n",
    "PROPFIND /dav HTTP/1.1\nHost: h\nUpgrade: websocket\nX-Empty:\nAuthorization: AWS4-HMAC-SHA256 Credential=x\n\n",
    "GET / HTTP/1.1\r\nHost:   spaced  \r\nUser-Agent:\tTabbed\t\r\nContent-Length: 3, 3\r\nX-Amz-Content-Sha256: UNSIGNED\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: first\r\nHost: second\r\nHostile: x\r\nUser-Agent: caf\u{e9}\r\n\r\n",
];

const USUAL_RESPONSES: &[&str] = &[
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 14:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 139\r\nConnection: keep-alive\r\nETag: \"6570-8b\"\r\nAccept-Ranges: bytes\r\n\r\n",
    "HTTP/1.0 404 File not found\r\nServer: SimpleHTTP/0.6 Python/3.11.7\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 204\r\n\r\n",
    "HTTP/1.1 200 \r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length : 5\r\nContent-Lengthy: 7\r\n\r\n",
    "HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: gzip\r\nX-Empty:\r\n\r\n",
];

#[test]
fn usual_heads_take_the_quick_path_and_agree_with_httparse() {
    for head in USUAL_REQUESTS {
        let quick = quick_request(head.as_bytes()).unwrap_or_else(|| panic!("{head:?}"));
        assert_eq!(
            Ok(quick),
            parse_request_httparse(head.as_bytes()),
            "{head:?}"
        );
    }
    for head in USUAL_RESPONSES {
        let quick = quick_response(head.as_bytes()).unwrap_or_else(|| panic!("{head:?}"));
        assert_eq!(
            Ok(quick),
            parse_response_httparse(head.as_bytes()),
            "{head:?}"
        );
    }
}

#[test]
fn unusual_heads_go_to_httparse() {
    for head in [
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET /caf\u{e9} HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\u{1}b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost:\rh\r\n\r\n",
    ] {
        assert_eq!(quick_request(head.as_bytes()), None, "{head:?}");
    }
    for head in [
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\u{7}\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n\tfolded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\u{0}\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
    ] {
        assert_eq!(quick_response(head.as_bytes()), None, "{head:?}");
    }
}

/// Differential check: heads mutated at random (a byte replaced, inserted or
/// removed, one to three times, thousands of seeds). Whenever httparse
/// accepts a head the quick path must give the same answer or defer; where
/// httparse rejects a head the quick path may read it (it ignores lines it
/// does not need), but then it must read the lines it needs the same way.
#[test]
fn quick_path_never_contradicts_httparse_on_mutated_heads() {
    const ALPHABET: &[u8] = b" \t\r\n:/-.0123456789aZ\x00\x7f\xe9,;\"";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut agreed, mut lenient) = (0, 0);
    for round in 0..20_000 {
        let requests = round % 2 == 0;
        let base = if requests {
            USUAL_REQUESTS[round / 2 % USUAL_REQUESTS.len()]
        } else {
            USUAL_RESPONSES[round / 2 % USUAL_RESPONSES.len()]
        };
        let mut head = base.as_bytes().to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % head.len();
            let byte = ALPHABET[(next() as usize) % ALPHABET.len()];
            match next() % 3 {
                0 => head[at] = byte,
                1 => head.insert(at, byte),
                _ => {
                    head.remove(at);
                }
            }
        }
        let shown = String::from_utf8_lossy(&head).into_owned();
        if requests {
            match (quick_request(&head), parse_request_httparse(&head)) {
                (Some(q), Ok(h)) => {
                    assert_eq!(q, h, "{shown:?}");
                    agreed += 1;
                }
                (Some(_), Err(_)) => lenient += 1,
                (None, _) => {}
            }
        } else {
            match (quick_response(&head), parse_response_httparse(&head)) {
                (Some(q), Ok(h)) => {
                    assert_eq!(q, h, "{shown:?}");
                    agreed += 1;
                }
                (Some(_), Err(_)) => lenient += 1,
                (None, _) => {}
            }
        }
    }
    assert!(agreed > 5000, "the quick path was exercised: {agreed}");
    assert!(lenient < agreed / 10, "lenient {lenient} of {agreed}");
}

#[test]
fn the_blank_line_is_found_as_a_plain_search_finds_it() {
    let plain = |hay: &[u8]| {
        (0..hay.len()).find_map(|i| match &hay[i..] {
            [b'\n', b'\n', ..] => Some(i + 2),
            [b'\n', b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        })
    };
    let mut state: u64 = 7;
    for len in 0..70 {
        for _ in 0..50 {
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    [b'\n', b'\r', b'a', 0x8a, 0x0b, 0x09, 0xff][(state >> 33) as usize % 7]
                })
                .collect();
            assert_eq!(blank_line_end(&hay), plain(&hay), "{hay:?}");
        }
    }
}

#[test]
fn header_names_match_in_any_case_and_nothing_else() {
    for (line, name, want) in [
        (&b"Content-Length: 5"[..], &b"content-length"[..], true),
        (b"CONTENT-LENGTH:5", b"content-length", true),
        (b"content-lengtH", b"content-length", true),
        (b"Content\rLength: 5", b"content-length", false),
        (b"Content-Lengt", b"content-length", false),
        (b"Content-Type: x", b"content-length", false),
        (b"X-Amz-Content-SHA256: x", b"x-amz-content-sha256", true),
        (b"x-amz-content-sha257", b"x-amz-content-sha256", false),
        (b"Host", b"host", true),
        (b"Hos", b"host", false),
        (b"H\xcfst", b"host", false),
    ] {
        assert_eq!(
            starts_with_name(line, name),
            want,
            "{:?} {:?}",
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(name)
        );
    }
}

/// The first-byte set a header line is checked against before the names:
/// it holds each name's initial, and other bytes only where they share its
/// six low bits.
#[test]
fn the_initials_set_lets_each_first_byte_through() {
    let set = initials(&[b"content-length", b"host", b"x-b3-flags", b"", b"\xc3x"]);
    for b in 0..=255u8 {
        let want = [b'c', b'h', b'x', 0xc3].iter().any(|i| i & 63 == b & 63);
        assert_eq!(may_be_wanted(set, b), want, "{b}");
    }
    assert!(!may_be_wanted(set, b'a') && !may_be_wanted(set, b's'));
    for name in REQUEST_HEADERS {
        assert!(may_be_wanted(REQUEST_INITIALS, name[0]), "{name:?}");
    }
    // A request line whose name is wanted but whose initial was left out
    // of the set would be skipped: the quick path must still read them all.
    let head =
        b"GET / HTTP/1.1\r\nX-B3-Sampled: 1\r\nUser-Agent: ua\r\nHost: h\r\nbaggage: k=v\r\n\r\n";
    let quick = quick_request(head).unwrap();
    assert_eq!(quick.user_agent.as_deref(), Some("ua"));
    assert_eq!(quick.host.as_deref(), Some("h"));
}

#[test]
fn a_head_parsed_again_is_taken_from_the_last_and_equals_a_fresh_parse() {
    let kept = |memo: &'static std::thread::LocalKey<LastHead<RequestHead>>| {
        memo.with(|m| m.0.borrow().head.clone())
    };
    let a = b"GET /a HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\nContent-Length: 3\r\n\r\n";
    let b = b"POST /b HTTP/1.1\r\nHost: other\r\nTransfer-Encoding: chunked\r\n\r\n";
    for head in [&a[..], b, a, a, b] {
        let parsed = parse_request(head).unwrap();
        assert_eq!(kept(&LAST_REQUEST), head);
        assert_eq!(Some(parsed), quick_request(head));
    }
    // A head with a traceparent is its request's alone: parsed, not kept.
    let traced = b"GET /a HTTP/1.1\r\nHost: h\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
    for _ in 0..2 {
        let parsed = parse_request(traced).unwrap();
        assert!(parsed.traceparent.is_some());
        assert_eq!(Some(parsed), quick_request(traced));
        assert!(kept(&LAST_REQUEST).is_empty());
    }
    // A head that does not parse leaves the memo as it was.
    parse_request(a).unwrap();
    assert!(parse_request(b"\x01\x02 nonsense\r\n\r\n").is_err());
    assert_eq!(kept(&LAST_REQUEST), a);
    // Responses too; a head over the cap is parsed, not kept.
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    let first = parse_response(ok).unwrap();
    assert_eq!(parse_response(ok).unwrap(), first);
    assert_eq!(LAST_RESPONSE.with(|m| m.0.borrow().head.clone()), ok);
    let mut long = b"HTTP/1.1 204 No Content\r\nX-Long: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', MEMO_HEAD));
    long.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_response(&long).unwrap().status, 204);
    assert_eq!(LAST_RESPONSE.with(|m| m.0.borrow().head.clone()), ok);
}

/// Forgets this thread's kept heads (see `LastHead`).
fn forget_kept_heads() {
    LAST_REQUEST.with(|m| *m.0.borrow_mut() = Kept::NONE);
    LAST_RESPONSE.with(|m| *m.0.borrow_mut() = Kept::NONE);
}

/// A head that starts with the last head of its kind parsed on the thread
/// ends where that one did, without the detector or a search for its end;
/// what the reader gives is what it gives with nothing kept, for heads kept
/// by a reader's parse and for bytes parsed directly that a reader would
/// not take as one head (an empty line inside, a method the detector
/// refuses, leading blank lines, over the cap).
#[test]
fn a_kept_head_ends_where_reading_would_end_it() {
    std::thread::spawn(|| {
        let req = HeadKind::Request;
        let resp = HeadKind::Response;
        let big = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "x".repeat(MAX_HEAD_BYTES)
        );
        let cases: Vec<(HeadKind, Vec<u8>)> = [
            (req, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            (req, "GET /a HTTP/1.1\nHost: h\n\n"),
            (req, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nX: 1\r\n\r\n"),
            (req, "get /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            (req, "\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            (req, big.as_str()),
            (resp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"),
            (resp, "HTTP/1.1 200 OK\r\n\r\nContent-Length: 2\r\n\r\n"),
            (resp, "HTTP/1.0 204 No Content\r\n\r\n"),
        ]
        .into_iter()
        .map(|(k, s)| (k, s.as_bytes().to_vec()))
        .collect();
        let tails: [&[u8]; 3] = [b"", b"ok", b"GET /b HTTP/1.1\r\n\r\n"];
        let mut served = 0;
        for (kind, kept) in &cases {
            for (_, input) in cases.iter().filter(|(k, _)| k == kind) {
                for tail in tails {
                    let mut input = input.clone();
                    input.extend_from_slice(tail);
                    for step in [input.len(), 7] {
                        forget_kept_heads();
                        let want = read(*kind, &input, step);
                        // Kept by a parse of those bytes (a reader's head,
                        // or bytes given directly).
                        let _ = match kind {
                            HeadKind::Request => parse_request(kept).map(|_| ()),
                            HeadKind::Response => parse_response(kept).map(|_| ()),
                        };
                        served += usize::from(remembered_head(*kind, &input).is_some());
                        assert_eq!(
                            read(*kind, &input, step),
                            want,
                            "kept {:?}, read {:?} in pieces of {step}",
                            String::from_utf8_lossy(kept),
                            String::from_utf8_lossy(&input)
                        );
                    }
                }
            }
        }
        assert!(served >= 20, "the kept head served {served} reads");
        // Those a reader would not take as one head are not taken.
        for (kind, odd) in [&cases[2], &cases[3], &cases[4], &cases[5], &cases[7]] {
            forget_kept_heads();
            let _ = match kind {
                HeadKind::Request => parse_request(odd).map(|_| ()),
                HeadKind::Response => parse_response(odd).map(|_| ()),
            };
            assert_eq!(
                remembered_head(*kind, odd),
                None,
                "{:?}",
                String::from_utf8_lossy(odd)
            );
        }
    })
    .join()
    .unwrap();
}

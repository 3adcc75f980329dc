//! Tests of [`HttpConnection`]: scenarios as tables, each replayed whole,
//! byte by byte and at random splits (the results must not differ), plus
//! timing, bounds and a fuzz-style run over pseudo-random input.

use std::time::{Duration, SystemTime};

use super::*;
use crate::http::{MAX_HEAD_BYTES, MAX_IN_FLIGHT};
use crate::span::Text;
use crate::testkit::{Split, StopWatch};

/// One call on the connection. Not the shared [`crate::testkit::Ev`]: these
/// tables borrow most of their bytes from constants, and also send bytes
/// the tracer cannot see (`sendfile`).
#[derive(Clone, Debug)]
enum Ev {
    Out(&'static [u8]),
    In(&'static [u8]),
    OutOwned(Vec<u8>),
    InOwned(Vec<u8>),
    OutOpaque(usize),
    Close(CloseReason),
}
use Ev::*;

/// An exchange in one line: `METHOD target status req=N resp=N error`.
fn summary(ex: &HttpExchange) -> String {
    let status = ex.status.map_or("-".to_owned(), |s| s.to_string());
    let error = ex.error.unwrap_or("-");
    format!(
        "{} {} {status} req={} resp={} {error}",
        ex.method, ex.target, ex.request_body_size, ex.response_body_size
    )
}

/// Runs the events; returns the exchanges' summaries and the index of the
/// event at which the connection first said Stop.
fn run(role: Role, events: &[Ev], split: Split) -> (Vec<String>, Option<usize>) {
    let mut conn = HttpConnection::new(role);
    // Capturing payloads changes nothing of the framing.
    conn.capture_payloads(5);
    let mut done = Vec::new();
    let mut stop = StopWatch::default();
    let now = SystemTime::UNIX_EPOCH;
    let mut cutter = split.cutter(9);
    for (i, ev) in events.iter().enumerate() {
        let reported = done.len();
        let mut flows = Vec::new();
        let mut feed =
            |data: &[u8], out: bool, conn: &mut HttpConnection, done: &mut Vec<HttpExchange>| {
                for piece in cutter.pieces(data) {
                    flows.push(if out {
                        conn.on_outbound(piece, now, done)
                    } else {
                        conn.on_inbound(piece, now, done)
                    });
                }
            };
        match ev {
            Out(d) => feed(d, true, &mut conn, &mut done),
            In(d) => feed(d, false, &mut conn, &mut done),
            OutOwned(d) => feed(d, true, &mut conn, &mut done),
            InOwned(d) => feed(d, false, &mut conn, &mut done),
            OutOpaque(n) => flows.push(conn.on_outbound_opaque(*n, now, &mut done)),
            Close(reason) => conn.on_close(now, *reason, &mut done),
        }
        stop.note(i, &flows, reported, done.len());
        assert!(conn.buffered() <= 2 * MAX_HEAD_BYTES);
        assert!(conn.pending.len() <= MAX_IN_FLIGHT);
    }
    (done.iter().map(summary).collect(), stop.at)
}

const GET_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
const OK_5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

struct Case {
    name: &'static str,
    role: Role,
    events: Vec<Ev>,
    want: &'static [&'static str],
    stops_at: Option<usize>,
}

fn client(
    name: &'static str,
    events: Vec<Ev>,
    want: &'static [&'static str],
    stops_at: Option<usize>,
) -> Case {
    Case {
        name,
        role: Role::Client,
        events,
        want,
        stops_at,
    }
}

fn server(
    name: &'static str,
    events: Vec<Ev>,
    want: &'static [&'static str],
    stops_at: Option<usize>,
) -> Case {
    Case {
        name,
        role: Role::Server,
        events,
        want,
        stops_at,
    }
}

fn big_head(start: &str) -> Vec<u8> {
    big_head_then(start, "", "")
}

/// A head longer than the cap: `start`, a big header, the lines `after`
/// (past the cap), the empty line, then `body`.
fn big_head_then(start: &str, after: &str, body: &str) -> Vec<u8> {
    let mut head = start.as_bytes().to_vec();
    head.extend_from_slice(b"X-Big: ");
    head.resize(MAX_HEAD_BYTES + 10, b'x');
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(after.as_bytes());
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(body.as_bytes());
    head
}

fn cases() -> Vec<Case> {
    let pipelined_33: Vec<u8> = GET_A.repeat(MAX_IN_FLIGHT + 1);
    vec![
        client("simple", vec![Out(GET_A), In(OK_5)], &["GET /a 200 req=0 resp=5 -"], None),
        client(
            "keep-alive, chunked response with trailers",
            vec![
                Out(GET_A),
                In(OK_5),
                Out(b"GET /b HTTP/1.1\r\n\r\n"),
                In(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n"),
            ],
            &["GET /a 200 req=0 resp=5 -", "GET /b 200 req=0 resp=19 -"],
            None,
        ),
        client(
            "pipelined in one call each way",
            vec![
                Out(b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
                In(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
            ],
            &["GET /1 200 req=0 resp=1 -", "HEAD /2 200 req=0 resp=0 -", "POST /3 201 req=3 resp=0 -"],
            None,
        ),
        client(
            "204 and 304 have no body",
            vec![
                Out(b"DELETE /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n"),
                In(b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"),
            ],
            &["DELETE /x 204 req=0 resp=0 -", "GET /y 304 req=0 resp=0 -"],
            None,
        ),
        client(
            "100 Continue is skipped",
            vec![
                Out(b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
                In(b"HTTP/1.1 100 Continue\r\n\r\n"),
                Out(b"data"),
                In(b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
            ],
            &["POST /up 201 req=4 resp=2 -"],
            None,
        ),
        client(
            "chunked request body, split CRLFs",
            vec![
                Out(b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;e=1\r\npedia\r\n0\r\n\r\n"),
                In(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ],
            &["PUT /c 200 req=9 resp=0 -"],
            None,
        ),
        client(
            "stray CRLF after a body is not a request",
            vec![
                Out(b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nab\r\n"),
                In(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                Close(CloseReason::Closed),
            ],
            &["POST /p 200 req=2 resp=0 -"],
            None,
        ),
        client(
            "101 Switching Protocols ends HTTP",
            vec![
                Out(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
                In(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
                Out(b"\x81\x85abcd1234"),
            ],
            &["GET /ws 101 req=0 resp=0 -"],
            Some(1),
        ),
        client(
            "CONNECT 200 ends HTTP",
            vec![
                Out(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
                In(b"HTTP/1.1 200 Connection established\r\n\r\n"),
                Out(b"\x16\x03\x01\x00\x05hello"),
            ],
            &["CONNECT example.com:443 200 req=0 resp=0 -"],
            Some(1),
        ),
        client(
            "CONNECT with an optimistic tunnel",
            vec![
                Out(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n\x16\x03\x01\x00\x05hello"),
                Out(b"\x16\x03\x01 more"),
                In(b"HTTP/1.1 200 OK\r\n\r\n"),
            ],
            &["CONNECT example.com:443 200 req=0 resp=0 -"],
            Some(2),
        ),
        client(
            "CONNECT refused, then retried",
            vec![
                Out(b"CONNECT h:443 HTTP/1.1\r\n\r\n"),
                In(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 3\r\n\r\nno!"),
                Out(b"CONNECT h:443 HTTP/1.1\r\nProxy-Authorization: Basic x\r\n\r\n"),
                In(b"HTTP/1.1 200 OK\r\n\r\n"),
            ],
            &["CONNECT h:443 407 req=0 resp=3 -", "CONNECT h:443 200 req=0 resp=0 -"],
            Some(3),
        ),
        client(
            "response until close",
            vec![Out(GET_A), In(b"HTTP/1.0 200 OK\r\n\r\nsome"), In(b" body"), Close(CloseReason::PeerClosed)],
            &["GET /a 200 req=0 resp=9 -"],
            None,
        ),
        client(
            "response until close, then the process exits",
            vec![Out(GET_A), In(b"HTTP/1.0 200 OK\r\n\r\nsome"), Close(CloseReason::ProcessExit)],
            &["GET /a 200 req=0 resp=4 process_exit"],
            None,
        ),
        client(
            "closed with no response",
            vec![Out(GET_A), Out(b"GET /b HTTP/1.1\r\n\r\n"), Close(CloseReason::PeerClosed)],
            &["GET /a - req=0 resp=0 connection_closed", "GET /b - req=0 resp=0 connection_closed"],
            None,
        ),
        client(
            "closed mid-body",
            vec![Out(GET_A), In(b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\nabc"), Close(CloseReason::Closed)],
            &["GET /a 500 req=0 resp=3 connection_closed"],
            None,
        ),
        client(
            "closed mid-head of the request",
            vec![Out(b"GET /slow HTTP/1.1\r\nHo"), Close(CloseReason::Closed)],
            &["GET /slow - req=0 resp=0 connection_closed"],
            None,
        ),
        client("TLS is not HTTP", vec![Out(b"\x16\x03\x01\x02\x00\x01"), In(b"\x16\x03\x03")], &[], Some(0)),
        client("HTTP/2 prior knowledge is not HTTP/1", vec![Out(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")], &[], Some(0)),
        client("a server that speaks first is not HTTP", vec![In(b"220 mail ESMTP\r\n"), Out(b"EHLO x\r\n")], &[], Some(0)),
        client("undecided at close", vec![Out(b"GE"), Close(CloseReason::Closed)], &[], None),
        client(
            "garbage where a response head should be",
            vec![Out(GET_A), In(b"<html>hello</html>")],
            &["GET /a - req=0 resp=0 protocol_error"],
            Some(1),
        ),
        client(
            "malformed status line",
            vec![Out(GET_A), In(b"HTTP/1.1 2000 Huh\r\n\r\n")],
            &["GET /a - req=0 resp=0 protocol_error"],
            Some(1),
        ),
        client(
            "garbage after a request",
            vec![Out(GET_A), Out(b"\x00\x01\x02")],
            &["GET /a - req=0 resp=0 protocol_error"],
            Some(1),
        ),
        client(
            "bad chunk in a response",
            vec![Out(GET_A), In(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")],
            &["GET /a 200 req=0 resp=0 protocol_error"],
            Some(1),
        ),
        client(
            "a response with no request",
            vec![Out(GET_A), In(OK_5), In(b"HTTP/1.1 408 Request Timeout\r\n\r\n")],
            &["GET /a 200 req=0 resp=5 -"],
            Some(2),
        ),
        client(
            "request head past the cap is an ordinary exchange",
            vec![
                Out(GET_A),
                In(OK_5),
                OutOwned(big_head_then(
                    "POST /big?q=1 HTTP/1.1\r\nHost: h\r\n",
                    "Content-Length: 3\r\n",
                    "abc",
                )),
                In(OK_5),
                OutOwned(big_head("GET /a HTTP/1.1\r\n")),
                In(OK_5),
            ],
            &[
                "GET /a 200 req=0 resp=5 -",
                "POST /big?q=1 200 req=3 resp=5 -",
                "GET /a 200 req=0 resp=5 -",
            ],
            None,
        ),
        client(
            "chunked request past the cap",
            vec![
                OutOwned(big_head_then(
                    "PUT /c HTTP/1.1\r\n",
                    "Transfer-Encoding: chunked\r\n",
                    "3\r\nabc\r\n0\r\n\r\n",
                )),
                In(OK_5),
            ],
            &["PUT /c 200 req=3 resp=5 -"],
            None,
        ),
        client(
            "response head past the cap is an ordinary response",
            vec![
                Out(GET_A),
                InOwned(big_head_then("HTTP/1.1 404 Not Found\r\n", "Content-Length: 2\r\n", "hi")),
                Out(GET_A),
                In(OK_5),
            ],
            &["GET /a 404 req=0 resp=2 -", "GET /a 200 req=0 resp=5 -"],
            None,
        ),
        server(
            "server: request head past the cap is answered",
            vec![
                InOwned(big_head_then(
                    "POST /s HTTP/1.1\r\n",
                    "Content-Length: 2\r\n",
                    "xy",
                )),
                Out(OK_5),
                In(GET_A),
                Out(OK_5),
            ],
            &["POST /s 200 req=2 resp=5 -", "GET /a 200 req=0 resp=5 -"],
            None,
        ),
        client(
            "too many requests in flight",
            vec![OutOwned(pipelined_33)],
            &["GET /a - req=0 resp=0 pipeline_overflow"; MAX_IN_FLIGHT + 1],
            Some(0),
        ),
        client(
            "a request whose length cannot be read",
            vec![
                Out(b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
                In(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
            ],
            &["POST /x 400 req=0 resp=0 -"],
            Some(1),
        ),
        client(
            "sendfile of a request body",
            vec![Out(b"PUT /f HTTP/1.1\r\nContent-Length: 100\r\n\r\n"), OutOpaque(100), In(OK_5)],
            &["PUT /f 200 req=100 resp=5 -"],
            None,
        ),
        client("sendfile before anything", vec![OutOpaque(10)], &[], Some(0)),
        server(
            "server: simple",
            vec![
                In(GET_A),
                Out(OK_5),
                In(b"GET /b HTTP/1.0\r\n\r\n"),
                Out(b"HTTP/1.0 404 Not Found\r\n\r\nnope"),
                Close(CloseReason::Closed),
            ],
            &["GET /a 200 req=0 resp=5 -", "GET /b 404 req=0 resp=4 -"],
            None,
        ),
        server(
            "server: sendfile of a response body",
            vec![
                In(GET_A),
                Out(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
                OutOpaque(600),
                OutOpaque(400),
                In(GET_A),
                Out(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n"),
                OutOpaque(1024),
                Out(b"\r\n0\r\n\r\n"),
            ],
            &["GET /a 200 req=0 resp=1000 -", "GET /a 200 req=0 resp=1024 -"],
            None,
        ),
        server(
            "server: sendfile outside a body",
            vec![In(GET_A), Out(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), OutOpaque(11)],
            &["GET /a 200 req=0 resp=0 opaque_data"],
            Some(2),
        ),
        server(
            "server: client hangs up while the request is served",
            vec![In(GET_A), Close(CloseReason::PeerClosed)],
            &["GET /a - req=0 resp=0 connection_closed"],
            None,
        ),
        server(
            "server: the process exits while serving",
            vec![In(GET_A), Out(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"), Close(CloseReason::ProcessExit)],
            &["GET /a 200 req=0 resp=5 process_exit"],
            None,
        ),
        server("server: speaks first", vec![Out(b"\x0a5.7.0\x00"), In(GET_A)], &[], Some(0)),
        server(
            "server: early response before the request body ends",
            vec![
                In(b"POST /up HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc"),
                Out(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n"),
                In(b"def"),
                In(GET_A),
                Out(OK_5),
            ],
            &["POST /up 413 req=3 resp=0 -", "GET /a 200 req=0 resp=5 -"],
            None,
        ),
        server(
            "server: WebDAV method",
            vec![In(b"PROPFIND /dav HTTP/1.1\r\nDepth: 1\r\n\r\n"), Out(b"HTTP/1.1 207 Multi-Status\r\nContent-Length: 0\r\n\r\n")],
            &["PROPFIND /dav 207 req=0 resp=0 -"],
            None,
        ),
    ]
}

#[test]
fn scenarios_parse_the_same_whatever_the_split() {
    for case in cases() {
        let want: Vec<String> = case.want.iter().map(|s| (*s).to_owned()).collect();
        let splits = [
            Split::Whole,
            Split::Bytes,
            Split::Random(7),
            Split::Random(0x5eed),
            Split::Random(99),
        ];
        for split in splits {
            let (got, stopped) = run(case.role, &case.events, split);
            assert_eq!(got, want, "{} ({split:?})", case.name);
            assert_eq!(stopped, case.stops_at, "{}: stop ({split:?})", case.name);
        }
    }
}

#[test]
fn exchanges_carry_the_request_headers() {
    let mut conn = HttpConnection::new(Role::Server);
    let mut done = Vec::new();
    let t = SystemTime::UNIX_EPOCH;
    let head = b"GET /x?y=1 HTTP/1.0\r\nHost: [::1]:8080\r\nUser-Agent: test/1\r\n\
        traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nTRACESTATE: a=b\r\n\
        X-Amz-Content-Sha256: abc\r\n\r\n";
    assert_eq!(conn.on_inbound(head, t, &mut done), Flow::Continue);
    let pending: Vec<_> = conn
        .pending()
        .map(|ex| (ex.seq, ex.method.clone()))
        .collect();
    assert_eq!(pending, vec![(0, Text::Static("GET"))]);
    assert_eq!(
        conn.on_outbound(
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
            t,
            &mut done
        ),
        Flow::Continue
    );
    let ex = &done[0];
    assert_eq!(ex.version, Some(0));
    assert_eq!(ex.host.as_deref(), Some("[::1]:8080"));
    assert_eq!(ex.user_agent.as_deref(), Some("test/1"));
    assert_eq!(
        ex.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(ex.tracestate.as_deref(), Some("a=b"));
    assert!(ex.aws_sigv4);
    assert_eq!(ex.status, Some(503));
    assert_eq!(conn.pending().count(), 0);
}

#[test]
fn start_is_the_first_request_byte_and_end_the_last_response_byte() {
    let t = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    let mut conn = HttpConnection::new(Role::Client);
    let mut done = Vec::new();
    let _ = conn.on_outbound(b"\r\nGE", t(1), &mut done);
    let _ = conn.on_outbound(b"T / HTTP/1.1\r\n\r\n", t(2), &mut done);
    assert_eq!(conn.in_flight(), 1);
    let _ = conn.on_inbound(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
        t(3),
        &mut done,
    );
    let _ = conn.on_inbound(b"h", t(4), &mut done);
    assert!(done.is_empty());
    let _ = conn.on_inbound(b"i", t(5), &mut done);
    assert_eq!((done[0].start, done[0].end), (t(1), t(5)));
    assert_eq!(conn.in_flight(), 0);

    // A close ends an unfinished exchange at the time of the close.
    let _ = conn.on_outbound(b"GET /2 HTTP/1.1\r\n\r\n", t(6), &mut done);
    conn.on_close(t(9), CloseReason::PeerClosed, &mut done);
    assert_eq!(
        (done[1].start, done[1].end, done[1].error),
        (t(6), t(9), Some(errors::CONNECTION_CLOSED))
    );
    assert_eq!(done[1].seq, 1);
}

#[test]
fn in_flight_counts_pending_and_arriving_requests() {
    let mut conn = HttpConnection::new(Role::Client);
    let mut done = Vec::new();
    let t = SystemTime::UNIX_EPOCH;
    assert_eq!(conn.in_flight(), 0);
    let _ = conn.on_outbound(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HT", t, &mut done);
    assert_eq!(conn.in_flight(), 2);
    let _ = conn.on_inbound(b"HTTP/1.1 204 No\r\n\r\n", t, &mut done);
    assert_eq!(conn.in_flight(), 1);
}

#[test]
fn nothing_is_allocated_when_nothing_completes() {
    let mut conn = HttpConnection::new(Role::Client);
    let mut done = Vec::new();
    let t = SystemTime::UNIX_EPOCH;
    let _ = conn.on_outbound(b"GET / HTTP/1.1\r\n\r\n", t, &mut done);
    let _ = conn.on_inbound(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
        t,
        &mut done,
    );
    let body = [b'x'; 4096];
    for _ in 0..20 {
        let _ = conn.on_inbound(&body, t, &mut done);
    }
    assert_eq!(
        done.capacity(),
        0,
        "the caller's Vec is untouched until an exchange completes"
    );
    assert_eq!(conn.buffered(), 0, "bodies are never buffered");
}

/// Feeds a client exchange byte by byte with payload capture at `limit`.
fn captured_client(limit: usize, out: &[u8], inbound: &[u8]) -> Vec<HttpExchange> {
    let mut conn = HttpConnection::new(Role::Client);
    conn.capture_payloads(limit);
    let mut done = Vec::new();
    let now = SystemTime::UNIX_EPOCH;
    for b in out.chunks(1) {
        let _ = conn.on_outbound(b, now, &mut done);
    }
    for b in inbound.chunks(1) {
        let _ = conn.on_inbound(b, now, &mut done);
    }
    done
}

#[test]
fn payload_capture_keeps_heads_and_decoded_body_prefixes() {
    let req: &[u8] = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world\
GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    let resp: &[u8] =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
5;x=y\r\nabcde\r\n3\r\nfgh\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    let done = captured_client(8, req, resp);
    assert_eq!(done.len(), 2);
    let c = done[0].captured.as_deref().unwrap();
    assert_eq!(
        c.request_head,
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"
    );
    assert_eq!(c.request_body, b"hello wo", "cut to the limit");
    // The interim response is not kept; the chunked body is decoded.
    assert_eq!(
        c.response_head,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    assert_eq!(c.response_body, b"abcdefgh");
    assert_eq!(done[0].response_body_size, 8);
    let c = done[1].captured.as_deref().unwrap();
    assert_eq!(c.request_head, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(c.request_body.is_empty() && c.response_body.is_empty());
    assert_eq!(c.response_head, b"HTTP/1.1 204 No Content\r\n\r\n");
    // Off (the default): nothing kept.
    let done = captured_client(0, req, resp);
    assert!(done.iter().all(|ex| ex.captured.is_none()));
}

#[test]
fn payload_capture_on_a_server_and_an_oversized_head() {
    let mut conn = HttpConnection::new(Role::Server);
    conn.capture_payloads(4);
    let mut done = Vec::new();
    let now = SystemTime::UNIX_EPOCH;
    let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    head.resize(MAX_HEAD_BYTES + 100, b'a');
    head.extend_from_slice(b"\r\nContent-Length: 3\r\n\r\nxyz");
    let _ = conn.on_inbound(&head, now, &mut done);
    let _ = conn.on_outbound(b"HTTP/1.0 200 OK\r\n\r\nbody until close", now, &mut done);
    conn.on_close(now, CloseReason::Closed, &mut done);
    assert_eq!(done.len(), 1);
    let c = done[0].captured.as_deref().unwrap();
    assert_eq!(c.request_head.len(), MAX_HEAD_BYTES);
    assert_eq!(c.request_body, b"xyz");
    assert_eq!(c.response_body, b"body");
    assert_eq!(done[0].response_body_size, 16);
}

#[test]
fn a_spare_captured_box_comes_back_empty() {
    // Boxes given back with everything filled (and one with a buffer over
    // the size kept), then taken again: each holds only its new request
    // head, whether it was spare or new (other tests share the spares).
    for i in 0..40 {
        let mut c = Captured::with_request_head(b"GET /secret?token=abcdef HTTP/1.1\r\n\r\n");
        c.response_head
            .extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        c.request_body.extend_from_slice(b"password=hunter22");
        c.response_body.extend_from_slice(b"{\"token\":\"abcdef\"}");
        if i == 0 {
            c.response_body.resize(64 << 10, b'x');
        }
        Captured::give_back(c);
    }
    for _ in 0..40 {
        let c = Captured::with_request_head(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            *c,
            Captured {
                request_head: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                ..Captured::default()
            }
        );
        assert!(c.response_body.capacity() <= 4 << 10);
    }
}

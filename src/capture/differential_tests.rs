//! The differential test of the data path (see `differential.rs`): the
//! same conversations, split at many sizes, with and without body
//! prefixes, give the same spans through both paths.

use std::time::SystemTime;

use super::differential::{compare_once, tracer_capturing, Step};
use super::Capture;
use crate::address::Address;
use crate::connection::{CloseReason, Connection};

fn tracer() -> (crate::connection::Tracer, super::differential::Collect) {
    tracer_capturing(0)
}

fn addr(s: &str) -> Option<Address> {
    Some(Address::Inet(s.parse().unwrap()))
}

fn compare(server: bool, steps: &[Step<'_>]) {
    let total: usize = steps
        .iter()
        .map(|s| match s {
            Step::Out(t) | Step::In(t) => t.len(),
            _ => 0,
        })
        .max()
        .unwrap_or(1);
    for prefix in [0usize, 5, 4096] {
        for step in [1, 2, 3, 7, 16, 64, total.max(1)] {
            let cap: &'static Capture = Box::leak(Box::new(Capture::new(prefix)));
            match compare_once(server, steps, prefix, step, cap) {
                Ok(n) => assert!(n > 0, "the conversation makes spans"),
                Err(e) => panic!("prefix {prefix}, step {step}: {}", e.message),
            }
            assert_eq!(cap.dropped(), 0);
        }
    }
}

#[test]
fn a_keep_alive_server() {
    compare(
        true,
        &[
            Step::In(b"GET /a?token=x HTTP/1.1\r\nHost: h\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Step::In(b"POST /b HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world"),
            Step::Out(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            Step::In(b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"),
            Step::Out(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Step::In(b"3\r\nabc\r\n0\r\n\r\n"),
            Step::Out(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Step::In(b"HEAD /d HTTP/1.1\r\n\r\nGET /e HTTP/1.1\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n"),
            Step::Opaque(3),
        ],
    );
}

#[test]
fn a_client_with_injection() {
    compare(
        false,
        &[
            Step::Out(b"GET /x HTTP/1.1\r\nHost: api\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Step::Out(b"POST /y HTTP/1.1\r\nHost: api\r\nContent-Length: 4\r\n\r\nbody"),
            Step::In(b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"),
            Step::Out(b"GET /z HTTP/1.0\r\n\r\n"),
            Step::In(b"HTTP/1.0 200 OK\r\n\r\nuntil the close"),
            Step::Eof,
        ],
    );
}

#[test]
fn a_client_whose_app_sends_traceparent() {
    compare(
        false,
        &[
            Step::Out(b"GET / HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
}

#[test]
fn upgrades_garbage_and_closes_mid_exchange() {
    compare(
        false,
        &[
            Step::Out(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            Step::In(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x01\x02frames",
            ),
            Step::Out(b"\x01\x02more frames"),
        ],
    );
    compare(
        true,
        &[
            Step::In(b"GET / HTTP/1.1\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Step::In(b"\x16\x03\x01garbage\r\n\r\n"),
        ],
    );
    compare(
        true,
        &[Step::In(
            b"POST /slow HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial",
        )],
    );
    compare(
        true,
        &[
            Step::In(b"GET /a HTTP/1.1\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Step::In(b"GET /never-ends HTTP/1.1\r\nHost: x\r\n"),
        ],
    );
}

#[test]
fn long_heads_go_outside_the_ring_and_keep_their_spans() {
    let cookie = "c".repeat(40 * 1024);
    let req: &'static str = Box::leak(
        format!("GET /big HTTP/1.1\r\nCookie: {cookie}\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n")
            .into_boxed_str(),
    );
    compare(
        true,
        &[
            Step::In(req.as_bytes()),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Step::In(req.as_bytes()),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ],
    );
}

/// More records than a ring and the spill hold, with no drain in
/// between: some are refused and counted; no span pairs the wrong request and response; the
/// connection is recorded again from a later request on.
#[test]
fn a_full_ring_loses_whole_exchanges_and_recording_resumes() {
    let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
    let (t, spans) = tracer();
    let mut c = Connection::captured(
        crate::http::Role::Server,
        addr("127.0.0.1:40000"),
        addr("127.0.0.1:8000"),
        cap,
    );
    let now = SystemTime::now();
    let exchange = |c: &mut Connection, i: usize| {
        let req = format!("GET /{i} HTTP/1.1\r\nHost: h\r\nUser-Agent: test/1.0\r\n\r\n");
        let resp = format!(
            "HTTP/1.1 {} OK\r\nServer: s\r\nContent-Length: 5\r\n\r\nhello",
            200 + i % 3
        );
        let _ = c.on_inbound(req.as_bytes(), now, &t);
        let _ = c.on_outbound(resp.as_bytes(), now, &t);
    };
    const N: usize = 25_000;
    for i in 0..N {
        exchange(&mut c, i);
    }
    assert!(cap.dropped() > 0, "the ring and the spill filled up");
    cap.drain(&t);
    for i in N..N + 10 {
        exchange(&mut c, i);
        cap.drain(&t);
    }
    c.on_close(now, CloseReason::Closed, &t);
    cap.drain(&t);
    let spans = spans.0.lock().unwrap();
    assert!(spans.len() < N && spans.len() > 1000, "{}", spans.len());
    let mut seen_late = 0;
    for s in spans.iter() {
        let path = format!("{:?}", s.attr("url.path").unwrap());
        let n: usize = path
            .trim_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap();
        let status = s.attr("http.response.status_code").unwrap();
        assert_eq!(
            status,
            &((200 + n % 3) as i64).into(),
            "request {n} paired with its response"
        );
        assert_eq!(s.status, crate::span::SpanStatus::Unset, "{s:?}");
        seen_late += usize::from(n >= N);
    }
    assert_eq!(seen_late, 10, "recording resumed");
}

/// Found by the `capture_differential` fuzz target: bytes sent unseen
/// where no body can take them end the exchange with the same error on
/// both paths.
#[test]
fn unseen_bytes_outside_a_body_stop_both_paths_alike() {
    compare(
        false,
        &[
            Step::Out(b"CONNECT h:443 HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 101 Switching"),
            Step::Opaque(40),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: a response head that
/// never ends, with a stray byte in a line.
#[test]
fn a_response_head_that_never_ends() {
    let steps = [
        Step::In(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        Step::Out(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\x8a\r\n"),
    ];
    let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
    if let Err(e) = compare_once(true, &steps, 0, 61, cap) {
        panic!("{}", e.message);
    }
}

/// Found by the `capture_differential` fuzz target: bytes sent unseen
/// while a request head is still arriving.
#[test]
fn unseen_bytes_while_a_head_arrives() {
    compare(
        true,
        &[
            Step::In(b"GET /ws HTTP/1.1\r\nHost: x\r\n"),
            Step::Opaque(10),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: a broken
/// `Content-Length` on a response that has no body anyway.
#[test]
fn a_broken_length_on_a_bodyless_response() {
    compare(
        false,
        &[
            Step::Out(b"GET /a HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1\xc9\r\n\r\n"),
            Step::Out(b"GET /b HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: a client that starts
/// its tunnel without waiting for the answer to its `CONNECT`.
#[test]
fn a_tunnel_opened_before_its_answer() {
    compare(
        true,
        &[
            Step::In(b"CONNECT h:443 HTTP/1.1\r\n\r\n"),
            Step::In(b"\x16\x03\x01 tunnel bytes\r\n\r\n"),
        ],
    );
    compare(
        true,
        &[
            Step::In(b"CONNECT h:443 HTTP/1.1\r\n\r\n"),
            Step::In(b"\x16\x03\x01 tunnel"),
            Step::Out(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Step::Out(b"\x16\x03\x03 server tunnel"),
        ],
    );
    compare(
        true,
        &[
            Step::In(b"GET /ws HTTP/1.1\r\nUpgrade: x\r\n\r\n"),
            Step::In(b"\x01 frames"),
            Step::Out(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: a request whose
/// `Transfer-Encoding` does not end in `chunked` cannot be framed; the
/// requests after it are ignored until the answers are in.
#[test]
fn a_request_with_broken_framing() {
    compare(
        false,
        &[
            Step::Out(b"PUT /c HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
            Step::In(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
            Step::Out(b"GET / HTTP/1.1\r\n\r\n"),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: after a `101`, nothing
/// the client writes is a request any more.
#[test]
fn nothing_is_injected_after_switching_protocols() {
    compare(
        false,
        &[
            Step::Out(b"CONNECT h:443 HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            Step::Out(b"GET / HTTP/1.1\r\n\r\n"),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: a start line that is
/// not one, written in pieces: nothing is inserted into its head.
#[test]
fn a_bad_start_line_written_in_pieces() {
    let steps = [
        Step::Out(b"GET /ws HTTP/1.1\r\n\r\n"),
        Step::In(b"HTTP/1.1 304 Not Modified\r\n\r\n"),
        Step::Out(b"GERRRRRRRRRRRRRRRRRRRRRRRRRRRR: websocket\r\nConnect"),
        Step::Out(b": Upgrade\r\n\r\n"),
    ];
    for step in [1, 16, 64] {
        let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
        if let Err(e) = compare_once(false, &steps, 0, step, cap) {
            panic!("{step}: {}", e.message);
        }
    }
}

/// Connections whose CLOSE never reaches the capture thread (a full ring
/// at the close) cannot make it hold more than a bounded number.
#[test]
fn the_decoder_follows_a_bounded_number_of_connections() {
    let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
    let (t, _) = tracer();
    let now = SystemTime::now();
    for i in 0..70_000u32 {
        let mut c = Connection::captured(
            crate::http::Role::Server,
            addr("127.0.0.1:40000"),
            addr("127.0.0.1:8000"),
            cap,
        );
        let _ = c.on_inbound(b"GET / HTTP/1.1\r\n\r\n", now, &t);
        // Never closed: as if its CLOSE record had been refused.
        std::mem::forget(c);
        if i % 500 == 0 {
            cap.drain(&t);
        }
    }
    cap.drain(&t);
    assert!(
        cap.open_connections() <= 65_536,
        "{}",
        cap.open_connections()
    );
    assert!(cap.open_connections() >= 60_000);
}

/// Regression (the Java `HttpClient` test lost exchanges in about one run
/// in six): a connection written on one thread and read on another has
/// records in two rings, and the reading thread's ring can be drained
/// first, before the ring that holds the connection's OPEN. Those records
/// wait for it; the exchange keeps its response.
#[test]
fn records_drained_before_their_connection_opened_wait_for_it() {
    use std::sync::Mutex;
    let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
    let (t, spans) = tracer();
    let now = SystemTime::now();
    let client = || {
        Mutex::new(Connection::captured(
            crate::http::Role::Client,
            addr("127.0.0.1:8000"),
            addr("127.0.0.1:40000"),
            cap,
        ))
    };
    let (first, second) = (client(), client());
    let request = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n";
    let response = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    let (written, wait) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        // The reader thread's ring is registered first (it served another
        // connection before), so it is drained first.
        let (first, second, t) = (&first, &second, &t);
        let reader = s.spawn(move || {
            let mut c = first.lock().unwrap();
            let _ = c.on_outbound(request, now, t);
            let _ = c.on_inbound(response, now, t);
            drop(c);
            wait.recv().unwrap();
            let _ = second.lock().unwrap().on_inbound(response, now, t);
        });
        while cap.rings.count() == 0 {
            std::thread::yield_now();
        }
        let _ = second.lock().unwrap().on_outbound(request, now, t);
        written.send(()).unwrap();
        reader.join().unwrap();
    });
    for c in [&first, &second] {
        c.lock().unwrap().on_close(now, CloseReason::Closed, &t);
    }
    cap.drain(&t);
    let spans = spans.0.lock().unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    for s in spans.iter() {
        assert_eq!(
            s.attr("http.response.status_code"),
            Some(&201i64.into()),
            "{s:?}"
        );
    }
}

/// Unsampled exchanges (the caller's `traceparent` says `-00`) are framed
/// but not recorded: the sampled ones around them still give the direct
/// path's spans, and a connection with only unsampled exchanges pushes no
/// record at all.
#[test]
fn unsampled_exchanges_are_not_recorded() {
    const OFF: &[u8] = b"GET /off HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n\r\n";
    compare(
        true,
        &[
            Step::In(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Step::In(OFF),
            Step::Out(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ),
            Step::In(b"POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
            Step::Out(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
            Step::In(OFF),
            Step::Out(b"HTTP/1.1 204 No Content\r\n\r\n"),
        ],
    );
    let (t, spans) = tracer();
    let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
    let mut c = Connection::captured(
        crate::http::Role::Server,
        addr("127.0.0.1:40000"),
        addr("127.0.0.1:8000"),
        cap,
    );
    let now = SystemTime::now();
    for _ in 0..3 {
        let _ = c.on_inbound(OFF, now, &t);
        let _ = c.on_outbound(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", now, &t);
    }
    c.on_close(now, CloseReason::Closed, &t);
    crate::context::clear_active_all();
    assert_eq!(cap.drain(&t), 0, "no record for unsampled exchanges");
    assert!(spans.0.lock().unwrap().is_empty());
    assert_eq!(cap.dropped(), 0);
}

/// Found by the `capture_differential` fuzz target: nothing sent unseen
/// (`sendfile` of 0 bytes) while a response body framed by the close
/// arrives.
#[test]
fn nothing_sent_unseen_during_a_body_framed_by_the_close() {
    compare(
        false,
        &[
            Step::Out(b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\n"),
            Step::Opaque(3),
            Step::In(b"HTTP/1.1 200 OK\r\nCLeng\0\0\0\0\0\0\0\0Th: 3\r\n\r\nab"),
            Step::Opaque(0),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: a status line with
/// many spaces after the version, which the parser allows.
#[test]
fn a_status_line_with_spaces_after_the_version() {
    compare(
        false,
        &[
            Step::Out(b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\n"),
            Step::Opaque(3),
            Step::In(b"HTTP/1.1    200 OK\r\nX: 3\r\n\r\nabc"),
            Step::Out(b"GET  /next  HTTP/1.1\r\n\r\n"),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: bytes that are not a
/// request after an upgrade request whose (non-`101`) response body is
/// still arriving: a tunnel to the parser, which ignores them, not the end.
#[test]
fn not_a_request_while_an_upgrade_is_answered_with_a_body() {
    compare(
        false,
        &[
            Step::Out(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            Step::In(b"HTTP/1.1 340 Not Modified\r\nContent-Length: 10\r\n\r\n"),
            Step::Out(b"10\r\n\r\n"),
            Step::In(b"0123456789"),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: a status line whose
/// code is not a number, arriving while the request head is unfinished:
/// the parser's detector accepts `HTTP/1.1`, and the head is judged only
/// once it ends (here it never does).
#[test]
fn a_bad_status_code_in_a_head_that_does_not_end() {
    compare(
        false,
        &[
            Step::Out(b"GET /ws HTTP/1.1\r\nUpgrade: x\r\nConnection: Upgrade\r\x00\x01\n"),
            Step::In(b"HTTP/1.1 3ed\r\n\x91\x91HEADclose"),
            Step::Out(b"\x91\x91Cont\ntoken\r\nHost: h\r\n\r\n"),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: bytes sent unseen
/// after a request with broken framing, while the requests are ignored.
#[test]
fn unseen_bytes_while_requests_are_ignored() {
    compare(
        false,
        &[
            Step::Out(b"POST /p HTTP/1.1\r\nContent-Length: h\r\n\r\narc"),
            Step::In(b"HTTP/1.1 200 OK\r\n\r\n5\r\nhello"),
            Step::Opaque(0),
            Step::Opaque(5),
            Step::In(b"more"),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: a response whose
/// `Content-Length` value is a control byte. httparse (set to skip invalid
/// header lines) ignores that line, so the parser frames the body by the
/// close; the framer must not read the line either (it stopped there as on
/// bytes that are not HTTP, ending the span at that call, not at the
/// close).
#[test]
fn a_content_length_with_a_control_byte_is_ignored() {
    compare(
        false,
        &[
            Step::Out(b"GET /a HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Step::Out(b"GET /b HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: \x13\r\n\r\nuntil the close"),
        ],
    );
    // A byte the parser's trimming would take for a blank (form feed).
    compare(
        false,
        &[
            Step::Out(b"GET /a HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: \x0c2\r\n\r\nok"),
            Step::Eof,
        ],
    );
    // A request's: no body.
    compare(
        true,
        &[
            Step::In(b"POST /a HTTP/1.1\r\nContent-Length: 4\x7f\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Step::In(b"GET /b HTTP/1.1\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
}

/// As [`a_content_length_with_a_control_byte_is_ignored`], for
/// `Transfer-Encoding`: a value with a control byte says nothing.
#[test]
fn a_transfer_encoding_with_a_control_byte_is_ignored() {
    compare(
        false,
        &[
            Step::Out(b"GET /a HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \x13\r\nContent-Length: 2\r\n\r\nok"),
            Step::Out(b"GET /b HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
    compare(
        true,
        &[
            Step::In(b"GET /b HTTP/1.1\r\nTransfer-Encoding: chunked\x01\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Step::In(b"GET /c HTTP/1.1\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
}

/// A response may put blanks between a header's name and its colon (the
/// parser has httparse allow it there): the framer reads such a
/// `Content-Length` too, and the next exchange is framed alike.
#[test]
fn a_response_framing_name_may_be_followed_by_blanks() {
    compare(
        false,
        &[
            Step::Out(b"GET /a HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
            Step::Out(b"GET /b HTTP/1.1\r\n\r\n"),
            Step::In(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding\t \t: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            ),
            Step::Out(b"GET /c HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
}

/// A response's framing field continued on a folded line (obs-fold, which
/// the parser has httparse allow in responses): its value is read whole,
/// CR LF and all, as the parser reads it (not a number, then), not as the
/// first line alone.
#[test]
fn a_folded_content_length_in_a_response() {
    compare(
        false,
        &[
            Step::Out(b"GET /a HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n 3\r\n\r\nok"),
            Step::Out(b"GET /b HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Step::Eof,
        ],
    );
    // Folded twice, with bare line feeds; a folded `Transfer-Encoding`
    // (not `chunked` then: the body runs to the close); a folded line that
    // frames nothing.
    compare(
        false,
        &[
            Step::Out(b"GET /a HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\tmore\r\nContent-Length:\n 2\n\t \r\n\r\nok"),
            Step::Eof,
        ],
    );
    compare(
        false,
        &[
            Step::Out(b"GET /a HTTP/1.1\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\tmore\r\nContent-Length: 2\r\n\r\nok"),
            Step::Out(b"GET /b HTTP/1.1\r\n\r\n"),
            Step::In(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n x\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            ),
            Step::Eof,
        ],
    );
}

/// Two `traceparent` lines, the first invalid, in a request received and
/// in one the app sends.
#[test]
fn two_traceparent_lines_the_first_invalid() {
    compare(
        true,
        &[
            Step::In(b"GET / HTTP/1.1\r\ntraceparent: nonsense\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Step::In(b"GET / HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntraceparent: nonsense\r\n\r\n"),
            Step::Out(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
    // An app's own request, as a client: whether a context is inserted.
    compare(
        false,
        &[
            Step::Out(b"GET / HTTP/1.1\r\ntraceparent: nonsense\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Step::Out(b"GET / HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntraceparent: nonsense\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
    );
}

/// Found by the `capture_differential` fuzz target: a blank-line byte
/// after a head, before the next request, does not start that request
/// (the parser skips it): its span starts with the call that carries its
/// first byte.
#[test]
fn a_stray_line_end_between_requests_does_not_start_the_next() {
    for tail in [&b"\r"[..], b"\r\n", b"\n\r\n"] {
        let mut first = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        first.extend_from_slice(tail);
        compare(
            false,
            &[
                Step::Out(&first),
                Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
                Step::Out(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
                Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
            ],
        );
    }
}

/// Found by the `capture_differential` fuzz target: after a request asking
/// to upgrade, the client wrote the start of bytes that are no request (a
/// lower-case word) at the end of the head's call. The framer took them as
/// a request head starting and inserted a `traceparent` into the next call;
/// the parser, whose detector wants an upper-case method, took them as the
/// tunnel.
#[test]
fn a_lower_case_word_after_an_upgrade_request_is_no_head() {
    compare(
        false,
        &[
            Step::Out(
                b"GET /a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\na",
            ),
            Step::Out(b"bc1-01\r\n\r\n"),
            Step::In(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
            Step::Eof,
        ],
    );
}

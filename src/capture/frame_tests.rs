use super::*;

/// What a whole stream framed to: (head bytes, body bytes, content, heads
/// completed, bodies ended), or the stop.
#[derive(Debug, PartialEq, Eq)]
struct Framed {
    heads: Vec<Vec<u8>>,
    body_bytes: usize,
    content: u64,
    bodies: usize,
    stop: Option<Stop>,
}

fn frame(side: Side, kinds: &[ReqKind], input: &[u8], step: usize) -> Framed {
    let mut f = Framer::new(side);
    let mut expect = Expect::default();
    expect.0.extend(kinds.iter().copied());
    let mut got = Framed {
        heads: Vec::new(),
        body_bytes: 0,
        content: 0,
        bodies: 0,
        stop: None,
    };
    let mut current = Vec::new();
    for piece in input.chunks(step.max(1)) {
        let r = f.feed(piece, &mut expect, &mut |seg| match seg {
            Seg::Head {
                bytes, complete, ..
            } => {
                current.extend_from_slice(bytes);
                if let Some(whole) = complete {
                    assert_eq!(whole, &current[..], "the whole head is given");
                    got.heads.push(std::mem::take(&mut current));
                }
            }
            Seg::Tunnel { .. } => {}
            Seg::Body {
                bytes,
                content,
                ended,
                ..
            } => {
                got.body_bytes += bytes.len();
                got.content += content;
                got.bodies += usize::from(ended);
            }
        });
        if let Err(e) = r {
            got.stop = Some(e);
            break;
        }
    }
    got
}

fn heads(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|h| h.as_bytes().to_vec()).collect()
}

#[track_caller]
fn same_at_every_split(side: Side, kinds: &[ReqKind], input: &str, want: Framed) {
    for step in 1..=input.len() {
        assert_eq!(
            frame(side, kinds, input.as_bytes(), step),
            want,
            "{input:?} in pieces of {step}"
        );
    }
}

#[test]
fn keep_alive_requests_with_and_without_bodies() {
    let a = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let b = "POST /b HTTP/1.1\r\nContent-Length: 5\r\nHost: x\r\n\r\n";
    let c = "PUT /c HTTP/1.1\nTransfer-Encoding: gzip, chunked\n\n";
    let input = format!("{a}{b}hello{c}3\r\nabc\r\n0\r\n\r\n");
    same_at_every_split(
        Side::Requests,
        &[],
        &input,
        Framed {
            heads: heads(&[a, b, c]),
            body_bytes: 5 + 13,
            content: 8,
            bodies: 2,
            stop: None,
        },
    );
}

#[test]
fn responses_follow_their_requests() {
    let cont = "HTTP/1.1 100 Continue\r\n\r\n";
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
    let none = "HTTP/1.1 204 No Content\r\n\r\n";
    let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    let input = format!("{cont}{ok}abc{head}{none}{chunked}1\r\nz\r\n0\r\nX-T: 1\r\n\r\n");
    same_at_every_split(
        Side::Responses,
        &[
            ReqKind::Normal,
            ReqKind::Head,
            ReqKind::Normal,
            ReqKind::Normal,
        ],
        &input,
        Framed {
            heads: heads(&[cont, ok, head, none, chunked]),
            body_bytes: 3 + 19,
            content: 4,
            bodies: 2,
            stop: None,
        },
    );
}

#[test]
fn a_response_without_length_lasts_until_the_close() {
    let h = "HTTP/1.0 200 OK\r\nServer: x\r\n\r\n";
    let input = format!("{h}everything after");
    same_at_every_split(
        Side::Responses,
        &[ReqKind::Normal],
        &input,
        Framed {
            heads: heads(&[h]),
            body_bytes: 16,
            content: 16,
            bodies: 0,
            stop: None,
        },
    );
}

#[test]
fn switching_protocols_and_tunnels_end_http() {
    let up = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    let got = frame(
        Side::Responses,
        &[ReqKind::Upgrade],
        format!("{up}\x01\x05hello").as_bytes(),
        7,
    );
    assert_eq!(got.heads, heads(&[up]));
    assert_eq!(got.stop, Some(Stop::Switched));
    let ok = "HTTP/1.1 200 Connection established\r\n\r\n";
    let got = frame(
        Side::Responses,
        &[ReqKind::Connect],
        format!("{ok}\x16\x03\x01").as_bytes(),
        100,
    );
    assert_eq!(got.stop, Some(Stop::Switched));
}

#[test]
fn leading_blank_lines_belong_to_the_head() {
    let a = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    same_at_every_split(
        Side::Requests,
        &[],
        a,
        Framed {
            heads: heads(&[a]),
            body_bytes: 0,
            content: 0,
            bodies: 0,
            stop: None,
        },
    );
}

#[test]
fn garbage_and_broken_framing_stop() {
    for (side, input, stop) in [
        (Side::Requests, "\x16\x03\x01 hello\r\n\r\n", Stop::NotHttp),
        (
            Side::Responses,
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            Stop::NotHttp,
        ),
        (Side::Responses, "HTTP/1.1 2x0 OK\r\n\r\n", Stop::NotHttp),
        (
            Side::Responses,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            Stop::BadBody,
        ),
    ] {
        for step in 1..=input.len() {
            let got = frame(side, &[ReqKind::Normal], input.as_bytes(), step);
            assert_eq!(got.stop, Some(stop), "{input:?} in pieces of {step}");
        }
    }
}

#[test]
fn an_endless_head_stops_at_the_cap() {
    let mut f = Framer::new(Side::Requests);
    let mut expect = Expect::default();
    let line = vec![b'a'; 1024];
    let mut stopped = false;
    for _ in 0..(MAX_FRAMED_HEAD / 1024 + 2) {
        if f.feed(&line, &mut expect, &mut |_| {}).is_err() {
            stopped = true;
            break;
        }
    }
    assert!(stopped);
    assert!(f.partial.len() <= MAX_FRAMED_HEAD);
}

#[test]
fn too_many_requests_in_flight_stop() {
    let mut f = Framer::new(Side::Requests);
    let mut expect = Expect::default();
    let req = b"GET / HTTP/1.1\r\n\r\n".repeat(MAX_IN_FLIGHT + 1);
    assert_eq!(f.feed(&req, &mut expect, &mut |_| {}), Err(Stop::TooMany));
    assert_eq!(expect.len(), MAX_IN_FLIGHT);
}

#[test]
fn sent_head_tells_where_the_empty_line_may_start() {
    let mut f = Framer::new(Side::Requests);
    let mut expect = Expect::default();
    f.feed(b"GET / HTTP/1.1\r\nHost: x\r\n", &mut expect, &mut |_| {})
        .unwrap();
    let (kept, after_lf, after_lf_cr) = f.sent_head();
    assert_eq!(kept, b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert!(after_lf && !after_lf_cr);
    f.feed(b"\r", &mut expect, &mut |_| {}).unwrap();
    assert!(f.sent_head().2);
    f.feed(b"\n", &mut expect, &mut |_| {}).unwrap();
    assert!(f.at_head_start());
}

#[test]
fn unseen_body_bytes_are_skipped() {
    let mut f = Framer::new(Side::Responses);
    let mut expect = Expect::awaiting(1);
    f.feed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        &mut expect,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(f.skip(4, &mut expect), Ok(false));
    assert_eq!(f.skip(6, &mut expect), Ok(true));
    assert!(f.at_head_start());
    assert_eq!(f.skip(1, &mut expect), Err(Stop::NotHttp));
}

#[test]
fn an_answer_to_no_request_stops_as_the_parser_does() {
    let mut f = Framer::new(Side::Responses);
    let mut expect = Expect::default();
    let r = f.feed(b"HTTP/1.1 200 OK\r\n\r\n", &mut expect, &mut |_| {});
    assert_eq!(r, Err(Stop::NotHttp));
    let mut f = Framer::new(Side::Responses);
    assert_eq!(
        f.feed(b"HTTX", &mut Expect::awaiting(1), &mut |_| {}),
        Err(Stop::NotHttp),
        "known not HTTP at its fifth byte"
    );
    let mut f = Framer::new(Side::Requests);
    assert_eq!(
        f.feed(b"GE(", &mut Expect::default(), &mut |_| {}),
        Err(Stop::NotHttp)
    );
}

#[test]
fn requests_with_broken_framing_are_followed_by_ignored_bytes() {
    for head in [
        "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    ] {
        let mut f = Framer::new(Side::Requests);
        let mut expect = Expect::default();
        let mut heads = 0;
        f.feed(head.as_bytes(), &mut expect, &mut |s| {
            heads += usize::from(matches!(
                s,
                Seg::Head {
                    complete: Some(_),
                    ..
                }
            ))
        })
        .unwrap();
        assert_eq!(heads, 1, "{head:?}");
        assert!(f.ignoring(), "{head:?}");
        assert_eq!(
            f.feed(b"anything at all", &mut expect, &mut |_| panic!()),
            Ok(())
        );
    }
}

/// A header line whose value holds a control byte (but a tab) is one
/// httparse skips, so the parser never reads it: neither does the framer.
#[test]
fn lines_httparse_skips_are_not_read() {
    for head in [
        "POST / HTTP/1.1\r\nContent-Length: \x13\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 4\x7f\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\x01\r\n\r\n",
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\x1b\r\n\r\n",
    ] {
        let mut f = Framer::new(Side::Requests);
        let mut expect = Expect::default();
        f.feed(head.as_bytes(), &mut expect, &mut |_| {}).unwrap();
        assert!(f.at_head_start(), "{head:?}: no body");
        assert_eq!(expect.latest(), Some(ReqKind::Normal), "{head:?}");
    }
    for head in [
        "HTTP/1.1 200 OK\r\nContent-Length: \x13\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \x0c2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: \x13\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let mut f = Framer::new(Side::Responses);
        let mut expect = Expect::awaiting(1);
        let r = f.feed(head.as_bytes(), &mut expect, &mut |_| {});
        assert_eq!(r, Ok(()), "{head:?}");
        if head.ends_with("ok") {
            assert!(f.at_head_start(), "{head:?}: its length is read");
        } else {
            assert!(f.until_close(), "{head:?}: framed by the close");
        }
    }
}

#[test]
fn line_feeds_are_found_at_every_length_and_position() {
    // Every length up to three blocks, line feeds at pseudo-random places
    // (the overlapping last block must give none twice or out of order).
    let mut seed = 7u32;
    for len in 0..50usize {
        for _ in 0..20 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    if (seed >> 16).is_multiple_of(4) {
                        b'\n'
                    } else {
                        b'a'
                    }
                })
                .collect();
            let want: Vec<usize> = (0..len).filter(|&i| data[i] == b'\n').collect();
            let got: Vec<usize> = LineFeeds::new(&data).collect();
            assert_eq!(got, want, "{data:?}");
        }
    }
}

/// A request head is read for other carriers (B3, `baggage`) on the app's
/// thread only when a line may be one: not for every `X-` line a proxy adds.
#[test]
fn only_lines_that_may_be_carriers_send_the_head_to_be_read_for_them() {
    let others = |line: &str| {
        let head = format!("GET / HTTP/1.1\r\nHost: h\r\n{line}\r\n\r\n");
        let mut f = Framer::new(Side::Requests);
        let mut seen = None;
        f.feed(head.as_bytes(), &mut Expect::default(), &mut |seg| {
            if let Seg::Head {
                context: Some(cx), ..
            } = seg
            {
                seen = Some(cx.others);
            }
        })
        .unwrap();
        seen.expect("a complete head")
    };
    for line in [
        "X-B3-TraceId: 463ac35c9f6413ad48485a3953bb6124",
        "x-b3-spanid: a2fb4a1d1a96d312",
        "X-B3-Sampled: 1",
        "X-B3-Flags: 1",
        "b3: 463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1",
        "B3: 0",
        "baggage: k=v",
        "Baggage: k=v",
    ] {
        assert!(others(line), "{line}");
    }
    for line in [
        "X-Forwarded-For: 10.0.0.1",
        "X-Request-Id: 1234",
        "x-b3: 1",
        "Bar: 1",
        "Accept: */*",
    ] {
        assert!(!others(line), "{line}");
    }
}

/// A request line's method is taken by the parser's detector's rule
/// (upper-case letters, `-` or `_` after the first, at most 20): a head the
/// parser refuses is not framed as a request, in one call or over many.
#[test]
fn a_method_is_read_by_the_parsers_rule() {
    for (method, ok) in [
        ("GET", true),
        ("M-SEARCH", true),
        ("X_CUSTOM", true),
        ("ABCDEFGHIJKLMNOPQRST", true),
        ("get", false),
        ("Get", false),
        ("-GET", false),
        ("_GET", false),
        ("ABCDEFGHIJKLMNOPQRSTU", false),
        ("GE1", false),
    ] {
        let head = format!("{method} / HTTP/1.1\r\nHost: h\r\n\r\n");
        for step in [1, 2, 5, head.len()] {
            let mut f = Framer::new(Side::Requests);
            let mut expect = Expect::default();
            let mut r = Ok(());
            for piece in head.as_bytes().chunks(step) {
                r = f.feed(piece, &mut expect, &mut |_| {});
                if r.is_err() {
                    break;
                }
            }
            assert_eq!(r.is_ok(), ok, "{method}, {step} bytes per call: {r:?}");
            assert_eq!(
                crate::http::detect::detect_request(head.as_bytes())
                    == crate::http::detect::Detect::Yes,
                ok,
                "{method}: the detector"
            );
        }
    }
}

/// What one pass over `data` said, against `data`'s own bytes.
fn said(data: &[u8], side: Side, memo: bool) -> String {
    let mut reader = LineReader::new(side);
    let fresh = if memo {
        scan_remembered(data, &mut reader)
    } else {
        scan_fresh(data, &mut reader)
    };
    let fresh = match fresh {
        Fresh::Complete(end) => format!("complete at {end}"),
        Fresh::NotHttp => "not HTTP".into(),
        Fresh::Partial => "partial".into(),
    };
    format!(
        "{fresh}: {:?}, target {:?}",
        reader.info,
        reader.info.context.target()
    )
}

/// The head this thread keeps for `side`, if any.
fn kept(side: Side) -> Option<Vec<u8>> {
    MEMO.with(|m| {
        let m = m.borrow();
        let k = &m.as_ref()?[usize::from(side == Side::Responses)];
        k.facts.as_ref().map(|_| k.bytes[..k.len].to_vec())
    })
}

/// A head met again on the same thread is taken from the memo: what it says
/// is what reading it says, read against the new bytes (its target, what
/// follows it), and a head that only starts like the kept one is read.
#[test]
fn a_head_met_again_says_what_reading_it_says() {
    // A thread of its own: its memo starts empty.
    std::thread::spawn(|| {
        let req = |s: &str| (Side::Requests, s.to_owned());
        let resp = |s: &str| (Side::Responses, s.to_owned());
        let long = format!("GET /long HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(600));
        let heads = [
            req("GET /a?q=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\n\r\n"),
            req("GET /a?q=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\nX: 1\r\n\r\n"),
            req("\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            req("POST /b HTTP/1.1\r\nContent-Length: 50\r\n\r\n"),
            req("POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            req("HEAD /c HTTP/1.1\r\n\r\n"),
            req("CONNECT h:443 HTTP/1.1\r\n\r\n"),
            req("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            req("GET /d HTTP/1.1\r\nb3: 1\r\n\r\n"),
            req("GET /e HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"),
            req("GET /e HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01\r\n\r\n"),
            req("GET /f HTTP/1.1\r\ntracestate: k=v\r\n\r\n"),
            req("get /g HTTP/1.1\r\n\r\n"),
            req("GET /h HTTP/1.1\r\nHost: h\r\n"),
            (Side::Requests, long),
            resp("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 139\r\nConnection: keep-alive\r\n\r\n"),
            resp("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 1390\r\nConnection: keep-alive\r\n\r\n"),
            resp("HTTP/1.1 204 No Content\r\n\r\n"),
            resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
            resp("HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\n"),
        ];
        let tails: [&[u8]; 3] = [b"", b"hello", b"GET /next HTTP/1.1\r\n\r\n"];
        let mut hits = 0;
        // Each head after each other one, twice, with what follows it
        // varied: the memo never changes what a pass says.
        for round in 0..2 {
            for (i, (side, head)) in heads.iter().enumerate() {
                for tail in tails {
                    let mut data = head.as_bytes().to_vec();
                    data.extend_from_slice(tail);
                    let before = kept(*side);
                    hits += usize::from(before.as_deref().is_some_and(|k| data.starts_with(k)));
                    assert_eq!(
                        said(&data, *side, true),
                        said(&data, *side, false),
                        "round {round}, head {i} {head:?}, then {tail:?}"
                    );
                }
            }
        }
        assert!(hits >= 30, "the memo served {hits} passes");
        // What is kept, and what is not.
        let kept_after = |side, head: &str| {
            said(head.as_bytes(), side, true);
            kept(side)
        };
        let plain = "GET /p HTTP/1.1\r\n\r\n";
        assert_eq!(kept_after(Side::Requests, plain).as_deref(), Some(plain.as_bytes()));
        for head in [&heads[9].1, &heads[11].1, &heads[14].1, &heads[13].1, &heads[12].1] {
            assert_eq!(
                kept_after(Side::Requests, head).as_deref(),
                Some(plain.as_bytes()),
                "{head:?} is not kept"
            );
        }
        let folded = &heads[19].1;
        let before = kept(Side::Responses);
        assert_eq!(kept_after(Side::Responses, folded), before, "folded lines are not kept");
    })
    .join()
    .unwrap();
}

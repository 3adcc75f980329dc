//! Tests of [`span_parts`]: one table row per situation, each listing the
//! attributes it must have (`Some`) and must not have (`None`).

use std::time::SystemTime;

use super::*;

fn exchange(method: &str, target: &str, host: Option<&str>, status: Option<u16>) -> HttpExchange {
    HttpExchange {
        method: Text::Owned(method.to_owned()),
        target: Text::copy(target),
        version: Some(1),
        host: host.map(Text::copy),
        status,
        ..HttpExchange::empty(0, SystemTime::UNIX_EPOCH)
    }
}

fn addr(s: &str) -> Option<Address> {
    Some(Address::Inet(s.parse().unwrap()))
}

fn unix(name: &[u8]) -> Option<Address> {
    Address::unix(name)
}

fn s(v: &str) -> Option<AttrValue> {
    Some(AttrValue::from(v))
}

fn i(v: i64) -> Option<AttrValue> {
    Some(AttrValue::Int(v))
}

fn attr<'a>(parts: &'a HttpSpanParts, key: &str) -> Option<&'a AttrValue> {
    parts
        .attributes
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

struct Case {
    name: &'static str,
    ex: HttpExchange,
    role: Role,
    ends: Endpoints,
    want: Vec<(&'static str, Option<AttrValue>)>,
}

fn cases() -> Vec<Case> {
    let client_ends = Endpoints::new(addr("10.0.0.1:8080"), addr("10.0.0.2:40000"));
    let server_ends = Endpoints::new(addr("192.0.2.7:51000"), addr("10.0.0.2:8000"));
    vec![
        Case {
            name: "client, Host with port, masked query",
            ex: exchange("GET", "/a?b=1&token=x", Some("example.com:8080"), Some(200)),
            role: Role::Client,
            ends: client_ends.clone(),
            want: vec![
                ("http.request.method", s("GET")),
                ("url.path", s("/a")),
                ("url.query", s("b=1&token=****")),
                ("url.scheme", s("http")),
                ("url.full", s("http://example.com:8080/a?b=1&token=****")),
                ("server.address", s("example.com")),
                ("server.port", i(8080)),
                ("client.address", None),
                ("network.peer.address", s("10.0.0.1")),
                ("network.peer.port", i(8080)),
                ("network.protocol.version", s("1.1")),
                ("http.response.status_code", i(200)),
                ("error.type", None),
                ("http.request.body.size", None),
            ],
        },
        Case {
            name: "client, no Host: the peer's address",
            ex: exchange("GET", "/x", None, Some(204)),
            role: Role::Client,
            ends: Endpoints::new(addr("[::1]:8080"), None),
            want: vec![
                ("url.full", s("http://[::1]:8080/x")),
                ("server.address", s("::1")),
                ("server.port", i(8080)),
                ("network.peer.address", s("::1")),
                ("url.query", None),
            ],
        },
        Case {
            name: "client, no Host, default port left out of url.full",
            ex: exchange("GET", "/", None, Some(200)),
            role: Role::Client,
            ends: Endpoints {
                scheme: "https",
                ..Endpoints::new(addr("[::ffff:1.2.3.4]:443"), None)
            },
            want: vec![
                ("url.full", s("https://1.2.3.4/")),
                ("url.scheme", s("https")),
                ("server.address", s("1.2.3.4")),
                ("server.port", i(443)),
                ("network.peer.address", s("1.2.3.4")),
            ],
        },
        Case {
            name: "client, Host without port: the scheme's default",
            ex: exchange("POST", "/p?", Some("example.com"), Some(201)),
            role: Role::Client,
            ends: client_ends.clone(),
            want: vec![
                ("url.full", s("http://example.com/p")),
                ("server.port", i(80)),
                ("url.query", None),
                ("network.peer.port", i(8080)),
            ],
        },
        Case {
            name: "client, IPv6 Host",
            ex: exchange("GET", "/v6", Some("[2001:db8::1]:8443"), Some(200)),
            role: Role::Client,
            ends: client_ends.clone(),
            want: vec![
                ("url.full", s("http://[2001:db8::1]:8443/v6")),
                ("server.address", s("2001:db8::1")),
                ("server.port", i(8443)),
            ],
        },
        Case {
            name: "client through a proxy: absolute form",
            ex: exchange(
                "GET",
                "http://user:pw@example.com/p?password=1#frag",
                Some("example.com"),
                Some(200),
            ),
            role: Role::Client,
            ends: Endpoints::new(addr("10.0.0.9:3128"), None),
            want: vec![
                (
                    "url.full",
                    s("http://REDACTED:REDACTED@example.com/p?password=****"),
                ),
                ("url.path", s("/p")),
                ("url.query", s("password=****")),
                ("server.address", s("example.com")),
                ("server.port", i(80)),
                ("network.peer.port", i(3128)),
            ],
        },
        Case {
            name: "client, absolute form without a path",
            ex: exchange("GET", "HTTPS://[::1]:9443", None, Some(200)),
            role: Role::Client,
            ends: client_ends.clone(),
            want: vec![
                ("url.full", s("https://[::1]:9443/")),
                ("url.path", s("/")),
                ("url.scheme", s("https")),
                ("server.address", s("::1")),
                ("server.port", i(9443)),
            ],
        },
        Case {
            name: "client CONNECT: authority form",
            ex: exchange(
                "CONNECT",
                "example.com:443",
                Some("example.com:443"),
                Some(200),
            ),
            role: Role::Client,
            ends: client_ends.clone(),
            want: vec![
                ("url.path", None),
                ("url.full", s("http://example.com:443")),
                ("server.address", s("example.com")),
                ("server.port", i(443)),
            ],
        },
        Case {
            name: "client OPTIONS *",
            ex: exchange("OPTIONS", "*", Some("h:81"), Some(200)),
            role: Role::Client,
            ends: client_ends.clone(),
            want: vec![("url.path", s("*")), ("url.full", s("http://h:81"))],
        },
        Case {
            name: "client 404 is an error",
            ex: exchange("GET", "/missing", Some("h"), Some(404)),
            role: Role::Client,
            ends: client_ends.clone(),
            want: vec![
                ("error.type", s("404")),
                ("http.response.status_code", i(404)),
            ],
        },
        Case {
            name: "server, IPv6 Host",
            ex: exchange("GET", "/s?q=2", Some("[::1]:8080"), Some(200)),
            role: Role::Server,
            ends: server_ends.clone(),
            want: vec![
                ("url.full", None),
                ("url.path", s("/s")),
                ("url.query", s("q=2")),
                ("server.address", s("::1")),
                ("server.port", i(8080)),
                ("client.address", s("192.0.2.7")),
                ("client.port", i(51000)),
                ("network.peer.address", s("192.0.2.7")),
                ("network.peer.port", i(51000)),
            ],
        },
        Case {
            name: "server, no Host: the local address",
            ex: exchange("GET", "/", None, Some(200)),
            role: Role::Server,
            ends: server_ends.clone(),
            want: vec![("server.address", s("10.0.0.2")), ("server.port", i(8000))],
        },
        Case {
            name: "unix client, Host without port: no port made up",
            ex: exchange("GET", "/u?a=1", Some("localhost"), Some(200)),
            role: Role::Client,
            ends: Endpoints::new(unix(b"/run/app.sock\0"), None),
            want: vec![
                ("url.full", s("http://localhost/u?a=1")),
                ("server.address", s("localhost")),
                ("server.port", None),
                ("network.peer.address", s("/run/app.sock")),
                ("network.peer.port", None),
                ("network.transport", s("unix")),
                ("network.local.address", None),
            ],
        },
        Case {
            name: "unix client, Host with port keeps it",
            ex: exchange("GET", "/", Some("api:8080"), Some(200)),
            role: Role::Client,
            ends: Endpoints::new(unix(b"/run/app.sock"), None),
            want: vec![
                ("server.address", s("api")),
                ("server.port", i(8080)),
                ("network.peer.port", None),
            ],
        },
        Case {
            name: "unix client, no Host: the socket's name, no url.full",
            ex: exchange("GET", "/v1.43/info", None, Some(200)),
            role: Role::Client,
            ends: Endpoints::new(unix(b"\0docker"), None),
            want: vec![
                ("server.address", s("@docker")),
                ("server.port", None),
                ("url.full", None),
                ("url.path", s("/v1.43/info")),
                ("network.peer.address", s("@docker")),
                ("network.transport", s("unix")),
            ],
        },
        Case {
            name: "unix server, unnamed peer, no Host: the listening name",
            ex: exchange("GET", "/", None, Some(200)),
            role: Role::Server,
            ends: Endpoints::new(None, unix(b"/run/gunicorn.sock\0")),
            want: vec![
                ("server.address", s("/run/gunicorn.sock")),
                ("server.port", None),
                ("client.address", None),
                ("client.port", None),
                ("network.peer.address", None),
                ("network.peer.port", None),
                ("network.transport", s("unix")),
                ("network.local.address", s("/run/gunicorn.sock")),
            ],
        },
        Case {
            name: "unix server with a Host: the listening name still shows",
            ex: exchange("GET", "/", Some("localhost"), Some(200)),
            role: Role::Server,
            ends: Endpoints::new(None, unix(b"/run/gunicorn.sock")),
            want: vec![
                ("server.address", s("localhost")),
                ("server.port", None),
                ("network.local.address", s("/run/gunicorn.sock")),
            ],
        },
        Case {
            name: "tcp spans have no network.transport",
            ex: exchange("GET", "/", Some("h"), Some(200)),
            role: Role::Client,
            ends: client_ends.clone(),
            want: vec![("network.transport", None), ("network.local.address", None)],
        },
        Case {
            name: "server 404 is not an error",
            ex: exchange("GET", "/", Some("h"), Some(404)),
            role: Role::Server,
            ends: server_ends.clone(),
            want: vec![("error.type", None)],
        },
        Case {
            name: "server 503 is an error",
            ex: exchange("GET", "/", Some("h"), Some(503)),
            role: Role::Server,
            ends: server_ends.clone(),
            want: vec![("error.type", s("503"))],
        },
        Case {
            name: "unknown method",
            ex: exchange("PROPFIND", "/dav", Some("h"), Some(207)),
            role: Role::Server,
            ends: server_ends.clone(),
            want: vec![
                ("http.request.method", s("_OTHER")),
                ("http.request.method_original", s("PROPFIND")),
            ],
        },
        Case {
            name: "no status: the exchange error",
            ex: HttpExchange {
                error: Some("connection_closed"),
                ..exchange("GET", "/", Some("h"), None)
            },
            role: Role::Client,
            ends: Endpoints::default(),
            want: vec![
                ("error.type", s("connection_closed")),
                ("network.peer.address", None),
            ],
        },
        Case {
            name: "404 closed before its body was read: error.type 404, not connection_closed",
            ex: HttpExchange {
                error: Some("connection_closed"),
                ..exchange("GET", "/", Some("h"), Some(404))
            },
            role: Role::Client,
            ends: Endpoints::default(),
            want: vec![("error.type", s("404"))],
        },
        Case {
            name: "200 closed before its body was read: the status says it went well",
            ex: HttpExchange {
                error: Some("connection_closed"),
                ..exchange("GET", "/", Some("h"), Some(200))
            },
            role: Role::Client,
            ends: Endpoints::default(),
            want: vec![("error.type", None)],
        },
        Case {
            name: "body sizes",
            ex: HttpExchange {
                request_body_size: 3,
                response_body_size: 5,
                version: Some(0),
                user_agent: Some("curl/8.5".into()),
                ..exchange("POST", "/", Some("h"), Some(200))
            },
            role: Role::Server,
            ends: server_ends.clone(),
            want: vec![
                ("http.request.body.size", i(3)),
                ("http.response.body.size", i(5)),
                ("network.protocol.version", s("1.0")),
                ("user_agent.original", s("curl/8.5")),
            ],
        },
        Case {
            name: "nothing known",
            ex: HttpExchange {
                version: None,
                ..exchange("", "", None, None)
            },
            role: Role::Server,
            ends: Endpoints::default(),
            want: vec![
                ("http.request.method", s("_OTHER")),
                ("http.request.method_original", None),
                ("url.path", None),
                ("url.scheme", s("http")),
                ("server.address", None),
                ("network.protocol.version", None),
                ("http.response.status_code", None),
            ],
        },
    ]
}

#[test]
fn attributes_per_situation() {
    let masker = Masker::lumigo_defaults();
    for case in cases() {
        let parts = span_parts(&case.ex, case.role, &case.ends, &masker, Vec::new());
        for (key, want) in &case.want {
            assert_eq!(attr(&parts, key), want.as_ref(), "{}: {key}", case.name);
        }
        let mut keys: Vec<_> = parts.attributes.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "{}: no attribute twice", case.name);
        // The connection's attributes, and only they, are the encoded run.
        let in_run: Vec<&str> = match &parts.encoded {
            Some(run) => {
                let attrs = &parts.attributes[run.at..run.at + run.count];
                assert_eq!(
                    *crate::export::encode_attributes(attrs),
                    *run.bytes,
                    "{}",
                    case.name
                );
                attrs.iter().map(|(k, _)| *k).collect()
            }
            None => Vec::new(),
        };
        let of_connection: Vec<&str> = parts
            .attributes
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| CONNECTION_KEYS.contains(k))
            .collect();
        assert_eq!(in_run, of_connection, "{}", case.name);
    }
}

/// The attributes that come from the connection alone.
const CONNECTION_KEYS: [&str; 6] = [
    "client.address",
    "client.port",
    "network.peer.address",
    "network.peer.port",
    "network.transport",
    "network.local.address",
];

#[test]
fn a_connection_encodes_its_attributes_once() {
    let masker = Masker::lumigo_defaults();
    let mut ends = Endpoints::new(addr("10.1.2.3:5000"), None);
    let ex = exchange("GET", "/", Some("h"), Some(200));
    let first = span_parts(&ex, Role::Server, &ends, &masker, Vec::new());
    let again = span_parts(&ex, Role::Server, &ends, &masker, Vec::new());
    let (a, b) = (first.encoded.unwrap(), again.encoded.unwrap());
    assert!(Arc::ptr_eq(&a.bytes, &b.bytes), "shared, not encoded again");
    // As a client the same connection has other attributes: its own run.
    let client = span_parts(&ex, Role::Client, &ends, &masker, Vec::new());
    let c = client.encoded.unwrap();
    assert_eq!(c.count, 2, "network.peer.address and .port");
    assert_ne!(c.bytes, a.bytes);
    // Addresses learnt later make the runs anew.
    ends.fill(None, unix(b"/run/app.sock"));
    let after = span_parts(&ex, Role::Server, &ends, &masker, Vec::new());
    assert_eq!(
        after.encoded.unwrap().bytes,
        a.bytes,
        "no local address shown over TCP"
    );
    let mut ends = Endpoints::new(None, None);
    assert!(span_parts(&ex, Role::Server, &ends, &masker, Vec::new())
        .encoded
        .is_none());
    ends.fill(addr("10.9.9.9:4000"), None);
    let filled = span_parts(&ex, Role::Server, &ends, &masker, Vec::new());
    assert_eq!(filled.encoded.unwrap().count, 4);
}

#[test]
fn name_kind_and_status() {
    let masker = Masker::lumigo_defaults();
    let ends = Endpoints::default();
    /// Method, status, error, role, then the name and status wanted.
    type Row = (
        &'static str,
        Option<u16>,
        Option<&'static str>,
        Role,
        &'static str,
        SpanStatus,
    );
    let cases: &[Row] = &[
        (
            "GET",
            Some(200),
            None,
            Role::Client,
            "GET",
            SpanStatus::Unset,
        ),
        (
            "PATCH",
            Some(404),
            None,
            Role::Client,
            "PATCH",
            SpanStatus::Error("HTTP 404".into()),
        ),
        (
            "GET",
            Some(404),
            None,
            Role::Server,
            "GET",
            SpanStatus::Unset,
        ),
        (
            "GET",
            Some(500),
            None,
            Role::Server,
            "GET",
            SpanStatus::Error("HTTP 500".into()),
        ),
        (
            "GET",
            Some(302),
            None,
            Role::Client,
            "GET",
            SpanStatus::Unset,
        ),
        (
            "GET",
            None,
            Some("truncated"),
            Role::Server,
            "GET",
            SpanStatus::Error("truncated".into()),
        ),
        (
            "GET",
            Some(404),
            Some("connection_closed"),
            Role::Client,
            "GET",
            SpanStatus::Error("HTTP 404".into()),
        ),
        (
            "MKCOL",
            Some(201),
            None,
            Role::Client,
            "HTTP",
            SpanStatus::Unset,
        ),
        (
            "get",
            Some(200),
            None,
            Role::Client,
            "HTTP",
            SpanStatus::Unset,
        ),
    ];
    for (method, status, error, role, name, want) in cases {
        let ex = HttpExchange {
            error: *error,
            ..exchange(method, "/", None, *status)
        };
        let parts = span_parts(&ex, *role, &ends, &masker, Vec::new());
        assert_eq!(parts.name, *name, "{method} {status:?}");
        assert_eq!(parts.status, *want, "{method} {status:?} {role:?}");
        let kind = if *role == Role::Client {
            SpanKind::Client
        } else {
            SpanKind::Server
        };
        assert_eq!(parts.kind, kind);
    }
}

#[test]
fn host_and_port_splitting() {
    let cases = [
        ("example.com", ("example.com", None)),
        ("example.com:8080", ("example.com", Some(8080))),
        ("example.com:", ("example.com", None)),
        ("example.com:http", ("example.com", None)),
        ("[::1]", ("::1", None)),
        ("[::1]:80", ("::1", Some(80))),
        ("[::1", ("[::1", None)),
        ("::1", ("::1", None)),
        ("1.2.3.4:99999", ("1.2.3.4", None)),
    ];
    for (input, want) in cases {
        assert_eq!(split_host_port(input), want, "{input}");
    }
}

#[test]
fn target_forms() {
    let cases = [
        ("/p?q=1", (None, None, Some("/p"), Some("q=1"))),
        ("/p#f", (None, None, Some("/p"), None)),
        ("*", (None, None, Some("*"), None)),
        (
            "http://h:1/p?q",
            (Some("http"), Some("h:1"), Some("/p"), Some("q")),
        ),
        (
            "http://h?q",
            (Some("http"), Some("h"), Some("/"), Some("q")),
        ),
        ("ftp://h/p", (None, None, None, None)),
        ("h:443", (None, Some("h:443"), None, None)),
        ("", (None, None, None, None)),
    ];
    for (input, (scheme, authority, path, query)) in cases {
        let t = Target::parse(input);
        assert_eq!(
            (t.scheme, t.authority, t.path, t.query),
            (scheme, authority, path, query),
            "{input}"
        );
    }
}

#[test]
fn odd_targets_and_hosts_never_panic() {
    const PIECES: &[&str] = &[
        "/", "?", "#", "&", "=", "[", "]", ":", "@", "%", "%4", "%zz", "+", "http://", "HTTPS://",
        "ftp://", "::1", "80", "99999", "é", "token", "key=", " ", "",
    ];
    let masker = Masker::lumigo_defaults();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut pick = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        PIECES[(state % PIECES.len() as u64) as usize]
    };
    for round in 0..5000 {
        let target: String = (0..round % 9).map(|_| pick()).collect();
        let host: String = (0..round % 5).map(|_| pick()).collect();
        let ex = exchange(
            "GET",
            &target,
            Some(&host).filter(|h| !h.is_empty()).map(|h| h.as_str()),
            None,
        );
        for role in [Role::Client, Role::Server] {
            let parts = span_parts(
                &ex,
                role,
                &Endpoints::new(addr("[::1]:1"), None),
                &masker,
                Vec::new(),
            );
            assert_eq!(parts.name, "GET");
        }
    }
}

#[test]
fn ip_text_matches_the_standard_formatting() {
    use std::net::{Ipv4Addr, Ipv6Addr};
    for v4 in [
        Ipv4Addr::new(0, 0, 0, 0),
        Ipv4Addr::new(255, 255, 255, 255),
        Ipv4Addr::new(10, 0, 100, 9),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(1, 20, 199, 200),
    ] {
        assert_eq!(&*ip_text(IpAddr::V4(v4)), v4.to_string());
        assert_eq!(
            &*ip_text(IpAddr::V6(v4.to_ipv6_mapped())),
            v4.to_string(),
            "mapped shown as IPv4"
        );
    }
    let v6: Ipv6Addr = "2001:db8::8a2e:370:7334".parse().unwrap();
    assert_eq!(&*ip_text(IpAddr::V6(v6)), "2001:db8::8a2e:370:7334");
}

#[test]
fn endpoint_texts_are_formatted_once_and_shared() {
    let ends = Endpoints::new(addr("10.1.2.3:5000"), addr("[::1]:80"));
    let a = ends.peer_address().unwrap().clone();
    let b = ends.peer_address().unwrap().clone();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(&*a, "10.1.2.3");
    assert_eq!(ends.local_address().map(|s| &**s), Some("::1"));
    assert_eq!(Endpoints::default().peer_address(), None);
}

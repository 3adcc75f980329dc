use super::*;
use crate::span::AttrValue;
use std::time::SystemTime;

fn masker(patterns: &[&str]) -> Masker {
    Masker::new(&patterns.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>())
}

fn config(vars: &[(&str, &str)]) -> Config {
    Config::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| (*v).to_owned())
    })
}

#[test]
fn json_secrets_are_masked_at_any_depth() {
    let m = Masker::lumigo_defaults();
    let cases = [
        (r#"{"a":1}"#, r#"{"a":1}"#),
        (r#"{"password":"x"}"#, r#"{"password":"****"}"#),
        (
            r#"{"user":{"name":"bob","Password":"hunter2","n":[{"api_key":12}]}}"#,
            r#"{"user":{"name":"bob","Password":"****","n":[{"api_key":"****"}]}}"#,
        ),
        // A secret object or array is masked whole.
        (
            r#"{ "secret" : {"a": [1, "}"]}, "b": "c"}"#,
            r#"{ "secret" : "****", "b": "c"}"#,
        ),
        (
            r#"[{"token": true}, {"x": null}]"#,
            r#"[{"token": "****"}, {"x": null}]"#,
        ),
        // Strings that look like keys are values here.
        (
            r#"{"a":"password","b":["token"]}"#,
            r#"{"a":"password","b":["token"]}"#,
        ),
        // Escaped keys are decoded first; braces inside strings are text.
        (
            r#"{"pass\u0077ord":"x","q":"{\"k\":1"}"#,
            r#"{"pass\u0077ord":"****","q":"{\"k\":1"}"#,
        ),
        // Not quite JSON: a bare value runs to the next delimiter.
        (
            r#"{"password": hunter 2 , "a":1}"#,
            r#"{"password": "****" , "a":1}"#,
        ),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(mask_json(input, &m), want, "{input}");
    }
}

#[test]
fn cut_json_masks_every_pair_seen_and_the_cut_value() {
    let m = Masker::lumigo_defaults();
    let full = r#"{"a":{"password":"hunter2","user":"bob","token":"abcdef"},"b":1}"#;
    for cut in 0..=full.len() {
        let text = &full[..cut];
        let masked = mask_json(text, &m);
        assert!(!masked.contains("hunter"), "{text} -> {masked}");
        assert!(!masked.contains("abc"), "{text} -> {masked}");
        // Nothing else changes.
        if cut > r#"{"a":{"password":"hunter2","#.len() {
            assert!(
                masked.starts_with(r#"{"a":{"password":"****","#),
                "{masked}"
            );
        }
    }
    assert_eq!(
        mask_json(r#"{"a":{"password":"hun"#, &m),
        r#"{"a":{"password":"****""#
    );
    assert_eq!(mask_json(r#"{"passw"#, &m), r#"{"passw"#);
    assert_eq!(mask_json(r#"{"password": "#, &m), r#"{"password": "#);
}

#[test]
fn bodies_by_kind() {
    let m = Masker::lumigo_defaults();
    let json = br#"{"user":"bob","password":"x"}"#;
    let text =
        |body: &[u8], ct: Option<&str>| body_text(body, body.len() as u64, ct, None, &m, 2048);
    assert_eq!(
        text(json, Some("application/json")),
        r#"{"user":"bob","password":"****"}"#
    );
    // JSON without a content type is still JSON.
    assert_eq!(text(json, None), r#"{"user":"bob","password":"****"}"#);
    assert_eq!(
        text(
            b"user=bob&password=x&api_key=y",
            Some("application/x-www-form-urlencoded")
        ),
        "user=bob&password=****&api_key=****"
    );
    assert_eq!(text(b"hello world", Some("text/plain")), "hello world");
    // Binary: summarised, never dumped.
    assert_eq!(
        text(b"\x89PNG\r\n\x1a\n\0\0", Some("image/png")),
        "<binary body: 10 bytes, image/png>"
    );
    assert_eq!(text(b"a\0b", None), "<binary body: 3 bytes>");
    assert_eq!(
        text(b"\xff\xfe", Some("text/plain; charset=x")),
        "<binary body: 2 bytes, text/plain>"
    );
    assert_eq!(
        body_text(b"{}", 1000, Some("application/json"), Some("br"), &m, 2048),
        "<binary body: 1000 bytes, application/json>"
    );
    assert_eq!(
        body_text(b"not gzip", 8, None, Some("gzip"), &m, 2048),
        "<binary body: 8 bytes>"
    );
    // A character cut by the prefix is dropped, not a reason to call it binary.
    let e_acute = "é".as_bytes();
    assert_eq!(
        body_text(&[b'a', e_acute[0]], 10, None, None, &m, 2048),
        "a"
    );
    // Masked first, then cut to the limit.
    let long = br#"{"password":"a-long-secret-value","b":2}"#;
    assert_eq!(
        body_text(long, long.len() as u64, None, None, &m, 19),
        r#"{"password":"****","#
    );
    // `all`: the whole body.
    let all = masker(&[".*"]);
    assert_eq!(body_text(b"hello", 5, None, None, &all, 2048), "****");
    assert_eq!(body_text(json, 30, None, None, &all, 2048), "****");
}

#[test]
fn header_fields_and_their_json() {
    let head = b"POST /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer abc\r\nX-Api-Key: k\r\n\
Cookie: a=1\r\nAccept: a\r\naccept: b\r\nX-Quote: \"q\"\\\r\nReferer: http://h/p?token=t&x=1#f\r\n\
X-Folded: one\r\n two\r\n\r\n";
    let fields = header_fields(head);
    assert_eq!((fields[0].0.as_ref(), fields[0].1.as_ref()), ("host", "h"));
    assert_eq!(fields.last().unwrap().1, "one two");
    let m = Masker::lumigo_defaults();
    let masked: Vec<(String, Cow<'_, str>)> = fields
        .iter()
        .map(|(n, v)| (n.to_string(), mask_header(n, v, &masker(&["nothing"]), &m)))
        .collect();
    // Authorization and Cookie whatever the patterns; the referer's query
    // with the query rules.
    assert_eq!(
        headers_json(&masked, 2048),
        r#"{"host":"h","authorization":"****","x-api-key":"k","cookie":"****","accept":"a, b","x-quote":"\"q\"\\","referer":"http://h/p?token=****&x=1#f","x-folded":"one two"}"#
    );
    let masked: Vec<(String, Cow<'_, str>)> = fields
        .iter()
        .map(|(n, v)| (n.to_string(), mask_header(n, v, &m, &m)))
        .collect();
    let json = headers_json(&masked, 2048);
    assert!(json.contains(r#""x-api-key":"****""#), "{json}");
    // It is JSON.
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["accept"], "a, b");
    // A head cut inside a header: the part seen, masked by name.
    let cut = header_fields(b"GET / HTTP/1.1\r\nAuthorization: Bea");
    assert_eq!(mask_header(&cut[0].0, &cut[0].1, &masker(&[]), &m), "****");
    assert!(header_fields(b"GET / HTTP/1.1\r\nAuthoriz").is_empty());
}

#[test]
fn heads_with_invalid_utf8_give_the_same_fields_with_replacements() {
    // The same head read whole (valid UTF-8) and with one invalid byte in
    // a value: the fields agree but for that value.
    let valid = b"GET / HTTP/1.1\r\nhost: h\r\nX-Name: caf\xc3\xa9\r\n folded\r\n:bad\r\nnocolon\r\nAccept:  a \r\n\r\n";
    let invalid = b"GET / HTTP/1.1\r\nhost: h\r\nX-Name: caf\xe9\r\n folded\r\n:bad\r\nnocolon\r\nAccept:  a \r\n\r\n";
    let a = header_fields(valid);
    let b = header_fields(invalid);
    let names = |f: &[Field<'_>]| f.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&a), ["host", "x-name", "accept"]);
    assert_eq!(names(&a), names(&b));
    assert_eq!(a[1].1, "caf\u{e9} folded");
    assert_eq!(b[1].1, "caf\u{fffd} folded");
    assert_eq!((a[2].1.as_ref(), b[2].1.as_ref()), ("a", "a"));
    // Lower-case names are borrowed from the head, others made.
    assert!(matches!(a[0].0, Cow::Borrowed(_)));
    assert!(matches!(a[1].0, Cow::Owned(_)));
}

fn exchange() -> HttpExchange {
    let mut ex = HttpExchange::empty(0, SystemTime::UNIX_EPOCH);
    let body = br#"{"user":{"password":"p1"},"n":1}"#;
    ex.captured = captured(
        b"POST /login HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nX-Request-Id: r1\r\nAuthorization: Basic xyz\r\n\r\n",
        body,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-www-form-urlencoded\r\nSet-Cookie: s=1\r\nETag: e1\r\n\r\n",
        b"token=abc&ok=1",
    );
    ex.request_body_size = body.len() as u64;
    ex.response_body_size = 14;
    ex
}

fn attrs(rules: &PayloadRules, ex: &HttpExchange, role: Role) -> Vec<(&'static str, String)> {
    let mut attrs = Attributes::new();
    rules.push_attributes(ex, role, &mut attrs);
    attrs
        .into_iter()
        .map(|(k, v)| match v {
            AttrValue::Str(t) => (k, t.to_string()),
            other => (k, format!("{other:?}")),
        })
        .collect()
}

#[test]
fn exchange_attributes_follow_the_configuration() {
    let ex = exchange();
    let get =
        |a: &[(&str, String)], k: &str| a.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let a = attrs(&PayloadRules::from_config(&config(&[])), &ex, Role::Server);
    assert_eq!(
        get(&a, "http.request.headers").unwrap(),
        r#"{"host":"h","content-type":"application/json","x-request-id":"r1","authorization":"****"}"#
    );
    assert_eq!(
        get(&a, "http.request.body").unwrap(),
        r#"{"user":{"password":"****"},"n":1}"#
    );
    assert_eq!(
        get(&a, "http.response.headers").unwrap(),
        r#"{"content-type":"application/x-www-form-urlencoded","set-cookie":"****","etag":"e1"}"#
    );
    assert_eq!(get(&a, "http.response.body").unwrap(), "token=****&ok=1");
    assert_eq!(get(&a, "http.request.header.x-request-id"), None);

    // Per-area patterns and `all`, and headers named for attributes of
    // their own (on the side they are named for).
    let c = config(&[
        (
            "LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_HEADERS",
            r#"["x-request-id"]"#,
        ),
        (
            "LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_BODIES",
            r#"["n"]"#,
        ),
        ("LUMIGO_SECRET_MASKING_REGEX_HTTP_RESPONSE_BODIES", "all"),
        (
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
            "X-Request-Id,Host",
        ),
        (
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
            "etag",
        ),
        (
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
            "set-cookie",
        ),
    ]);
    let rules = PayloadRules::from_config(&c);
    let a = attrs(&rules, &ex, Role::Server);
    assert_eq!(
        get(&a, "http.request.headers").unwrap(),
        r#"{"host":"h","content-type":"application/json","x-request-id":"****","authorization":"****"}"#
    );
    assert_eq!(
        get(&a, "http.request.body").unwrap(),
        r#"{"user":{"password":"p1"},"n":"****"}"#
    );
    assert_eq!(get(&a, "http.response.body").unwrap(), "****");
    assert_eq!(get(&a, "http.request.header.x-request-id").unwrap(), "****");
    assert_eq!(get(&a, "http.request.header.host").unwrap(), "h");
    assert_eq!(get(&a, "http.response.header.etag").unwrap(), "e1");
    assert_eq!(get(&a, "http.response.header.set-cookie"), None);
    let a = attrs(&rules, &ex, Role::Client);
    assert_eq!(get(&a, "http.response.header.set-cookie").unwrap(), "****");
    assert_eq!(get(&a, "http.request.header.host"), None);

    // Off: nothing, even with bytes captured.
    let off = PayloadRules::from_config(&config(&[("LUMIGO_CAPTURE_PAYLOADS", "false")]));
    assert_eq!(off.body_limit(), 0);
    assert!(attrs(&off, &ex, Role::Server).is_empty());
    assert!(attrs(&PayloadRules::off(), &ex, Role::Server).is_empty());

    // The limit cuts every payload attribute.
    let short = PayloadRules::from_config(&config(&[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "12")]));
    for (k, v) in attrs(&short, &ex, Role::Server) {
        assert!(v.len() <= 12, "{k}: {v}");
    }
}

#[test]
fn no_head_no_attributes_and_empty_bodies_are_left_off() {
    let mut ex = exchange();
    ex.captured.as_mut().unwrap().response_head.clear();
    ex.request_body_size = 0;
    let a = attrs(&PayloadRules::default(), &ex, Role::Client);
    let keys: Vec<&str> = a.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["http.request.headers"]);
    // A body of some size of which nothing was seen.
    ex.request_body_size = 100;
    ex.captured.as_mut().unwrap().request_body.clear();
    let a = attrs(&PayloadRules::default(), &ex, Role::Client);
    let keys: Vec<&str> = a.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["http.request.headers"]);
}

#[test]
fn gzip_and_deflate_bodies_are_decoded_then_masked() {
    use std::io::Write;
    let m = Masker::lumigo_defaults();
    let mut doc = String::from("{\"items\":[");
    for i in 0..200 {
        doc.push_str(&format!("{{\"n\":{i},\"api_key\":\"k-{i}\"}},"));
    }
    doc.push_str("{}]}");
    let gzip = |level| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(doc.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let zipped = gzip(6);
    let size = zipped.len() as u64;
    // Whole: decoded up to the limit, every pair masked.
    let text = body_text(
        &zipped,
        size,
        Some("application/json"),
        Some("gzip"),
        &m,
        300,
    );
    assert!(text.len() > 200 && text.len() <= 300, "{text}");
    assert!(
        text.starts_with(r#"{"items":[{"n":0,"api_key":"****"},"#),
        "{text}"
    );
    assert!(!text.contains("k-"), "{text}");
    // A prefix of the compressed stream decodes as far as it goes.
    let stored = gzip(0);
    let text = body_text(
        &stored[..200],
        stored.len() as u64,
        None,
        Some("GZIP"),
        &m,
        2048,
    );
    assert!(
        text.starts_with(r#"{"items":[{"n":0,"api_key":"****"}"#),
        "{text}"
    );
    assert!(!text.contains("k-"), "{text}");
    // Small and complete: exactly the document, masked.
    let small = br#"{"password":"p","a":1}"#;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(small).unwrap();
    let z = e.finish().unwrap();
    assert_eq!(
        body_text(&z, z.len() as u64, None, Some("deflate"), &m, 2048),
        r#"{"password":"****","a":1}"#
    );
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(small).unwrap();
    let raw = e.finish().unwrap();
    assert_eq!(
        body_text(&raw, raw.len() as u64, None, Some("deflate"), &m, 2048),
        r#"{"password":"****","a":1}"#
    );
}

#[test]
fn multipart_fields_are_masked_by_name() {
    let m = Masker::lumigo_defaults();
    let ct = "multipart/form-data; boundary=\"XyZ\"";
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nbob\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter2\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"note\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--XyZ--\r\n";
    let want = body.replace("hunter2", "****");
    assert_eq!(
        body_text(body.as_bytes(), body.len() as u64, Some(ct), None, &m, 4096),
        want
    );
    // Cut inside the secret field: what is there is masked.
    let cut = &body[..body.find("hunter2").unwrap() + 3];
    let text = body_text(cut.as_bytes(), body.len() as u64, Some(ct), None, &m, 4096);
    assert!(text.ends_with("\r\n\r\n****"), "{text}");
    assert!(!text.contains("hun"), "{text}");
    // Without a boundary it is text, masked as a form would be.
    assert_eq!(
        body_text(
            b"password=x",
            10,
            Some("multipart/form-data"),
            None,
            &m,
            4096
        ),
        "password=****"
    );
}

/// Random text built from the pieces that matter (quotes, brackets,
/// escapes, secret keys, multi-byte characters): nothing panics, and a
/// secret value that follows a secret key never comes out.
#[test]
fn random_text_never_panics_or_leaks_a_keyed_secret() {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        " ",
        "\r\n",
        "\"a\"",
        "\"password\"",
        "\"api_key\":",
        "é",
        "☃",
        "=",
        "&",
        "password=",
        "--B\r\n",
        "\r\n\r\n",
        "Content-Disposition: form-data; name=\"token\"",
        "1",
        "null",
        "'",
        "(",
        ")=(",
    ];
    const SECRET: &str = "QsecretQ";
    let m = Masker::lumigo_defaults();
    let mut rng = crate::testkit::Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..800 {
        let mut text = String::new();
        for _ in 0..rng.below(40) {
            text.push_str(PIECES[rng.below(PIECES.len())]);
        }
        let _ = mask_json(&text, &m);
        let _ = crate::sql::redact_error_message(&text);
        let _ = header_fields(text.as_bytes());
        for ct in [
            None,
            Some("application/json"),
            Some("multipart/form-data; boundary=B"),
        ] {
            let limit = 1 + rng.below(64);
            let cut = &text.as_bytes()[..rng.below(text.len() + 1)];
            let out = body_text(cut, text.len() as u64, ct, None, &m, limit);
            assert!(out.len() <= limit, "{out}");
        }
        // A JSON document with a secret under a secret key, cut anywhere.
        let doc = format!(r#"{{"a":{text:?},"password":"{SECRET}","b":[{{"token":"{SECRET}"}}]}}"#);
        for cut in 0..=doc.len() {
            if let Some(prefix) = doc.get(..cut) {
                let masked = mask_json(prefix, &m);
                assert!(!masked.contains("Qsec"), "{prefix} -> {masked}");
            }
        }
    }
}

/// Tried as a user: `curl '/?password=hunter2' -H 'Authorization: Bearer …'`
/// against `python3 -m http.server`, whose directory listing repeats the
/// query: the password came out in `http.response.body`. A request's
/// secret values are now masked wherever they appear in the payloads.
#[test]
fn secrets_a_server_echoes_are_masked_too() {
    let rules = PayloadRules::default();
    let head = b"GET /?password=hunter2&q=1 HTTP/1.1\r\nAuthorization: Bearer sekrit-token\r\nCookie: a=cookie-value; b=1\r\n\r\n";
    let secrets = rules.request_secrets("/?password=hunter2&q=1", &header_fields(head));
    for s in ["hunter2", "sekrit-token", "cookie-value"] {
        assert!(secrets.iter().any(|x| x == s), "{s} in {secrets:?}");
    }
    assert!(
        !secrets.iter().any(|x| x == "1"),
        "short values are not secrets"
    );
    let page =
        "<title>Directory listing for /?password=hunter2</title> token sekrit-token, cookie-value"
            .to_owned();
    let out = scrub(page, &secrets);
    assert_eq!(
        out,
        "<title>Directory listing for /?password=****</title> token ****, ****"
    );
}

/// Tried as a user: curl POSTed `{"password":"p4ss…"}` to a server that
/// echoes what it got; the request body's attribute masked the password,
/// the response body's showed it. The values a request's body masks are
/// now secrets of the exchange too, JSON or form, in either way of reading
/// the heads.
#[test]
fn secrets_of_a_request_body_a_server_echoes_are_masked_too() {
    let m = Masker::lumigo_defaults();
    let mut found = Vec::new();
    json::json_secrets(
        r#"{"user":{"password":"hunter22"},"n":1,"api_key":123456,"token":{"a":"inner-tok"},"secret":"q\"uoted","pin":"12"}"#,
        &m,
        &mut found,
    );
    for s in [
        "hunter22",
        "123456",
        "inner-tok",
        r#"q\"uoted"#,
        r#"q"uoted"#,
    ] {
        assert!(found.iter().any(|x| x == s), "{s} in {found:?}");
    }
    assert!(
        !found.iter().any(|x| x == "12"),
        "short values are not secrets"
    );
    // The keys of a secret object, and literals, are not secrets: they
    // would mask every `"username"` or `null` in the response.
    let mut found = Vec::new();
    json::json_secrets(
        r#"{"credentials":{"username":"bob-the-user"},"password":null,"token":true}"#,
        &m,
        &mut found,
    );
    assert_eq!(found, ["bob-the-user"]);

    let get =
        |a: &[(&str, String)], k: &str| a.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let gzipped = {
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(br#"{"password":"p4ss-word-9"}"#).unwrap();
        z.finish().unwrap()
    };
    let multipart = b"--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nbob\r\n--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\np4ss-word-9\r\n--XyZ--\r\n";
    for (content_type, body) in [
        (
            "application/json",
            &br#"{"user":"bob","password":"p4ss-word-9"}"#[..],
        ),
        (
            "application/x-www-form-urlencoded",
            b"user=bob&password=p4ss-word-9",
        ),
        ("multipart/form-data; boundary=XyZ", multipart),
        ("application/json\r\nContent-Encoding: gzip", &gzipped),
    ] {
        for named in [false, true] {
            let mut ex = HttpExchange::empty(0, SystemTime::UNIX_EPOCH);
            // A header named for an attribute of its own takes the heads
            // the field-by-field way.
            let rules = if named {
                PayloadRules::from_config(&config(&[(
                    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
                    "X-Request-Id",
                )]))
            } else {
                PayloadRules::default()
            };
            let echo = br#"{"echo":"user=bob, password p4ss-word-9"}"#;
            ex.captured = captured(
                format!("POST /f HTTP/1.1\r\nHost: h\r\nX-Request-Id: r\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
                body,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
                echo,
            );
            ex.request_body_size = body.len() as u64;
            ex.response_body_size = echo.len() as u64;
            let a = attrs(&rules, &ex, Role::Server);
            let text = format!("{a:?}");
            assert!(
                !text.contains("p4ss-word-9"),
                "{content_type} {named}: {a:#?}"
            );
            assert_eq!(
                get(&a, "http.response.body").unwrap(),
                r#"{"echo":"user=bob, password ****"}"#,
                "{content_type} {named}"
            );
        }
    }
}

#[test]
fn header_json_escapes_like_serde_and_joins_repeated_names() {
    let fields = [
        ("x-ctl", "a\u{1}b\tc\"d\\e"),
        ("x-utf8", "caf\u{e9} \u{1f600}"),
        ("x-ctl", "second"),
        ("x-empty", ""),
    ];
    let json = headers_json(&fields, 2048);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["x-ctl"], "a\u{1}b\tc\"d\\e, second");
    assert_eq!(parsed["x-utf8"], "caf\u{e9} \u{1f600}");
    assert_eq!(parsed["x-empty"], "");
    assert_eq!(parsed.as_object().unwrap().len(), 3);
    assert!(
        json.starts_with(r#"{"x-ctl":"a\u0001b\tc\"d\\e, second","#),
        "{json}"
    );
}

#[test]
fn header_json_of_a_hostile_head_stops_at_the_limit() {
    // 4,000 distinct names then 4,000 repeats of one: written up to the
    // limit, every name compared only with the few written.
    let mut fields: Vec<(String, &str)> = (0..4000).map(|i| (format!("n{i}"), "v")).collect();
    fields.extend((0..4000).map(|_| ("n0".to_owned(), "w")));
    let json = headers_json(&fields, 256);
    assert!(json.len() < 256 + 64, "{}", json.len());
    assert!(json.starts_with(r#"{"n0":"v, w, w"#));
    assert!(json.ends_with('}'));
}

#[test]
fn header_json_escaping_at_every_position_and_across_characters() {
    // Each byte that needs escaping at every offset of a longer value,
    // beside multi-byte characters that straddle the eight-byte steps.
    for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
        for at in 0..20 {
            let mut v: String = "\u{e9}x\u{20ac}y".repeat(4);
            let at = v.char_indices().nth(at).map_or(v.len(), |(i, _)| i);
            v.insert(at, special);
            let json = headers_json(&[("n", v.as_str())], 4096);
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed["n"], v.as_str(), "{json}");
        }
    }
    let clean = "\u{e9}".repeat(9);
    let json = headers_json(&[("n", clean.as_str())], 4096);
    assert_eq!(json, format!("{{\"n\":\"{clean}\"}}"));
}

/// Names are lower case however they came (common ones without a new
/// string), with CRLF or bare LF line ends, up to the blank line.
#[test]
fn field_names_in_lower_case_common_ones_shared() {
    let head = b"HTTP/1.1 200 OK\nContent-Type: text/html\r\nCONTENT-LENGTH: 5\n\
X-A-Field-Name-Longer-Than-Thirty-Two: v\r\nx-lower: w\r\nUser-Agent: u\n\nAfter: no";
    let fields = header_fields(head);
    let got: Vec<(&str, &str, bool)> = fields
        .iter()
        .map(|(n, v)| (n.as_ref(), v.as_ref(), matches!(n, Cow::Borrowed(_))))
        .collect();
    assert_eq!(
        got,
        [
            ("content-type", "text/html", true),
            ("content-length", "5", true),
            ("x-a-field-name-longer-than-thirty-two", "v", false),
            ("x-lower", "w", true),
            ("user-agent", "u", true),
        ]
    );
    assert!(header_fields(b"HTTP/1.1 200 OK").is_empty());
    assert!(header_fields(b"HTTP/1.1 200 OK\r\n").is_empty());
}

/// Escaped text reads back as itself, and the block check finds every
/// byte that needs escaping wherever it falls: each length up to 70,
/// each such byte at each offset, next to multi-byte characters.
#[test]
fn json_escaping_round_trips_at_every_offset_and_length() {
    let mut checked = 0;
    for len in 0..70usize {
        let base: String = "aé-Z0 ".chars().cycle().take(len).collect();
        let mut cases = vec![base.clone()];
        for (at, _) in base.char_indices() {
            for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\t'] {
                let mut s = base.clone();
                s.insert(at, special);
                cases.push(s);
            }
        }
        for s in cases {
            let mut out = String::from("\"");
            push_json_escaped(&mut out, &s);
            out.push('"');
            let back: String = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
            assert_eq!(back, s);
            // Nothing is escaped that needs no escaping.
            let needs = s
                .bytes()
                .filter(|&b| b < 0x20 || b == b'"' || b == b'\\')
                .count();
            assert_eq!(out.len() == s.len() + 2, needs == 0, "{out}");
            checked += 1;
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn one_pass_over_a_head_gives_what_the_field_list_gives() {
    // Random heads from pieces that matter: secret and ordinary names in
    // any case, repeated names, folded lines, lines without a colon or a
    // name, blanks around names and values, quotes, backslashes, control
    // bytes, non-ASCII text, secret queries in values, long names.
    let names = [
        "Host",
        "host",
        "Authorization",
        "COOKIE",
        "Cookie",
        "X-Api-Key",
        "Content-Type",
        "content-encoding",
        "Referer",
        "X-Secret-Thing",
        "User-Agent",
        "Set-Cookie",
        "Proxy-Authorization",
        "x-é",
        "",
        "A-Name-Longer-Than-Sixty-Four-Bytes-Which-The-One-Pass-Leaves-To-The-Rest",
    ];
    let values = [
        "h",
        "",
        "Bearer abcdef123",
        "a=secretvalue; b=other1234",
        "http://h/p?password=hunter22&x=1#f",
        "/next?token=abcd",
        "\"quoted\" \\ back",
        "tab\there",
        "ctl\u{1}byte",
        "café ünïcode",
        "application/json; charset=utf-8",
        "gzip",
        "   padded   ",
        "x".repeat(70).leak(),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut passed, mut left) = (0, 0);
    let mut memos = [LineMemo::default(), LineMemo::default()];
    for round in 0..4000 {
        let limit = if round % 2 == 0 { 1 + next(150) } else { 2048 };
        let rules = PayloadRules::with_limit(limit);
        let mut head = String::from("GET /p HTTP/1.1");
        for _ in 0..next(12) {
            head.push_str(if next(6) == 0 { "\n" } else { "\r\n" });
            match next(20) {
                0 => head.push_str(" folded more"),
                1 => head.push_str("no colon here"),
                _ => {
                    let pad = ["", " ", "\t"][next(3)];
                    head.push_str(pad);
                    head.push_str(names[next(names.len())]);
                    head.push_str(pad);
                    head.push(':');
                    head.push_str(["", " ", "  "][next(3)]);
                    head.push_str(values[next(values.len())]);
                }
            }
        }
        if next(3) > 0 {
            head.push_str("\r\n\r\nafter: the head");
        }
        for (masker, memo) in [&rules.request_headers, &rules.response_headers]
            .into_iter()
            .zip(&mut memos)
        {
            let (json, ctype, cenc, secrets) = rules.the_long_way(head.as_bytes(), masker);
            let pass = |memo: Option<&mut LineMemo>| {
                let mut got = Vec::new();
                let p = head_pass(
                    head.as_bytes(),
                    masker,
                    &rules.query,
                    limit,
                    Some(&mut got),
                    memo,
                );
                p.map(|p| (p.json, p.content_type, p.content_encoding, got))
            };
            // The memo, kept over all rounds, holds lines of earlier heads
            // (and of this one, the second time).
            let plain = pass(None);
            for _ in 0..2 {
                assert_eq!(pass(Some(&mut *memo)), plain, "{head:?} at {limit}");
            }
            match plain {
                Some((json_got, content_type, content_encoding, got)) => {
                    let p = Passed {
                        json: json_got,
                        content_type,
                        content_encoding,
                    };
                    passed += 1;
                    assert_eq!(p.json, json, "{head:?} at {limit}");
                    assert_eq!(p.content_type.map(str::to_owned), ctype, "{head:?}");
                    assert_eq!(p.content_encoding.map(str::to_owned), cenc, "{head:?}");
                    if std::ptr::eq(masker, &rules.request_headers) {
                        assert_eq!(got, secrets, "{head:?}");
                    }
                }
                None => left += 1,
            }
        }
    }
    // Every limit over a plain head: a field starts where the JSON so far
    // is exactly at the limit, as the long way starts it.
    let head = b"GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Id: 12\r\n\r\n";
    for limit in 1..60 {
        let rules = PayloadRules::with_limit(limit);
        let masker = &rules.request_headers;
        let passed = head_pass(head, masker, &rules.query, limit, None, None).unwrap();
        assert_eq!(passed.json, rules.the_long_way(head, masker).0, "{limit}");
    }
    // Both ways were taken, often (random heads repeat names far more
    // often than real ones).
    assert!(passed > 800 && left > 800, "{passed} passed, {left} left");
}

#[test]
fn both_ways_give_the_same_attributes() {
    // Through `push_attributes`: a head the one pass takes, and the same
    // with a header repeated (the field-by-field way).
    let rules = PayloadRules::default();
    let mut ex = crate::http::HttpExchange::empty(0, SystemTime::UNIX_EPOCH);
    ex.target = "/a?password=hunter22".into();
    ex.request_body_size = 20;
    ex.response_body_size = 24;
    let mut attrs_for = |req: &[u8]| {
        ex.captured = captured(
            req,
            b"{\"token\":\"hunter22abc\"}",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
            b"{\"echo\":\"hunter22\",\"a\":1}",
        );
        let mut attrs = Vec::new();
        rules.push_attributes(&ex, Role::Server, &mut attrs);
        attrs
    };
    let one = attrs_for(b"POST /a HTTP/1.1\r\nHost: h\r\nAuthorization: Basic c2VjcmV0\r\nContent-Type: application/json\r\n\r\n");
    let two = attrs_for(b"POST /a HTTP/1.1\r\nHost: h\r\nAuthorization: Basic c2VjcmV0\r\nContent-Type: application/json\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    assert_eq!(one.len(), 4);
    for ((k1, v1), (k2, v2)) in one.iter().zip(&two) {
        assert_eq!(k1, k2);
        if *k1 != "http.request.headers" {
            assert_eq!(v1, v2, "{k1}");
        }
    }
    let text = |a: &Attributes, k: &str| match a.iter().find(|(n, _)| *n == k) {
        Some((_, AttrValue::Str(t))) => t.to_string(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(
        text(&two, "http.request.headers"),
        text(&one, "http.request.headers").replace('}', r#","x-a":"1, 2"}"#)
    );
    assert!(!format!("{one:?}").contains("hunter22"), "{one:?}");
    assert!(!format!("{one:?}").contains("c2VjcmV0"), "{one:?}");
}

#[test]
fn clean_prefix_finds_every_byte_that_needs_escaping_or_is_asked_for() {
    // Each length up to 40 (the short, word and 16-byte block ways), a
    // byte at each offset: the clean prefix may stop early but never past
    // the first such byte, and covers all of a clean text.
    let special = |b: u8, also: u8| b < 0x20 || b == b'"' || b == b'\\' || b == also;
    for also in [b'"', b'?'] {
        for len in 0..40 {
            for at in 0..len {
                for b in [0u8, 0x1f, b' ', b'"', b'\\', b'?', b'a', 0x7f, 0xc3, 0xff] {
                    let mut text = vec![b'x'; len];
                    text[at] = b;
                    let clean = clean_prefix_or(&text, also);
                    if special(b, also) {
                        assert!(clean <= at, "{also} {len} {at} {b}: {clean}");
                    } else {
                        assert_eq!(clean, len, "{also} {len} {at} {b}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_memo_keeps_plain_lines_and_never_a_secret() {
    let rules = PayloadRules::default();
    let head = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer abcdef123\r\nCookie: a=secretvalue\r\nX-Api-Key: k3y-v4lue\r\nReferer: http://h/p?password=hunter22\r\nUser-Agent: \"quoted\"\r\nContent-Type: text/plain\r\n\r\n";
    let (masker, query) = (&rules.request_headers, &rules.query);
    let mut memo = LineMemo::default();
    let mut secrets = Vec::new();
    let first = head_pass(
        head,
        masker,
        query,
        2048,
        Some(&mut secrets),
        Some(&mut memo),
    )
    .unwrap();
    // Only the lines written as they came (escaped or not): no secret
    // value, no query masked.
    let mut kept: Vec<&[u8]> = memo.kept().collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            &b"Content-Type: text/plain"[..],
            b"Host: h",
            b"User-Agent: \"quoted\""
        ]
    );
    for secret in ["abcdef123", "secretvalue", "k3y-v4lue", "hunter22"] {
        assert!(!first.json.contains(secret), "{}", first.json);
    }
    // The second time, the kept lines are taken from the memo and the rest
    // judged again: the same JSON, content type and request secrets.
    let mut again = Vec::new();
    let second = head_pass(head, masker, query, 2048, Some(&mut again), Some(&mut memo)).unwrap();
    assert_eq!(second.json, first.json);
    // Each attribute's string is its own size (it waits in the export
    // queue); the buffer it was written in stays with the memo.
    assert_eq!(second.json.capacity(), second.json.len());
    assert!(memo.json.capacity() >= 1024, "{}", memo.json.capacity());
    assert_eq!(second.content_type, Some("text/plain"));
    assert_eq!(again, secrets);
    assert!(secrets.iter().any(|s| s == "abcdef123"), "{secrets:?}");
    // A kept line whose name comes twice in a head still sends the head the
    // field-by-field way.
    let twice = b"GET / HTTP/1.1\r\nHost: h\r\nhost: h\r\n\r\n";
    assert!(head_pass(twice, masker, query, 2048, None, Some(&mut memo)).is_none());
}

#[test]
fn a_kept_line_holding_a_secret_of_the_request_is_still_scrubbed() {
    // The token of the query comes back in plain header lines (kept by the
    // memo as they came): each exchange's attributes are scrubbed of it,
    // the second (lines taken from the memo) as the first.
    let rules = PayloadRules::default();
    let mut ex = crate::http::HttpExchange::empty(0, SystemTime::UNIX_EPOCH);
    ex.target = "/a?password=hunter22".into();
    ex.captured = captured(
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Echo: hunter22\r\n\r\n",
        b"",
        b"HTTP/1.1 200 OK\r\nX-Seen: hunter22\r\n\r\n",
        b"",
    );
    for round in 0..2 {
        let mut attrs = Vec::new();
        rules.push_attributes(&ex, Role::Server, &mut attrs);
        let headers: Vec<String> = attrs
            .iter()
            .filter(|(k, _)| k.ends_with(".headers"))
            .map(|(_, v)| format!("{v:?}"))
            .collect();
        assert_eq!(headers.len(), 2, "{attrs:?}");
        for h in &headers {
            assert!(
                !h.contains("hunter22") && h.contains("****"),
                "round {round}: {h}"
            );
        }
    }
    let memo = rules.memo.lock().unwrap();
    assert!(memo[0].kept().any(|l| l == b"X-Echo: hunter22"));
}

#[test]
fn the_one_pass_needs_only_the_header_lines_to_be_text() {
    let rules = PayloadRules::default();
    let (masker, query) = (&rules.request_headers, &rules.query);
    // Bytes that are not UTF-8 in the start line and past the head: the one
    // pass takes the head, and agrees with the field-by-field way.
    let head = b"GET /caf\xe9 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n\xff";
    let mut memo = LineMemo::default();
    for _ in 0..2 {
        let p = head_pass(head, masker, query, 2048, None, Some(&mut memo)).unwrap();
        assert_eq!(p.json, rules.the_long_way(head, masker).0);
        assert_eq!(p.json, r#"{"host":"h","accept":"*/*"}"#);
    }
    // In a header line: left to the field-by-field way (which replaces
    // them), memo or not.
    let head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n";
    assert!(head_pass(head, masker, query, 2048, None, None).is_none());
    assert!(head_pass(head, masker, query, 2048, None, Some(&mut memo)).is_none());
}

#[test]
fn a_head_met_before_whole_is_taken_whole_unless_it_had_a_secret() {
    let rules = PayloadRules::default();
    let (masker, query) = (&rules.response_headers, &rules.query);
    let head = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Encoding: identity\r\nReferer: http://h/p?password=hunter22\r\n\r\n";
    let mut memo = LineMemo::default();
    let first = head_pass(head, masker, query, 2048, None, Some(&mut memo)).unwrap();
    assert!(memo.head(head).is_some(), "kept whole");
    // A head one byte apart is not it.
    let mut other = head.to_vec();
    other[9] = b'3';
    assert!(memo.head(&other).is_none());
    let second = head_pass(head, masker, query, 2048, None, Some(&mut memo)).unwrap();
    assert_eq!(second.json, first.json);
    assert!(!second.json.contains("hunter22"), "{}", second.json);
    assert_eq!(second.json.capacity(), second.json.len());
    assert_eq!(
        (second.content_type, second.content_encoding),
        (Some("text/html"), Some("identity"))
    );
    // Its values are read from the head given, not from the one kept.
    assert_eq!(
        second.content_type.map(|t| t.as_ptr()),
        Some(head[46..].as_ptr())
    );
    // A head with a secret field is not kept whole: its secrets go to the
    // request's list each time.
    let secret = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer abcdef123\r\n\r\n";
    let mut memo = LineMemo::default();
    for _ in 0..2 {
        let mut secrets = Vec::new();
        head_pass(
            secret,
            masker,
            query,
            2048,
            Some(&mut secrets),
            Some(&mut memo),
        )
        .unwrap();
        assert!(secrets.iter().any(|s| s == "abcdef123"), "{secrets:?}");
        assert!(memo.head(secret).is_none());
    }
    // A head over the cap is not kept whole.
    let mut long = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', memo::HEAD));
    long.extend_from_slice(b"\r\n\r\n");
    head_pass(&long, masker, query, 1 << 20, None, Some(&mut memo)).unwrap();
    assert!(memo.head(&long).is_none());
}

//! Payload attributes of HTTP spans: headers and bodies, masked.
//!
//! The connection keeps raw bytes only ([`Captured`](crate::http::Captured):
//! heads as they passed, the first bytes of each body's decoded content);
//! everything here runs when the span is built, on the export side:
//! - `http.request.headers` / `http.response.headers`: a JSON object of the
//!   head's fields, names lower case (repeated fields joined with `, `).
//!   `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie`
//!   values are always `****`; other values whose name matches the area's
//!   patterns too; a URL's secret query parameters in any value as well.
//! - `http.request.body` / `http.response.body`: the body text. JSON (by
//!   content type, or text that opens with `{` or `[`) has the value of
//!   every secret key masked at any depth, including a value the capture
//!   cut short; a multipart body has the content of each secret field
//!   masked; any other text is masked as a form (`a=1&password=****`).
//!   With `all` the whole body is `****`. A `gzip` or `deflate` encoded
//!   body is decoded first (as far as its kept prefix goes). A binary body
//!   (another encoding, a binary media type, invalid UTF-8 or control
//!   bytes) is summarised as `<binary body: N bytes, type>`, never dumped.
//! - `http.{request,response}.header.<name>` for the names of
//!   `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`, masked as above.
//!
//! Masking happens before the text is cut to the length limit, so a cut
//! never reveals what masking would have hidden.

use std::borrow::Cow;

use crate::config::{cut_str, Config};
use crate::http::{HttpExchange, Role};
use crate::mask::{Masker, MASK};
use crate::span::Attributes;
use memo::{Kind, LineMemo};

mod body;
mod json;
mod memo;

pub use body::body_text;
pub use json::mask_json;

/// Header names captured as attributes of their own, with their keys.
type Named = Vec<(String, &'static str)>;

/// How payloads become attributes: the limit and each area's masking.
#[derive(Debug)]
pub struct PayloadRules {
    /// Most bytes kept of each body, and of each payload attribute; 0:
    /// payloads are not captured.
    limit: usize,
    request_headers: Masker,
    response_headers: Masker,
    request_bodies: Masker,
    response_bodies: Masker,
    query: Masker,
    /// `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`: server request,
    /// server response, client request, client response.
    named: [Named; 4],
    /// Header lines met before, for the request's masker and the
    /// response's (see [`memo`]). Taken only when free: a thread that finds
    /// it in use reads its heads in full.
    memo: std::sync::Mutex<[LineMemo; 2]>,
}

impl Default for PayloadRules {
    /// Capture on, Lumigo's default patterns and length limit.
    fn default() -> Self {
        PayloadRules {
            limit: crate::config::AttributeLimits::default().value_length,
            request_headers: Masker::lumigo_defaults(),
            response_headers: Masker::lumigo_defaults(),
            request_bodies: Masker::lumigo_defaults(),
            response_bodies: Masker::lumigo_defaults(),
            query: Masker::lumigo_defaults(),
            named: Default::default(),
            memo: Default::default(),
        }
    }
}

impl PayloadRules {
    /// The rules the configuration asks for. The keys of captured header
    /// attributes are made here, once per process, and live for it.
    pub fn from_config(c: &Config) -> PayloadRules {
        let keys = |names: &[String], prefix: &str| -> Named {
            names
                .iter()
                .map(|n| {
                    let key: &'static str = Box::leak(format!("{prefix}{n}").into_boxed_str());
                    (n.clone(), key)
                })
                .collect()
        };
        let h = &c.capture_headers;
        PayloadRules {
            limit: c.payload_prefix_limit(),
            request_headers: Masker::new(&c.request_header_secret_patterns),
            response_headers: Masker::new(&c.response_header_secret_patterns),
            request_bodies: Masker::new(&c.request_body_secret_patterns),
            response_bodies: Masker::new(&c.response_body_secret_patterns),
            query: Masker::new(&c.query_secret_patterns),
            named: [
                keys(&h.server_request, "http.request.header."),
                keys(&h.server_response, "http.response.header."),
                keys(&h.client_request, "http.request.header."),
                keys(&h.client_response, "http.response.header."),
            ],
            memo: Default::default(),
        }
    }

    /// The default rules with another length limit.
    pub fn with_limit(limit: usize) -> PayloadRules {
        PayloadRules {
            limit,
            ..PayloadRules::default()
        }
    }

    /// Payloads off.
    pub fn off() -> PayloadRules {
        PayloadRules {
            limit: 0,
            ..PayloadRules::default()
        }
    }

    /// Most body bytes a connection keeps per message (0: none, and no
    /// heads either). See [`HttpConnection::capture_payloads`].
    ///
    /// [`HttpConnection::capture_payloads`]: crate::http::HttpConnection::capture_payloads
    pub fn body_limit(&self) -> usize {
        self.limit
    }

    /// Whether the value of request header `name` is secret (execution
    /// tags taken from headers follow this too).
    pub fn is_secret_request_header(&self, name: &str) -> bool {
        self.request_headers.is_secret_header(name)
    }

    /// Adds the payload attributes of `ex`, seen from `role`.
    pub fn push_attributes(&self, ex: &HttpExchange, role: Role, attrs: &mut Attributes) {
        let Some(c) = ex.captured.as_deref().filter(|_| self.limit > 0) else {
            return;
        };
        let (req_named, resp_named) = match role {
            Role::Server => (&self.named[0], &self.named[1]),
            Role::Client => (&self.named[2], &self.named[3]),
        };
        // Secrets the request carried (masked where they were) must not
        // come out elsewhere either: a server that echoes its query or a
        // token in a page or an error message.
        let request = |secrets| Message {
            head: &c.request_head,
            body: &c.request_body,
            size: ex.request_body_size,
            headers_key: "http.request.headers",
            body_key: "http.request.body",
            header_masker: &self.request_headers,
            body_masker: &self.request_bodies,
            named: req_named,
            secrets,
        };
        let response = |secrets| Message {
            head: &c.response_head,
            body: &c.response_body,
            size: ex.response_body_size,
            headers_key: "http.response.headers",
            body_key: "http.response.body",
            header_masker: &self.response_headers,
            body_masker: &self.response_bodies,
            named: resp_named,
            secrets,
        };
        if req_named.is_empty() && resp_named.is_empty() {
            // Nearly every exchange: each head read once, straight into its
            // JSON, its lines met before taken from the memo.
            let mut secrets = self.query_secrets(&ex.target);
            let mut memo = self.memo.try_lock().ok();
            let (request_memo, response_memo) = match memo.as_deref_mut() {
                Some([request, response]) => (Some(request), Some(response)),
                None => (None, None),
            };
            let passed = head_pass(
                &c.request_head,
                &self.request_headers,
                &self.query,
                self.limit,
                Some(&mut secrets),
                request_memo,
            )
            .zip(head_pass(
                &c.response_head,
                &self.response_headers,
                &self.query,
                self.limit,
                None,
                response_memo,
            ));
            drop(memo);
            if let Some((req, resp)) = passed {
                self.body_secrets(
                    &c.request_body,
                    req.content_type,
                    req.content_encoding,
                    &mut secrets,
                );
                self.push_passed(attrs, req, request(&secrets));
                self.push_passed(attrs, resp, response(&secrets));
                return;
            }
        }
        let request_fields = header_fields(&c.request_head);
        let mut secrets = self.request_secrets(&ex.target, &request_fields);
        let field = |name: &str| {
            request_fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_ref())
        };
        self.body_secrets(
            &c.request_body,
            field("content-type"),
            field("content-encoding"),
            &mut secrets,
        );
        self.push_message(attrs, &request_fields, request(&secrets));
        self.push_message(attrs, &header_fields(&c.response_head), response(&secrets));
    }

    /// The secret values of a request: those of its query's secret
    /// parameters (raw and decoded), and of its secret header fields (the
    /// whole value, its credentials after an `Authorization` scheme, each
    /// cookie's value). Values shorter than 4 bytes are left out (masking
    /// every `1` in a page would hide nothing and break everything).
    fn request_secrets(&self, target: &str, fields: &[Field<'_>]) -> Vec<String> {
        let mut out = self.query_secrets(target);
        for (name, value) in fields {
            if self.request_headers.is_secret_header(name) {
                add_header_secrets(&mut out, name, value);
            }
        }
        out
    }

    /// The secret values of a request's query (see
    /// [`PayloadRules::request_secrets`]).
    fn query_secrets(&self, target: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mark = target.as_bytes().iter().position(|&b| b == b'?');
        if let Some(query) = mark.map(|i| &target[i + 1..]) {
            let query = query.split('#').next().unwrap_or_default();
            form_secrets(query, &self.query, &mut out);
        }
        out
    }

    /// Adds the values a request's body masks (JSON values of secret keys,
    /// form fields and multipart parts of secret names) to its secrets, so
    /// that a server echoing them (a form shown again, a validation error)
    /// does not send them out in its response's attributes.
    fn body_secrets(
        &self,
        body: &[u8],
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        out: &mut Vec<String>,
    ) {
        body::body_secrets(
            body,
            content_type,
            content_encoding,
            &self.request_bodies,
            self.limit,
            out,
        );
    }

    fn push_message(&self, attrs: &mut Attributes, fields: &[Field<'_>], m: Message<'_>) {
        if m.head.is_empty() {
            return;
        }
        let masked: Vec<(&str, Cow<'_, str>)> = fields
            .iter()
            .map(|(name, value)| {
                let value = mask_header(name, value, m.header_masker, &self.query);
                (name.as_ref(), value)
            })
            .collect();
        self.push_headers(attrs, headers_json(&masked, self.limit), &m);
        for (name, key) in m.named {
            let values: Vec<&str> = masked
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_ref())
                .collect();
            if !values.is_empty() {
                let joined = scrub(values.join(","), m.secrets);
                attrs.push((key, cut_str(&joined, self.limit).into()));
            }
        }
        let field = |n: &str| {
            fields
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, v)| v.as_ref())
        };
        self.push_body(attrs, field("content-type"), field("content-encoding"), &m);
    }

    /// [`PayloadRules::push_message`] for a head read by [`head_pass`].
    fn push_passed(&self, attrs: &mut Attributes, passed: Passed<'_>, m: Message<'_>) {
        if m.head.is_empty() {
            return;
        }
        self.push_headers(attrs, passed.json, &m);
        self.push_body(attrs, passed.content_type, passed.content_encoding, &m);
    }

    /// The headers attribute, from its JSON: secrets scrubbed, cut.
    fn push_headers(&self, attrs: &mut Attributes, json: String, m: &Message<'_>) {
        let mut json = scrub(json, m.secrets);
        let kept = cut_str(&json, self.limit).len();
        json.truncate(kept);
        attrs.push((m.headers_key, json.into()));
    }

    /// The body attribute, if a body was seen.
    fn push_body(
        &self,
        attrs: &mut Attributes,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        m: &Message<'_>,
    ) {
        // A body sent unseen (`sendfile`) has a size and nothing to show.
        if m.size > 0 && !m.body.is_empty() {
            let body = body_text(
                m.body,
                m.size,
                content_type,
                content_encoding,
                m.body_masker,
                self.limit,
            );
            attrs.push((m.body_key, scrub(body, m.secrets).into()));
        }
    }
}

impl PayloadRules {
    /// What the field-by-field way makes of a head: its headers JSON,
    /// content type and encoding, and (as a request's) its secrets. For the
    /// tests and the fuzz target that compare it with [`head_pass`].
    fn the_long_way(
        &self,
        head: &[u8],
        masker: &Masker,
    ) -> (String, Option<String>, Option<String>, Vec<String>) {
        let fields = header_fields(head);
        let masked: Vec<(&str, Cow<'_, str>)> = fields
            .iter()
            .map(|(n, v)| (n.as_ref(), mask_header(n, v, masker, &self.query)))
            .collect();
        let field = |want: &str| {
            fields
                .iter()
                .find(|(n, _)| n == want)
                .map(|(_, v)| v.to_string())
        };
        (
            headers_json(&masked, self.limit),
            field("content-type"),
            field("content-encoding"),
            self.request_secrets("/", &fields),
        )
    }

    /// Both ways over `head`, as a request's and as a response's (with
    /// these rules' maskers): `Err` with both readings where the one pass
    /// took the head and read it otherwise. For `crate::fuzzing`.
    pub(crate) fn compare_head_ways(&self, head: &[u8]) -> Result<(), String> {
        for (masker, request) in [
            (&self.request_headers, true),
            (&self.response_headers, false),
        ] {
            // Without the memo, then with one twice: as its lines are
            // kept, and as they are taken from it.
            let mut memo = LineMemo::default();
            let pass = |memo: Option<&mut LineMemo>| {
                let mut secrets = Vec::new();
                let p = head_pass(
                    head,
                    masker,
                    &self.query,
                    self.limit,
                    Some(&mut secrets),
                    memo,
                )?;
                Some((
                    p.json,
                    p.content_type.map(str::to_owned),
                    p.content_encoding.map(str::to_owned),
                    secrets,
                ))
            };
            let plain = pass(None);
            let kept = pass(Some(&mut memo));
            let taken = pass(Some(&mut memo));
            memo.forget_head();
            let lines_taken = pass(Some(&mut memo));
            for (with_memo, how) in [
                (kept, "kept"),
                (taken, "taken"),
                (lines_taken, "lines taken"),
            ] {
                if with_memo != plain {
                    return Err(format!(
                        "one pass {plain:?}\nwith the memo ({how}) {with_memo:?}"
                    ));
                }
            }
            let Some(mut short) = plain else {
                continue;
            };
            let long = self.the_long_way(head, masker);
            if !request {
                short.3 = long.3.clone();
            }
            if short != long {
                return Err(format!("one pass {short:?}\nfield by field {long:?}"));
            }
        }
        Ok(())
    }
}

/// One direction of an exchange, as [`PayloadRules::push_message`] reads it.
struct Message<'a> {
    head: &'a [u8],
    body: &'a [u8],
    size: u64,
    headers_key: &'static str,
    body_key: &'static str,
    header_masker: &'a Masker,
    body_masker: &'a Masker,
    named: &'a Named,
    /// The request's secret values, masked wherever they appear.
    secrets: &'a [String],
}

/// Shortest secret value masked wherever it appears.
const MIN_SECRET: usize = 4;

/// Adds a secret value (trimmed) unless it is too short or already known.
/// Adds the values of the secret names of `name=value&…` pairs (a query,
/// a form body), as written and decoded.
fn form_secrets(pairs: &str, masker: &Masker, out: &mut Vec<String>) {
    for param in pairs.split('&') {
        if let Some((name, value)) = param.split_once('=') {
            if masker.is_secret(&crate::mask::percent_decode(name)) {
                add_secret(out, value);
                add_secret(out, &crate::mask::percent_decode(value));
            }
        }
    }
}

fn add_secret(out: &mut Vec<String>, v: &str) {
    let v = v.trim();
    if v.len() >= MIN_SECRET && !out.iter().any(|o| o == v) {
        out.push(v.to_owned());
    }
}

/// Adds the secrets of a secret header field: its value, the credentials
/// after an `Authorization` scheme, each cookie's value.
fn add_header_secrets(out: &mut Vec<String>, name: &str, value: &str) {
    add_secret(out, value);
    if name == "authorization" || name == "proxy-authorization" {
        if let Some((_, credentials)) = value.split_once(' ') {
            add_secret(out, credentials);
        }
    }
    if name == "cookie" {
        for pair in value.split(';') {
            if let Some((_, v)) = pair.split_once('=') {
                add_secret(out, v);
            }
        }
    }
}

/// `text` with every occurrence of a secret replaced by the mask.
fn scrub(text: String, secrets: &[String]) -> String {
    let mut text = text;
    for secret in secrets {
        if memchr::memmem::find(text.as_bytes(), secret.as_bytes()).is_some() {
            text = text.replace(secret.as_str(), MASK);
        }
    }
    text
}

/// What [`head_pass`] reads from a head.
struct Passed<'h> {
    /// The headers JSON, masked (not yet scrubbed of the request's secrets
    /// or cut to the limit): what [`headers_json`] makes of the masked
    /// [`header_fields`].
    json: String,
    content_type: Option<&'h str>,
    content_encoding: Option<&'h str>,
}

/// Most fields and longest name [`head_pass`] takes.
const PASS_FIELDS: usize = 48;
const PASS_NAME: usize = 64;

/// One pass over a head's lines, each field judged, masked and written
/// into the headers JSON as it is met, with no field list and no string per
/// name; a secret field's values added to `secrets` (the request's). The
/// same result as [`header_fields`], [`mask_header`] and [`headers_json`]
/// (a test compares them), for the heads nearly all exchanges have: `None`,
/// for the caller to take that way, when a header line is not UTF-8, has a folded
/// line or a name given twice, or over [`PASS_FIELDS`] fields or a name
/// over [`PASS_NAME`] bytes.
fn head_pass<'h>(
    head: &'h [u8],
    masker: &Masker,
    query: &Masker,
    limit: usize,
    mut secrets: Option<&mut Vec<String>>,
    mut memo: Option<&mut LineMemo>,
) -> Option<Passed<'h>> {
    // A head met before, whole: what the pass made of it then.
    if let Some(kept) = memo.as_deref().and_then(|m| m.head(head)) {
        // The same bytes as then: the values are where they were, and
        // text.
        let at = |r: Option<(u32, u32)>| {
            r.and_then(|(a, l)| head.get(a as usize..(a as usize).checked_add(l as usize)?))
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        return Some(Passed {
            json: crate::spare::copy(&kept.json),
            content_type: at(kept.content_type),
            content_encoding: at(kept.content_encoding),
        });
    }
    // Whether a field was secret: its values went into `secrets`, so the
    // head is not kept whole (each time it comes they must go there again).
    let mut any_secret = false;
    // The JSON is written into the memo's buffer, when there is one, and
    // copied at the end into a string of its own size (see below).
    let mut out = Passed {
        json: memo
            .as_deref_mut()
            .map(|m| std::mem::take(&mut m.json))
            .unwrap_or_default(),
        content_type: None,
        content_encoding: None,
    };
    out.json.clear();
    out.json.reserve(limit.min(1024));
    out.json.push('{');
    // The names met so far: their first bytes (lower case) with their
    // length, and where they are in the head.
    let mut seen = [(0u64, 0usize, 0usize); PASS_FIELDS];
    let mut count = 0;
    let mut lower = [0u8; PASS_NAME];
    // One bit per name met, from its key and length: a name whose bit is
    // not set was not met, known without reading the names (nearly every
    // line); one whose bit is set is looked for among them.
    let mut met_bits = 0u64;
    let bit = |key: u64, len: usize| {
        1u64 << ((key ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
    };
    // Whether a name (its key, length and bytes) was met before.
    let met = |seen: &[(u64, usize, usize)], key: u64, name: &[u8]| {
        seen.iter().any(|&(k, from, len)| {
            k == key
                && len == name.len()
                && head
                    .get(from..from + len)
                    .is_some_and(|earlier| earlier.eq_ignore_ascii_case(name))
        })
    };
    let mut feeds = crate::capture::frame::LineFeeds::new(head);
    let mut at = feeds.next().map_or(head.len(), |first_end| first_end + 1);
    while at < head.len() {
        let end = feeds.next().unwrap_or(head.len());
        let line_at = at;
        let line = head.get(at..end)?;
        at = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return None;
        }
        // A line met before is taken as it was written then.
        let mut hash = None;
        if let Some(memo) = memo.as_deref().filter(|_| line.len() <= memo::LINE) {
            let h = memo::hash(line);
            if let Some(kept) = memo.find(h, line) {
                // SAFETY: the kept line's bytes, equal to these, were a
                // `str` (see the `keep` below).
                let line = unsafe { std::str::from_utf8_unchecked(line) };
                let (name_at, name_len) = (usize::from(kept.name_at), usize::from(kept.name_len));
                let name = line.as_bytes().get(name_at..name_at + name_len)?;
                let b = bit(kept.key, name_len);
                if met_bits & b != 0 && met(&seen[..count], kept.key, name) {
                    return None;
                }
                met_bits |= b;
                *seen.get_mut(count)? = (kept.key, line_at + name_at, name_len);
                count += 1;
                let value_at = usize::from(kept.value_at);
                let value = line.get(value_at..value_at + usize::from(kept.value_len));
                match kept.kind {
                    Kind::ContentType => out.content_type = value,
                    Kind::ContentEncoding => out.content_encoding = value,
                    Kind::Other => {}
                }
                if out.json.len() <= limit {
                    if out.json.len() > 1 {
                        out.json.push(',');
                    }
                    out.json.push_str(&kept.fragment);
                }
                continue;
            }
            hash = Some(h);
        }
        // Only the header lines need be text: a start line or what
        // follows the head is not read here.
        let line = std::str::from_utf8(line).ok()?;
        let Some(colon) = line.bytes().position(|b| b == b':') else {
            continue;
        };
        let raw = &line[..colon];
        let name = raw.trim_ascii();
        if name.is_empty() {
            continue;
        }
        let name_at = line_at + (raw.len() - raw.trim_ascii_start().len());
        for (d, s) in lower.get_mut(..name.len())?.iter_mut().zip(name.as_bytes()) {
            *d = s.to_ascii_lowercase();
        }
        // The first eight lowered bytes (those of this name only).
        let word = u64::from_le_bytes([
            lower[0], lower[1], lower[2], lower[3], lower[4], lower[5], lower[6], lower[7],
        ]);
        let key = match name.len() {
            n @ 0..=7 => word & ((1u64 << (8 * n)) - 1),
            _ => word,
        };
        let lowered = &lower[..name.len()];
        let b = bit(key, name.len());
        if met_bits & b != 0 && met(&seen[..count], key, name.as_bytes()) {
            return None;
        }
        met_bits |= b;
        *seen.get_mut(count)? = (key, name_at, name.len());
        count += 1;
        // SAFETY: `lowered` is a copy of `name`, a `str`, with only its
        // ASCII letters changed (to other ASCII letters): still UTF-8.
        let name = unsafe { std::str::from_utf8_unchecked(lowered) };
        let value = line[colon + 1..].trim_ascii();
        let secret = masker.is_secret_header(name);
        any_secret |= secret;
        if let Some(secrets) = secrets.as_deref_mut().filter(|_| secret) {
            add_header_secrets(secrets, name, value);
        }
        let kind = match name {
            "content-type" => Kind::ContentType,
            "content-encoding" => Kind::ContentEncoding,
            _ => Kind::Other,
        };
        match kind {
            Kind::ContentType => out.content_type = Some(value),
            Kind::ContentEncoding => out.content_encoding = Some(value),
            Kind::Other => {}
        }
        if out.json.len() <= limit {
            if out.json.len() > 1 {
                out.json.push(',');
            }
            let start = out.json.len();
            out.json.push('"');
            push_json_escaped(&mut out.json, name);
            out.json.push_str("\":\"");
            // Whether the value was written as it came (escaped, but
            // nothing masked): then the line holds no secret and is kept.
            let plain = if !secret && clean_prefix_or(value.as_bytes(), b'?') == value.len() {
                // Nothing to escape and no query to mask: most values.
                out.json.push_str(value);
                true
            } else {
                let masked = mask_value(value, secret, query);
                push_json_escaped(&mut out.json, &masked);
                !secret && matches!(masked, Cow::Borrowed(_))
            };
            out.json.push('"');
            if plain {
                if let (Some(memo), Some(h)) = (memo.as_deref_mut(), hash) {
                    let value_at = value.as_ptr() as usize - line.as_ptr() as usize;
                    let written = memo::Written {
                        fragment: out.json.get(start..).unwrap_or_default(),
                        key,
                        name_at: name_at - line_at,
                        name_len: name.len(),
                        kind,
                        value_at,
                        value_len: value.len(),
                    };
                    memo.keep(h, line.as_bytes(), written);
                }
            }
        }
    }
    out.json.push('}');
    if let Some(memo) = memo {
        if !any_secret {
            let offset = |v: Option<&str>| {
                v.map(|v| {
                    (
                        (v.as_ptr() as usize - head.as_ptr() as usize) as u32,
                        v.len() as u32,
                    )
                })
            };
            memo.keep_head(
                head,
                &out.json,
                offset(out.content_type),
                offset(out.content_encoding),
            );
        }
        // The attribute waits in the export queue with its span: a copy
        // (into a string the export thread gave back, when one fits; see
        // `crate::spare`), and the buffer, as long as the limit, kept for
        // the next head, unless a hostile head made it large.
        let exact = crate::spare::copy(&out.json);
        let buffer = std::mem::replace(&mut out.json, exact);
        if buffer.capacity() <= memo::BUFFER {
            memo.json = buffer;
        }
    }
    Some(out)
}

/// A header field: its name in lower case, its value (borrowed from the
/// head unless it had to change).
pub type Field<'h> = (Cow<'h, str>, Cow<'h, str>);

/// The header fields of a raw head (its first line skipped), names lower
/// case, values trimmed, in order. A last line cut short by the head cap
/// is kept if its name is complete; obsolete line folding is joined to the
/// field before it.
pub fn header_fields(head: &[u8]) -> Vec<Field<'_>> {
    let mut fields: Vec<Field<'_>> = Vec::with_capacity(16);
    // A head of valid UTF-8 (nearly all; most are ASCII) is checked once,
    // not field by field, and names already in lower case are borrowed.
    if let Ok(text) = std::str::from_utf8(head) {
        // Lines end at ASCII line feeds, so each is a slice of `text` on
        // character boundaries.
        let mut feeds = crate::capture::frame::LineFeeds::new(head);
        let Some(first_end) = feeds.next() else {
            return fields; // The request or status line only.
        };
        let mut at = first_end + 1;
        while at < head.len() {
            let end = feeds.next().unwrap_or(head.len());
            let line = &text[at..end];
            at = end + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = fields.last_mut() {
                    let v = v.to_mut();
                    v.push(' ');
                    v.push_str(line.trim_ascii());
                }
                continue;
            }
            // Names are short: a plain loop finds the colon sooner than a
            // vector search is set up.
            let Some(colon) = line.bytes().position(|b| b == b':') else {
                continue;
            };
            let name = line[..colon].trim_ascii();
            if name.is_empty() {
                continue;
            }
            fields.push((
                lower_case_name(name),
                Cow::Borrowed(line[colon + 1..].trim_ascii()),
            ));
        }
        return fields;
    }
    let mut lines = head.split(|&b| b == b'\n');
    let _ = lines.next(); // The request or status line.
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some((_, v)) = fields.last_mut() {
                let v = v.to_mut();
                v.push(' ');
                v.push_str(&text(line.trim_ascii()));
            }
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if name.is_empty() {
            continue;
        }
        let value = line.get(colon + 1..).unwrap_or_default().trim_ascii();
        fields.push((Cow::Owned(text(name).to_ascii_lowercase()), text(value)));
    }
    fields
}

/// A field name in lower case: borrowed when it already is, a static
/// string for the common names (no allocation for `Content-Type`), else
/// lowered into a new string.
fn lower_case_name(name: &str) -> Cow<'_, str> {
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(name);
    }
    let mut buf = [0u8; 32];
    if let Some(b) = buf.get_mut(..name.len()) {
        b.copy_from_slice(name.as_bytes());
        b.make_ascii_lowercase();
        if let Some(known) = COMMON_FIELDS.iter().find(|k| k.as_bytes() == &*b) {
            return Cow::Borrowed(known);
        }
    }
    Cow::Owned(name.to_ascii_lowercase())
}

/// Field names most heads carry (lower case), for [`lower_case_name`].
const COMMON_FIELDS: [&str; 24] = [
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "connection",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "date",
    "server",
    "etag",
    "last-modified",
    "cache-control",
    "expires",
    "location",
    "vary",
    "traceparent",
    "tracestate",
    "keep-alive",
    "referer",
    "origin",
];

/// `bytes` as text, invalid UTF-8 replaced (borrowed when valid: the
/// check is the standard library's word-at-a-time one).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// A header value as it may be shown: `****` for a secret name (or one of
/// [`ALWAYS_SECRET_HEADERS`](crate::mask::ALWAYS_SECRET_HEADERS)), else with a URL's secret query values masked.
pub fn mask_header<'v>(
    name: &str,
    value: &'v str,
    masker: &Masker,
    query: &Masker,
) -> Cow<'v, str> {
    mask_value(value, masker.is_secret_header(name), query)
}

/// A header value as it may be shown, its name's verdict known (see
/// [`mask_header`]).
fn mask_value<'v>(value: &'v str, secret: bool, query: &Masker) -> Cow<'v, str> {
    if value.is_empty() {
        return Cow::Borrowed(value);
    }
    if secret {
        return Cow::Borrowed(MASK);
    }
    // `Referer: https://h/p?token=…`, `Location: /next?code=…`.
    let q = if value.len() < 64 {
        value.bytes().position(|b| b == b'?')
    } else {
        memchr::memchr(b'?', value.as_bytes())
    };
    let Some(q) = q else {
        return Cow::Borrowed(value);
    };
    let end = value[q..].find('#').map_or(value.len(), |i| q + i);
    match query.mask_query(&value[q + 1..end]) {
        Cow::Borrowed(_) => Cow::Borrowed(value),
        Cow::Owned(m) => Cow::Owned(format!("{}{m}{}", &value[..=q], &value[end..])),
    }
}

/// The JSON object of header fields (repeated names joined with `, `, in
/// the order names first appeared). Stops adding fields once past `limit`
/// bytes: the attribute is cut there anyway, and the names written, which
/// every field is compared with, stay few whatever the head holds.
pub fn headers_json<N: AsRef<str>, V: AsRef<str>>(fields: &[(N, V)], limit: usize) -> String {
    let mut out = String::with_capacity(limit.min(1024));
    let mut written: Vec<&str> = Vec::new();
    out.push('{');
    for (i, (name, _)) in fields.iter().enumerate() {
        let name = name.as_ref();
        if out.len() > limit {
            break;
        }
        if written.contains(&name) {
            continue;
        }
        written.push(name);
        if out.len() > 1 {
            out.push(',');
        }
        out.push('"');
        push_json_escaped(&mut out, name);
        out.push_str("\":\"");
        let mut values = fields[i..].iter().filter(|(n, _)| n.as_ref() == name);
        if let Some((_, v)) = values.next() {
            push_json_escaped(&mut out, v.as_ref());
        }
        for (_, v) in values {
            if out.len() > limit {
                break;
            }
            out.push_str(", ");
            push_json_escaped(&mut out, v.as_ref());
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// Appends `s` escaped as the inside of a JSON string literal: runs of
/// plain text are copied whole.
fn push_json_escaped(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    let bytes = s.as_bytes();
    // Nearly all header text needs no escaping: checked in blocks and
    // copied whole.
    let clean = clean_prefix(bytes);
    if clean == bytes.len() {
        out.push_str(s);
        return;
    }
    // Copied with what follows (`clean` may fall inside a character).
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` is a character boundary.
        out.push_str(&s[plain..i]);
        if short.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(short);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
}

/// A length of `b`'s start that needs no JSON escaping: `b.len()` when
/// none of it does; otherwise at most the offset of the first byte that
/// does (0 for short text). On x86-64 16 bytes are checked at a time
/// (SSE2), the last block overlapping the one before it.
fn clean_prefix(b: &[u8]) -> usize {
    clean_prefix_or(b, b'"')
}

/// Like [`clean_prefix`], with the byte `also` taken as needing escaping
/// too (a header value without `?` has no query to mask).
fn clean_prefix_or(b: &[u8], also: u8) -> usize {
    let n = b.len();
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(w)
    };
    if n < 16 {
        let clean = if n >= 8 {
            !needs_escape(word(0), also) && !needs_escape(word(n - 8), also)
        } else {
            !b.iter()
                .any(|&x| x < 0x20 || x == b'"' || x == b'\\' || x == also)
        };
        return if clean { n } else { 0 };
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
            _mm_setzero_si128, _mm_subs_epu8,
        };
        let block = |at: usize| -> u32 {
            debug_assert!(at + 16 <= n);
            // SAFETY: SSE2 is part of x86-64; the 16 bytes at `at` are in
            // `b` (every caller keeps `at + 16 <= n`); unaligned loads are
            // allowed.
            unsafe {
                let v = _mm_loadu_si128(b.as_ptr().add(at).cast());
                // Below 0x20: saturating `v - 0x1f` is zero.
                let control =
                    _mm_cmpeq_epi8(_mm_subs_epu8(v, _mm_set1_epi8(0x1f)), _mm_setzero_si128());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                let other = _mm_cmpeq_epi8(v, _mm_set1_epi8(also as i8));
                let special = _mm_or_si128(quote, _mm_or_si128(backslash, other));
                _mm_movemask_epi8(_mm_or_si128(control, special)) as u32
            }
        };
        let mut at = 0;
        while at + 16 <= n {
            let m = block(at);
            if m != 0 {
                return at + m.trailing_zeros() as usize;
            }
            at += 16;
        }
        if at < n {
            let m = block(n - 16);
            if m != 0 {
                return n - 16 + m.trailing_zeros() as usize;
            }
        }
        n
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut at = 0;
        while at + 8 <= n {
            if needs_escape(word(at), also) {
                return at;
            }
            at += 8;
        }
        if at < n && needs_escape(word(n - 8), also) {
            return at;
        }
        n
    }
}

/// Whether one of the eight bytes of `w` is below 0x20, `"`, `\\` or
/// `also`.
fn needs_escape(w: u64, also: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    (below_space
        | zero_byte(w ^ (ONES * u64::from(b'"')))
        | zero_byte(w ^ (ONES * u64::from(b'\\')))
        | zero_byte(w ^ (ONES * u64::from(also))))
        != 0
}

/// Raw captured bytes of an exchange, for tests elsewhere.
#[cfg(test)]
pub(crate) fn captured(
    request_head: &[u8],
    request_body: &[u8],
    response_head: &[u8],
    response_body: &[u8],
) -> Option<Box<crate::http::Captured>> {
    Some(Box::new(crate::http::Captured {
        request_head: request_head.to_vec(),
        response_head: response_head.to_vec(),
        request_body: request_body.to_vec(),
        response_body: response_body.to_vec(),
    }))
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;

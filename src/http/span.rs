//! Span name, kind, status and attributes of a finished [`HttpExchange`],
//! per the stable OpenTelemetry HTTP semantic conventions.
//!
//! Choices worth knowing:
//! - Name: the method for the nine methods of RFC 9110 and PATCH; `HTTP`
//!   otherwise, with `http.request.method` = `_OTHER` and the method as sent
//!   in `http.request.method_original` (as the conventions say).
//! - The request-target decides `url.path` and `url.query` in all its forms:
//!   origin (`/p?q`), absolute (`http://host/p?q`, sent to proxies), authority
//!   (`host:443`, for `CONNECT`: no path) and asterisk (`*`). `url.query` is
//!   masked with the [`Masker`] and omitted when empty.
//! - `server.address`/`server.port`: on a client, the absolute-form URL's
//!   authority, else the `Host` header, else the peer's address; on a server,
//!   the `Host` header, else the absolute-form authority, else the local
//!   address. A host name without a port gets the scheme's default port (as
//!   the conventions say); an address from the socket keeps its real port.
//! - Over a Unix socket: `network.transport` = `unix`; the socket's name
//!   takes the place of an IP address (`server.address` when the request
//!   names no host, `network.peer.address`, and `network.local.address`,
//!   where a server's listening name shows); no port is made up (`server.port`
//!   only from an explicit `host:port`), and a client's `url.full` needs a
//!   named host.
//! - `url.full` (clients only): `scheme://authority/path?masked-query`, with
//!   any user-info replaced by `REDACTED:REDACTED`.
//! - Body sizes are set only when non-zero (bytes of content, decoded for
//!   chunked bodies): a zero would be indistinguishable from "not seen".
//! - `error.type` follows the status code whenever a final response came:
//!   the code for failures (>= 400 on clients, >= 500 on servers), nothing
//!   otherwise, whatever happened to the body afterwards (an app that closes
//!   a 404 without reading its body gets `404`, over HTTP and HTTPS alike).
//!   Without a status it is the exchange's error, if any. Spans with an
//!   `error.type` are exactly those with status Error.

use std::cell::OnceCell;
use std::net::IpAddr;
use std::sync::Arc;

use super::{HttpExchange, Role};
use crate::address::Address;
use crate::mask::Masker;
use crate::span::{AttrValue, Attributes, EncodedRun, SpanKind, SpanStatus, Text};

/// The two ends of the connection an exchange ran on, and its URL scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub peer: Option<Address>,
    pub local: Option<Address>,
    /// `"http"`, or `"https"` when the bytes came from inside TLS.
    pub scheme: &'static str,
    /// The TLS server name (SNI) a client asked for: `server.address` when
    /// the request names no host.
    pub server_name: Option<String>,
    /// The addresses as text, formatted by the first span that needs them
    /// and shared by every later span of the connection.
    peer_text: OnceCell<Arc<str>>,
    local_text: OnceCell<Arc<str>>,
    /// The attributes the connection gives each of its spans, OTLP-encoded
    /// by the first span that has them: for server and client HTTP spans
    /// (see [`EncodedRun`]).
    runs: [OnceCell<Arc<[u8]>>; 2],
}

/// Which spans of a connection an [`Endpoints`] run is for.
#[derive(Clone, Copy)]
enum RunOf {
    ServerHttp = 0,
    ClientHttp = 1,
}

impl Endpoints {
    /// Plain-text HTTP between these addresses.
    pub fn new(peer: Option<Address>, local: Option<Address>) -> Endpoints {
        Endpoints {
            peer,
            local,
            scheme: "http",
            server_name: None,
            peer_text: OnceCell::new(),
            local_text: OnceCell::new(),
            runs: Default::default(),
        }
    }

    /// Fills in addresses not known when the connection was made.
    pub fn fill(&mut self, peer: Option<Address>, local: Option<Address>) {
        self.peer = self.peer.take().or(peer);
        self.local = self.local.take().or(local);
        self.runs = Default::default();
    }

    /// `attrs[at..]`, the attributes the connection gives every span of
    /// kind `of`, as an [`EncodedRun`]: encoded by the first span, shared
    /// by the rest.
    fn run(&self, of: RunOf, attrs: &Attributes, at: usize) -> Option<EncodedRun> {
        let run = attrs.get(at..).filter(|r| !r.is_empty())?;
        let bytes = self.runs[of as usize]
            .get_or_init(|| crate::export::encode_attributes(run))
            .clone();
        Some(EncodedRun {
            at,
            count: run.len(),
            bytes,
        })
    }

    /// The peer's address as text: its IP (IPv4-mapped IPv6 shown as IPv4)
    /// or its Unix socket name.
    pub fn peer_address(&self) -> Option<&Arc<str>> {
        let peer = self.peer.as_ref()?;
        Some(self.peer_text.get_or_init(|| address_text(peer)))
    }

    /// The local address as text, like [`Endpoints::peer_address`].
    pub fn local_address(&self) -> Option<&Arc<str>> {
        let local = self.local.as_ref()?;
        Some(self.local_text.get_or_init(|| address_text(local)))
    }

    /// The connection is a Unix domain socket.
    pub fn is_unix(&self) -> bool {
        self.peer
            .as_ref()
            .or(self.local.as_ref())
            .is_some_and(Address::is_unix)
    }
}

fn address_text(a: &Address) -> Arc<str> {
    match a {
        Address::Inet(a) => ip_text(a.ip()),
        Address::Unix(name) => name.clone(),
    }
}

/// An IP address as text: dotted quad for IPv4 (and IPv4-mapped IPv6),
/// RFC 5952 for IPv6.
fn ip_text(ip: IpAddr) -> Arc<str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            // Only ASCII digits and dots were written.
            Arc::from(std::str::from_utf8(&buf[..n]).unwrap_or_default())
        }
        IpAddr::V6(v6) => Arc::from(v6.to_string()),
    }
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints::new(None, None)
    }
}

/// Everything of a span that comes from the exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSpanParts {
    pub name: Text,
    pub kind: SpanKind,
    pub status: SpanStatus,
    pub attributes: Attributes,
    /// The connection's attributes among them, encoded once.
    pub encoded: Option<EncodedRun>,
}

/// Builds the span of an exchange seen from `role`, its attributes in
/// `attrs` (an empty vector, usually with room for 16: a span with every
/// optional attribute, 19 at most, grows it once).
pub fn span_parts(
    ex: &HttpExchange,
    role: Role,
    ends: &Endpoints,
    masker: &Masker,
    mut attrs: Attributes,
) -> HttpSpanParts {
    attrs.clear();
    let known = super::parser::is_standard_method(&ex.method);
    let name = if known {
        ex.method.clone()
    } else {
        Text::Static("HTTP")
    };
    if known {
        attrs.push(("http.request.method", AttrValue::Str(ex.method.clone())));
    } else {
        attrs.push(("http.request.method", AttrValue::from_static("_OTHER")));
        if !ex.method.is_empty() {
            attrs.push((
                "http.request.method_original",
                AttrValue::Str(ex.method.clone()),
            ));
        }
    }

    let target = Target::parse(&ex.target);
    let scheme = target.scheme.unwrap_or(ends.scheme);
    let query = target
        .query
        .map(|q| masker.mask_query(q))
        .filter(|q| !q.is_empty());
    if let Some(path) = target.path.filter(|p| !p.is_empty()) {
        attrs.push(("url.path", path.into()));
    }
    if let Some(query) = &query {
        attrs.push(("url.query", query.as_ref().into()));
    }
    attrs.push(("url.scheme", AttrValue::from_static(scheme)));

    let host_header = ex.host.as_deref().map(str::trim).filter(|h| !h.is_empty());
    let named = match role {
        Role::Client => target
            .authority
            .or(host_header)
            .or(ends.server_name.as_deref()),
        Role::Server => host_header.or(target.authority),
    };
    let unix = ends.is_unix();
    let (socket, socket_text) = match role {
        Role::Client => (ends.peer.as_ref(), ends.peer_address()),
        Role::Server => (ends.local.as_ref(), ends.local_address()),
    };
    // The server as (host, port, authority for url.full).
    let server = match named {
        Some(authority) => {
            let (host, port) = split_host_port(authority);
            // A Unix socket has no port: none is made up from the scheme.
            let port = port.or_else(|| default_port(scheme).filter(|_| !unix));
            Some((AttrValue::from(host), port, Some(authority)))
        }
        None => socket
            .zip(socket_text)
            .map(|(addr, text)| (AttrValue::shared(text), addr.port(), None)),
    };
    if let Some((host, port, authority)) = server {
        // A URL's authority is a host, never a socket's file name.
        let url_authority = authority.is_some() || !unix;
        if role == Role::Client && url_authority {
            let mut url = String::with_capacity(64);
            url.push_str(scheme);
            url.push_str("://");
            if target.has_userinfo {
                url.push_str("REDACTED:REDACTED@");
            }
            match (authority, socket) {
                (Some(authority), _) => url.push_str(authority),
                (None, Some(Address::Inet(addr))) => {
                    push_authority(&mut url, addr.port(), socket_text, scheme)
                }
                (None, _) => {}
            }
            if let Some(path) = target.path.filter(|p| p.starts_with('/')) {
                url.push_str(path);
            }
            if let Some(query) = &query {
                url.push('?');
                url.push_str(query);
            }
            attrs.push(("url.full", url.into()));
        }
        if !matches!(&host, AttrValue::Str(h) if h.is_empty()) {
            attrs.push(("server.address", host));
        }
        if let Some(port) = port {
            attrs.push(("server.port", port.into()));
        }
    }

    // From here to the protocol version: the same for every span of the
    // connection.
    let run_at = attrs.len();
    if let Some((peer, text)) = ends.peer.as_ref().zip(ends.peer_address()) {
        if role == Role::Server {
            attrs.push(("client.address", AttrValue::shared(text)));
            if let Some(port) = peer.port() {
                attrs.push(("client.port", port.into()));
            }
        }
        attrs.push(("network.peer.address", AttrValue::shared(text)));
        if let Some(port) = peer.port() {
            attrs.push(("network.peer.port", port.into()));
        }
    }
    if unix {
        attrs.push(("network.transport", AttrValue::from_static("unix")));
        if let Some(local) = ends.local_address() {
            attrs.push(("network.local.address", AttrValue::shared(local)));
        }
    }
    let of = match role {
        Role::Server => RunOf::ServerHttp,
        Role::Client => RunOf::ClientHttp,
    };
    let encoded = ends.run(of, &attrs, run_at);
    if let Some(version) = ex.protocol_version() {
        attrs.push(("network.protocol.version", AttrValue::from_static(version)));
    }
    if let Some(status) = ex.status {
        attrs.push(("http.response.status_code", status.into()));
    }
    if let Some(ua) = &ex.user_agent {
        attrs.push(("user_agent.original", AttrValue::Str(ua.clone())));
    }
    if ex.request_body_size > 0 {
        attrs.push(("http.request.body.size", ex.request_body_size.into()));
    }
    if ex.response_body_size > 0 {
        attrs.push(("http.response.body.size", ex.response_body_size.into()));
    }

    let failed_status = ex.status.filter(|s| match role {
        Role::Client => *s >= 400,
        Role::Server => *s >= 500,
    });
    // A received status says how the exchange went; the exchange's own
    // error only speaks when no status came.
    let error = ex.error.filter(|_| ex.status.is_none());
    let status = match (error, failed_status) {
        (_, Some(code)) => {
            attrs.push(("error.type", code.to_string().into()));
            SpanStatus::Error(format!("HTTP {code}"))
        }
        (Some(error), None) => {
            attrs.push(("error.type", error.into()));
            SpanStatus::Error(error.to_owned())
        }
        (None, None) => SpanStatus::Unset,
    };
    let kind = match role {
        Role::Client => SpanKind::Client,
        Role::Server => SpanKind::Server,
    };
    HttpSpanParts {
        name,
        kind,
        status,
        attributes: attrs,
        encoded,
    }
}

/// The parts of a request-target.
#[derive(Debug, Default, PartialEq, Eq)]
struct Target<'a> {
    /// Lower-case scheme of an absolute-form target.
    scheme: Option<&'static str>,
    /// Host and port of an absolute-form or authority-form target (user-info
    /// removed).
    authority: Option<&'a str>,
    has_userinfo: bool,
    path: Option<&'a str>,
    query: Option<&'a str>,
}

impl<'a> Target<'a> {
    fn parse(target: &'a str) -> Target<'a> {
        // memchr: a char search costs more than the short target itself.
        let target = match memchr::memchr(b'#', target.as_bytes()) {
            Some(i) => target.get(..i).unwrap_or_default(),
            None => target,
        };
        if target.starts_with('/') || target == "*" {
            let (path, query) = split_query(target);
            return Target {
                path: Some(path),
                query,
                ..Target::default()
            };
        }
        if let Some((scheme, rest)) = target.split_once("://") {
            let scheme = if scheme.eq_ignore_ascii_case("http") {
                "http"
            } else if scheme.eq_ignore_ascii_case("https") {
                "https"
            } else {
                return Target::default();
            };
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path_and_query) = rest.split_at(end);
            let (userinfo, authority) = match authority.rsplit_once('@') {
                Some((_, host)) => (true, host),
                None => (false, authority),
            };
            let (path, query) = split_query(path_and_query);
            let path = if path.is_empty() { "/" } else { path };
            return Target {
                scheme: Some(scheme),
                authority: Some(authority).filter(|a| !a.is_empty()),
                has_userinfo: userinfo,
                path: Some(path),
                query,
            };
        }
        // Authority form (`CONNECT host:port`).
        Target {
            authority: Some(target).filter(|a| !a.is_empty()),
            ..Target::default()
        }
    }
}

/// The path of a request-target (`url.path`), empty if it has none.
pub(crate) fn target_path(target: &str) -> &str {
    Target::parse(target).path.unwrap_or("")
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    // '?' is ASCII, so both sides of it are char boundaries.
    match memchr::memchr(b'?', s.as_bytes()) {
        Some(i) => (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
        None => (s, None),
    }
}

/// Splits `host[:port]`, `[v6]` or `[v6]:port`; the host comes without
/// brackets. A port that is not a number is left off.
fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (authority, None),
        };
    }
    // Searched as bytes: `str`'s character searchers cost more than the
    // few bytes of an authority (a colon is never inside a character).
    let bytes = authority.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some(i) if bytes[..i].contains(&b':') => (authority, None),
        Some(i) => (&authority[..i], authority[i + 1..].parse().ok()),
        None => (authority, None),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Appends `host[:port]` of a socket address (`ip` is its address as text)
/// for a URL: brackets around IPv6, no default port.
fn push_authority(url: &mut String, port: u16, ip: Option<&Arc<str>>, scheme: &str) {
    use std::fmt::Write as _;
    let ip = ip.map_or("", |ip| ip);
    if ip.contains(':') {
        url.push('[');
        url.push_str(ip);
        url.push(']');
    } else {
        url.push_str(ip);
    }
    if default_port(scheme) != Some(port) {
        let _ = write!(url, ":{port}");
    }
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;

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
//! - `url.full` (clients only): `scheme://authority/path?masked-query`, with
//!   any user-info replaced by `REDACTED:REDACTED`.
//! - Body sizes are set only when non-zero (bytes of content, decoded for
//!   chunked bodies): a zero would be indistinguishable from "not seen".
//! - `error.type` is the exchange's error if it has one, else the status code
//!   for failures (>= 400 on clients, >= 500 on servers); those are exactly
//!   the spans with status Error.

use std::net::{IpAddr, SocketAddr};

use super::{HttpExchange, Role};
use crate::mask::Masker;
use crate::span::{AttrValue, SpanKind, SpanStatus};

/// The two ends of the connection an exchange ran on, and its URL scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub peer: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// `"http"`, or `"https"` when the bytes came from inside TLS.
    pub scheme: &'static str,
    /// The TLS server name (SNI) a client asked for: `server.address` when
    /// the request names no host.
    pub server_name: Option<String>,
}

impl Endpoints {
    /// Plain-text HTTP between these addresses.
    pub fn new(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> Endpoints {
        Endpoints {
            peer,
            local,
            scheme: "http",
            server_name: None,
        }
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
    pub name: String,
    pub kind: SpanKind,
    pub status: SpanStatus,
    pub attributes: Vec<(&'static str, AttrValue)>,
}

const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Builds the span of an exchange seen from `role`.
pub fn span_parts(
    ex: &HttpExchange,
    role: Role,
    ends: &Endpoints,
    masker: &Masker,
) -> HttpSpanParts {
    let mut attrs: Vec<(&'static str, AttrValue)> = Vec::with_capacity(20);
    let known = KNOWN_METHODS.contains(&ex.method.as_str());
    let name = if known {
        ex.method.clone()
    } else {
        "HTTP".to_owned()
    };
    if known {
        attrs.push(("http.request.method", ex.method.as_str().into()));
    } else {
        attrs.push(("http.request.method", "_OTHER".into()));
        if !ex.method.is_empty() {
            attrs.push(("http.request.method_original", ex.method.as_str().into()));
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
    attrs.push(("url.scheme", scheme.into()));

    let host_header = ex.host.as_deref().map(str::trim).filter(|h| !h.is_empty());
    let named = match role {
        Role::Client => target
            .authority
            .or(host_header)
            .or(ends.server_name.as_deref()),
        Role::Server => host_header.or(target.authority),
    };
    let socket = match role {
        Role::Client => ends.peer,
        Role::Server => ends.local,
    };
    // The server as (host, port, authority for url.full).
    let server = match named {
        Some(authority) => {
            let (host, port) = split_host_port(authority);
            Some((
                host.to_owned(),
                port.or_else(|| default_port(scheme)),
                authority.to_owned(),
            ))
        }
        None => socket.map(|addr| {
            let ip = canonical_ip(addr.ip());
            (
                ip.to_string(),
                Some(addr.port()),
                authority_of(ip, addr.port(), scheme),
            )
        }),
    };
    if let Some((host, port, authority)) = &server {
        if role == Role::Client {
            let mut url = format!("{scheme}://");
            if target.has_userinfo {
                url.push_str("REDACTED:REDACTED@");
            }
            url.push_str(authority);
            if let Some(path) = target.path.filter(|p| p.starts_with('/')) {
                url.push_str(path);
            }
            if let Some(query) = &query {
                url.push('?');
                url.push_str(query);
            }
            attrs.push(("url.full", url.into()));
        }
        if !host.is_empty() {
            attrs.push(("server.address", host.as_str().into()));
        }
        if let Some(port) = port {
            attrs.push(("server.port", (*port).into()));
        }
    }

    if let Some(peer) = ends.peer {
        let ip = canonical_ip(peer.ip()).to_string();
        if role == Role::Server {
            attrs.push(("client.address", ip.as_str().into()));
            attrs.push(("client.port", peer.port().into()));
        }
        attrs.push(("network.peer.address", ip.into()));
        attrs.push(("network.peer.port", peer.port().into()));
    }
    if let Some(version) = ex.protocol_version() {
        attrs.push(("network.protocol.version", version.into()));
    }
    if let Some(status) = ex.status {
        attrs.push(("http.response.status_code", status.into()));
    }
    if let Some(ua) = &ex.user_agent {
        attrs.push(("user_agent.original", ua.as_str().into()));
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
    let status = match (ex.error, failed_status) {
        (Some(error), _) => {
            attrs.push(("error.type", error.into()));
            SpanStatus::Error(error.to_owned())
        }
        (None, Some(code)) => {
            attrs.push(("error.type", code.to_string().into()));
            SpanStatus::Error(format!("HTTP {code}"))
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
        let target = target.split('#').next().unwrap_or_default();
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

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((path, query)) => (path, Some(query)),
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
    match authority.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => (authority, None),
        Some((host, port)) => (host, port.parse().ok()),
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

/// IPv4 addresses seen through a dual-stack socket (`::ffff:1.2.3.4`) as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// `host[:port]` for a URL, with brackets around IPv6 and no default port.
fn authority_of(ip: IpAddr, port: u16, scheme: &str) -> String {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    if default_port(scheme) == Some(port) {
        host
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;

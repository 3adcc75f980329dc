//! OTLP/gRPC: one unary call, `TraceService/Export`, over HTTP/2 (`h2c`
//! with prior knowledge for `http://`, TLS with ALPN `h2` for `https://`).
//!
//! Why `h2` and not `tonic`: the core already encodes the
//! `ExportTraceServiceRequest`; what gRPC adds is a 5-byte frame around it,
//! a few headers and a status in the trailers. `tonic` would bring
//! `hyper`, `tower`, `prost` and a tokio runtime (its I/O driver: an
//! `epoll` descriptor and an `eventfd` in the app's descriptor table,
//! below our custody's high numbers and outside its hooks) for that.
//!
//! No async runtime at all: the `h2` futures are polled by [`block_on`]
//! on the export thread, which waits for the one socket of the call with
//! `poll(2)` until the call's deadline. The socket is non-blocking, made by
//! `socket()` on the export thread, so the preload library adopts it
//! (moved high, close-on-exec, never traced) like ureq's. TLS is rustls,
//! driven by hand over that socket ([`Io`]), with the same crypto provider
//! and platform verifier as the HTTP client, or the configured CA, and the
//! configured client certificate.
//!
//! The connection is kept between calls (h2 multiplexes, we send one call
//! at a time); any error drops it, and the next call connects again.

use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::client::{
    Answer, OPTION_CA_FILE, OPTION_CLIENT_CERT_FILE, OPTION_CLIENT_KEY_FILE,
    OPTION_CONTENT_ENCODING, USER_AGENT,
};

/// The method every OTLP/gRPC trace export calls.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Largest response message we keep (an `ExportTraceServiceResponse` is a
/// few bytes).
const MAX_RESPONSE_BODY: usize = 1 << 20;

/// gRPC status codes we name.
pub const OK: u8 = 0;
pub const UNKNOWN: u8 = 2;
pub const INTERNAL: u8 = 13;
pub const UNAVAILABLE: u8 = 14;

const WANT_READ: u8 = 1;
const WANT_WRITE: u8 = 2;

/// One destination's gRPC client.
pub struct GrpcClient {
    headers: Vec<(HeaderName, HeaderValue)>,
    gzip: bool,
    timeout: Duration,
    /// TLS settings, made when first needed (an `https` endpoint) unless
    /// files were configured, which are read at once.
    tls: Mutex<Option<Arc<rustls::ClientConfig>>>,
    options: Vec<(String, String)>,
    /// Boxed: an h2 connection is over a kilobyte.
    conn: Mutex<Option<Box<Conn>>>,
}

impl std::fmt::Debug for GrpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("GrpcClient")
            .field("headers", &names)
            .finish()
    }
}

/// A live HTTP/2 connection to one endpoint.
struct Conn {
    /// `scheme://authority` it was made for.
    origin: String,
    send: h2::client::SendRequest<Bytes>,
    connection: h2::client::Connection<Io, Bytes>,
    fd: RawFd,
    interest: Arc<AtomicU8>,
}

/// The socket of a connection, plain or under TLS, as h2 wants it. Never
/// blocks: what it would wait for is noted in `interest` for [`block_on`].
struct Io {
    sock: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    interest: Arc<AtomicU8>,
    eof: bool,
}

impl Io {
    fn pending<T>(&self, want: u8) -> Poll<io::Result<T>> {
        self.interest.fetch_or(want, Ordering::Relaxed);
        Poll::Pending
    }

    /// Writes out what TLS has queued (handshake, records, alerts).
    fn flush_tls(&mut self) -> Poll<io::Result<()>> {
        let Some(tls) = self.tls.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while tls.wants_write() {
            match tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.pending(WANT_WRITE);
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tls.is_none() {
            loop {
                match this.sock.read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return this.pending(WANT_READ);
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        loop {
            if let Poll::Ready(Err(e)) = this.flush_tls() {
                return Poll::Ready(Err(e));
            }
            let Some(tls) = this.tls.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match tls.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match tls.read_tls(&mut this.sock) {
                Ok(n) => {
                    this.eof = n == 0;
                    if let Err(e) = tls.process_new_packets() {
                        // The alert it queued, if it can go at once.
                        let _ = this.flush_tls();
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return this.pending(WANT_READ);
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(tls) = this.tls.as_mut() else {
            loop {
                match this.sock.write(data) {
                    Ok(n) => return Poll::Ready(Ok(n)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return this.pending(WANT_WRITE);
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        };
        let n = tls.writer().write(data)?;
        let flushed = this.flush_tls();
        if let Poll::Ready(Err(e)) = flushed {
            return Poll::Ready(Err(e));
        }
        if n == 0 && !data.is_empty() {
            // TLS buffers are full: room comes from the socket taking
            // records, or from the handshake (which needs reads) ending.
            return this.pending(WANT_READ | WANT_WRITE);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().flush_tls()
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(tls) = this.tls.as_mut() {
            tls.send_close_notify();
            if let Poll::Ready(Err(e)) = this.flush_tls() {
                return Poll::Ready(Err(e));
            }
        }
        let _ = this.sock.shutdown(Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

/// Wakes [`block_on`]'s loop: a future was woken while it was being
/// polled, so it is polled again at once instead of waiting on the socket.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Polls `future` on this thread until it is ready, waiting between polls
/// for the socket `fd` to become ready for what the last poll wanted
/// (`interest`), at most until `deadline`.
fn block_on<F: Future>(
    future: F,
    fd: RawFd,
    interest: &AtomicU8,
    deadline: Instant,
) -> Result<F::Output, String> {
    let mut future = pin!(future);
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        interest.store(0, Ordering::Relaxed);
        flag.0.store(false, Ordering::Release);
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Ok(out);
        }
        if flag.0.load(Ordering::Acquire) {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".to_owned());
        }
        let want = interest.load(Ordering::Relaxed);
        let mut events = 0;
        if want & WANT_READ != 0 || want == 0 {
            events |= libc::POLLIN;
        }
        if want & WANT_WRITE != 0 {
            events |= libc::POLLOUT;
        }
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd. Its result does not matter: the next
        // poll of the future reads or writes and sees what happened.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

/// `grpc-timeout`: at most 8 digits and a unit.
fn grpc_timeout(left: Duration) -> String {
    let ms = left.as_millis().max(1);
    if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", left.as_secs().min(99_999_999))
    }
}

/// The gRPC status of an HTTP status when a response has no `grpc-status`
/// (as gRPC's HTTP-to-gRPC status mapping says).
fn status_of_http(http: u16) -> u8 {
    match http {
        400 => INTERNAL,
        401 => 16, // UNAUTHENTICATED
        403 => 7,  // PERMISSION_DENIED
        404 => 12, // UNIMPLEMENTED
        429 | 502..=504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// Reads a PEM file's certificates.
fn pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no certificate"));
    }
    Ok(certs)
}

/// TLS settings from the options: the configured CA or the platform's
/// verifier, the client certificate if any, ALPN `h2`.
fn tls_config(options: &[(String, String)]) -> Result<Arc<rustls::ClientConfig>, String> {
    let option = |name: &str| {
        options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match option(OPTION_CA_FILE) {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in pem_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{path}: unusable CA certificate: {e}"))?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| format!("no platform certificate verifier: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    let mut config = match (
        option(OPTION_CLIENT_CERT_FILE),
        option(OPTION_CLIENT_KEY_FILE),
    ) {
        (Some(cert_path), Some(key_path)) => {
            let chain = pem_certs(cert_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| format!("{key_path} holds no usable private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("unusable client certificate: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("a client certificate needs both its file and its key's".into()),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// What a URL names: TLS or not, host, port, `scheme://authority`.
struct Target {
    tls: bool,
    host: String,
    port: u16,
    origin: String,
}

fn target(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        _ => return Err(format!("{url:?} is not an http:// or https:// URL")),
    };
    let authority = uri.authority().ok_or("the URL has no host")?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_owned();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let origin = format!(
        "{}://{}",
        if tls { "https" } else { "http" },
        authority.as_str()
    );
    Ok(Target {
        tls,
        host,
        port,
        origin,
    })
}

/// Connects to the first address of `host` that answers before `deadline`.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("connecting to {host}:{port} timed out"));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// The trailers (or headers) of a gRPC answer: status, message, and the
/// delay a `google.rpc.RetryInfo` asks for.
fn grpc_outcome(headers: &http::HeaderMap) -> Option<(u8, String, Option<Duration>)> {
    let status = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u8>()
        .unwrap_or(UNKNOWN);
    let message = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    let retry = headers
        .get("grpc-status-details-bin")
        .and_then(|v| base64_decode(v.as_bytes()))
        .and_then(|details| retry_delay(&details));
    Some((status, message, retry))
}

/// `grpc-message` is percent-encoded UTF-8.
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Base64, standard alphabet, padded or not (`-bin` headers are sent
/// unpadded).
fn base64_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in raw
        .iter()
        .filter(|c| !c.is_ascii_whitespace() && **c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The fields of one protobuf message: (field number, varint value or
/// length-delimited bytes). Fixed-width fields are skipped. `None` when
/// malformed.
fn proto_fields(mut buf: &[u8]) -> Option<Vec<(u64, u64, &[u8])>> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let field = key >> 3;
        match key & 7 {
            0 => out.push((field, varint(&mut buf)?, &[][..])),
            1 => buf = buf.get(8..)?,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let bytes = buf.get(..len)?;
                buf = &buf[len..];
                out.push((field, 0, bytes));
            }
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(out)
}

/// The `retry_delay` of the `google.rpc.RetryInfo` among the details of a
/// `google.rpc.Status`.
fn retry_delay(status: &[u8]) -> Option<Duration> {
    for (field, _, any) in proto_fields(status)? {
        // Status.details (3): Any { type_url (1), value (2) }.
        if field != 3 {
            continue;
        }
        let any = proto_fields(any)?;
        let is_retry_info = any
            .iter()
            .any(|(f, _, v)| *f == 1 && v.ends_with(b"/google.rpc.RetryInfo"));
        if !is_retry_info {
            continue;
        }
        let value = any
            .iter()
            .find(|(f, _, _)| *f == 2)
            .map_or(&[][..], |a| a.2);
        // RetryInfo.retry_delay (1): Duration { seconds (1), nanos (2) }.
        let duration = proto_fields(value)?
            .into_iter()
            .find(|(f, _, _)| *f == 1)
            .map_or(&[][..], |d| d.2);
        let (mut secs, mut nanos) = (0u64, 0u32);
        for (f, v, _) in proto_fields(duration)? {
            match f {
                1 => secs = v,
                2 => nanos = u32::try_from(v).unwrap_or(0).min(999_999_999),
                _ => {}
            }
        }
        // A negative delay (a huge varint) means none.
        if secs > u64::from(u32::MAX) {
            return Some(Duration::ZERO);
        }
        return Some(Duration::new(secs, nanos));
    }
    None
}

/// The message of a gRPC response body (5-byte prefix: compressed flag
/// and big-endian length). A compressed one is not read (we ask for none).
fn unframe(body: &[u8]) -> Vec<u8> {
    match body {
        [0, a, b, c, d, rest @ ..] => {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            rest.get(..len).map(<[u8]>::to_vec).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

impl GrpcClient {
    /// As `UreqClient::new`: configured headers and options; invalid
    /// headers are skipped and reported. Fails when configured certificate
    /// files cannot be used.
    pub fn new(
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<(GrpcClient, Vec<String>), String> {
        let (options, headers): (Vec<_>, Vec<_>) = headers
            .iter()
            .cloned()
            .partition(|(n, _)| n.starts_with(':'));
        let mut problems = Vec::new();
        let mut valid = Vec::new();
        for (name, value) in &headers {
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                // gRPC's own headers are ours to set.
                (Ok(n), _) if n.as_str().starts_with("grpc-") || n.as_str() == "te" => {
                    problems.push(format!("ignoring header {name:?}: gRPC sets it"))
                }
                (Ok(n), Ok(v)) => valid.push((n, v)),
                _ => problems.push(format!("ignoring invalid header {name:?}")),
            }
        }
        let has = |name: &str| options.iter().any(|(n, _)| n == name);
        let gzip = options
            .iter()
            .any(|(n, v)| n == OPTION_CONTENT_ENCODING && v == "gzip");
        // Configured files are read now, so a bad one is told at once.
        let tls = if has(OPTION_CA_FILE) || has(OPTION_CLIENT_CERT_FILE) {
            Some(tls_config(&options)?)
        } else {
            None
        };
        let client = GrpcClient {
            headers: valid,
            gzip,
            timeout,
            tls: Mutex::new(tls),
            options,
            conn: Mutex::new(None),
        };
        Ok((client, problems))
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut tls = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = &*tls {
            return Ok(config.clone());
        }
        let config = tls_config(&self.options)?;
        *tls = Some(config.clone());
        Ok(config)
    }

    fn connect(&self, target: &Target, deadline: Instant) -> Result<Conn, String> {
        let sock = connect(&target.host, target.port, deadline)?;
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let tls = if target.tls {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| format!("{}: {e}", target.host))?;
            let conn = rustls::ClientConnection::new(self.tls()?, name)
                .map_err(|e| format!("TLS: {e}"))?;
            Some(Box::new(conn))
        } else {
            None
        };
        let interest = Arc::new(AtomicU8::new(0));
        let fd = sock.as_raw_fd();
        let io = Io {
            sock,
            tls,
            interest: interest.clone(),
            eof: false,
        };
        let (send, connection) = block_on(
            h2::client::Builder::new()
                .enable_push(false)
                .handshake::<_, Bytes>(io),
            fd,
            &interest,
            deadline,
        )?
        .map_err(|e| format!("HTTP/2 handshake with {}: {e}", target.origin))?;
        Ok(Conn {
            origin: target.origin.clone(),
            send,
            connection,
            fd,
            interest,
        })
    }

    /// Calls `TraceService/Export` at `url` with an encoded (and, when so
    /// configured, gzipped) `ExportTraceServiceRequest`: the gRPC status
    /// (with the `RetryInfo` delay, and the response message when OK, or
    /// the `grpc-message` otherwise), or a transport error.
    pub fn post(&self, url: &str, body: &[u8]) -> Result<Answer, String> {
        let deadline = Instant::now() + self.timeout;
        let target = target(url)?;
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| c.origin != target.origin) {
            *slot = None;
        }
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => Box::new(self.connect(&target, deadline)?),
        };
        let (answer, keep) = self.call(&mut conn, &target, body, deadline)?;
        if keep {
            *slot = Some(conn);
        }
        Ok(answer)
    }

    /// One call on `conn`: its answer, and whether the connection can
    /// serve the next one.
    fn call(
        &self,
        conn: &mut Conn,
        target: &Target,
        body: &[u8],
        deadline: Instant,
    ) -> Result<(Answer, bool), String> {
        let mut framed = Vec::with_capacity(body.len() + 5);
        framed.push(u8::from(self.gzip));
        framed.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        framed.extend_from_slice(body);
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("{}{EXPORT_PATH}", target.origin))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", USER_AGENT)
            .header(
                "grpc-timeout",
                grpc_timeout(deadline.saturating_duration_since(Instant::now())),
            );
        if self.gzip {
            request = request.header("grpc-encoding", "gzip");
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request.body(()).map_err(|e| e.to_string())?;
        let Conn {
            send,
            connection,
            fd,
            interest,
            ..
        } = conn;
        let call = async {
            let mut send = send.clone().ready().await?;
            let (response, mut stream) = send.send_request(request, false)?;
            stream.send_data(Bytes::from(framed), true)?;
            let (parts, mut body) = response.await?.into_parts();
            let mut data = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                if data.len() + chunk.len() <= MAX_RESPONSE_BODY + 5 {
                    data.extend_from_slice(&chunk);
                }
            }
            let trailers = body.trailers().await?;
            Ok::<_, h2::Error>((parts, data, trailers))
        };
        let mut call = pin!(call);
        let mut connection_done = false;
        let both = poll_fn(|cx| {
            if !connection_done {
                match Pin::new(&mut *connection).poll(cx) {
                    Poll::Ready(Ok(())) => connection_done = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            call.as_mut().poll(cx)
        });
        let (parts, data, trailers) = block_on(both, *fd, interest, deadline)?
            .map_err(|e| format!("gRPC call to {}: {e}", target.origin))?;
        let http = parts.status.as_u16();
        let (status, message, retry) = trailers
            .as_ref()
            .and_then(grpc_outcome)
            .or_else(|| grpc_outcome(&parts.headers))
            .unwrap_or_else(|| {
                let status = if http == 200 {
                    INTERNAL
                } else {
                    status_of_http(http)
                };
                (status, format!("no grpc-status (HTTP {http})"), None)
            });
        let answer = Answer {
            status: http,
            retry_after: retry,
            body: if status == OK {
                unframe(&data)
            } else {
                message.into_bytes()
            },
            grpc_status: Some(status),
        };
        // Answered, but a connection the server ended is not kept.
        Ok((answer, !connection_done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_is_read_from_status_details() {
        // google.rpc.Status { code: 8, message: "slow down", details: [Any {
        // type_url: ".../google.rpc.RetryInfo", value: RetryInfo {
        // retry_delay: Duration { seconds: 2, nanos: 500000000 } } }] }
        let duration = [0x08, 0x02, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01];
        let mut retry_info = vec![0x0a, duration.len() as u8];
        retry_info.extend_from_slice(&duration);
        let url = b"type.googleapis.com/google.rpc.RetryInfo";
        let mut any = vec![0x0a, url.len() as u8];
        any.extend_from_slice(url);
        any.extend_from_slice(&[0x12, retry_info.len() as u8]);
        any.extend_from_slice(&retry_info);
        let mut status = vec![0x08, 0x08, 0x12, 0x09];
        status.extend_from_slice(b"slow down");
        status.extend_from_slice(&[0x1a, any.len() as u8]);
        status.extend_from_slice(&any);
        assert_eq!(retry_delay(&status), Some(Duration::from_millis(2500)));
        assert_eq!(retry_delay(&status[..status.len() - 1]), None);
        assert_eq!(retry_delay(&[0x08, 0x0e]), None, "no details");
    }

    #[test]
    fn base64_of_bin_headers_padded_or_not() {
        assert_eq!(base64_decode(b"aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"aGV*"), None);
    }

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode(b"no%20way%"), "no way%");
        assert_eq!(percent_decode(b"%E2%9C%93"), "\u{2713}");
    }

    #[test]
    fn timeouts_fit_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_millis(1500)), "1500m");
        assert_eq!(grpc_timeout(Duration::ZERO), "1m");
        assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
    }

    #[test]
    fn targets_of_urls() {
        let t = target("http://[::1]:4317").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "::1", 4317));
        assert_eq!(t.origin, "http://[::1]:4317");
        let t = target("https://collector/ignored/path").unwrap();
        assert_eq!((t.tls, t.port), (true, 443));
        assert_eq!(t.origin, "https://collector");
        assert!(target("ftp://x").is_err());
    }

    #[test]
    fn responses_are_unframed() {
        assert_eq!(unframe(&[0, 0, 0, 0, 2, 8, 1]), vec![8, 1]);
        assert_eq!(unframe(&[0, 0, 0, 0, 3, 8, 1]), Vec::<u8>::new());
        assert_eq!(unframe(&[1, 0, 0, 0, 1, 8]), Vec::<u8>::new());
    }
}

//! The HTTP/1.1 client of plain `http://` OTLP endpoints, inside the core.
//!
//! A collector on `http://` needs no TLS, so nothing of the transport
//! library (ureq, rustls, ring, h2: over a mebibyte of code and its
//! relocations) is worth mapping into the traced process for it. This
//! client does the little OTLP/HTTP asks: one `POST` with a
//! `Content-Length` body, a response head parsed by `httparse`, a body read
//! by `Content-Length`, chunks or to the end, and a kept-alive connection
//! between exports. No proxy (nothing is read from the environment), no
//! redirects.
//!
//! It runs on the export thread only, which is internal: its socket is
//! made by `socket()` on that thread, so the preload library moves it to a
//! high number, close-on-exec, marks it ours and never traces it (see
//! `fd_custody.rs`). Socket options are set once, right after `connect`,
//! while the number is certainly ours; the per-call deadline is kept with
//! `poll(2)` before each read, which only looks. If the app takes the
//! number later, our reads and writes on it fail (`EBADF`) in the hooks,
//! and the exporter replaces this client (see `otlp.rs`).
//!
//! Time: connecting, sending and receiving each stop at the call's
//! deadline (the per-phase timeout the exporter gives), so a call takes at
//! most about twice that.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::transport::{Answer, Transport, OPTION_CONTENT_ENCODING, OPTION_CONTENT_TYPE};

/// Longest response head read (OTLP responses have a few headers).
const MAX_HEAD: usize = 32 << 10;
/// Largest response body kept (an `ExportTraceServiceResponse` is a few
/// bytes); a larger one is not read, and its connection not kept.
const MAX_BODY: usize = 1 << 20;
/// Most response headers parsed.
const MAX_HEADERS: usize = 64;

/// `User-Agent` of our export requests (as the transport library's).
const USER_AGENT: &str = concat!("lumigo-run/", env!("CARGO_PKG_VERSION"));

/// True for an `http://` URL (any case), which this client serves.
pub(crate) fn serves(url: &str) -> bool {
    url.get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
}

/// One destination's client.
pub(crate) struct Http1Client {
    /// `Content-Type`, `Content-Encoding`, `User-Agent` and the configured
    /// headers, each `name: value\r\n`.
    head: String,
    timeout: Duration,
    conn: RefCell<Option<Conn>>,
}

struct Conn {
    /// The `host:port` it was made for.
    authority: String,
    stream: TcpStream,
}

/// The parts of an `http://` URL a request needs.
struct Target<'a> {
    /// `host[:port]`, as written (credentials removed): the `Host` header.
    authority: &'a str,
    host: &'a str,
    port: u16,
    /// Path and query, `/` when empty.
    path: &'a str,
}

fn target(url: &str) -> Result<Target<'_>, String> {
    if !serves(url) {
        return Err(format!("{url:?} is not an http:// URL"));
    }
    let rest = &url[7..];
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // Credentials (`user:pw@`) are not sent: the configured headers are.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        (inside, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let port = match port {
        None | Some("") => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{url:?} has no usable port"))?,
    };
    let path = if path.is_empty() { "/" } else { path };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{url:?} holds spaces or control characters"));
    }
    Ok(Target {
        authority,
        host,
        port,
        path,
    })
}

/// A header name is an RFC 9110 token.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value has no control characters but tab.
fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// Headers we write ourselves, never taken from the configuration.
fn ours(name: &str) -> bool {
    ["host", "content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

fn io_err(what: &str, e: std::io::Error) -> String {
    format!("{what}: {e}")
}

impl Http1Client {
    /// `headers`: the destination's configured headers and its options
    /// (`OPTION_*`; those of TLS do not apply to `http://`). Invalid
    /// headers are skipped and returned as problems.
    pub(crate) fn new(
        headers: &[(String, String)],
        timeout: Duration,
    ) -> (Http1Client, Vec<String>) {
        let option = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let mut head = format!(
            "Content-Type: {}\r\nUser-Agent: {USER_AGENT}\r\n",
            option(OPTION_CONTENT_TYPE).unwrap_or("application/x-protobuf")
        );
        if let Some(encoding) = option(OPTION_CONTENT_ENCODING) {
            head.push_str(&format!("Content-Encoding: {encoding}\r\n"));
        }
        let mut problems = Vec::new();
        for (name, value) in headers.iter().filter(|(n, _)| !n.starts_with(':')) {
            let value = value.trim_matches([' ', '\t']);
            if !valid_name(name) || !valid_value(value) || ours(name) {
                problems.push(format!("ignoring invalid header {name:?}"));
                continue;
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let client = Http1Client {
            head,
            timeout,
            conn: RefCell::new(None),
        };
        (client, problems)
    }

    fn connect(&self, target: &Target<'_>, deadline: Instant) -> Result<Conn, String> {
        let addrs = (target.host, target.port)
            .to_socket_addrs()
            .map_err(|e| io_err(&format!("cannot resolve {}", target.host), e))?;
        let mut last = format!("{} has no address", target.host);
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("connecting to {} timed out", target.authority));
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(stream) => {
                    // Set once, on a socket certainly ours: a write to a
                    // collector that stops reading ends; reads are bounded
                    // by `poll` below, and by this as a backstop.
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_write_timeout(Some(self.timeout));
                    let _ = stream.set_read_timeout(Some(self.timeout));
                    return Ok(Conn {
                        authority: target.authority.to_owned(),
                        stream,
                    });
                }
                Err(e) => last = io_err(&format!("cannot connect to {addr}"), e),
            }
        }
        Err(last)
    }

    /// One request on `conn`. `Err((error, final))`: `final` once a byte
    /// of the response came, or the deadline passed waiting for one (the
    /// collector may have the request: sending it again could export the
    /// batch twice); otherwise the connection failed before any answer
    /// (a kept one the collector closed) and a new one may be tried.
    fn exchange(
        &self,
        conn: &mut Conn,
        target: &Target<'_>,
        body: &[u8],
        deadline: Instant,
    ) -> Result<(Answer, bool), (String, bool)> {
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            target.path,
            target.authority,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(self.head.as_bytes());
        request.extend_from_slice(b"\r\n");
        // One write for a small request, so it leaves in one segment.
        let sent = if request.len() + body.len() <= 16 << 10 {
            request.extend_from_slice(body);
            conn.stream.write_all(&request)
        } else {
            conn.stream
                .write_all(&request)
                .and_then(|()| conn.stream.write_all(body))
        };
        sent.map_err(|e| (io_err("sending the request", e), false))?;
        let mut reader = Reader {
            stream: &mut conn.stream,
            buf: Vec::with_capacity(1024),
            start: 0,
            deadline,
        };
        let head_len = reader.fill_until(|b| find(b, b"\r\n\r\n").map(|i| i + 4), MAX_HEAD)?;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&reader.buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(("the response head is not HTTP/1.1".to_owned(), true)),
        }
        let status = response.code.unwrap_or(0);
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        let retry_after = header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut keep = response.version == Some(1)
            && !header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let chunked = header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"));
        let length = header("content-length").map(|v| v.parse::<usize>());
        reader.start = head_len;
        let body = if status == 204 || status == 304 || (100..200).contains(&status) {
            Some(Vec::new())
        } else if chunked {
            reader.chunked()
        } else {
            match length {
                Some(Ok(n)) if n <= MAX_BODY => reader.exact(n),
                Some(_) => None,
                None => {
                    keep = false;
                    reader.until_closed()
                }
            }
        };
        let Some(body) = body else {
            // Unreadable or too large: the status stands, the connection
            // does not.
            return Ok((answer(status, retry_after, Vec::new()), false));
        };
        // Bytes beyond the response: not a connection to keep.
        let keep = keep && reader.start == reader.buf.len();
        Ok((answer(status, retry_after, body), keep))
    }
}

fn answer(status: u16, retry_after: Option<Duration>, body: Vec<u8>) -> Answer {
    Answer {
        status,
        retry_after,
        body: if (200..300).contains(&status) {
            body
        } else {
            Vec::new()
        },
        grpc_status: None,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads a response from a blocking socket, waiting with `poll(2)` until
/// the deadline before each read.
struct Reader<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
    deadline: Instant,
}

impl Reader<'_> {
    /// Reads more into `buf`; `Err` on end of stream, error or deadline.
    fn more(&mut self) -> Result<(), (String, bool)> {
        let answered = !self.buf.is_empty();
        let left = self.deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd; poll only looks at the descriptor.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready == 0 {
            return Err(("no response before the timeout".to_owned(), true));
        }
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(("the connection closed".to_owned(), answered)),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err((io_err("reading the response", e), answered)),
        }
    }

    /// Reads until `done` finds the end in the unread bytes (returns that
    /// end, counted from `start`), at most `limit` bytes.
    fn fill_until(
        &mut self,
        done: impl Fn(&[u8]) -> Option<usize>,
        limit: usize,
    ) -> Result<usize, (String, bool)> {
        loop {
            if let Some(end) = done(&self.buf[self.start..]) {
                return Ok(self.start + end);
            }
            if self.buf.len() - self.start > limit {
                return Err(("the response head is too long".to_owned(), true));
            }
            self.more()?;
        }
    }

    /// The next `n` bytes.
    fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() - self.start < n {
            self.more().ok()?;
        }
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        Some(out)
    }

    /// Everything until the peer closes.
    fn until_closed(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.buf.len() - self.start > MAX_BODY {
                return None;
            }
            match self.more() {
                Ok(()) => {}
                Err((e, _)) if e == "the connection closed" => break,
                Err(_) => return None,
            }
        }
        let out = self.buf[self.start..].to_vec();
        self.start = self.buf.len();
        Some(out)
    }

    /// A chunked body (its trailers skipped).
    fn chunked(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let line_end = self
                .fill_until(|b| find(b, b"\r\n").map(|i| i + 2), 1024)
                .ok()?;
            let line = std::str::from_utf8(&self.buf[self.start..line_end - 2]).ok()?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            self.start = line_end;
            if size == 0 {
                // Trailers, then an empty line.
                loop {
                    let end = self
                        .fill_until(|b| find(b, b"\r\n").map(|i| i + 2), MAX_HEAD)
                        .ok()?;
                    let empty = end - self.start == 2;
                    self.start = end;
                    if empty {
                        return Some(out);
                    }
                }
            }
            if out.len() + size > MAX_BODY {
                return None;
            }
            out.extend_from_slice(&self.exact(size)?);
            if self.exact(2)? != b"\r\n" {
                return None;
            }
        }
    }
}

impl Transport for Http1Client {
    fn post(&self, url: &str, body: &[u8]) -> Result<Answer, String> {
        let target = target(url)?;
        let deadline = Instant::now() + self.timeout;
        let mut slot = self.conn.borrow_mut();
        if slot
            .as_ref()
            .is_some_and(|c| c.authority != target.authority)
        {
            *slot = None;
        }
        // A kept connection the collector closed meanwhile fails before
        // any byte of an answer: then once more on a new one.
        if let Some(mut conn) = slot.take() {
            match self.exchange(&mut conn, &target, body, deadline) {
                Ok((answer, keep)) => {
                    if keep {
                        *slot = Some(conn);
                    }
                    return Ok(answer);
                }
                Err((e, true)) => return Err(e),
                Err((_, false)) => {}
            }
        }
        let mut conn = self.connect(&target, deadline)?;
        match self.exchange(&mut conn, &target, body, deadline) {
            Ok((answer, keep)) => {
                if keep {
                    *slot = Some(conn);
                }
                Ok(answer)
            }
            Err((e, _)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server answering each request read on one connection with the
    /// next of `answers`; returns the raw requests.
    fn serve(answers: Vec<&'static [u8]>) -> (String, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut requests = Vec::new();
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for answer in answers {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.ends_with(b"BODY") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                s.write_all(answer).unwrap();
                requests.push(req);
            }
            requests
        });
        (url, handle)
    }

    #[test]
    fn posts_with_headers_and_keeps_the_connection() {
        let (url, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
            b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy",
        ]);
        let (client, problems) = Http1Client::new(
            &[
                ("Authorization".into(), "LumigoToken t".into()),
                ("bad header".into(), "x".into()),
                ("x-split".into(), "a\r\nInjected: 1".into()),
                ("Content-Length".into(), "9".into()),
                (OPTION_CONTENT_TYPE.into(), "application/json".into()),
                (OPTION_CONTENT_ENCODING.into(), "gzip".into()),
            ],
            Duration::from_secs(5),
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        let first = client.post(&url, b"BODY").unwrap();
        assert_eq!((first.status, first.body.as_slice()), (200, &b"ok"[..]));
        let second = client.post(&url, b"BODY").unwrap();
        assert_eq!(second.body, b"abc");
        let third = client.post(&url, b"BODY").unwrap();
        assert_eq!(
            third,
            Answer {
                status: 503,
                retry_after: Some(Duration::from_secs(7)),
                body: Vec::new(),
                grpc_status: None,
            }
        );
        let requests = server.join().unwrap();
        assert_eq!(requests.len(), 3, "one connection served all three");
        let raw = String::from_utf8(requests[0].clone()).unwrap();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/v1/traces");
        assert!(
            raw.starts_with(&format!(
                "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 4\r\n"
            )),
            "{raw}"
        );
        assert!(
            raw.contains("\r\nContent-Type: application/json\r\n"),
            "{raw}"
        );
        assert!(raw.contains("\r\nContent-Encoding: gzip\r\n"), "{raw}");
        assert!(
            raw.contains("\r\nAuthorization: LumigoToken t\r\n"),
            "{raw}"
        );
        assert!(raw.contains("\r\nUser-Agent: lumigo-run/"), "{raw}");
        assert!(!raw.contains("Injected"), "{raw}");
        assert!(raw.ends_with("\r\n\r\nBODY"), "{raw}");
    }

    #[test]
    fn a_closed_kept_connection_is_replaced_and_a_silent_one_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            // First connection: one answer, then closed.
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            drop(s);
            // Second: answered.
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            // Third: read, never answered.
            let _ = s.read(&mut buf).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            // It was not sent again on another connection (the collector
            // may have it: that would export the batch twice).
            listener.set_nonblocking(true).unwrap();
            assert!(listener.accept().is_err(), "the request was sent again");
        });
        let (client, _) = Http1Client::new(&[], Duration::from_millis(500));
        assert_eq!(client.post(&url, b"BODY").map(|a| a.status), Ok(200));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(client.post(&url, b"BODY").map(|a| a.status), Ok(202));
        let t = Instant::now();
        let err = client.post(&url, b"BODY").unwrap_err();
        assert!(err.contains("timeout"), "{err}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
        server.join().unwrap();
    }

    #[test]
    fn urls_are_read_exactly() {
        let t = target("http://user:pw@[::1]:4318/v1/traces?x=1#frag").unwrap();
        assert_eq!(
            (t.authority, t.host, t.port, t.path),
            ("[::1]:4318", "::1", 4318, "/v1/traces?x=1")
        );
        let t = target("HTTP://collector").unwrap();
        assert_eq!((t.host, t.port, t.path), ("collector", 80, "/"));
        assert!(target("https://collector").is_err());
        assert!(target("http://c:0/").is_err());
        assert!(target("http://c:99999/").is_err());
        assert!(target("http:///v1").is_err());
        assert!(target("http://c/a b").is_err());
    }

    #[test]
    fn connection_refused_is_an_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (client, _) = Http1Client::new(&[], Duration::from_secs(2));
        let err = client
            .post(&format!("http://127.0.0.1:{port}/v1/traces"), b"x")
            .unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }
}

//! A blocking `opentelemetry_http::HttpClient` on `ureq`: OTLP/HTTP without
//! an async runtime in the traced process.
//!
//! The export worker drives the OTLP exporter's future with a tiny
//! `block_on`; this client does its I/O synchronously inside that future.
//! It only runs on the export worker thread, which is marked internal, so
//! its sockets, DNS lookups and certificate reads are never traced.
//!
//! The client owns the request headers of its destination. The
//! opentelemetry-otlp builder merges `OTEL_EXPORTER_OTLP_HEADERS` from the
//! environment into every exporter it builds, which would send a collector's
//! API key to Lumigo (or replace the `Authorization: LumigoToken` header).
//! So the request we send carries only the body's own headers
//! (`Content-Type`, `Content-Encoding`, `User-Agent`) plus the headers the
//! configuration assigned to this destination.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// Largest response body we read (OTLP responses are a few bytes).
const MAX_RESPONSE_BODY: u64 = 1 << 20;

/// One destination's HTTP client: a ureq agent (keep-alive pool, TLS with the
/// platform's certificates, no proxy from the environment, no redirects).
pub(crate) struct UreqClient {
    agent: ureq::Agent,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for UreqClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be secrets (tokens): show names only.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("UreqClient")
            .field("headers", &names)
            .finish()
    }
}

impl UreqClient {
    /// `headers` are the destination's configured headers; invalid names or
    /// values are skipped (and reported in the returned list of problems).
    pub(crate) fn new(
        headers: &[(String, String)],
        timeout: Duration,
    ) -> (UreqClient, Vec<String>) {
        let mut problems = Vec::new();
        let mut valid = Vec::new();
        for (name, value) in headers {
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(n), Ok(v)) => valid.push((n, v)),
                _ => problems.push(format!("ignoring invalid header {name:?}")),
            }
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        // Only per-phase timeouts: a global or per-call timeout makes ureq
        // resolve names on a freshly spawned (untraced, unguarded) thread.
        // Resolution therefore blocks the worker for at most the resolver's
        // own timeouts, which is acceptable off the app's threads.
        let timeout = Some(timeout);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .tls_config(tls)
            .timeout_connect(timeout)
            .timeout_send_request(timeout)
            .timeout_send_body(timeout)
            .timeout_recv_response(timeout)
            .timeout_recv_body(timeout)
            .build();
        let client = UreqClient {
            agent: config.into(),
            headers: valid,
        };
        (client, problems)
    }

    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut out = http::Request::builder()
            .method(parts.method)
            .uri(parts.uri)
            .body(&body[..])?;
        let headers = out.headers_mut();
        for name in [CONTENT_TYPE, CONTENT_ENCODING, USER_AGENT] {
            if let Some(value) = parts.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        let response = self.agent.run(out)?;
        let (parts, body) = response.into_parts();
        let body = body
            .into_with_config()
            .limit(MAX_RESPONSE_BODY)
            .read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(body)))
    }
}

// The trait is declared with `#[async_trait]`; this is its expansion, written
// by hand to avoid a dependency for one method. The work is done when the
// future is polled, on the worker thread.
impl HttpClient for UreqClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { self.send(request) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// One-shot HTTP server: returns the raw request it received.
    fn serve_once(response: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                if n == 0 || req.ends_with(b"BODY") {
                    break;
                }
            }
            s.write_all(response).unwrap();
            req
        });
        (url, handle)
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        super::super::otlp::block_on(f)
    }

    #[test]
    fn sends_configured_headers_not_foreign_ones() {
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let (client, problems) = UreqClient::new(
            &[
                ("Authorization".into(), "LumigoToken t".into()),
                ("bad header".into(), "x".into()),
            ],
            Duration::from_secs(5),
        );
        assert_eq!(problems.len(), 1);
        let request = http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", "application/x-protobuf")
            .header("authorization", "Bearer from-env")
            .header("x-from-env", "1")
            .body(Bytes::from_static(b"BODY"))
            .unwrap();
        let response = block_on(client.send_bytes(request)).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(&response.body()[..], b"ok");
        let raw = String::from_utf8(server.join().unwrap())
            .unwrap()
            .to_ascii_lowercase();
        assert!(raw.starts_with("post /v1/traces http/1.1\r\n"), "{raw}");
        assert!(raw.contains("authorization: lumigotoken t\r\n"), "{raw}");
        assert!(!raw.contains("from-env"), "{raw}");
        assert!(
            raw.contains("content-type: application/x-protobuf\r\n"),
            "{raw}"
        );
        assert!(
            !format!("{client:?}").contains("LumigoToken"),
            "no secrets in Debug"
        );
    }

    #[test]
    fn error_statuses_are_responses_not_errors() {
        let (url, server) = serve_once(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
        let (client, _) = UreqClient::new(&[], Duration::from_secs(5));
        let request = http::Request::builder()
            .method("POST")
            .uri(&url)
            .body(Bytes::from_static(b"BODY"))
            .unwrap();
        let response = block_on(client.send_bytes(request)).unwrap();
        assert_eq!(response.status(), 503);
        server.join().unwrap();
    }

    #[test]
    fn connection_refused_is_an_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (client, _) = UreqClient::new(&[], Duration::from_secs(2));
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1:{port}/v1/traces"))
            .body(Bytes::from_static(b"x"))
            .unwrap();
        assert!(block_on(client.send_bytes(request)).is_err());
    }
}

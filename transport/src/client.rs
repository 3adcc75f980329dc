//! The HTTP side of OTLP/HTTP: a blocking `ureq` agent that POSTs encoded
//! requests to one endpoint, on the export worker thread only.
//!
//! The export worker thread marks itself internal (lumigo-core's
//! `guard`), so this client's sockets, DNS lookups and certificate reads
//! are never traced. No async runtime, no
//! thread of its own: a request runs on the worker, bounded by per-phase
//! timeouts.
//!
//! The client owns the request headers of its destination: the body's own
//! (`Content-Type`, `Content-Encoding`, `User-Agent`) plus exactly the
//! headers the configuration assigned to this destination. Nothing is read from the environment here,
//! so a collector's API key in `OTEL_EXPORTER_OTLP_HEADERS` can never reach
//! Lumigo, and a proxy variable cannot divert spans.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

/// Largest response body we read (OTLP responses are a few bytes).
const MAX_RESPONSE_BODY: u64 = 1 << 20;

/// The connection's input buffer, which must hold a response head.
const INPUT_BUFFER_BYTES: usize = 32 << 10;

/// The connection's output buffer at least, which must hold the request
/// head (it grows with the configured headers).
const OUTPUT_BUFFER_BYTES: usize = 16 << 10;

/// `User-Agent` of our export requests.
pub(crate) const USER_AGENT: &str = concat!("lumigo-run/", env!("CARGO_PKG_VERSION"));

/// Options of a destination, passed in the header list under names that
/// cannot be header names (they start with `:`, like HTTP/2 pseudo-headers).
pub const OPTION_CONTENT_TYPE: &str = ":content-type";
/// `gzip` when the bodies are gzip-compressed.
pub const OPTION_CONTENT_ENCODING: &str = ":content-encoding";
/// PEM file of the CA(s) to trust instead of the platform's.
pub const OPTION_CA_FILE: &str = ":ca-file";
/// PEM file of the client certificate chain (mutual TLS).
pub const OPTION_CLIENT_CERT_FILE: &str = ":client-cert-file";
/// PEM file of the client certificate's private key.
pub const OPTION_CLIENT_KEY_FILE: &str = ":client-key-file";
/// `grpc` for OTLP/gRPC (`grpc.rs`); absent for OTLP/HTTP.
pub const OPTION_PROTOCOL: &str = ":protocol";

/// The answer to one POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds (the HTTP-date form is not read), or a
    /// gRPC answer's `RetryInfo` delay.
    pub retry_after: Option<Duration>,
    /// The response body of a 2xx (an `ExportTraceServiceResponse`, which
    /// may tell of a partial success), at most [`MAX_RESPONSE_BODY`] bytes;
    /// for gRPC, the response message when the status is OK, else the
    /// `grpc-message`.
    pub body: Vec<u8>,
    /// The gRPC status of a gRPC call; `None` for OTLP/HTTP.
    pub grpc_status: Option<u8>,
}

/// One destination's HTTP client: a ureq agent (keep-alive pool, TLS with the
/// platform's certificates or the configured CA, no proxy from the
/// environment, no redirects).
pub struct UreqClient {
    agent: ureq::Agent,
    headers: Vec<(HeaderName, HeaderValue)>,
    content_type: String,
    content_encoding: Option<String>,
}

/// Reads a PEM file: its certificates and its first private key.
fn read_pem(
    path: &str,
) -> Result<
    (
        Vec<ureq::tls::Certificate<'static>>,
        Option<ureq::tls::PrivateKey<'static>>,
    ),
    String,
> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut certs = Vec::new();
    let mut key = None;
    for item in ureq::tls::parse_pem(&bytes) {
        match item.map_err(|e| format!("{path} is not valid PEM: {e}"))? {
            ureq::tls::PemItem::Certificate(c) => certs.push(c),
            ureq::tls::PemItem::PrivateKey(k) => key = key.or(Some(k)),
            _ => {}
        }
    }
    Ok((certs, key))
}

/// The TLS settings of a destination from its options.
fn tls_config(options: &[(String, String)]) -> Result<ureq::tls::TlsConfig, String> {
    let option = |name: &str| {
        options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut tls = ureq::tls::TlsConfig::builder();
    tls = match option(OPTION_CA_FILE) {
        Some(path) => {
            let (certs, _) = read_pem(path)?;
            if certs.is_empty() {
                return Err(format!("{path} holds no certificate"));
            }
            tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        }
        None => tls.root_certs(ureq::tls::RootCerts::PlatformVerifier),
    };
    match (
        option(OPTION_CLIENT_CERT_FILE),
        option(OPTION_CLIENT_KEY_FILE),
    ) {
        (Some(cert_path), Some(key_path)) => {
            let (chain, _) = read_pem(cert_path)?;
            if chain.is_empty() {
                return Err(format!("{cert_path} holds no certificate"));
            }
            let key = read_pem(key_path)?
                .1
                .ok_or_else(|| format!("{key_path} holds no private key"))?;
            tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => return Err("a client certificate needs both its file and its key's".into()),
    }
    Ok(tls.build())
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
    /// `headers` are the destination's configured headers and its options
    /// (`OPTION_*`); invalid names or values are skipped (and reported in
    /// the returned list of problems). Fails when a certificate or key
    /// file cannot be used.
    pub fn new(
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<(UreqClient, Vec<String>), String> {
        let mut problems = Vec::new();
        let mut valid = Vec::new();
        let (options, headers): (Vec<_>, Vec<_>) = headers
            .iter()
            .cloned()
            .partition(|(n, _)| n.starts_with(':'));
        let option = |name: &str| {
            options
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        for (name, value) in &headers {
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(n), Ok(v)) => valid.push((n, v)),
                _ => problems.push(format!("ignoring invalid header {name:?}")),
            }
        }
        let tls = tls_config(&options)?;
        // Only per-phase timeouts: a global or per-call timeout makes ureq
        // resolve names on a freshly spawned (untraced, unguarded) thread.
        // Resolution therefore blocks the worker for at most the resolver's
        // own timeouts, which is acceptable off the app's threads.
        let timeout = Some(timeout);
        let header_bytes: usize = valid
            .iter()
            .map(|(n, v): &(HeaderName, HeaderValue)| n.as_str().len() + v.len() + 4)
            .sum();
        let output_buffer = OUTPUT_BUFFER_BYTES.max(header_bytes + 4096);
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
            // ureq zero-fills 128 KiB for each of these per connection. An
            // OTLP response is a few hundred bytes, and a request body goes
            // through the output buffer in pieces; only the request head
            // must fit in it whole, so it is sized for the configured
            // headers. This keeps about 200 KiB out of the traced process.
            .input_buffer_size(INPUT_BUFFER_BYTES)
            .output_buffer_size(output_buffer)
            .build();
        let client = UreqClient {
            agent: config.into(),
            headers: valid,
            content_type: option(OPTION_CONTENT_TYPE)
                .unwrap_or_else(|| "application/x-protobuf".to_owned()),
            content_encoding: option(OPTION_CONTENT_ENCODING),
        };
        Ok((client, problems))
    }

    /// POSTs an encoded body to `url` and returns the response status
    /// (any status: deciding what a 4xx or 5xx means is the caller's job)
    /// and its `Retry-After`. The response body is read, within a limit,
    /// so the connection can be kept alive.
    pub fn post(&self, url: &str, body: &[u8]) -> Result<Answer, String> {
        let mut request = self
            .agent
            .post(url)
            .header("content-type", &self.content_type)
            .header("user-agent", USER_AGENT);
        if let Some(encoding) = &self.content_encoding {
            request = request.header("content-encoding", encoding);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let mut response = request.send(body).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // A body that cannot be read only costs the kept-alive connection.
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BODY)
            .read_to_vec()
            .unwrap_or_default();
        Ok(Answer {
            status,
            retry_after,
            grpc_status: None,
            body: if (200..300).contains(&status) {
                body
            } else {
                Vec::new()
            },
        })
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

    #[test]
    fn sends_configured_headers_and_the_body() {
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let (client, problems) = UreqClient::new(
            &[
                ("Authorization".into(), "LumigoToken t".into()),
                ("bad header".into(), "x".into()),
            ],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(problems.len(), 1);
        assert_eq!(client.post(&url, b"BODY").map(|a| a.status), Ok(200));
        let raw = String::from_utf8(server.join().unwrap())
            .unwrap()
            .to_ascii_lowercase();
        assert!(raw.starts_with("post /v1/traces http/1.1\r\n"), "{raw}");
        assert!(raw.contains("authorization: lumigotoken t\r\n"), "{raw}");
        assert!(
            raw.contains("content-type: application/x-protobuf\r\n"),
            "{raw}"
        );
        assert!(raw.contains("user-agent: lumigo-run/"), "{raw}");
        assert!(raw.contains("content-length: 4\r\n"), "{raw}");
        assert!(raw.ends_with("\r\n\r\nbody"), "{raw}");
        assert!(
            !format!("{client:?}").contains("LumigoToken"),
            "no secrets in Debug"
        );
    }

    #[test]
    fn large_configured_headers_still_fit_the_output_buffer() {
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let big = "t".repeat(40 << 10);
        let (client, problems) = UreqClient::new(
            &[("Authorization".into(), big.clone())],
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(problems.is_empty());
        assert_eq!(client.post(&url, b"BODY").map(|a| a.status), Ok(200));
        let raw = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(raw.contains(&format!("authorization: {big}\r\n")));
    }

    #[test]
    fn error_statuses_are_statuses_not_errors() {
        let (url, server) =
            serve_once(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n");
        let (client, _) = UreqClient::new(&[], Duration::from_secs(5)).unwrap();
        assert_eq!(
            client.post(&url, b"BODY"),
            Ok(Answer {
                status: 503,
                retry_after: Some(Duration::from_secs(7)),
                body: Vec::new(),
                grpc_status: None,
            })
        );
        server.join().unwrap();
    }

    #[test]
    fn connection_refused_is_an_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (client, _) = UreqClient::new(&[], Duration::from_secs(2)).unwrap();
        assert!(client
            .post(&format!("http://127.0.0.1:{port}/v1/traces"), b"x")
            .is_err());
    }
}

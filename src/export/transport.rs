//! How OTLP export reaches the network: a [`Transport`] per destination,
//! made by the factory the embedding installs.
//!
//! The core library has no HTTP client of its own. In a traced process the
//! preload library installs a factory that loads `liblumigo_transport.so`
//! (ureq and rustls) with `dlopen` the first time the export thread builds
//! an OTLP exporter, so a process pays for the TLS stack only once it has
//! spans to send (see that crate's documentation). Tests install the same
//! client linked in directly.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::Duration;

/// The answer of an endpoint to one POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// Its `Retry-After`, when it gave one in seconds; a gRPC answer's
    /// `RetryInfo` delay.
    pub retry_after: Option<Duration>,
    /// The body of a 2xx answer, when it is short (an
    /// `ExportTraceServiceResponse`); empty otherwise. For gRPC: the
    /// response message of an OK call, else the `grpc-message`.
    pub body: Vec<u8>,
    /// The gRPC status of an OTLP/gRPC call; `None` for OTLP/HTTP.
    pub grpc_status: Option<u8>,
}

/// Sends encoded requests to one endpoint. Used by the export thread only.
pub trait Transport: Send {
    /// POSTs an encoded body to `url`: the response status (any status;
    /// what it means is the caller's business) or a transport error.
    fn post(&self, url: &str, body: &[u8]) -> Result<Answer, String>;
}

/// Options of a destination travel in its header list to the transport
/// library, under names that cannot be header names (a leading `:`, like
/// HTTP/2 pseudo-headers): the body's media type,
pub const OPTION_CONTENT_TYPE: &str = ":content-type";
/// its `Content-Encoding` (`gzip`),
pub const OPTION_CONTENT_ENCODING: &str = ":content-encoding";
/// the PEM file of the CA(s) trusted instead of the system's,
pub const OPTION_CA_FILE: &str = ":ca-file";
/// the PEM files of a client certificate and its key (mutual TLS),
pub const OPTION_CLIENT_CERT_FILE: &str = ":client-cert-file";
pub const OPTION_CLIENT_KEY_FILE: &str = ":client-key-file";
/// and `grpc` for OTLP/gRPC (absent: OTLP/HTTP).
pub const OPTION_PROTOCOL: &str = ":protocol";

/// Makes the transport of one destination from its headers and per-phase
/// timeout. Besides the transport, it returns non-fatal problems (a header
/// that was skipped); an `Err` means this destination cannot be served.
pub type TransportFactory =
    fn(&[(String, String)], Duration) -> Result<(Box<dyn Transport>, Vec<String>), String>;

static FACTORY: OnceLock<TransportFactory> = OnceLock::new();

/// Installs the factory of every OTLP exporter built from now on. The first
/// call wins; later ones are ignored.
pub fn set_transport_factory(factory: TransportFactory) {
    let _ = FACTORY.set(factory);
}

pub(crate) fn new_transport(
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(Box<dyn Transport>, Vec<String>), String> {
    let factory = FACTORY
        .get()
        .ok_or("no HTTP transport is installed in this process")?;
    factory(headers, timeout)
}

/// Headers in the form `lumigo_transport_new` takes: each name and value
/// as a little-endian `u32` length followed by its bytes. A string longer
/// than 4 GiB (which no environment variable holds) is cut.
pub fn encode_headers(headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        for s in [name, value] {
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&s.as_bytes()[..len as usize]);
        }
    }
    out
}

/// The version of the transport library's C ABI this build speaks
/// (`lumigo_transport_abi()` must return it).
pub const TRANSPORT_ABI_VERSION: u32 = 3;

/// `lumigo_transport_new`: headers (see [`encode_headers`]), timeout in
/// milliseconds, a buffer for problems and its used length → client or null.
pub type NewFn =
    unsafe extern "C" fn(*const u8, usize, u64, *mut u8, usize, *mut usize) -> *mut c_void;
/// `lumigo_transport_post`: client, URL, body, a buffer for the error and
/// its used length, the answer's `Retry-After` (or gRPC `RetryInfo`) in
/// milliseconds (`u64::MAX`: none), its gRPC status (-1: not gRPC) → HTTP
/// status, or -1 with the error text.
pub type PostFn = unsafe extern "C" fn(
    *const c_void,
    *const u8,
    usize,
    *const u8,
    usize,
    *mut u8,
    usize,
    *mut usize,
    *mut u64,
    *mut i32,
) -> i32;
/// `lumigo_transport_free`: client (null is ignored).
pub type FreeFn = unsafe extern "C" fn(*mut c_void);

/// The entry points of a transport library, wherever they came from
/// (`dlsym` in a traced process, the linked rlib in tests), made into
/// [`Transport`]s.
#[derive(Clone, Copy)]
pub struct TransportAbi {
    new: NewFn,
    post: PostFn,
    free: FreeFn,
}

/// Room for the problems of `new` and the error of `post`.
const TEXT_BUF: usize = 1024;

impl TransportAbi {
    /// # Safety
    /// The three functions must be `lumigo_transport_new`, `_post` and
    /// `_free` of one transport library whose `lumigo_transport_abi()` is
    /// [`TRANSPORT_ABI_VERSION`], and that library must stay loaded.
    pub unsafe fn new(new: NewFn, post: PostFn, free: FreeFn) -> TransportAbi {
        TransportAbi { new, post, free }
    }

    /// A transport for one destination (see [`TransportFactory`]).
    pub fn client(
        &'static self,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<(Box<dyn Transport>, Vec<String>), String> {
        let encoded = encode_headers(headers);
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut text = [0u8; TEXT_BUF];
        let mut len = 0usize;
        // SAFETY: `new` is lumigo_transport_new (see `TransportAbi::new`);
        // every buffer is valid for the length given with it.
        let client = unsafe {
            (self.new)(
                encoded.as_ptr(),
                encoded.len(),
                timeout_ms,
                text.as_mut_ptr(),
                text.len(),
                &mut len,
            )
        };
        let text = String::from_utf8_lossy(&text[..len.min(TEXT_BUF)]);
        let Some(client) = NonNull::new(client) else {
            return Err(format!(
                "the transport library refused the destination: {text}"
            ));
        };
        let problems = text.lines().map(str::to_owned).collect();
        Ok((Box::new(AbiClient { abi: self, client }), problems))
    }
}

/// A client made by the transport library; freed by it on drop.
struct AbiClient {
    abi: &'static TransportAbi,
    client: NonNull<c_void>,
}

// SAFETY: the library's client is a plain owned object (a ureq agent) with
// no thread affinity; `Transport` is used by one thread at a time.
unsafe impl Send for AbiClient {}

impl Transport for AbiClient {
    fn post(&self, url: &str, body: &[u8]) -> Result<Answer, String> {
        let mut error = [0u8; TEXT_BUF];
        let mut len = 0usize;
        let mut retry_after = u64::MAX;
        let mut grpc_status = -1i32;
        // SAFETY: `post` is lumigo_transport_post; `client` is live (freed
        // only in drop); every buffer is valid for the length given with it.
        let status = unsafe {
            (self.abi.post)(
                self.client.as_ptr(),
                url.as_ptr(),
                url.len(),
                body.as_ptr(),
                body.len(),
                error.as_mut_ptr(),
                error.len(),
                &mut len,
                &mut retry_after,
                &mut grpc_status,
            )
        };
        match u16::try_from(status) {
            Ok(status) => Ok(Answer {
                status,
                retry_after: (retry_after != u64::MAX).then(|| Duration::from_millis(retry_after)),
                grpc_status: u8::try_from(grpc_status).ok(),
                // A body that filled the buffer may have been cut: unread.
                body: if len < TEXT_BUF {
                    error[..len].to_vec()
                } else {
                    Vec::new()
                },
            }),
            Err(_) => Err(String::from_utf8_lossy(&error[..len.min(TEXT_BUF)]).into_owned()),
        }
    }
}

impl Drop for AbiClient {
    fn drop(&mut self) {
        // SAFETY: `free` is lumigo_transport_free; the client is freed once.
        unsafe { (self.abi.free)(self.client.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn options_are_named_as_the_transport_library_reads_them() {
        use lumigo_transport as t;
        assert_eq!(super::OPTION_CONTENT_TYPE, t::OPTION_CONTENT_TYPE);
        assert_eq!(super::OPTION_CONTENT_ENCODING, t::OPTION_CONTENT_ENCODING);
        assert_eq!(super::OPTION_CA_FILE, t::OPTION_CA_FILE);
        assert_eq!(super::OPTION_CLIENT_CERT_FILE, t::OPTION_CLIENT_CERT_FILE);
        assert_eq!(super::OPTION_CLIENT_KEY_FILE, t::OPTION_CLIENT_KEY_FILE);
        assert_eq!(super::OPTION_PROTOCOL, t::OPTION_PROTOCOL);
        assert_eq!(super::TRANSPORT_ABI_VERSION, t::ABI_VERSION);
    }
}

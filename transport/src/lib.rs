//! The HTTP(S) client of OTLP export, in a library of its own.
//!
//! The TLS stack (rustls, ring, the platform verifier) and the HTTP client
//! are most of the code, relocations and data pages we would otherwise ask
//! the dynamic loader to map into every traced process at start-up, whether
//! or not it ever exports a span. So they live here, in
//! `liblumigo_transport.so` beside `liblumigo_preload.so`, and the preload
//! library's export thread `dlopen`s this library when it builds its first
//! OTLP exporter: never on an app thread, never in a process without spans.
//!
//! The boundary is a small C ABI (the two libraries each carry their own
//! copy of std, so no Rust type crosses it): create a client from the
//! destination's headers, options (body type and encoding, CA and client
//! certificate files: `OPTION_*`) and timeout, POST a body and get the
//! status and `Retry-After` or an error text, free the client. [`ABI_VERSION`] is checked on load. Every
//! entry point catches panics and reports them as errors.
//!
//! A destination whose options say `:protocol` `grpc` gets a
//! [`GrpcClient`] (OTLP/gRPC over HTTP/2, see `grpc.rs`) instead of the
//! ureq client; both answer through the same entry points.
//!
//! The crate is also an rlib, so the core library's tests use
//! [`UreqClient`] and [`GrpcClient`] directly.

mod client;
mod grpc;

use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;
use std::time::Duration;

pub use client::{
    Answer, UreqClient, OPTION_CA_FILE, OPTION_CLIENT_CERT_FILE, OPTION_CLIENT_KEY_FILE,
    OPTION_CONTENT_ENCODING, OPTION_CONTENT_TYPE, OPTION_PROTOCOL,
};
pub use grpc::{GrpcClient, EXPORT_PATH as GRPC_EXPORT_PATH};

/// Version of the C ABI below; bumped on any change to it. 2: options in
/// the header list, `Retry-After` out of `post`, client certificates. 3:
/// OTLP/gRPC (the retry delay in milliseconds, the gRPC status out of
/// `post`).
pub const ABI_VERSION: u32 = 3;

/// The client of one destination, either protocol.
#[derive(Debug)]
pub enum Client {
    Http(UreqClient),
    Grpc(GrpcClient),
}

impl Client {
    /// A client for `headers` (with their options): gRPC when the
    /// `:protocol` option says `grpc`. See [`UreqClient::new`].
    pub fn new(
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<(Client, Vec<String>), String> {
        let grpc = headers
            .iter()
            .any(|(n, v)| n == OPTION_PROTOCOL && v == "grpc");
        if grpc {
            GrpcClient::new(headers, timeout).map(|(c, p)| (Client::Grpc(c), p))
        } else {
            UreqClient::new(headers, timeout).map(|(c, p)| (Client::Http(c), p))
        }
    }

    /// One export: see [`UreqClient::post`] and [`GrpcClient::post`].
    pub fn post(&self, url: &str, body: &[u8]) -> Result<Answer, String> {
        match self {
            Client::Http(c) => c.post(url, body),
            Client::Grpc(c) => c.post(url, body),
        }
    }
}

/// Headers as passed to [`lumigo_transport_new`]: each name and value as a
/// little-endian `u32` length followed by its bytes (the preload library
/// writes them with `lumigo_core::export::encode_headers`). `None` when the
/// buffer is malformed.
fn decode_headers(mut buf: &[u8]) -> Option<Vec<(String, String)>> {
    fn take(buf: &mut &[u8]) -> Option<String> {
        let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let bytes = buf.get(4..4usize.checked_add(len)?)?;
        let text = String::from_utf8(bytes.to_vec()).ok();
        *buf = &buf[4 + len..];
        text
    }
    let mut headers = Vec::new();
    while !buf.is_empty() {
        let name = take(&mut buf)?;
        let value = take(&mut buf)?;
        headers.push((name, value));
    }
    Some(headers)
}

/// Copies `text` into the caller's buffer (cut at a character boundary
/// when it does not fit) and stores the length written.
///
/// # Safety
/// `buf` must be valid for `cap` bytes of writes and `len` for one write
/// (either may be null when `cap` is 0 / no length is wanted).
unsafe fn write_text(text: &str, buf: *mut u8, cap: usize, len: *mut usize) {
    let mut n = text.len().min(cap);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: guaranteed by the caller.
    unsafe { write_bytes(&text.as_bytes()[..n], buf, cap, len) }
}

/// Copies `bytes` into the caller's buffer (cut to `cap`) and stores the
/// length written.
///
/// # Safety
/// As [`write_text`].
unsafe fn write_bytes(bytes: &[u8], buf: *mut u8, cap: usize, len: *mut usize) {
    let n = bytes.len().min(cap);
    if n > 0 && !buf.is_null() {
        // SAFETY: the caller guarantees `buf` holds `cap` >= `n` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, n) };
    }
    if !len.is_null() {
        // SAFETY: the caller guarantees `len` is writable.
        unsafe { *len = if buf.is_null() { 0 } else { n } };
    }
}

/// # Safety
/// `ptr` must be valid for `len` bytes of reads (or `len` must be 0).
unsafe fn slice<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// This library has its own copy of std, so its own panic hook: std's
/// default would print to the app's stderr. Panics are caught at every
/// entry point and their message returned as the error instead.
fn quiet_panics() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// The error text of a caught panic.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("internal error in the transport library: {message}")
}

/// [`ABI_VERSION`] of this build. The first call the preload library
/// makes after loading this one.
#[no_mangle]
pub extern "C" fn lumigo_transport_abi() -> u32 {
    quiet_panics();
    ABI_VERSION
}

/// A client for one destination: `headers` as read by [`decode_headers`]
/// (with the destination's options among them, see `OPTION_*`), per-phase
/// timeout in milliseconds. Problems (invalid headers, skipped) are written
/// to `problems`, one per line. Null on failure, with the reason written
/// to `problems`.
///
/// # Safety
/// `headers` valid for `headers_len` bytes; `problems` valid for
/// `problems_cap` bytes of writes; `problems_len` writable or null.
#[no_mangle]
pub unsafe extern "C" fn lumigo_transport_new(
    headers: *const u8,
    headers_len: usize,
    timeout_ms: u64,
    problems: *mut u8,
    problems_cap: usize,
    problems_len: *mut usize,
) -> *mut c_void {
    quiet_panics();
    // SAFETY: guaranteed by the caller.
    let raw = unsafe { slice(headers, headers_len) };
    let made = catch_unwind(|| {
        let headers = decode_headers(raw)?;
        Some(Client::new(&headers, Duration::from_millis(timeout_ms)))
    });
    let (client, found) = match made {
        Ok(Some(Ok(made))) => made,
        Ok(Some(Err(why))) => {
            // SAFETY: guaranteed by the caller.
            unsafe { write_text(&why, problems, problems_cap, problems_len) };
            return std::ptr::null_mut();
        }
        Ok(None) => {
            // SAFETY: guaranteed by the caller.
            unsafe {
                write_text(
                    "malformed header list",
                    problems,
                    problems_cap,
                    problems_len,
                )
            };
            return std::ptr::null_mut();
        }
        Err(payload) => {
            let text = panic_text(&*payload);
            // SAFETY: guaranteed by the caller.
            unsafe { write_text(&text, problems, problems_cap, problems_len) };
            return std::ptr::null_mut();
        }
    };
    // SAFETY: guaranteed by the caller.
    unsafe { write_text(&found.join("\n"), problems, problems_cap, problems_len) };
    Box::into_raw(Box::new(client)).cast()
}

/// POSTs `body` to `url`: the response status (any status), with its
/// `Retry-After` (or gRPC `RetryInfo`) in milliseconds in `retry_after_ms`
/// (`u64::MAX` when absent), the gRPC status in `grpc_status` (-1 for
/// OTLP/HTTP) and the body of a 2xx answer (gRPC: the message of an OK
/// answer, else its `grpc-message`) in `error` (cut to `error_cap`
/// bytes), or -1 with the error written to `error`.
///
/// # Safety
/// `client` from [`lumigo_transport_new`], not freed, used by one thread at
/// a time; `url` and `body` valid for their lengths; `error` valid for
/// `error_cap` bytes of writes; `error_len`, `retry_after_ms` and
/// `grpc_status` writable or null.
#[no_mangle]
pub unsafe extern "C" fn lumigo_transport_post(
    client: *const c_void,
    url: *const u8,
    url_len: usize,
    body: *const u8,
    body_len: usize,
    error: *mut u8,
    error_cap: usize,
    error_len: *mut usize,
    retry_after_ms: *mut u64,
    grpc_status: *mut i32,
) -> i32 {
    // SAFETY: guaranteed by the caller.
    let (client, url, body) = unsafe {
        (
            client.cast::<Client>().as_ref(),
            slice(url, url_len),
            slice(body, body_len),
        )
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let client = client.ok_or("no client")?;
        let url = std::str::from_utf8(url).map_err(|_| "the URL is not UTF-8")?;
        client.post(url, body).map_err(|e| e.to_string())
    }))
    .unwrap_or_else(|payload| Err(panic_text(&*payload)));
    match outcome {
        Ok(answer) => {
            let retry = answer.retry_after.map_or(u64::MAX, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
            });
            // SAFETY: guaranteed by the caller (writable or null).
            if let Some(out) = unsafe { retry_after_ms.as_mut() } {
                *out = retry;
            }
            // SAFETY: as above.
            if let Some(out) = unsafe { grpc_status.as_mut() } {
                *out = answer.grpc_status.map_or(-1, i32::from);
            }
            // SAFETY: guaranteed by the caller.
            unsafe { write_bytes(&answer.body, error, error_cap, error_len) };
            i32::from(answer.status)
        }
        Err(e) => {
            // SAFETY: guaranteed by the caller.
            unsafe { write_text(&e, error, error_cap, error_len) };
            -1
        }
    }
}

/// Frees a client (null is ignored).
///
/// # Safety
/// `client` from [`lumigo_transport_new`], not used after this call.
#[no_mangle]
pub unsafe extern "C" fn lumigo_transport_free(client: *mut c_void) {
    if !client.is_null() {
        // SAFETY: a Box made by lumigo_transport_new, freed once.
        let client = unsafe { Box::from_raw(client.cast::<Client>()) };
        let _ = catch_unwind(AssertUnwindSafe(|| drop(client)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_header_lists_are_refused() {
        assert_eq!(decode_headers(b""), Some(vec![]));
        let mut ok = Vec::new();
        for s in ["a", "bc"] {
            ok.extend_from_slice(&(s.len() as u32).to_le_bytes());
            ok.extend_from_slice(s.as_bytes());
        }
        assert_eq!(decode_headers(&ok), Some(vec![("a".into(), "bc".into())]));
        for cut in 1..ok.len() {
            assert_eq!(decode_headers(&ok[..cut]), None, "cut at {cut}");
        }
        let mut bad_utf8 = ok.clone();
        bad_utf8[4] = 0xff;
        assert_eq!(decode_headers(&bad_utf8), None);

        let mut problems = [0u8; 64];
        let mut len = 0;
        // SAFETY: valid buffers of the stated sizes.
        let client = unsafe {
            lumigo_transport_new(ok.as_ptr(), 3, 1000, problems.as_mut_ptr(), 64, &mut len)
        };
        assert!(client.is_null());
        assert_eq!(&problems[..len], b"malformed header list");
    }

    #[test]
    fn panics_become_error_text() {
        let caught = catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(
            panic_text(&*caught),
            "internal error in the transport library: boom 1"
        );
        let caught = catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert!(panic_text(&*caught).ends_with("no message"));
    }

    #[test]
    fn error_text_is_cut_at_a_character_boundary() {
        let mut buf = [0u8; 4];
        let mut len = 99;
        // SAFETY: valid buffers of the stated sizes.
        unsafe { write_text("ab\u{e9}\u{e9}", buf.as_mut_ptr(), 3, &mut len) };
        assert_eq!(&buf[..len], b"ab");
        // SAFETY: as above.
        unsafe { write_text("abc", buf.as_mut_ptr(), 4, &mut len) };
        assert_eq!(&buf[..len], b"abc");
    }
}

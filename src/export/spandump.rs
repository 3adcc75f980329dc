//! The span dump (`LUMIGO_DEBUG_SPANDUMP=PATH`): every span as one JSON line.
//!
//! The line has the shape of the Lumigo Python distribution's span dump
//! (`ReadableSpan.to_json`), keys in the same order. Unlike Python, the file
//! is appended to, never truncated: many processes (a prefork server, a
//! shell script's children) can share one file. Each batch is written with
//! one `write(2)` of one buffer to an `O_APPEND` file, so lines from
//! different processes never interleave (short writes are retried; on a
//! local file system they do not happen for regular files in practice).
//!
//! The file is opened under the rules of [`crate::owned_file`] (no symbolic
//! link, a regular file of the effective user that others cannot write,
//! one link, no directory link planted by another user, or a new 0600
//! file); a refusal is said once under `LUMIGO_DEBUG` and the spans are
//! dropped.
//!
//! One descriptor serves the whole process and its forked children: it is
//! opened at the first export, or earlier, just before the process drops
//! privileges ([`open_before_privilege_drop`]), so that a prefork server's
//! workers (nginx's, running as `nobody`) inherit a file they could not
//! open themselves. The descriptor is in the custody of the preload
//! ([`crate::fd_custody`]): if the app closes or replaces it, the number is
//! forgotten, never touched again, and the file is reopened.
//!
//! The dump may be the process's own standard output or error
//! (`/dev/stderr`, `/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/2`…, see
//! [`owned_file::named_descriptor`]). Then nothing is opened: a
//! close-on-exec duplicate of that descriptor is taken once per process,
//! in the library's constructor (when the configuration is read, see
//! `Config::from_env`), while it is still the stream the process was
//! started with, and kept in the same custody. A closed stream or a socket
//! is refused (said once under `LUMIGO_DEBUG`). The stream is never
//! duplicated again: if the app closes our copy, the spans are dropped,
//! since by then descriptor 1 or 2 may be anything of the app's. Each batch
//! is still one `write(2)` (retried on a short write, waiting if the app
//! made the stream non-blocking), so lines stay whole. The export thread
//! blocks every signal: a reader gone from a pipe gives it `EPIPE`, never a
//! `SIGPIPE` that would end the program.

use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Exporter;
use crate::span::{hex, AttrValue, SpanRecord, SpanStatus};
use crate::{fd_custody, owned_file};

/// Where a span dump's descriptor is kept.
struct Slot {
    /// The open descriptor, or -1.
    fd: AtomicI32,
    /// For a standard stream: set when it was examined, once (`Ok`: its
    /// copy was taken; `Err`: why not). Never examined again.
    stream: OnceLock<Result<(), String>>,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            fd: AtomicI32::new(-1),
            stream: OnceLock::new(),
        }
    }
}

/// The span dump of this process (and of its forked children, which
/// inherit it), for the path in [`DUMP_PATH`].
static DUMP: Slot = Slot::new();
/// The process's span dump path: the first one asked for (the
/// configuration's; unit tests use several, each beyond the first gets its
/// own descriptor in its `SpanDump`).
static DUMP_PATH: OnceLock<PathBuf> = OnceLock::new();
/// A refusal or failure to open has been reported (once per process).
static SAID_OPEN_FAILED: AtomicBool = AtomicBool::new(false);

/// The descriptor slot for `path`: the process's, or `own`.
fn slot_for<'a>(path: &Path, own: &'a Slot) -> &'a Slot {
    if DUMP_PATH.get_or_init(|| path.to_path_buf()) == path {
        &DUMP
    } else {
        own
    }
}

/// Says `msg` once per process under `LUMIGO_DEBUG` (not before debug
/// output is switched on: a refusal found while the configuration is read
/// is said at the first export).
fn say_once(msg: &str) {
    if crate::log::debug_enabled() && !SAID_OPEN_FAILED.swap(true, Ordering::Relaxed) {
        crate::lumigo_debug!("{msg}");
    }
}

/// The span dump's descriptor in `slot`, opening `path` if it is not open
/// (or was lost to the app).
fn dump_fd(slot: &Slot, path: &Path) -> Result<RawFd, String> {
    let fd = slot.fd.load(Ordering::Acquire);
    if fd >= 0 {
        if !fd_custody::is_lost(fd) {
            return Ok(fd);
        }
        // The app closed or replaced it: the number is the app's now.
        if slot
            .fd
            .compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            fd_custody::release_lost(fd);
        }
    }
    if let Some(stream) = owned_file::named_descriptor(path) {
        return stream_fd(slot, path, stream);
    }
    let file = owned_file::open_owned_append(path).map_err(|refusal| {
        let msg = format!("the span dump {} is not written: {refusal}", path.display());
        say_once(&msg);
        msg
    })?;
    let owned = fd_custody::adopt(OwnedFd::from(file))
        .map_err(|e| format!("cannot keep the span dump {} open: {e}", path.display()))?;
    Ok(store(slot, owned.into_raw_fd()))
}

/// Puts our new descriptor `fd` in `slot`, unless another thread was first:
/// the descriptor in the slot.
fn store(slot: &Slot, fd: RawFd) -> RawFd {
    match slot
        .fd
        .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => fd,
        Err(theirs) => {
            // SAFETY: `fd` is ours alone, just opened and not shared.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            theirs
        }
    }
}

/// The copy of standard stream `stream` in `slot`, taken now if it was
/// never examined (else it was taken early, refused, or lost).
fn stream_fd(slot: &Slot, path: &Path, stream: RawFd) -> Result<RawFd, String> {
    let mut taken = None;
    let state = slot.stream.get_or_init(|| {
        let dup = take_stream(path, stream)?;
        let dup = fd_custody::adopt(dup)
            .map_err(|e| format!("cannot keep the span dump {} open: {e}", path.display()))?;
        taken = Some(dup.into_raw_fd());
        Ok(())
    });
    if let Err(msg) = state {
        say_once(msg);
        return Err(msg.clone());
    }
    if let Some(fd) = taken {
        return Ok(store(slot, fd));
    }
    match slot.fd.load(Ordering::Acquire) {
        fd if fd >= 0 => Ok(fd),
        _ => {
            let msg = format!(
                "the span dump {} is not written: the program closed our copy of it",
                path.display()
            );
            say_once(&msg);
            Err(msg)
        }
    }
}

/// A checked duplicate of standard stream `stream` (see
/// [`owned_file::dup_stream`]), or the refusal in words.
fn take_stream(path: &Path, stream: RawFd) -> Result<OwnedFd, String> {
    owned_file::dup_stream(stream)
        .map_err(|refusal| format!("the span dump {} is not written: {refusal}", path.display()))
}

/// Opens the span dump now, while the process still has the privileges it
/// started with, if it is not open yet: called just before the process
/// changes its user or group ids. A refusal is reported as at export.
///
/// For a standard stream (`/dev/stderr`…) this takes its copy, once:
/// `Config::from_env` calls it while the library's constructor reads the
/// configuration, before the program can close or redirect the stream.
/// The copy is adopted by the descriptor custody when the preload installs
/// it, moments later in the same constructor.
pub fn open_before_privilege_drop(path: &Path) {
    let own = Slot::new();
    let slot = slot_for(path, &own);
    if !std::ptr::eq(slot, &DUMP) {
        return;
    }
    let Some(stream) = owned_file::named_descriptor(path) else {
        let _ = dump_fd(slot, path);
        return;
    };
    let state = DUMP.stream.get_or_init(|| {
        let dup = take_stream(path, stream)?;
        fd_custody::adopt_into(dup, &DUMP.fd)
            .map_err(|e| format!("cannot keep the span dump {} open: {e}", path.display()))
    });
    if let Err(msg) = state {
        say_once(msg);
    }
}

/// How long a batch waits for a non-blocking stream to take it, at most:
/// `MAX_WAITS` times `WAIT_MS` milliseconds.
const MAX_WAITS: u32 = 50;
const WAIT_MS: libc::c_int = 100;

/// Appends JSON lines to the span dump file, opened at the first export.
pub(crate) struct SpanDump {
    path: PathBuf,
    /// The descriptor when `path` is not the process's span dump path.
    own: Slot,
    /// The `"resource":{…}` member, rendered once.
    resource_json: String,
}

impl SpanDump {
    pub(crate) fn new(path: PathBuf, resource: &[(String, AttrValue)]) -> SpanDump {
        let mut resource_json = String::from("{\"attributes\":");
        write_attributes(
            &mut resource_json,
            resource.iter().map(|(k, v)| (k.as_str(), v)),
        );
        resource_json.push_str(",\"schema_url\":\"\"}");
        SpanDump::with_resource_json(path, resource_json)
    }

    /// A dump whose lines carry `resource_json` (another dump's
    /// [`resource_json`](Self::resource_json)); the process's span dump
    /// path shares that dump's descriptor.
    pub(crate) fn with_resource_json(path: PathBuf, resource_json: String) -> SpanDump {
        SpanDump {
            path,
            own: Slot::new(),
            resource_json,
        }
    }

    /// The `"resource"` member of each line.
    pub(crate) fn resource_json(&self) -> &str {
        &self.resource_json
    }

    /// The dump is the process's standard output or error, whose reader
    /// may stall a write for as long as it likes.
    pub(crate) fn to_a_stream(&self) -> bool {
        owned_file::named_descriptor(&self.path).is_some()
    }
}

impl Drop for SpanDump {
    fn drop(&mut self) {
        let fd = self.own.fd.swap(-1, Ordering::AcqRel);
        if fd >= 0 && !fd_custody::is_lost(fd) {
            // SAFETY: a descriptor this SpanDump opened and still owns.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

impl Exporter for SpanDump {
    fn export(&mut self, spans: &[SpanRecord]) -> Result<(), String> {
        let mut buf = String::with_capacity(spans.len() * 1024);
        for span in spans {
            write_line(&mut buf, span, &self.resource_json);
        }
        let slot = slot_for(&self.path, &self.own);
        let mut fd = dump_fd(slot, &self.path)?;
        let mut left = buf.as_bytes();
        let mut reopened = false;
        let mut waits = 0;
        // One buffer per batch keeps each line whole with respect to other
        // appenders; short writes and EINTR are retried.
        while !left.is_empty() {
            // SAFETY: `fd` is the open span dump; ManuallyDrop keeps this
            // borrowed view from closing it.
            let mut file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
            match file.write(left) {
                Ok(0) => return Err(format!("cannot write span dump {}", self.path.display())),
                Ok(n) => left = &left[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A standard stream the app made non-blocking (the copy
                // shares its flags, which are the app's to set): wait for
                // room, a while, so that the batch goes out whole.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && waits < MAX_WAITS => {
                    waits += 1;
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for the duration of the call.
                    unsafe { libc::poll(&mut pfd, 1, WAIT_MS) };
                }
                // Closed behind our back (a raw system call no hook sees):
                // the number is forgotten, never touched again, and the
                // file reopened, once, if nothing of this batch went out.
                Err(e)
                    if e.raw_os_error() == Some(libc::EBADF)
                        && !reopened
                        && left.len() == buf.len() =>
                {
                    reopened = true;
                    let _ = slot
                        .fd
                        .compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Acquire);
                    fd = dump_fd(slot, &self.path)?;
                }
                Err(e) => {
                    return Err(format!(
                        "cannot write span dump {}: {e}",
                        self.path.display()
                    ))
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("span dump {}", self.path.display())
    }
}

/// Appends one span as a JSON line (with its `\n`) to `out`.
pub(crate) fn write_line(out: &mut String, span: &SpanRecord, resource_json: &str) {
    out.push_str("{\"name\":");
    push_json_str(out, &span.name);
    out.push_str(",\"context\":{\"trace_id\":\"0x");
    out.push_str(&hex(&span.context.trace_id));
    out.push_str("\",\"span_id\":\"0x");
    out.push_str(&hex(&span.context.span_id));
    out.push_str("\",\"trace_state\":");
    push_json_str(out, span.context.trace_state.as_deref().unwrap_or(""));
    out.push_str("},\"kind\":\"");
    out.push_str(span.kind.dump_name());
    out.push_str("\",\"parent_id\":");
    match &span.parent_span_id {
        Some(id) => {
            out.push_str("\"0x");
            out.push_str(&hex(id));
            out.push('"');
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"start_time\":\"");
    out.push_str(&iso8601(span.start));
    out.push_str("\",\"end_time\":\"");
    out.push_str(&iso8601(span.end));
    out.push_str("\",\"status\":{\"status_code\":");
    match &span.status {
        SpanStatus::Unset => out.push_str("\"UNSET\""),
        SpanStatus::Ok => out.push_str("\"OK\""),
        SpanStatus::Error(description) => {
            out.push_str("\"ERROR\"");
            if !description.is_empty() {
                out.push_str(",\"description\":");
                push_json_str(out, description);
            }
        }
    }
    out.push_str("},\"attributes\":");
    write_attributes(out, span.attributes.iter().map(|(k, v)| (*k, v)));
    out.push_str(",\"events\":[],\"links\":[");
    for (i, link) in span.links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"context\":{\"trace_id\":\"0x");
        out.push_str(&hex(&link.context.trace_id));
        out.push_str("\",\"span_id\":\"0x");
        out.push_str(&hex(&link.context.span_id));
        out.push_str("\",\"trace_state\":");
        push_json_str(out, link.context.trace_state.as_deref().unwrap_or(""));
        out.push_str("},\"attributes\":{}}");
    }
    out.push_str("],\"resource\":");
    out.push_str(resource_json);
    out.push_str("}\n");
}

/// A JSON object of attributes; a key given twice keeps its last value (as a
/// Python dict would).
fn write_attributes<'a>(out: &mut String, attrs: impl Iterator<Item = (&'a str, &'a AttrValue)>) {
    let attrs: Vec<(&str, &AttrValue)> = attrs.collect();
    out.push('{');
    let mut first = true;
    for (i, (key, value)) in attrs.iter().enumerate() {
        if attrs[i + 1..].iter().any(|(later, _)| later == key) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_json_str(out, key);
        out.push(':');
        match value {
            AttrValue::Str(s) => push_json_str(out, s),
            AttrValue::Int(n) => out.push_str(&n.to_string()),
            AttrValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
    out.push('}');
}

/// A JSON string literal, escaped by serde_json.
fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serialising a &str cannot fail; keep the line valid JSON anyway.
        Err(_) => out.push_str("\"\""),
    }
}

/// ISO-8601 UTC with microseconds, as Python's `ns_to_iso_str`:
/// `2026-11-21T13:05:01.123456Z`. Times before 1970 print as the epoch.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{SpanContext, SpanKind, SpanLink};
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso8601(at(951_782_400, 0)), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            iso8601(at(1_700_000_000, 123_456_789)),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            iso8601(at(1_798_761_599, 999_999_999)),
            "2026-12-31T23:59:59.999999Z"
        );
        assert_eq!(iso8601(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000000Z");
        assert_eq!(
            iso8601(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn civil_dates_match_a_day_by_day_walk() {
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        // `is_multiple_of` needs Rust 1.87; the workspace targets 1.85.
        #[allow(clippy::manual_is_multiple_of)]
        let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for days in 0..200_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    fn sample() -> SpanRecord {
        SpanRecord {
            name: "GET".into(),
            kind: SpanKind::Server,
            context: SpanContext {
                trace_id: [0xab; 16],
                span_id: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
                trace_flags: 1,
                trace_state: Some("lumigo=1".into()),
            },
            parent_span_id: Some([0xcd; 8]),
            parent_is_remote: true,
            start: at(1_700_000_000, 1_000),
            end: at(1_700_000_001, 500_000),
            status: SpanStatus::Error("boom \"quoted\"".into()),
            encoded: None,
            attributes: vec![
                ("http.request.method", AttrValue::from("GET")),
                ("http.response.status_code", AttrValue::Int(500)),
                ("url.path", AttrValue::from("/a\nb")),
                ("lumigo.truncated", AttrValue::Bool(false)),
                ("http.request.method", AttrValue::from("POST")),
            ],
            links: vec![SpanLink {
                context: SpanContext {
                    trace_id: [0x11; 16],
                    span_id: [0x22; 8],
                    trace_flags: 1,
                    trace_state: Some("a=\"b\"".into()),
                },
                remote: true,
            }],
        }
    }

    #[test]
    fn line_has_the_python_span_dump_shape() {
        let resource = vec![
            ("service.name".to_owned(), AttrValue::from("svc")),
            ("process.pid".to_owned(), AttrValue::Int(7)),
        ];
        let dump = SpanDump::new(PathBuf::from("/nonexistent"), &resource);
        let mut line = String::new();
        write_line(&mut line, &sample(), &dump.resource_json);
        assert!(
            line.ends_with("}\n") && line.matches('\n').count() == 1,
            "{line}"
        );
        assert!(
            line.starts_with("{\"name\":\"GET\",\"context\":"),
            "Python's key order: {line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        let expected = serde_json::json!({
            "name": "GET",
            "context": {
                "trace_id": format!("0x{}", "ab".repeat(16)),
                "span_id": "0x0102030405060708",
                "trace_state": "lumigo=1",
            },
            "kind": "SpanKind.SERVER",
            "parent_id": format!("0x{}", "cd".repeat(8)),
            "start_time": "2023-11-14T22:13:20.000001Z",
            "end_time": "2023-11-14T22:13:21.000500Z",
            "status": {"status_code": "ERROR", "description": "boom \"quoted\""},
            "attributes": {
                "http.request.method": "POST",
                "http.response.status_code": 500,
                "url.path": "/a\nb",
                "lumigo.truncated": false,
            },
            "events": [],
            "links": [{
                "context": {
                    "trace_id": format!("0x{}", "11".repeat(16)),
                    "span_id": format!("0x{}", "22".repeat(8)),
                    "trace_state": "a=\"b\"",
                },
                "attributes": {},
            }],
            "resource": {"attributes": {"service.name": "svc", "process.pid": 7}, "schema_url": ""},
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn root_span_and_plain_statuses() {
        let mut span = sample();
        span.parent_span_id = None;
        span.context.trace_state = None;
        span.status = SpanStatus::Unset;
        span.kind = SpanKind::Client;
        let mut line = String::new();
        write_line(&mut line, &span, "{}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["parent_id"], serde_json::Value::Null);
        assert_eq!(v["context"]["trace_state"], "");
        assert_eq!(v["kind"], "SpanKind.CLIENT");
        assert_eq!(v["status"], serde_json::json!({"status_code": "UNSET"}));
        span.status = SpanStatus::Ok;
        line.clear();
        write_line(&mut line, &span, "{}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], serde_json::json!({"status_code": "OK"}));
    }

    #[test]
    fn appends_lines_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lumigo-spandump-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spans.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut dump = SpanDump::new(path.clone(), &[]);
        dump.export(&[sample(), sample()]).unwrap();
        let mut again = SpanDump::new(path.clone(), &[]);
        again.export(&[sample()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "appended, not truncated");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    static LOST: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());
    static RELEASED: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());

    /// The app takes the dump's descriptor number (dup2 onto it) and the
    /// custody reports it lost: the next export never writes to that
    /// number, lets go of it without closing it, and reopens the file.
    #[test]
    fn a_lost_descriptor_is_never_written_and_the_dump_reopens() {
        fd_custody::install(fd_custody::Custody {
            adopt: Ok,
            is_lost: |fd| LOST.lock().unwrap().contains(&fd),
            release_lost: |fd| RELEASED.lock().unwrap().push(fd),
            revocations: || 0,
        });
        let dir = std::env::temp_dir().join(format!("lumigo-spandump-lost-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spans.jsonl");
        let app_path = dir.join("app.txt");
        let _ = std::fs::remove_file(&path);
        let mut dump = SpanDump::new(path.clone(), &[]);
        dump.export(&[sample()]).unwrap();
        let n: RawFd = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                (std::fs::read_link(e.path()).ok()? == path)
                    .then(|| e.file_name().to_str()?.parse().ok())?
            })
            .next()
            .expect("the dump is open");
        let app = std::fs::File::create(&app_path).unwrap();
        // SAFETY: replaces descriptor `n` (the dump's) with the app's file,
        // as an app's dup2 would.
        assert_eq!(
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&app), n) },
            n
        );
        LOST.lock().unwrap().push(n);
        dump.export(&[sample()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&app_path).unwrap(),
            "",
            "not one byte"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert_eq!(*RELEASED.lock().unwrap(), [n], "let go of, once");
        LOST.lock().unwrap().retain(|&fd| fd != n);
        // SAFETY: `n` is the test's own duplicate of the app file now.
        unsafe { libc::close(n) };
        drop(dump);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unopenable_path_is_an_error_not_a_crash() {
        let mut dump = SpanDump::new(PathBuf::from("/nonexistent-dir/x/spans.jsonl"), &[]);
        assert!(dump.export(&[sample()]).is_err());
        assert!(dump.export(&[sample()]).is_err());
    }

    /// A SpanDump on a standard stream name, with its own slot holding
    /// `fd` as the stream's copy (the process's own stream is left alone).
    fn stream_dump(name: &str, fd: Option<RawFd>) -> SpanDump {
        let _ = DUMP_PATH.get_or_init(|| PathBuf::from("/lumigo-unit-first-dump"));
        let dump = SpanDump::new(PathBuf::from(name), &[]);
        assert!(!std::ptr::eq(slot_for(&dump.path, &dump.own), &DUMP));
        dump.own.stream.set(Ok(())).unwrap();
        if let Some(fd) = fd {
            dump.own.fd.store(fd, Ordering::Release);
        }
        dump
    }

    #[test]
    fn a_stream_copy_gets_whole_batches_even_when_non_blocking() {
        let mut p = [0; 2];
        // SAFETY: pipe2 fills the array; F_SETFL makes the write end (only)
        // non-blocking, as an app may make its stderr.
        unsafe {
            assert_eq!(libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::fcntl(p[1], libc::F_SETFL, libc::O_NONBLOCK), 0);
        }
        let mut dump = stream_dump("/dev/stderr", Some(p[1]));
        // More than a pipe holds: the writer must wait for the reader.
        let batch: Vec<SpanRecord> = (0..200).map(|_| sample()).collect();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: our read end, owned from here on.
            let mut r = unsafe { File::from_raw_fd(p[0]) };
            let mut text = String::new();
            std::io::Read::read_to_string(&mut r, &mut text).unwrap();
            text
        });
        dump.export(&batch).unwrap();
        drop(dump); // closes the write end (the own slot's)
        let text = reader.join().unwrap();
        assert_eq!(text.lines().count(), 200);
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("whole lines");
        }
    }

    #[test]
    fn a_stream_is_never_duplicated_twice() {
        // Taken once and then lost: nothing is written anywhere, and
        // descriptor 2 (perhaps the app's own file by now) is not copied.
        let mut dump = stream_dump("/dev/stderr", None);
        let err = dump.export(&[sample()]).unwrap_err();
        assert!(err.contains("closed our copy"), "{err}");
        assert_eq!(dump.own.fd.load(Ordering::Acquire), -1);
        // Refused when examined: refused for good.
        let mut refused = SpanDump::new(PathBuf::from("/dev/stdout"), &[]);
        let _ = DUMP_PATH.get_or_init(|| PathBuf::from("/lumigo-unit-first-dump"));
        refused
            .own
            .stream
            .set(Err("descriptor 1 is a socket".into()))
            .unwrap();
        let err = refused.export(&[sample()]).unwrap_err();
        assert!(err.contains("socket"), "{err}");
        assert_eq!(refused.own.fd.load(Ordering::Acquire), -1);
    }
}

//! The process as a whole: its span (`LUMIGO_PROCESS_SPAN`), the status it
//! exits with, and the rules of its end.
//!
//! The preload library calls these from its exit, `_exit`, fork and
//! fatal-signal handlers; what they decide is here:
//! - the process span ends with the status passed to `exit` (none when
//!   `main` returns, as glibc calls exit internally then);
//! - the shut-down (in-flight exchanges become spans, the process span
//!   ends, the pipeline gets its bounded time) runs once;
//! - a `vfork` child shares the parent's memory but is another process: the
//!   paths it can reach (`_exit`, a fatal signal, closing descriptors) must
//!   leave the parent's state alone. A `fork` child gets its own state
//!   (with its own pid) from the `pthread_atfork` handler.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::SystemTime;

use crate::connection::{CloseReason, Connection};
use crate::span::{AttrValue, SpanKind, SpanRecord, SpanStatus};
use crate::tracer::{Assigned, Tracer};

/// The span of the whole process, started with it and ended at its exit.
pub struct ProcessSpan {
    who: Assigned,
    start: SystemTime,
    name: String,
}

impl ProcessSpan {
    /// The span of a process whose program was started as `argv0`.
    pub fn new(who: Assigned, start: SystemTime, argv0: Option<&OsStr>) -> ProcessSpan {
        ProcessSpan {
            who,
            start,
            name: program_name(argv0),
        }
    }

    /// Exported only if its trace is sampled.
    pub fn is_sampled(&self) -> bool {
        self.who.context.is_sampled()
    }

    /// The span, ended at `end` by an exit with `status` (`None`: not
    /// known, as when `main` returns). The code recorded is the one the
    /// parent sees, the status's low eight bits (`exit(-1)` is 255,
    /// `exit(256)` a success).
    pub fn record(&self, status: Option<i64>, end: SystemTime) -> SpanRecord {
        let mut attributes = Vec::new();
        let mut span_status = SpanStatus::Unset;
        if let Some(status) = status.map(|s| s & 0xff) {
            attributes.push(("process.exit.code", AttrValue::Int(status)));
            if status != 0 {
                span_status = SpanStatus::Error(format!("exit status {status}"));
            }
        }
        SpanRecord {
            name: self.name.clone().into(),
            kind: SpanKind::Internal,
            context: self.who.context.clone(),
            parent_span_id: self.who.parent,
            parent_is_remote: self.who.parent_is_remote,
            start: self.start,
            end,
            status: span_status,
            attributes,
            links: Vec::new(),
            encoded: None,
        }
    }
}

/// The process span's name: the program's file name, from `argv[0]`.
pub fn program_name(argv0: Option<&OsStr>) -> String {
    argv0
        .and_then(|a| {
            Path::new(a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "process".to_owned())
}

/// The status passed to `exit` or `_exit`, for the process span.
pub struct ExitStatus(AtomicI64);

impl ExitStatus {
    const UNKNOWN: i64 = i64::MIN;

    pub const fn new() -> ExitStatus {
        ExitStatus(AtomicI64::new(Self::UNKNOWN))
    }

    /// The program called `exit(status)` (the last call counts: an atexit
    /// handler may call it again).
    pub fn record(&self, status: i32) {
        self.0.store(i64::from(status), Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<i64> {
        let s = self.0.load(Ordering::Relaxed);
        (s != Self::UNKNOWN).then_some(s)
    }
}

impl Default for ExitStatus {
    fn default() -> Self {
        ExitStatus::new()
    }
}

/// Which process owns a tracing state, and whether it has shut down.
pub struct Lifecycle {
    pid: u32,
    shut_down: AtomicBool,
    /// The process span was submitted (at most once, even when an `exec`
    /// that ended it failed and the process shuts down again later).
    process_span_ended: AtomicBool,
}

impl Lifecycle {
    /// For the calling process.
    pub fn new() -> Lifecycle {
        Lifecycle::owned_by(std::process::id())
    }

    /// For process `pid`.
    pub fn owned_by(pid: u32) -> Lifecycle {
        Lifecycle {
            pid,
            shut_down: AtomicBool::new(false),
            process_span_ended: AtomicBool::new(false),
        }
    }

    /// True in the process that owns the state; false in a `vfork` child
    /// (same memory, another pid). Async-signal-safe.
    pub fn is_same_process(&self) -> bool {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        self.owns(pid)
    }

    /// Whether `pid` (a `getpid` result) is the owner.
    pub fn owns(&self, pid: libc::pid_t) -> bool {
        pid as u32 == self.pid
    }

    /// At `exit` (the atexit handler): true for the one caller that shuts
    /// down.
    pub fn begin_shut_down(&self) -> bool {
        !self.shut_down.swap(true, Ordering::AcqRel)
    }

    /// At `_exit`, or for a fatal signal (from the export thread): as
    /// [`Lifecycle::begin_shut_down`], and never in a `vfork` child, which
    /// leaves the state (and the flag) as they are.
    pub fn begin_shut_down_here(&self) -> bool {
        self.is_same_process() && self.begin_shut_down()
    }

    /// From a fatal signal's handler: the export thread may be asked to
    /// flush (not in a `vfork` child, not once the shut-down began).
    /// Async-signal-safe.
    pub fn may_flush_from_signal(&self) -> bool {
        self.is_same_process() && !self.is_shut_down()
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// An `exec` whose shut-down began here failed: the process goes on in
    /// its old image, and its own exit (or a later `exec`) shuts down again.
    /// Only the caller that began the shut-down may call it.
    pub fn resume_after_failed_exec(&self) {
        self.shut_down.store(false, Ordering::Release);
    }

    /// True the first time only: the process span ends once, at the first
    /// shut-down (an `exec` that then failed ended it already).
    pub fn end_process_span(&self) -> bool {
        !self.process_span_ended.swap(true, Ordering::AcqRel)
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new()
    }
}

/// At the process's end: a connection waiting for responses reports its
/// requests now (as ended by the exit); one with nothing in flight is left
/// as it is.
pub fn end_in_flight(conn: &mut Connection, now: SystemTime, tracer: &Tracer) {
    if conn.in_flight() > 0 {
        conn.on_close(now, CloseReason::ProcessExit, tracer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::connection::Flow;
    use crate::mask::Masker;
    use crate::tracer::SpanSink;
    use std::ffi::OsString;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Default, Clone)]
    struct Collect(Arc<Mutex<Vec<SpanRecord>>>);
    impl SpanSink for Collect {
        fn submit(&self, span: SpanRecord) {
            self.0.lock().unwrap().push(span);
        }
    }

    fn tracer() -> (Tracer, Collect) {
        let c = Collect::default();
        (Tracer::new(Masker::new(&[]), Box::new(c.clone())), c)
    }

    fn span(argv0: &str) -> (ProcessSpan, Assigned) {
        let (mut t, _) = tracer();
        let who = t.start_process_span();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        (
            ProcessSpan::new(who.clone(), start, Some(OsStr::new(argv0))),
            who,
        )
    }

    #[test]
    fn the_span_is_named_after_the_program() {
        let name = |a: Option<&str>| program_name(a.map(OsStr::new));
        assert_eq!(name(Some("/usr/bin/python3")), "python3");
        assert_eq!(name(Some("nginx")), "nginx");
        assert_eq!(name(Some("./bin/app/")), "app");
        assert_eq!(name(None), "process");
        assert_eq!(name(Some("")), "process");
        assert_eq!(name(Some("/")), "process");
        assert_eq!(name(Some("..")), "process");
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(b"/opt/\xffapp".to_vec());
        assert_eq!(program_name(Some(&raw)), "\u{fffd}app");
    }

    #[test]
    fn an_exit_with_status_zero_is_ok() {
        let (p, who) = span("/bin/worker");
        let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_002);
        let r = p.record(Some(0), end);
        assert_eq!(r.name, "worker");
        assert_eq!(r.kind, SpanKind::Internal);
        assert_eq!(r.context, who.context);
        assert_eq!(r.parent_span_id, who.parent);
        assert_eq!(r.parent_is_remote, who.parent_is_remote);
        assert_eq!(r.start, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
        assert_eq!(r.end, end);
        assert_eq!(r.status, SpanStatus::Unset);
        assert_eq!(r.attr("process.exit.code"), Some(&AttrValue::Int(0)));
        assert_eq!(r.attributes.len(), 1);
        assert!(r.links.is_empty());
    }

    #[test]
    fn an_exit_with_another_status_is_an_error() {
        let (p, _) = span("app");
        for (status, seen) in [
            (1, 1),
            (2, 2),
            (127, 127),
            (255, 255),
            (-1, 255),
            (-2, 254),
            (257, 1),
        ] {
            let r = p.record(Some(status), SystemTime::now());
            assert_eq!(r.attr("process.exit.code"), Some(&AttrValue::Int(seen)));
            assert_eq!(r.status, SpanStatus::Error(format!("exit status {seen}")));
        }
        // What the parent sees as a success is one.
        for status in [256, i64::from(i32::MIN)] {
            let r = p.record(Some(status), SystemTime::now());
            assert_eq!(r.attr("process.exit.code"), Some(&AttrValue::Int(0)));
            assert_eq!(r.status, SpanStatus::Unset);
        }
    }

    #[test]
    fn a_return_from_main_has_no_status() {
        let (p, _) = span("app");
        let r = p.record(None, SystemTime::now());
        assert_eq!(r.status, SpanStatus::Unset);
        assert!(r.attributes.is_empty());
    }

    #[test]
    fn the_exit_status_is_the_last_recorded() {
        let s = ExitStatus::new();
        assert_eq!(s.get(), None);
        s.record(3);
        assert_eq!(s.get(), Some(3));
        // An atexit handler calls exit again.
        s.record(0);
        assert_eq!(s.get(), Some(0));
        s.record(i32::MIN);
        assert_eq!(s.get(), Some(i64::from(i32::MIN)));
        assert_eq!(ExitStatus::default().get(), None);
    }

    #[test]
    fn the_shut_down_runs_once() {
        let l = Lifecycle::new();
        assert!(l.is_same_process());
        assert!(l.may_flush_from_signal());
        assert!(l.begin_shut_down());
        assert!(l.is_shut_down());
        assert!(!l.begin_shut_down());
        assert!(!l.begin_shut_down_here());
        // Flushing from a signal once shut down would race the exit's own.
        assert!(!l.may_flush_from_signal());

        let l = Lifecycle::new();
        assert!(l.begin_shut_down_here());
        assert!(!l.begin_shut_down());
    }

    #[test]
    fn a_failed_exec_lets_the_process_shut_down_again_but_ends_its_span_once() {
        let l = Lifecycle::new();
        // The exec's shut-down: the process span ends with it.
        assert!(l.begin_shut_down_here());
        assert!(l.end_process_span());
        // The exec failed: the process goes on, and its exit shuts down
        // again, without a second process span.
        l.resume_after_failed_exec();
        assert!(!l.is_shut_down());
        assert!(l.may_flush_from_signal());
        assert!(l.begin_shut_down());
        assert!(!l.end_process_span());
        assert!(!l.begin_shut_down());
    }

    #[test]
    fn another_process_leaves_the_state_alone() {
        // What a vfork child sees: the state of a process with another pid.
        let l = Lifecycle::owned_by(std::process::id().wrapping_add(1));
        assert!(!l.is_same_process());
        assert!(!l.may_flush_from_signal());
        assert!(!l.begin_shut_down_here());
        assert!(!l.is_shut_down(), "the flag stays the parent's to set");
        // `exit` (atexit handlers) does not check: a vfork child must not
        // call it anyway.
        assert!(l.begin_shut_down());
        assert!(l.owns(std::process::id().wrapping_add(1) as libc::pid_t));
        assert!(!l.owns(std::process::id() as libc::pid_t));
    }

    #[test]
    fn a_forked_child_is_another_process() {
        let l = Lifecycle::new();
        // SAFETY: the child only calls async-signal-safe functions
        // (getpid, _exit).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if !l.is_same_process() && !l.begin_shut_down_here() {
                0
            } else {
                1
            };
            // SAFETY: ends the child without running the harness's code.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(l.is_same_process());
        assert!(!l.is_shut_down());
    }

    #[test]
    fn in_flight_requests_end_at_exit() {
        let (t, spans) = tracer();
        let peer = Some(Address::Inet("127.0.0.1:8080".parse().unwrap()));
        let now = SystemTime::now();

        // Nothing in flight: nothing reported, the connection goes on.
        let mut idle = Connection::client(peer.clone(), None);
        end_in_flight(&mut idle, now, &t);
        assert!(spans.0.lock().unwrap().is_empty());

        let mut busy = Connection::client(peer, None);
        let head = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(busy.on_outbound(head, now, &t), Flow::Continue));
        assert_eq!(busy.in_flight(), 1);
        end_in_flight(&mut busy, now, &t);
        assert_eq!(busy.in_flight(), 0);
        let spans = spans.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "GET");
        assert!(
            matches!(spans[0].status, SpanStatus::Error(_)),
            "{:?}",
            spans[0].status
        );
    }
}

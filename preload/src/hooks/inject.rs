//! Writes that carry an inserted `traceparent` line.
//!
//! For a tracked client connection, the runtime is asked before the real
//! call whether a request head ends in the bytes being written. If so, the
//! app's buffers are split at the insertion point and sent with the line in
//! between, in one `writev`/`sendmsg` with the app's flags. The count
//! returned to the app covers only its own bytes: if the kernel took part of
//! the line, the app is told its bytes up to the insertion point went out,
//! and when it retries, the rest of the line is sent first, on its own, so
//! the line is sent exactly once and the app never sees a count of 0 for a
//! non-empty write. Failures (EAGAIN, EINTR, EPIPE…) are the real call's,
//! returned untouched, with nothing committed.
//!
//! A forwarded `traceparent` is replaced the same way, in place: the plan
//! names app bytes to leave out and bytes of ours of the same length to send
//! instead, so every count is the app's; a retry after a partial write
//! gets the rest of the replacement at the matching stream position.

use std::mem::MaybeUninit;

use libc::{c_int, c_void, iovec, msghdr, ssize_t};

use super::call_real;
use crate::real;
use crate::runtime::{self, traced, traced_on, traced_value_on, Direction};
use lumigo_core::connection::OutboundPlan;

/// The most iovecs one call may take (`IOV_MAX` on Linux).
const IOV_MAX: usize = 1024;

/// How the app's write reaches the kernel, so the inserted bytes travel the
/// same way and with the same flags.
#[derive(Clone, Copy)]
pub enum Sender {
    /// write / writev: no flags.
    Plain,
    /// send / sendto / sendmsg, with the app's flags and, for sendto and
    /// sendmsg, its message header (name, control data).
    Socket { flags: c_int, msg: *const msghdr },
}

impl Sender {
    /// The same call without the app's message header (for sending the rest
    /// of an inserted line alone: the app's control data goes with its bytes).
    fn bare(self) -> Sender {
        match self {
            Sender::Plain => Sender::Plain,
            Sender::Socket { flags, .. } => Sender::Socket {
                flags,
                msg: std::ptr::null(),
            },
        }
    }
}

/// Handles a write on a tracked fd if bytes must be inserted into it.
/// `None` means: nothing to insert, do the plain real call.
///
/// # Safety
/// `iovs` must describe the app's readable buffers for this call.
pub unsafe fn write_with_insertion(fd: c_int, iovs: &[iovec], how: Sender) -> Option<ssize_t> {
    if iovs.len() + 2 > IOV_MAX || iovs.iter().any(|v| v.iov_base.is_null() && v.iov_len > 0) {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let pieces = unsafe { pieces(iovs) };
    let mut plan = traced_value_on(fd, |rt| runtime::plan_outbound(rt, fd, &pieces))?;
    if !plan.is_single() {
        return write_with_edits(fd, &pieces, plan, how);
    }

    // What is left of a line a partial write cut: send it first, alone.
    while plan.at() == 0 && plan.replace() == 0 {
        let r = send_bytes(fd, plan.insert(), how.bare());
        if r < 0 {
            return Some(r);
        }
        traced(|rt| runtime::commit_outbound(rt, fd, &plan, r as usize));
        match traced_value_on(fd, |rt| runtime::plan_outbound(rt, fd, &pieces)) {
            Some(next) => plan = next,
            None => return None,
        }
    }

    // App bytes before the insertion point, the line, the rest (from
    // `at + replace`: a replacement leaves out as many of the app's bytes).
    let total: usize = iovs.iter().map(|v| v.iov_len).sum();
    let resume = plan.at().checked_add(plan.replace())?;
    if plan.at() >= total || resume > total {
        return None;
    }
    let mut out: Vec<iovec> = Vec::with_capacity(iovs.len() + 3);
    let mut pos = 0usize;
    let mut inserted = false;
    for v in iovs {
        let (start, end) = (pos, pos + v.iov_len);
        pos = end;
        // The app's bytes of this buffer in [lo, hi), as an iovec.
        let keep = |lo: usize, hi: usize, out: &mut Vec<iovec>| {
            let (lo, hi) = (lo.max(start), hi.min(end));
            if lo < hi {
                out.push(iovec {
                    // SAFETY: start <= lo < hi <= end: inside this buffer.
                    iov_base: unsafe { (v.iov_base as *mut u8).add(lo - start) }.cast(),
                    iov_len: hi - lo,
                });
            }
        };
        keep(0, plan.at(), &mut out);
        if !inserted && plan.at() < end {
            out.push(iovec {
                iov_base: plan.insert().as_ptr() as *mut c_void,
                iov_len: plan.insert().len(),
            });
            inserted = true;
        }
        keep(resume, usize::MAX, &mut out);
    }
    if !inserted || out.len() > IOV_MAX {
        return None;
    }
    let r = send_iovs(fd, &out, how);
    if r < 0 {
        return Some(r);
    }
    let (app, _) = plan.split_sent(r as usize);
    traced_on(fd, |rt| {
        runtime::commit_outbound(rt, fd, &plan, r as usize);
        let mut remaining = app;
        let mut fed = pieces.iter().map_while(|p| {
            if remaining == 0 {
                return None;
            }
            let take = remaining.min(p.len());
            remaining -= take;
            Some(&p[..take])
        });
        runtime::on_data(rt, fd, Direction::Outbound, &mut fed);
    });
    Some(app as ssize_t)
}

/// A write whose plan has several edits, or edits whose app bytes count
/// only once all their bytes are out (a broker message's rewritten
/// header). If the kernel takes part of an edit, the rest of it (and the
/// app's bytes after it) is sent at once by another call, so that the app
/// is told a count of its own bytes that ends outside every edit; should
/// that call fail with nothing of the app's counted yet, its failure is
/// returned, and the app's retry sends the rest of the edit first.
/// `None`: do the plain real call.
fn write_with_edits(
    fd: c_int,
    pieces: &[&[u8]],
    mut plan: OutboundPlan,
    mut how: Sender,
) -> Option<ssize_t> {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    // App bytes counted so far.
    let mut done = 0usize;
    loop {
        let rest = skip(pieces, done);
        // Once some of the app's bytes are out, never the plain call (it
        // would send them again): the app is told what went out.
        let out = match edited(&rest, &plan) {
            Some(out) if out.len() <= IOV_MAX => out,
            _ => return (done > 0).then_some(done as ssize_t),
        };
        // SAFETY: this thread's errno.
        let errno = unsafe { *libc::__errno_location() };
        let r = send_iovs(fd, &out, how);
        if r < 0 {
            if done == 0 {
                return Some(r);
            }
            // The app is told what went out; the failure comes again on
            // its next call. Its errno stays as it was.
            // SAFETY: this thread's errno.
            unsafe { *libc::__errno_location() = errno };
            return Some(done as ssize_t);
        }
        let sent = r as usize;
        let accounted = plan.account(sent);
        traced_on(fd, |rt| {
            runtime::commit_outbound(rt, fd, &plan, sent);
            let mut remaining = accounted.app;
            let mut fed = rest.iter().map_while(|p| {
                let take = remaining.min(p.len());
                remaining -= take;
                (take > 0).then(|| &p[..take])
            });
            runtime::on_data(rt, fd, Direction::Outbound, &mut fed);
        });
        done += accounted.app;
        if accounted.cut.is_none() || done >= total {
            return Some(done as ssize_t);
        }
        // Stopped inside an edit: its rest goes next, with the app's
        // bytes after it (the app's control data went with the first call).
        // The rest is known here, so the edit is finished even should
        // tracing stop meanwhile.
        how = how.bare();
        plan = match plan.remainder(&accounted) {
            Some(p) => p,
            None => return Some(done as ssize_t),
        };
    }
}

/// `pieces` without their first `n` bytes.
fn skip<'a>(pieces: &[&'a [u8]], mut n: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        if n >= p.len() {
            n -= p.len();
            continue;
        }
        out.push(&p[n..]);
        n = 0;
    }
    out
}

/// The iovecs of `app` with `plan`'s edits applied. `None` if the edits do
/// not fit the app's bytes.
fn edited(app: &[&[u8]], plan: &OutboundPlan) -> Option<Vec<iovec>> {
    let total: usize = app.iter().map(|p| p.len()).sum();
    if plan.resume() > total {
        return None;
    }
    let mut out = Vec::with_capacity(app.len() + 2 * plan.edits().len());
    // The app's bytes in [lo, hi), as iovecs.
    let range = |lo: usize, hi: usize, out: &mut Vec<iovec>| {
        let mut start = 0;
        for p in app {
            let end = start + p.len();
            let (a, b) = (lo.max(start), hi.min(end));
            if a < b {
                out.push(iovec {
                    iov_base: p[a - start..].as_ptr() as *mut c_void,
                    iov_len: b - a,
                });
            }
            start = end;
        }
    };
    let mut pos = 0;
    for e in plan.edits() {
        range(pos, e.at, &mut out);
        if !e.insert.is_empty() {
            out.push(iovec {
                iov_base: e.insert.as_ptr() as *mut c_void,
                iov_len: e.insert.len(),
            });
        }
        pos = e.at + e.replace;
    }
    range(pos, total, &mut out);
    Some(out)
}

/// The app's buffers as slices.
///
/// # Safety
/// Each iovec must describe a readable buffer.
unsafe fn pieces(iovs: &[iovec]) -> Vec<&[u8]> {
    iovs.iter()
        .filter(|v| v.iov_len > 0 && !v.iov_base.is_null())
        // SAFETY: the app handed these buffers to a write call.
        .map(|v| unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) })
        .collect()
}

fn send_bytes(fd: c_int, bytes: &[u8], how: Sender) -> ssize_t {
    let iov = [iovec {
        iov_base: bytes.as_ptr() as *mut c_void,
        iov_len: bytes.len(),
    }];
    send_iovs(fd, &iov, how)
}

/// One real `writev` or `sendmsg` of `iovs`, as the app's call would have
/// been made.
fn send_iovs(fd: c_int, iovs: &[iovec], how: Sender) -> ssize_t {
    match how {
        Sender::Plain => call_real!(real::WRITEV, -1, fd, iovs.as_ptr(), iovs.len() as c_int),
        Sender::Socket { flags, msg } => {
            // SAFETY: an all-zero msghdr is a valid empty header.
            let mut m: msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            if !msg.is_null() {
                // SAFETY: the app passed this header to sendto/sendmsg.
                let orig = unsafe { &*msg };
                m.msg_name = orig.msg_name;
                m.msg_namelen = orig.msg_namelen;
                m.msg_control = orig.msg_control;
                m.msg_controllen = orig.msg_controllen;
            }
            m.msg_iov = iovs.as_ptr() as *mut iovec;
            m.msg_iovlen = iovs.len() as _;
            call_real!(real::SENDMSG, -1, fd, &m, flags)
        }
    }
}

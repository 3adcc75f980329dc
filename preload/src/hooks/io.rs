//! Byte-moving calls: the read and write families and sendfile.
//!
//! Each shim first looks the fd up in the fd table: for anything that is
//! not a tracked connection (files, pipes, terminals, untraced sockets) it
//! tail-calls the real function and is done, a handful of instructions.
//! For a tracked connection it calls the real function, then hands the
//! bytes that actually moved (the first `n` bytes of the app's buffers) to
//! the runtime. MSG_PEEK reads are not consumed and are not fed; the same
//! bytes come again in a later read.

use libc::{c_int, c_void, iovec, msghdr, off_t, size_t, sockaddr, socklen_t, ssize_t};

use super::call_real;
use super::inject::{write_with_insertion, Sender};
use crate::fdtable;
use crate::real;
use crate::runtime::{self, traced, traced_on, Direction};
use lumigo_core::guard;

/// The common path of every shim: for an fd that is not a tracked
/// connection, return what the real function returns, by a tail call (no
/// stack frame). Falls through when the fd is tracked, or when the real
/// function is not resolved yet (the out-of-line path resolves it).
macro_rules! untracked_fast_path {
    ($fd:expr, $slot:expr, $($arg:expr),* $(,)?) => {
        if !fdtable::needs_look($fd) {
            if let Some(real) = $slot.resolved() {
                // SAFETY: the app's own arguments, unchanged, to the libc
                // function it meant to call.
                return unsafe { real($($arg),*) };
            }
        }
    };
}

/// Runs the work for a marked fd out of line, so that the shims' common
/// path (an unmarked fd: a table load and a tail call to libc) needs no
/// stack frame. A number that was ours until the app took it is never
/// touched by our own threads: they get `EBADF` (see `custody.rs`).
#[cold]
#[inline(never)]
fn out_of_line(fd: c_int, f: impl FnOnce() -> ssize_t) -> ssize_t {
    if fdtable::is_lost(fd) && guard::is_internal() {
        // SAFETY: writing this thread's errno.
        unsafe { *libc::__errno_location() = libc::EBADF };
        return -1;
    }
    f()
}

/// The first `n` bytes of a run of iovecs, as slices.
///
/// # Safety
/// `iov` must point to `count` valid iovecs whose buffers are readable.
unsafe fn iov_pieces<'a>(
    iov: *const iovec,
    count: usize,
    mut n: usize,
) -> impl Iterator<Item = &'a [u8]> {
    let iovs: &[iovec] = if iov.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(iov, count) }
    };
    iovs.iter().filter_map(move |v| {
        let take = v.iov_len.min(n);
        if take == 0 || v.iov_base.is_null() {
            return None;
        }
        n -= take;
        // SAFETY: the kernel just read/wrote `take` bytes of this buffer.
        Some(unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, take) })
    })
}

fn one_iovec(buf: *const c_void, len: size_t) -> iovec {
    iovec {
        iov_base: buf as *mut c_void,
        iov_len: len,
    }
}

// The `after_*` functions are inlined into every hook: for an fd that is
// not a tracked connection, one table load is all they cost. The work for
// tracked fds lives out of line.

/// Feeds the result of a single-buffer transfer.
#[inline(always)]
fn after_buf(fd: c_int, dir: Direction, buf: *const c_void, requested: usize, n: ssize_t) {
    if fdtable::is_tracked(fd) {
        feed_buf(fd, dir, buf, requested, n);
    }
}

#[inline(never)]
fn feed_buf(fd: c_int, dir: Direction, buf: *const c_void, requested: usize, n: ssize_t) {
    match usize::try_from(n) {
        Ok(0) if requested > 0 && matches!(dir, Direction::Inbound) => {
            traced(|rt| runtime::on_eof(rt, fd));
        }
        Ok(n) if n > 0 && !buf.is_null() => traced_on(fd, |rt| {
            // SAFETY: the real call transferred `n` bytes to/from `buf`,
            // and `n` never exceeds the length the app gave.
            let data = unsafe { std::slice::from_raw_parts(buf as *const u8, n.min(requested)) };
            runtime::on_data(rt, fd, dir, &mut std::iter::once(data));
        }),
        _ => {}
    }
}

/// Gathered transfers of at most this many bytes are copied together
/// before they are followed (see [`feed_iov`]); a copy this short costs
/// less than a second pass through the connection.
const COALESCE: usize = 1024;

/// Feeds the result of a scatter/gather transfer.
#[inline(always)]
fn after_iov(fd: c_int, dir: Direction, iov: *const iovec, count: c_int, n: ssize_t) {
    if fdtable::is_tracked(fd) {
        feed_iov(fd, dir, iov, count, n);
    }
}

#[inline(never)]
fn feed_iov(fd: c_int, dir: Direction, iov: *const iovec, count: c_int, n: ssize_t) {
    let total: usize = if iov.is_null() || count <= 0 {
        0
    } else {
        // SAFETY: the app passed `count` iovecs to the real call.
        unsafe { std::slice::from_raw_parts(iov, count as usize) }
            .iter()
            .fold(0usize, |acc, v| acc.saturating_add(v.iov_len))
    };
    match usize::try_from(n) {
        Ok(0) if total > 0 && matches!(dir, Direction::Inbound) => {
            traced(|rt| runtime::on_eof(rt, fd));
        }
        Ok(n) if n > 0 => traced_on(fd, |rt| {
            // SAFETY: the real call moved `n` bytes through these iovecs.
            let mut pieces = unsafe { iov_pieces(iov, count.max(0) as usize, n) };
            if count > 1 && n <= COALESCE {
                // A short gathered write (a response head and a small
                // body) is followed as one run of bytes: one pass through
                // the connection instead of one per piece, and one record.
                // Not zeroed first: only the bytes copied in are read.
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); COALESCE];
                let mut len = 0;
                for p in pieces {
                    if len + p.len() > COALESCE {
                        break;
                    }
                    // SAFETY: `len + p.len() <= COALESCE` bytes of `buf`
                    // are in bounds; `p` and `buf` do not overlap.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            p.as_ptr(),
                            buf.as_mut_ptr().add(len).cast::<u8>(),
                            p.len(),
                        )
                    };
                    len += p.len();
                }
                // SAFETY: the first `len` bytes of `buf` were written above.
                let data = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
                runtime::on_data(rt, fd, dir, &mut std::iter::once(data));
            } else {
                runtime::on_data(rt, fd, dir, &mut pieces);
            }
        }),
        _ => {}
    }
}

#[inline(always)]
fn after_msg(fd: c_int, dir: Direction, msg: *const msghdr, flags: c_int, n: ssize_t) {
    if !fdtable::is_tracked(fd) || msg.is_null() || flags & libc::MSG_PEEK != 0 {
        return;
    }
    // SAFETY: the app passed a valid msghdr to the real call.
    let (iov, count) = unsafe { ((*msg).msg_iov as *const iovec, (*msg).msg_iovlen) };
    after_iov(fd, dir, iov, c_int::try_from(count).unwrap_or(0), n);
}

/// Receives flagged MSG_PEEK (data stays queued) or MSG_TRUNC (data not
/// copied) must not be fed as bytes the app read.
fn consumes(flags: c_int) -> bool {
    flags & (libc::MSG_PEEK | libc::MSG_TRUNC) == 0
}

/// # Safety
/// Called by the dynamic linker in place of libc's `read`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    untracked_fast_path!(fd, real::READ, fd, buf, count);
    out_of_line(fd, move || {
        let n = call_real!(real::READ, -1, fd, buf, count);
        after_buf(fd, Direction::Inbound, buf, count, n);
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `__read_chk`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    buflen: size_t,
) -> ssize_t {
    untracked_fast_path!(fd, real::READ_CHK, fd, buf, count, buflen);
    out_of_line(fd, move || {
        let n = call_real!(real::READ_CHK, -1, fd, buf, count, buflen);
        after_buf(fd, Direction::Inbound, buf, count, n);
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `write`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    // The hint channel's number is never open and above the table: it
    // takes the out-of-line path, which the common path (a tail call) does
    // not pay for.
    untracked_fast_path!(fd, real::WRITE, fd, buf, count);
    out_of_line(fd, move || {
        if let Some(n) = super::hint::take(fd, buf, count) {
            return n;
        }
        if fdtable::is_client(fd) {
            let iov = [one_iovec(buf, count)];
            // SAFETY: the app's buffer, as it passed it to write.
            if let Some(r) = unsafe { write_with_insertion(fd, &iov, Sender::Plain) } {
                return r;
            }
        }
        let n = call_real!(real::WRITE, -1, fd, buf, count);
        after_buf(fd, Direction::Outbound, buf, count, n);
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `readv`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    untracked_fast_path!(fd, real::READV, fd, iov, count);
    out_of_line(fd, move || {
        let n = call_real!(real::READV, -1, fd, iov, count);
        after_iov(fd, Direction::Inbound, iov, count, n);
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `writev`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    untracked_fast_path!(fd, real::WRITEV, fd, iov, count);
    out_of_line(fd, move || {
        if fdtable::is_client(fd) && !iov.is_null() && count > 0 {
            // SAFETY: the app's iovecs, as it passed them to writev.
            let iovs = unsafe { std::slice::from_raw_parts(iov, count as usize) };
            // SAFETY: as above.
            if let Some(r) = unsafe { write_with_insertion(fd, iovs, Sender::Plain) } {
                return r;
            }
        }
        let n = call_real!(real::WRITEV, -1, fd, iov, count);
        after_iov(fd, Direction::Outbound, iov, count, n);
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `recv`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    untracked_fast_path!(fd, real::RECV, fd, buf, len, flags);
    out_of_line(fd, move || {
        let n = call_real!(real::RECV, -1, fd, buf, len, flags);
        if consumes(flags) {
            after_buf(fd, Direction::Inbound, buf, len, n);
        }
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `__recv_chk`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    untracked_fast_path!(fd, real::RECV_CHK, fd, buf, len, buflen, flags);
    out_of_line(fd, move || {
        let n = call_real!(real::RECV_CHK, -1, fd, buf, len, buflen, flags);
        if consumes(flags) {
            after_buf(fd, Direction::Inbound, buf, len, n);
        }
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `recvfrom`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    untracked_fast_path!(fd, real::RECVFROM, fd, buf, len, flags, addr, addrlen);
    out_of_line(fd, move || {
        let n = call_real!(real::RECVFROM, -1, fd, buf, len, flags, addr, addrlen);
        if consumes(flags) {
            after_buf(fd, Direction::Inbound, buf, len, n);
        }
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `__recvfrom_chk`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    untracked_fast_path!(
        fd,
        real::RECVFROM_CHK,
        fd,
        buf,
        len,
        buflen,
        flags,
        addr,
        addrlen
    );
    out_of_line(fd, move || {
        let n = call_real!(
            real::RECVFROM_CHK,
            -1,
            fd,
            buf,
            len,
            buflen,
            flags,
            addr,
            addrlen
        );
        if consumes(flags) {
            after_buf(fd, Direction::Inbound, buf, len, n);
        }
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `recvmsg`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    untracked_fast_path!(fd, real::RECVMSG, fd, msg, flags);
    out_of_line(fd, move || {
        let n = call_real!(real::RECVMSG, -1, fd, msg, flags);
        if consumes(flags) {
            after_msg(fd, Direction::Inbound, msg, flags, n);
        }
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `send`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    untracked_fast_path!(fd, real::SEND, fd, buf, len, flags);
    out_of_line(fd, move || {
        if fdtable::is_client(fd) {
            let iov = [one_iovec(buf, len)];
            let how = Sender::Socket {
                flags,
                msg: std::ptr::null(),
            };
            // SAFETY: the app's buffer, as it passed it to send.
            if let Some(r) = unsafe { write_with_insertion(fd, &iov, how) } {
                return r;
            }
        }
        let n = call_real!(real::SEND, -1, fd, buf, len, flags);
        after_buf(fd, Direction::Outbound, buf, len, n);
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `sendto`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    untracked_fast_path!(fd, real::SENDTO, fd, buf, len, flags, addr, addrlen);
    out_of_line(fd, move || {
        if fdtable::is_client(fd) {
            let iov = [one_iovec(buf, len)];
            // SAFETY: an all-zero msghdr is a valid empty header.
            let mut m: msghdr = unsafe { std::mem::MaybeUninit::zeroed().assume_init() };
            m.msg_name = addr as *mut c_void;
            m.msg_namelen = addrlen;
            let how = Sender::Socket { flags, msg: &m };
            // SAFETY: the app's buffer and address, as it passed them to sendto.
            if let Some(r) = unsafe { write_with_insertion(fd, &iov, how) } {
                return r;
            }
        }
        let n = call_real!(real::SENDTO, -1, fd, buf, len, flags, addr, addrlen);
        after_buf(fd, Direction::Outbound, buf, len, n);
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `sendmsg`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    untracked_fast_path!(fd, real::SENDMSG, fd, msg, flags);
    out_of_line(fd, move || {
        if fdtable::is_client(fd) && !msg.is_null() {
            // SAFETY: the app's message header, as it passed it to sendmsg.
            let (iov, count) = unsafe { ((*msg).msg_iov as *const iovec, (*msg).msg_iovlen) };
            if !iov.is_null() && count > 0 {
                // SAFETY: `count` iovecs described by the app's header.
                let iovs = unsafe { std::slice::from_raw_parts(iov, count) };
                // SAFETY: as above.
                if let Some(r) =
                    unsafe { write_with_insertion(fd, iovs, Sender::Socket { flags, msg }) }
                {
                    return r;
                }
            }
        }
        let n = call_real!(real::SENDMSG, -1, fd, msg, flags);
        after_msg(fd, Direction::Outbound, msg, 0, n);
        n
    })
}

fn after_sendfile(out_fd: c_int, n: ssize_t) {
    if n > 0 && fdtable::is_tracked(out_fd) {
        traced(|rt| runtime::on_opaque_outbound(rt, out_fd, n as usize));
    }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `sendfile`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    untracked_fast_path!(out_fd, real::SENDFILE, out_fd, in_fd, offset, count);
    out_of_line(out_fd, move || {
        let n = call_real!(real::SENDFILE, -1, out_fd, in_fd, offset, count);
        after_sendfile(out_fd, n);
        n
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `sendfile64`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sendfile64(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    untracked_fast_path!(out_fd, real::SENDFILE64, out_fd, in_fd, offset, count);
    out_of_line(out_fd, move || {
        let n = call_real!(real::SENDFILE64, -1, out_fd, in_fd, offset, count);
        after_sendfile(out_fd, n);
        n
    })
}

//! Connection lifecycle: connect, accept, close and the calls that copy or
//! replace file descriptors, so the fd table always matches the kernel's;
//! `socket` for our own threads' sockets, which are kept out of the app's
//! way (`custody.rs`).

use std::mem::{offset_of, size_of, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{c_int, c_uint, c_ulong, sockaddr, socklen_t};
use lumigo_core::address::Address;

use super::call_real;
use lumigo_core::guard;

use crate::custody;
use crate::fdtable;
use crate::real;
use crate::runtime::{self, traced};

/// What a socket address says, for the families we trace.
enum SockName {
    Inet(SocketAddr),
    /// A Unix socket: its name, or `None` when it is unnamed.
    Unix(Option<Address>),
}

impl SockName {
    fn address(self) -> Option<Address> {
        match self {
            SockName::Inet(a) => Some(Address::Inet(a)),
            SockName::Unix(a) => a,
        }
    }
}

/// Reads an AF_INET, AF_INET6 or AF_UNIX socket address.
///
/// # Safety
/// `addr` must be null or point to at least `len` readable bytes.
unsafe fn read_sockaddr(addr: *const sockaddr, len: socklen_t) -> Option<SockName> {
    if addr.is_null() || (len as usize) < size_of::<libc::sa_family_t>() {
        return None;
    }
    let len = len as usize;
    // SAFETY (all reads below): the caller guarantees `len` readable bytes,
    // and each branch checks `len` covers what it reads; read_unaligned
    // copes with any alignment.
    match i32::from(unsafe { std::ptr::read_unaligned(std::ptr::addr_of!((*addr).sa_family)) }) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            let a: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(addr.cast()) };
            Some(SockName::Inet(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            ))))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            let a: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(addr.cast()) };
            Some(SockName::Inet(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            ))))
        }
        libc::AF_UNIX => {
            // The name is what the length covers after the family (nothing
            // for an unnamed socket), never more than `sun_path` holds.
            let at = offset_of!(libc::sockaddr_un, sun_path);
            let n = len.min(size_of::<libc::sockaddr_un>()).saturating_sub(at);
            let path = unsafe { std::slice::from_raw_parts(addr.cast::<u8>().add(at), n) };
            Some(SockName::Unix(Address::unix(path)))
        }
        _ => None,
    }
}

/// Local or peer name of a socket via getsockname/getpeername.
fn socket_name(fd: c_int, peer: bool) -> Option<SockName> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as socklen_t;
    let p = storage.as_mut_ptr().cast::<sockaddr>();
    // SAFETY: the buffer is a zeroed sockaddr_storage of `len` bytes.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    if r != 0 {
        return None;
    }
    // SAFETY: the kernel filled at most `len` bytes of our buffer.
    unsafe { read_sockaddr(p, len.min(size_of::<libc::sockaddr_storage>() as socklen_t)) }
}

/// Local or peer address of a socket (TCP or Unix).
pub(crate) fn socket_addr(fd: c_int, peer: bool) -> Option<Address> {
    socket_name(fd, peer).and_then(SockName::address)
}

/// `IPPROTO_MPTCP` (Linux 5.6+): Multipath TCP, a stream of bytes like TCP.
const IPPROTO_MPTCP: c_int = 262;

/// An integer socket option at level SOL_SOCKET.
fn socket_option(fd: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(value)
}

/// True for the byte streams we parse: a TCP or Multipath TCP socket, or a
/// Unix stream socket (not datagram, not seqpacket).
fn is_traced_stream(fd: c_int, name: &SockName) -> bool {
    match name {
        SockName::Inet(_) => socket_option(fd, libc::SO_PROTOCOL)
            .is_some_and(|p| p == libc::IPPROTO_TCP || p == IPPROTO_MPTCP),
        SockName::Unix(_) => socket_option(fd, libc::SO_TYPE) == Some(libc::SOCK_STREAM),
    }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `connect`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let r = call_real!(real::CONNECT, -1, fd, addr, len);
    // SAFETY: reading errno of this thread.
    if r == 0 || unsafe { *libc::__errno_location() } == libc::EINPROGRESS {
        traced(|rt| {
            // SAFETY: the app passed `addr`/`len` to connect, which read them.
            let Some(peer) = (unsafe { read_sockaddr(addr, len) }) else {
                return;
            };
            if is_traced_stream(fd, &peer) {
                runtime::on_connect(rt, fd, peer.address(), socket_addr(fd, false));
            }
        });
    }
    r
}

/// `given`: the size of the app's address buffer before the call (the
/// kernel may report a longer address than it could store there).
fn after_accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, given: socklen_t) {
    traced(|rt| {
        // SAFETY: on success accept wrote min(`*len`, `given`) bytes at
        // `addr`; both are the app's valid pointers or null.
        let peer = unsafe {
            if addr.is_null() || len.is_null() {
                None
            } else {
                read_sockaddr(addr, (*len).min(given))
            }
        };
        let Some(peer) = peer.or_else(|| socket_name(fd, true)) else {
            return;
        };
        if is_traced_stream(fd, &peer) {
            // An accepted Unix connection's peer is usually unnamed; its
            // local name is the listening socket's.
            runtime::on_accept(rt, fd, peer.address(), socket_addr(fd, false));
        }
    });
}

/// The size of the app's address buffer.
///
/// # Safety
/// `len` must be null or valid, as accept requires.
unsafe fn given_len(addr: *mut sockaddr, len: *mut socklen_t) -> socklen_t {
    if addr.is_null() || len.is_null() {
        0
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { *len }
    }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `accept`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the app's arguments to accept.
    let given = unsafe { given_len(addr, len) };
    let r = call_real!(real::ACCEPT, -1, fd, addr, len);
    if r >= 0 {
        after_accept(r, addr, len, given);
    }
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `accept4`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the app's arguments to accept4.
    let given = unsafe { given_len(addr, len) };
    let r = call_real!(real::ACCEPT4, -1, fd, addr, len, flags);
    if r >= 0 {
        after_accept(r, addr, len, given);
    }
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `socket`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // The app's sockets: a tail call. Our own threads' (the OTLP
    // transport's): moved out of the app's way and marked ours.
    if !guard::is_internal() {
        if let Some(real) = real::SOCKET.resolved() {
            // SAFETY: the app's own arguments, unchanged.
            return unsafe { real(domain, ty, protocol) };
        }
    }
    socket_slow(domain, ty, protocol)
}

#[cold]
#[inline(never)]
fn socket_slow(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let fd = call_real!(real::SOCKET, -1, domain, ty, protocol);
    if fd >= 0 && guard::is_internal() {
        return custody::adopt_raw(fd, fdtable::SOCKET);
    }
    fd
}

/// # Safety
/// Called by the dynamic linker in place of libc's `close`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if fdtable::is_marked(fd) {
        return close_marked(fd);
    }
    call_real!(real::CLOSE, -1, fd)
}

#[cold]
#[inline(never)]
fn close_marked(fd: c_int) -> c_int {
    if guard::is_internal() {
        if fdtable::is_lost(fd) {
            // Ours once; the app's now. Let go of the number, touch nothing.
            fdtable::release(fd);
            return 0;
        }
        fdtable::disown(fd);
        return call_real!(real::CLOSE, -1, fd);
    }
    // Forget the connection before the number can be reused by another thread.
    if fdtable::is_tracked(fd) {
        traced(|rt| runtime::on_close(rt, fd));
    }
    custody::app_takes(fd);
    call_real!(real::CLOSE, -1, fd)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `close_range`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // CLOSE_RANGE_CLOEXEC only marks fds; anything else closes them. Our
    // descriptors in the range are given up first (a call that then fails
    // costs us them, never the app anything).
    let closes = flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0;
    let end = (last as usize).min(fdtable::high_water().saturating_sub(1));
    if closes && first <= last && !guard::is_internal() {
        for fd in (first as usize)..=end {
            if fdtable::is_marked(fd as c_int) {
                custody::app_takes(fd as c_int);
            }
        }
    }
    let r = call_real!(real::CLOSE_RANGE, -1, first, last, flags);
    if r == 0 && closes {
        for fd in (first as usize)..=end {
            if fdtable::is_tracked(fd as c_int) {
                traced(|rt| runtime::on_close(rt, fd as c_int));
            }
        }
    }
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `closefrom` (glibc
/// 2.34+), which closes through an internal `close_range` our hook never
/// sees.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn closefrom(first: c_int) {
    let first = first.max(0) as usize;
    let end = fdtable::high_water();
    if !guard::is_internal() {
        for fd in first..end {
            if fdtable::is_marked(fd as c_int) {
                custody::app_takes(fd as c_int);
            }
        }
    }
    if let Some(real) = real::CLOSEFROM.get() {
        // SAFETY: the app's own argument, unchanged.
        unsafe { real(first as c_int) };
    }
    for fd in first..end {
        if fdtable::is_tracked(fd as c_int) {
            traced(|rt| runtime::on_close(rt, fd as c_int));
        }
    }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `dup`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let r = call_real!(real::DUP, -1, fd);
    if r >= 0 && fdtable::is_tracked(fd) {
        traced(|rt| runtime::on_dup(rt, fd, r));
    }
    r
}

/// dup2/dup3 by the app onto a descriptor of ours: it is given up first
/// (a call that then fails costs us that descriptor, never the app anything).
fn before_replacing(old: c_int, new: c_int) {
    if old != new && fdtable::is_marked(new) && !guard::is_internal() {
        custody::app_takes(new);
    }
}

fn after_dup2(old: c_int, new: c_int, r: c_int) {
    if r >= 0 && old != new && (fdtable::is_tracked(new) || fdtable::is_tracked(old)) {
        traced(|rt| {
            runtime::on_close(rt, new);
            runtime::on_dup(rt, old, new);
        });
    }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `dup2`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    before_replacing(old, new);
    let r = call_real!(real::DUP2, -1, old, new);
    after_dup2(old, new, r);
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `dup3`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    before_replacing(old, new);
    let r = call_real!(real::DUP3, -1, old, new, flags);
    after_dup2(old, new, r);
    r
}

fn after_fcntl(fd: c_int, cmd: c_int, r: c_int) {
    if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) && fdtable::is_tracked(fd) {
        traced(|rt| runtime::on_dup(rt, fd, r));
    }
}

/// fcntl by our own code on a descriptor of ours. `F_GETFD` is what std
/// asks before it drops an owned descriptor, in builds with debug
/// assertions, and it aborts the process on `EBADF`: a descriptor the app
/// closed behind our back (a raw syscall, a close inside libc) must not
/// cost the app its life, so our own threads hear "open", and the drop
/// goes on to a `close` whose error std ignores.
#[cold]
fn our_fcntl(fd: c_int, cmd: c_int, real: impl FnOnce() -> c_int) -> c_int {
    let lost = fdtable::is_lost(fd);
    if !lost {
        let r = real();
        // SAFETY: reading this thread's errno.
        if r == -1 && cmd == libc::F_GETFD && unsafe { *libc::__errno_location() } == libc::EBADF {
            return libc::FD_CLOEXEC;
        }
        return r;
    }
    // A number the app took: nothing reaches its descriptor.
    if cmd == libc::F_GETFD {
        return libc::FD_CLOEXEC;
    }
    // SAFETY: writing this thread's errno.
    unsafe { *libc::__errno_location() = libc::EBADF };
    -1
}

// `fcntl` is variadic in C. Its optional third argument is an int or a
// pointer, which the x86_64 and aarch64 Linux calling conventions pass in
// the same register as a fixed unsigned long, so forwarding it as one is exact.

/// # Safety
/// Called by the dynamic linker in place of libc's `fcntl`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    if fdtable::is_marked(fd) && guard::is_internal() {
        return our_fcntl(fd, cmd, || call_real!(real::FCNTL, -1, fd, cmd, arg));
    }
    let r = call_real!(real::FCNTL, -1, fd, cmd, arg);
    after_fcntl(fd, cmd, r);
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `fcntl64`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    if fdtable::is_marked(fd) && guard::is_internal() {
        return our_fcntl(fd, cmd, || call_real!(real::FCNTL64, -1, fd, cmd, arg));
    }
    let r = call_real!(real::FCNTL64, -1, fd, cmd, arg);
    after_fcntl(fd, cmd, r);
    r
}

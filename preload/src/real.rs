//! The real libc functions behind our hooks, resolved with
//! `dlsym(RTLD_NEXT, …)`.
//!
//! Everything is resolved once in the constructor, because `dlsym` can
//! allocate and take locks. A hook can still run before our constructor
//! (another library's constructor may write or connect), so each slot also
//! resolves itself on first use.

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{
    c_char, c_int, c_uint, c_ulong, c_void, iovec, msghdr, off_t, pid_t,
    posix_spawn_file_actions_t, posix_spawnattr_t, size_t, sockaddr, socklen_t, ssize_t,
};

/// One lazily resolved function pointer of type `F`.
pub struct Real<F> {
    name: &'static CStr,
    addr: AtomicUsize,
    _f: std::marker::PhantomData<F>,
}

impl<F: Copy> Real<F> {
    pub const fn new(name: &'static CStr) -> Self {
        Real {
            name,
            addr: AtomicUsize::new(0),
            _f: std::marker::PhantomData,
        }
    }

    /// The real function if it is already resolved (the constructor
    /// resolves every slot), without ever calling `dlsym`: for the shims'
    /// fast paths, which must not need a stack frame.
    #[inline(always)]
    pub fn resolved(&self) -> Option<F> {
        let addr = self.addr.load(Ordering::Relaxed);
        if addr == 0 {
            return None;
        }
        // SAFETY: as in `get`.
        Some(unsafe { std::mem::transmute_copy::<usize, F>(&addr) })
    }

    /// The real function, or `None` if the C library has no such symbol.
    #[inline]
    pub fn get(&self) -> Option<F> {
        let mut addr = self.addr.load(Ordering::Relaxed);
        if addr == 0 {
            addr = self.resolve();
        }
        if addr == 0 {
            return None;
        }
        // SAFETY: `F` is always an `unsafe extern "C" fn` pointer type of the
        // same size as `usize` (checked below at compile time for each use),
        // and `addr` is the address dlsym returned for the symbol whose C
        // signature `F` declares.
        Some(unsafe { std::mem::transmute_copy::<usize, F>(&addr) })
    }

    #[cold]
    #[inline(never)]
    pub fn resolve(&self) -> usize {
        const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>()) };
        // SAFETY: dlsym with a valid NUL-terminated name; RTLD_NEXT finds the
        // next definition after this library, i.e. libc's.
        let addr = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) } as usize;
        self.addr.store(addr, Ordering::Relaxed);
        addr
    }
}

pub type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
pub type UidFn = unsafe extern "C" fn(libc::uid_t) -> c_int;
pub type Uid2Fn = unsafe extern "C" fn(libc::uid_t, libc::uid_t) -> c_int;
pub type Uid3Fn = unsafe extern "C" fn(libc::uid_t, libc::uid_t, libc::uid_t) -> c_int;
pub type GidFn = unsafe extern "C" fn(libc::gid_t) -> c_int;
pub type Gid2Fn = unsafe extern "C" fn(libc::gid_t, libc::gid_t) -> c_int;
pub type Gid3Fn = unsafe extern "C" fn(libc::gid_t, libc::gid_t, libc::gid_t) -> c_int;
pub type SetgroupsFn = unsafe extern "C" fn(size_t, *const libc::gid_t) -> c_int;
pub type InitgroupsFn = unsafe extern "C" fn(*const c_char, libc::gid_t) -> c_int;
pub static SOCKET: Real<SocketFn> = Real::new(c"socket");
pub type ClosefromFn = unsafe extern "C" fn(c_int);
pub static CLOSEFROM: Real<ClosefromFn> = Real::new(c"closefrom");
pub static SETUID: Real<UidFn> = Real::new(c"setuid");
pub static SETEUID: Real<UidFn> = Real::new(c"seteuid");
pub static SETREUID: Real<Uid2Fn> = Real::new(c"setreuid");
pub static SETRESUID: Real<Uid3Fn> = Real::new(c"setresuid");
pub static SETGID: Real<GidFn> = Real::new(c"setgid");
pub static SETEGID: Real<GidFn> = Real::new(c"setegid");
pub static SETREGID: Real<Gid2Fn> = Real::new(c"setregid");
pub static SETRESGID: Real<Gid3Fn> = Real::new(c"setresgid");
pub static SETGROUPS: Real<SetgroupsFn> = Real::new(c"setgroups");
pub static INITGROUPS: Real<InitgroupsFn> = Real::new(c"initgroups");

pub type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
pub type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
pub type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
pub type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
pub type CloseRangeFn = unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int;
pub type DupFn = unsafe extern "C" fn(c_int) -> c_int;
pub type Dup2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;
pub type Dup3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
pub type FcntlFn = unsafe extern "C" fn(c_int, c_int, c_ulong) -> c_int;
pub type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, size_t) -> ssize_t;
pub type ReadChkFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, size_t) -> ssize_t;
pub type WriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t;
pub type ReadvFn = unsafe extern "C" fn(c_int, *const iovec, c_int) -> ssize_t;
pub type RecvFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, c_int) -> ssize_t;
pub type RecvChkFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, size_t, c_int) -> ssize_t;
pub type RecvfromFn = unsafe extern "C" fn(
    c_int,
    *mut c_void,
    size_t,
    c_int,
    *mut sockaddr,
    *mut socklen_t,
) -> ssize_t;
pub type RecvfromChkFn = unsafe extern "C" fn(
    c_int,
    *mut c_void,
    size_t,
    size_t,
    c_int,
    *mut sockaddr,
    *mut socklen_t,
) -> ssize_t;
pub type RecvmsgFn = unsafe extern "C" fn(c_int, *mut msghdr, c_int) -> ssize_t;
pub type SendFn = unsafe extern "C" fn(c_int, *const c_void, size_t, c_int) -> ssize_t;
pub type SendtoFn = unsafe extern "C" fn(
    c_int,
    *const c_void,
    size_t,
    c_int,
    *const sockaddr,
    socklen_t,
) -> ssize_t;
pub type SendmsgFn = unsafe extern "C" fn(c_int, *const msghdr, c_int) -> ssize_t;
pub type SendfileFn = unsafe extern "C" fn(c_int, c_int, *mut off_t, size_t) -> ssize_t;

pub type ExecveFn =
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
pub type ExecvFn = unsafe extern "C" fn(*const c_char, *const *const c_char) -> c_int;
pub type PosixSpawnFn = unsafe extern "C" fn(
    *mut pid_t,
    *const c_char,
    *const posix_spawn_file_actions_t,
    *const posix_spawnattr_t,
    *const *mut c_char,
    *const *mut c_char,
) -> c_int;

pub type GetaddrinfoFn = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const libc::addrinfo,
    *mut *mut libc::addrinfo,
) -> c_int;
pub type GethostbynameFn = unsafe extern "C" fn(*const c_char) -> *mut libc::hostent;
pub type GethostbynameRFn = unsafe extern "C" fn(
    *const c_char,
    *mut libc::hostent,
    *mut c_char,
    size_t,
    *mut *mut libc::hostent,
    *mut c_int,
) -> c_int;
pub static GETADDRINFO: Real<GetaddrinfoFn> = Real::new(c"getaddrinfo");
pub static GETHOSTBYNAME: Real<GethostbynameFn> = Real::new(c"gethostbyname");
pub static GETHOSTBYNAME_R: Real<GethostbynameRFn> = Real::new(c"gethostbyname_r");

pub type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
pub type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
pub static SIGACTION: Real<SigactionFn> = Real::new(c"sigaction");
pub static SIGNAL: Real<SignalFn> = Real::new(c"signal");
pub static BSD_SIGNAL: Real<SignalFn> = Real::new(c"bsd_signal");
pub static SYSV_SIGNAL: Real<SignalFn> = Real::new(c"sysv_signal");
pub static SYSV_SIGNAL_INTERNAL: Real<SignalFn> = Real::new(c"__sysv_signal");

pub type ExitFn = unsafe extern "C" fn(c_int) -> !;
pub static EXIT: Real<ExitFn> = Real::new(c"exit");
pub static UNDERSCORE_EXIT: Real<ExitFn> = Real::new(c"_exit");
pub static EXECVE: Real<ExecveFn> = Real::new(c"execve");
pub static EXECV: Real<ExecvFn> = Real::new(c"execv");
pub static EXECVP: Real<ExecvFn> = Real::new(c"execvp");
pub static EXECVPE: Real<ExecveFn> = Real::new(c"execvpe");
pub static POSIX_SPAWN: Real<PosixSpawnFn> = Real::new(c"posix_spawn");
pub static POSIX_SPAWNP: Real<PosixSpawnFn> = Real::new(c"posix_spawnp");
pub static CONNECT: Real<ConnectFn> = Real::new(c"connect");
pub static ACCEPT: Real<AcceptFn> = Real::new(c"accept");
pub static ACCEPT4: Real<Accept4Fn> = Real::new(c"accept4");
pub static CLOSE: Real<CloseFn> = Real::new(c"close");
pub static CLOSE_RANGE: Real<CloseRangeFn> = Real::new(c"close_range");
pub static DUP: Real<DupFn> = Real::new(c"dup");
pub static DUP2: Real<Dup2Fn> = Real::new(c"dup2");
pub static DUP3: Real<Dup3Fn> = Real::new(c"dup3");
pub static FCNTL: Real<FcntlFn> = Real::new(c"fcntl");
pub static FCNTL64: Real<FcntlFn> = Real::new(c"fcntl64");
pub static READ: Real<ReadFn> = Real::new(c"read");
pub static READ_CHK: Real<ReadChkFn> = Real::new(c"__read_chk");
pub static WRITE: Real<WriteFn> = Real::new(c"write");
pub static READV: Real<ReadvFn> = Real::new(c"readv");
pub static WRITEV: Real<ReadvFn> = Real::new(c"writev");
pub static RECV: Real<RecvFn> = Real::new(c"recv");
pub static RECV_CHK: Real<RecvChkFn> = Real::new(c"__recv_chk");
pub static RECVFROM: Real<RecvfromFn> = Real::new(c"recvfrom");
pub static RECVFROM_CHK: Real<RecvfromChkFn> = Real::new(c"__recvfrom_chk");
pub static RECVMSG: Real<RecvmsgFn> = Real::new(c"recvmsg");
pub static SEND: Real<SendFn> = Real::new(c"send");
pub static SENDTO: Real<SendtoFn> = Real::new(c"sendto");
pub static SENDMSG: Real<SendmsgFn> = Real::new(c"sendmsg");
pub static SENDFILE: Real<SendfileFn> = Real::new(c"sendfile");
pub static SENDFILE64: Real<SendfileFn> = Real::new(c"sendfile64");

/// Resolves every slot now (called from the constructor).
pub fn resolve_all() {
    SIGACTION.resolve();
    SIGNAL.resolve();
    BSD_SIGNAL.resolve();
    SYSV_SIGNAL.resolve();
    SYSV_SIGNAL_INTERNAL.resolve();
    SOCKET.resolve();
    CLOSEFROM.resolve();
    SETUID.resolve();
    SETEUID.resolve();
    SETREUID.resolve();
    SETRESUID.resolve();
    SETGID.resolve();
    SETEGID.resolve();
    SETREGID.resolve();
    SETRESGID.resolve();
    SETGROUPS.resolve();
    INITGROUPS.resolve();
    EXIT.resolve();
    GETADDRINFO.resolve();
    GETHOSTBYNAME.resolve();
    GETHOSTBYNAME_R.resolve();
    UNDERSCORE_EXIT.resolve();
    EXECVE.resolve();
    EXECV.resolve();
    EXECVP.resolve();
    EXECVPE.resolve();
    POSIX_SPAWN.resolve();
    POSIX_SPAWNP.resolve();
    CONNECT.resolve();
    ACCEPT.resolve();
    ACCEPT4.resolve();
    CLOSE.resolve();
    CLOSE_RANGE.resolve();
    DUP.resolve();
    DUP2.resolve();
    DUP3.resolve();
    FCNTL.resolve();
    FCNTL64.resolve();
    READ.resolve();
    READ_CHK.resolve();
    WRITE.resolve();
    READV.resolve();
    WRITEV.resolve();
    RECV.resolve();
    RECV_CHK.resolve();
    RECVFROM.resolve();
    RECVFROM_CHK.resolve();
    RECVMSG.resolve();
    SEND.resolve();
    SENDTO.resolve();
    SENDMSG.resolve();
    SENDFILE.resolve();
    SENDFILE64.resolve();
}

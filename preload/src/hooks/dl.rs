//! `dlopen` and `dlsym`: where libraries loaded with `RTLD_DEEPBIND` are
//! noticed and re-pointed at our hooks ([`crate::deepbind`]).
//!
//! glibc's `dlopen` and `dlsym` act on behalf of their *caller*, found from
//! their return address: `dlopen` searches the caller's RPATH/RUNPATH for a
//! bare name, expands `$ORIGIN` against the caller, loads into the caller's
//! namespace and makes the caller the new object's loader; `dlsym` resolves
//! `RTLD_NEXT` and `RTLD_DEFAULT` relative to the caller. A hook that called
//! the real function from its own frame would make all of that relative to
//! liblumigo_preload.so instead. So each hook is a trampoline that runs our
//! bookkeeping first and then *jumps* to the real function with the app's
//! stack and return address untouched: glibc sees the app's own call, and
//! returns straight to it.
//!
//! The bookkeeping therefore happens before a call, never after: before any
//! `dlopen` or `dlsym`, objects loaded since the last look are patched (a
//! program looks up its plugin's entry points with `dlsym` right after
//! loading it); before a `dlopen` with `RTLD_DEEPBIND`, the objects already
//! loaded are recorded as not needing it.
//!
//! x86_64 and aarch64 only; elsewhere neither symbol is exported and
//! `RTLD_DEEPBIND` libraries stay untraced.

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_char, c_int, c_void};
use lumigo_core::guard;

use crate::deepbind;

/// An exported symbol that calls `$pre` (which must preserve nothing but
/// return the real function's address) with the hook's own arguments, then
/// jumps to the address it returned with the arguments and stack as the
/// app made them.
macro_rules! pre_call_trampoline {
    ($name:ident => $pre:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name() {
            // Entry: rsp = 8 mod 16. Two pushes and 8 bytes keep the call
            // aligned; rdi/rsi (both hooks take two arguments) are restored.
            core::arch::naked_asm!(
                "push rdi",
                "push rsi",
                "sub rsp, 8",
                "call {pre}",
                "add rsp, 8",
                "pop rsi",
                "pop rdi",
                "jmp rax",
                pre = sym $pre,
            )
        }
        #[cfg(target_arch = "aarch64")]
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name() {
            // x0/x1 and the link register are saved and restored; x16 is the
            // intra-procedure-call register, free here and allowed by BTI.
            core::arch::naked_asm!(
                "stp x29, x30, [sp, #-32]!",
                "mov x29, sp",
                "stp x0, x1, [sp, #16]",
                "bl {pre}",
                "mov x16, x0",
                "ldp x0, x1, [sp, #16]",
                "ldp x29, x30, [sp], #32",
                "br x16",
                pre = sym $pre,
            )
        }
    };
}

pre_call_trampoline!(dlopen => before_dlopen);
pre_call_trampoline!(dlsym => before_dlsym);

/// Runs before the app's `dlopen(file, mode)`; returns the real `dlopen`.
extern "C" fn before_dlopen(_file: *const c_char, mode: c_int) -> usize {
    if !deepbind::seen() && mode & libc::RTLD_DEEPBIND == 0 {
        return REAL_DLOPEN.get();
    }
    bookkeeping(|| {
        deepbind::sync();
        if mode & libc::RTLD_DEEPBIND != 0 {
            deepbind::note_deepbind();
        }
    });
    REAL_DLOPEN.get()
}

/// Runs before the app's `dlsym`; returns the real `dlsym`.
extern "C" fn before_dlsym(_handle: *mut c_void, _name: *const c_char) -> usize {
    if deepbind::seen() {
        bookkeeping(deepbind::sync);
    }
    REAL_DLSYM.get()
}

/// Runs `work` unless the call is our own, keeping errno, never unwinding.
fn bookkeeping(work: impl FnOnce()) {
    if guard::is_internal() {
        return;
    }
    let _guard = guard::Internal::enter();
    // SAFETY: __errno_location is always valid for this thread.
    let saved = unsafe { *libc::__errno_location() };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// A real libdl function, resolved with `dlvsym` (we export no `dlvsym`, so
/// this never re-enters our own `dlsym`).
struct RealDl {
    name: &'static CStr,
    missing: MissingFn,
    addr: AtomicUsize,
}

/// The versions to try: glibc 2.34 moved libdl into libc under a new
/// version; older systems have only the architecture's first one (the same
/// function either way).
const VERSIONS: [&CStr; 2] = [
    c"GLIBC_2.34",
    if cfg!(target_arch = "aarch64") {
        c"GLIBC_2.17"
    } else {
        c"GLIBC_2.2.5"
    },
];

impl RealDl {
    fn get(&self) -> usize {
        let addr = self.addr.load(Ordering::Relaxed);
        if addr != 0 {
            return addr;
        }
        let found = VERSIONS
            .iter()
            .map(|v| {
                // SAFETY: dlvsym with valid NUL-terminated strings; RTLD_NEXT
                // is relative to this library, so it finds libc's (or a
                // later interposer's) definition.
                unsafe { libc::dlvsym(libc::RTLD_NEXT, self.name.as_ptr(), v.as_ptr()) as usize }
            })
            .find(|&a| a != 0);
        match found {
            Some(a) => {
                self.addr.store(a, Ordering::Relaxed);
                a
            }
            // Not cached: on a glibc older than 2.34 libdl may be loaded
            // later.
            None => self.missing as usize,
        }
    }
}

type MissingFn = extern "C" fn(*const c_void, *const c_void) -> *mut c_void;

/// What a missing `dlopen`/`dlsym` returns (never expected: every glibc has
/// them): a null handle or symbol, as for a failed call.
extern "C" fn missing(_: *const c_void, _: *const c_void) -> *mut c_void {
    std::ptr::null_mut()
}

static REAL_DLOPEN: RealDl = RealDl {
    name: c"dlopen",
    missing,
    addr: AtomicUsize::new(0),
};
static REAL_DLSYM: RealDl = RealDl {
    name: c"dlsym",
    missing,
    addr: AtomicUsize::new(0),
};

/// Resolves both now (called from the constructor).
pub fn resolve() {
    REAL_DLOPEN.get();
    REAL_DLSYM.get();
}

//! The runtime scripts' channel into the library (see `lumigo_core::hint`):
//! a `write` to `HINT_FD`, a descriptor number that is never open. With
//! tracing on, a well-formed hint is taken here and the write reports every
//! byte written, with no system call; anything else written to that number
//! goes to the real call (and fails with `EBADF` as it would without us).

use libc::{c_int, c_void, size_t, ssize_t};
use lumigo_core::hint::{self, HINT_FD, HINT_LEN};

use crate::{fdtable, runtime};

// The write shim's fast path leaves this number to the out-of-line path
// only because it is above the fd table.
const _: () = assert!(HINT_FD as usize >= fdtable::MAX_FDS);

/// `Some(count)` when a `write(fd, buf, count)` was a hint, now taken.
#[inline(always)]
pub fn take(fd: c_int, buf: *const c_void, count: size_t) -> Option<ssize_t> {
    if fd != HINT_FD {
        return None;
    }
    take_cold(buf, count)
}

#[cold]
#[inline(never)]
fn take_cold(buf: *const c_void, count: size_t) -> Option<ssize_t> {
    if count != HINT_LEN || buf.is_null() {
        return None;
    }
    // SAFETY: the caller's buffer of `count` bytes, as it passed it to
    // write; read only, before any real call.
    let msg = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), count) };
    let taken = runtime::traced_value(|_| hint::on_hint_write(msg).then_some(()));
    taken.map(|()| HINT_LEN as ssize_t)
}

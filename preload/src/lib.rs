//! liblumigo_preload.so: the library `lumigo-run` puts in `LD_PRELOAD`.
//!
//! This crate is the only unsafe layer of lumigo-run. It interposes libc's
//! socket and I/O calls; every shim calls the real function with the app's
//! arguments, returns its result untouched, and hands what moved on tracked
//! TCP connections to safe code in `lumigo_core`.
//!
//! The exported ABI, in one place:
//! - connection lifecycle ([`hooks::socket`]): `socket`, `connect`,
//!   `accept`, `accept4`, `close`, `close_range`, `closefrom`, `dup`,
//!   `dup2`, `dup3`,
//!   `fcntl`, `fcntl64` (our own descriptors: [`custody`]);
//! - bytes ([`hooks::io`]): `read`, `__read_chk`, `write`, `readv`,
//!   `writev`, `recv`, `__recv_chk`, `recvfrom`, `__recvfrom_chk`,
//!   `recvmsg`, `send`, `sendto`, `sendmsg`, `sendfile`, `sendfile64`
//!   (writes may carry an inserted `traceparent`: [`hooks::inject`]);
//! - name lookups ([`hooks::dns`]): `getaddrinfo`, `gethostbyname`,
//!   `gethostbyname_r`;
//! - OpenSSL ([`hooks::tls`]): `SSL_write`, `SSL_write_ex`, `SSL_read`,
//!   `SSL_read_ex`, `SSL_shutdown`, `SSL_free`, `SSL_ctrl`, and for the
//!   connection's role `SSL_connect`, `SSL_accept`, `SSL_do_handshake`,
//!   `SSL_set_connect_state`, `SSL_set_accept_state`;
//! - user and group changes ([`hooks::privilege`]): `setuid`, `seteuid`,
//!   `setreuid`, `setresuid`, `setgid`, `setegid`, `setregid`,
//!   `setresgid`, `setgroups`, `initgroups`;
//! - loading ([`hooks::dl`], x86_64 and aarch64): `dlopen`, `dlsym`,
//!   trampolines into glibc's own, after which libraries loaded with
//!   `RTLD_DEEPBIND` get their call slots re-pointed at the hooks listed
//!   here ([`deepbind`], which reads this list from the library's own
//!   dynamic symbol table);
//! - process end ([`hooks::exec`]): `exit`, `_exit`, `_Exit`;
//! - fatal signals ([`hooks::signal`]): `sigaction`, `signal`,
//!   `bsd_signal`, `sysv_signal`, `__sysv_signal`;
//! - starting programs ([`hooks::exec`]): `execve`, `execv`, `execvp`,
//!   `execvpe`, `posix_spawn`, `posix_spawnp`.
//!
//! The constructor ([`init`]) resolves the real functions, reads the
//! configuration once and registers the `fork` and exit handlers.
//!
//! Unit tests (`cargo test -p lumigo-preload`) build this crate as an
//! ordinary test binary: there the hooks keep Rust names
//! (`#[cfg_attr(not(test), no_mangle)]`), so they do not interpose on the
//! harness's own libc calls, and the constructor is not registered. The
//! shipped library's exports are checked against `exported-symbols.txt`
//! (`tests/symbols.rs`).

// In the test binary nothing calls the hooks (they are not exported), so
// most of the crate is unreachable from it.
#![cfg_attr(test, allow(dead_code, unused_imports))]

mod custody;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod deepbind;
mod fdtable;
mod hooks;
mod init;
mod real;
mod runtime;
mod transport;

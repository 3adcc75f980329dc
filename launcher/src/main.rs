//! `lumigo-run [OPTIONS] [--] COMMAND [ARGS...]`: runs COMMAND in place
//! with `liblumigo_preload.so` in its `LD_PRELOAD`, so that it is traced
//! without any change to its code.
//!
//! The entry point is C's `main`, not Rust's: the Rust runtime's start-up
//! would set `SIGPIPE` to "ignored" (which `execve` passes on to the
//! command), put `/dev/null` on a closed stdin, stdout or stderr (which the
//! command should see closed), and read `/proc/self/maps` to set up a stack
//! guard, none of which a launcher that only execs should do or pay for.
//! The standard library works as usual without it (glibc hands `argv` to
//! it before `main`).

#![cfg_attr(not(test), no_main)]

mod cli;
mod command;
mod diag;
mod dump;
mod elf;
mod env;
mod exec;
mod hints;
// Only the entry point uses it; unit tests test its parts.
#[cfg_attr(test, allow(dead_code))]
mod launch;
mod library;
mod target;
#[cfg(test)]
mod testutil;

/// Parses the command line (see [`cli::parse_command_line`]) and runs the
/// command; returns only if the command could not be started.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    launch::run(cli::parse_command_line())
}

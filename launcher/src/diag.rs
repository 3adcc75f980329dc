//! The launcher's messages on stderr: errors and warnings always (the
//! launcher is not inside the app, so a clear diagnostic is right here),
//! `#LUMIGO#` lines under `LUMIGO_DEBUG`.
//!
//! Each message is one `write`; a closed or broken stderr is ignored, since
//! the command must run regardless.

use std::fmt;
use std::io::Write;

fn line(args: fmt::Arguments<'_>) {
    let text = format!("{args}\n");
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// `lumigo-run: MESSAGE` (the command cannot run).
pub fn error(message: impl fmt::Display) {
    line(format_args!("lumigo-run: {message}"));
}

/// `lumigo-run: warning: MESSAGE`.
pub fn warn(message: impl fmt::Display) {
    line(format_args!("lumigo-run: warning: {message}"));
}

/// `#LUMIGO# lumigo-run: MESSAGE` when `on`.
pub fn debug(on: bool, message: impl fmt::Display) {
    if on {
        line(format_args!("#LUMIGO# lumigo-run: {message}"));
    }
}

//! Core of lumigo-run: everything that can be tested without `LD_PRELOAD`.
//! Its `unsafe` is confined to a few libc calls (signal masks, clocks,
//! `getrandom`), one UTF-8 shortcut in `span::InlineText`, and calls
//! through the transport library's C entry points (`export::TransportAbi`).
//!
//! The preload library (`preload/`) owns the `extern "C"` hooks and the
//! loading of the transport library, and nothing else; it hands the bytes of tracked TCP and Unix stream connections to [`connection`],
//! which recognises the protocol, parses it incrementally ([`http`]), builds
//! spans ([`span`]) and submits them to the bounded, lazily started export
//! pipeline ([`export`]). Configuration is read once into a typed
//! [`config::Config`]; nothing else reads the environment.

pub mod address;
pub mod amqp;
pub mod capture;
pub mod config;
pub mod connection;
pub mod context;
pub mod dns;
pub mod elf;
pub mod export;
pub mod fd_custody;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod hint;
pub mod http;
pub mod ids;
pub mod log;
pub mod mask;
pub mod messaging;
pub mod mqtt;
pub mod mysql;
pub mod nats;
pub mod owned_file;
pub mod payload;
pub mod postgres;
pub mod process;
pub mod propagation;
pub mod propagators;
pub mod protocol;
pub mod redis;
pub mod resource;
pub mod sampling;
pub mod sharded;
pub mod span;
pub mod spare;
pub mod sql;
pub mod tags;
#[cfg(test)]
pub(crate) mod testkit;
pub mod tls_write;
pub mod tracer;

/// Version reported as `lumigo.distro.version` and by `lumigo-run --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

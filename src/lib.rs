//! Core of lumigo-run: everything that can be written in safe Rust and tested
//! without `LD_PRELOAD`.
//!
//! The preload library (`preload/`) owns the `extern "C"` hooks and nothing
//! else; it hands the bytes of tracked TCP connections to [`connection`],
//! which recognises the protocol, parses it incrementally ([`http`]), builds
//! spans ([`span`]) and submits them to the bounded, lazily started export
//! pipeline ([`export`]). Configuration is read once into a typed
//! [`config::Config`]; nothing else reads the environment.

pub mod config;
pub mod connection;
pub mod context;
pub mod dns;
pub mod export;
pub mod guard;
pub mod http;
pub mod ids;
pub mod log;
pub mod mask;
pub mod mysql;
pub mod postgres;
pub mod propagation;
pub mod protocol;
pub mod redis;
pub mod resource;
pub mod span;
pub mod sql;
#[cfg(test)]
pub(crate) mod testkit;
pub mod tracer;

/// Version reported as `lumigo.distro.version` and by `lumigo-run --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

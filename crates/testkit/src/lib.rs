//! The workspace's test kit (not published):
//!
//! - the server harness (`TestServer`, `Setup`, `on_both_backends!`, assertion and flow helpers):
//!   the real `consentry` binary on a free loopback port, on SQLite or PostgreSQL;
//! - [`config`]: the server's typed `consentry.toml` builder, and the harness's own config;
//! - [`pki`]: a test CA, certificates it signed for loopback names, and a JSON-over-TLS host;
//! - [`fuzz`]: the fuzz runner (mutations of seed corpora through proptest, a budget of inputs
//!   and time, panics caught and shrunk);
//! - [`platform`]: a scripted `consentry_core::Platform` for the browser-SDK crates' native and
//!   wasm tests.
//!
//! The first three are the `server` feature (default; native only). The SDK crates take the crate
//! with `default-features = false`: the platform alone, which also builds for wasm32.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod platform;

#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub mod config;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub mod fuzz;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub mod pki;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
mod server;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub use server::*;

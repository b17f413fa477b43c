//! Fault tests: the real `consentry` binary under load while something breaks underneath it.
//!
//! - `crash`: `kill -9` under load (SQLite and PostgreSQL), restart, then every acknowledged
//!   operation is checked: no revoked grant usable, no used code usable, no refresh token valid
//!   twice, no acknowledged registration missing.
//! - `pg_restart`: PostgreSQL stopped and started under load (a cluster of the test's own): the
//!   server answers `503 temporarily_unavailable` meanwhile, never crashes, recovers by itself.
//! - `disk_full`: SQLite on a full filesystem (a small tmpfs): `503`, no corrupt database,
//!   recovery when space returns. Skipped, with the reason printed, where `mount` is not allowed.
//! - `slow`: an identity provider's JWKS host and a CIMD host that accept and never answer:
//!   bounded waits, other requests unaffected.
//! - `soak`: a steady 80 % of the measured maximum; 0 errors, resident memory and WAL flat.
//!
//! Short by default (part of `cargo test --workspace`, so of `cargo xtask test`); the long version
//! is `CONSENTRY_FAULTS=long` (`cargo xtask faults`). The tests take turns (a shared lock): each
//! measures the server alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod crash;
mod disk_full;
mod load;
mod pg;
mod pg_restart;
mod slow;
mod soak;

/// `CONSENTRY_FAULTS=long`: the long version (`cargo xtask faults`).
pub fn long() -> bool {
    std::env::var("CONSENTRY_FAULTS").as_deref() == Ok("long")
}

/// One fault test at a time: each loads the server and measures it.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Print a line of a test's progress (shown with `--nocapture`, and on failure).
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { eprintln!("[faults] {}", format!($($t)*)) };
}

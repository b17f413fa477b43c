//! The crates.io check: `cargo package` of every published crate together, so that crates that
//! depend on each other unpublished resolve through cargo's local registry overlay (cargo ≥ 1.90
//! packages them in dependency order and verifies each against the others' tarballs), plus their
//! docs built with every feature and `-D warnings` (missing docs, broken intra-doc links).

use std::process::ExitCode;

use super::{Result, cargo, run};

/// Published to crates.io, dependencies first.
pub(crate) const PUBLISHED: [&str; 5] = [
    "consentry-protocol",
    "consentry-core",
    "consentry-ui",
    "consentry-resource",
    "consentry-server",
];

/// The library crates whose public items are all documented (`#![warn(missing_docs)]`);
/// the server's are not yet.
const DOCUMENTED: [&str; 4] = [
    "consentry-protocol",
    "consentry-core",
    "consentry-ui",
    "consentry-resource",
];

pub(crate) const STEP: &str =
    "crates.io: cargo package (protocol, core, ui, resource, server) and cargo doc -D warnings";

pub(crate) fn check() -> Result<()> {
    let mut doc = cargo();
    doc.args(["doc", "--locked", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings");
    for krate in DOCUMENTED {
        doc.args(["-p", krate]);
    }
    run(&mut doc)?;
    let mut package = cargo();
    package.args(["package", "--locked", "--allow-dirty"]);
    for krate in PUBLISHED {
        package.args(["-p", krate]);
    }
    run(&mut package)
}

/// `cargo xtask publish-check`.
pub(crate) fn cmd_check() -> Result<ExitCode> {
    check()?;
    Ok(ExitCode::SUCCESS)
}

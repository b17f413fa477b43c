//! The crates.io check: `cargo package` of every published crate together, so that crates that
//! depend on each other unpublished resolve through cargo's local registry overlay (cargo ≥ 1.90
//! packages them in dependency order and verifies each against the others' tarballs), plus their
//! docs built with every feature and `-D warnings` (missing docs, broken intra-doc links).

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{Result, cargo, err, run};

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
    forget_stale_overlay_sources()?;
    let mut package = cargo();
    package.args(["package", "--locked", "--allow-dirty"]);
    for krate in PUBLISHED {
        package.args(["-p", krate]);
    }
    run(&mut package)
}

/// Cargo extracts the local registry overlay's tarballs under `$CARGO_HOME/registry/src/-<hash>/`,
/// the hash taken from the overlay's path, and skips the extraction when the directory exists. A
/// second packaging of the same version from the same checkout path (a clean clone at the same
/// place) then verifies against the sources of the first: the crates of this tree are checked
/// against stale copies of each other. Remove those extractions of this workspace's crates first
/// (only overlay directories, whose names start with `-`; crates.io's are left alone).
fn forget_stale_overlay_sources() -> Result<()> {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return Ok(());
    };
    let Ok(dirs) = fs::read_dir(&src) else {
        return Ok(());
    };
    for dir in dirs.flatten() {
        if !dir.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(crates) = fs::read_dir(dir.path()) else {
            continue;
        };
        for c in crates.flatten() {
            let name = c.file_name().to_string_lossy().into_owned();
            if PUBLISHED.iter().any(|p| name.starts_with(&format!("{p}-")))
                && let Err(e) = fs::remove_dir_all(c.path())
            {
                return err(format!(
                    "cannot remove the stale overlay source {}: {e}",
                    c.path().display()
                ));
            }
        }
    }
    Ok(())
}

/// `cargo xtask publish-check`.
pub(crate) fn cmd_check() -> Result<ExitCode> {
    check()?;
    Ok(ExitCode::SUCCESS)
}

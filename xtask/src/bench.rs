//! `cargo xtask bench`, `bench-peer` and `seed`: the load benchmarks on the release binary.

use crate::*;

/// Build the release server and its examples (the load driver, the seeder).
fn build_release() -> Result<Option<ExitCode>> {
    let built = cargo()
        .args([
            "build",
            "--release",
            "-p",
            "consentry-server",
            "--bins",
            "--examples",
        ])
        .status()
        .map_err(|e| spawn_error("cargo", &e))?;
    Ok((!built.success()).then(|| exit_code(built)))
}

fn release_example(name: &str) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("release")
        .join("examples")
        .join(name)
}

fn run_example(name: &str, args: &[String]) -> Result<ExitCode> {
    if let Some(code) = build_release()? {
        return Ok(code);
    }
    let exe = release_example(name);
    let status = Command::new(&exe)
        .args(args)
        .status()
        .map_err(|e| spawn_error(&exe.display().to_string(), &e))?;
    Ok(exit_code(status))
}

/// The bench drives the release `consentry` binary, so build both, then run the example.
pub(crate) fn cmd_bench(rest: &[String]) -> Result<ExitCode> {
    run_example("bench", rest)
}

/// `seed`: fill a store with users, grants, refresh tokens and clients (examples/seed.rs).
pub(crate) fn cmd_seed(rest: &[String]) -> Result<ExitCode> {
    run_example("seed", rest)
}

/// `bench-peer`: the Rust driver against Consentry and node-oidc-provider in one run;
/// `bench-peer --node [args]`: the shared Node driver instead (crates/server/bench/peer.sh).
pub(crate) fn cmd_bench_peer(rest: &[String]) -> Result<ExitCode> {
    if rest.first().map(String::as_str) == Some("--node") {
        let status = Command::new("bash")
            .arg("crates/server/bench/peer.sh")
            .args(&rest[1..])
            .status()
            .map_err(|e| spawn_error("bash", &e))?;
        return Ok(exit_code(status));
    }
    let peer = peer_dir()?;
    if let Some(code) = build_release()? {
        return Ok(code);
    }
    let exe = release_example("bench");
    let status = Command::new(&exe)
        .arg("--peer")
        .arg(&peer)
        .args(rest)
        .status()
        .map_err(|e| spawn_error(&exe.display().to_string(), &e))?;
    Ok(exit_code(status))
}

/// A writable copy of ../shared/bench (or $CONSENTRY_SHARED_BENCH) with its npm dependencies
/// (node-oidc-provider), in target/peer-bench/driver; `npm ci` runs again when the lockfile changed.
fn peer_dir() -> Result<PathBuf> {
    let root = repo_root();
    let shared = env::var_os("CONSENTRY_SHARED_BENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("..").join("shared").join("bench"));
    let lock = shared.join("package-lock.json");
    if !lock.exists() {
        return err(format!(
            "no peer bench at {} (set CONSENTRY_SHARED_BENCH)",
            shared.display()
        ));
    }
    let dir = root.join("target").join("peer-bench").join("driver");
    let same = |f: &str| fs::read(shared.join(f)).ok() == fs::read(dir.join(f)).ok();
    let installed = dir.join("node_modules").join("oidc-provider").exists()
        && same("package-lock.json")
        && same("servers/oidc-provider.mjs");
    if !installed {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("servers"))?;
        for f in [
            "package.json",
            "package-lock.json",
            "servers/oidc-provider.mjs",
        ] {
            fs::copy(shared.join(f), dir.join(f))?;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .map_err(|e| spawn_error("npm", &e))?;
        if !status.success() {
            return err("npm ci for node-oidc-provider failed");
        }
    }
    Ok(dir)
}

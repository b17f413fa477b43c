//! Debug builds of the binaries, the Next.js app's production build, npm installs, and the end-to-end
//! suite that uses them.

use crate::*;

/// Debug builds: the same binaries `cargo test --workspace` and the browser tests use.
pub(crate) fn build_demo_binaries() -> Result<(PathBuf, PathBuf)> {
    // `--bin` of its own: build_debug's `--bin consentry` alone would skip the MCP server's binary
    // and leave a stale one in place.
    let debug = build_debug(&[
        "-p",
        "consentry-example-mcp-server",
        "--bin",
        "consentry-example-mcp-server",
    ])?;
    Ok((
        debug.join("consentry"),
        debug.join("consentry-example-mcp-server"),
    ))
}

/// `cargo build` (debug) of the `consentry` binary and whatever `more` names; the debug output
/// directory.
pub(crate) fn build_debug(more: &[&str]) -> Result<PathBuf> {
    run(cargo()
        .args([
            "build",
            "--locked",
            "-p",
            "consentry-server",
            "--bin",
            "consentry",
        ])
        .args(more))?;
    Ok(debug_dir())
}

/// The debug profile's output directory, absolute (tests run from other directories).
pub(crate) fn debug_dir() -> PathBuf {
    let debug = target_dir().join("debug");
    if debug.is_absolute() {
        debug
    } else {
        repo_root().join(debug)
    }
}

/// Build the debug `consentry` binary (the one `cargo test --workspace` uses); its absolute path.
pub(crate) fn debug_server_binary() -> Result<PathBuf> {
    Ok(build_debug(&[])?.join("consentry"))
}

/// `next build` unless the build is newer than its sources (tests/global-setup.mjs decides, so
/// the demo and the end-to-end tests share one build).
pub(crate) fn build_next_app() -> Result<()> {
    run(Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            "await (await import('./tests/global-setup.mjs')).default()",
        ])
        .current_dir(repo_root()))
}

/// `npm ci` when node_modules is missing or older than package-lock.json.
pub(crate) fn npm_ci_if_stale(dir: &Path) -> Result<()> {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (
        modified(&dir.join("package-lock.json")),
        modified(&dir.join("node_modules/.package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => installed >= lock,
        _ => false,
    };
    if fresh {
        eprintln!("    {}: npm packages are current", dir.display());
        return Ok(());
    }
    if find_in_path("npm").is_none() {
        return err("npm not found: install Node.js 20+ (with npm) first");
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
}

pub(crate) const E2E_TEST_STEP: &str = "end to end: the example agent (MCP TS SDK) x consentry x MCP server (Rust and TS) x Next app, in Chromium";

/// tests/: the whole demo for real (consentry dev, the MCP server binary, the Next app's
/// production build, reused when current) driven by examples/agent, the user in Chromium; and the
/// vite-headless example (consentry serve, its IdP, its build) with the same agent.
pub(crate) fn test_e2e() -> Result<()> {
    let root = repo_root();
    let chromium = ensure_chromium()?;
    let (consentry, mcp_server) = build_demo_binaries()?;
    ensure_example_packages(&root.join(NEXT_APP))?;
    ensure_example_packages(&root.join("examples/vite-headless"))?;
    ensure_example_packages(&root.join(MCP_SERVER_TS))?;
    npm_ci_if_stale(&root.join(AGENT))?;
    npm_ci_if_stale(&root.join(E2E_DIR))?;
    let dir = root.join(E2E_DIR);
    run(Command::new(dir.join("node_modules/.bin/playwright"))
        .arg("test")
        .current_dir(&dir)
        .env("CONSENTRY_BIN", &consentry)
        .env("MCP_SERVER_BIN", &mcp_server)
        .env("CHROMIUM_PATH", &chromium)
        .env("NEXT_TELEMETRY_DISABLED", "1"))
}

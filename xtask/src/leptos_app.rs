//! The Leptos face of the consent UI: consentry-ui's `leptos` feature (its component tests in
//! Chromium) and `examples/leptos-app` (built with the SDK's own pipeline: `cargo build` for
//! wasm32, then `wasm-bindgen --target web`; no Trunk), with its end-to-end flow.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use super::{
    AGENT, E2E_DIR, Result, WASM_TARGET, build_demo_binaries, cargo, debug_dir,
    ensure_chromedriver, ensure_chromium, ensure_wasm_bindgen, ensure_wasm_target, err,
    npm_ci_if_stale, repo_root, run, target_dir,
};

const APP_CRATE: &str = "consentry-example-leptos-app";
const APP_WASM: &str = "consentry_example_leptos_app.wasm";
const SERVER_CRATE: &str = "consentry-example-leptos-app-server";
const SERVER_BIN: &str = "consentry-example-leptos-app";
const APP_DIR: &str = "examples/leptos-app";

pub(crate) const COMPONENTS_STEP: &str = "consentry-ui's Leptos components (feature `leptos`): clippy (wasm32) and wasm-bindgen tests in Chromium";
pub(crate) const E2E_STEP: &str = "end to end: the example agent (MCP TS SDK) x consentry x MCP server x examples/leptos-app, in Chromium";

/// The app's build: `target/leptos-app/dist` (index.html, app.js, app_bg.wasm).
pub(crate) fn dist_dir() -> PathBuf {
    target_dir().join("leptos-app").join("dist")
}

/// Build the app (debug wasm: it compiles in a fraction of a release build's time, and a consent
/// page on loopback does not need it small) and its backend; the backend's binary.
pub(crate) fn build() -> Result<PathBuf> {
    ensure_wasm_target()?;
    let wasm_bindgen = ensure_wasm_bindgen()?;
    run(cargo()
        .args(["build", "--locked", "-p", APP_CRATE, "--lib"])
        .args(["--target", WASM_TARGET]))?;
    let built = target_dir().join(WASM_TARGET).join("debug").join(APP_WASM);
    let dist = dist_dir();
    fs::create_dir_all(&dist)?;
    run(Command::new(wasm_bindgen)
        .arg(&built)
        .args(["--target", "web", "--no-typescript", "--out-name", "app"])
        .arg("--out-dir")
        .arg(&dist))?;
    fs::copy(
        repo_root().join(APP_DIR).join("app/index.html"),
        dist.join("index.html"),
    )?;
    run(cargo().args(["build", "--locked", "-p", SERVER_CRATE, "--bin", SERVER_BIN]))?;
    let bin = debug_dir().join(SERVER_BIN);
    if !bin.is_file() {
        return err(format!("{} was not built", bin.display()));
    }
    eprintln!("    {} and {}", dist.display(), bin.display());
    Ok(bin)
}

/// `cargo xtask leptos-app`: build, then say how to run it next to `consentry dev`.
pub(crate) fn cmd_build() -> Result<ExitCode> {
    let bin = build()?;
    eprintln!(
        "\nRun it (from the repository root):\n  \
         cargo run -p consentry-server --bin consentry -- dev --app-origin http://127.0.0.1:3001\n  \
         {} --dist {}\nthen open http://127.0.0.1:3001 (alice / wonderland).",
        bin.display(),
        dist_dir().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// tests/leptos-app.spec.mjs (the `leptos-app` Playwright project): consentry dev, the Rust MCP
/// server, the app's backend serving its build, the example agent, the user in Chromium.
pub(crate) fn test_e2e() -> Result<()> {
    let root = repo_root();
    let chromium = ensure_chromium()?;
    let (consentry, mcp_server) = build_demo_binaries()?;
    let app = build()?;
    npm_ci_if_stale(&root.join(AGENT))?;
    npm_ci_if_stale(&root.join(E2E_DIR))?;
    let dir = root.join(E2E_DIR);
    run(Command::new(dir.join("node_modules/.bin/playwright"))
        .args(["test", "--project", "leptos-app"])
        .current_dir(&dir)
        .env("CONSENTRY_BIN", &consentry)
        .env("MCP_SERVER_BIN", &mcp_server)
        .env("LEPTOS_APP_BIN", &app)
        .env("LEPTOS_APP_DIST", dist_dir())
        .env("CONSENTRY_E2E_ONLY", "leptos-app")
        .env("CHROMIUM_PATH", &chromium))
}

/// crates/ui/tests/leptos_components.rs in headless Chromium (the `leptos` feature is off in the
/// main wasm test step, which runs the npm build's feature set).
pub(crate) fn test_components() -> Result<()> {
    ensure_wasm_target()?;
    let runner = ensure_wasm_bindgen()?.with_file_name("wasm-bindgen-test-runner");
    ensure_chromium()?;
    let chromedriver = ensure_chromedriver()?;
    run(cargo()
        .args(["clippy", "--locked", "-p", "consentry-ui", "--all-targets"])
        .args(["--features", "leptos", "--target", WASM_TARGET])
        .args(["--", "-D", "warnings"]))?;
    run(cargo()
        .args([
            "test",
            "--locked",
            "-p",
            "consentry-ui",
            "--features",
            "leptos",
        ])
        .args(["--target", WASM_TARGET, "--test", "leptos_components"])
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", &runner)
        .env("CHROMEDRIVER", &chromedriver))
}

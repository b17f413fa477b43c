//! Project automation for Consentry. Run through the alias in `.cargo/config.toml`:
//!
//! ```text
//! cargo xtask test [--no-lint] [-- <cargo test args>]   every check CI runs
//! cargo xtask demo                                     consentry + MCP server + Next app, Ctrl-C stops all
//! cargo xtask bench [args...]                          the load benchmark
//! cargo xtask pg-smoke                                 start/query/stop a throwaway PostgreSQL
//! cargo xtask sdk                                      build the browser SDK into packages/consentry/dist
//! cargo xtask size                                     build it and print its size, per crate
//! cargo xtask sdk-test                                 build it and run its tsc + browser tests
//! cargo xtask wasm-test                                consentry-wasm's wasm-bindgen tests in Chromium
//! cargo xtask sdk-pack-test                            npm pack it into fresh Vite and Next apps
//! cargo xtask examples-test                            build it and run examples/{nextjs-app,vite-headless} tests
//! cargo xtask e2e-test                                 the example agent end to end against the whole demo
//! cargo xtask leptos-app / leptos-test                 examples/leptos-app: build / components + end to end
//! cargo xtask publish-check                            cargo package of the crates.io crates
//! ```
//!
//! std only, on purpose: this must build in seconds on a fresh machine.

use std::env;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

mod leptos_app;
mod publish;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const PG_ROOT: &str = "/usr/lib/postgresql";
const PG_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
const PG_OS_USER: &str = "postgres";
const PG_DIR_PREFIX: &str = "consentry-pg-";

const USAGE: &str = "\
usage: cargo xtask <command> [args...]

commands:
  test [--no-lint] [-- <args>]  run every check CI runs: fmt, clippy, wasm check of
                                consentry-protocol and consentry-wasm, then `cargo test --workspace`
                                against a throwaway PostgreSQL (installed with apt-get if missing, as
                                root), then `sdk-test`, `wasm-test` and `sdk-pack-test`. --no-lint
                                skips fmt and clippy; args after `--` go to cargo test.
  demo                          build, then run consentry (dev mode, SQLite) on :8787, the example MCP
                                server on :8788 and the Next.js example app on :3000; prints how to run
                                the example agent; Ctrl-C stops all of them
  e2e-test                      `sdk`, then tests/: the example agent (official MCP TypeScript SDK) against
                                consentry, the MCP server and the Next app, the user in Chromium
  bench [args...]               cargo run --release -p consentry-server --example bench -- [args...]
  bench-peer [args...]          side by side with node-oidc-provider through ../shared/bench
                                (crates/server/bench/peer.sh; needs node, npm, openssl)
  pg-smoke                      start a throwaway PostgreSQL, run `select 1` through psql, stop it
  sdk                           build the browser SDK (crates/wasm → packages/consentry/dist): installs
                                the wasm32 target, wasm-bindgen-cli (into .tools) and the package's
                                npm devDependencies (binaryen's wasm-opt, typescript, playwright)
  size                          `sdk`, then print raw/gzip/brotli bytes of consentry/headless and what
                                each crate contributes (twiggy, installed into .tools)
  sdk-test                      `sdk`, then type-check the package and run its Playwright tests in
                                Debian's Chromium against a real `consentry` server (apt-get if missing)
  wasm-test                     clippy (wasm32) and the wasm-bindgen tests of consentry-wasm and consentry-ui in headless
                                Chromium (wasm-bindgen-test-runner + chromedriver; apt-get if missing)
  sdk-pack-test                 `sdk`, then `npm pack` it, install the tarball into fresh Vite 8 and Next 16
                                apps (tests/packaging/apps), build them with no config (vite build, next
                                build, next build --webpack) and run a real flow in each, in Chromium
  leptos-app                    build examples/leptos-app (wasm32 + wasm-bindgen, its axum backend)
  leptos-test                   consentry-ui's Leptos components in Chromium, then examples/leptos-app end
                                to end (the example agent, consentry, the MCP server, the user in Chromium)
  publish-check                 cargo doc -D warnings and `cargo package` of the crates.io crates
  examples-test                 `sdk`, then `npm ci` (when its lockfile changed) in examples/nextjs-app and
                                examples/vite-headless, tsc, and their Playwright tests: production
                                builds, the real server, login + consent + code exchange in Chromium
";

// ---------------------------------------------------------------------------------------------
// Errors

/// The one error type: a message for the user. Failures of child processes have already printed
/// their own output, so the message only needs to say which step failed.
struct Error(String);

type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error(e.to_string())
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}

// ---------------------------------------------------------------------------------------------
// Entry point

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((cmd, rest)) => (cmd.as_str(), rest),
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        "test" => cmd_test(rest),
        "demo" => cmd_demo(rest),
        "bench" => cmd_bench(rest),
        "pg-smoke" => cmd_pg_smoke(rest),
        "sdk" => no_args("sdk", rest)
            .and_then(|()| step("build the browser SDK", build_sdk))
            .map(|()| ExitCode::SUCCESS),
        "size" => no_args("size", rest).and_then(|()| cmd_size()),
        "sdk-test" => no_args("sdk-test", rest).and_then(|()| {
            step("build the browser SDK", build_sdk)?;
            step("browser SDK tests (tsc, Playwright + Chromium)", test_sdk)?;
            Ok(ExitCode::SUCCESS)
        }),
        "sdk-pack-test" => no_args("sdk-pack-test", rest).and_then(|()| {
            step("build the browser SDK", build_sdk)?;
            step(SDK_PACK_STEP, test_sdk_packaging)?;
            Ok(ExitCode::SUCCESS)
        }),
        "examples-test" => no_args("examples-test", rest).and_then(|()| {
            step("build the browser SDK", build_sdk)?;
            step(EXAMPLES_TEST_STEP, test_examples)?;
            Ok(ExitCode::SUCCESS)
        }),
        "e2e-test" => no_args("e2e-test", rest).and_then(|()| {
            step("build the browser SDK", build_sdk)?;
            step(E2E_TEST_STEP, test_e2e)?;
            Ok(ExitCode::SUCCESS)
        }),
        "leptos-app" => no_args("leptos-app", rest).and_then(|()| leptos_app::cmd_build()),
        "leptos-test" => no_args("leptos-test", rest).and_then(|()| {
            step(leptos_app::COMPONENTS_STEP, leptos_app::test_components)?;
            step(leptos_app::E2E_STEP, leptos_app::test_e2e).map(|()| ExitCode::SUCCESS)
        }),
        "publish-check" => no_args("publish-check", rest).and_then(|()| publish::cmd_check()),
        "wasm-test" => no_args("wasm-test", rest).and_then(|()| {
            step(WASM_TEST_STEP, test_wasm_in_browser)?;
            Ok(ExitCode::SUCCESS)
        }),
        "bench-peer" => {
            let status = Command::new("bash")
                .arg("crates/server/bench/peer.sh")
                .args(rest)
                .status()
                .map_err(|e| spawn_error("bash", &e));
            status.map(exit_code)
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n");
            eprint!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// demo / bench: forward to cargo run, keep the child's exit code

const DEMO_CONSENTRY_PORT: u16 = 8787;
const DEMO_MCP_PORT: u16 = 8788;
const DEMO_APP_PORT: u16 = 3000;
const NEXT_APP: &str = "examples/nextjs-app";
const AGENT: &str = "examples/agent";
const MCP_SERVER_TS: &str = "examples/mcp-server-ts";
const E2E_DIR: &str = "tests";

/// Runs the demo's three processes, each in a process group of its own (`set -m`), and ends every
/// group on Ctrl-C, on SIGTERM and when any one of them exits. A shell because xtask is std-only
/// and `unsafe`-free: it cannot catch SIGINT itself, and the terminal's SIGINT reaches the shell.
const DEMO_SUPERVISOR: &str = r#"set -m
groups=""
stop() {
  trap - INT TERM EXIT
  for g in $groups; do kill -TERM -- "-$g" 2>/dev/null; done
  for _ in $(seq 50); do
    alive=""
    for g in $groups; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && return
    sleep 0.1
  done
  for g in $groups; do kill -KILL -- "-$g" 2>/dev/null; done
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT
"$CONSENTRY" dev --dir "$DEV_DIR" --port "$CONSENTRY_PORT" --app-origin "$APP_ORIGIN" --resource "$MCP_URL" >"$LOGS/consentry.log" 2>&1 &
groups="$groups $!"
# consentry dev writes the resource's introspection secret on first start: with it the MCP server
# checks revocation (a revoked agent stops at once, not when its token expires).
for _ in $(seq 100); do [ -s "$DEV_DIR/introspection_secret" ] && break; sleep 0.1; done
if [ -s "$DEV_DIR/introspection_secret" ]; then
  CONSENTRY_INTROSPECTION_SECRET="$(cat "$DEV_DIR/introspection_secret")"
  export CONSENTRY_INTROSPECTION_SECRET
fi
"$MCP_SERVER" --listen "127.0.0.1:$MCP_PORT" --issuer "$ISSUER" --resource "$MCP_URL" >"$LOGS/mcp-server.log" 2>&1 &
groups="$groups $!"
(cd "$APP_DIR" && exec node_modules/.bin/next start --hostname 127.0.0.1 --port "$APP_PORT") >"$LOGS/nextjs-app.log" 2>&1 &
groups="$groups $!"
wait -n
"#;

/// `cargo xtask demo`: build what the demo needs, then run consentry (dev mode, SQLite), the
/// example MCP server and the Next.js app together; Ctrl-C stops all three.
fn cmd_demo(rest: &[String]) -> Result<ExitCode> {
    no_args("demo", rest)?;
    let root = repo_root();
    for port in [DEMO_CONSENTRY_PORT, DEMO_MCP_PORT, DEMO_APP_PORT] {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return err(format!(
                "127.0.0.1:{port} is in use (the demo needs {DEMO_CONSENTRY_PORT}, {DEMO_MCP_PORT} and {DEMO_APP_PORT}); is a demo already running?"
            ));
        }
    }
    let (consentry, mcp_server) = step(
        "build consentry and the example MCP server",
        build_demo_binaries,
    )?;
    step("build the browser SDK", build_sdk)?;
    step("npm packages of the Next.js app and the agent", || {
        ensure_example_packages(&root.join(NEXT_APP))?;
        npm_ci_if_stale(&root.join(AGENT))
    })?;
    step(
        "production build of the Next.js app (when stale)",
        build_next_app,
    )?;

    let issuer = format!("http://127.0.0.1:{DEMO_CONSENTRY_PORT}");
    let mcp_url = format!("http://127.0.0.1:{DEMO_MCP_PORT}/mcp");
    let app_origin = format!("http://127.0.0.1:{DEMO_APP_PORT}");
    let dev_dir = root.join(".consentry-dev");
    let logs = dev_dir.join("logs");
    fs::create_dir_all(&logs)?;
    let mut supervisor = Command::new("bash")
        .args(["-c", DEMO_SUPERVISOR])
        .env("CONSENTRY", &consentry)
        .env("MCP_SERVER", &mcp_server)
        .env("DEV_DIR", &dev_dir)
        .env("LOGS", &logs)
        .env("APP_DIR", root.join(NEXT_APP))
        .env("CONSENTRY_PORT", DEMO_CONSENTRY_PORT.to_string())
        .env("MCP_PORT", DEMO_MCP_PORT.to_string())
        .env("APP_PORT", DEMO_APP_PORT.to_string())
        .env("ISSUER", &issuer)
        .env("MCP_URL", &mcp_url)
        .env("APP_ORIGIN", &app_origin)
        // The Next app's defaults match this layout; said explicitly so they cannot drift.
        .env("CONSENTRY_URL", &issuer)
        .env(
            "CONSENTRY_TAT_PRIVATE_KEY_FILE",
            dev_dir.join("tat_private.pem"),
        )
        .env("NEXT_TELEMETRY_DISABLED", "1")
        .spawn()
        .map_err(|e| spawn_error("bash", &e))?;

    eprintln!(
        "
==> starting consentry, the MCP server and the Next.js app (logs in {})",
        logs.display()
    );
    let ready = [
        ("consentry", DEMO_CONSENTRY_PORT, "/healthz"),
        (
            "MCP server",
            DEMO_MCP_PORT,
            "/.well-known/oauth-protected-resource/mcp",
        ),
        ("Next.js app", DEMO_APP_PORT, "/login"),
    ]
    .iter()
    .all(|(name, port, path)| {
        let up = wait_http_ok(*port, path, &mut supervisor);
        if !up {
            eprintln!("xtask: {name} did not start on 127.0.0.1:{port}");
        }
        up
    });
    if !ready {
        let _ = Command::new("kill")
            .arg(supervisor.id().to_string())
            .status();
        let _ = supervisor.wait();
        for log in ["consentry", "mcp-server", "nextjs-app"] {
            let text = fs::read_to_string(logs.join(format!("{log}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            eprintln!("--- {log}.log (last lines)");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        return err("the demo did not start");
    }
    println!(
        "
Consentry demo is running (Ctrl-C stops everything):

  Consentry (authorization server)  {issuer}        dev config, keys, SQLite: .consentry-dev/
  MCP server (notes)                {mcp_url}
  Product app (login, consent)      {app_origin}        sign in as alice / wonderland (or bob / builder)
  Connected apps (revoke access)    {app_origin}/settings/connected-apps

Next, in another terminal, run the agent (official MCP TypeScript SDK client):

  node examples/agent/agent.mjs --mcp-url {mcp_url}

It prints a consent URL: open it, sign in, Allow. It then lists your notes and adds one
(asking again for notes:write: step-up). Or point the MCP Inspector at {mcp_url}:
  npx @modelcontextprotocol/inspector

Logs: {logs}/{{consentry,mcp-server,nextjs-app}}.log",
        logs = logs.display()
    );
    let status = supervisor.wait()?;
    Ok(match status.code() {
        Some(0) | Some(130) | None => ExitCode::SUCCESS,
        Some(_) => {
            eprintln!(
                "xtask: a demo process exited; see the logs in {}",
                logs.display()
            );
            ExitCode::FAILURE
        }
    })
}

/// Poll `http://127.0.0.1:{port}{path}` (plain std HTTP/1.0) until it answers 200, for up to 60 s.
fn wait_http_ok(port: u16, path: &str, supervisor: &mut std::process::Child) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if matches!(supervisor.try_wait(), Ok(Some(_))) {
            return false;
        }
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
            let mut head = [0u8; 12];
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_exact(&mut head).is_ok()
                && head.ends_with(b" 200")
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Debug builds: the same binaries `cargo test --workspace` and the browser tests use.
fn build_demo_binaries() -> Result<(PathBuf, PathBuf)> {
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
fn build_debug(more: &[&str]) -> Result<PathBuf> {
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
fn debug_dir() -> PathBuf {
    let debug = target_dir().join("debug");
    if debug.is_absolute() {
        debug
    } else {
        repo_root().join(debug)
    }
}

/// Build the debug `consentry` binary (the one `cargo test --workspace` uses); its absolute path.
fn debug_server_binary() -> Result<PathBuf> {
    Ok(build_debug(&[])?.join("consentry"))
}

/// `next build` unless the build is newer than its sources (tests/global-setup.mjs decides, so
/// the demo and the end-to-end tests share one build).
fn build_next_app() -> Result<()> {
    run(Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            "await (await import('./tests/global-setup.mjs')).default()",
        ])
        .current_dir(repo_root()))
}

/// `npm ci` when node_modules is missing or older than package-lock.json.
fn npm_ci_if_stale(dir: &Path) -> Result<()> {
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

const E2E_TEST_STEP: &str = "end to end: the example agent (MCP TS SDK) x consentry x MCP server (Rust and TS) x Next app, in Chromium";

/// tests/: the whole demo for real (consentry dev, the MCP server binary, the Next app's
/// production build, reused when current) driven by examples/agent, the user in Chromium; and the
/// vite-headless example (consentry serve, its IdP, its build) with the same agent.
fn test_e2e() -> Result<()> {
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

/// The bench drives the release `consentry` binary, so build both, then run the example.
fn cmd_bench(rest: &[String]) -> Result<ExitCode> {
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
    if !built.success() {
        return Ok(exit_code(built));
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let bench = target.join("release").join("examples").join("bench");
    let status = Command::new(&bench)
        .args(rest)
        .status()
        .map_err(|e| spawn_error(&bench.display().to_string(), &e))?;
    Ok(exit_code(status))
}

// ---------------------------------------------------------------------------------------------
// test

fn cmd_test(args: &[String]) -> Result<ExitCode> {
    let mut lint = true;
    let mut test_args: Vec<String> = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--no-lint" => lint = false,
            "--" => {
                test_args.extend(iter.by_ref().cloned());
            }
            other => {
                return err(format!(
                    "unknown option `{other}` for `cargo xtask test` (pass cargo test arguments after `--`)"
                ));
            }
        }
    }

    let started = Instant::now();
    let result = run_tests(lint, &test_args);
    let elapsed = fmt_duration(started.elapsed());
    match result {
        Ok(()) => {
            eprintln!("\n==> all checks passed in {elapsed}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("\n==> FAILED after {elapsed}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_tests(lint: bool, test_args: &[String]) -> Result<()> {
    let root = repo_root();
    // `cargo xtask` is itself a `cargo run`, which writes Cargo.lock if it was missing, so the
    // check below is almost always true; it only matters when the lockfile cannot be written.
    let locked: &[&str] = if root.join("Cargo.lock").is_file() {
        &["--locked"]
    } else {
        &[]
    };

    if lint {
        step("cargo fmt --all -- --check", || {
            ensure_component("fmt", "rustfmt")?;
            run(cargo().args(["fmt", "--all", "--", "--check"]))
        })?;
        step(
            "cargo clippy --workspace --all-targets -- -D warnings",
            || {
                ensure_component("clippy", "clippy")?;
                run(cargo()
                    .args(["clippy", "--workspace", "--all-targets"])
                    .args(locked)
                    .args(["--", "-D", "warnings"]))
            },
        )?;
    } else {
        eprintln!("==> skipping fmt and clippy (--no-lint)");
    }

    step(
        &format!(
            "cargo check -p consentry-protocol -p consentry-core -p consentry-ui -p consentry-wasm --features consentry-wasm/ui --target {WASM_TARGET}"
        ),
        || {
            ensure_wasm_target()?;
            run(cargo()
                .args(["check", "-p", "consentry-protocol", "-p", "consentry-core"])
                .args(["-p", "consentry-ui", "-p", "consentry-wasm"])
                .args(["--features", "consentry-wasm/ui", "--target", WASM_TARGET])
                .args(locked))
        },
    )?;

    let cluster = step("start a throwaway PostgreSQL", start_cluster)?;
    let url = cluster.url();
    eprintln!("    CONSENTRY_TEST_POSTGRES_URL={url}");

    let tested = step("cargo test --workspace", || {
        run(cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(locked)
            .args(test_args)
            // The integration tests mostly wait on server processes they start: more threads
            // than cores shortens the run.
            .env(
                "RUST_TEST_THREADS",
                env::var("RUST_TEST_THREADS").unwrap_or_else(|_| "8".into()),
            )
            .env("CONSENTRY_TEST_POSTGRES_URL", &url)
            .env("CONSENTRY_REQUIRE_POSTGRES", "1"))
    });
    if tested.is_err() {
        cluster.print_log_tail(40);
    }
    step("stop PostgreSQL", || {
        drop(cluster);
        Ok(())
    })?;
    tested?;

    // The browser SDK last: it needs the server binary the Rust tests just built.
    step("build the browser SDK (cargo xtask sdk)", build_sdk)?;
    step("browser SDK tests (tsc, Playwright + Chromium)", test_sdk)?;
    step(WASM_TEST_STEP, test_wasm_in_browser)?;
    step(SDK_PACK_STEP, test_sdk_packaging)?;
    step(EXAMPLES_TEST_STEP, test_examples)?;
    step(E2E_TEST_STEP, test_e2e)?;
    step(leptos_app::COMPONENTS_STEP, leptos_app::test_components)?;
    step(leptos_app::E2E_STEP, leptos_app::test_e2e)?;
    step(publish::STEP, publish::check)
}

/// Print a step header, run it, and report how long it took or that it failed.
fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("\n==> {name}");
    let started = Instant::now();
    match f() {
        Ok(v) => {
            eprintln!("    ok ({})", fmt_duration(started.elapsed()));
            Ok(v)
        }
        Err(e) => Err(Error(format!("step `{name}` failed: {e}"))),
    }
}

/// Install a rustup component (rustfmt, clippy) if `cargo <sub> --version` does not work.
fn ensure_component(cargo_subcommand: &str, component: &str) -> Result<()> {
    if quiet_ok(cargo().args([cargo_subcommand, "--version"])) {
        return Ok(());
    }
    eprintln!("    `cargo {cargo_subcommand}` is missing: rustup component add {component}");
    run(Command::new("rustup").args(["component", "add", component]))
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| spawn_error("rustup", &e))?;
    if !out.status.success() {
        return err(format!(
            "`rustup target list --installed` failed ({})",
            out.status
        ));
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        eprintln!("    target {WASM_TARGET} already installed");
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

// ---------------------------------------------------------------------------------------------
// Browser SDK: crates/wasm → packages/consentry/dist

const SDK_PACKAGE: &str = "packages/consentry";
const SDK_CRATE: &str = "consentry-wasm";
const SDK_WASM: &str = "consentry_wasm";
const SDK_PROFILE: &str = "wasm-release";
/// Where `cargo xtask size` keeps an optimised copy that still has its function names.
const SDK_NAMED_DIR: &str = "target/sdk-size";

fn no_args(cmd: &str, args: &[String]) -> Result<()> {
    match args.first() {
        Some(other) => err(format!(
            "`cargo xtask {cmd}` takes no arguments (got `{other}`)"
        )),
        None => Ok(()),
    }
}

/// The two wasm builds of consentry-wasm: (cargo features, wasm-bindgen output name). The
/// headless one backs `consentry/headless`; the full one (Leptos UI + headless) backs `consentry`
/// and `consentry/react`, so a page never loads both.
const SDK_BUILDS: [(&str, &str); 2] = [("headless", SDK_WASM), ("ui", SDK_FULL_WASM)];
const SDK_FULL_WASM: &str = "consentry_full";
/// What `dist/` ships besides the wasm-bindgen output (copied from src/).
const SDK_SOURCES: [&str; 9] = [
    "sdk.js",
    "headless.js",
    "headless.d.ts",
    "index.js",
    "index.d.ts",
    "react.js",
    "react.d.ts",
    "server.js",
    "server.d.ts",
];

/// Set to build the SDK's wasm against the prebuilt std (no rust-src, no unstable flags): for a
/// toolchain where the flags in [`SMALL_STD`] no longer work. About 12 KB gzip bigger.
const PREBUILT_STD_ENV: &str = "CONSENTRY_SDK_PREBUILT_STD";

/// How the SDK's wasm gets its standard library: rebuilt from rust-src with `panic =
/// immediate-abort` and std's `optimize_for_size`, so that no panic message, `Location`, panic
/// hook or the `core::fmt` machinery they drag in is linked (-11.5 KB gzip on the UI wasm,
/// -7.4 KB on the headless one; the SDK never panics by design, and a panic in a wasm32 build
/// was already an abort with its message printed nowhere). These are nightly flags;
/// `RUSTC_BOOTSTRAP=1` lets the stable toolchain accept them for this one build, the way
/// Firefox and the Linux kernel build on stable rustc. Only the SDK's wasm builds use it: the
/// server, the tests and the wasm-bindgen tests build with the plain stable toolchain.
const SMALL_STD: SmallStd = SmallStd {
    cargo_args: &[
        "-Zbuild-std=std,panic_abort",
        "-Zbuild-std-features=optimize_for_size",
    ],
    rustflags: "-Zunstable-options -Cpanic=immediate-abort",
};

struct SmallStd {
    cargo_args: &'static [&'static str],
    rustflags: &'static str,
}

/// Whether the SDK build rebuilds std (see [`SMALL_STD`]); installs rust-src when missing.
fn small_std() -> Result<bool> {
    if env::var_os(PREBUILT_STD_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("    {PREBUILT_STD_ENV} set: linking the prebuilt std (bigger wasm)");
        return Ok(false);
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| spawn_error("rustc", &e))?;
    let library = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("lib/rustlib/src/rust/library");
    if !library.is_dir() {
        eprintln!(
            "    rust-src is missing (the SDK's wasm rebuilds std): rustup component add rust-src"
        );
        run(Command::new("rustup").args(["component", "add", "rust-src"]))?;
    }
    Ok(true)
}

/// Build one feature set of consentry-wasm; returns the built `.wasm`.
fn build_sdk_wasm(features: &str) -> Result<PathBuf> {
    let mut cmd = cargo();
    // `cargo rustc --crate-type cdylib`: the crate is also an rlib (for its wasm-bindgen tests),
    // and building both types defeats part of LTO (+10 KB raw, +4 KB gzip on the headless wasm).
    cmd.args([
        "rustc",
        "--crate-type",
        "cdylib",
        "--locked",
        "-p",
        SDK_CRATE,
        "--lib",
        "--target",
        WASM_TARGET,
        "--profile",
        SDK_PROFILE,
        "--no-default-features",
        "--features",
        features,
    ]);
    if small_std()? {
        cmd.args(SMALL_STD.cargo_args)
            .env("RUSTC_BOOTSTRAP", "1")
            // Target-scoped, so build scripts and proc macros (host) build as usual.
            .env(
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
                SMALL_STD.rustflags,
            );
    }
    run(&mut cmd)?;
    Ok(target_dir()
        .join(WASM_TARGET)
        .join(SDK_PROFILE)
        .join(format!("{SDK_WASM}.wasm")))
}

fn build_sdk() -> Result<()> {
    let root = repo_root();
    let package = root.join(SDK_PACKAGE);
    ensure_wasm_target()?;
    let wasm_bindgen = ensure_wasm_bindgen()?;
    ensure_npm_packages()?;

    // Built next to dist/ and swapped in whole: whoever packs or serves dist/ meanwhile (another
    // test run, `npm pack`) sees the old build or the new one, never half of one.
    let dist = package.join("dist");
    let staging = package.join(format!("dist.tmp-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    let wasm_dir = staging.join("wasm");
    for (features, name) in SDK_BUILDS {
        // Both feature sets write the same artifact: bind each before building the next.
        let built = build_sdk_wasm(features)?;
        bindgen_and_optimise(&wasm_bindgen, &built, &wasm_dir, name, false)?;
        let wasm_bytes = fs::metadata(wasm_dir.join(format!("{name}_bg.wasm")))?.len();
        eprintln!("    {name}: {wasm_bytes} bytes of wasm");
    }
    for file in SDK_SOURCES {
        let source = package.join("src").join(file);
        if source.is_file() {
            fs::copy(source, staging.join(file))?;
        }
    }
    let old = package.join(format!("dist.old-{}", std::process::id()));
    if dist.exists() {
        fs::rename(&dist, &old)?;
    }
    fs::rename(&staging, &dist)?;
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    eprintln!("    {} (sizes: cargo xtask size)", dist.display());
    Ok(())
}

/// wasm-bindgen --target web, then wasm-opt -Oz. `keep_names` keeps the name section (for size
/// analysis); the shipped build drops it (~130 KB raw).
fn bindgen_and_optimise(
    wasm_bindgen: &Path,
    built: &Path,
    out_dir: &Path,
    out_name: &str,
    keep_names: bool,
) -> Result<()> {
    let mut bindgen = Command::new(wasm_bindgen);
    bindgen
        .arg(built)
        .args(["--target", "web", "--no-typescript", "--out-name", out_name])
        .args(["--out-dir"])
        .arg(out_dir);
    if !keep_names {
        bindgen.args(["--remove-name-section", "--remove-producers-section"]);
    }
    run(&mut bindgen)?;
    let wasm = out_dir.join(format!("{out_name}_bg.wasm"));
    let wasm_opt = repo_root()
        .join(SDK_PACKAGE)
        .join("node_modules/.bin/wasm-opt");
    let mut opt = Command::new(&wasm_opt);
    // `--low-memory-unused`: rustc's layout puts the stack first and data at 1 MiB, so the low
    // 1 KiB is never addressed and binaryen may fold constant offsets into loads and stores.
    // -Oz twice: the second round finds more after the first (≈ 0.5 KB gzip on the full wasm).
    opt.args(["--low-memory-unused", "-Oz", "-Oz"])
        // The features rustc enables by default for wasm32-unknown-unknown.
        .args([
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
        ])
        .arg(&wasm)
        .arg("-o")
        .arg(&wasm);
    if keep_names {
        opt.arg("--debuginfo");
    } else {
        opt.arg("--strip-debug").arg("--strip-producers");
    }
    run(&mut opt)
}

/// The version of the `wasm-bindgen` crate in Cargo.lock: the CLI must be exactly the same.
fn locked_wasm_bindgen_version() -> Result<String> {
    let lock = fs::read_to_string(repo_root().join("Cargo.lock"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\""
            && let Some(v) = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|l| l.strip_suffix('"'))
        {
            return Ok(v.to_owned());
        }
    }
    err("no wasm-bindgen in Cargo.lock")
}

/// `.tools/bin/wasm-bindgen` at the locked version, installed with cargo if missing. Not
/// `--locked`: the CLI's lockfile pins crates the registry mirror lacks.
fn ensure_wasm_bindgen() -> Result<PathBuf> {
    let version = locked_wasm_bindgen_version()?;
    let tools = repo_root().join(".tools");
    let bin = tools.join("bin").join("wasm-bindgen");
    let installed = Command::new(&bin).arg("--version").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).trim() == format!("wasm-bindgen {version}")
    });
    if installed {
        eprintln!("    wasm-bindgen {version} already in {}", tools.display());
        return Ok(bin);
    }
    eprintln!(
        "    installing wasm-bindgen-cli {version} into {} (a few minutes, once)",
        tools.display()
    );
    run(cargo()
        .args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &version,
            "--root",
        ])
        .arg(&tools))?;
    Ok(bin)
}

/// The package's devDependencies in its own node_modules (`--workspaces=false`: the root
/// package.json declares workspaces, which would otherwise hoist them to /node_modules).
fn ensure_npm_packages() -> Result<()> {
    let package = repo_root().join(SDK_PACKAGE);
    let modules = package.join("node_modules");
    let lock = package.join("package-lock.json");
    let installed_lock = modules.join(".package-lock.json");
    let fresh = match (fs::metadata(&lock), fs::metadata(&installed_lock)) {
        (Ok(l), Ok(i)) => match (l.modified(), i.modified()) {
            (Ok(l), Ok(i)) => i >= l,
            _ => false,
        },
        _ => false,
    };
    let tools_present = ["wasm-opt", "tsc", "playwright", "esbuild"]
        .iter()
        .all(|b| modules.join(".bin").join(b).exists());
    if fresh && tools_present {
        eprintln!("    npm devDependencies already installed");
        return Ok(());
    }
    if find_in_path("npm").is_none() {
        return err("npm not found: install Node.js 20+ (with npm) first");
    }
    run(Command::new("npm")
        .args(["ci", "--workspaces=false", "--no-audit", "--no-fund"])
        .current_dir(&package)
        // Playwright drives Debian's Chromium; its own browser downloads fail here.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
}

fn ensure_chromium() -> Result<PathBuf> {
    ensure_debian_binary("/usr/bin/chromium", &["chromium"])
}

/// `binary`, installed with apt-get from Debian's `packages` when it is missing (as root only).
fn ensure_debian_binary(binary: &str, packages: &[&str]) -> Result<PathBuf> {
    let path = PathBuf::from(binary);
    if path.is_file() {
        return Ok(path);
    }
    let packages = packages.join(" ");
    if !is_root()? {
        return err(format!(
            "{binary} not found: sudo apt-get install -y {packages}"
        ));
    }
    eprintln!("    {binary} not found: installing {packages} with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y"])
        .args(packages.split(' '))
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(path)
}

/// tsc on the package's usage file, then Playwright in Chromium against the real server.
fn test_sdk() -> Result<()> {
    let package = repo_root().join(SDK_PACKAGE);
    let chromium = ensure_chromium()?;
    let server = debug_server_binary()?;
    run(Command::new(package.join("node_modules/.bin/tsc"))
        .args(["-p", "tests/tsconfig.json"])
        .current_dir(&package))?;
    // consentry/server (plain JS over jose, no browser) against the real server, in Node.
    run(Command::new("node")
        .args(["--test", "tests/server/"])
        .current_dir(&package)
        .env("CONSENTRY_BIN", &server))?;
    run(Command::new(package.join("node_modules/.bin/playwright"))
        .args(["test", "-c", "tests/playwright.config.mjs"])
        .current_dir(&package)
        .env("CONSENTRY_BIN", &server)
        .env("CHROMIUM_PATH", &chromium))
}

const WASM_TEST_STEP: &str = "consentry-wasm's wasm-bindgen tests in headless Chromium";

/// crates/wasm/tests/*.rs in headless Chromium: wasm-bindgen-test-runner (installed with the
/// wasm-bindgen CLI, same version) as the cargo runner, driving Debian's chromium through
/// chromedriver. Clippy on the wasm32 build of the tests first: the workspace clippy is native only.
fn test_wasm_in_browser() -> Result<()> {
    ensure_wasm_target()?;
    let runner = ensure_wasm_bindgen()?.with_file_name("wasm-bindgen-test-runner");
    if !runner.is_file() {
        return err(format!(
            "{} is missing: remove .tools/bin/wasm-bindgen to reinstall wasm-bindgen-cli",
            runner.display()
        ));
    }
    ensure_chromium()?;
    let chromedriver = ensure_chromedriver()?;
    run(cargo()
        .args([
            "clippy",
            "--locked",
            "-p",
            SDK_CRATE,
            "-p",
            "consentry-ui",
            "--all-targets",
        ])
        .args(["--features", "consentry-wasm/ui"])
        .args(["--target", WASM_TARGET, "--", "-D", "warnings"]))?;
    run(cargo()
        .args(["test", "--locked", "-p", SDK_CRATE, "-p", "consentry-ui"])
        .args(["--target", WASM_TARGET])
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", &runner)
        .env("CHROMEDRIVER", &chromedriver))
}

const SDK_PACK_STEP: &str = "packaging: npm pack -> fresh Vite and Next 16 apps -> Chromium";

/// The packed package as consumers get it (packages/consentry/tests/packaging): the Playwright
/// globalSetup packs dist/ and installs the tarball into apps kept in a temp dir (node_modules
/// reused while nothing changed); each test builds an app, serves it and runs a flow against the
/// real server. Needs `build_sdk` first.
fn test_sdk_packaging() -> Result<()> {
    let package = repo_root().join(SDK_PACKAGE);
    let chromium = ensure_chromium()?;
    ensure_npm_packages()?;
    let server = debug_server_binary()?;
    run(Command::new(package.join("node_modules/.bin/playwright"))
        .args(["test", "-c", "tests/packaging/playwright.config.mjs"])
        .current_dir(&package)
        .env("CONSENTRY_BIN", &server)
        .env("CHROMIUM_PATH", &chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
}

const EXAMPLES_TEST_STEP: &str =
    "examples: nextjs-app and vite-headless (built, in Chromium), mcp-server-ts (node:test)";
const EXAMPLES: [&str; 2] = ["examples/nextjs-app", "examples/vite-headless"];

/// The example apps (standalone npm projects, each with its lockfile and its own Playwright spec):
/// install, type-check, then each spec builds its app for production and runs the whole flow
/// against the real server. Needs `build_sdk` first: the apps install the SDK as a copy of its
/// packed files (`install-links` in their .npmrc), refreshed here when dist/ changed.
fn test_examples() -> Result<()> {
    let chromium = ensure_chromium()?;
    let server = debug_server_binary()?;
    for example in EXAMPLES {
        let dir = repo_root().join(example);
        ensure_example_packages(&dir)?;
        run(Command::new(dir.join("node_modules/.bin/tsc"))
            .arg("--noEmit")
            .current_dir(&dir))?;
        run(Command::new(dir.join("node_modules/.bin/playwright"))
            .arg("test")
            .current_dir(&dir)
            .env("CONSENTRY_BIN", &server)
            .env("CHROMIUM_PATH", &chromium)
            .env("NEXT_TELEMETRY_DISABLED", "1"))?;
    }
    // The JavaScript MCP server (consentry/server + the official MCP SDK): node:test, no browser.
    let dir = repo_root().join(MCP_SERVER_TS);
    ensure_example_packages(&dir)?;
    run(Command::new("node")
        .args(["--test", "test/"])
        .current_dir(&dir)
        .env("CONSENTRY_BIN", &server))
}

/// `npm ci` when node_modules is missing or older than package-lock.json; otherwise only the SDK
/// copy is replaced, and only when it differs from packages/consentry (a rebuilt dist/).
fn ensure_example_packages(dir: &Path) -> Result<()> {
    let modules = dir.join("node_modules");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (
        modified(&dir.join("package-lock.json")),
        modified(&modules.join(".package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => installed >= lock,
        _ => false,
    };
    let npm = |args: &[&str]| {
        run(Command::new("npm")
            .args(args)
            .args(["--no-audit", "--no-fund"])
            .current_dir(dir)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
    };
    if !fresh {
        if find_in_path("npm").is_none() {
            return err("npm not found: install Node.js 20+ (with npm) first");
        }
        return npm(&["ci"]);
    }
    let installed = modules.join("consentry");
    if same_sdk_files(&repo_root().join(SDK_PACKAGE), &installed) {
        eprintln!(
            "    {}: npm packages and the SDK copy are current",
            dir.display()
        );
        return Ok(());
    }
    eprintln!(
        "    {}: the SDK was rebuilt, reinstalling its copy",
        dir.display()
    );
    // Twice: on a shared checkout another build may be rewriting dist/ while npm packs it.
    for _ in 0..2 {
        fs::remove_dir_all(&installed)?;
        npm(&["install", "--no-save", "--prefer-offline"])?;
        if same_sdk_files(&repo_root().join(SDK_PACKAGE), &installed) {
            return Ok(());
        }
    }
    err(format!(
        "{} differs from {SDK_PACKAGE} after reinstalling (is another build rewriting dist/?)",
        installed.display()
    ))
}

/// Are the installed SDK files (package.json, dist/**) those of the source, both ways (every
/// .js, .d.ts and .wasm of the source's dist/ is installed, every installed file is the source's)?
fn same_sdk_files(source: &Path, installed: &Path) -> bool {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut built = Vec::new();
    files(&source.join("dist"), &mut built);
    let shipped = |f: &&PathBuf| {
        let name = f.to_string_lossy();
        [".js", ".d.ts", ".wasm"].iter().any(|e| name.ends_with(e))
    };
    let all_installed = built.iter().filter(shipped).all(|f| {
        f.strip_prefix(source)
            .is_ok_and(|rel| installed.join(rel).is_file())
    });
    let mut copied = vec![installed.join("package.json")];
    files(&installed.join("dist"), &mut copied);
    all_installed
        && copied.len() > 1
        && copied.iter().all(|f| {
            let Ok(rel) = f.strip_prefix(installed) else {
                return false;
            };
            matches!((fs::read(f), fs::read(source.join(rel))), (Ok(a), Ok(b)) if a == b)
        })
}

/// Debian's chromedriver (package chromium-driver, the same version as its chromium).
fn ensure_chromedriver() -> Result<PathBuf> {
    ensure_debian_binary("/usr/bin/chromedriver", &["chromium", "chromium-driver"])
}

fn cmd_size() -> Result<ExitCode> {
    step("build the browser SDK", build_sdk)?;
    step("an optimised copy with function names, and twiggy", || {
        let tools = repo_root().join(".tools");
        let twiggy = tools.join("bin").join("twiggy");
        if !twiggy.is_file() {
            eprintln!("    installing twiggy into {} (once)", tools.display());
            run(cargo().args(["install", "twiggy", "--root"]).arg(&tools))?;
        }
        for (features, name) in SDK_BUILDS {
            let built = build_sdk_wasm(features)?;
            bindgen_and_optimise(
                &ensure_wasm_bindgen()?,
                &built,
                &repo_root().join(SDK_NAMED_DIR),
                name,
                true,
            )?;
        }
        Ok(())
    })?;
    let status = Command::new("node")
        .arg(repo_root().join(SDK_PACKAGE).join("scripts/size.mjs"))
        .current_dir(repo_root())
        .status()
        .map_err(|e| spawn_error("node", &e))?;
    Ok(exit_code(status))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

// ---------------------------------------------------------------------------------------------
// pg-smoke

fn cmd_pg_smoke(args: &[String]) -> Result<ExitCode> {
    if let Some(other) = args.first() {
        return err(format!(
            "`cargo xtask pg-smoke` takes no arguments (got `{other}`)"
        ));
    }
    let cluster = step("start a throwaway PostgreSQL", start_cluster)?;
    let url = cluster.url();
    eprintln!("    URL: {url}");
    let psql = cluster.bin_dir.join("psql");
    let psql = if psql.is_file() {
        psql
    } else {
        PathBuf::from("psql")
    };
    let queried = step("psql -c 'select 1'", || {
        run(Command::new(&psql)
            .arg(&url)
            .args(["-v", "ON_ERROR_STOP=1", "-c", "select 1"]))
    });
    let dir = cluster.dir.clone();
    step("stop PostgreSQL", || {
        drop(cluster);
        if dir.exists() {
            return err(format!("{} still exists", dir.display()));
        }
        Ok(())
    })?;
    queried.map(|()| ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Throwaway PostgreSQL cluster

/// A running throwaway cluster. Dropping it stops the server (`pg_ctl stop -m immediate`) and
/// deletes its directory, whichever way the caller leaves (error, `?`, normal return).
struct PgCluster {
    /// Everything lives here: `data/` (PGDATA), the unix socket, `postgres.log`.
    dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    /// Run initdb/pg_ctl as the `postgres` OS user (postgres refuses to run as root).
    as_postgres: bool,
    started: bool,
}

impl PgCluster {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_command(&self, binary: &str) -> Command {
        pg_command(&self.bin_dir.join(binary), self.as_postgres, &self.dir)
    }

    fn print_log_tail(&self, lines: usize) {
        if let Ok(log) = fs::read_to_string(self.log_file()) {
            let all: Vec<&str> = log.lines().collect();
            let from = all.len().saturating_sub(lines);
            eprintln!("---- last lines of {} ----", self.log_file().display());
            for line in &all[from..] {
                eprintln!("{line}");
            }
            eprintln!("----");
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.started || self.data_dir().join("postmaster.pid").exists() {
            // No `-w`: pg_ctl would wait until the postmaster's PID is gone, and an exited
            // postmaster can linger as a zombie until a slow init reaps it (seen: 1m45s). Its
            // postmaster.pid file goes away when it exits, which is what we wait for.
            let stopped = quiet_ok(
                self.pg_command("pg_ctl")
                    .arg("-D")
                    .arg(self.data_dir())
                    .args(["-m", "immediate", "-W", "stop"]),
            );
            let pid_file = self.data_dir().join("postmaster.pid");
            let deadline = Instant::now() + Duration::from_secs(15);
            while pid_file.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !stopped {
                eprintln!(
                    "xtask: warning: `pg_ctl stop` failed for {}",
                    self.data_dir().display()
                );
            }
        }
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                eprintln!(
                    "xtask: warning: could not delete {}: {e}",
                    self.dir.display()
                );
            }
            _ => {}
        }
    }
}

fn start_cluster() -> Result<PgCluster> {
    let root = is_root()?;
    let bin_dir = match find_pg_bin_dir() {
        Some(dir) => dir,
        None => {
            install_postgres(root)?;
            match find_pg_bin_dir() {
                Some(dir) => dir,
                None => {
                    return err(format!(
                        "installed postgresql, but found no {} under {PG_ROOT}/*/bin",
                        PG_BINARIES.join(", ")
                    ));
                }
            }
        }
    };
    eprintln!("    server binaries: {}", bin_dir.display());
    if root && !user_exists(PG_OS_USER) {
        return err(format!(
            "running as root, but there is no `{PG_OS_USER}` OS user to run the server as \
             (postgres refuses to run as root); `apt-get install postgresql` creates it"
        ));
    }

    remove_stale_clusters(&bin_dir, root);

    let dir = env::temp_dir().join(format!("{PG_DIR_PREFIX}{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    // From here on the guard owns the directory: any early return deletes it.
    let mut cluster = PgCluster {
        dir,
        bin_dir,
        port: 0,
        as_postgres: root,
        started: false,
    };

    if root {
        run_quiet(Command::new("chown").arg(PG_OS_USER).arg(&cluster.dir))?;
        if !quiet_ok(runas_postgres("test", &["-w"]).arg(&cluster.dir)) {
            return err(format!(
                "the `{PG_OS_USER}` user cannot write to {} (is a parent directory private? \
                 set TMPDIR to somewhere like /tmp)",
                cluster.dir.display()
            ));
        }
    }

    run_quiet(
        cluster
            .pg_command("initdb")
            .arg("-D")
            .arg(cluster.data_dir())
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]),
    )
    .map_err(|e| Error(format!("initdb: {e}")))?;

    // Pick a free port by letting the kernel choose one; another process could grab it between
    // our probe and the server's bind, so retry a few times with a fresh port.
    let mut last_error = Error("no attempt".to_owned());
    for attempt in 1..=3 {
        cluster.port = free_port()?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            cluster.port,
            // pg_ctl hands these options to a shell.
            shell_quote(&cluster.dir.to_string_lossy())
        );
        let started = run_quiet(
            cluster
                .pg_command("pg_ctl")
                .arg("-D")
                .arg(cluster.data_dir())
                .arg("-o")
                .arg(&options)
                .args(["-w", "-t", "60", "-l"])
                .arg(cluster.log_file())
                .arg("start"),
        );
        match started {
            Ok(()) => {
                cluster.started = true;
                eprintln!(
                    "    listening on 127.0.0.1:{} ({})",
                    cluster.port,
                    cluster.dir.display()
                );
                return Ok(cluster);
            }
            Err(e) => {
                eprintln!("    pg_ctl start failed (attempt {attempt}/3): {e}");
                cluster.print_log_tail(20);
                // A half-started postmaster would keep the data dir locked.
                if cluster.data_dir().join("postmaster.pid").exists() {
                    let _ = quiet_ok(
                        cluster
                            .pg_command("pg_ctl")
                            .arg("-D")
                            .arg(cluster.data_dir())
                            .args(["-m", "immediate", "-w", "stop"]),
                    );
                }
                last_error = e;
            }
        }
    }
    Err(Error(format!("could not start PostgreSQL: {last_error}")))
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding initdb, pg_ctl and postgres; failing
/// that, a directory on PATH holding all three (other distributions, hand-made installs).
fn find_pg_bin_dir() -> Option<PathBuf> {
    let has_all = |dir: &Path| PG_BINARIES.iter().all(|b| dir.join(b).is_file());
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(PG_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            let bin = entry.path().join("bin");
            match version {
                Some(v) if has_all(&bin) => Some((v, bin)),
                _ => None,
            }
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    env::var_os("PATH").and_then(|path| {
        env::split_paths(&path).find(|dir| has_all(dir)).map(|dir| {
            // Resolve symlinks (e.g. /usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl)
            // so that psql etc. are found next to the server binaries.
            fs::canonicalize(dir.join("pg_ctl"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .filter(|d| has_all(d))
                .unwrap_or(dir)
        })
    })
}

fn install_postgres(root: bool) -> Result<()> {
    if !root {
        return err(format!(
            "PostgreSQL server binaries ({}) not found under {PG_ROOT}/*/bin.\n\
             Install them first, e.g.: sudo apt-get install -y postgresql\n\
             (as root, `cargo xtask test` installs them itself)",
            PG_BINARIES.join(", ")
        ));
    }
    eprintln!("    PostgreSQL server not found under {PG_ROOT}: installing it with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Clusters left behind by an xtask that was killed (Ctrl-C skips destructors, and pg_ctl
/// detaches the server from the terminal): stop them and delete their directories.
fn remove_stale_clusters(bin_dir: &Path, root: bool) {
    let Ok(entries) = fs::read_dir(env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PG_DIR_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || xtask_is_running(pid) {
            continue;
        }
        let dir = entry.path();
        eprintln!("    removing stale cluster {}", dir.display());
        let data = dir.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = quiet_ok(
                pg_command(&bin_dir.join("pg_ctl"), root, &dir)
                    .arg("-D")
                    .arg(&data)
                    .args(["-m", "immediate", "-w", "stop"]),
            );
        }
        if let Err(e) = fs::remove_dir_all(&dir) {
            eprintln!("xtask: warning: could not delete {}: {e}", dir.display());
        }
    }
}

fn xtask_is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "xtask")
}

/// A PostgreSQL binary, run as the `postgres` OS user when `as_postgres`, with `cwd` as the
/// working directory (initdb complains when it cannot enter the inherited one).
fn pg_command(binary: &Path, as_postgres: bool, cwd: &Path) -> Command {
    let binary = binary.as_os_str().to_string_lossy();
    let mut cmd = if as_postgres {
        runas_postgres(&binary, &[])
    } else {
        Command::new(&*binary)
    };
    cmd.current_dir(cwd);
    cmd
}

/// `runuser -u postgres -- program args...`, or, where util-linux's runuser is missing,
/// `su -s /bin/sh -c 'exec "$0" "$@"' postgres -- program args...` (su hands the arguments after
/// the user to the shell as $0, $1, ...; no quoting needed). Arguments added to the returned
/// Command go to `program` either way.
fn runas_postgres(program: &str, args: &[&str]) -> Command {
    let mut cmd = if let Some(runuser) = find_in_path("runuser") {
        let mut cmd = Command::new(runuser);
        cmd.args(["-u", PG_OS_USER, "--", program]);
        cmd
    } else {
        let mut cmd = Command::new("su");
        cmd.args([
            "-s",
            "/bin/sh",
            "-c",
            r#"exec "$0" "$@""#,
            PG_OS_USER,
            "--",
            program,
        ]);
        cmd
    };
    cmd.args(args);
    cmd
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| spawn_error("id", &e))?;
    if !out.status.success() {
        return err("`id -u` failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn user_exists(user: &str) -> bool {
    quiet_ok(Command::new("id").arg("-u").arg(user))
}

// ---------------------------------------------------------------------------------------------
// Process helpers

fn repo_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir
        .parent()
        .map_or_else(|| xtask_dir.to_path_buf(), Path::to_path_buf)
}

/// `cargo` — the one that is running us (same toolchain), in the repository root.
fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root());
    cmd
}

/// Run with inherited stdio; error if it cannot start or exits unsuccessfully.
fn run(cmd: &mut Command) -> Result<()> {
    let program = program_name(cmd);
    let status = cmd.status().map_err(|e| spawn_error(&program, &e))?;
    check_status(&program, status)
}

/// Run with captured output, printed only when the command fails.
fn run_quiet(cmd: &mut Command) -> Result<()> {
    let program = describe(cmd);
    let out = cmd.output().map_err(|e| spawn_error(&program, &e))?;
    if out.status.success() {
        return Ok(());
    }
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    check_status(&program, out.status)
}

/// True if the command ran and exited successfully; its output is discarded.
fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|out| out.status.success())
}

fn check_status(program: &str, status: ExitStatus) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        err(format!("`{program}` exited with {status}"))
    }
}

/// `cargo` rather than `/root/.rustup/toolchains/<toolchain>/bin/cargo`.
fn program_name(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned()
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

fn spawn_error(program: &str, e: &io::Error) -> Error {
    Error(format!("could not run `{program}`: {e}"))
}

/// The child's exit code, or 128 + signal number like a shell, for our own exit code.
fn exit_code(status: ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

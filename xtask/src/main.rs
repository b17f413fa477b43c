//! Project automation for Consentry. Run through the alias in `.cargo/config.toml`:
//!
//! ```text
//! cargo xtask test [--no-lint] [-- <cargo test args>]   every check CI runs
//! cargo xtask demo                                     consentry + MCP server + Next app, Ctrl-C stops all
//! cargo xtask bench [args...]                          the load benchmark
//! cargo xtask faults [--soak-minutes N]                 the long fault tests (crash, outage, full disk, slow hosts, soak)
//! cargo xtask fuzz [--minutes N] [--cases N]           every fuzz target, long
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
//! cargo xtask dist [--glibc]                           release artifacts in dist/ (server archive, npm tarball, sums)
//! ```
//!
//! std only, on purpose: this must build in seconds on a fresh machine.

mod bench;
mod browser;
mod builds;
mod demo;
mod dist;
mod faults;
mod leptos_app;
mod postgres;
mod process;
mod publish;
mod sdk;
mod test;

pub(crate) use bench::*;
pub(crate) use browser::*;
pub(crate) use builds::*;
pub(crate) use demo::*;
pub(crate) use postgres::*;
pub(crate) use process::*;
pub(crate) use sdk::*;
pub(crate) use test::*;

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

pub(crate) const WASM_TARGET: &str = "wasm32-unknown-unknown";
pub(crate) const PG_ROOT: &str = "/usr/lib/postgresql";
pub(crate) const PG_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
pub(crate) const PG_OS_USER: &str = "postgres";
pub(crate) const PG_DIR_PREFIX: &str = "consentry-pg-";

pub(crate) const USAGE: &str = "\
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
  bench [args...]               the Rust load driver (crates/server/examples/bench.rs) against the release
                                server: code flow, refresh, introspection, registration (--help)
  bench-peer [args...]          the same driver against Consentry and node-oidc-provider (../shared/bench,
                                npm ci into target/peer-bench) in one run, with ratios; `bench-peer --node
                                [args...]`: the shared Node driver instead (crates/server/bench/peer.sh)
  seed [args...]                fill a SQLite or PostgreSQL store with users, grants, refresh tokens and
                                clients (crates/server/examples/seed.rs; --help)
  pg-smoke                      start a throwaway PostgreSQL, run `select 1` through psql, stop it
  sdk                           build the browser SDK (crates/wasm → packages/consentry/dist): installs
                                the wasm32 target, wasm-bindgen-cli (into .tools) and the package's
                                npm devDependencies (binaryen's wasm-opt, typescript, playwright)
  size                          `sdk`, then print raw/gzip/brotli bytes of consentry/headless and what
                                each crate contributes (twiggy, installed into .tools), and the size of
                                the CONSENTRY_SDK_PREBUILT_STD fallback
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
  dist [--glibc]                release artifacts in dist/: consentry-<version>-x86_64-unknown-linux-musl.tar.gz
                                (static server binary; --glibc: a glibc build named after the oldest glibc it
                                needs), consentry-<version>.tgz (npm pack), SHA256SUMS; then unpacks and installs
                                them into scratch directories and runs a flow in Chromium (tests/standalone)
  examples-test                 `sdk`, then `npm ci` (when its lockfile changed) in examples/nextjs-app and
                                examples/vite-headless, tsc, and their Playwright tests: production
                                builds, the real server, login + consent + code exchange in Chromium
";

// ---------------------------------------------------------------------------------------------
// Errors

/// The one error type: a message for the user. Failures of child processes have already printed
/// their own output, so the message only needs to say which step failed.
pub(crate) struct Error(String);

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

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

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}

// ---------------------------------------------------------------------------------------------
// Entry point

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((cmd, rest)) => (cmd.as_str(), rest),
        None => {
            eprint!("{USAGE}{}", faults::FAULTS_USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        "test" => cmd_test(rest),
        "demo" => cmd_demo(rest),
        "bench" => cmd_bench(rest),
        "pg-smoke" => cmd_pg_smoke(rest),
        "faults" => faults::cmd_faults(rest),
        "fuzz" => faults::cmd_fuzz(rest),
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
        "dist" => dist::cmd_dist(rest),
        "wasm-test" => no_args("wasm-test", rest).and_then(|()| {
            step(WASM_TEST_STEP, test_wasm_in_browser)?;
            Ok(ExitCode::SUCCESS)
        }),
        "bench-peer" => cmd_bench_peer(rest),
        "seed" => cmd_seed(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}{}", faults::FAULTS_USAGE);
            Ok(ExitCode::SUCCESS)
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n");
            eprint!("{USAGE}{}", faults::FAULTS_USAGE);
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

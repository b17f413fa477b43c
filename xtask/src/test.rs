//! `cargo xtask test`: every check CI runs, in order.

use crate::*;

pub(crate) fn cmd_test(args: &[String]) -> Result<ExitCode> {
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

pub(crate) fn run_tests(lint: bool, test_args: &[String]) -> Result<()> {
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
    // `cargo test` built the examples: one short pass of the load driver over every phase
    // (debug build, SQLite, ~15 s) proves it still runs and its checks (JWKS, rotation, reuse,
    // introspection, registration) still pass; it exits non-zero on an INVALID phase.
    let smoked = tested.as_ref().map_or(Ok(()), |_| {
        step("load driver smoke (examples/bench, 1 s per phase)", || {
            run(
                Command::new(target_dir().join("debug").join("examples").join("bench")).args([
                    "--seconds",
                    "1",
                    "--warmup",
                    "0.5",
                    "--concurrency",
                    "4",
                ]),
            )
        })
    });
    step("stop PostgreSQL", || {
        drop(cluster);
        Ok(())
    })?;
    tested?;
    smoked?;

    // The browser SDK last: it needs the server binary the Rust tests just built.
    step("build the browser SDK (cargo xtask sdk)", build_sdk)?;
    step(PREBUILT_STD_STEP, check_prebuilt_std_fallback)?;
    step("browser SDK tests (tsc, Playwright + Chromium)", test_sdk)?;
    step(WASM_TEST_STEP, test_wasm_in_browser)?;
    step(SDK_PACK_STEP, test_sdk_packaging)?;
    step(EXAMPLES_TEST_STEP, test_examples)?;
    step(E2E_TEST_STEP, test_e2e)?;
    step(
        crate::leptos_app::COMPONENTS_STEP,
        crate::leptos_app::test_components,
    )?;
    step(crate::leptos_app::E2E_STEP, crate::leptos_app::test_e2e)?;
    step(crate::publish::STEP, crate::publish::check)
}

/// Print a step header, run it, and report how long it took or that it failed.
pub(crate) fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
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
pub(crate) fn ensure_component(cargo_subcommand: &str, component: &str) -> Result<()> {
    if quiet_ok(cargo().args([cargo_subcommand, "--version"])) {
        return Ok(());
    }
    eprintln!("    `cargo {cargo_subcommand}` is missing: rustup component add {component}");
    run(Command::new("rustup").args(["component", "add", component]))
}

pub(crate) fn ensure_wasm_target() -> Result<()> {
    ensure_target(WASM_TARGET)
}

/// `rustup target add target` unless it is installed.
pub(crate) fn ensure_target(target: &str) -> Result<()> {
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
        .any(|l| l.trim() == target)
    {
        eprintln!("    target {target} already installed");
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", target]))
}

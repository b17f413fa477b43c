//! `cargo xtask faults` (the long fault tests: crashes, database outages, a full disk, slow
//! hosts, a soak) and `cargo xtask fuzz` (every fuzz target, long). Their short versions run in
//! `cargo test --workspace`, so in `cargo xtask test`.

use crate::*;

pub(crate) const FAULTS_USAGE: &str = "\
  faults [--soak-minutes N]     the fault tests, long: kill -9 under load (SQLite, PostgreSQL), PostgreSQL
                                stopped/restarted under load, SQLite on a full tmpfs, slow JWKS/CIMD
                                hosts, then a soak of N minutes (default 10) at 80 % of the measured
                                maximum; against a throwaway PostgreSQL
  fuzz [--minutes N] [--cases N] [--seed S]
                                every fuzz target (crates/server/src/fuzz.rs, crates/resource/src/fuzz.rs),
                                two at a time, each until --cases inputs (default 1000000) or N minutes
                                (default 8), whichever comes first; --seed replays a run
";

pub(crate) fn cmd_faults(args: &[String]) -> Result<ExitCode> {
    let mut soak_minutes: u64 = 10;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--soak-minutes" => soak_minutes = number(it.next(), "--soak-minutes")?,
            other => return err(format!("unknown option `{other}` for `cargo xtask faults`")),
        }
    }
    let started = Instant::now();
    let cluster = step("start a throwaway PostgreSQL", start_cluster)?;
    let url = cluster.url();
    let tested = step("fault tests, long (cargo test --test faults)", || {
        run(cargo()
            .args(["test", "-p", "consentry-server", "--test", "faults"])
            .args(["--", "--test-threads", "1", "--nocapture"])
            .env("CONSENTRY_FAULTS", "long")
            .env("CONSENTRY_SOAK_SECONDS", (soak_minutes * 60).to_string())
            .env("CONSENTRY_TEST_POSTGRES_URL", &url)
            .env("CONSENTRY_REQUIRE_POSTGRES", "1"))
    });
    if tested.is_err() {
        cluster.print_log_tail(40);
    }
    drop(cluster);
    tested?;
    eprintln!(
        "\n==> fault tests passed in {}",
        fmt_duration(started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

/// The fuzz targets, by package: `cargo test -p <package> --lib <filter>` runs them.
const FUZZ_SUITES: [(&str, &str); 2] = [
    ("consentry-server", "fuzz::fuzz_"),
    ("consentry-resource", "fuzz::fuzz_"),
];

/// Targets run two at a time (the machine has two cores).
const FUZZ_THREADS: u64 = 2;

pub(crate) fn cmd_fuzz(args: &[String]) -> Result<ExitCode> {
    let mut minutes: u64 = 8;
    let mut cases: u64 = 1_000_000;
    let mut seed: Option<u64> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => minutes = number(it.next(), "--minutes")?,
            "--cases" => cases = number(it.next(), "--cases")?,
            "--seed" => seed = Some(number(it.next(), "--seed")?),
            other => return err(format!("unknown option `{other}` for `cargo xtask fuzz`")),
        }
    }
    let per_target = minutes * 60;
    eprintln!("==> fuzz: each target up to {cases} inputs or {per_target} s");
    let started = Instant::now();
    for (package, filter) in FUZZ_SUITES {
        step(&format!("fuzz targets of {package}"), || {
            let mut cmd = cargo();
            cmd.args(["test", "-p", package, "--lib", filter])
                .args(["--", "--nocapture", "--test-threads"])
                .arg(FUZZ_THREADS.to_string())
                .env("CONSENTRY_FUZZ_CASES", cases.to_string())
                .env("CONSENTRY_FUZZ_SECONDS", per_target.to_string());
            if let Some(s) = seed {
                cmd.env("CONSENTRY_FUZZ_SEED", s.to_string());
            }
            run(&mut cmd)
        })?;
    }
    eprintln!(
        "\n==> fuzz: 0 failures in {} (inputs per target: the `fuzz <target>:` lines above)",
        fmt_duration(started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

fn number(v: Option<&String>, option: &str) -> Result<u64> {
    match v.map(|s| s.parse::<u64>()) {
        Some(Ok(n)) => Ok(n),
        _ => err(format!("{option} takes a number")),
    }
}

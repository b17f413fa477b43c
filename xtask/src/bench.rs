//! `cargo xtask bench`: the load benchmark on the release binary.

use crate::*;

/// The bench drives the release `consentry` binary, so build both, then run the example.
pub(crate) fn cmd_bench(rest: &[String]) -> Result<ExitCode> {
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

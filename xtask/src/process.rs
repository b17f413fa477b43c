//! Running commands: the repository root, cargo, exit statuses, error messages.

use crate::*;

pub(crate) fn repo_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir
        .parent()
        .map_or_else(|| xtask_dir.to_path_buf(), Path::to_path_buf)
}

/// `cargo` — the one that is running us (same toolchain), in the repository root.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root());
    cmd
}

/// Run with inherited stdio; error if it cannot start or exits unsuccessfully.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let program = program_name(cmd);
    let status = cmd.status().map_err(|e| spawn_error(&program, &e))?;
    check_status(&program, status)
}

/// Run with captured output, printed only when the command fails.
pub(crate) fn run_quiet(cmd: &mut Command) -> Result<()> {
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
pub(crate) fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|out| out.status.success())
}

pub(crate) fn check_status(program: &str, status: ExitStatus) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        err(format!("`{program}` exited with {status}"))
    }
}

/// `cargo` rather than `/root/.rustup/toolchains/<toolchain>/bin/cargo`.
pub(crate) fn program_name(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn spawn_error(program: &str, e: &io::Error) -> Error {
    Error(format!("could not run `{program}`: {e}"))
}

/// The child's exit code, or 128 + signal number like a shell, for our own exit code.
pub(crate) fn exit_code(status: ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

//! A throwaway PostgreSQL cluster for the dual-backend tests (`cargo xtask pg-smoke`).

use crate::*;

pub(crate) fn cmd_pg_smoke(args: &[String]) -> Result<ExitCode> {
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
pub(crate) struct PgCluster {
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

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_command(&self, binary: &str) -> Command {
        pg_command(&self.bin_dir.join(binary), self.as_postgres, &self.dir)
    }

    pub(crate) fn print_log_tail(&self, lines: usize) {
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

pub(crate) fn start_cluster() -> Result<PgCluster> {
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
pub(crate) fn find_pg_bin_dir() -> Option<PathBuf> {
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

pub(crate) fn install_postgres(root: bool) -> Result<()> {
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
pub(crate) fn remove_stale_clusters(bin_dir: &Path, root: bool) {
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

pub(crate) fn xtask_is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "xtask")
}

/// A PostgreSQL binary, run as the `postgres` OS user when `as_postgres`, with `cwd` as the
/// working directory (initdb complains when it cannot enter the inherited one).
pub(crate) fn pg_command(binary: &Path, as_postgres: bool, cwd: &Path) -> Command {
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
pub(crate) fn runas_postgres(program: &str, args: &[&str]) -> Command {
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

pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| spawn_error("id", &e))?;
    if !out.status.success() {
        return err("`id -u` failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

pub(crate) fn user_exists(user: &str) -> bool {
    quiet_ok(Command::new("id").arg("-u").arg(user))
}

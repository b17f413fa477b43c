//! A PostgreSQL cluster of the test's own, which it may stop and start (the shared test cluster
//! serves every other test at the same time).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

fn find_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Cluster {
    /// `Err(reason)` when this machine cannot run one (no PostgreSQL binaries).
    pub fn start() -> Result<Cluster, String> {
        let bin = find_bin().ok_or("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("consentry-faults-pg-")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let cluster = Cluster {
            dir,
            bin,
            port: consentry_testkit::free_port(),
            as_postgres,
        };
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(cluster.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err("cannot chown the cluster directory to postgres".into());
            }
        }
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "--locale=C"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        cluster.start_again();
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Start (again, on the same port and data).
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(self.dir.path().join("postgres.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&status.stderr),
            self.log()
        );
    }

    /// Stop: `fast` (connections terminated, clean shutdown) or `immediate` (a crash: recovery
    /// at the next start).
    pub fn stop(&self, mode: &str) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-W", "stop"])
            .output();
        let pid = self.data().join("postmaster.pid");
        let deadline = Instant::now() + Duration::from_secs(30);
        while pid.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // `fast`, not `immediate`: an immediate stop can leave its shared memory segments in
        // /dev/shm behind.
        self.stop("fast");
    }
}

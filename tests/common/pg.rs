//! A throw-away PostgreSQL cluster for tests: Debian's `postgresql` binaries
//! (/usr/lib/postgresql/*/bin), a cluster in a temporary directory, on a free port of
//! 127.0.0.1, trust authentication for user `siaga`, no Unix socket. Stopped (immediate) when
//! dropped. initdb refuses to run as root, so as root (CI) the cluster runs as the
//! unprivileged `postgres` user (created by the package) through `runuser`.
//!
//! Shared by the integration tests (tests/common) and the call log's unit tests (included
//! with `#[path]`), so it uses only the standard library, libc and tempfile.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct PgCluster {
    /// Owned by the test's user; `pg` inside it belongs to the cluster's user.
    _dir: tempfile::TempDir,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// `Some(user)`: commands run as this user (we are root).
    run_as: Option<String>,
    databases: AtomicUsize,
}

/// The newest installed PostgreSQL's binaries.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!("PostgreSQL is not installed: sudo apt-get install -y postgresql (.ci/run does)")
    })
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl PgCluster {
    /// initdb + start; panics with PostgreSQL's own words when either fails.
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        // SAFETY: getuid has no preconditions.
        let root = unsafe { libc::getuid() } == 0;
        let run_as = root.then(|| "postgres".to_owned());
        let pg = dir.path().join("pg");
        std::fs::create_dir(&pg).expect("cluster dir");
        if let Some(user) = &run_as {
            use std::os::unix::fs::PermissionsExt;
            // The cluster's user must reach its directory through ours.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            let ok = Command::new("chown")
                .arg(user)
                .arg(&pg)
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown {user} {}", pg.display());
        }
        let cluster = PgCluster {
            data: pg.join("data"),
            log: pg.join("log"),
            _dir: dir,
            bin,
            port: free_tcp_port(),
            run_as,
            databases: AtomicUsize::new(0),
        };
        let out = cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data.to_string_lossy(),
                "-U",
                "siaga",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb: {}", text(&out));
        cluster.start_again();
        cluster
    }

    /// A command of the cluster's user.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .current_dir("/")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()))
    }

    /// `pg_ctl start` (waits until it takes connections).
    pub fn start_again(&self) {
        // fsync off: a test cluster need not survive a power cut, and the tests share a CPU.
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
             -c max_connections=200",
            self.port
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-l",
                &self.log.to_string_lossy(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            text(&out),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// `pg_ctl stop -m <mode>` (fast: connections are cut, committed work kept).
    pub fn stop(&self, mode: &str) {
        let out = self.pg_ctl_stop(mode);
        assert!(out.status.success(), "pg_ctl stop: {}", text(&out));
    }

    fn pg_ctl_stop(&self, mode: &str) -> Output {
        let data = self.data.to_string_lossy();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", mode, "-w", "-t", "60", "stop"],
        )
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://siaga@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn create_db(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs `sql` with psql on database `db`: its rows, one per line, columns split by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// [`PgCluster::psql`], or what went wrong (no such table yet, the server down).
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-U",
                "siaga",
                "-p",
                &self.port.to_string(),
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned()),
            false => Err(text(&out)),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop("immediate");
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The database name at the end of a URL made by [`PgCluster::url`].
pub fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

//! A throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a loopback port, as user
//! `nobody` when run as root (the server refuses root). Used by the store's tests and the
//! end-to-end tests (included in both by path). Skipped with a loud message when the
//! PostgreSQL server binaries are absent, except under CI, where that fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A PostgreSQL cluster in a temporary directory, stopped (immediate mode) on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_nobody: bool,
}

fn find_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for d in std::env::split_paths(&path) {
            if ["pg_ctl", "initdb", "createdb"]
                .iter()
                .all(|t| d.join(t).is_file())
            {
                return Some(d);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("pg_ctl").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    /// Starts a cluster, or returns None (after saying so loudly) when PostgreSQL is absent.
    pub fn start() -> Option<Cluster> {
        Cluster::start_with(|_| String::new())
    }

    /// Starts a cluster; `setup(data_dir)` runs after initdb and returns extra server options.
    pub fn start_with(setup: impl FnOnce(&Cluster) -> String) -> Option<Cluster> {
        let Some(bin) = find_bin() else {
            assert!(
                std::env::var("CI").is_err(),
                "PostgreSQL server binaries (initdb, pg_ctl) are missing under CI: \
                 scripts/deps/pg.sh should have installed them"
            );
            eprintln!(
                "\n*** SKIPPED: PostgreSQL server binaries (initdb, pg_ctl) not found; \
                 install the postgresql package to run the PostgreSQL tests ***\n"
            );
            return None;
        };
        let as_nobody = is_root();
        let dir = tempfile::tempdir().expect("tempdir");
        if as_nobody {
            // The server refuses to run as root; `nobody` must be able to create its data dir.
            Command::new("chmod")
                .arg("0777")
                .arg(dir.path())
                .status()
                .expect("chmod");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let c = Cluster {
            bin,
            dir,
            port,
            as_nobody,
        };
        let data = c.data();
        c.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "okey",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let extra = setup(&c);
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=on \
             -c max_connections=300 {extra}",
            c.port,
            path_str(c.dir.path())
        );
        c.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&c.dir.path().join("log")),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        Some(c)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Give a file to the server's user (when it runs as `nobody`).
    pub fn give(&self, path: &Path) {
        if self.as_nobody {
            let ok = Command::new("chown")
                .arg("nobody")
                .arg(path)
                .status()
                .expect("chown");
            assert!(ok.success(), "chown {}", path.display());
        }
    }

    /// Restart the server (fast shutdown: every session is cut).
    pub fn restart(&self) {
        let data = self.data();
        let log = self.dir.path().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let status = if self.as_nobody {
            Command::new("runuser")
                .args(["-u", "nobody", "--"])
                .arg(&exe)
                .args(args)
                .status()
        } else {
            Command::new(&exe).args(args).status()
        }
        .expect("run a PostgreSQL tool");
        if !status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            panic!("{tool} {args:?} failed: {status}\n{log}");
        }
    }

    /// The cluster this test process shares: started on first use, stopped (and its directory
    /// removed) by a watchdog once the process exits, however it exits. None (after saying so)
    /// when PostgreSQL is absent.
    pub fn shared() -> Option<&'static Cluster> {
        static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let c = Cluster::start()?;
                c.watch_parent();
                Some(c)
            })
            .as_ref()
    }

    /// Stop the cluster when this process is gone (a static is never dropped).
    fn watch_parent(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             kill -QUIT $(head -n 1 '{data}/postmaster.pid') 2>/dev/null; sleep 2; rm -rf '{dir}'",
            pid = std::process::id(),
            data = path_str(&self.data()),
            dir = path_str(self.dir.path()),
        );
        // Started in the background by a shell that returns at once (so nothing is left to
        // reap), and outliving this process by design.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("( {script} ) </dev/null >/dev/null 2>&1 &"))
            .status()
            .expect("start the cluster's watchdog");
        assert!(status.success(), "the cluster's watchdog did not start");
    }

    /// A new, empty database on this cluster; its connection string.
    pub fn fresh_db(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("okey_t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "okey",
                &name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("host=127.0.0.1 port={} user=okey dbname={name}", self.port)
    }

    /// Connection parameters of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=okey dbname=postgres",
            self.port
        )
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let args = ["-D", path_str(&data), "-m", "immediate", "-w", "stop"];
        let _ = if self.as_nobody {
            Command::new("runuser")
                .args(["-u", "nobody", "--"])
                .arg(&exe)
                .args(args)
                .status()
        } else {
            Command::new(&exe).args(args).status()
        };
    }
}

//! Child processes (servers and Python drivers) that never outlive the benchmark,
//! plus the small facts about the machine a benchmark needs: free ports, the
//! Python interpreter of the venv, the `zeoraid` binary, CPU time from `/proc`.
//!
//! Every child is a [`tokio::process::Child`] with `kill_on_drop`, owned by a
//! [`Proc`] guard: an error (`?`), a panic, or Ctrl-C (main drops the benchmark
//! future) drops the guard and kills the process. [`Proc::stop`] is the polite
//! way: SIGTERM, a grace period, then SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// A started child process, killed when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: Option<PathBuf>,
}

impl Proc {
    /// Spawn `program args…` with stdout/stderr appended to `log`.
    pub fn spawn_logged(
        name: &str,
        program: &Path,
        args: &[&str],
        cwd: &Path,
        log: &Path,
    ) -> anyhow::Result<Proc> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: Some(log.to_owned()),
        })
    }

    /// Spawn with piped stdin/stdout (a driver we talk to line by line).
    pub fn spawn_piped(name: &str, program: &Path, args: &[String]) -> anyhow::Result<Proc> {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: None,
        })
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} has exited", self.name))
    }

    /// The tail of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(15);
        lines[start..].join("\n")
    }

    /// Wait until `addr` accepts TCP connections (or the process dies).
    pub async fn wait_listening(&mut self, addr: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on {addr}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not listening on {addr} after {limit:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// A TCP port nobody listens on right now (bind port 0, read it, close).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// User + system CPU seconds of a process so far (`/proc/<pid>/stat` fields 14, 15).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/<pid>/stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 (state) is fields[0], so field N is fields[N - 3].
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / clock_ticks())
}

/// CPU seconds of this process (the Rust load generator runs in it).
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds(std::process::id())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The repository root (where `bench/` lives), from this crate's location.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python: `--python`, else `$ZEORAID_VENV/bin/python`, `.venv`, `/tmp/venvtest`.
pub fn find_python(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let mut candidates = Vec::new();
    if let Some(venv) = std::env::var_os("ZEORAID_VENV") {
        candidates.push(PathBuf::from(venv).join("bin/python"));
    }
    candidates.push(PathBuf::from(".venv/bin/python"));
    candidates.push(repo_root().join(".venv/bin/python"));
    candidates.push(PathBuf::from("/tmp/venvtest/bin/python"));
    for c in &candidates {
        if c.exists() {
            return Ok(std::path::absolute(c)?);
        }
    }
    bail!("no Python venv with ZODB/ZEO found (tried {candidates:?}); set ZEORAID_VENV or --python")
}

/// The `zeoraid` binary: `--zeoraid`, else next to this executable (same target
/// dir: build both with `cargo build --release -p zeoraid -p zeoraid-bench`).
pub fn find_zeoraid(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name("zeoraid");
    if sibling.exists() {
        return Ok(sibling);
    }
    bail!(
        "no zeoraid binary next to {} — build it (cargo build --release -p zeoraid) or pass --zeoraid",
        exe.display()
    )
}

/// A bench script under `bench/`.
pub fn script(name: &str) -> anyhow::Result<PathBuf> {
    let path = repo_root().join("bench").join(name);
    if !path.exists() {
        bail!("missing {}", path.display());
    }
    Ok(std::path::absolute(path)?)
}

/// A fresh work directory: `base/zeoraid-bench-<what>-<pid>`.
pub fn workdir(base: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let dir = base.join(format!("zeoraid-bench-{what}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(std::path::absolute(dir)?)
}

/// A server under test: its process, address, and label.
pub struct Server {
    pub label: String,
    pub addr: String,
    pub proc: Proc,
}

impl Server {
    pub fn cpu(&self) -> anyhow::Result<f64> {
        cpu_seconds(self.proc.pid()?)
    }

    /// Python `runzeo` on a fresh FileStorage in `dir`.
    pub async fn runzeo(
        label: &str,
        python: &Path,
        dir: &Path,
        client_conflict_resolution: bool,
    ) -> anyhow::Result<Server> {
        Server::runzeo_on(label, python, dir, client_conflict_resolution, None).await
    }

    /// [`Server::runzeo`], kept to one CPU when `cpu` is given (through
    /// util-linux's `taskset`, which execs Python: the process keeps its pid).
    pub async fn runzeo_on(
        label: &str,
        python: &Path,
        dir: &Path,
        client_conflict_resolution: bool,
        cpu: Option<usize>,
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let ccr = if client_conflict_resolution {
            "  client-conflict-resolution true\n"
        } else {
            ""
        };
        let conf = dir.join("runzeo.conf");
        std::fs::write(
            &conf,
            format!(
                "<zeo>\n  address {addr}\n{ccr}</zeo>\n<filestorage 1>\n  path {}\n</filestorage>\n",
                dir.join("Data.fs").display()
            ),
        )?;
        let conf_s = conf.display().to_string();
        let python_s = python.display().to_string();
        let runzeo = ["-m", "ZEO.runzeo", "-C", &conf_s];
        let mut proc = match cpu {
            None => Proc::spawn_logged(label, python, &runzeo, dir, &dir.join("runzeo.log"))?,
            Some(cpu) => {
                let cpu_s = cpu.to_string();
                let mut args = vec!["-c", &cpu_s, &python_s];
                args.extend(runzeo);
                Proc::spawn_logged(
                    label,
                    Path::new("taskset"),
                    &args,
                    dir,
                    &dir.join("runzeo.log"),
                )?
            }
        };
        proc.wait_listening(&addr, Duration::from_secs(60)).await?;
        Ok(Server {
            label: label.to_owned(),
            addr,
            proc,
        })
    }

    /// `zeoraid serve` with the given storage sections (inside `<raidstorage 1>`
    /// when `raid`, else the one section must be named `1`).
    /// `zeo_options`: more lines for the `<zeo>` section (each ending in `\n`).
    pub async fn zeoraid(
        label: &str,
        zeoraid: &Path,
        dir: &Path,
        zeo_options: &str,
        storage_config: &str,
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let conf = dir.join("zeoraid.conf");
        std::fs::write(
            &conf,
            format!("<zeo>\n  address {addr}\n{zeo_options}</zeo>\n{storage_config}"),
        )?;
        let conf_s = conf.display().to_string();
        let mut proc = Proc::spawn_logged(
            label,
            zeoraid,
            &["serve", "-C", &conf_s],
            dir,
            &dir.join("zeoraid.log"),
        )?;
        proc.wait_listening(&addr, Duration::from_secs(60)).await?;
        Ok(Server {
            label: label.to_owned(),
            addr,
            proc,
        })
    }

    pub async fn stop(self) {
        self.proc.stop(Duration::from_secs(10)).await;
    }
}

/// `<filestorage NAME>` section for a Data.fs in `dir`.
pub fn filestorage_section(name: &str, dir: &Path) -> String {
    format!(
        "<filestorage {name}>\n  path {}\n</filestorage>\n",
        dir.join("Data.fs").display()
    )
}

/// `<zeoclient NAME>` section for a backend server.
/// `cache-size`: the backend client's object cache (ZEO's syntax, e.g. `20MB`, `0`).
pub fn zeoclient_section(name: &str, addr: &str, cache_size: &str) -> String {
    format!("<zeoclient {name}>\n  server {addr}\n  cache-size {cache_size}\n</zeoclient>\n")
}

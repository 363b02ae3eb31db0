//! Real `runzeo` servers for the tests: a temp directory with Data.fs files (and
//! blob dirs), a `zeo.conf`, a free port on 127.0.0.1, and a guard that always
//! kills the process on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use zeoraid_conformance::check::txn;
use zeoraid_storage::{Operation, Storage, Tid, TransactionMeta, VoteOutcome};
use zeoraid_zeo_client::{ServerAddress, ZeoClient, ZeoClientOptions};

/// The venv with ZODB/ZEO: `$ZEORAID_VENV`, else the repo's `.venv`, else
/// `/work/main/.venv`, else `/tmp/venvtest`. Panics with a clear message if none.
pub fn venv() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(v) = std::env::var("ZEORAID_VENV") {
        candidates.push(PathBuf::from(v));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    candidates.push(PathBuf::from("/work/main/.venv"));
    candidates.push(PathBuf::from("/tmp/venvtest"));
    for c in &candidates {
        if c.join("bin/runzeo").exists() {
            return c.clone();
        }
    }
    panic!(
        "no Python venv with ZEO's runzeo found (tried {candidates:?}); \
         set ZEORAID_VENV or run ./test.sh, which builds .venv"
    );
}

/// A TCP port on 127.0.0.1 for a server, free a moment ago. Taken from below the
/// kernel's ephemeral range (`net.ipv4.ip_local_port_range`), where outgoing
/// connections get their local ports: a port found by binding to port 0 lies in
/// that range, and a client connecting meanwhile may take it before the server
/// binds it. Never the same port twice in one test process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(LOW);
    if span >= 1_000 {
        // Processes start at different places (by pid), then count up.
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let offset = (start + NEXT.fetch_add(1, Ordering::SeqCst)) % span;
            let Ok(port) = u16::try_from(LOW + offset) else {
                continue;
            };
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// What the server runs with.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// Storage names (default: just "1").
    pub storages: Vec<String>,
    pub blobs: bool,
    pub client_conflict_resolution: bool,
    pub msgpack: bool,
    /// Extra lines inside `<zeo>` (e.g. an `<ssl>` section).
    pub zeo_extra: String,
    /// Listen on a Unix socket in the server's directory instead of TCP.
    pub unix_socket: bool,
}

impl ServerConfig {
    pub fn raid_backend() -> Self {
        ServerConfig {
            blobs: true,
            client_conflict_resolution: true,
            ..Default::default()
        }
    }
}

/// A running `runzeo`, killed on drop.
pub struct ZeoServer {
    pub port: u16,
    pub dir: TempDir,
    pub config: ServerConfig,
    child: Option<Child>,
}

impl ZeoServer {
    pub fn start(config: ServerConfig) -> ZeoServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = ZeoServer {
            port: free_port(),
            dir,
            config,
            child: None,
        };
        server.spawn();
        server
    }

    fn conf_text(&self) -> String {
        let base = self.dir.path();
        let mut zeo = if self.config.unix_socket {
            format!("<zeo>\n  address {}\n", self.socket_path().display())
        } else {
            format!("<zeo>\n  address 127.0.0.1:{}\n", self.port)
        };
        if self.config.client_conflict_resolution {
            zeo.push_str("  client-conflict-resolution true\n");
        }
        if self.config.msgpack {
            zeo.push_str("  msgpack true\n");
        }
        zeo.push_str(&self.config.zeo_extra);
        zeo.push_str("</zeo>\n");
        let names = if self.config.storages.is_empty() {
            vec!["1".to_string()]
        } else {
            self.config.storages.clone()
        };
        for name in names {
            zeo.push_str(&format!(
                "<filestorage {name}>\n  path {}\n",
                base.join(format!("{name}.fs")).display()
            ));
            if self.config.blobs {
                zeo.push_str(&format!(
                    "  blob-dir {}\n",
                    base.join(format!("blobs-{name}")).display()
                ));
            }
            zeo.push_str("</filestorage>\n");
        }
        zeo
    }

    /// The blob directory of a storage on the server.
    #[allow(dead_code)]
    pub fn blob_dir(&self, storage: &str) -> PathBuf {
        self.dir.path().join(format!("blobs-{storage}"))
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.path().join("zeo.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("runzeo.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts (or restarts) the process on the same port and files.
    pub fn spawn(&mut self) {
        let conf = self.dir.path().join("zeo.conf");
        std::fs::write(&conf, self.conf_text()).expect("write zeo.conf");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let log2 = log.try_clone().expect("log clone");
        let child = Command::new(venv().join("bin/runzeo"))
            .arg("-C")
            .arg(&conf)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn runzeo");
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = if self.config.unix_socket {
                std::os::unix::net::UnixStream::connect(self.socket_path()).is_ok()
            } else {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            };
            if up {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("runzeo exited with {status}:\n{}", self.log());
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "runzeo did not listen on {} in time:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("server running")
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// SIGSTOP: the process hangs, its sockets stay open.
    #[allow(dead_code)]
    pub fn pause(&self) {
        self.signal("STOP");
    }

    #[allow(dead_code)]
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn address(&self) -> ServerAddress {
        if self.config.unix_socket {
            ServerAddress::unix(self.socket_path())
        } else {
            ServerAddress::tcp("127.0.0.1", self.port)
        }
    }

    /// Client options for this server, with short timeouts for tests.
    pub fn options(&self) -> ZeoClientOptions {
        ZeoClientOptions::new(self.address())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
    }

    pub async fn client(&self) -> ZeoClient {
        ZeoClient::connect(self.options())
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log()))
    }
}

impl Drop for ZeoServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // A stopped process must be continued to die promptly on some systems.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
        }
        self.kill();
    }
}

/// Commits `ops` in one transaction through `s`; its tid.
pub async fn commit(s: &ZeoClient, ops: Vec<Operation>) -> Tid {
    let t = txn(TransactionMeta::default(), ops);
    let id = t.id;
    match s.vote(t).await.unwrap() {
        VoteOutcome::Voted { .. } => s.finish(id).await.unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

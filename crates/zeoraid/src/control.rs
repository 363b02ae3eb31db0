//! The management commands (`zeoraid status`, `details`, `disable`, `recover`,
//! `verify`, `reload`): a small
//! client of the admin HTTP API of a running server, found through the
//! `admin-address` of the configuration file's `<zeo>` section.
//!
//! Exit codes are those of gocept.zeoraid's controller, so Nagios checks keep
//! working: 0 optimal, 1 recovering, 2 degraded or failed, and 2 for every
//! error (server unreachable, unknown storage, refused action).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::de::DeserializeOwned;

use crate::admin::http::{ActionResult, StatusReport};
use crate::admin::model::{
    parse_tid, BackendState, RaidStatus, ServerSnapshot, StorageKind, StorageSnapshot,
};
use crate::config::{self, SocketAddress};

/// Nagios: OK.
pub const NAGIOS_OK: u8 = 0;
/// Nagios: WARNING.
pub const NAGIOS_WARNING: u8 = 1;
/// Nagios: CRITICAL (also every error).
pub const NAGIOS_CRITICAL: u8 = 2;

/// How long to wait for the connection to the admin API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a status request may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an action may take (`disable` waits for a commit in progress).
const ACTION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `verify` may take (it reads every backend's whole history).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How often `recover --wait` looks at the progress.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// gocept.zeoraid's mapping of a status to a Nagios exit code.
pub fn nagios_code(status: RaidStatus) -> u8 {
    match status {
        RaidStatus::Optimal => NAGIOS_OK,
        RaidStatus::Recovering => NAGIOS_WARNING,
        RaidStatus::Degraded | RaidStatus::Failed => NAGIOS_CRITICAL,
    }
}

/// `zeoraid status`: one word for the server (or for `storage`).
pub fn status(config_path: &Path, storage: Option<&str>) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_config(config_path)?;
    let report: StatusReport = block_on(client.get("/status"))??;
    let status = match storage {
        None => report.status,
        Some(name) => {
            report
                .storages
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| {
                    unknown_storage(name, report.storages.iter().map(|s| s.name.as_str()))
                })?
                .status
        }
    };
    println!("{status}");
    Ok(ExitCode::from(nagios_code(status)))
}

/// `zeoraid details`: a table of every backend (of `storage`, if given).
pub fn details(config_path: &Path, storage: Option<&str>) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_config(config_path)?;
    let snapshot: ServerSnapshot = block_on(client.get("/details"))??;
    let storages: Vec<&StorageSnapshot> = match storage {
        None => snapshot.storages.iter().collect(),
        Some(name) => vec![snapshot.storage(name).ok_or_else(|| {
            unknown_storage(name, snapshot.storages.iter().map(|s| s.name.as_str()))
        })?],
    };
    let status = match storage {
        None => snapshot.status(),
        Some(_) => storages
            .first()
            .map(|s| s.status)
            .unwrap_or(RaidStatus::Optimal),
    };
    print!("{}", format_details(&client.display, status, &storages));
    Ok(ExitCode::from(nagios_code(status)))
}

/// `zeoraid disable BACKEND`: takes a backend out of a RAID.
pub fn disable(
    config_path: &Path,
    backend: &str,
    storage: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_config(config_path)?;
    block_on(async {
        backend_action(&client, storage, backend, "disable").await?;
        Ok(ExitCode::from(NAGIOS_OK))
    })?
}

/// Posts `action` for a backend of a RAID, prints the server's message and
/// returns the storage's name; a refusal is an error carrying that message.
async fn backend_action(
    client: &AdminClient,
    storage: Option<&str>,
    backend: &str,
    action: &str,
) -> anyhow::Result<String> {
    let storage = client.raid_storage(storage).await?;
    let path = format!(
        "/storages/{}/backends/{}/{action}",
        path_segment(&storage),
        path_segment(backend)
    );
    let result = client.post(&path, ACTION_TIMEOUT).await?;
    if !result.ok {
        bail!("{}", result.message);
    }
    println!("{}", result.message);
    Ok(storage)
}

/// `zeoraid recover BACKEND`: starts (and with `wait`, follows) a recovery.
pub fn recover(
    config_path: &Path,
    backend: &str,
    storage: Option<&str>,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_config(config_path)?;
    block_on(async {
        let storage = backend_action(&client, storage, backend, "recover").await?;
        if !wait {
            return Ok(ExitCode::from(NAGIOS_OK));
        }
        let mut last = String::new();
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            let snapshot: ServerSnapshot = client.get("/details").await?;
            let state = snapshot
                .storage(&storage)
                .and_then(|s| s.backends.iter().find(|b| b.name == backend))
                .map(|b| b.state.clone())
                .ok_or_else(|| anyhow!("backend {backend:?} of storage {storage:?} is gone"))?;
            match state {
                BackendState::Optimal => {
                    println!("{backend}: optimal");
                    return Ok(ExitCode::from(NAGIOS_OK));
                }
                BackendState::Degraded { reason } => bail!("{backend}: degraded: {reason}"),
                BackendState::Recovering { .. } => {
                    let line = format!("{backend}: recovering: {}", state.detail());
                    if line != last {
                        println!("{line}");
                        last = line;
                    }
                }
            }
        }
    })?
}

/// `zeoraid verify`: compares the backends of a RAID.
pub fn verify(config_path: &Path, storage: Option<&str>) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_config(config_path)?;
    block_on(async {
        let storage = client.raid_storage(storage).await?;
        let path = format!("/storages/{}/verify", path_segment(&storage));
        let result = client.post(&path, VERIFY_TIMEOUT).await?;
        if !result.ok {
            bail!("{}", result.message);
        }
        println!("{}", result.message);
        Ok(ExitCode::from(NAGIOS_OK))
    })?
}

/// `zeoraid reload`: makes the server re-read its configuration file.
pub fn reload(config_path: &Path) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_config(config_path)?;
    block_on(async {
        let result = client.post("/reload", ACTION_TIMEOUT).await?;
        if !result.ok {
            bail!("{}", result.message);
        }
        println!("{}", result.message);
        Ok(ExitCode::from(NAGIOS_OK))
    })?
}

/// The only RAID storage of the server, for `disable` without `-S`.
fn only_raid(snapshot: &ServerSnapshot) -> anyhow::Result<String> {
    let raids: Vec<&str> = snapshot
        .storages
        .iter()
        .filter(|s| s.kind == StorageKind::Raid)
        .map(|s| s.name.as_str())
        .collect();
    match raids.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("the server has no RAID storage"),
        many => bail!(
            "the server has several RAID storages ({}): choose one with -S STORAGE",
            many.join(", ")
        ),
    }
}

fn unknown_storage<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> anyhow::Error {
    let names: Vec<&str> = names.collect();
    anyhow!(
        "no storage is named {name:?} (the server has: {})",
        names.join(", ")
    )
}

/// The `details` table:
///
/// ```text
/// zeoraid at 127.0.0.1:8180: degraded
///
/// storage 1 (raid): degraded
///   backend  state     last tid          last commit (UTC)           reason / progress
///   a        optimal   03ec5b2a0d1eb9bb  2026-11-23 18:49:07.157609
///   b        degraded  03ec5b29f0000000  2026-11-23 18:49:03.515625  disabled by operator
/// ```
pub fn format_details(address: &str, status: RaidStatus, storages: &[&StorageSnapshot]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "zeoraid at {address}: {status}");
    for storage in storages {
        let _ = writeln!(
            out,
            "\nstorage {} ({}): {}",
            storage.name,
            storage.kind.as_str(),
            storage.status
        );
        let mut rows: Vec<[String; 5]> = vec![[
            "backend".into(),
            "state".into(),
            "last tid".into(),
            "last commit (UTC)".into(),
            "reason / progress".into(),
        ]];
        for b in &storage.backends {
            let (hex, time) = match b.last_tid.as_deref() {
                None => ("-".to_string(), "-".to_string()),
                Some(hex) => (
                    hex.to_string(),
                    parse_tid(hex)
                        .map(|tid| tid.to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
            };
            rows.push([
                b.name.clone(),
                b.state.word().to_string(),
                hex,
                time,
                b.state.detail(),
            ]);
        }
        let mut widths = [0usize; 5];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::from(" ");
            for (i, cell) in row.iter().enumerate() {
                let _ = write!(line, " {cell:<width$}", width = widths[i]);
                line.push(' ');
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}

/// Percent-encodes a name for one path segment of a URL.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Runs a future on a small runtime of its own (the commands are synchronous).
fn block_on<F: std::future::Future>(fut: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(fut))
}

/// The admin API of the server a configuration file describes.
struct AdminClient {
    /// `http://host:port`.
    base: String,
    /// `host:port`, for messages.
    display: String,
    http: reqwest::Client,
}

impl AdminClient {
    fn from_config(path: &Path) -> anyhow::Result<AdminClient> {
        let config = config::load(path)?;
        let Some(address) = &config.zeo.admin_address else {
            bail!(
                "{}: <zeo> has no admin-address: the management commands talk to the \
                 server's admin API (add e.g. `admin-address 127.0.0.1:8180` to <zeo> \
                 and restart the server)",
                path.display()
            );
        };
        let display = connect_address(address)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(AdminClient {
            base: format!("http://{display}"),
            display,
            http,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(QUERY_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.request_error(e))?;
        let code = resp.status();
        if !code.is_success() {
            bail!(
                "the zeoraid admin API at {} answered {code} to GET {path}",
                self.display
            );
        }
        resp.json().await.map_err(|e| {
            anyhow!(
                "unexpected answer from the zeoraid admin API at {}: {e}",
                self.display
            )
        })
    }

    /// The RAID storage an action is for: `storage`, or the server's only one.
    async fn raid_storage(&self, storage: Option<&str>) -> anyhow::Result<String> {
        match storage {
            Some(name) => Ok(name.to_string()),
            None => {
                let snapshot: ServerSnapshot = self.get("/details").await?;
                only_raid(&snapshot)
            }
        }
    }

    /// POSTs an action; refusals come back as `ActionResult { ok: false }`.
    async fn post(&self, path: &str, timeout: Duration) -> anyhow::Result<ActionResult> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.request_error(e))?;
        let code = resp.status();
        let body = resp.text().await.map_err(|e| self.request_error(e))?;
        match serde_json::from_str::<ActionResult>(&body) {
            Ok(result) => Ok(result),
            Err(_) => bail!(
                "the zeoraid admin API at {} answered {code} to POST {path}",
                self.display
            ),
        }
    }

    fn request_error(&self, err: reqwest::Error) -> anyhow::Error {
        if err.is_connect() || (err.is_timeout() && !err.is_body()) {
            let why = io_cause(&err)
                .map(|e| format!(" ({e})"))
                .unwrap_or_else(|| {
                    if err.is_timeout() {
                        " (timed out)".into()
                    } else {
                        String::new()
                    }
                });
            anyhow!(
                "Could not connect to zeoraid admin API at {}{why}",
                self.display
            )
        } else {
            anyhow!(
                "request to the zeoraid admin API at {} failed: {err}",
                self.display
            )
        }
    }
}

/// The innermost I/O error of a request error (e.g. "Connection refused").
fn io_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cause = err.source();
    let mut found = None;
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            found = Some(io);
        }
        cause = e.source();
    }
    found
}

/// Where to connect for an `admin-address` the server listens on: a wildcard
/// host (empty, `0.0.0.0`, `::`) means this machine.
fn connect_address(address: &SocketAddress) -> anyhow::Result<String> {
    match address {
        SocketAddress::Inet { host, port } => {
            let host = match host.as_str() {
                "" | "0.0.0.0" => "127.0.0.1",
                "::" => "::1",
                other => other,
            };
            if host.contains(':') {
                Ok(format!("[{host}]:{port}"))
            } else {
                Ok(format!("{host}:{port}"))
            }
        }
        SocketAddress::Unix(path) => bail!(
            "admin-address {}: the admin API listens on TCP only (use host:port)",
            path.display()
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::admin::testing::{sample_snapshot, FakeManagement, TestServer};

    #[test]
    fn nagios_codes_are_gocepts() {
        assert_eq!(nagios_code(RaidStatus::Optimal), 0);
        assert_eq!(nagios_code(RaidStatus::Recovering), 1);
        assert_eq!(nagios_code(RaidStatus::Degraded), 2);
        assert_eq!(nagios_code(RaidStatus::Failed), 2);
    }

    #[test]
    fn details_table() {
        let snap = sample_snapshot();
        let storages: Vec<&StorageSnapshot> = snap.storages.iter().collect();
        let text = format_details("127.0.0.1:8180", snap.status(), &storages);
        let tid = |hex| parse_tid(hex).unwrap().to_string();
        let expected = format!(
            "zeoraid at 127.0.0.1:8180: recovering\n\
             \n\
             storage 1 (raid): recovering\n\
             \x20 backend  state       last tid          last commit (UTC)           reason / progress\n\
             \x20 a        optimal     03ec5b2a0d1eb9bb  {}\n\
             \x20 b        degraded    03ec5b29f0000000  {}  vote failed: I/O error: disk full\n\
             \x20 c        recovering  03ec5a0000000000  {}  120 of 480 transactions (25%), 1048576 of 4194304 bytes, eta 42s\n\
             \n\
             storage plain (filestorage): optimal\n\
             \x20 backend  state    last tid          last commit (UTC)           reason / progress\n\
             \x20 plain    optimal  03ec5b2a0d1eb9bb  {}\n",
            tid("03ec5b2a0d1eb9bb"),
            tid("03ec5b29f0000000"),
            tid("03ec5a0000000000"),
            tid("03ec5b2a0d1eb9bb"),
        );
        assert_eq!(text, expected, "got:\n{text}");
        assert_eq!(
            tid("03ec5b2a0d1eb9bb").len(),
            "2026-11-23 18:49:07.157609".len()
        );
    }

    #[test]
    fn only_raid_picks_the_single_raid() {
        let mut snap = sample_snapshot();
        assert_eq!(only_raid(&snap).unwrap(), "1");
        let mut second = snap.storages[0].clone();
        second.name = "2".into();
        snap.storages.push(second);
        let err = only_raid(&snap).unwrap_err().to_string();
        assert!(err.contains("several RAID storages (1, 2)"), "{err}");
        snap.storages.retain(|s| s.kind != StorageKind::Raid);
        assert!(only_raid(&snap).is_err());
    }

    #[test]
    fn connect_addresses() {
        let inet = |host: &str| SocketAddress::Inet {
            host: host.into(),
            port: 8180,
        };
        assert_eq!(connect_address(&inet("")).unwrap(), "127.0.0.1:8180");
        assert_eq!(connect_address(&inet("0.0.0.0")).unwrap(), "127.0.0.1:8180");
        assert_eq!(connect_address(&inet("::")).unwrap(), "[::1]:8180");
        assert_eq!(connect_address(&inet("fe80::1")).unwrap(), "[fe80::1]:8180");
        assert_eq!(
            connect_address(&inet("admin.local")).unwrap(),
            "admin.local:8180"
        );
        assert!(connect_address(&SocketAddress::Unix("/tmp/a".into())).is_err());
        assert_eq!(path_segment("a b/ü"), "a%20b%2F%C3%BC");
    }

    fn config_file(dir: &Path, admin: Option<&str>) -> std::path::PathBuf {
        let admin = admin
            .map(|a| format!("  admin-address {a}\n"))
            .unwrap_or_default();
        let path = dir.join("zeoraid.conf");
        std::fs::write(
            &path,
            format!(
                "<zeo>\n  address 127.0.0.1:8100\n{admin}</zeo>\n\
                 <raidstorage 1>\n  <filestorage a>\n    path a/Data.fs\n  </filestorage>\n\
                 </raidstorage>\n"
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn config_without_admin_address_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_file(dir.path(), None);
        let err = status(&path, None).unwrap_err().to_string();
        assert!(err.contains("<zeo> has no admin-address"), "{err}");
    }

    #[test]
    fn unreachable_server() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let path = config_file(dir.path(), Some(&format!("127.0.0.1:{port}")));
        let err = status(&path, None).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "Could not connect to zeoraid admin API at 127.0.0.1:{port}"
            )),
            "{err}"
        );
    }

    /// The commands against a running admin API (served on a runtime of the
    /// test's own, since the commands run their own).
    #[test]
    fn commands_against_a_server() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mgmt = FakeManagement::new(sample_snapshot());
        let server = runtime.block_on(TestServer::start(mgmt.clone()));
        let dir = tempfile::tempdir().unwrap();
        let path = config_file(dir.path(), Some(&server.addr.to_string()));

        assert_eq!(status(&path, None).unwrap(), ExitCode::from(1));
        assert_eq!(status(&path, Some("plain")).unwrap(), ExitCode::from(0));
        let err = status(&path, Some("x")).unwrap_err().to_string();
        assert_eq!(err, "no storage is named \"x\" (the server has: 1, plain)");
        assert_eq!(details(&path, None).unwrap(), ExitCode::from(1));

        let err = disable(&path, "a", None).unwrap_err().to_string();
        assert_eq!(
            err,
            "refusing to disable \"a\": it is the last optimal backend"
        );
        assert_eq!(disable(&path, "c", None).unwrap(), ExitCode::from(0));
        assert!(matches!(
            mgmt.snapshot.lock().unwrap().storages[0].backends[2].state,
            crate::admin::model::BackendState::Degraded { .. }
        ));
        assert_eq!(status(&path, Some("1")).unwrap(), ExitCode::from(2));
        let err = disable(&path, "nope", Some("1")).unwrap_err().to_string();
        assert!(err.contains("no backend named \"nope\""), "{err}");
        runtime.block_on(server.stop());
    }
}

//! A human-readable summary of a configuration: what zeoraid serves, from
//! where. Used by `zeoraid serve` (and later by other commands that show the
//! configuration).

use std::fmt::Write as _;
use std::time::Duration;

use super::datatypes::SocketAddress;
use super::model::{
    BackendKind, Config, FileStorageConfig, RaidConfig, StorageKind, ZeoClientConfig,
};

/// Render the plan: the listening addresses, then each storage and its backends.
pub fn render_plan(config: &Config) -> String {
    let mut out = String::new();
    let zeo = &config.zeo;
    line(
        &mut out,
        0,
        format!("configuration {}", config.file.display()),
    );
    line(
        &mut out,
        0,
        format!("ZEO address  {}", listen(&zeo.address)),
    );
    if let Some(admin) = &zeo.admin_address {
        line(&mut out, 0, format!("admin API    {}", listen(admin)));
    }
    if zeo.read_only {
        line(&mut out, 0, "server is read-only".to_string());
    }
    if let Some(threads) = zeo.worker_threads {
        line(&mut out, 0, format!("worker threads {threads}"));
    }
    for storage in &config.storages {
        let head = match &storage.kind {
            StorageKind::File(fs) => filestorage(fs),
            StorageKind::ZeoClient(zc) => zeoclient(zc),
            StorageKind::Raid(raid) => raid_head(raid),
        };
        line(&mut out, 0, format!("storage '{}': {head}", storage.name));
        if let StorageKind::Raid(raid) = &storage.kind {
            for backend in &raid.backends {
                let desc = match &backend.kind {
                    BackendKind::File(fs) => filestorage(fs),
                    BackendKind::ZeoClient(zc) => zeoclient(zc),
                };
                line(&mut out, 1, format!("backend '{}': {desc}", backend.name));
            }
        }
    }
    out
}

fn line(out: &mut String, indent: usize, text: String) {
    let _ = writeln!(out, "{}{text}", "  ".repeat(indent));
}

/// A listening address; an empty host means all interfaces.
fn listen(addr: &SocketAddress) -> String {
    match addr {
        SocketAddress::Inet { host, port } if host.is_empty() => {
            format!("*:{port} (all interfaces)")
        }
        other => other.to_string(),
    }
}

fn flags(parts: impl IntoIterator<Item = Option<String>>) -> String {
    let parts: Vec<String> = parts.into_iter().flatten().collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn filestorage(fs: &FileStorageConfig) -> String {
    format!(
        "filestorage {}{}",
        fs.path.display(),
        flags([
            fs.blob_dir
                .as_ref()
                .map(|b| format!("blobs {}", b.display())),
            fs.read_only.then(|| "read-only".to_string()),
            fs.create.then(|| "create".to_string()),
            fs.quota.map(|q| format!("quota {q} bytes")),
            (!fs.vote_fsync).then(|| "vote-fsync off".to_string()),
        ])
    )
}

fn zeoclient(zc: &ZeoClientConfig) -> String {
    let servers: Vec<String> = zc.servers.iter().map(ToString::to_string).collect();
    format!(
        "zeoclient {} storage '{}'{}",
        servers.join(" "),
        zc.storage,
        flags([
            zc.blob_dir.as_ref().map(|b| {
                let kind = if zc.shared_blob_dir {
                    "shared blobs"
                } else {
                    "blob cache"
                };
                format!("{kind} {}", b.display())
            }),
            zc.read_only.then(|| "read-only".to_string()),
            Some(format!("timeout {}", secs(zc.timeout))),
            Some(format!("connect-timeout {}", secs(zc.connect_timeout))),
        ])
    )
}

fn raid_head(raid: &RaidConfig) -> String {
    let n = raid.backends.len();
    format!(
        "RAID-1 over {n} backend{}{}",
        if n == 1 { "" } else { "s" },
        flags([
            Some(format!("read-policy {}", raid.read_policy.as_str())),
            Some(format!("fail-mode {}", raid.fail_mode.as_str())),
            Some(format!("cluster-mode {}", raid.cluster_mode.as_str())),
            raid.read_only.then(|| "read-only".to_string()),
            raid.blob_dir
                .as_ref()
                .map(|b| format!("blobs {}", b.display())),
            raid.recovery_rate
                .map(|r| format!("recovery-rate {r} bytes/s")),
        ])
    )
}

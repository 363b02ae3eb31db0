//! The typed configuration: what a `zeo.conf`-style file means, built from the
//! parse tree with every key, value and section checked. One key table per
//! section type (see `keys.rs`); the builders below only pick values and apply
//! defaults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::datatypes::SocketAddress;
use super::error::{ConfigError, Position};
use super::keys::{ignored, key, multikey, KeySpec, Keys, Kind, Warning};
use super::zconfig::{Document, Import, Section};

/// Default per-call timeout of a `<zeoclient>` backend.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time to establish a `<zeoclient>` connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The storage name ZEO gives an unnamed storage section.
pub const DEFAULT_STORAGE_NAME: &str = "1";

/// `%import` packages whose sections zeoraid knows natively.
const KNOWN_IMPORTS: &[&str] = &["gocept.zeoraid", "ZEO", "ZODB", "ZConfig.components.logger"];

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    pub zeo: ZeoConfig,
    /// The storages served, in file order; names are unique.
    pub storages: Vec<StorageConfig>,
    /// `<eventlog>` / `<logger>` sections (kept, but their handlers are ignored).
    pub logging: Vec<LogConfig>,
    /// `%import` directives.
    pub imports: Vec<Import>,
    /// Accepted settings zeoraid does not honour (yet); log them at startup.
    pub warnings: Vec<Warning>,
}

impl Config {
    /// Whether the ZEO port answers gocept.zeoraid's `raid_*` management
    /// methods: `management-methods` when written, otherwise only for a
    /// gocept.zeoraid configuration (`%import gocept.zeoraid`), whose
    /// controller and scripts rely on them.
    pub fn management_methods(&self) -> bool {
        self.zeo
            .management_methods
            .unwrap_or_else(|| self.imports.iter().any(|i| i.package == "gocept.zeoraid"))
    }
}

/// The `<zeo>` section: how the server listens and behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeoConfig {
    pub pos: Position,
    /// `address` (required): where ZEO clients connect.
    pub address: SocketAddress,
    /// `admin-address` (zeoraid): the management HTTP API, if any.
    pub admin_address: Option<SocketAddress>,
    /// `read-only` (default false): refuse all writes.
    pub read_only: bool,
    /// `invalidation-queue-size` (default 100): transactions remembered for
    /// quick client cache verification.
    pub invalidation_queue_size: u64,
    /// `transaction-timeout`: abort a commit holding the lock longer than this.
    pub transaction_timeout: Option<Duration>,
    /// `pid-filename`: where to write the process id.
    pub pid_filename: Option<PathBuf>,
    /// `client-conflict-resolution` as written (default false). zeoraid always
    /// behaves as if it were true: it never resolves conflicts itself and
    /// returns them to the client, which resolves them.
    pub client_conflict_resolution: bool,
    /// `invalidation-age`: answer `getInvalidations` for clients further behind
    /// than the invalidation queue by iterating the storage back this far.
    pub invalidation_age: Option<Duration>,
    /// `msgpack` (default false): announce `M5` (msgpack) instead of `Z5` (pickle).
    pub msgpack: bool,
    /// `worker-threads` (zeoraid; default: one per CPU): the threads that serve
    /// connections.
    pub worker_threads: Option<usize>,
    /// `<ssl>`: TLS with client certificates required, as ZEO does.
    pub ssl: Option<SslConfig>,
    /// `management-methods` (zeoraid) as written: answer gocept.zeoraid's
    /// `raid_*` methods over the ZEO port. When not written, on only in a
    /// configuration that does `%import gocept.zeoraid` (see
    /// [`Config::management_methods`]).
    pub management_methods: Option<bool>,
    /// Keys accepted but not supported yet, raw (none in `<zeo>` today).
    pub unsupported: Vec<(String, String)>,
}

/// An `<ssl>` section (server side in `<zeo>`, client side in `<zeoclient>`).
#[derive(Debug, Clone, PartialEq)]
pub struct SslConfig {
    pub pos: Position,
    pub certificate: PathBuf,
    pub key: Option<PathBuf>,
    pub password_function: Option<String>,
    /// Server: required, a file/directory of client certificates, `-` or `SIGNED`.
    /// Client: server certificates to trust.
    pub authenticate: Option<String>,
    /// Client only (default true).
    pub check_hostname: Option<bool>,
    /// Client only.
    pub server_hostname: Option<String>,
}

/// A named storage at the top level.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// The name clients ask for (`storage` in their config); "1" if the section has none.
    pub name: String,
    pub pos: Position,
    pub kind: StorageKind,
}

// A configuration is built once and read a few times: boxing the larger
// variants would only add noise to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum StorageKind {
    File(FileStorageConfig),
    ZeoClient(ZeoClientConfig),
    Raid(RaidConfig),
}

/// A RAID backend: a named `<filestorage>` or `<zeoclient>` in a `<raidstorage>`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub name: String,
    pub pos: Position,
    pub kind: BackendKind,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum BackendKind {
    File(FileStorageConfig),
    ZeoClient(ZeoClientConfig),
}

/// `<filestorage>`: an embedded FileStorage (`Data.fs`).
#[derive(Debug, Clone, PartialEq)]
pub struct FileStorageConfig {
    /// `path` (required), relative to the current directory like ZEO.
    pub path: PathBuf,
    /// `blob-dir`: blob support when set.
    pub blob_dir: Option<PathBuf>,
    /// `create` (default false): truncate an existing file on open.
    pub create: bool,
    pub read_only: bool,
    /// `quota`: maximum size of the storage file in bytes.
    pub quota: Option<u64>,
    /// `pack-gc` (default true): garbage-collect unreachable objects on pack.
    pub pack_gc: bool,
    /// `pack-keep-old` (default true): keep `Data.fs.old` after packing.
    pub pack_keep_old: bool,
    /// `vote-fsync` (zeoraid's, default true): also fsync the voted transaction
    /// at vote, not only after the status byte is flipped at finish.
    pub vote_fsync: bool,
    /// Keys accepted but not supported (`packer`), raw.
    pub unsupported: Vec<(String, String)>,
}

/// `<zeoclient>` (alias `<clientstorage>`): a remote ZEO server as a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeoClientConfig {
    /// `server` (required, may repeat): addresses tried in order.
    pub servers: Vec<SocketAddress>,
    /// `storage` (default "1"): the storage name on that server.
    pub storage: String,
    pub read_only: bool,
    /// `wait` (default true): wait for the connection at startup.
    pub wait: bool,
    /// `wait-timeout` (default 30s): how long to wait for a connection.
    pub wait_timeout: Duration,
    /// `blob-dir`: the blob directory (a cache, or shared with the server).
    pub blob_dir: Option<PathBuf>,
    /// `shared-blob-dir` (default false): `blob-dir` is the server's own directory.
    pub shared_blob_dir: bool,
    /// `blob-cache-size` (default 1GB): the blob cache is pruned (least recently
    /// used first) to stay near this size.
    pub blob_cache_size: u64,
    /// `blob-cache-size-check` (default 10, below 100): percent of
    /// `blob-cache-size` downloaded between pruning passes.
    pub blob_cache_size_check: u8,
    /// `cache-size` (default 20MB, ZEO's): the in-memory object cache; 0
    /// disables it.
    pub cache_size: u64,
    /// `timeout` (zeoraid; default the RAID's `timeout`, else 60s): per call.
    pub timeout: Duration,
    /// `connect-timeout` (zeoraid; default 10s).
    pub connect_timeout: Duration,
    pub ssl: Option<SslConfig>,
    /// Keys accepted but not supported (cache settings, polling, auth…), raw.
    pub unsupported: Vec<(String, String)>,
}

/// `<raidstorage>`: one storage mirrored onto several backends.
#[derive(Debug, Clone, PartialEq)]
pub struct RaidConfig {
    pub read_only: bool,
    pub cluster_mode: ClusterMode,
    pub fail_mode: FailMode,
    pub blob_dir: Option<PathBuf>,
    pub shared_blob_dir: bool,
    pub read_policy: ReadPolicy,
    /// `recovery-rate`: bytes per second copied when recovering a backend.
    pub recovery_rate: Option<u64>,
    /// `timeout` (default 60s): default per-call timeout of `<zeoclient>` backends.
    pub timeout: Duration,
    /// `state-file` (zeoraid): where the RAID records which backends hold every
    /// acknowledged commit; default `<config file>.<storage name>.state`.
    pub state_file: PathBuf,
    /// One or more backends, names unique.
    pub backends: Vec<BackendConfig>,
}

/// `cluster-mode` (gocept.zeoraid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMode {
    /// One zeoraid server owns the backends (default).
    Single,
    /// Several zeoraid servers share backends (gocept.zeoraid's meaning): the RAID
    /// fails once no more than half of its backends are optimal, reads are voted
    /// unless `read-policy` says otherwise.
    Coop,
}

/// `fail-mode` (gocept.zeoraid): what to do when the last backend is degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Close the storage (default).
    Close,
    /// Keep serving reads.
    ReadOnly,
}

/// `read-policy` (zeoraid): which backend serves a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPolicy {
    RoundRobin,
    LeastOutstanding,
    /// Every optimal backend is asked and the answers compared (the default in
    /// `cluster-mode coop`, as gocept.zeoraid read there).
    Vote,
}

/// An `<eventlog>` or `<logger>` section.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub pos: Position,
    pub section_type: String,
    /// `level`, lowercased, as written (not applied yet).
    pub level: Option<String>,
}

// ---------------------------------------------------------------- key tables

/// The most `worker-threads` accepted: each is an OS thread started at once.
const MAX_WORKER_THREADS: u64 = 1024;

const ZEO_KEYS: &[KeySpec] = &[
    key("address", Kind::BindAddr),
    key("admin-address", Kind::BindAddr),
    key("read-only", Kind::Bool),
    key("invalidation-queue-size", Kind::Count),
    key("transaction-timeout", Kind::Interval),
    key("pid-filename", Kind::Path),
    key("client-conflict-resolution", Kind::Bool),
    key("invalidation-age", Kind::Float),
    key("msgpack", Kind::Bool),
    key("management-methods", Kind::Bool),
    key("worker-threads", Kind::Count),
];

const SERVER_SSL_KEYS: &[KeySpec] = &[
    key("certificate", Kind::Path),
    key("key", Kind::Path),
    key("password-function", Kind::Str),
    key("authenticate", Kind::Str),
];

const CLIENT_SSL_KEYS: &[KeySpec] = &[
    key("certificate", Kind::Path),
    key("key", Kind::Path),
    key("password-function", Kind::Str),
    key("authenticate", Kind::Str),
    key("check-hostname", Kind::Bool),
    key("server-hostname", Kind::Str),
];

const FILESTORAGE_KEYS: &[KeySpec] = &[
    key("path", Kind::Path),
    key("blob-dir", Kind::Path),
    key("create", Kind::Bool),
    key("read-only", Kind::Bool),
    key("quota", Kind::Size),
    key("pack-gc", Kind::Bool),
    key("pack-keep-old", Kind::Bool),
    // zeoraid's own: Python's FileStorage has no such choice (it fsyncs once).
    key("vote-fsync", Kind::Bool),
    ignored("packer", Kind::Str),
];

/// ZODB's `<zeoclient>` and ZEO's `<clientstorage>` keys, plus zeoraid's.
const ZEOCLIENT_KEYS: &[KeySpec] = &[
    multikey("server", Kind::ConnectAddr),
    key("storage", Kind::Str),
    key("read-only", Kind::Bool),
    key("wait", Kind::Bool),
    key("wait-timeout", Kind::Interval),
    key("blob-dir", Kind::Path),
    key("shared-blob-dir", Kind::Bool),
    key("blob-cache-size", Kind::Size),
    key("blob-cache-size-check", Kind::Count),
    key("cache-size", Kind::Size),
    key("timeout", Kind::Interval),
    key("connect-timeout", Kind::Interval),
    ignored("name", Kind::Str),
    ignored("cache-path", Kind::Str),
    ignored("client", Kind::Str),
    ignored("var", Kind::Str),
    ignored("read-only-fallback", Kind::Bool),
    ignored("server-sync", Kind::Bool),
    ignored("client-label", Kind::Str),
    ignored("min-disconnect-poll", Kind::Int),
    ignored("max-disconnect-poll", Kind::Int),
    ignored("username", Kind::Str),
    ignored("password", Kind::Str),
    ignored("realm", Kind::Str),
    ignored("drop-cache-rather-verify", Kind::Bool),
];

const RAID_KEYS: &[KeySpec] = &[
    key("read-only", Kind::Bool),
    key("cluster-mode", Kind::Choice(&["single", "coop"])),
    key("fail-mode", Kind::Choice(&["close", "read-only"])),
    key("blob-dir", Kind::Path),
    key("shared-blob-dir", Kind::Bool),
    key(
        "read-policy",
        Kind::Choice(&["round-robin", "least-outstanding", "vote"]),
    ),
    key("recovery-rate", Kind::Size),
    key("timeout", Kind::Interval),
    key("state-file", Kind::Path),
];

/// Section types that may hold a served storage (top level) or a backend (RAID).
const STORAGE_TYPES: &str = "<filestorage>, <zeoclient>, <raidstorage>";
const LOG_TYPES: &[&str] = &["eventlog", "logger"];

// ------------------------------------------------------------------- building

/// Build and check the typed configuration from a parsed document.
pub fn from_document(doc: &Document, file: &Path) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    for import in &doc.imports {
        let known = KNOWN_IMPORTS
            .iter()
            .any(|k| import.package == *k || import.package.starts_with(&format!("{k}.")));
        if !known {
            warnings.push(Warning {
                pos: import.pos.clone(),
                message: format!(
                    "%import {} is ignored: zeoraid only knows the sections of \
                     gocept.zeoraid, ZEO and ZODB",
                    import.package
                ),
            });
        }
    }
    if let Some(kv) = doc.root.keys().next() {
        return Err(kv.pos.error(format!(
            "key '{}' outside of any section (it belongs in <zeo> or a storage section)",
            kv.key
        )));
    }

    let mut zeo: Option<ZeoConfig> = None;
    let mut storages: Vec<StorageConfig> = Vec::new();
    let mut logging = Vec::new();
    for section in doc.root.sections() {
        match section.type_name.as_str() {
            "zeo" => {
                if let Some(first) = &zeo {
                    return Err(section.pos.error(format!(
                        "a second <zeo> section (the first is at {})",
                        first.pos
                    )));
                }
                zeo = Some(zeo_config(section, &mut warnings)?);
            }
            t if LOG_TYPES.contains(&t) => logging.push(log_config(section, &mut warnings)),
            "runner" => warnings.push(Warning {
                pos: section.pos.clone(),
                message: "<runner> (zdaemon) is ignored: run zeoraid under your service manager"
                    .into(),
            }),
            _ => {
                let name = section.name.clone();
                let kind = storage_kind(section, DEFAULT_CALL_TIMEOUT, &mut warnings)?;
                storages.push(StorageConfig {
                    name: name.unwrap_or_else(|| DEFAULT_STORAGE_NAME.to_string()),
                    pos: section.pos.clone(),
                    kind,
                });
            }
        }
    }
    let zeo = zeo
        .ok_or_else(|| ConfigError::file(file, "no <zeo> section (it needs at least 'address')"))?;
    if storages.is_empty() {
        return Err(ConfigError::file(
            file,
            format!("no storage section: add one of {STORAGE_TYPES}"),
        ));
    }
    check_unique(
        storages.iter().map(|s| (s.name.as_str(), &s.pos)),
        "storage",
    )?;
    Ok(Config {
        file: file.to_path_buf(),
        zeo,
        storages,
        logging,
        imports: doc.imports.clone(),
        warnings,
    })
}

/// Names must be unique; the error points at the second use.
fn check_unique<'a>(
    names: impl Iterator<Item = (&'a str, &'a Position)>,
    what: &str,
) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, &Position> = HashMap::new();
    for (name, pos) in names {
        if let Some(first) = seen.insert(name, pos) {
            let hint = if what == "storage" {
                format!(" (an unnamed storage section is named \"{DEFAULT_STORAGE_NAME}\")")
            } else {
                String::new()
            };
            return Err(pos.error(format!(
                "{what} name '{name}' is already used at line {}{hint}; names are case-insensitive",
                first.line
            )));
        }
    }
    Ok(())
}

/// Subsections allowed in `section`; any other is an error.
fn check_subsections(section: &Section, allowed: &[&str]) -> Result<(), ConfigError> {
    for sub in section.sections() {
        if !allowed.contains(&sub.type_name.as_str()) {
            let expected = if allowed.is_empty() {
                "no subsections are allowed here".to_string()
            } else {
                let list: Vec<String> = allowed.iter().map(|t| format!("<{t}>")).collect();
                format!("expected {}", list.join(", "))
            };
            return Err(sub.pos.error(format!(
                "unexpected section {} inside {}: {expected}",
                sub.header(),
                section.header()
            )));
        }
    }
    Ok(())
}

/// The single `<ssl>` subsection of `section`, if any.
fn ssl_config(
    section: &Section,
    specs: &[KeySpec],
    server: bool,
    warnings: &mut Vec<Warning>,
) -> Result<Option<SslConfig>, ConfigError> {
    let mut ssls = section.sections().filter(|s| s.type_name == "ssl");
    let Some(ssl) = ssls.next() else {
        return Ok(None);
    };
    if let Some(second) = ssls.next() {
        return Err(second.pos.error(format!(
            "a second <ssl> section in {} (the first is at line {})",
            section.header(),
            ssl.pos.line
        )));
    }
    check_subsections(ssl, &[])?;
    let keys = Keys::read(ssl, specs, warnings)?;
    let authenticate = keys.string("authenticate");
    if server && authenticate.is_none() {
        return Err(keys.missing("authenticate"));
    }
    Ok(Some(SslConfig {
        pos: ssl.pos.clone(),
        certificate: keys
            .path("certificate")
            .ok_or_else(|| keys.missing("certificate"))?,
        key: keys.path("key"),
        password_function: keys.string("password-function"),
        authenticate,
        check_hostname: (!server).then(|| keys.bool("check-hostname").unwrap_or(true)),
        server_hostname: keys.string("server-hostname"),
    }))
}

fn zeo_config(section: &Section, warnings: &mut Vec<Warning>) -> Result<ZeoConfig, ConfigError> {
    check_subsections(section, &["ssl"])?;
    let keys = Keys::read(section, ZEO_KEYS, warnings)?;
    Ok(ZeoConfig {
        pos: section.pos.clone(),
        address: keys
            .addr("address")
            .ok_or_else(|| keys.missing("address"))?,
        admin_address: keys.addr("admin-address"),
        read_only: keys.bool("read-only").unwrap_or(false),
        invalidation_queue_size: keys.count("invalidation-queue-size").unwrap_or(100),
        transaction_timeout: keys.interval("transaction-timeout"),
        pid_filename: keys.path("pid-filename"),
        client_conflict_resolution: keys.bool("client-conflict-resolution").unwrap_or(false),
        invalidation_age: keys
            .float("invalidation-age")
            .filter(|secs| *secs > 0.0 && secs.is_finite())
            .map(Duration::from_secs_f64),
        msgpack: keys.bool("msgpack").unwrap_or(false),
        worker_threads: keys
            .count_in("worker-threads", 1..=MAX_WORKER_THREADS)?
            .and_then(|n| usize::try_from(n).ok()),
        ssl: ssl_config(section, SERVER_SSL_KEYS, true, warnings)?,
        management_methods: keys.bool("management-methods"),
        unsupported: keys.raw_ignored(ZEO_KEYS),
    })
}

/// A storage section at the top level (`default_timeout` is 60s there).
fn storage_kind(
    section: &Section,
    default_timeout: Duration,
    warnings: &mut Vec<Warning>,
) -> Result<StorageKind, ConfigError> {
    Ok(match section.type_name.as_str() {
        "raidstorage" => StorageKind::Raid(raid_config(section, warnings)?),
        _ => match backend_kind(section, default_timeout, warnings)? {
            BackendKind::File(fs) => StorageKind::File(fs),
            BackendKind::ZeoClient(zc) => StorageKind::ZeoClient(zc),
        },
    })
}

/// A `<filestorage>` or `<zeoclient>` section, at the top level or in a RAID.
fn backend_kind(
    section: &Section,
    default_timeout: Duration,
    warnings: &mut Vec<Warning>,
) -> Result<BackendKind, ConfigError> {
    match section.type_name.as_str() {
        "filestorage" => Ok(BackendKind::File(filestorage_config(section, warnings)?)),
        "zeoclient" | "clientstorage" => Ok(BackendKind::ZeoClient(zeoclient_config(
            section,
            default_timeout,
            warnings,
        )?)),
        other => Err(section.pos.error(format!(
            "unknown section type <{other}>: expected <zeo>, {STORAGE_TYPES}, <eventlog> or <logger>{}",
            if matches!(other, "mappingstorage" | "demostorage" | "blobstorage" | "zodb") {
                " (other ZODB storage types are not supported by zeoraid)"
            } else {
                ""
            }
        ))),
    }
}

fn filestorage_config(
    section: &Section,
    warnings: &mut Vec<Warning>,
) -> Result<FileStorageConfig, ConfigError> {
    check_subsections(section, &[])?;
    let keys = Keys::read(section, FILESTORAGE_KEYS, warnings)?;
    Ok(FileStorageConfig {
        path: keys.path("path").ok_or_else(|| keys.missing("path"))?,
        blob_dir: keys.path("blob-dir"),
        create: keys.bool("create").unwrap_or(false),
        read_only: keys.bool("read-only").unwrap_or(false),
        quota: keys.size("quota"),
        pack_gc: keys.bool("pack-gc").unwrap_or(true),
        pack_keep_old: keys.bool("pack-keep-old").unwrap_or(true),
        vote_fsync: keys.bool("vote-fsync").unwrap_or(true),
        unsupported: keys.raw_ignored(FILESTORAGE_KEYS),
    })
}

fn zeoclient_config(
    section: &Section,
    default_timeout: Duration,
    warnings: &mut Vec<Warning>,
) -> Result<ZeoClientConfig, ConfigError> {
    check_subsections(section, &["ssl"])?;
    let keys = Keys::read(section, ZEOCLIENT_KEYS, warnings)?;
    let servers = keys.addrs("server");
    if servers.is_empty() {
        return Err(keys.missing("server"));
    }
    let blob_cache_size_check = match keys.count("blob-cache-size-check") {
        None => zeoraid_zeo_client::options::DEFAULT_BLOB_CACHE_SIZE_CHECK,
        Some(n) => u8::try_from(n).ok().filter(|&n| n < 100).ok_or_else(|| {
            section.pos.error(format!(
                "{}: blob-cache-size-check is a percentage below 100, not {n}",
                section.header()
            ))
        })?,
    };
    Ok(ZeoClientConfig {
        servers,
        storage: keys
            .string("storage")
            .unwrap_or_else(|| DEFAULT_STORAGE_NAME.to_string()),
        read_only: keys.bool("read-only").unwrap_or(false),
        wait: keys.bool("wait").unwrap_or(true),
        wait_timeout: keys
            .interval("wait-timeout")
            .unwrap_or(Duration::from_secs(30)),
        blob_dir: keys.path("blob-dir"),
        shared_blob_dir: keys.bool("shared-blob-dir").unwrap_or(false),
        blob_cache_size: keys
            .size("blob-cache-size")
            .unwrap_or(zeoraid_zeo_client::options::DEFAULT_BLOB_CACHE_SIZE),
        blob_cache_size_check,
        cache_size: keys
            .size("cache-size")
            .unwrap_or(zeoraid_zeo_client::options::DEFAULT_CACHE_SIZE),
        timeout: keys.interval("timeout").unwrap_or(default_timeout),
        connect_timeout: keys
            .interval("connect-timeout")
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        ssl: ssl_config(section, CLIENT_SSL_KEYS, false, warnings)?,
        unsupported: keys.raw_ignored(ZEOCLIENT_KEYS),
    })
}

fn raid_config(section: &Section, warnings: &mut Vec<Warning>) -> Result<RaidConfig, ConfigError> {
    check_subsections(section, &["filestorage", "zeoclient", "clientstorage"])?;
    let keys = Keys::read(section, RAID_KEYS, warnings)?;
    let timeout = keys.interval("timeout").unwrap_or(DEFAULT_CALL_TIMEOUT);
    let mut backends = Vec::new();
    for sub in section.sections() {
        let name = sub.name.clone().ok_or_else(|| {
            sub.pos.error(format!(
                "backend {} in {} needs a name, e.g. <{} a>",
                sub.header(),
                section.header(),
                sub.type_name
            ))
        })?;
        backends.push(BackendConfig {
            name,
            pos: sub.pos.clone(),
            kind: backend_kind(sub, timeout, warnings)?,
        });
    }
    if backends.is_empty() {
        return Err(section.pos.error(format!(
            "{} has no backend: add <filestorage NAME> or <zeoclient NAME> sections",
            section.header()
        )));
    }
    check_unique(
        backends.iter().map(|b| (b.name.as_str(), &b.pos)),
        "backend",
    )?;
    let cluster_mode = match keys.string("cluster-mode").as_deref() {
        Some("coop") => ClusterMode::Coop,
        _ => ClusterMode::Single,
    };
    let fail_mode = match keys.string("fail-mode").as_deref() {
        Some("read-only") => FailMode::ReadOnly,
        _ => FailMode::Close,
    };
    let read_policy = match keys.string("read-policy").as_deref() {
        Some("least-outstanding") => ReadPolicy::LeastOutstanding,
        Some("vote") => ReadPolicy::Vote,
        Some(_) => ReadPolicy::RoundRobin,
        None if cluster_mode == ClusterMode::Coop => ReadPolicy::Vote,
        None => ReadPolicy::RoundRobin,
    };
    Ok(RaidConfig {
        read_only: keys.bool("read-only").unwrap_or(false),
        cluster_mode,
        fail_mode,
        blob_dir: keys.path("blob-dir"),
        shared_blob_dir: keys.bool("shared-blob-dir").unwrap_or(false),
        read_policy,
        recovery_rate: keys.size("recovery-rate"),
        timeout,
        state_file: keys
            .path("state-file")
            .unwrap_or_else(|| default_state_file(section)),
        backends,
    })
}

/// `<config file>.<storage name>.state`, next to the configuration file.
fn default_state_file(section: &Section) -> PathBuf {
    let mut name = section.pos.file.as_os_str().to_owned();
    name.push(format!(
        ".{}.state",
        section.name.as_deref().unwrap_or("raid")
    ));
    PathBuf::from(name)
}

/// Logging sections are kept leniently: any keys, any handler subsections; only
/// `level` is read.
fn log_config(section: &Section, warnings: &mut Vec<Warning>) -> LogConfig {
    let handlers: Vec<String> = section.sections().map(Section::header).collect();
    warnings.push(Warning {
        pos: section.pos.clone(),
        message: format!(
            "{} is ignored{}: zeoraid logs to stderr (set the level with -v or ZEORAID_LOG)",
            section.header(),
            if handlers.is_empty() {
                String::new()
            } else {
                format!(" with its handlers {}", handlers.join(", "))
            }
        ),
    });
    LogConfig {
        pos: section.pos.clone(),
        section_type: section.type_name.clone(),
        level: section
            .keys()
            .find(|kv| kv.key == "level")
            .map(|kv| kv.value.to_ascii_lowercase()),
    }
}

impl ClusterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterMode::Single => "single",
            ClusterMode::Coop => "coop",
        }
    }
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Close => "close",
            FailMode::ReadOnly => "read-only",
        }
    }
}

impl ReadPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadPolicy::RoundRobin => "round-robin",
            ReadPolicy::LeastOutstanding => "least-outstanding",
            ReadPolicy::Vote => "vote",
        }
    }
}

//! What a ZEO client is told: the server address(es), the storage name, timeouts,
//! blobs and TLS, mirroring the keys of ZEO's `<clientstorage>` section where they
//! apply, plus the knobs a RAID backend driver needs (per-call and pack timeouts,
//! reconnect backoff, heartbeats).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ClientError;

/// Default per-call timeout (`timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default connect timeout (`connect-timeout`), per address and attempt, covering the
/// TCP/TLS connect, the handshake, `register` and `get_info`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time `connect` waits for the first connection when `wait` is set.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout of `pack`, which may legitimately take a long time.
pub const DEFAULT_PACK_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Default heartbeat interval (ZEO clients send one every 60 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// Default first reconnect delay; doubled after every failed attempt.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(250);
/// Default cap on the reconnect delay.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(10);
/// Calls slower than this are logged at WARN.
pub const DEFAULT_SLOW_CALL: Duration = Duration::from_secs(2);
/// Default `blob-cache-size`: ZEO's default is no limit, which lets the cache of
/// a long-running RAID grow without end.
pub const DEFAULT_BLOB_CACHE_SIZE: u64 = 1 << 30;
/// Default `blob-cache-size-check` (percent of the size; ZEO's default).
pub const DEFAULT_BLOB_CACHE_SIZE_CHECK: u8 = 10;
/// A cache file used this recently is never pruned (its path was just handed out).
pub const DEFAULT_BLOB_CACHE_GRACE: Duration = Duration::from_secs(10);
/// Default `cache-size` of the object cache: ZEO's (`20MB`, ZConfig's byte-size).
pub const DEFAULT_CACHE_SIZE: u64 = 20 << 20;
/// Largest frame accepted from a server.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 256 * 1024 * 1024;

/// Where a ZEO server listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServerAddress {
    /// A TCP host (name, IPv4 or IPv6 without brackets) and port.
    Tcp { host: String, port: u16 },
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl ServerAddress {
    /// A TCP address; an empty host means `127.0.0.1`, as ZEO does for a bare port.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        let host = host.into();
        let host = if host.is_empty() {
            "127.0.0.1".to_owned()
        } else {
            host
        };
        ServerAddress::Tcp { host, port }
    }

    pub fn unix(path: impl Into<PathBuf>) -> Self {
        ServerAddress::Unix(path.into())
    }

    /// Parses ZEO's address syntax: `host:port`, `[v6]:port`, a bare `port`
    /// (127.0.0.1), or anything containing `/` as a Unix socket path.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let text = text.trim();
        if text.contains('/') {
            return Ok(ServerAddress::Unix(PathBuf::from(text)));
        }
        let bad = || ClientError::Config(format!("bad server address {text:?}"));
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            (host, port)
        } else if let Some((host, port)) = text.rsplit_once(':') {
            (host, port)
        } else {
            ("", text)
        };
        let port = port.parse::<u16>().map_err(|_| bad())?;
        Ok(ServerAddress::tcp(host, port))
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Tcp { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            ServerAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddress::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The `<ssl>` subsection of `<clientstorage>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the client certificate (chain). ZEO servers require one.
    pub certificate: Option<PathBuf>,
    /// PEM file with the client's private key (unencrypted); defaults to
    /// `certificate` (a file holding both).
    pub key: Option<PathBuf>,
    /// `authenticate`: a PEM file or a directory of PEM files with the certificates
    /// the server's certificate must verify against. Required (the system trust
    /// store is not consulted).
    pub authenticate: Option<PathBuf>,
    /// `check-hostname` (default true): the server certificate must name the host.
    pub check_hostname: bool,
    /// `server-hostname`: the name to check (and send as SNI) instead of the host
    /// of the address.
    pub server_hostname: Option<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            certificate: None,
            key: None,
            authenticate: None,
            check_hostname: true,
            server_hostname: None,
        }
    }
}

/// Everything a [`crate::ZeoClient`] needs to know.
#[derive(Clone, Debug)]
pub struct ZeoClientOptions {
    /// `server` (may repeat): addresses tried in order on every (re)connect.
    pub servers: Vec<ServerAddress>,
    /// `storage` (default `"1"`): the storage name `register` asks for.
    pub storage: String,
    /// `read-only`: register read-only; votes, `new_oids` are refused locally.
    pub read_only: bool,
    /// `wait` (default true): `connect` waits up to `wait_timeout` for the first
    /// connection and fails if there is none; otherwise it returns at once and the
    /// client connects in the background.
    pub wait: bool,
    /// `wait-timeout`.
    pub wait_timeout: Duration,
    /// `blob-dir`: the blob cache (or, with `shared_blob_dir`, the server's own blob
    /// directory). Without it blobs are not supported.
    pub blob_dir: Option<PathBuf>,
    /// `shared-blob-dir`: `blob_dir` is the server's blob directory (same machine or
    /// a shared file system): blobs are read there directly and stored with
    /// `storeBlobShared`.
    pub shared_blob_dir: bool,
    /// `blob-cache-size` (default 1 GiB): the blob cache is pruned, least recently
    /// used files first, to stay near this size. `None`: never pruned. Not used
    /// with `shared_blob_dir`.
    pub blob_cache_size: Option<u64>,
    /// `blob-cache-size-check` (percent, default 10, below 100): a pruning pass
    /// runs after this share of `blob_cache_size` has been downloaded, and prunes
    /// down to `blob_cache_size` minus that share.
    pub blob_cache_size_check: u8,
    /// Cache files used within this time are never pruned (default 10 s).
    pub blob_cache_grace: Duration,
    /// `cache-size` (default 20 MiB, ZEO's): the in-memory object cache keeps
    /// loaded revisions up to this many bytes (data plus a fixed overhead per
    /// revision), least recently used first out. 0 disables it.
    pub cache_size: u64,
    /// `timeout`: the longest any call may take before it fails with
    /// `StorageError::Timeout` (except `pack`).
    pub timeout: Duration,
    /// `connect-timeout`: per connection attempt (connect + TLS + handshake +
    /// register + get_info).
    pub connect_timeout: Duration,
    /// Timeout of `pack` (default 6 h).
    pub pack_timeout: Duration,
    /// Heartbeat frames are written this often.
    pub heartbeat_interval: Duration,
    /// First reconnect delay, doubled after each failed attempt …
    pub reconnect_min: Duration,
    /// … up to this.
    pub reconnect_max: Duration,
    /// Calls slower than this are logged.
    pub slow_call: Duration,
    /// Largest frame accepted from the server; a larger one drops the connection.
    pub max_frame_size: usize,
    /// `<ssl>`: TLS to the server.
    pub tls: Option<TlsOptions>,
}

impl ZeoClientOptions {
    /// Options for one server with every default (`storage` "1", writable, wait,
    /// no blobs, a 20 MiB object cache, no TLS).
    pub fn new(server: ServerAddress) -> Self {
        ZeoClientOptions {
            servers: vec![server],
            storage: "1".to_owned(),
            read_only: false,
            wait: true,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            blob_dir: None,
            shared_blob_dir: false,
            blob_cache_size: Some(DEFAULT_BLOB_CACHE_SIZE),
            blob_cache_size_check: DEFAULT_BLOB_CACHE_SIZE_CHECK,
            blob_cache_grace: DEFAULT_BLOB_CACHE_GRACE,
            cache_size: DEFAULT_CACHE_SIZE,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            pack_timeout: DEFAULT_PACK_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            slow_call: DEFAULT_SLOW_CALL,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            tls: None,
        }
    }

    /// Options from the plain values of a `<zeoclient>` section (what the
    /// configuration model holds); everything else keeps its default.
    #[allow(clippy::too_many_arguments)]
    pub fn from_values(
        servers: Vec<ServerAddress>,
        storage: impl Into<String>,
        read_only: bool,
        wait: bool,
        wait_timeout: Duration,
        blob_dir: Option<PathBuf>,
        shared_blob_dir: bool,
        timeout: Duration,
        connect_timeout: Duration,
        tls: Option<TlsOptions>,
    ) -> Self {
        let mut options = ZeoClientOptions::new(ServerAddress::tcp("", 0));
        options.servers = servers;
        options.storage = storage.into();
        options.read_only = read_only;
        options.wait = wait;
        options.wait_timeout = wait_timeout;
        options.blob_dir = blob_dir;
        options.shared_blob_dir = shared_blob_dir;
        options.timeout = timeout;
        options.connect_timeout = connect_timeout;
        options.tls = tls;
        options
    }

    pub fn storage(mut self, name: impl Into<String>) -> Self {
        self.storage = name.into();
        self
    }

    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    pub fn wait(mut self, wait: bool) -> Self {
        self.wait = wait;
        self
    }

    pub fn blob_dir(mut self, dir: impl Into<PathBuf>, shared: bool) -> Self {
        self.blob_dir = Some(dir.into());
        self.shared_blob_dir = shared;
        self
    }

    /// `blob-cache-size` (`None`: unlimited) and `blob-cache-size-check` (percent).
    pub fn blob_cache_size(mut self, size: Option<u64>, check_percent: u8) -> Self {
        self.blob_cache_size = size;
        self.blob_cache_size_check = check_percent;
        self
    }

    /// How long a just-used cache file is spared from pruning.
    pub fn blob_cache_grace(mut self, grace: Duration) -> Self {
        self.blob_cache_grace = grace;
        self
    }

    /// `cache-size`: the object cache's size in bytes (0: no object cache).
    pub fn cache_size(mut self, bytes: u64) -> Self {
        self.cache_size = bytes;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn pack_timeout(mut self, timeout: Duration) -> Self {
        self.pack_timeout = timeout;
        self
    }

    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.servers.is_empty() {
            return Err(ClientError::Config("no server address".into()));
        }
        if self.shared_blob_dir && self.blob_dir.is_none() {
            return Err(ClientError::Config("shared-blob-dir needs blob-dir".into()));
        }
        if self.blob_cache_size_check >= 100 {
            return Err(ClientError::Config(format!(
                "blob-cache-size-check must be below 100 (percent), not {}",
                self.blob_cache_size_check
            )));
        }
        for (what, d) in [
            ("timeout", self.timeout),
            ("connect-timeout", self.connect_timeout),
            ("pack timeout", self.pack_timeout),
            ("heartbeat interval", self.heartbeat_interval),
        ] {
            if d.is_zero() {
                return Err(ClientError::Config(format!("{what} must not be zero")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parse_addresses() {
        assert_eq!(
            ServerAddress::parse("db1:8100").unwrap(),
            ServerAddress::tcp("db1", 8100)
        );
        assert_eq!(
            ServerAddress::parse("8100").unwrap(),
            ServerAddress::tcp("127.0.0.1", 8100)
        );
        assert_eq!(
            ServerAddress::parse("[::1]:8100").unwrap(),
            ServerAddress::tcp("::1", 8100)
        );
        assert_eq!(
            ServerAddress::parse("/var/run/zeo.sock").unwrap(),
            ServerAddress::unix("/var/run/zeo.sock")
        );
        assert!(ServerAddress::parse("host:port").is_err());
        assert_eq!(ServerAddress::tcp("::1", 1).to_string(), "[::1]:1");
    }

    #[test]
    fn validate() {
        let o = ZeoClientOptions::new(ServerAddress::tcp("", 1));
        assert!(o.validate().is_ok());
        assert!(o.clone().timeout(Duration::ZERO).validate().is_err());
        assert!(o.clone().blob_cache_size(Some(1), 100).validate().is_err());
        assert!(o.clone().blob_cache_size(None, 99).validate().is_ok());
        let mut o2 = o.clone();
        o2.servers.clear();
        assert!(o2.validate().is_err());
    }
}

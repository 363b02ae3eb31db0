//! The management contract: what the admin API asks of the server
//! ([`Management`]) and the snapshot it shows ([`ServerSnapshot`]).
//!
//! The server implements [`Management`] once (see `admin::raid` for RAID and
//! plain storages); the HTTP layer, the metrics, the status page and the CLI
//! only see these types. They are serialised as the JSON of `GET /details`, so
//! the CLI reads back exactly what the server wrote.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What the admin API can ask of a running server.
///
/// `recover`, `reload` and `verify` have default implementations that refuse
/// with [`ManagementError::NotImplemented`] (for implementations that cannot do
/// them, e.g. test doubles); [`super::RaidManagement`] implements them.
#[async_trait]
pub trait Management: Send + Sync + 'static {
    /// The state of every storage and backend now.
    async fn snapshot(&self) -> ServerSnapshot;

    /// Takes `backend` of the RAID `storage` out of service (it becomes
    /// degraded, reason "disabled by operator"). Refused
    /// ([`ManagementError::Refused`]) for the last optimal backend and for
    /// storages that are not RAIDs.
    async fn disable(&self, storage: &str, backend: &str) -> Result<(), ManagementError>;

    /// Starts rebuilding a degraded `backend` of `storage` online and returns
    /// at once; the progress shows in the snapshot. Refused when it cannot
    /// start (optimal backend, another recovery or a pack running, …).
    async fn recover(&self, storage: &str, backend: &str) -> Result<(), ManagementError> {
        let _ = (storage, backend);
        Err(ManagementError::NotImplemented("recover"))
    }

    /// Re-reads the configuration file and adds or removes backends; returns
    /// what changed. A refused reload changes nothing.
    async fn reload(&self) -> Result<String, ManagementError> {
        Err(ManagementError::NotImplemented("reload"))
    }

    /// Compares the backends of `storage` record by record; returns the report
    /// when they are identical, [`ManagementError::Mismatch`] with the first
    /// difference otherwise.
    async fn verify(&self, storage: &str) -> Result<String, ManagementError> {
        let _ = storage;
        Err(ManagementError::NotImplemented("verify"))
    }
}

/// Why a management action did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagementError {
    #[error("no storage is named {0:?}")]
    UnknownStorage(String),

    #[error("storage {storage:?} has no backend named {backend:?}")]
    UnknownBackend { storage: String, backend: String },

    /// The action is understood but not allowed now (the last optimal
    /// backend, a storage that is not a RAID…); the message says why.
    #[error("{0}")]
    Refused(String),

    /// The action is part of the contract but not built yet.
    #[error("{0} is not available yet")]
    NotImplemented(&'static str),

    /// The action was tried and failed.
    #[error("{0}")]
    Failed(String),

    /// `verify` found backends that differ (the message says where).
    #[error("{0}")]
    Mismatch(String),
}

/// Every storage the server serves, in configuration order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSnapshot {
    /// The zeoraid version serving.
    #[serde(default)]
    pub version: String,
    pub storages: Vec<StorageSnapshot>,
}

impl ServerSnapshot {
    /// The worst status over all storages (`optimal` when there are none).
    pub fn status(&self) -> RaidStatus {
        self.storages
            .iter()
            .map(|s| s.status)
            .max_by_key(|s| s.severity())
            .unwrap_or(RaidStatus::Optimal)
    }

    pub fn storage(&self, name: &str) -> Option<&StorageSnapshot> {
        self.storages.iter().find(|s| s.name == name)
    }
}

/// One storage as clients see it: a RAID or a plain storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageSnapshot {
    /// The storage name clients ask for.
    pub name: String,
    pub kind: StorageKind,
    pub status: RaidStatus,
    /// A RAID's backends in configuration order; a plain storage has one
    /// backend of its own name, always optimal.
    pub backends: Vec<BackendSnapshot>,
}

/// What a storage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Raid,
    Filestorage,
    Zeoclient,
}

impl StorageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageKind::Raid => "raid",
            StorageKind::Filestorage => "filestorage",
            StorageKind::Zeoclient => "zeoclient",
        }
    }
}

/// The status of a storage (for a plain storage always `optimal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaidStatus {
    /// Every backend is optimal.
    Optimal,
    /// Some backend is not optimal, at least one is.
    Degraded,
    /// A backend is being recovered (and at least one is optimal).
    Recovering,
    /// No backend is optimal.
    Failed,
}

impl RaidStatus {
    pub const ALL: [RaidStatus; 4] = [
        RaidStatus::Optimal,
        RaidStatus::Degraded,
        RaidStatus::Recovering,
        RaidStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RaidStatus::Optimal => "optimal",
            RaidStatus::Degraded => "degraded",
            RaidStatus::Recovering => "recovering",
            RaidStatus::Failed => "failed",
        }
    }

    /// Orders statuses from best to worst: optimal, recovering, degraded,
    /// failed (the order of gocept.zeoraid's Nagios codes 0, 1, 2, 2).
    pub fn severity(self) -> u8 {
        match self {
            RaidStatus::Optimal => 0,
            RaidStatus::Recovering => 1,
            RaidStatus::Degraded => 2,
            RaidStatus::Failed => 3,
        }
    }
}

impl std::fmt::Display for RaidStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backend of a storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSnapshot {
    pub name: String,
    /// `"state": "optimal" | "degraded" | "recovering"`, with `reason` or
    /// `progress` beside it in the JSON.
    #[serde(flatten)]
    pub state: BackendState,
    /// The last transaction id this backend is known to hold, as 16 hex
    /// digits (`None` when unknown).
    pub last_tid: Option<String>,
    /// Call counters; `None` for storages that are not counted (plain
    /// storages outside a RAID).
    pub counters: Option<BackendCounters>,
}

/// The state of one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum BackendState {
    /// In service: takes every write, serves reads.
    Optimal,
    /// Out of service, with the reason it was taken out.
    Degraded { reason: String },
    /// Being rebuilt from an optimal backend.
    Recovering { progress: RecoveryProgress },
}

impl BackendState {
    /// The state's word: `optimal`, `degraded` or `recovering`.
    pub fn word(&self) -> &'static str {
        match self {
            BackendState::Optimal => "optimal",
            BackendState::Degraded { .. } => "degraded",
            BackendState::Recovering { .. } => "recovering",
        }
    }

    /// The words of every state, in a fixed order (one metrics series each).
    pub const WORDS: [&'static str; 3] = ["optimal", "degraded", "recovering"];

    /// The reason (degraded) or the progress (recovering), for humans; empty
    /// when optimal.
    pub fn detail(&self) -> String {
        match self {
            BackendState::Optimal => String::new(),
            BackendState::Degraded { reason } => reason.clone(),
            BackendState::Recovering { progress } => progress.to_string(),
        }
    }
}

/// How far a recovery has come.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoveryProgress {
    /// Transactions copied so far.
    pub transactions: u64,
    /// Transactions to copy in all, when known.
    pub transactions_total: Option<u64>,
    /// Bytes copied so far.
    pub bytes: u64,
    /// Bytes to copy in all, when known.
    pub bytes_total: Option<u64>,
    /// Estimated seconds until the recovery catches up, when known.
    pub eta_seconds: Option<u64>,
}

impl RecoveryProgress {
    /// Done so far, 0.0 to 1.0, when the total is known (by transactions).
    pub fn fraction(&self) -> Option<f64> {
        let total = self.transactions_total?;
        if total == 0 {
            return Some(1.0);
        }
        Some((self.transactions as f64 / total as f64).min(1.0))
    }
}

/// `12 of 40 transactions (30%), 1024 bytes of 4096, eta 20s`.
impl std::fmt::Display for RecoveryProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.transactions)?;
        if let Some(total) = self.transactions_total {
            write!(f, " of {total}")?;
        }
        write!(f, " transactions")?;
        if let Some(fraction) = self.fraction() {
            write!(f, " ({:.0}%)", fraction * 100.0)?;
        }
        write!(f, ", {}", self.bytes)?;
        if let Some(total) = self.bytes_total {
            write!(f, " of {total}")?;
        }
        write!(f, " bytes")?;
        if let Some(eta) = self.eta_seconds {
            write!(f, ", eta {eta}s")?;
        }
        Ok(())
    }
}

/// Counters of one backend since the server started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendCounters {
    /// Transactions this backend committed.
    pub commits: u64,
    /// Reads this backend answered.
    pub loads: u64,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Calls in progress now.
    pub in_flight: u64,
    /// Total time spent in reads, in seconds (divide by `loads` for the mean).
    pub read_seconds: f64,
    /// Total time spent in writes (new oids, vote, finish, abort, pack), in
    /// seconds.
    pub write_seconds: f64,
    /// The backend's object cache (a `<zeoclient>` with `cache-size` above 0);
    /// absent for a backend without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheCounters>,
}

/// A backend's object cache: loads it answered and missed since the server
/// started, and its size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub bytes: u64,
    pub capacity: u64,
}

/// A tid as 16 hex digits, the form of `last_tid`.
pub fn tid_hex(tid: zeoraid_storage::Tid) -> String {
    format!("{:016x}", tid.as_u64())
}

/// Parses `last_tid` back into a tid.
pub fn parse_tid(hex: &str) -> Option<zeoraid_storage::Tid> {
    u64::from_str_radix(hex, 16)
        .ok()
        .map(zeoraid_storage::Tid::from_u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn backend_json_is_flat() {
        let b = BackendSnapshot {
            name: "b".into(),
            state: BackendState::Degraded {
                reason: "vote failed: I/O".into(),
            },
            last_tid: Some("03d2a1b2c3d4e5f6".into()),
            counters: None,
        };
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "b", "state": "degraded", "reason": "vote failed: I/O",
                "last_tid": "03d2a1b2c3d4e5f6", "counters": null
            })
        );
        let back: BackendSnapshot = serde_json::from_value(json).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn recovering_round_trips() {
        let b = BackendSnapshot {
            name: "c".into(),
            state: BackendState::Recovering {
                progress: RecoveryProgress {
                    transactions: 12,
                    transactions_total: Some(40),
                    bytes: 1024,
                    bytes_total: None,
                    eta_seconds: Some(20),
                },
            },
            last_tid: None,
            counters: Some(BackendCounters {
                commits: 3,
                read_seconds: 0.25,
                ..BackendCounters::default()
            }),
        };
        let text = serde_json::to_string(&b).unwrap();
        assert!(text.contains(r#""state":"recovering","progress":{"transactions":12"#));
        assert_eq!(serde_json::from_str::<BackendSnapshot>(&text).unwrap(), b);
        assert_eq!(
            b.state.detail(),
            "12 of 40 transactions (30%), 1024 bytes, eta 20s"
        );
    }

    #[test]
    fn a_backend_cache_is_shown_only_where_there_is_one() {
        let with = BackendCounters {
            loads: 5,
            cache: Some(CacheCounters {
                hits: 3,
                misses: 2,
                bytes: 640,
                capacity: 20_000_000,
            }),
            ..BackendCounters::default()
        };
        let text = serde_json::to_string(&with).unwrap();
        assert!(
            text.contains(r#""cache":{"hits":3,"misses":2,"bytes":640,"capacity":20000000}"#),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<BackendCounters>(&text).unwrap(),
            with
        );
        let without = serde_json::to_string(&BackendCounters::default()).unwrap();
        assert!(!without.contains("cache"), "{without}");
        // What a server without cache counters sends still reads.
        assert_eq!(
            serde_json::from_str::<BackendCounters>(&without).unwrap(),
            BackendCounters::default()
        );
    }

    #[test]
    fn worst_status_wins() {
        let storage = |name: &str, status| StorageSnapshot {
            name: name.into(),
            kind: StorageKind::Raid,
            status,
            backends: vec![],
        };
        let mut snap = ServerSnapshot {
            version: String::new(),
            storages: vec![],
        };
        assert_eq!(snap.status(), RaidStatus::Optimal);
        snap.storages.push(storage("1", RaidStatus::Optimal));
        snap.storages.push(storage("2", RaidStatus::Recovering));
        assert_eq!(snap.status(), RaidStatus::Recovering);
        snap.storages.push(storage("3", RaidStatus::Degraded));
        assert_eq!(snap.status(), RaidStatus::Degraded);
        snap.storages.push(storage("4", RaidStatus::Failed));
        assert_eq!(snap.status(), RaidStatus::Failed);
    }

    #[test]
    fn tid_hex_round_trips() {
        let tid = zeoraid_storage::Tid::from_u64(0x03d2_a1b2_c3d4_e5f6);
        assert_eq!(tid_hex(tid), "03d2a1b2c3d4e5f6");
        assert_eq!(parse_tid("03d2a1b2c3d4e5f6"), Some(tid));
        assert_eq!(parse_tid("zz"), None);
    }
}

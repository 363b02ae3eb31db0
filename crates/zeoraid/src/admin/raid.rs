//! [`Management`] for the storages a server serves: `RaidStorage`s (their
//! status, backends, `disable`, `recover` and `verify`) and plain storages,
//! which show as one backend of their own name, always optimal, and cannot be
//! disabled, recovered or verified. `reload` is the server's own (it re-reads
//! the configuration file and opens storages): `serve` installs it with
//! [`RaidManagement::set_reloader`].
//!
//! `serve` builds one [`RaidManagement`] with the storages it opened, in
//! configuration order, and hands it to [`super::serve_admin`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zeoraid_raid::{self as raid, RaidError, RaidStorage};
use zeoraid_storage::Storage;

use super::model::{
    tid_hex, BackendCounters, BackendSnapshot, BackendState, CacheCounters, Management,
    ManagementError, RaidStatus, RecoveryProgress, ServerSnapshot, StorageKind, StorageSnapshot,
};

/// How long a snapshot waits for a plain storage's last transaction.
const LAST_TID_TIMEOUT: Duration = Duration::from_secs(2);

/// One served storage.
#[derive(Clone)]
pub enum ManagedStorage {
    Raid(Arc<RaidStorage>),
    /// A storage outside any RAID (`kind` is `Filestorage` or `Zeoclient`).
    Plain {
        kind: StorageKind,
        storage: Arc<dyn Storage>,
    },
}

/// What `reload` runs: re-reads the configuration and applies it.
pub type Reloader = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, ManagementError>> + Send>> + Send + Sync,
>;

/// The server's storages as the admin API sees them.
#[derive(Clone, Default)]
pub struct RaidManagement {
    storages: Vec<(String, ManagedStorage)>,
    reloader: Option<Reloader>,
}

impl RaidManagement {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a RAID storage called `name` (the name clients ask for).
    pub fn add_raid(&mut self, name: impl Into<String>, raid: Arc<RaidStorage>) -> &mut Self {
        self.storages
            .push((name.into(), ManagedStorage::Raid(raid)));
        self
    }

    /// Adds a plain storage (`<filestorage>` or `<zeoclient>` at the top level).
    pub fn add_plain(
        &mut self,
        name: impl Into<String>,
        kind: StorageKind,
        storage: Arc<dyn Storage>,
    ) -> &mut Self {
        self.storages
            .push((name.into(), ManagedStorage::Plain { kind, storage }));
        self
    }

    /// Installs what `reload` runs.
    pub fn set_reloader(&mut self, reloader: Reloader) -> &mut Self {
        self.reloader = Some(reloader);
        self
    }

    /// The RAID storage called `name`, or why there is none.
    fn find_raid(&self, name: &str, what: &str) -> Result<&Arc<RaidStorage>, ManagementError> {
        match self.find(name)? {
            ManagedStorage::Raid(raid) => Ok(raid),
            ManagedStorage::Plain { .. } => Err(ManagementError::Refused(format!(
                "storage {name:?} is not a RAID: there is nothing to {what}"
            ))),
        }
    }

    fn find(&self, name: &str) -> Result<&ManagedStorage, ManagementError> {
        self.storages
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .ok_or_else(|| ManagementError::UnknownStorage(name.to_string()))
    }
}

#[async_trait]
impl Management for RaidManagement {
    async fn snapshot(&self) -> ServerSnapshot {
        let mut storages = Vec::with_capacity(self.storages.len());
        for (name, storage) in &self.storages {
            storages.push(match storage {
                ManagedStorage::Raid(raid) => raid_snapshot(name, raid),
                ManagedStorage::Plain { kind, storage } => {
                    plain_snapshot(name, *kind, storage.as_ref()).await
                }
            });
        }
        ServerSnapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            storages,
        }
    }

    async fn disable(&self, storage: &str, backend: &str) -> Result<(), ManagementError> {
        match self.find(storage)? {
            ManagedStorage::Raid(raid) => raid.disable(backend).await.map_err(|e| match e {
                RaidError::UnknownBackend(_) => ManagementError::UnknownBackend {
                    storage: storage.to_string(),
                    backend: backend.to_string(),
                },
                RaidError::LastOptimal(_) => ManagementError::Refused(e.to_string()),
                other => ManagementError::Failed(other.to_string()),
            }),
            ManagedStorage::Plain { .. } if backend != storage => {
                Err(ManagementError::UnknownBackend {
                    storage: storage.to_string(),
                    backend: backend.to_string(),
                })
            }
            ManagedStorage::Plain { .. } => Err(ManagementError::Refused(format!(
                "storage {storage:?} is not a RAID: its only backend cannot be disabled"
            ))),
        }
    }

    async fn recover(&self, storage: &str, backend: &str) -> Result<(), ManagementError> {
        let raid = self.find_raid(storage, "recover")?;
        match raid.start_recover(backend, false) {
            // The recovery runs on; it logs its end and leaves its outcome in the
            // backend's state.
            Ok(_running) => Ok(()),
            Err(RaidError::UnknownBackend(_)) => Err(ManagementError::UnknownBackend {
                storage: storage.to_string(),
                backend: backend.to_string(),
            }),
            Err(e @ RaidError::Closed) => Err(ManagementError::Failed(e.to_string())),
            Err(e) => Err(ManagementError::Refused(e.to_string())),
        }
    }

    async fn verify(&self, storage: &str) -> Result<String, ManagementError> {
        let raid = self.find_raid(storage, "verify")?;
        match raid.verify().await {
            Ok(report) if report.identical() => Ok(report.to_string()),
            Ok(report) => Err(ManagementError::Mismatch(report.to_string())),
            Err(e) => Err(ManagementError::Failed(e.to_string())),
        }
    }

    async fn reload(&self) -> Result<String, ManagementError> {
        match &self.reloader {
            Some(reload) => reload().await,
            None => Err(ManagementError::NotImplemented("reload")),
        }
    }
}

fn raid_snapshot(name: &str, raid: &RaidStorage) -> StorageSnapshot {
    StorageSnapshot {
        name: name.to_string(),
        kind: StorageKind::Raid,
        status: match raid.status() {
            raid::RaidStatus::Optimal => RaidStatus::Optimal,
            raid::RaidStatus::Degraded => RaidStatus::Degraded,
            raid::RaidStatus::Recovering => RaidStatus::Recovering,
            raid::RaidStatus::Failed => RaidStatus::Failed,
        },
        backends: raid.details().into_iter().map(backend_snapshot).collect(),
    }
}

fn backend_snapshot(d: raid::BackendDetails) -> BackendSnapshot {
    let state = match d.state {
        raid::BackendState::Optimal => BackendState::Optimal,
        raid::BackendState::Degraded { reason } => BackendState::Degraded { reason },
        raid::BackendState::Recovering { progress } => BackendState::Recovering {
            progress: RecoveryProgress {
                transactions: progress.transactions,
                transactions_total: progress.transactions_total,
                bytes: progress.bytes,
                bytes_total: progress.bytes_total,
                eta_seconds: progress.eta.map(|eta| eta.as_secs()),
            },
        },
    };
    let c = d.counters;
    BackendSnapshot {
        name: d.name,
        state,
        last_tid: (!d.last_tid.is_zero()).then(|| tid_hex(d.last_tid)),
        counters: Some(BackendCounters {
            commits: c.commits,
            loads: c.reads,
            errors: c.errors,
            in_flight: u64::try_from(c.in_flight).unwrap_or(u64::MAX),
            read_seconds: c.read_latency_sum.as_secs_f64(),
            write_seconds: c.write_latency_sum.as_secs_f64(),
            cache: c.cache.map(|cache| CacheCounters {
                hits: cache.hits,
                misses: cache.misses,
                bytes: cache.bytes,
                capacity: cache.capacity,
            }),
        }),
    }
}

async fn plain_snapshot(name: &str, kind: StorageKind, storage: &dyn Storage) -> StorageSnapshot {
    let last_tid = match tokio::time::timeout(LAST_TID_TIMEOUT, storage.last_transaction()).await {
        Ok(Ok(tid)) if !tid.is_zero() => Some(tid_hex(tid)),
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            tracing::debug!(storage = %name, error = %e, "last transaction unknown");
            None
        }
        Err(_) => {
            tracing::debug!(storage = %name, "last transaction: timed out");
            None
        }
    };
    StorageSnapshot {
        name: name.to_string(),
        kind,
        status: RaidStatus::Optimal,
        backends: vec![BackendSnapshot {
            name: name.to_string(),
            state: BackendState::Optimal,
            last_tid,
            counters: None,
        }],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use zeoraid_memstorage::MemStorage;
    use zeoraid_raid::RaidOptions;

    async fn raid(names: &[&str]) -> Arc<RaidStorage> {
        let backends = names
            .iter()
            .map(|n| {
                let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
                (n.to_string(), storage, None)
            })
            .collect();
        Arc::new(
            RaidStorage::open(backends, RaidOptions::default())
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn snapshot_of_a_raid_and_a_plain_storage() {
        let mut mgmt = RaidManagement::new();
        mgmt.add_raid("1", raid(&["a", "b"]).await).add_plain(
            "single",
            StorageKind::Filestorage,
            Arc::new(MemStorage::new()),
        );
        let snap = mgmt.snapshot().await;
        assert_eq!(snap.status(), RaidStatus::Optimal);
        assert_eq!(snap.version, env!("CARGO_PKG_VERSION"));
        let names: Vec<_> = snap.storages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["1", "single"]);
        let r = &snap.storages[0];
        assert_eq!(r.kind, StorageKind::Raid);
        let backends: Vec<_> = r
            .backends
            .iter()
            .map(|b| (b.name.as_str(), b.state.word()))
            .collect();
        assert_eq!(backends, [("a", "optimal"), ("b", "optimal")]);
        assert!(r.backends.iter().all(|b| b.counters.is_some()));
        let p = &snap.storages[1];
        assert_eq!(p.kind, StorageKind::Filestorage);
        assert_eq!(p.backends.len(), 1);
        assert_eq!(p.backends[0].name, "single");
        assert_eq!(p.backends[0].state, BackendState::Optimal);
        assert_eq!(p.backends[0].counters, None);
    }

    #[tokio::test]
    async fn disable_goes_to_the_raid() {
        let r = raid(&["a", "b"]).await;
        let mut mgmt = RaidManagement::new();
        mgmt.add_raid("1", r.clone()).add_plain(
            "single",
            StorageKind::Filestorage,
            Arc::new(MemStorage::new()),
        );

        mgmt.disable("1", "b").await.unwrap();
        assert_eq!(
            r.backend_state("b"),
            Some(raid::BackendState::Degraded {
                reason: "disabled by operator".into()
            })
        );
        let snap = mgmt.snapshot().await;
        assert_eq!(snap.storages[0].status, RaidStatus::Degraded);
        assert_eq!(
            snap.storages[0].backends[1].state,
            BackendState::Degraded {
                reason: "disabled by operator".into()
            }
        );

        let err = mgmt.disable("1", "a").await.unwrap_err();
        assert!(matches!(err, ManagementError::Refused(_)), "{err:?}");
        assert!(err.to_string().contains("last optimal backend"), "{err}");
        assert!(r.backend_state("a").unwrap().is_optimal());

        assert_eq!(
            mgmt.disable("1", "x").await.unwrap_err(),
            ManagementError::UnknownBackend {
                storage: "1".into(),
                backend: "x".into()
            }
        );
        assert_eq!(
            mgmt.disable("2", "a").await.unwrap_err(),
            ManagementError::UnknownStorage("2".into())
        );
        assert!(matches!(
            mgmt.disable("single", "single").await.unwrap_err(),
            ManagementError::Refused(_)
        ));
        assert!(matches!(
            mgmt.recover("1", "a").await.unwrap_err(),
            ManagementError::Refused(m) if m.contains("is optimal")
        ));
        assert!(matches!(
            mgmt.recover("single", "single").await.unwrap_err(),
            ManagementError::Refused(m) if m.contains("not a RAID")
        ));
        mgmt.recover("1", "b").await.unwrap();
        for _ in 0..200 {
            if r.backend_state("b").unwrap().is_optimal() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(r.backend_state("b").unwrap().is_optimal());
        let report = mgmt.verify("1").await.unwrap();
        assert!(report.starts_with("identical: 0 transactions"), "{report}");
        assert!(matches!(
            mgmt.reload().await.unwrap_err(),
            ManagementError::NotImplemented("reload")
        ));
    }

    async fn commit(
        storage: &dyn Storage,
        serial: zeoraid_storage::Tid,
        data: &str,
    ) -> zeoraid_storage::Tid {
        use zeoraid_storage::{Oid, Operation, Transaction, TxnId, VoteOutcome};
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = TxnId(NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let mut txn = Transaction::new(id, Default::default());
        txn.ops = vec![Operation::Store {
            oid: Oid::from_u64(0),
            serial,
            data: bytes::Bytes::from(data.to_string()),
        }];
        match storage.vote(txn).await.unwrap() {
            VoteOutcome::Voted { .. } => storage.finish(id).await.unwrap(),
            VoteOutcome::Conflicts(c) => panic!("conflicts: {c:?}"),
        }
    }

    /// The admin API over a real RAID: commits show in last tids and
    /// counters, `disable` over HTTP takes a backend out and commits go on
    /// without it.
    #[tokio::test]
    async fn http_api_over_a_raid() {
        use crate::admin::http::ActionResult;
        use crate::admin::testing::TestServer;

        let r = raid(&["a", "b"]).await;
        let mut mgmt = RaidManagement::new();
        mgmt.add_raid("1", r.clone());
        let server = TestServer::start(Arc::new(mgmt)).await;
        let http = reqwest::Client::new();
        let details = || async {
            http.get(server.url("/details"))
                .send()
                .await
                .unwrap()
                .json::<ServerSnapshot>()
                .await
                .unwrap()
        };

        let first = commit(r.as_ref(), zeoraid_storage::Tid::ZERO, "one").await;
        let snap = details().await;
        for b in &snap.storages[0].backends {
            assert_eq!(
                b.last_tid.as_deref(),
                Some(tid_hex(first).as_str()),
                "{}",
                b.name
            );
            assert_eq!(b.counters.as_ref().unwrap().commits, 1, "{}", b.name);
        }

        let resp = http
            .post(server.url("/storages/1/backends/b/disable"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        let resp = http
            .post(server.url("/storages/1/backends/a/disable"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::CONFLICT);
        let result: ActionResult = resp.json().await.unwrap();
        assert!(
            result.message.contains("last optimal backend"),
            "{}",
            result.message
        );

        let second = commit(r.as_ref(), first, "two").await;
        let snap = details().await;
        assert_eq!(snap.status(), RaidStatus::Degraded);
        let (a, b) = (&snap.storages[0].backends[0], &snap.storages[0].backends[1]);
        assert_eq!(a.last_tid.as_deref(), Some(tid_hex(second).as_str()));
        assert_eq!(b.last_tid.as_deref(), Some(tid_hex(first).as_str()));
        assert_eq!(
            b.state,
            BackendState::Degraded {
                reason: "disabled by operator".into()
            }
        );

        let metrics = http
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains(r#"zeoraid_backend_commits_total{storage="1",backend="a"} 2"#));
        assert!(metrics.contains(r#"zeoraid_backend_commits_total{storage="1",backend="b"} 1"#));
        assert!(metrics
            .contains(r#"zeoraid_backend_state{storage="1",backend="b",state="degraded"} 1"#));
        server.stop().await;
    }
}

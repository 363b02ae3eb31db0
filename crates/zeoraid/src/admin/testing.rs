//! Test support: a [`Management`] holding a snapshot the test controls, and a
//! running admin server on a loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::model::{
    BackendCounters, BackendSnapshot, BackendState, Management, ManagementError, RaidStatus,
    RecoveryProgress, ServerSnapshot, StorageKind, StorageSnapshot,
};

/// Serves a fixed snapshot; `disable` degrades the backend in it, with the
/// RAID's rules (refused for the last optimal backend and for plain storages).
pub struct FakeManagement {
    pub snapshot: Mutex<ServerSnapshot>,
}

impl FakeManagement {
    pub fn new(snapshot: ServerSnapshot) -> Arc<FakeManagement> {
        Arc::new(FakeManagement {
            snapshot: Mutex::new(snapshot),
        })
    }
}

#[async_trait]
impl Management for FakeManagement {
    async fn snapshot(&self) -> ServerSnapshot {
        self.snapshot.lock().unwrap().clone()
    }

    async fn disable(&self, storage: &str, backend: &str) -> Result<(), ManagementError> {
        let mut snap = self.snapshot.lock().unwrap();
        let s = snap
            .storages
            .iter_mut()
            .find(|s| s.name == storage)
            .ok_or_else(|| ManagementError::UnknownStorage(storage.into()))?;
        if s.kind != StorageKind::Raid {
            return Err(ManagementError::Refused(format!(
                "storage {storage:?} is not a RAID"
            )));
        }
        let optimal = s
            .backends
            .iter()
            .filter(|b| b.state == BackendState::Optimal)
            .count();
        let b = s
            .backends
            .iter_mut()
            .find(|b| b.name == backend)
            .ok_or_else(|| ManagementError::UnknownBackend {
                storage: storage.into(),
                backend: backend.into(),
            })?;
        if b.state == BackendState::Optimal && optimal == 1 {
            return Err(ManagementError::Refused(format!(
                "refusing to disable {backend:?}: it is the last optimal backend"
            )));
        }
        b.state = BackendState::Degraded {
            reason: "disabled by operator".into(),
        };
        s.status = RaidStatus::Degraded;
        Ok(())
    }
}

/// A RAID `1` (a optimal, b degraded, c recovering) and a plain filestorage
/// `plain`.
pub fn sample_snapshot() -> ServerSnapshot {
    ServerSnapshot {
        version: "0.1.0".into(),
        storages: vec![
            StorageSnapshot {
                name: "1".into(),
                kind: StorageKind::Raid,
                status: RaidStatus::Recovering,
                backends: vec![
                    BackendSnapshot {
                        name: "a".into(),
                        state: BackendState::Optimal,
                        last_tid: Some("03ec5b2a0d1eb9bb".into()),
                        counters: Some(BackendCounters {
                            commits: 12,
                            loads: 340,
                            errors: 0,
                            in_flight: 0,
                            read_seconds: 0.125,
                            write_seconds: 0.5,
                            cache: None,
                        }),
                    },
                    BackendSnapshot {
                        name: "b".into(),
                        state: BackendState::Degraded {
                            reason: "vote failed: I/O error: disk full".into(),
                        },
                        last_tid: Some("03ec5b29f0000000".into()),
                        counters: Some(BackendCounters {
                            commits: 10,
                            loads: 170,
                            errors: 1,
                            ..BackendCounters::default()
                        }),
                    },
                    BackendSnapshot {
                        name: "c".into(),
                        state: BackendState::Recovering {
                            progress: RecoveryProgress {
                                transactions: 120,
                                transactions_total: Some(480),
                                bytes: 1_048_576,
                                bytes_total: Some(4_194_304),
                                eta_seconds: Some(42),
                            },
                        },
                        last_tid: Some("03ec5a0000000000".into()),
                        counters: Some(BackendCounters::default()),
                    },
                ],
            },
            StorageSnapshot {
                name: "plain".into(),
                kind: StorageKind::Filestorage,
                status: RaidStatus::Optimal,
                backends: vec![BackendSnapshot {
                    name: "plain".into(),
                    state: BackendState::Optimal,
                    last_tid: Some("03ec5b2a0d1eb9bb".into()),
                    counters: None,
                }],
            },
        ],
    }
}

/// An admin server running on 127.0.0.1 until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(mgmt: Arc<dyn Management>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(super::serve_admin(listener, mgmt, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

//! Backends that did not answer at startup, when the RAID's record of optimal
//! backends cannot vouch for a reachable one (`startup.rs`): the RAID cannot know
//! whether such a backend holds transactions the reachable ones lack (it may have
//! been the only optimal one when the RAID stopped). Writing
//! on the reachable ones would then fork the history and hand out oids again that
//! the unreachable one handed out. So while any backend is *unverified*, writes
//! (`new_oids`, `vote`, `pack`) are refused with `ReadOnly`; reads go on from the
//! backends at the newest tid reachable.
//!
//! A background task asks each unverified backend for its last transaction
//! (every [`PROBE_INTERVAL`], within its timeout). Once it answers, under the
//! commit lock: at the RAID's newest tid it becomes optimal; ahead of it, it
//! becomes the only optimal backend and the others are degraded (`missing
//! transactions`), the RAID's clock moving up; behind it, it stays degraded
//! (`missing transactions`). The operator may instead `disable` (or remove) a
//! backend known to be gone for good: that is the statement that it holds
//! nothing the others lack, and ends the wait for it.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeSet;
use tokio::task::JoinHandle;

use futures::StreamExt;
use zeoraid_storage::{Invalidation, Oid, StorageError, StorageResult, Tid};

use crate::backend::Kind;
use crate::startup::MISSING_TRANSACTIONS;
use crate::{lock, Inner};

/// How often unverified backends are asked again.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl Inner {
    /// Refuses writes while a backend unreachable at startup has not answered.
    pub(crate) fn check_verified(&self) -> StorageResult<()> {
        let waiting = lock(&self.unverified);
        if waiting.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            backends = waiting.len(),
            "write refused: backends unreachable since startup may hold newer transactions"
        );
        Err(StorageError::ReadOnly)
    }

    /// Ends the wait for backend `i` (the operator disabled or removed it).
    pub(crate) fn forget_unverified(&self, i: usize) {
        let settled = {
            let mut waiting = lock(&self.unverified);
            waiting.retain(|&u| u != i);
            waiting.is_empty()
        };
        if settled {
            if let Some(record) = lock(&self.pending_record).take() {
                self.states().install_record(record);
            }
        }
    }

    /// Asks every unverified backend once; settles those that answer.
    async fn probe_unverified(&self) {
        let waiting = lock(&self.unverified).clone();
        for i in waiting {
            let b = self.backend(i);
            let Ok(tid) = b.call(Kind::Probe, b.storage.last_transaction()).await else {
                continue;
            };
            let Some(_quiet) = self.quiesce().await else {
                return;
            };
            if !lock(&self.unverified).contains(&i) {
                continue;
            }
            b.note_tid(tid);
            let newest = lock(&self.tids).committed;
            // Settled under the state lock; what must await comes after it.
            let newer = {
                let mut states = self.states();
                if states.is_removed(i) {
                    None
                } else if tid > newest {
                    let behind: Vec<(usize, String)> = states
                        .optimal()
                        .into_iter()
                        .map(|o| (o, MISSING_TRANSACTIONS.to_string()))
                        .collect();
                    states.set_optimal(i);
                    states.degrade_many(&behind);
                    Some(true)
                } else if tid == newest {
                    states.set_optimal(i);
                    Some(false)
                } else {
                    states.set_reason(i, MISSING_TRANSACTIONS.into());
                    Some(false)
                }
            };
            if newer == Some(true) {
                lock(&self.tids).note_committed(tid);
                tracing::warn!(backend = %b.name, "a backend unreachable at startup is the newest");
                // The RAID's history moved forward without a commit of its own:
                // announce it, so the server's clients see the newer state.
                let oids = self.oids_changed_on(i, newest, tid).await;
                self.invalidations.offer(Invalidation { tid, oids });
            }
            self.forget_unverified(i);
        }
    }
}

impl Inner {
    /// The oids that backend `i`'s transactions after `since` up to `until` changed
    /// (all of them when the iteration fails: then every client drops its cache
    /// entries it cannot check, as `oids` being empty would leave stale ones).
    async fn oids_changed_on(&self, i: usize, since: Tid, until: Tid) -> Vec<Oid> {
        let b = self.backend(i);
        let start = since.as_u64().checked_add(1).map(Tid::from_u64);
        let mut oids = BTreeSet::new();
        let stream = b
            .call(Kind::Read, b.storage.iterator(start, Some(until)))
            .await;
        let Ok(mut stream) = stream else {
            tracing::warn!(backend = %b.name, "cannot list what the newer backend changed");
            return Vec::new();
        };
        loop {
            match tokio::time::timeout(b.timeout, stream.next()).await {
                Ok(Some(Ok(t))) => oids.extend(t.records.iter().map(|r| r.oid)),
                Ok(None) => break,
                Ok(Some(Err(_))) | Err(_) => {
                    tracing::warn!(backend = %b.name, "cannot list what the newer backend changed");
                    break;
                }
            }
        }
        oids.into_iter().collect()
    }
}

/// Starts the task that probes the unverified backends, if there are any.
pub(crate) fn spawn_prober(inner: &Arc<Inner>) -> Option<JoinHandle<()>> {
    if lock(&inner.unverified).is_empty() {
        return None;
    }
    tracing::warn!(
        "some backends were unreachable at startup: writes are refused until they answer \
         or are disabled (they may hold transactions the others lack)"
    );
    let weak = Arc::downgrade(inner);
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    Some(runtime.spawn(async move {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let Some(inner) = weak.upgrade() else { return };
            inner.probe_unverified().await;
            if lock(&inner.unverified).is_empty() {
                return;
            }
        }
    }))
}

//! `RaidStorage`: a [`Storage`] that mirrors one ZODB database onto N backend
//! storages the way a RAID-1 controller mirrors a disk (the successor of
//! gocept.zeoraid). `docs/raid.md` states the rules implemented here.
//!
//! - **Writes** (`commit.rs`): the RAID assigns the tid under its own commit lock and
//!   passes it explicitly to every optimal backend; `vote` and `finish` go to all of
//!   them concurrently, each with its timeout. The outcomes are compared
//!   (`verdict.rs`): agreeing conflicts and answer-errors go back to the client; a
//!   backend that fails, times out or disagrees is degraded with a recorded reason and
//!   the commit goes on with the others. **No majority**: the answer given by the
//!   most backends wins, ties go to the answer of the backend first in configuration
//!   order. A backend that *refuses* out of its own state (read-only, unsupported,
//!   already packing) gives no answer: it is degraded when another answers, and the
//!   refusal is the answer when all refuse.
//! - **Oids** (`oids.rs`): every optimal backend is asked; the range handed out ends
//!   at the highest counter, and every backend behind is made to catch up, so every
//!   optimal backend's counter is at or above every oid ever handed out.
//! - **Reads** (`read.rs`, `iter.rs`): one optimal backend chosen by the read policy,
//!   failing over (and degrading) on a failure without the caller noticing; or, with
//!   read voting, every optimal backend, answers compared like votes.
//! - **States** (`state.rs`, `status.rs`): per backend optimal / degraded / recovering,
//!   the RAID status derived from them, derived at startup from the backends alone
//!   (`startup.rs`); writes wait for backends unreachable at startup (`unverified.rs`).
//! - **Cluster mode coop** (gocept.zeoraid's): fails without a majority of optimal
//!   backends; several RAIDs may share the backends (tids after every backend's last,
//!   votes in configuration order, oids every backend handed to this RAID).
//! - **Invalidations** (`invalidations.rs`): the backends' streams merged into one.

mod backend;
mod commit;
mod compare;
mod error;
mod invalidations;
mod iter;
mod members;
mod oids;
mod optimal_record;
mod options;
mod read;
mod recovery;
mod startup;
mod state;
mod status;
mod unverified;
mod verdict;
mod verify;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinHandle;
use zeoraid_storage::{
    CurrentRecord, Finished, HistoryEntry, Invalidation, LoadedRecord, Oid, Storage, StorageError,
    StorageInfo, StorageResult, Tid, Transaction, TransactionStream, TxnId, UndoEntry, UndoFilter,
    VoteOutcome,
};

pub use backend::BackendCounters;
pub use error::RaidError;
pub use members::ADDED_BY_CONTROLLER;
pub use options::{
    BackendSpec, ClusterMode, FailMode, RaidOptions, ReadPolicy, DEFAULT_BACKEND_TIMEOUT,
};
pub use recovery::{RecoveryReport, SWITCH_OVER_AT};
pub use state::{BackendState, RaidStatus, RecoveryProgress};
pub use status::BackendDetails;
pub use verify::VerifyReport;

use backend::{Backend, Kind};
use optimal_record::OptimalRecord;
use state::StateTable;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The RAID storage. Create it with [`RaidStorage::open`].
pub struct RaidStorage {
    inner: Arc<Inner>,
}

/// Everything the RAID shares with its background tasks.
pub(crate) struct Inner {
    /// Every backend ever configured, by index (indices never change: a removed
    /// backend keeps its slot, marked removed in the state table).
    /// Swapped whole when a backend is added (under the state table's lock, so
    /// that indices agree): every read looks it up without a lock.
    pub backends: ArcSwap<Vec<Arc<Backend>>>,
    pub options: RaidOptions,
    pub states: Mutex<StateTable>,
    /// One permit: held from `vote` to `finish`/`abort`, and by `disable`.
    pub commit_lock: Arc<Semaphore>,
    /// Held shared by every transaction past its commit point until it is durable
    /// on its backends ([`Inner::finish_deferred`]); [`Inner::quiesce`] takes it
    /// exclusively.
    pub finishes: Arc<tokio::sync::RwLock<()>>,
    pub pending: Mutex<Option<commit::Pending>>,
    pub tids: Mutex<commit::TidClock>,
    /// The clock's last visible tid, for reads without its lock.
    pub visible: Arc<AtomicU64>,
    /// Reads hold it shared; under [`ReadPolicy::Vote`], `finish` holds it
    /// exclusively while the backends finish, so a voted read never compares a
    /// backend that has finished a commit with one that has not yet.
    pub visibility: tokio::sync::RwLock<()>,
    /// The highest oid handed out; serialises `new_oids`.
    pub oids: tokio::sync::Mutex<u64>,
    /// The optimal backends as a bit set, published by the state table
    /// ([`StateTable::readable`]) for the inline read path.
    pub readable: Arc<AtomicU64>,
    pub invalidations: invalidations::Hub,
    pub closed: AtomicBool,
    /// Set while a recovery runs (the recovery refuses pack through it).
    pub recovery_running: AtomicBool,
    /// The backend being recovered (for the "one at a time" refusal).
    pub recovery: Mutex<Option<String>>,
    /// The running recovery task (aborted when the RAID closes).
    pub recovery_task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Packs in progress (a recovery is refused while one runs).
    pub pack_running: AtomicUsize,
    /// The recovery's rate limit in bytes/s, 0 for none.
    pub recovery_rate: AtomicU64,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Backends that did not answer at startup and have not since (see
    /// `unverified.rs`): while any is left, writes are refused.
    pub unverified: Mutex<Vec<usize>>,
    /// The record of optimal backends, kept aside while backends are unverified:
    /// the old record is the evidence until then, so it is not overwritten.
    pub pending_record: Mutex<Option<OptimalRecord>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Inner {
    /// Backend `i` (indices come from the state table, so they exist).
    /// The commit lock, once no transaction is left between its commit point and
    /// its durability: nothing is committing while both are held (a switch-over,
    /// a change of the backends). `None` once the RAID is closed.
    pub(crate) async fn quiesce(
        &self,
    ) -> Option<(
        tokio::sync::SemaphorePermit<'_>,
        tokio::sync::RwLockWriteGuard<'_, ()>,
    )> {
        let permit = self.commit_lock.acquire().await.ok()?;
        let settled = self.finishes.write().await;
        Some((permit, settled))
    }

    pub(crate) fn backend(&self, i: usize) -> Arc<Backend> {
        Arc::clone(&self.backends.load()[i])
    }

    /// Every backend slot, removed ones included, by index.
    pub(crate) fn all_backends(&self) -> Vec<Arc<Backend>> {
        self.backends.load().to_vec()
    }

    pub(crate) fn states(&self) -> MutexGuard<'_, StateTable> {
        lock(&self.states)
    }

    pub(crate) fn optimal(&self) -> Vec<usize> {
        self.states().optimal()
    }

    pub(crate) fn is_optimal(&self, i: usize) -> bool {
        self.states().is_optimal(i)
    }

    pub(crate) fn degrade(&self, i: usize, reason: String) {
        self.states().degrade(i, reason);
    }

    pub(crate) fn degrade_many(&self, batch: &[(usize, String)]) {
        if !batch.is_empty() {
            self.states().degrade_many(batch);
        }
    }

    fn check_open(&self) -> StorageResult<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(error::closed());
        }
        Ok(())
    }

    /// The error of a failed RAID, by fail mode.
    pub(crate) fn failed_error(&self) -> StorageError {
        match self.options.fail_mode {
            FailMode::Close if self.coop() && !self.optimal().is_empty() => {
                let states = self.states();
                StorageError::Disconnected(format!(
                    "only {} of {} backends are optimal: cluster-mode coop needs more than \
                     half (the RAID has failed; fail-mode close)",
                    states.optimal().len(),
                    states.present().len()
                ))
            }
            FailMode::Close => error::no_backend_left("the RAID has failed; fail-mode close"),
            FailMode::ReadOnly => StorageError::ReadOnly,
        }
    }

    /// `cluster-mode coop`: other RAIDs may share the backends.
    pub(crate) fn coop(&self) -> bool {
        self.options.cluster_mode == ClusterMode::Coop
    }

    /// Refuses writes when closed, configured read-only, or failed.
    pub(crate) fn check_writable(&self) -> StorageResult<()> {
        self.check_open()?;
        if self.options.read_only {
            return Err(StorageError::ReadOnly);
        }
        if self.states().status() == RaidStatus::Failed {
            return Err(self.failed_error());
        }
        self.check_verified()
    }

    /// Closes every backend (concurrently, within their timeouts); every further
    /// call fails.
    pub(crate) async fn close(&self) -> StorageResult<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        if let Some(task) = lock(&self.recovery_task).take() {
            task.abort();
        }
        let backends = self.all_backends();
        let calls = backends.iter().map(|b| async move {
            if let Err(e) = b.call(Kind::Write, b.storage.close()).await {
                tracing::warn!(backend = %b.name, error = ?e, "closing a backend failed");
            }
        });
        futures::future::join_all(calls).await;
        self.commit_lock.close();
        Ok(())
    }

    /// Sends `abort(id)` to `indices` in the background (best effort, with their
    /// timeouts): backends that were degraded in the middle of a commit must not keep
    /// it voted, and a hung one must not hold the commit up.
    pub(crate) fn abort_in_background(self: &Arc<Self>, indices: Vec<usize>, id: TxnId) {
        if indices.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            let calls = indices.iter().map(|&i| {
                let b = inner.backend(i);
                async move {
                    if let Err(e) = b.call(Kind::Write, b.storage.abort(id)).await {
                        tracing::debug!(backend = %b.name, error = ?e, "abort of a degraded backend failed");
                    }
                }
            });
            futures::future::join_all(calls).await;
        });
    }
}

impl RaidStorage {
    /// Opens a RAID over `backends` (names unique, in configuration order). The
    /// state of each backend is derived from the backends alone: all are asked for
    /// their last transaction concurrently (each within its timeout); those at the
    /// newest tid are optimal, those behind are degraded (`missing transactions`),
    /// those that fail or time out are degraded with the error as reason. A RAID
    /// whose backends are all unreachable opens in the `failed` status.
    pub async fn open(
        backends: Vec<BackendSpec>,
        options: RaidOptions,
    ) -> Result<RaidStorage, RaidError> {
        if backends.is_empty() {
            return Err(RaidError::NoBackends);
        }
        let mut names = HashSet::new();
        for (name, _, _) in &backends {
            if !names.insert(name.clone()) {
                return Err(RaidError::DuplicateName(name.clone()));
            }
        }
        let backends: Vec<Arc<Backend>> = backends
            .into_iter()
            .map(|(name, storage, timeout)| {
                Arc::new(Backend::new(
                    name,
                    storage,
                    timeout.unwrap_or(options.backend_timeout),
                ))
            })
            .collect();
        let record = options.state_file.clone().map(OptimalRecord::new);
        let recorded = record.as_ref().and_then(OptimalRecord::read);
        let startup::Derived {
            states,
            newest,
            unverified,
            recorded_holder,
        } = startup::derive(&backends, recorded.as_deref()).await;
        let names: Vec<String> = backends.iter().map(|b| b.name.clone()).collect();
        if let Some(holder) = &recorded_holder {
            tracing::info!(
                backend = %holder,
                "states derived from the RAID's record: this backend held every acknowledged \
                 commit when the RAID stopped"
            );
        }
        let (record, pending_record) = if unverified.is_empty() {
            (record, None)
        } else {
            (None, record)
        };
        let recovery_rate = options.recovery_rate.unwrap_or(0);
        let coop = options.cluster_mode == ClusterMode::Coop;
        let table = StateTable::new(names, states, coop, record);
        let clock = commit::TidClock::new(newest);
        let inner = Arc::new(Inner {
            visible: clock.visible(),
            backends: ArcSwap::from_pointee(backends),
            options,
            readable: table.readable(),
            states: Mutex::new(table),
            commit_lock: Arc::new(Semaphore::new(1)),
            finishes: Arc::new(tokio::sync::RwLock::new(())),
            pending: Mutex::new(None),
            tids: Mutex::new(clock),
            visibility: tokio::sync::RwLock::new(()),
            oids: tokio::sync::Mutex::new(0),
            invalidations: invalidations::Hub::new(),
            closed: AtomicBool::new(false),
            recovery_running: AtomicBool::new(false),
            recovery: Mutex::new(None),
            recovery_task: Mutex::new(None),
            pack_running: AtomicUsize::new(0),
            recovery_rate: AtomicU64::new(recovery_rate),
            tasks: Mutex::new(Vec::new()),
            unverified: Mutex::new(unverified),
            pending_record: Mutex::new(pending_record),
        });
        let tasks = invalidations::spawn_forwarders(&inner);
        lock(&inner.tasks).extend(tasks);
        if !lock(&inner.unverified).is_empty() {
            // A backend answering late may be newer: its history is announced.
            inner.invalidations.enable();
        }
        if let Some(task) = unverified::spawn_prober(&inner) {
            lock(&inner.tasks).push(task);
        }
        Ok(RaidStorage { inner })
    }

    /// The RAID status.
    pub fn status(&self) -> RaidStatus {
        self.inner.states().status()
    }

    /// Per backend, in configuration order: name, state (with reason or progress),
    /// last known tid and counters.
    pub fn details(&self) -> Vec<BackendDetails> {
        self.inner.details()
    }

    /// The state of the backend called `name`.
    pub fn backend_state(&self, name: &str) -> Option<BackendState> {
        self.inner.backend_state(name)
    }

    /// Takes the backend `name` out of the RAID (degraded, reason `disabled by
    /// operator`). Waits for a commit in progress to end. Refused for the last
    /// optimal backend.
    pub async fn disable(&self, name: &str) -> Result<(), RaidError> {
        self.inner.disable(name).await
    }

    /// Rebuilds the degraded backend `name` from an optimal one, online, and waits
    /// for the end (see `recovery.rs`). Refused at once (without changing
    /// anything) for an unknown or optimal backend, while another recovery or a
    /// pack runs, or with no other optimal backend. A diverged target, or a
    /// failure of the target or the source, leaves the target degraded with the
    /// reason and returns [`RaidError::RecoveryFailed`].
    pub async fn recover(&self, name: &str) -> Result<RecoveryReport, RaidError> {
        match self.start_recover(name, false)?.await {
            Ok(result) => result,
            Err(e) => Err(RaidError::RecoveryFailed {
                backend: name.to_string(),
                reason: format!("recovery failed: the recovery task ended: {e}"),
            }),
        }
    }

    /// Starts the recovery of `name` in the background: the checks of
    /// [`RaidStorage::recover`] happen now (an error means nothing started), the
    /// copy runs in a task whose handle is returned. `truncate` (overwrite a
    /// diverged backend) is refused: the `Storage` trait cannot remove
    /// transactions.
    pub fn start_recover(
        &self,
        name: &str,
        truncate: bool,
    ) -> Result<JoinHandle<Result<RecoveryReport, RaidError>>, RaidError> {
        if truncate {
            return Err(RaidError::TruncateUnsupported);
        }
        let (t, s) = self.inner.begin_recovery(name)?;
        let inner = Arc::clone(&self.inner);
        let handle = tokio::spawn(inner.run_recovery(t, s));
        *lock(&self.inner.recovery_task) = Some(handle.abort_handle());
        Ok(handle)
    }

    /// Changes the recovery rate limit (bytes/s, `None`: unlimited), also for a
    /// recovery that is running.
    pub fn set_recovery_rate(&self, rate: Option<u64>) {
        self.inner
            .recovery_rate
            .store(rate.unwrap_or(0), Ordering::Relaxed);
    }

    /// Compares every optimal backend transaction by transaction and record by
    /// record, up to the last transaction committed when it starts (clients may
    /// go on writing); reports the first difference.
    pub async fn verify(&self) -> Result<VerifyReport, RaidError> {
        self.inner.verify().await
    }

    /// Adds a backend (a reload): it joins degraded (`added by controller`) and
    /// takes part in nothing until it is recovered.
    pub async fn add_backend(
        &self,
        name: &str,
        storage: Arc<dyn Storage>,
        timeout: Option<Duration>,
    ) -> Result<(), RaidError> {
        self.inner.add_backend(name, storage, timeout).await
    }

    /// Removes a backend (a reload): it is closed and forgotten. Refused for the
    /// last optimal backend and for a backend a recovery is using.
    pub async fn remove_backend(&self, name: &str) -> Result<(), RaidError> {
        self.inner.remove_backend(name).await
    }
}

#[async_trait]
impl Storage for RaidStorage {
    async fn info(&self) -> StorageResult<StorageInfo> {
        self.inner.info().await
    }

    async fn last_transaction(&self) -> StorageResult<Tid> {
        self.inner.check_open()?;
        self.inner.read_check()?;
        if self.inner.coop() {
            // Other RAIDs commit to the backends too (as gocept.zeoraid, ask them).
            self.inner.refresh_clock(&self.inner.optimal()).await;
        }
        Ok(lock(&self.inner.tids).committed)
    }

    fn load_before_inline(
        &self,
        oid: Oid,
        before: Tid,
    ) -> Option<StorageResult<Option<LoadedRecord>>> {
        self.inner.load_before_inline(oid, before)
    }

    async fn load_before(&self, oid: Oid, before: Tid) -> StorageResult<Option<LoadedRecord>> {
        self.inner.load_before(oid, before).await
    }

    async fn load_serial(&self, oid: Oid, serial: Tid) -> StorageResult<Bytes> {
        self.inner
            .read_voted(
                "load_serial",
                move |s| async move { s.load_serial(oid, serial).await },
                Bytes::clone,
            )
            .await
    }

    async fn history(&self, oid: Oid, size: usize) -> StorageResult<Vec<HistoryEntry>> {
        // Extensions are left out: implementations may pickle the same dict
        // differently.
        self.inner
            .read_voted(
                "history",
                move |s| async move { s.history(oid, size).await },
                |entries: &Vec<HistoryEntry>| {
                    entries
                        .iter()
                        .map(|h| {
                            (
                                h.tid,
                                h.meta.user.clone(),
                                h.meta.description.clone(),
                                h.size,
                            )
                        })
                        .collect::<Vec<_>>()
                },
            )
            .await
    }

    async fn record_iternext(&self, start: Option<Oid>) -> StorageResult<Option<CurrentRecord>> {
        self.inner
            .read_voted(
                "record_iternext",
                move |s| async move { s.record_iternext(start).await },
                |r: &Option<CurrentRecord>| r.as_ref().map(|r| (r.oid, r.tid, r.data.clone())),
            )
            .await
    }

    async fn iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> StorageResult<TransactionStream> {
        iter::iterator(&self.inner, start, stop).await
    }

    async fn undo_log(
        &self,
        first: u64,
        last: u64,
        filter: Option<UndoFilter>,
    ) -> StorageResult<Vec<UndoEntry>> {
        self.inner
            .read("undo_log", move |s| {
                let filter = filter.clone();
                async move { s.undo_log(first, last, filter).await }
            })
            .await
    }

    async fn new_oids(&self, count: u32) -> StorageResult<Vec<Oid>> {
        self.inner.new_oids(count).await
    }

    async fn vote(&self, txn: Transaction) -> StorageResult<VoteOutcome> {
        self.inner.vote(txn).await
    }

    async fn finish(&self, id: TxnId) -> StorageResult<Tid> {
        self.inner.finish(id).await
    }

    async fn finish_deferred(&self, id: TxnId) -> StorageResult<Finished> {
        self.inner.finish_deferred(id).await
    }

    async fn abort(&self, id: TxnId) -> StorageResult<()> {
        self.inner.abort(id).await
    }

    async fn pack(&self, t: f64) -> StorageResult<()> {
        self.inner.pack(t).await
    }

    async fn load_blob(&self, oid: Oid, serial: Tid) -> StorageResult<PathBuf> {
        // Voted on whether the blob exists (each backend has its own path).
        self.inner
            .read_voted(
                "load_blob",
                move |s| async move { s.load_blob(oid, serial).await },
                |_: &PathBuf| (),
            )
            .await
    }

    fn invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        self.inner.invalidations.subscribe()
    }

    async fn close(&self) -> StorageResult<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use zeoraid_memstorage::MemStorage;

    #[tokio::test]
    async fn pack_is_refused_while_a_recovery_runs() {
        let specs: Vec<BackendSpec> = (0..2)
            .map(|i| {
                (
                    format!("m{i}"),
                    Arc::new(MemStorage::new()) as Arc<dyn Storage>,
                    None,
                )
            })
            .collect();
        let raid = RaidStorage::open(specs, RaidOptions::default())
            .await
            .unwrap();
        raid.inner.recovery_running.store(true, Ordering::SeqCst);
        assert!(matches!(
            raid.pack(0.0).await,
            Err(StorageError::Transaction(m)) if m.contains("recovering")
        ));
        raid.inner.recovery_running.store(false, Ordering::SeqCst);
        raid.pack(0.0).await.unwrap();
    }

    #[tokio::test]
    async fn recovery_is_refused_while_a_pack_runs() {
        let specs: Vec<BackendSpec> = (0..2)
            .map(|i| {
                (
                    format!("m{i}"),
                    Arc::new(MemStorage::new()) as Arc<dyn Storage>,
                    None,
                )
            })
            .collect();
        let raid = RaidStorage::open(specs, RaidOptions::default())
            .await
            .unwrap();
        raid.disable("m1").await.unwrap();
        raid.inner.pack_running.store(1, Ordering::SeqCst);
        let err = raid.start_recover("m1", false).unwrap_err();
        assert!(matches!(err, RaidError::PackRunning), "{err}");
        assert!(!raid.inner.recovery_running.load(Ordering::SeqCst));
        assert!(matches!(
            raid.backend_state("m1"),
            Some(BackendState::Degraded { .. })
        ));
        raid.inner.pack_running.store(0, Ordering::SeqCst);
        raid.recover("m1").await.unwrap();
    }

    #[tokio::test]
    async fn a_recovering_backend_gets_no_reads_and_no_writes() {
        let backends: Vec<Arc<MemStorage>> = (0..2).map(|_| Arc::new(MemStorage::new())).collect();
        let specs: Vec<BackendSpec> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("m{i}"), Arc::clone(b) as Arc<dyn Storage>, None))
            .collect();
        let raid = RaidStorage::open(specs, RaidOptions::default())
            .await
            .unwrap();
        raid.inner
            .states()
            .set_recovering(1, RecoveryProgress::default());
        assert_eq!(raid.status(), RaidStatus::Recovering);
        let oid = raid.new_oids(1).await.unwrap()[0];
        let mut t = Transaction::new(TxnId(1), Default::default());
        t.ops.push(zeoraid_storage::Operation::Store {
            oid,
            serial: Tid::ZERO,
            data: Bytes::from_static(b"x"),
        });
        raid.vote(t).await.unwrap();
        let tid = raid.finish(TxnId(1)).await.unwrap();
        for _ in 0..4 {
            raid.load_before(oid, Tid::MAX).await.unwrap();
        }
        assert_eq!(backends[1].last_transaction().await.unwrap(), Tid::ZERO);
        assert_eq!(backends[0].last_transaction().await.unwrap(), tid);
        let details = raid.details();
        assert_eq!(details[1].counters.reads, 0);
        assert!(details[1].state.to_string().starts_with("recovering"));
    }
}

//! zeoraid's embedded storage: ZODB's FileStorage format (`Data.fs`, FS30/FS21) read
//! and written byte for byte, so Python's FileStorage opens our files and we
//! open Python's, with a blob directory in ZODB's bushy layout.
//!
//! - [`FileStorage`] is the synchronous engine (`storage.rs`, `commit.rs`,
//!   `undo.rs`, `pack.rs`);
//! - [`AsyncFileStorage`] implements [`zeoraid_storage::Storage`] on top of it,
//!   running calls that may wait for the disk on `tokio::task::spawn_blocking`
//!   (loads and the finish's commit point run on the caller's thread: they only
//!   touch the page cache and memory), serialising votes with
//!   an async commit lock held from `vote` to the commit point of
//!   `finish`/`finish_deferred` (or `abort`); the votes' fsyncs and the
//!   finishes' durability run after the lock is released, on the storage's
//!   fsync thread (`syncer.rs`), shared between commits (group commit).
//!
//! The format, the index file, the lock file, the blob layout, pack and the
//! crash-recovery rules are documented byte by byte in `docs/filestorage.md`.

pub mod blobs;
pub mod commit;
pub mod error;
pub mod flips;
pub mod format;
pub mod group_sync;
pub mod index;
pub mod lock;
pub mod pack;
pub mod refs;
pub mod storage;
mod syncer;
pub mod undo;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use zeoraid_storage::{
    CurrentRecord, Finished, HistoryEntry, LoadedRecord, Oid, Operation, Storage, StorageError,
    StorageInfo, StorageResult, Tid, Transaction, TransactionStream, TxnId, UndoEntry, UndoFilter,
    VoteOutcome,
};

pub use commit::VoteSync;
pub use error::{FsError, FsResult};
pub use flips::FlipWait;
pub use pack::{PackOptions, ReferencesFn};
pub use storage::{FileStorage, Options, TxnIter};

/// How many transactions one blocking step of the async iterator reads.
const ITER_BATCH: usize = 64;

/// A [`FileStorage`] as an async [`Storage`].
pub struct AsyncFileStorage {
    engine: Arc<FileStorage>,
    /// The commit lock: held from `vote` until the commit point of `finish`
    /// (before its fsync) or `abort` (the guard sits in `voted`), and by pack
    /// while it copies the last transactions and swaps files.
    commit: Arc<AsyncMutex<()>>,
    voted: std::sync::Mutex<Option<Voted>>,
    references: ReferencesFn,
    /// The fsync thread of a writable storage (`syncer.rs`).
    syncer: Option<Arc<syncer::Syncer>>,
}

impl Drop for AsyncFileStorage {
    fn drop(&mut self) {
        if let Some(syncer) = &self.syncer {
            syncer.stop_and_join();
        }
    }
}

/// The voted transaction, holding the commit lock.
struct Voted {
    id: TxnId,
    _lock: OwnedMutexGuard<()>,
}

impl AsyncFileStorage {
    /// Open the storage at `path` (blocking work runs on the blocking pool).
    pub async fn open(path: impl Into<PathBuf>, opts: Options) -> StorageResult<Self> {
        let path = path.into();
        let engine = tokio::task::spawn_blocking(move || FileStorage::open(path, opts))
            .await
            .map_err(join_error)??;
        Ok(Self::from_engine(engine))
    }

    /// Wrap an already open engine.
    pub fn from_engine(engine: FileStorage) -> Self {
        let engine = Arc::new(engine);
        let syncer = if engine.options().read_only {
            None
        } else {
            syncer::Syncer::start(&engine)
        };
        AsyncFileStorage {
            engine,
            commit: Arc::new(AsyncMutex::new(())),
            voted: std::sync::Mutex::new(None),
            references: refs::default_references(),
            syncer,
        }
    }

    /// Use another "persistent references of a record" function for pack's GC.
    pub fn with_references(mut self, references: ReferencesFn) -> Self {
        self.references = references;
        self
    }

    /// The synchronous engine underneath.
    pub fn engine(&self) -> &Arc<FileStorage> {
        &self.engine
    }

    async fn blocking<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&FileStorage) -> FsResult<T> + Send + 'static,
    {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(join_error)?
            .map_err(StorageError::from)
    }

    fn voted_slot(&self) -> std::sync::MutexGuard<'_, Option<Voted>> {
        self.voted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Release the commit lock if `id` holds it.
    fn release(&self, id: TxnId) {
        let mut slot = self.voted_slot();
        if matches!(slot.as_ref(), Some(voted) if voted.id == id) {
            *slot = None;
        }
    }
}

/// Transactions with up to this many bytes of data are voted on the caller's
/// thread: writing them into the page cache costs less than the hand-off to a
/// blocking thread, which the next transaction would wait for under the commit
/// lock.
const INLINE_VOTE_BYTES: usize = 64 * 1024;

/// Whether `txn` is voted on the caller's thread: plain stores of up to
/// [`INLINE_VOTE_BYTES`]. Blobs are copied and undo reads older records back:
/// work for a blocking thread.
fn votes_inline(txn: &Transaction) -> bool {
    let mut bytes = 0;
    for op in &txn.ops {
        match op {
            Operation::Store { data, .. } => bytes += data.len(),
            Operation::CheckCurrentSerial { .. } | Operation::Delete { .. } => {}
            _ => return false,
        }
    }
    bytes <= INLINE_VOTE_BYTES
}

/// Votes `txn` on this thread up to its fsync, which is returned to run. A
/// transaction still voted in the engine belongs to a vote whose caller went
/// away (its future was dropped) while the caller holds the commit lock:
/// nobody can finish it any more, so it is aborted first.
fn vote_here(engine: &FileStorage, txn: &Transaction) -> (FsResult<VoteOutcome>, Option<VoteSync>) {
    if let Some(orphan) = engine.voted_id() {
        tracing::warn!("aborting orphaned voted transaction {orphan:?}");
        if let Err(e) = engine.abort(orphan) {
            return (Err(e), None);
        }
    }
    match engine.vote_unsynced(txn) {
        Ok((outcome, sync)) => (Ok(outcome), sync),
        Err(e) => (Err(e), None),
    }
}

/// Runs a vote's fsync on a blocking thread (without a running fsync thread).
/// A failure is logged; the storage then refuses writes, and the finish's
/// durability wait reports it.
fn run_vote_sync(engine: &FileStorage, sync: VoteSync) {
    let _ = sync.run(engine);
}

fn join_error(e: tokio::task::JoinError) -> StorageError {
    StorageError::Io(std::io::Error::other(format!(
        "filestorage task failed: {e}"
    )))
}

#[async_trait]
impl Storage for AsyncFileStorage {
    async fn info(&self) -> StorageResult<StorageInfo> {
        Ok(self.engine.info())
    }

    async fn last_transaction(&self) -> StorageResult<Tid> {
        self.engine.check_open()?;
        Ok(self.engine.last_transaction())
    }

    async fn load_before(&self, oid: Oid, before: Tid) -> StorageResult<Option<LoadedRecord>> {
        self.blocking(move |e| e.load_before(oid, before)).await
    }

    /// Loads only take the engine's state lock for reading (no fsync happens under
    /// its write side) and `pread` the page-cached file: cheap enough for the
    /// caller's thread, which saves the `spawn_blocking` hand-off.
    fn load_before_inline(
        &self,
        oid: Oid,
        before: Tid,
    ) -> Option<StorageResult<Option<LoadedRecord>>> {
        Some(
            self.engine
                .load_before(oid, before)
                .map_err(StorageError::from),
        )
    }

    async fn load_serial(&self, oid: Oid, serial: Tid) -> StorageResult<Bytes> {
        self.blocking(move |e| e.load_serial(oid, serial)).await
    }

    async fn history(&self, oid: Oid, size: usize) -> StorageResult<Vec<HistoryEntry>> {
        self.blocking(move |e| e.history(oid, size)).await
    }

    async fn record_iternext(&self, start: Option<Oid>) -> StorageResult<Option<CurrentRecord>> {
        self.blocking(move |e| e.record_iternext(start)).await
    }

    async fn iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> StorageResult<TransactionStream> {
        let iter = self.blocking(move |e| e.iterator(start, stop)).await?;
        let stream = futures::stream::unfold(Some(iter), |state| async move {
            let mut iter = state?;
            let batch = tokio::task::spawn_blocking(move || {
                let batch: Vec<_> = iter.by_ref().take(ITER_BATCH).collect();
                (iter, batch)
            })
            .await;
            match batch {
                Ok((iter, batch)) => {
                    if batch.is_empty() {
                        None
                    } else {
                        let items: Vec<StorageResult<_>> = batch
                            .into_iter()
                            .map(|r| r.map_err(StorageError::from))
                            .collect();
                        Some((futures::stream::iter(items), Some(iter)))
                    }
                }
                Err(e) => Some((futures::stream::iter(vec![Err(join_error(e))]), None)),
            }
        })
        .flatten();
        Ok(stream.boxed())
    }

    async fn undo_log(
        &self,
        first: u64,
        last: u64,
        filter: Option<UndoFilter>,
    ) -> StorageResult<Vec<UndoEntry>> {
        self.blocking(move |e| e.undo_log(first, last, filter.as_ref()))
            .await
    }

    async fn new_oids(&self, count: u32) -> StorageResult<Vec<Oid>> {
        Ok(self.engine.new_oids(count)?)
    }

    /// The vote is answered once the transaction is written; its fsync
    /// (`vote-fsync`) runs after the answer on the fsync thread, while the
    /// client's `tpc_finish` is on its way; the status byte is flipped only
    /// after it (`flips.rs`). A small transaction is written on the caller's
    /// thread ([`votes_inline`]); a larger one on a blocking thread.
    async fn vote(&self, txn: Transaction) -> StorageResult<VoteOutcome> {
        let guard = self.commit.clone().lock_owned().await;
        let id = txn.id;
        let outcome = if votes_inline(&txn) && self.engine.voted_id().is_none() {
            let (outcome, sync) = vote_here(&self.engine, &txn);
            if let Some(sync) = sync {
                let unposted = match &self.syncer {
                    Some(syncer) => syncer.post_vote(sync).err(),
                    None => Some(sync),
                };
                if let Some(sync) = unposted {
                    let engine = self.engine.clone();
                    tokio::task::spawn_blocking(move || run_vote_sync(&engine, sync));
                }
            }
            outcome.map_err(StorageError::from)
        } else {
            let engine = self.engine.clone();
            let (answer, answered) = tokio::sync::oneshot::channel();
            let task = tokio::task::spawn_blocking(move || {
                let (outcome, sync) = vote_here(&engine, &txn);
                let _ = answer.send(outcome);
                if let Some(sync) = sync {
                    run_vote_sync(&engine, sync);
                }
            });
            match answered.await {
                Ok(outcome) => outcome.map_err(StorageError::from),
                Err(_) => Err(match task.await {
                    Err(e) => join_error(e),
                    Ok(()) => {
                        StorageError::Io(std::io::Error::other("the vote ended without an answer"))
                    }
                }),
            }
        };
        if let Ok(VoteOutcome::Voted { .. }) = outcome {
            *self.voted_slot() = Some(Voted { id, _lock: guard });
        }
        outcome
    }

    async fn finish(&self, id: TxnId) -> StorageResult<Tid> {
        let finished = self.finish_deferred(id).await?;
        finished.durable.await?;
        Ok(finished.tid)
    }

    /// The commit point (index published; the status byte written, or queued
    /// until the vote's fsync has run) under the commit lock, which is released
    /// at once; the durability wait is a group fsync on the fsync thread,
    /// shared with the finishes around it. The commit point runs on the
    /// caller's thread: at most a one-byte write into the page cache and an
    /// index update, cheaper than the hand-off to a blocking thread, which the
    /// next transaction would wait for under the commit lock.
    async fn finish_deferred(&self, id: TxnId) -> StorageResult<Finished> {
        let result = self.engine.finish_deferred(id).map_err(StorageError::from);
        if result.is_ok() || self.engine.voted_tid().is_none() {
            self.release(id);
        }
        let (tid, wait) = result?;
        if self.engine.finished_durable(wait) {
            return Ok(Finished::already_durable(tid));
        }
        let engine = self.engine.clone();
        let syncer = self.syncer.clone();
        let durable = async move {
            if let Some(syncer) = syncer {
                if let Some(done) = syncer.wait_finished(&engine, wait).await {
                    return done.map_err(StorageError::from);
                }
            }
            tokio::task::spawn_blocking(move || engine.wait_finished(wait))
                .await
                .map_err(join_error)?
                .map_err(StorageError::from)
        };
        Ok(Finished {
            tid,
            durable: Box::pin(durable),
        })
    }

    async fn abort(&self, id: TxnId) -> StorageResult<()> {
        let result = self.blocking(move |e| e.abort(id)).await;
        self.release(id);
        result
    }

    async fn pack(&self, t: f64) -> StorageResult<()> {
        let refs = self.references.clone();
        let gc = self.engine.options().pack_gc;
        let job = self
            .blocking(move |e| {
                e.pack_prepare(
                    t,
                    PackOptions {
                        gc,
                        references: refs,
                    },
                )
            })
            .await?;
        let Some(job) = job else {
            return Ok(());
        };
        let job = Arc::new(std::sync::Mutex::new(job));
        // Copy what was committed meanwhile without the commit lock...
        let j = job.clone();
        let mut result = self
            .blocking(move |e| {
                let mut job = j.lock().unwrap_or_else(|p| p.into_inner());
                e.pack_copy_rest(&mut job)
            })
            .await;
        // ...then the rest, and swap the files, under it.
        if result.is_ok() {
            let _guard = self.commit.clone().lock_owned().await;
            let j = job.clone();
            result = self
                .blocking(move |e| {
                    let mut job = j.lock().unwrap_or_else(|p| p.into_inner());
                    e.pack_commit(&mut job)
                })
                .await;
        }
        if result.is_err() {
            let j = job.clone();
            let _ = self
                .blocking(move |e| {
                    let mut job = j.lock().unwrap_or_else(|p| p.into_inner());
                    e.pack_discard(&mut job);
                    Ok(())
                })
                .await;
        }
        result
    }

    async fn load_blob(&self, oid: Oid, serial: Tid) -> StorageResult<PathBuf> {
        self.blocking(move |e| e.load_blob(oid, serial)).await
    }

    async fn close(&self) -> StorageResult<()> {
        let result = self.blocking(|e| e.close()).await;
        *self.voted_slot() = None;
        result
    }
}

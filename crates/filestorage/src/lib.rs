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
//!   `finish`/`finish_deferred` (or `abort`); the finish's fsync runs after the
//!   lock is released, shared with other finishes (group commit).
//!
//! The format, the index file, the lock file, the blob layout, pack and the
//! crash-recovery rules are documented byte by byte in `docs/filestorage.md`.

pub mod blobs;
pub mod commit;
pub mod error;
pub mod format;
pub mod group_sync;
pub mod index;
pub mod lock;
pub mod pack;
pub mod refs;
pub mod storage;
pub mod undo;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use zeoraid_storage::{
    CurrentRecord, Finished, HistoryEntry, LoadedRecord, Oid, Storage, StorageError, StorageInfo,
    StorageResult, Tid, Transaction, TransactionStream, TxnId, UndoEntry, UndoFilter, VoteOutcome,
};

pub use error::{FsError, FsResult};
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
    voted: std::sync::Mutex<Option<(TxnId, OwnedMutexGuard<()>)>>,
    references: ReferencesFn,
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
        AsyncFileStorage {
            engine: Arc::new(engine),
            commit: Arc::new(AsyncMutex::new(())),
            voted: std::sync::Mutex::new(None),
            references: refs::default_references(),
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

    fn voted_slot(&self) -> std::sync::MutexGuard<'_, Option<(TxnId, OwnedMutexGuard<()>)>> {
        self.voted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Release the commit lock if `id` holds it.
    fn release(&self, id: TxnId) {
        let mut slot = self.voted_slot();
        if matches!(slot.as_ref(), Some((held, _)) if *held == id) {
            *slot = None;
        }
    }
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

    async fn vote(&self, txn: Transaction) -> StorageResult<VoteOutcome> {
        let guard = self.commit.clone().lock_owned().await;
        let id = txn.id;
        let outcome = self
            .blocking(move |e| {
                // Holding the commit lock, a transaction still voted in the
                // engine belongs to a vote whose caller went away (its future
                // was dropped): nobody can finish it any more.
                if let Some(orphan) = e.voted_id() {
                    tracing::warn!("aborting orphaned voted transaction {orphan:?}");
                    e.abort(orphan)?;
                }
                e.vote(&txn)
            })
            .await;
        if let Ok(VoteOutcome::Voted { .. }) = outcome {
            *self.voted_slot() = Some((id, guard));
        }
        outcome
    }

    async fn finish(&self, id: TxnId) -> StorageResult<Tid> {
        let finished = self.finish_deferred(id).await?;
        finished.durable.await?;
        Ok(finished.tid)
    }

    /// The commit point (status byte written, index published) under the
    /// commit lock, which is released at once; the durability wait is a group
    /// fsync on a blocking thread, shared with the finishes around it. The commit
    /// point runs on the caller's thread: a one-byte write into the page cache and
    /// an index update, cheaper than the hand-off to a blocking thread, which the
    /// next transaction would wait for under the commit lock.
    async fn finish_deferred(&self, id: TxnId) -> StorageResult<Finished> {
        let result = self.engine.finish_deferred(id).map_err(StorageError::from);
        if result.is_ok() || self.engine.voted_tid().is_none() {
            self.release(id);
        }
        let (tid, seq) = result?;
        if self.engine.group_sync().is_durable(seq) {
            return Ok(Finished::already_durable(tid));
        }
        let engine = self.engine.clone();
        let durable = async move {
            tokio::task::spawn_blocking(move || engine.wait_durable(seq))
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

//! The one abstraction every layer above speaks: a storage that commits whole
//! transactions in two phases and answers ZODB's reads.
//!
//! Implementations: the in-memory storage (tests), the embedded FileStorage, the
//! ZEO client (a remote backend) and the RAID (a storage over storages). The ZEO
//! server serves any of them.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use crate::error::StorageResult;
use crate::ids::{Oid, Tid};
use crate::record::{
    CurrentRecord, HistoryEntry, LoadedRecord, StorageInfo, TransactionRecord, UndoEntry,
};
use crate::transaction::{Invalidation, Transaction, TxnId, VoteOutcome};

/// Committed transactions in tid order, as `iterator(start, stop)` yields them.
pub type TransactionStream = BoxStream<'static, StorageResult<TransactionRecord>>;

/// Selects undo-log entries (ZODB's `undoInfo` specification, `undoLog` filter).
pub type UndoFilter = Arc<dyn Fn(&UndoEntry) -> bool + Send + Sync>;

/// The most oids one `new_oids` call hands out (ZEO's limit).
pub const MAX_NEW_OIDS: u32 = 100;

/// Resolves once a finished transaction is durable (or fails if it cannot be
/// made durable). Independent of the storage borrow, so it can be awaited after
/// every lock has been released.
pub type DurableWait = BoxFuture<'static, StorageResult<()>>;

/// A transaction past its commit point ([`Storage::finish_deferred`]).
pub struct Finished {
    /// The committed transaction's tid: the storage's latest transaction now.
    pub tid: Tid,
    /// Completes when the transaction is durable. Until then it must not be
    /// acknowledged or shown to anyone outside the process; if it fails, the
    /// transaction's fate is unknown until the storage is reopened.
    pub durable: DurableWait,
}

impl Finished {
    /// A transaction that was already durable when its finish returned.
    pub fn already_durable(tid: Tid) -> Self {
        Finished {
            tid,
            durable: Box::pin(std::future::ready(Ok(()))),
        }
    }
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("tid", &self.tid)
            .finish_non_exhaustive()
    }
}

/// The counters of a storage's cache of object records (a ZEO client's object
/// cache), for the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads answered from the cache.
    pub hits: u64,
    /// Loads that had to ask further.
    pub misses: u64,
    /// Bytes held.
    pub bytes: u64,
    /// The size the cache is kept within.
    pub capacity: u64,
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Facts for `get_info` and the operator.
    async fn info(&self) -> StorageResult<StorageInfo>;

    /// The tid of the last committed transaction, `Tid::ZERO` when there is none.
    async fn last_transaction(&self) -> StorageResult<Tid>;

    /// The revision of `oid` current just before `before`: `Ok(None)` when the
    /// object has no revision before it, `Err(PosKey)` when the object never existed.
    /// `Tid::MAX` reads the current revision. A deleted current revision is `PosKey`.
    async fn load_before(&self, oid: Oid, before: Tid) -> StorageResult<Option<LoadedRecord>>;

    /// [`Storage::load_before`] answered at once on the calling thread, for a
    /// storage that can do that without waiting on anything slow (an in-memory
    /// index over a page-cached file: a `pread` or two). The ZEO server tries it
    /// on its event loop before falling back to the async call, saving a thread
    /// hand-off per load. `None` (the default): not available, use the async call.
    fn load_before_inline(
        &self,
        oid: Oid,
        before: Tid,
    ) -> Option<StorageResult<Option<LoadedRecord>>> {
        let _ = (oid, before);
        None
    }

    /// The counters of the storage's object cache; `None` (the default): it
    /// keeps none.
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }

    /// The data of the revision of `oid` written by transaction `serial`.
    async fn load_serial(&self, oid: Oid, serial: Tid) -> StorageResult<Bytes>;

    /// Up to `size` revisions of `oid`, newest first.
    async fn history(&self, oid: Oid, size: usize) -> StorageResult<Vec<HistoryEntry>>;

    /// The current record of the first object at or after `start` (oid order), with
    /// the oid to ask for next; `None` when there is no object at all.
    async fn record_iternext(&self, start: Option<Oid>) -> StorageResult<Option<CurrentRecord>>;

    /// Committed transactions with `start <= tid <= stop`, in tid order.
    async fn iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> StorageResult<TransactionStream>;

    /// Undo-log entries `first..last` (newest first) among those `filter` accepts.
    async fn undo_log(
        &self,
        first: u64,
        last: u64,
        filter: Option<UndoFilter>,
    ) -> StorageResult<Vec<UndoEntry>>;

    /// `count` fresh oids (at most [`MAX_NEW_OIDS`], at least one), ascending, never
    /// handed out before by this storage.
    async fn new_oids(&self, count: u32) -> StorageResult<Vec<Oid>>;

    /// First phase of commit: check and write the whole transaction so that
    /// `finish` cannot fail for a reason the vote could have seen. One transaction
    /// at a time is between vote and finish; a second vote waits for the first to
    /// finish or abort.
    async fn vote(&self, txn: Transaction) -> StorageResult<VoteOutcome>;

    /// Second phase: make the voted transaction durable and visible; returns its tid.
    async fn finish(&self, id: TxnId) -> StorageResult<Tid>;

    /// Second phase split at the commit point, for group commit: returns as soon
    /// as the voted transaction is the storage's latest — the next `vote` may run
    /// and sees it in its conflict checks, reads may see it — together with a
    /// wait for its durability ([`Finished::durable`]). A caller that releases
    /// its own commit lock at once lets the next transactions vote and finish
    /// while this one's fsync runs, and one fsync can then cover several
    /// finishes. The caller must not acknowledge the transaction or publish it
    /// (invalidations, last tid) before `durable` resolved `Ok`.
    ///
    /// An error means the commit point was not reached (as for `finish`); after
    /// an `Ok`, the transaction can no longer be aborted.
    ///
    /// The default is [`Storage::finish`], durable when it returns.
    async fn finish_deferred(&self, id: TxnId) -> StorageResult<Finished> {
        Ok(Finished::already_durable(self.finish(id).await?))
    }

    /// Drop the voted transaction (or nothing, if `id` is not voted) without a trace.
    async fn abort(&self, id: TxnId) -> StorageResult<()>;

    /// Remove history older than the Unix time `t`, keeping what is current then
    /// (and, with garbage collection configured, dropping what is unreachable).
    async fn pack(&self, t: f64) -> StorageResult<()>;

    /// A readable file holding the blob of `oid` revision `serial`.
    async fn load_blob(&self, oid: Oid, serial: Tid) -> StorageResult<PathBuf>;

    /// Commits that reached this storage by another path (a remote backend written to
    /// by someone else). `None` for storages only zeoraid writes to.
    fn invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        None
    }

    /// Release files, locks and connections.
    async fn close(&self) -> StorageResult<()>;
}

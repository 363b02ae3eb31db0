//! The in-memory storage behind a wrapper the test steers: it can hold the next
//! finish before or after its commit becomes visible, hold the next finish's
//! durability, and slow loads down.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{oneshot, Mutex, Notify};
use zeoraid_memstorage::MemStorage;
use zeoraid_storage::{
    CurrentRecord, Finished, HistoryEntry, LoadedRecord, Oid, Storage, StorageError, StorageInfo,
    StorageResult, Tid, Transaction, TransactionStream, TxnId, UndoEntry, UndoFilter, VoteOutcome,
};

/// Where a held finish waits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HoldFinish {
    /// Before the inner storage commits: the new state is not visible yet.
    BeforePublishing,
    /// After the inner storage committed: visible, but the finish has not
    /// returned (like a storage that publishes and then syncs).
    AfterPublishing,
}

pub struct HeldStorage {
    pub inner: MemStorage,
    hold: std::sync::Mutex<Option<HoldFinish>>,
    /// Signalled when a held finish is waiting.
    pub entered: Notify,
    /// Held finishes wait for this.
    pub release: Arc<Mutex<()>>,
    /// The durability wait of the next finish, answered by the test.
    durability: std::sync::Mutex<Option<oneshot::Receiver<Result<(), String>>>>,
    load_delay: Option<Duration>,
}

impl HeldStorage {
    pub fn new(load_delay: Option<Duration>) -> Arc<HeldStorage> {
        Arc::new(HeldStorage {
            inner: MemStorage::new(),
            hold: std::sync::Mutex::new(None),
            entered: Notify::new(),
            release: Arc::new(Mutex::new(())),
            durability: std::sync::Mutex::new(None),
            load_delay,
        })
    }

    /// Hold the next finish at `at` until `release` is free.
    pub fn hold_next_finish(&self, at: HoldFinish) {
        *self.hold.lock().unwrap() = Some(at);
    }

    /// Hold the durability of the next finish (which passes its commit point at
    /// once) until the sender answers.
    pub fn hold_next_durability(&self) -> oneshot::Sender<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        *self.durability.lock().unwrap() = Some(rx);
        tx
    }

    async fn wait_held(&self) {
        self.entered.notify_one();
        let _wait = self.release.lock().await;
    }
}

#[async_trait]
impl Storage for HeldStorage {
    async fn info(&self) -> StorageResult<StorageInfo> {
        self.inner.info().await
    }
    async fn last_transaction(&self) -> StorageResult<Tid> {
        self.inner.last_transaction().await
    }
    async fn load_before(&self, oid: Oid, before: Tid) -> StorageResult<Option<LoadedRecord>> {
        if let Some(delay) = self.load_delay {
            tokio::time::sleep(delay).await;
        }
        self.inner.load_before(oid, before).await
    }
    async fn load_serial(&self, oid: Oid, serial: Tid) -> StorageResult<Bytes> {
        self.inner.load_serial(oid, serial).await
    }
    async fn history(&self, oid: Oid, size: usize) -> StorageResult<Vec<HistoryEntry>> {
        self.inner.history(oid, size).await
    }
    async fn record_iternext(&self, start: Option<Oid>) -> StorageResult<Option<CurrentRecord>> {
        self.inner.record_iternext(start).await
    }
    async fn iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> StorageResult<TransactionStream> {
        self.inner.iterator(start, stop).await
    }
    async fn undo_log(
        &self,
        first: u64,
        last: u64,
        filter: Option<UndoFilter>,
    ) -> StorageResult<Vec<UndoEntry>> {
        self.inner.undo_log(first, last, filter).await
    }
    async fn new_oids(&self, count: u32) -> StorageResult<Vec<Oid>> {
        self.inner.new_oids(count).await
    }
    async fn vote(&self, txn: Transaction) -> StorageResult<VoteOutcome> {
        self.inner.vote(txn).await
    }
    async fn finish(&self, id: TxnId) -> StorageResult<Tid> {
        let finished = self.finish_deferred(id).await?;
        finished.durable.await?;
        Ok(finished.tid)
    }
    async fn finish_deferred(&self, id: TxnId) -> StorageResult<Finished> {
        let at = self.hold.lock().unwrap().take();
        if at == Some(HoldFinish::BeforePublishing) {
            self.wait_held().await;
        }
        let tid = self.inner.finish(id).await?;
        if at == Some(HoldFinish::AfterPublishing) {
            self.wait_held().await;
        }
        let held = self.durability.lock().unwrap().take();
        Ok(match held {
            None => Finished::already_durable(tid),
            Some(rx) => Finished {
                tid,
                durable: Box::pin(async move {
                    match rx.await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(StorageError::Io(std::io::Error::other(e))),
                        Err(_) => Err(StorageError::Io(std::io::Error::other("dropped"))),
                    }
                }),
            },
        })
    }
    async fn abort(&self, id: TxnId) -> StorageResult<()> {
        self.inner.abort(id).await
    }
    async fn pack(&self, t: f64) -> StorageResult<()> {
        self.inner.pack(t).await
    }
    async fn load_blob(&self, oid: Oid, serial: Tid) -> StorageResult<PathBuf> {
        self.inner.load_blob(oid, serial).await
    }
    async fn close(&self) -> StorageResult<()> {
        self.inner.close().await
    }
}

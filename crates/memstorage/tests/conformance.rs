//! Runs the whole Storage conformance suite against the memory storage, with blobs
//! in a temporary directory and garbage collection at pack.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use zeoraid_conformance::{Capabilities, FnHarness, Harness};
use zeoraid_memstorage::MemStorage;
use zeoraid_storage::{
    CurrentRecord, HistoryEntry, LoadedRecord, Oid, Storage, StorageInfo, StorageResult, Tid,
    Transaction, TransactionStream, TxnId, UndoEntry, UndoFilter, VoteOutcome,
};

/// The real reference finder (ZODB's `referencesf`), as the embedded FileStorage
/// uses it; a record it cannot read refers to nothing.
fn wire_references(data: &[u8]) -> Vec<Oid> {
    zeoraid_wire::pickle::references::persistent_references(data)
        .map(|oids| oids.into_iter().map(Oid).collect())
        .unwrap_or_default()
}

struct MemHarness;

#[async_trait]
impl Harness for MemHarness {
    type Storage = MemStorage;
    type Place = tempfile::TempDir;

    fn capabilities(&self) -> Capabilities {
        Capabilities::all_in_memory()
    }

    async fn create(&self) -> StorageResult<(MemStorage, tempfile::TempDir)> {
        let dir = tempfile::tempdir()?;
        let storage = MemStorage::new()
            .with_blob_dir(dir.path().join("blobs"))?
            .with_references(Arc::new(wire_references));
        Ok((storage, dir))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_full() {
    zeoraid_conformance::run_all(MemHarness).await;
}

/// With the suite's own minimal reference finder, and again without blobs and GC
/// (the capability switches skip what does not apply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_reference_finder() {
    let caps = Capabilities {
        undo: true,
        pack: true,
        gc: true,
        ..Capabilities::default()
    };
    zeoraid_conformance::run_all(FnHarness::new(caps, || async {
        Ok(MemStorage::new().with_references(Arc::new(zeoraid_conformance::data::references)))
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_plain() {
    let caps = Capabilities {
        undo: true,
        pack: true,
        ..Capabilities::default()
    };
    zeoraid_conformance::run_all(FnHarness::new(caps, || async { Ok(MemStorage::new()) })).await;
}

/// The memory storage seen through a shared handle, so that "reopening" hands back
/// the same contents: this exercises the suite's durability case itself.
struct Reopenable(Arc<MemStorage>);

#[async_trait]
impl Storage for Reopenable {
    async fn info(&self) -> StorageResult<StorageInfo> {
        self.0.info().await
    }
    async fn last_transaction(&self) -> StorageResult<Tid> {
        self.0.last_transaction().await
    }
    async fn load_before(&self, oid: Oid, before: Tid) -> StorageResult<Option<LoadedRecord>> {
        self.0.load_before(oid, before).await
    }
    async fn load_serial(&self, oid: Oid, serial: Tid) -> StorageResult<Bytes> {
        self.0.load_serial(oid, serial).await
    }
    async fn history(&self, oid: Oid, size: usize) -> StorageResult<Vec<HistoryEntry>> {
        self.0.history(oid, size).await
    }
    async fn record_iternext(&self, start: Option<Oid>) -> StorageResult<Option<CurrentRecord>> {
        self.0.record_iternext(start).await
    }
    async fn iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> StorageResult<TransactionStream> {
        self.0.iterator(start, stop).await
    }
    async fn undo_log(
        &self,
        first: u64,
        last: u64,
        filter: Option<UndoFilter>,
    ) -> StorageResult<Vec<UndoEntry>> {
        self.0.undo_log(first, last, filter).await
    }
    async fn new_oids(&self, count: u32) -> StorageResult<Vec<Oid>> {
        self.0.new_oids(count).await
    }
    async fn vote(&self, txn: Transaction) -> StorageResult<VoteOutcome> {
        self.0.vote(txn).await
    }
    async fn finish(&self, id: TxnId) -> StorageResult<Tid> {
        self.0.finish(id).await
    }
    async fn abort(&self, id: TxnId) -> StorageResult<()> {
        self.0.abort(id).await
    }
    async fn pack(&self, t: f64) -> StorageResult<()> {
        self.0.pack(t).await
    }
    async fn load_blob(&self, oid: Oid, serial: Tid) -> StorageResult<PathBuf> {
        self.0.load_blob(oid, serial).await
    }
    async fn close(&self) -> StorageResult<()> {
        self.0.close().await
    }
}

struct ReopenHarness;

#[async_trait]
impl Harness for ReopenHarness {
    type Storage = Reopenable;
    type Place = Arc<MemStorage>;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            undo: true,
            pack: true,
            durable: true,
            ..Capabilities::default()
        }
    }

    async fn create(&self) -> StorageResult<(Reopenable, Arc<MemStorage>)> {
        let inner = Arc::new(MemStorage::new());
        Ok((Reopenable(inner.clone()), inner))
    }

    async fn reopen(&self, place: &Arc<MemStorage>) -> StorageResult<Reopenable> {
        Ok(Reopenable(place.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_reopen_case() {
    let report =
        zeoraid_conformance::run_selected(&ReopenHarness, |name| name.starts_with("durable::"))
            .await;
    assert_eq!(report.passed(), 1, "{}", report.summary());
}

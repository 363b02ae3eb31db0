//! Test support: a fault-injecting [`Storage`] wrapping a [`MemStorage`], and
//! helpers to build RAIDs and commit through them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::broadcast;
use zeoraid_memstorage::MemStorage;
use zeoraid_raid::{BackendState, RaidOptions, RaidStorage};
use zeoraid_storage::{
    Conflict, CurrentRecord, DurableWait, Finished, HistoryEntry, Invalidation, LoadedRecord, Oid,
    Operation, Storage, StorageError, StorageInfo, StorageResult, Tid, Transaction,
    TransactionMeta, TransactionRecord, TransactionStream, TxnId, UndoEntry, UndoFilter,
    VoteOutcome,
};

/// Which calls a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Vote,
    Finish,
    /// Every read: load_before, load_serial, history, record_iternext, undo_log,
    /// load_blob, info, iterator (opening).
    Read,
    LastTransaction,
    NewOids,
    /// The durability wait of a deferred finish (`finish_deferred`).
    Durable,
}

/// What happens to the call.
#[derive(Clone, Debug)]
pub enum Action {
    /// Fail with an I/O error (a failure of this storage, not an answer).
    Fail,
    /// Refuse out of the storage's own state (`StorageError::Refused`).
    Refuse(&'static str),
    /// Sleep an hour (past any timeout), then do the call.
    Hang,
    /// Vote: answer a write conflict on the first stored oid without voting.
    Conflict,
    /// Vote: answer a POSKeyError on the first stored oid without voting.
    PosKey,
    /// Finish: finish, but return another tid.
    WrongTid,
    /// Read (iterator): yield this many transactions, then fail.
    StreamFailAfter(usize),
    /// Durable: wait until the semaphore gives a permit.
    WaitFor(Arc<tokio::sync::Semaphore>),
    /// Last transaction: report this tid instead (Python's FileStorage reports a
    /// transaction cut off between vote and finish as its last).
    ReportLast(Tid),
}

/// A MemStorage with faults injected on demand.
pub struct Faulty {
    pub inner: Arc<MemStorage>,
    next: Mutex<HashMap<Op, VecDeque<Action>>>,
    always: Mutex<HashMap<Op, Action>>,
    announce: Option<broadcast::Sender<Invalidation>>,
}

pub fn injected() -> StorageError {
    StorageError::Io(std::io::Error::other("injected failure"))
}

impl Faulty {
    pub fn new(inner: MemStorage) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner: Arc::new(inner),
            next: Mutex::new(HashMap::new()),
            always: Mutex::new(HashMap::new()),
            announce: None,
        })
    }

    /// One with an invalidation stream the test can announce on.
    pub fn with_invalidations(inner: MemStorage) -> Arc<Faulty> {
        let (tx, _) = broadcast::channel(64);
        Arc::new(Faulty {
            inner: Arc::new(inner),
            next: Mutex::new(HashMap::new()),
            always: Mutex::new(HashMap::new()),
            announce: Some(tx),
        })
    }

    pub fn announce(&self, inv: Invalidation) {
        if let Some(tx) = &self.announce {
            let _ = tx.send(inv);
        }
    }

    /// The next call of `op` gets `action`.
    pub fn next(&self, op: Op, action: Action) {
        self.next
            .lock()
            .unwrap()
            .entry(op)
            .or_default()
            .push_back(action);
    }

    /// Every call of `op` gets `action` from now on.
    pub fn always(&self, op: Op, action: Action) {
        self.always.lock().unwrap().insert(op, action);
    }

    pub fn heal(&self) {
        self.next.lock().unwrap().clear();
        self.always.lock().unwrap().clear();
    }

    fn take(&self, op: Op) -> Option<Action> {
        if let Some(a) = self
            .next
            .lock()
            .unwrap()
            .get_mut(&op)
            .and_then(|q| q.pop_front())
        {
            return Some(a);
        }
        self.always.lock().unwrap().get(&op).cloned()
    }

    /// Applies Fail/Hang for `op`; returns other actions for the caller.
    async fn gate(&self, op: Op) -> StorageResult<Option<Action>> {
        match self.take(op) {
            Some(Action::Fail) => Err(injected()),
            Some(Action::Refuse(why)) => Err(StorageError::Refused(why.into())),
            Some(Action::Hang) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(None)
            }
            Some(Action::WaitFor(gate)) => {
                let _permit = gate.acquire().await;
                Ok(None)
            }
            other => Ok(other),
        }
    }
}

fn first_store(txn: &Transaction) -> Option<(Oid, Tid, Bytes)> {
    txn.ops.iter().find_map(|op| match op {
        Operation::Store { oid, serial, data }
        | Operation::StoreBlob {
            oid, serial, data, ..
        } => Some((*oid, *serial, data.clone())),
        _ => None,
    })
}

#[async_trait]
impl Storage for Faulty {
    async fn info(&self) -> StorageResult<StorageInfo> {
        self.gate(Op::Read).await?;
        self.inner.info().await
    }
    async fn last_transaction(&self) -> StorageResult<Tid> {
        if let Some(Action::ReportLast(tid)) = self.gate(Op::LastTransaction).await? {
            return Ok(tid);
        }
        self.inner.last_transaction().await
    }
    async fn load_before(&self, oid: Oid, before: Tid) -> StorageResult<Option<LoadedRecord>> {
        self.gate(Op::Read).await?;
        self.inner.load_before(oid, before).await
    }
    /// Answers at once, like an embedded FileStorage: `Fail`/`Refuse` as errors,
    /// `Hang` (which nothing inline can do) as "not available inline".
    fn load_before_inline(
        &self,
        oid: Oid,
        before: Tid,
    ) -> Option<StorageResult<Option<LoadedRecord>>> {
        match self.take(Op::Read) {
            Some(Action::Fail) => Some(Err(injected())),
            Some(Action::Refuse(why)) => Some(Err(StorageError::Refused(why.into()))),
            Some(Action::Hang) => None,
            _ => self.inner.load_before(oid, before).now_or_never(),
        }
    }
    async fn load_serial(&self, oid: Oid, serial: Tid) -> StorageResult<Bytes> {
        self.gate(Op::Read).await?;
        self.inner.load_serial(oid, serial).await
    }
    async fn history(&self, oid: Oid, size: usize) -> StorageResult<Vec<HistoryEntry>> {
        self.gate(Op::Read).await?;
        self.inner.history(oid, size).await
    }
    async fn record_iternext(&self, start: Option<Oid>) -> StorageResult<Option<CurrentRecord>> {
        self.gate(Op::Read).await?;
        self.inner.record_iternext(start).await
    }
    async fn iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> StorageResult<TransactionStream> {
        let action = self.gate(Op::Read).await?;
        let stream = self.inner.iterator(start, stop).await?;
        match action {
            Some(Action::StreamFailAfter(n)) => Ok(Box::pin(
                stream
                    .take(n)
                    .chain(futures::stream::once(async { Err(injected()) })),
            )),
            _ => Ok(stream),
        }
    }
    async fn undo_log(
        &self,
        first: u64,
        last: u64,
        filter: Option<UndoFilter>,
    ) -> StorageResult<Vec<UndoEntry>> {
        self.gate(Op::Read).await?;
        self.inner.undo_log(first, last, filter).await
    }
    async fn new_oids(&self, count: u32) -> StorageResult<Vec<Oid>> {
        self.gate(Op::NewOids).await?;
        self.inner.new_oids(count).await
    }
    async fn vote(&self, txn: Transaction) -> StorageResult<VoteOutcome> {
        match self.gate(Op::Vote).await? {
            Some(Action::Conflict) => {
                let (oid, serial, data) = first_store(&txn).expect("a store to conflict on");
                Ok(VoteOutcome::Conflicts(vec![Conflict {
                    oid,
                    committed: Tid::from_u64(serial.as_u64() + 1),
                    read: serial,
                    data,
                }]))
            }
            Some(Action::PosKey) => {
                let (oid, _, _) = first_store(&txn).expect("a store");
                Err(StorageError::PosKey { oid })
            }
            _ => self.inner.vote(txn).await,
        }
    }
    async fn finish(&self, id: TxnId) -> StorageResult<Tid> {
        let action = self.gate(Op::Finish).await?;
        let tid = self.inner.finish(id).await?;
        match action {
            Some(Action::WrongTid) => Ok(Tid::from_u64(tid.as_u64() + 1)),
            _ => Ok(tid),
        }
    }
    /// Commits at once (the commit point); the durability wait obeys `Op::Durable`.
    async fn finish_deferred(&self, id: TxnId) -> StorageResult<Finished> {
        let tid = self.finish(id).await?;
        let durable: DurableWait = match self.take(Op::Durable) {
            Some(Action::Fail) => Box::pin(async { Err(injected()) }),
            Some(Action::Hang) => Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }),
            Some(Action::WaitFor(gate)) => Box::pin(async move {
                let _permit = gate.acquire().await;
                Ok(())
            }),
            _ => Box::pin(async { Ok(()) }),
        };
        Ok(Finished { tid, durable })
    }
    async fn abort(&self, id: TxnId) -> StorageResult<()> {
        self.inner.abort(id).await
    }
    async fn pack(&self, t: f64) -> StorageResult<()> {
        self.inner.pack(t).await
    }
    async fn load_blob(&self, oid: Oid, serial: Tid) -> StorageResult<PathBuf> {
        self.gate(Op::Read).await?;
        self.inner.load_blob(oid, serial).await
    }
    fn invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        self.announce.as_ref().map(|tx| tx.subscribe())
    }
    async fn close(&self) -> StorageResult<()> {
        self.inner.close().await
    }
}

/// `n` fault-injecting memory backends named b0, b1, ….
pub fn backends(n: usize) -> Vec<Arc<Faulty>> {
    (0..n)
        .map(|i| Faulty::new(MemStorage::new().with_name(format!("b{i}"))))
        .collect()
}

pub fn specs(
    backends: &[Arc<Faulty>],
    timeout: Option<Duration>,
) -> Vec<(String, Arc<dyn Storage>, Option<Duration>)> {
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("b{i}"), Arc::clone(b) as Arc<dyn Storage>, timeout))
        .collect()
}

pub async fn open(backends: &[Arc<Faulty>], options: RaidOptions) -> RaidStorage {
    RaidStorage::open(specs(backends, None), options)
        .await
        .expect("open")
}

static NEXT_TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub fn txn(ops: Vec<Operation>) -> Transaction {
    let id = TxnId(NEXT_TXN.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let mut t = Transaction::new(
        id,
        TransactionMeta {
            user: Bytes::from_static(b"tester"),
            description: Bytes::from(format!("txn {}", id.0)),
            extension: Bytes::new(),
        },
    );
    t.ops = ops;
    t
}

pub fn store(oid: Oid, serial: Tid, data: &str) -> Operation {
    Operation::Store {
        oid,
        serial,
        data: Bytes::from(data.to_string()),
    }
}

/// Votes and finishes; the vote must succeed.
pub async fn commit(s: &dyn Storage, ops: Vec<Operation>) -> StorageResult<Tid> {
    let t = txn(ops);
    let id = t.id;
    match s.vote(t).await? {
        VoteOutcome::Voted { .. } => s.finish(id).await,
        VoteOutcome::Conflicts(c) => Err(StorageError::Transaction(format!("conflicts: {c:?}"))),
    }
}

/// Every transaction of `s`, in order.
pub async fn transactions(s: &dyn Storage) -> Vec<TransactionRecord> {
    let stream = s.iterator(None, None).await.expect("iterator");
    stream
        .map(|r| r.expect("iterator item"))
        .collect::<Vec<_>>()
        .await
}

/// The current data of `oid` on `s`.
pub async fn current(s: &dyn Storage, oid: Oid) -> StorageResult<(Bytes, Tid)> {
    let rec = s
        .load_before(oid, Tid::MAX)
        .await?
        .ok_or(StorageError::PosKey { oid })?;
    Ok((rec.data, rec.start))
}

/// The reason backend `name` is degraded; panics when it is not.
pub fn degraded_reason(raid: &RaidStorage, name: &str) -> String {
    match raid.backend_state(name) {
        Some(BackendState::Degraded { reason }) => reason,
        other => panic!("{name} is not degraded: {other:?}"),
    }
}

pub fn assert_optimal(raid: &RaidStorage, name: &str) {
    assert_eq!(
        raid.backend_state(name),
        Some(BackendState::Optimal),
        "{name} should be optimal"
    );
}

/// Commits a fresh object through the RAID; returns its oid and tid.
pub async fn commit_new(raid: &RaidStorage, data: &str) -> (Oid, Tid) {
    let oid = raid.new_oids(1).await.unwrap()[0];
    let tid = commit(raid, vec![store(oid, Tid::ZERO, data)])
        .await
        .unwrap();
    (oid, tid)
}

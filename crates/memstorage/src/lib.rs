//! The in-memory [`Storage`] the tests run against: every revision of every object
//! kept in memory (MVCC), back-pointers preserved for the iterator, FileStorage's
//! transactional undo (without conflict resolution), pack with optional garbage
//! collection through a pluggable reference finder, and blobs as files in a
//! directory given at construction.
//!
//! It follows FileStorage where the contract leaves room (undo-log ids, sizes,
//! packed transactions' status), so that results compare alike across backends.

mod pack;
mod state;
mod undo_id;
mod vote;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeoraid_storage::{
    CurrentRecord, HistoryEntry, LoadedRecord, Oid, Storage, StorageError, StorageInfo,
    StorageResult, Tid, Transaction, TransactionStream, TxnId, UndoEntry, UndoFilter, VoteOutcome,
    MAX_NEW_OIDS,
};

use crate::state::{State, Txn};
use crate::vote::{Checked, Prepared};

/// Finds the oids an object record refers to (for garbage collection at pack).
pub type ReferencesFn = Arc<dyn Fn(&[u8]) -> Vec<Oid> + Send + Sync>;

/// A transaction between vote and finish/abort, holding the commit lock.
struct Voted {
    id: TxnId,
    prepared: Prepared,
    _permit: OwnedSemaphorePermit,
}

/// An in-memory storage.
pub struct MemStorage {
    name: String,
    blob_dir: Option<PathBuf>,
    references: Option<ReferencesFn>,
    state: Mutex<State>,
    /// One permit: held from vote to finish/abort, and by pack.
    commit_lock: Arc<Semaphore>,
    voted: Mutex<Option<Voted>>,
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemStorage {
    /// An empty storage without blobs and without garbage collection at pack.
    pub fn new() -> Self {
        MemStorage {
            name: "MemStorage".into(),
            blob_dir: None,
            references: None,
            state: Mutex::new(State::default()),
            commit_lock: Arc::new(Semaphore::new(1)),
            voted: Mutex::new(None),
        }
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Supports blobs, keeping them as files under `dir` (created if missing).
    pub fn with_blob_dir(mut self, dir: impl AsRef<Path>) -> StorageResult<Self> {
        std::fs::create_dir_all(dir.as_ref())?;
        self.blob_dir = Some(dir.as_ref().to_path_buf());
        Ok(self)
    }

    /// Collects garbage at pack, finding references with `references`.
    pub fn with_references(mut self, references: ReferencesFn) -> Self {
        self.references = Some(references);
        self
    }

    async fn commit_permit(&self) -> StorageResult<OwnedSemaphorePermit> {
        self.commit_lock
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Refused("storage is closed".into()))
    }
}

fn copy_blobs(copies: &[(PathBuf, PathBuf)]) -> StorageResult<()> {
    for (i, (from, to)) in copies.iter().enumerate() {
        let done = (|| {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(from, to).map(|_| ())
        })();
        if let Err(e) = done {
            remove_files(copies[..i].iter().map(|(_, to)| to));
            return Err(StorageError::Io(e));
        }
    }
    Ok(())
}

fn remove_files<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

#[async_trait]
impl Storage for MemStorage {
    async fn info(&self) -> StorageResult<StorageInfo> {
        let st = lock(&self.state);
        Ok(StorageInfo {
            name: self.name.clone(),
            length: st.objects.len() as u64,
            size: st.size(),
            supports_undo: true,
            supports_blobs: self.blob_dir.is_some(),
            read_only: false,
        })
    }

    async fn last_transaction(&self) -> StorageResult<Tid> {
        Ok(lock(&self.state).last_tid)
    }

    async fn load_before(&self, oid: Oid, before: Tid) -> StorageResult<Option<LoadedRecord>> {
        lock(&self.state).load_before(oid, before)
    }

    async fn load_serial(&self, oid: Oid, serial: Tid) -> StorageResult<Bytes> {
        lock(&self.state).load_serial(oid, serial)
    }

    async fn history(&self, oid: Oid, size: usize) -> StorageResult<Vec<HistoryEntry>> {
        lock(&self.state).history(oid, size)
    }

    async fn record_iternext(&self, start: Option<Oid>) -> StorageResult<Option<CurrentRecord>> {
        Ok(lock(&self.state).record_iternext(start))
    }

    async fn iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> StorageResult<TransactionStream> {
        let txns = lock(&self.state).transactions(start, stop);
        Ok(Box::pin(futures::stream::iter(txns.into_iter().map(Ok))))
    }

    async fn undo_log(
        &self,
        first: u64,
        last: u64,
        filter: Option<UndoFilter>,
    ) -> StorageResult<Vec<UndoEntry>> {
        let st = lock(&self.state);
        let mut found = 0u64;
        let mut out = Vec::new();
        for (&tid, txn) in st.txns.iter().rev() {
            if found >= last || txn.status == b'p' {
                break;
            }
            if txn.status != b' ' {
                continue;
            }
            let entry = UndoEntry {
                id: Bytes::from(undo_id::encode(tid)),
                tid,
                meta: txn.meta.clone(),
                size: st.txn_size(tid, txn),
            };
            let accepted = match &filter {
                Some(f) => f(&entry),
                None => true,
            };
            if accepted {
                if found >= first {
                    out.push(entry);
                }
                found += 1;
            }
        }
        Ok(out)
    }

    async fn new_oids(&self, count: u32) -> StorageResult<Vec<Oid>> {
        let count = count.clamp(1, MAX_NEW_OIDS);
        let mut st = lock(&self.state);
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            st.max_oid = st
                .max_oid
                .checked_add(1)
                .ok_or_else(|| StorageError::Refused("oids exhausted".into()))?;
            out.push(Oid::from_u64(st.max_oid));
        }
        Ok(out)
    }

    async fn vote(&self, txn: Transaction) -> StorageResult<VoteOutcome> {
        let permit = self.commit_permit().await?;
        let id = txn.id;
        let checked = vote::check(&lock(&self.state), self.blob_dir.as_deref(), txn)?;
        let prepared = match checked {
            Checked::Conflicts(conflicts) => return Ok(VoteOutcome::Conflicts(conflicts)),
            Checked::Ready(prepared) => prepared,
        };
        copy_blobs(&prepared.blob_copies)?;
        let undone = prepared.undone.clone();
        *lock(&self.voted) = Some(Voted {
            id,
            prepared,
            _permit: permit,
        });
        Ok(VoteOutcome::Voted { undone })
    }

    async fn finish(&self, id: TxnId) -> StorageResult<Tid> {
        let voted = {
            let mut slot = lock(&self.voted);
            match slot.take() {
                Some(v) if v.id == id => v,
                other => {
                    *slot = other;
                    return Err(StorageError::Transaction(format!(
                        "finish of transaction {id:?}, which is not voted"
                    )));
                }
            }
        };
        let p = voted.prepared;
        let mut st = lock(&self.state);
        let mut oids = Vec::with_capacity(p.revs.len());
        for (oid, rev) in p.revs {
            st.max_oid = st.max_oid.max(oid.as_u64());
            st.objects.entry(oid).or_default().push(rev);
            oids.push(oid);
        }
        st.txns.insert(
            p.tid,
            Txn {
                status: p.status,
                meta: p.meta,
                oids,
            },
        );
        st.last_tid = p.tid;
        Ok(p.tid)
        // The permit is released when `voted` goes out of scope.
    }

    async fn abort(&self, id: TxnId) -> StorageResult<()> {
        let voted = {
            let mut slot = lock(&self.voted);
            match slot.take() {
                Some(v) if v.id == id => Some(v),
                other => {
                    *slot = other;
                    None
                }
            }
        };
        if let Some(v) = voted {
            remove_files(v.prepared.blob_copies.iter().map(|(_, to)| to));
        }
        Ok(())
    }

    async fn pack(&self, t: f64) -> StorageResult<()> {
        let _permit = self.commit_permit().await?;
        let stop = Tid::from_unix_time(t);
        let dead = {
            let mut st = lock(&self.state);
            if st.pack_stop.is_some_and(|prev| stop <= prev) {
                return Ok(());
            }
            pack::pack(&mut st, stop, self.references.as_ref())
        };
        remove_files(dead.iter());
        Ok(())
    }

    async fn load_blob(&self, oid: Oid, serial: Tid) -> StorageResult<PathBuf> {
        if self.blob_dir.is_none() {
            return Err(StorageError::Unsupported(
                "blobs (no blob directory)".into(),
            ));
        }
        lock(&self.state)
            .rev_at(oid, serial)
            .and_then(|r| r.blob.clone())
            .ok_or(StorageError::PosKey { oid })
    }

    async fn close(&self) -> StorageResult<()> {
        Ok(())
    }
}

//! The first phase of commit: checking a whole transaction against the committed
//! state and working out the revisions it writes (stores, restores with
//! back-pointers, deletions, and FileStorage's transactional undo without conflict
//! resolution). Nothing here changes the committed state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use zeoraid_storage::{
    Conflict, Oid, Operation, StorageError, StorageResult, Tid, Transaction, TransactionMeta,
};

use crate::state::{Rev, State};
use crate::undo_id;

/// A checked transaction, ready to be applied by `finish`.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub tid: Tid,
    pub status: u8,
    pub meta: TransactionMeta,
    /// The revisions to add, one per oid, in the order first written.
    pub revs: Vec<(Oid, Rev)>,
    pub undone: Vec<Oid>,
    /// Blob files to copy into the blob directory: (from, to).
    pub blob_copies: Vec<(PathBuf, PathBuf)>,
}

pub(crate) enum Checked {
    Ready(Prepared),
    Conflicts(Vec<Conflict>),
}

/// Where the blob of `oid` revision `tid` lives in a blob directory.
pub(crate) fn blob_path(dir: &Path, oid: Oid, tid: Tid) -> PathBuf {
    dir.join(format!("{:016x}", oid.as_u64()))
        .join(format!("{:016x}.blob", tid.as_u64()))
}

struct Builder<'a> {
    st: &'a State,
    tid: Tid,
    blob_dir: Option<&'a Path>,
    revs: Vec<(Oid, Rev)>,
    index: HashMap<Oid, usize>,
    undone: Vec<Oid>,
    blob_copies: Vec<(PathBuf, PathBuf)>,
}

impl Builder<'_> {
    fn put(&mut self, oid: Oid, rev: Rev) {
        match self.index.get(&oid) {
            Some(&i) => self.revs[i].1 = rev,
            None => {
                self.index.insert(oid, self.revs.len());
                self.revs.push((oid, rev));
            }
        }
    }

    fn pending(&self, oid: Oid) -> Option<&Rev> {
        self.index.get(&oid).map(|&i| &self.revs[i].1)
    }

    fn blob_dir(&self) -> StorageResult<&Path> {
        self.blob_dir
            .ok_or_else(|| StorageError::Unsupported("blobs (no blob directory)".into()))
    }

    /// Schedules a copy of `from` as the blob of `oid` in this transaction.
    fn blob(&mut self, oid: Oid, from: PathBuf) -> StorageResult<PathBuf> {
        let to = blob_path(self.blob_dir()?, oid, self.tid);
        self.blob_copies.retain(|(_, t)| *t != to);
        self.blob_copies.push((from, to.clone()));
        Ok(to)
    }

    fn undo(&mut self, id: &[u8]) -> StorageResult<()> {
        let invalid = || StorageError::Undo {
            reason: "Invalid transaction id".into(),
            oid: None,
        };
        let utid = undo_id::decode(id).ok_or_else(invalid)?;
        let txn = self.st.txns.get(&utid).ok_or_else(invalid)?;
        // FileStorage searches back from the end and gives up at a packed transaction.
        if self
            .st
            .txns
            .range(utid..)
            .skip(1)
            .any(|(_, t)| t.status == b'p')
        {
            return Err(invalid());
        }
        if txn.status != b' ' {
            return Err(StorageError::Undo {
                reason: "non-undoable transaction".into(),
                oid: None,
            });
        }
        let mut failures: Vec<(String, Option<Oid>)> = Vec::new();
        for &oid in &txn.oids {
            let failed = |reason: &str| (reason.to_string(), Some(oid));
            let Some(undone_rev) = self.st.rev_at(oid, utid) else {
                failures.push(failed("_loadBack() failed"));
                continue;
            };
            let pre = self.st.rev_before(oid, utid).cloned();
            let current = self.pending(oid).or_else(|| self.st.current(oid));
            let current_is_undone =
                self.pending(oid).is_none() && current.map(|c| c.tid) == Some(utid);
            if !current_is_undone {
                match (&undone_rev.data, current.and_then(|c| c.data.as_ref())) {
                    (Some(undone), Some(now)) if undone == now => {}
                    (Some(_), Some(_)) => {
                        failures.push(failed(if pre.is_none() {
                            "Can't undo an add transaction followed by conflicting transactions."
                        } else {
                            "Some data were modified by a later transaction"
                        }));
                        continue;
                    }
                    _ => {
                        failures.push(failed("_loadBack() failed"));
                        continue;
                    }
                }
            }
            let rev = match pre {
                None => Rev {
                    tid: self.tid,
                    data: None,
                    back: None,
                    blob: None,
                },
                Some(pre) => {
                    let blob = match pre.blob {
                        Some(from) => Some(self.blob(oid, from)?),
                        None => None,
                    };
                    Rev {
                        tid: self.tid,
                        data: pre.data,
                        back: Some(pre.tid),
                        blob,
                    }
                }
            };
            self.put(oid, rev);
            if !self.undone.contains(&oid) {
                self.undone.push(oid);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(StorageError::MultipleUndo(failures))
        }
    }
}

/// Checks `txn` against `st` and works out what it writes.
pub(crate) fn check(
    st: &State,
    blob_dir: Option<&Path>,
    txn: Transaction,
) -> StorageResult<Checked> {
    let tid = match txn.tid {
        Some(tid) if tid > st.last_tid => tid,
        Some(tid) => {
            return Err(StorageError::Transaction(format!(
                "explicit tid {tid:?} is not later than the last transaction {:?}",
                st.last_tid
            )))
        }
        None => Tid::now_later_than(st.last_tid),
    };
    let mut b = Builder {
        st,
        tid,
        blob_dir,
        revs: Vec::new(),
        index: HashMap::new(),
        undone: Vec::new(),
        blob_copies: Vec::new(),
    };
    let mut conflicts = Vec::new();
    for op in txn.ops {
        match op {
            Operation::Store { oid, serial, data } => {
                if let Some(cur) = st.current(oid) {
                    if cur.tid != serial {
                        conflicts.push(Conflict {
                            oid,
                            committed: cur.tid,
                            read: serial,
                            data,
                        });
                        continue;
                    }
                }
                b.put(
                    oid,
                    Rev {
                        tid,
                        data: Some(data),
                        back: None,
                        blob: None,
                    },
                );
            }
            Operation::StoreBlob {
                oid,
                serial,
                data,
                blob,
            } => {
                b.blob_dir()?;
                if let Some(cur) = st.current(oid) {
                    if cur.tid != serial {
                        conflicts.push(Conflict {
                            oid,
                            committed: cur.tid,
                            read: serial,
                            data,
                        });
                        continue;
                    }
                }
                let blob = b.blob(oid, blob)?;
                b.put(
                    oid,
                    Rev {
                        tid,
                        data: Some(data),
                        back: None,
                        blob: Some(blob),
                    },
                );
            }
            Operation::Restore {
                oid,
                data,
                prev_txn,
                blob,
            } => {
                // Like FileStorage: the back-pointer is used when the record exists
                // and (if data came along) holds the same data; otherwise it is a hint.
                let target = prev_txn
                    .and_then(|p| st.rev_at(oid, p))
                    .filter(|r| data.is_none() || r.data == data);
                let mut rev = match target {
                    Some(target) => Rev {
                        tid,
                        data: target.data.clone(),
                        back: Some(target.tid),
                        blob: None,
                    },
                    None => Rev {
                        tid,
                        data,
                        back: None,
                        blob: None,
                    },
                };
                if let Some(from) = blob {
                    rev.blob = Some(b.blob(oid, from)?);
                }
                b.put(oid, rev);
            }
            Operation::CheckCurrentSerial { oid, serial } => {
                let committed = st.current(oid).map(|r| r.tid).unwrap_or(Tid::ZERO);
                if committed != serial {
                    return Err(StorageError::ReadConflict {
                        oid,
                        committed,
                        read: serial,
                    });
                }
            }
            Operation::Delete { oid, serial } => {
                let committed = st.current(oid).ok_or(StorageError::PosKey { oid })?.tid;
                if committed != serial {
                    return Err(StorageError::Conflict {
                        oid,
                        committed,
                        read: serial,
                    });
                }
                b.put(
                    oid,
                    Rev {
                        tid,
                        data: None,
                        back: None,
                        blob: None,
                    },
                );
            }
            Operation::Undo { undo_id } => b.undo(&undo_id)?,
        }
    }
    if !conflicts.is_empty() {
        return Ok(Checked::Conflicts(conflicts));
    }
    Ok(Checked::Ready(Prepared {
        tid,
        status: txn.status,
        meta: txn.meta,
        revs: b.revs,
        undone: b.undone,
        blob_copies: b.blob_copies,
    }))
}

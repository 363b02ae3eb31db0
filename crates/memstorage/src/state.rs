//! The committed state of a memory storage: revisions per object (oldest first),
//! transactions in tid order, and the reads over them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use zeoraid_storage::{
    CurrentRecord, DataRecord, HistoryEntry, LoadedRecord, Oid, StorageError, StorageResult, Tid,
    TransactionMeta, TransactionRecord,
};

/// FileStorage's fixed header sizes, so that sizes match a Data.fs holding the same
/// transactions.
const TRANS_HDR_LEN: u64 = 23;
const DATA_HDR_LEN: u64 = 42;

/// One revision of an object.
#[derive(Clone, Debug)]
pub(crate) struct Rev {
    pub tid: Tid,
    /// The object's state in this revision, back-pointers already followed; `None`
    /// when the revision deletes the object or undoes its creation.
    pub data: Option<Bytes>,
    /// The transaction whose record this one points back to (one link, as
    /// FileStorage's iterator reports it).
    pub back: Option<Tid>,
    /// The blob file of this revision, in the storage's blob directory.
    pub blob: Option<PathBuf>,
}

impl Rev {
    /// The length of the pickle this record holds itself (0 for back-pointers and
    /// deletions, like FileStorage's `plen`).
    pub fn own_size(&self) -> u64 {
        match (&self.data, self.back) {
            (Some(d), None) => d.len() as u64,
            _ => 0,
        }
    }

    /// The record's length in a Data.fs.
    fn record_len(&self) -> u64 {
        match (&self.data, self.back) {
            (Some(d), None) => DATA_HDR_LEN + d.len() as u64,
            _ => DATA_HDR_LEN + 8,
        }
    }
}

/// A committed transaction.
#[derive(Clone, Debug)]
pub(crate) struct Txn {
    pub status: u8,
    pub meta: TransactionMeta,
    /// The objects it wrote, in the order it wrote them.
    pub oids: Vec<Oid>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub last_tid: Tid,
    /// The highest oid handed out or stored.
    pub max_oid: u64,
    pub objects: BTreeMap<Oid, Vec<Rev>>,
    pub txns: BTreeMap<Tid, Txn>,
    pub pack_stop: Option<Tid>,
}

impl State {
    pub fn current(&self, oid: Oid) -> Option<&Rev> {
        self.objects.get(&oid).and_then(|revs| revs.last())
    }

    pub fn rev_at(&self, oid: Oid, tid: Tid) -> Option<&Rev> {
        let revs = self.objects.get(&oid)?;
        revs.binary_search_by(|r| r.tid.cmp(&tid))
            .ok()
            .map(|i| &revs[i])
    }

    /// The revision just before `tid`.
    pub fn rev_before(&self, oid: Oid, tid: Tid) -> Option<&Rev> {
        let revs = self.objects.get(&oid)?;
        let idx = revs.partition_point(|r| r.tid < tid);
        idx.checked_sub(1).map(|i| &revs[i])
    }

    /// The transaction's length in a Data.fs (FileStorage's `tlen`).
    pub fn txn_size(&self, tid: Tid, txn: &Txn) -> u64 {
        let m = &txn.meta;
        let header =
            TRANS_HDR_LEN + (m.user.len() + m.description.len() + m.extension.len()) as u64;
        header
            + txn
                .oids
                .iter()
                .filter_map(|&oid| self.rev_at(oid, tid))
                .map(Rev::record_len)
                .sum::<u64>()
    }

    /// The size a Data.fs with these transactions would have.
    pub fn size(&self) -> u64 {
        4 + self
            .txns
            .iter()
            .map(|(&tid, txn)| self.txn_size(tid, txn) + 8)
            .sum::<u64>()
    }

    pub fn load_before(&self, oid: Oid, before: Tid) -> StorageResult<Option<LoadedRecord>> {
        let revs = self.objects.get(&oid).ok_or(StorageError::PosKey { oid })?;
        let idx = revs.partition_point(|r| r.tid < before);
        let Some(rev) = idx.checked_sub(1).map(|i| &revs[i]) else {
            return Ok(None);
        };
        let data = rev.data.clone().ok_or(StorageError::PosKey { oid })?;
        Ok(Some(LoadedRecord {
            data,
            start: rev.tid,
            end: revs.get(idx).map(|r| r.tid),
        }))
    }

    pub fn load_serial(&self, oid: Oid, serial: Tid) -> StorageResult<Bytes> {
        self.rev_at(oid, serial)
            .and_then(|r| r.data.clone())
            .ok_or(StorageError::PosKey { oid })
    }

    pub fn history(&self, oid: Oid, size: usize) -> StorageResult<Vec<HistoryEntry>> {
        let revs = self.objects.get(&oid).ok_or(StorageError::PosKey { oid })?;
        Ok(revs
            .iter()
            .rev()
            .take(size)
            .map(|r| HistoryEntry {
                tid: r.tid,
                meta: self
                    .txns
                    .get(&r.tid)
                    .map(|t| t.meta.clone())
                    .unwrap_or_default(),
                size: r.own_size(),
            })
            .collect())
    }

    pub fn record_iternext(&self, start: Option<Oid>) -> Option<CurrentRecord> {
        let mut live =
            self.objects
                .range(start.unwrap_or(Oid::ZERO)..)
                .filter_map(|(&oid, revs)| {
                    let rev = revs.last()?;
                    Some((oid, rev.tid, rev.data.clone()?))
                });
        let (oid, tid, data) = live.next()?;
        let next = live.next().map(|(oid, _, _)| oid);
        Some(CurrentRecord {
            oid,
            tid,
            data,
            next,
        })
    }

    pub fn transactions(&self, start: Option<Tid>, stop: Option<Tid>) -> Vec<TransactionRecord> {
        let start = start.unwrap_or(Tid::ZERO);
        let stop = stop.unwrap_or(Tid([0xff; 8]));
        if start > stop {
            return Vec::new();
        }
        self.txns
            .range(start..=stop)
            .map(|(&tid, txn)| TransactionRecord {
                tid,
                status: txn.status,
                meta: txn.meta.clone(),
                records: txn
                    .oids
                    .iter()
                    .filter_map(|&oid| {
                        self.rev_at(oid, tid).map(|r| DataRecord {
                            oid,
                            tid,
                            data: r.data.clone(),
                            data_txn: r.back,
                            has_blob: r.blob.is_some(),
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

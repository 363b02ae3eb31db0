//! A whole buffered transaction, handed to a storage at vote time, and what the
//! vote answers.

use std::path::PathBuf;

use bytes::Bytes;

use crate::ids::{Oid, Tid};
use crate::record::TransactionMeta;

/// Identifies one transaction between `vote` and `finish`/`abort`. Chosen by the
/// caller (the ZEO server uses the client's transaction id), opaque to storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxnId(pub u64);

/// A transaction as a client built it between `tpc_begin` and `vote`.
#[derive(Clone, Debug)]
pub struct Transaction {
    pub id: TxnId,
    pub meta: TransactionMeta,
    /// An explicit tid (restore, and the RAID so that every backend uses the same
    /// one). A storage honours it when it is later than its last transaction and
    /// refuses the vote otherwise.
    pub tid: Option<Tid>,
    /// ZODB's status byte for the new transaction: `b' '` normally, `b'p'` when a
    /// packed transaction is copied.
    pub status: u8,
    /// The operations in the order the client sent them.
    pub ops: Vec<Operation>,
}

impl Transaction {
    pub fn new(id: TxnId, meta: TransactionMeta) -> Self {
        Transaction {
            id,
            meta,
            tid: None,
            status: b' ',
            ops: Vec::new(),
        }
    }
}

/// One operation of a transaction.
#[derive(Clone, Debug)]
pub enum Operation {
    /// Store new data for `oid`; `serial` is the revision the client read (`Tid::ZERO`
    /// for a new object). A different current revision is a conflict.
    Store { oid: Oid, serial: Tid, data: Bytes },
    /// Store data with its blob. The file at `blob` belongs to the caller: a storage
    /// links or copies it, never moves or deletes it.
    StoreBlob {
        oid: Oid,
        serial: Tid,
        data: Bytes,
        blob: PathBuf,
    },
    /// Write a record verbatim, without conflict checks (`restore`): `data` `None`
    /// with `prev_txn` set writes a back-pointer to that transaction's record;
    /// both `None` deletes.
    Restore {
        oid: Oid,
        data: Option<Bytes>,
        prev_txn: Option<Tid>,
        blob: Option<PathBuf>,
    },
    /// Fail the vote with a read conflict unless `oid`'s current revision is `serial`.
    CheckCurrentSerial { oid: Oid, serial: Tid },
    /// Delete the object (ZODB `deleteObject`, used by external GC).
    Delete { oid: Oid, serial: Tid },
    /// Undo the transaction with this undo-log id.
    Undo { undo_id: Bytes },
}

/// A write conflict: the object changed since the client read it. zeoraid resolves
/// no conflicts itself; the client gets this back and resolves it (ZEO 5+ clients
/// do that), as a ZEO server with `client-conflict-resolution` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub oid: Oid,
    /// The revision committed now.
    pub committed: Tid,
    /// The revision the client read.
    pub read: Tid,
    /// The data the client tried to store.
    pub data: Bytes,
}

/// The answer to a vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteOutcome {
    /// The transaction is ready to commit; `finish` makes it durable and visible,
    /// `abort` drops it. `undone` lists the oids that undo operations changed.
    Voted { undone: Vec<Oid> },
    /// Write conflicts; nothing was applied and nothing is held.
    Conflicts(Vec<Conflict>),
}

/// A change made by somebody else (another client of a remote backend), announced so
/// that caches can be invalidated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalidation {
    pub tid: Tid,
    pub oids: Vec<Oid>,
}

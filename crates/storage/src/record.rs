//! What storages hand back: object revisions, transaction metadata, history and
//! undo entries, and the records a transaction iterator yields.

use bytes::Bytes;

use crate::ids::{Oid, Tid};

/// Transaction metadata, as ZODB's `TransactionMetaData` carries it.
///
/// `extension` is the pickled extension dict exactly as it is stored (ZODB's
/// `extension_bytes`); empty bytes mean an empty dict. Storages keep it opaque and
/// the ZEO layer converts it to and from the dict clients see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransactionMeta {
    pub user: Bytes,
    pub description: Bytes,
    pub extension: Bytes,
}

/// One revision of an object, as `loadBefore` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedRecord {
    pub data: Bytes,
    /// The tid that wrote this revision.
    pub start: Tid,
    /// The tid of the next revision, if there is one before the requested tid.
    pub end: Option<Tid>,
}

/// An entry of `history(oid)`, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub tid: Tid,
    pub meta: TransactionMeta,
    /// Size of the record's data in bytes.
    pub size: u64,
}

/// An entry of the undo log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndoEntry {
    /// The opaque id a client passes back to `undo` (FileStorage: base64 of the tid).
    pub id: Bytes,
    pub tid: Tid,
    pub meta: TransactionMeta,
    /// Size of the transaction in bytes.
    pub size: u64,
}

/// One data record of a transaction, as the transaction iterator yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRecord {
    pub oid: Oid,
    /// The tid of the transaction holding this record.
    pub tid: Tid,
    /// The object state; `None` when the record deletes the object (or undoes its
    /// creation).
    pub data: Option<Bytes>,
    /// When the record is a back-pointer (written by undo or restore), the tid of the
    /// transaction whose data it reuses.
    pub data_txn: Option<Tid>,
    /// Whether a blob belongs to this revision.
    pub has_blob: bool,
}

/// A committed transaction with its records, as the transaction iterator yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionRecord {
    pub tid: Tid,
    /// ZODB's status byte: `b' '` normal, `b'p'` packed.
    pub status: u8,
    pub meta: TransactionMeta,
    pub records: Vec<DataRecord>,
}

/// The current revision of an object, as `record_iternext` yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentRecord {
    pub oid: Oid,
    pub tid: Tid,
    pub data: Bytes,
    /// The next oid to ask for, `None` at the end.
    pub next: Option<Oid>,
}

/// Facts about a storage, for `get_info` and for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageInfo {
    /// A human-readable name (FileStorage: its path).
    pub name: String,
    /// Number of objects.
    pub length: u64,
    /// Size in bytes.
    pub size: u64,
    pub supports_undo: bool,
    pub supports_blobs: bool,
    pub read_only: bool,
}

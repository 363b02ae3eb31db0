//! The errors a storage reports. They map one to one onto the ZODB exceptions a ZEO
//! client expects (the ZEO server layer does that mapping), plus the failures of
//! the machinery underneath (I/O, a lost backend, a timeout).

use crate::ids::{Oid, Tid};

pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object (or that revision of it) does not exist: ZODB's `POSKeyError`.
    #[error("no such object {oid}")]
    PosKey { oid: Oid },

    /// `checkCurrentSerialInTransaction` failed: ZODB's `ReadConflictError`.
    #[error("database read conflict error (oid {oid}, serial read {read:?}, serial current {committed:?})")]
    ReadConflict { oid: Oid, committed: Tid, read: Tid },

    /// A conflict that cannot be handed back as a [`crate::Conflict`] (e.g. on delete).
    #[error(
        "database conflict error (oid {oid}, serial read {read:?}, serial current {committed:?})"
    )]
    Conflict { oid: Oid, committed: Tid, read: Tid },

    #[error("storage is read-only")]
    ReadOnly,

    /// Misuse of the two-phase commit protocol: ZODB's `StorageTransactionError`.
    #[error("transaction error: {0}")]
    Transaction(String),

    /// ZODB's `UndoError`.
    #[error("undo error: {reason}")]
    Undo { reason: String, oid: Option<Oid> },

    /// ZODB's `MultipleUndoErrors`.
    #[error("undo errors: {}", .0.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join("; "))]
    MultipleUndo(Vec<(String, Option<Oid>)>),

    /// The storage cannot do this (e.g. blobs without a blob directory).
    #[error("not supported: {0}")]
    Unsupported(String),

    /// Stored data is not what the format says it must be.
    #[error("corrupt storage: {0}")]
    Corrupt(String),

    /// A remote storage is not reachable (not connected, or the connection dropped).
    #[error("disconnected: {0}")]
    Disconnected(String),

    /// A remote storage did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),

    /// A remote storage answered with an error this model has no variant for.
    #[error("remote error {class}: {message}")]
    Remote { class: String, message: String },

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// Errors that are answers about the data (the same on every healthy replica),
    /// as opposed to failures of one storage. The RAID degrades a backend only for
    /// the latter.
    pub fn is_answer(&self) -> bool {
        matches!(
            self,
            StorageError::PosKey { .. }
                | StorageError::ReadConflict { .. }
                | StorageError::Conflict { .. }
                | StorageError::ReadOnly
                | StorageError::Transaction(_)
                | StorageError::Undo { .. }
                | StorageError::MultipleUndo(_)
                | StorageError::Unsupported(_)
        )
    }
}

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

    /// The storage refuses the call because of its own state, not because of the
    /// transaction or the data: already packing, a transaction of its own still
    /// voted, oid space exhausted, the file replaced underneath, … (ZODB's plain
    /// `StorageError`/`FileStorageError`). Another replica would not refuse it.
    #[error("storage error: {0}")]
    Refused(String),

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
    /// Errors that are answers about the transaction or the data, the same on every
    /// healthy replica that holds the same data: conflicts, read conflicts,
    /// `POSKeyError`, undo errors, `StorageTransactionError` (a refused explicit
    /// tid, invalid metadata, misuse of the two-phase commit). The RAID compares
    /// these between backends and hands the agreed one to the client.
    pub fn is_answer(&self) -> bool {
        matches!(
            self,
            StorageError::PosKey { .. }
                | StorageError::ReadConflict { .. }
                | StorageError::Conflict { .. }
                | StorageError::Transaction(_)
                | StorageError::Undo { .. }
                | StorageError::MultipleUndo(_)
        )
    }

    /// Refusals that come from the storage's own configuration or state, not from
    /// the data, but are no malfunction either: read-only, unsupported (e.g. blobs
    /// without a blob directory), [`StorageError::Refused`]. A replica that refuses
    /// what another replica does is at fault (the RAID degrades it); when every
    /// replica refuses alike, the refusal is the answer.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StorageError::ReadOnly | StorageError::Unsupported(_) | StorageError::Refused(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_in_exactly_one_class() {
        let oid = Oid::from_u64(1);
        let tid = Tid::from_u64(1);
        let answers = [
            StorageError::PosKey { oid },
            StorageError::ReadConflict {
                oid,
                committed: tid,
                read: tid,
            },
            StorageError::Conflict {
                oid,
                committed: tid,
                read: tid,
            },
            StorageError::Transaction("explicit tid not later".into()),
            StorageError::Undo {
                reason: "x".into(),
                oid: None,
            },
            StorageError::MultipleUndo(vec![]),
        ];
        let refusals = [
            StorageError::ReadOnly,
            StorageError::Unsupported("blobs".into()),
            StorageError::Refused("Already packing".into()),
        ];
        let failures = [
            StorageError::Corrupt("x".into()),
            StorageError::Disconnected("x".into()),
            StorageError::Timeout(std::time::Duration::from_secs(1)),
            StorageError::Remote {
                class: "x".into(),
                message: "y".into(),
            },
            StorageError::Io(std::io::Error::other("x")),
        ];
        for e in &answers {
            assert!(e.is_answer() && !e.is_refusal(), "{e}");
        }
        for e in &refusals {
            assert!(!e.is_answer() && e.is_refusal(), "{e}");
        }
        for e in &failures {
            assert!(!e.is_answer() && !e.is_refusal(), "{e}");
        }
    }
}

//! FileStorage's own errors, and their mapping onto the storage model's
//! [`StorageError`] (which is what every caller above this crate sees).

use zeoraid_storage::{Oid, StorageError, Tid};

pub type FsResult<T> = Result<T, FsError>;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The file is not what the FileStorage format says it must be.
    #[error("{path}corrupt Data.fs at position {pos}: {msg}")]
    Corrupt { path: String, pos: u64, msg: String },

    /// Another process (zeoraid or Python's FileStorage) holds `<path>.lock`.
    #[error("could not lock {0}: the storage is opened for writing by another process")]
    Locked(String),

    /// A storage-model error (PosKey, conflicts, undo errors, ...).
    #[error(transparent)]
    Storage(#[from] StorageError),

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl FsError {
    pub fn corrupt(pos: u64, msg: impl Into<String>) -> FsError {
        FsError::Corrupt {
            path: String::new(),
            pos,
            msg: msg.into(),
        }
    }

    /// Attach the file name to a `Corrupt` error (for messages).
    pub fn in_file(self, path: &std::path::Path) -> FsError {
        match self {
            FsError::Corrupt { pos, msg, .. } => FsError::Corrupt {
                path: format!("{}: ", path.display()),
                pos,
                msg,
            },
            other => other,
        }
    }

    pub fn pos_key(oid: Oid) -> FsError {
        FsError::Storage(StorageError::PosKey { oid })
    }

    pub fn transaction(msg: impl Into<String>) -> FsError {
        FsError::Storage(StorageError::Transaction(msg.into()))
    }

    /// A refusal out of this storage's own state (already packing, …): another
    /// replica would not refuse, so it is no answer about the data.
    pub fn refused(msg: impl Into<String>) -> FsError {
        FsError::Storage(StorageError::Refused(msg.into()))
    }

    pub fn undo(reason: impl Into<String>, oid: Option<Oid>) -> FsError {
        FsError::Storage(StorageError::Undo {
            reason: reason.into(),
            oid,
        })
    }

    pub fn read_conflict(oid: Oid, committed: Tid, read: Tid) -> FsError {
        FsError::Storage(StorageError::ReadConflict {
            oid,
            committed,
            read,
        })
    }
}

impl From<FsError> for StorageError {
    fn from(e: FsError) -> StorageError {
        match e {
            FsError::Storage(s) => s,
            FsError::Io(io) => StorageError::Io(io),
            FsError::Locked(_) => StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                e.to_string(),
            )),
            FsError::Corrupt { .. } => StorageError::Corrupt(e.to_string()),
        }
    }
}

//! The RAID's own errors: configuration mistakes at `open` and refused management
//! operations. Errors of storage calls stay [`StorageError`]s.

use zeoraid_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RaidError {
    #[error("a RAID needs at least one backend")]
    NoBackends,

    #[error("two backends are named {0:?}")]
    DuplicateName(String),

    #[error("no backend is named {0:?}")]
    UnknownBackend(String),

    #[error("refusing to disable {0:?}: it is the last optimal backend")]
    LastOptimal(String),

    #[error("the RAID storage is closed")]
    Closed,

    #[error("backend {0:?} is optimal: there is nothing to recover")]
    AlreadyOptimal(String),

    #[error("a recovery of {0:?} is already running: one recovery at a time")]
    RecoveryRunning(String),

    #[error("recovery is refused while a pack runs")]
    PackRunning,

    #[error("cannot recover {0:?}: no other backend is optimal to copy from")]
    NoSource(String),

    #[error(
        "truncating a backend is not supported (the Storage trait cannot remove \
         transactions): wipe the backend's storage and recover it from empty"
    )]
    TruncateUnsupported,

    #[error("{reason}")]
    RecoveryFailed { backend: String, reason: String },

    #[error("refusing to remove {0:?}: {1}")]
    RemoveRefused(String, String),

    #[error("verify failed: {0}")]
    VerifyFailed(String),
}

/// The error every call gets once no backend is optimal (fail-mode `close`) or when
/// an operation lost its last backend.
pub(crate) fn no_backend_left(what: &str) -> StorageError {
    StorageError::Disconnected(format!("no optimal backend left ({what})"))
}

pub(crate) fn closed() -> StorageError {
    StorageError::Disconnected("the RAID storage is closed".into())
}

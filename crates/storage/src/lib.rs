//! The storage model: the ids, records and errors every storage in zeoraid speaks,
//! and the [`Storage`] trait itself.
//!
//! Nothing here does I/O; implementations live in their own crates (memstorage,
//! filestorage, zeo client, raid).

pub mod error;
pub mod ids;
pub mod record;
pub mod storage;
pub mod transaction;

pub use error::{StorageError, StorageResult};
pub use ids::{Oid, Tid, TimeStampParts};
pub use record::{
    CurrentRecord, DataRecord, HistoryEntry, LoadedRecord, StorageInfo, TransactionMeta,
    TransactionRecord, UndoEntry,
};
pub use storage::{
    CacheStats, DurableWait, Finished, Storage, TransactionStream, UndoFilter, MAX_NEW_OIDS,
};
pub use transaction::{Conflict, Invalidation, Operation, Transaction, TxnId, VoteOutcome};

//! The vocabulary of the cases: the [`Failure`] a case returns, `check!`-style
//! macros, and helpers that build and commit transactions through the trait.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
pub use zeoraid_storage::Storage;
use zeoraid_storage::{
    Oid, Operation, StorageError, StorageResult, Tid, Transaction, TransactionMeta,
    TransactionRecord, TxnId, VoteOutcome,
};

/// Why a case failed, in words precise enough to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Failure(format!("unexpected storage error: {e} ({e:?})"))
    }
}

pub type CaseResult = Result<(), Failure>;

/// Adds what was being done to a storage error.
pub trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, Failure>;
}

impl<T> Context<T> for StorageResult<T> {
    fn ctx(self, what: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure(format!("{what}: unexpected error {e} ({e:?})")))
    }
}

/// Fails the case with a formatted message unless the condition holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::check::Failure(format!($($fmt)+)));
        }
    };
}

/// Fails the case unless both sides are equal, showing both.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    return Err($crate::check::Failure(format!(
                        "{}: got {:?}, expected {:?}",
                        format!($($fmt)+),
                        l,
                        r
                    )));
                }
            }
        }
    };
}

/// Fails the case unless the result is an error matching the pattern.
#[macro_export]
macro_rules! check_err {
    ($result:expr, $pat:pat, $($fmt:tt)+) => {
        match $result {
            Err($pat) => {}
            Err(other) => {
                return Err($crate::check::Failure(format!(
                    "{}: expected error {}, got error {} ({:?})",
                    format!($($fmt)+),
                    stringify!($pat),
                    other,
                    other
                )))
            }
            Ok(value) => {
                return Err($crate::check::Failure(format!(
                    "{}: expected error {}, got Ok({:?})",
                    format!($($fmt)+),
                    stringify!($pat),
                    value
                )))
            }
        }
    };
}

static NEXT_TXN: AtomicU64 = AtomicU64::new(1);

/// A transaction id no other transaction of this process uses.
pub fn txn_id() -> TxnId {
    TxnId(NEXT_TXN.fetch_add(1, Ordering::Relaxed) | 0x5eed_0000_0000_0000)
}

/// A transaction with the given metadata and operations.
pub fn txn(meta: TransactionMeta, ops: Vec<Operation>) -> Transaction {
    let mut t = Transaction::new(txn_id(), meta);
    t.ops = ops;
    t
}

/// A transaction with an explicit tid.
pub fn txn_at(tid: Tid, meta: TransactionMeta, ops: Vec<Operation>) -> Transaction {
    let mut t = txn(meta, ops);
    t.tid = Some(tid);
    t
}

pub fn store(oid: Oid, serial: Tid, data: Bytes) -> Operation {
    Operation::Store { oid, serial, data }
}

/// Votes and finishes `t`, failing unless the vote says `Voted`. Returns the tid and
/// the undone oids.
pub async fn commit_txn<S: Storage + ?Sized>(
    s: &S,
    t: Transaction,
) -> Result<(Tid, Vec<Oid>), Failure> {
    let id = t.id;
    let outcome = s.vote(t).await.ctx("vote")?;
    match outcome {
        VoteOutcome::Voted { undone } => {
            let tid = s.finish(id).await.ctx("finish")?;
            Ok((tid, undone))
        }
        VoteOutcome::Conflicts(c) => Err(Failure(format!(
            "vote reported conflicts where none were expected: {c:?}"
        ))),
    }
}

/// Commits the operations with default metadata; returns the tid.
pub async fn commit<S: Storage + ?Sized>(s: &S, ops: Vec<Operation>) -> Result<Tid, Failure> {
    Ok(commit_txn(s, txn(TransactionMeta::default(), ops)).await?.0)
}

/// Commits new data for one object; returns the tid.
pub async fn commit_one<S: Storage + ?Sized>(
    s: &S,
    oid: Oid,
    serial: Tid,
    data: Bytes,
) -> Result<Tid, Failure> {
    commit(s, vec![store(oid, serial, data)]).await
}

/// One fresh oid.
pub async fn new_oid<S: Storage + ?Sized>(s: &S) -> Result<Oid, Failure> {
    let oids = s.new_oids(1).await.ctx("new_oids(1)")?;
    check_eq!(oids.len(), 1, "new_oids(1) length");
    Ok(oids[0])
}

/// `n` fresh oids.
pub async fn new_oids<S: Storage + ?Sized>(s: &S, n: u32) -> Result<Vec<Oid>, Failure> {
    let oids = s.new_oids(n).await.ctx("new_oids")?;
    check_eq!(oids.len(), n as usize, "new_oids({n}) length");
    Ok(oids)
}

/// The current data and serial of `oid`.
pub async fn load_current<S: Storage + ?Sized>(s: &S, oid: Oid) -> Result<(Bytes, Tid), Failure> {
    match s.load_before(oid, Tid::MAX).await {
        Ok(Some(r)) => {
            check!(
                r.end.is_none(),
                "load_before({oid}, MAX) returned end {:?} for the current revision",
                r.end
            );
            Ok((r.data, r.start))
        }
        Ok(None) => Err(Failure(format!(
            "load_before({oid}, MAX) returned None for an existing object"
        ))),
        Err(e) => Err(Failure(format!("load_before({oid}, MAX): {e} ({e:?})"))),
    }
}

/// The whole transaction log between the bounds.
pub async fn transactions<S: Storage + ?Sized>(
    s: &S,
    start: Option<Tid>,
    stop: Option<Tid>,
) -> Result<Vec<TransactionRecord>, Failure> {
    let stream = s.iterator(start, stop).await.ctx("iterator")?;
    stream.try_collect().await.ctx("iterator stream")
}

/// A tid `seconds` after `tid` in wall-clock terms (for explicit tids spaced so
/// that a pack time fits between them).
pub fn tid_plus_seconds(tid: Tid, seconds: f64) -> Tid {
    Tid::from_unix_time(tid.unix_time() + seconds).later_than(tid)
}

/// The wall-clock time of now minus `seconds`, as a tid.
pub fn tid_seconds_ago(seconds: f64) -> Tid {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    Tid::from_unix_time(now - seconds)
}

/// Runs `fut` with a time limit; a storage that hangs fails the check with `what`.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T, Failure> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| Failure(format!("{what}: did not complete within {limit:?}")))
}

/// Whether an error is ZODB's `UndoError` (or its subclass `MultipleUndoErrors`).
pub fn is_undo_error(e: &StorageError) -> bool {
    matches!(e, StorageError::Undo { .. } | StorageError::MultipleUndo(_))
}

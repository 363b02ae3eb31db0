//! Online recovery: rebuild a degraded (or empty) backend from an optimal one,
//! with its full history, while clients keep writing.
//!
//! 1. **Common prefix.** The target's and the source's iterators are walked in
//!    step and every transaction compared ([`crate::compare`]: tid, status, user,
//!    description, extension decoded-equal, records by oid, back-pointer and data
//!    checksum). The copy resumes after the last transaction both hold, not from
//!    zero. A target that holds a transaction the source does not (or the same tid
//!    with other content, or lacks one in the middle) has **diverged** and is
//!    refused: nothing is overwritten. Truncating it is not possible through the
//!    `Storage` trait; the operator wipes it and recovers it from empty.
//! 2. **Copy.** The transactions after the prefix are copied with `restore`
//!    operations: the same tid (explicit `Transaction.tid`), status and metadata,
//!    back-pointers kept (`prev_txn`), blobs from the source's `load_blob`. The
//!    source is read ahead of the target (a bounded window of transactions), so
//!    the source's and the target's round trips overlap. The copy is paced to the
//!    configured rate (`recovery-rate`, bytes/s).
//! 3. **Catch-up.** Commits made meanwhile are copied in further passes, each
//!    starting after the last transaction copied. Once a pass finds at most
//!    [`SWITCH_OVER_AT`] transactions, the recovery takes the RAID's **commit
//!    lock** (no commit is between vote and finish then, and none can start),
//!    copies what is left without pacing, makes the target optimal and releases
//!    the lock: from the next commit on, it takes part in every commit.
//!
//! **Why the catch-up converges.** With copy rate `R` (the rate limit, or what the
//! backends sustain) and a commit load of `C < R` bytes/s, a pass that starts `L`
//! bytes behind takes `L/R` seconds, during which `C·L/R` new bytes are committed:
//! each pass leaves the target `C/R < 1` times as far behind as the one before, so
//! the lag shrinks geometrically to a handful of transactions and the switch-over
//! holds the commit lock only for those. (Per-transaction costs count too: the
//! target must also commit transactions faster than clients do.) Under a load at
//! or above the copy rate the recovery keeps going and reports its progress; it
//! does not hold the commit lock to force the switch.
//!
//! One recovery at a time per RAID; pack is refused while it runs and it is
//! refused while a pack runs. A recovering backend takes no reads and no commits.
//! When the target or the source fails, the target stays degraded with reason
//! `recovery failed: …` and the RAID is unaffected; a new `recover` resumes after
//! the common prefix. After the switch-over the RAID asks every optimal backend
//! for an oid, which pulls the recovered backend's oid counter up to the others'
//! (`oids.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use zeoraid_storage::{
    Operation, StorageError, Tid, Transaction, TransactionRecord, TransactionStream, TxnId,
    VoteOutcome,
};

use crate::backend::{format_duration, Backend, CallError, Fault, Kind};
use crate::compare::{data_bytes, tid_str, transaction_difference};
use crate::error::RaidError;
use crate::state::{BackendState, RecoveryProgress};
use crate::{lock, Inner};

/// A catch-up pass that copies at most this many transactions ends the recovery:
/// the rest is copied under the commit lock.
pub const SWITCH_OVER_AT: u64 = 10;

/// Transaction ids of the recovery's own restores (distinct from clients' ids).
static NEXT_RESTORE_ID: AtomicU64 = AtomicU64::new(1 << 62);

/// What a finished recovery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The recovered backend.
    pub target: String,
    /// The backend it was copied from.
    pub source: String,
    /// Transactions the target already held (the common prefix, verified).
    pub common: u64,
    /// Transactions copied.
    pub copied: u64,
    /// Bytes of data copied.
    pub bytes: u64,
    /// Catch-up passes (the first copy included, the switch-over not).
    pub passes: u64,
    pub elapsed: Duration,
}

/// Why a recovery stopped (becomes the target's degrade reason).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("{0}")]
    Diverged(String),
    #[error("source {backend}: {what}")]
    Source { backend: String, what: String },
    #[error("target {backend}: {what}")]
    Target { backend: String, what: String },
    #[error("cancelled: the backend was {0}")]
    Cancelled(String),
}

/// Clears the RAID's recovery flag when the recovery ends (or its task is
/// aborted).
struct Running(Arc<Inner>);

impl Drop for Running {
    fn drop(&mut self) {
        *lock(&self.0.recovery) = None;
        self.0.recovery_running.store(false, Ordering::SeqCst);
    }
}

/// Paces the copy to `rate` bytes/s (read anew for each transaction, so a reload
/// can change it). Never lets a slow stretch turn into a burst: when the copy is
/// more than a second behind its schedule, the schedule restarts.
struct Pacer {
    start: Instant,
    bytes: u64,
}

impl Pacer {
    fn new() -> Self {
        Pacer {
            start: Instant::now(),
            bytes: 0,
        }
    }

    async fn pace(&mut self, rate: u64, n: u64) {
        if rate == 0 {
            return;
        }
        self.bytes += n;
        let due = self.start + Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        } else if now - due > Duration::from_secs(1) {
            self.start = now;
            self.bytes = 0;
        }
    }
}

fn fault_text(e: CallError) -> String {
    match e {
        CallError::Answer(e) | CallError::Fault(Fault::Error(e)) => e.to_string(),
        CallError::Fault(Fault::TimedOut(d)) => format!("timed out after {}", format_duration(d)),
    }
}

/// The next transaction of a stream, within the backend's timeout.
async fn next_of(
    b: &Backend,
    stream: &mut TransactionStream,
) -> Result<Option<TransactionRecord>, String> {
    match tokio::time::timeout(b.timeout, stream.next()).await {
        Ok(None) => Ok(None),
        Ok(Some(Ok(t))) => Ok(Some(t)),
        Ok(Some(Err(e))) => Err(format!("iterator failed: {e}")),
        Err(_) => Err(format!(
            "iterator timed out after {}",
            format_duration(b.timeout)
        )),
    }
}

fn after(tid: Tid) -> Option<Tid> {
    if tid.is_zero() {
        None
    } else {
        tid.as_u64().checked_add(1).map(Tid::from_u64)
    }
}

struct Run {
    inner: Arc<Inner>,
    t: usize,
    target: Arc<Backend>,
    source: Arc<Backend>,
    progress: RecoveryProgress,
    started: Instant,
    copied: u64,
}

impl Run {
    fn source_err(&self, what: impl Into<String>) -> Failure {
        source_failure(&self.source, what)
    }

    fn target_err(&self, what: impl Into<String>) -> Failure {
        Failure::Target {
            backend: self.target.name.clone(),
            what: what.into(),
        }
    }

    fn diverged(&self, tid: Tid, what: &str) -> Failure {
        Failure::Diverged(format!(
            "backend {} has diverged from {} at tid {}: {what}; it is not overwritten \
             (truncating a backend is not supported: wipe it and recover it from empty)",
            self.target.name,
            self.source.name,
            tid_str(tid)
        ))
    }

    /// Publishes the progress; fails when the target is no longer recovering
    /// (disabled or removed meanwhile).
    fn publish(&mut self, rate: u64) -> Result<(), Failure> {
        let elapsed = self.started.elapsed().as_secs_f64();
        let speed = if rate > 0 {
            rate as f64
        } else if elapsed > 0.0 {
            self.progress.bytes as f64 / elapsed
        } else {
            0.0
        };
        self.progress.eta = self.progress.bytes_total.and_then(|total| {
            (speed > 0.0).then(|| {
                Duration::from_secs_f64(total.saturating_sub(self.progress.bytes) as f64 / speed)
            })
        });
        let mut states = self.inner.states();
        if states.is_removed(self.t) {
            return Err(Failure::Cancelled("removed".into()));
        }
        match states.state(self.t) {
            BackendState::Recovering { .. } => {
                states.set_recovering(self.t, self.progress.clone());
                Ok(())
            }
            other => Err(Failure::Cancelled(other.to_string())),
        }
    }

    /// Walks both histories in step; returns the last common tid and how many
    /// transactions the prefix holds.
    async fn common_prefix(&self) -> Result<(Tid, u64), Failure> {
        let mut tgt = self
            .target
            .call(Kind::Read, self.target.storage.iterator(None, None))
            .await
            .map_err(|e| self.target_err(format!("iterator failed: {}", fault_text(e))))?;
        let mut src = self
            .source
            .call(Kind::Read, self.source.storage.iterator(None, None))
            .await
            .map_err(|e| self.source_err(format!("iterator failed: {}", fault_text(e))))?;
        let (mut last, mut count) = (Tid::ZERO, 0u64);
        loop {
            let Some(t) = next_of(&self.target, &mut tgt)
                .await
                .map_err(|e| self.target_err(e))?
            else {
                break;
            };
            let s = next_of(&self.source, &mut src)
                .await
                .map_err(|e| self.source_err(e))?;
            match s {
                None => {
                    return Err(self.diverged(
                        t.tid,
                        &format!("it has transactions {} does not have", self.source.name),
                    ))
                }
                Some(s) if s.tid > t.tid => {
                    return Err(self.diverged(
                        t.tid,
                        &format!("it has transactions {} does not have", self.source.name),
                    ))
                }
                Some(s) if s.tid < t.tid => {
                    return Err(self.diverged(
                        s.tid,
                        &format!(
                            "it lacks transaction {} that {} has, before transactions it holds",
                            tid_str(s.tid),
                            self.source.name
                        ),
                    ))
                }
                Some(s) => {
                    if let Some(d) =
                        transaction_difference(&t, &self.target.name, &s, &self.source.name, false)
                    {
                        return Err(self.diverged(t.tid, &format!("the transaction differs: {d}")));
                    }
                    last = t.tid;
                    count += 1;
                }
            }
        }
        // A backend may report a last transaction it does not hold: Python's
        // FileStorage, killed between vote and finish, reopens with the voted
        // transaction cut off but reports its tid (`read_index` takes the tid
        // before it sees the unfinished status) until it commits or restarts
        // again. Restores up to that tid would be refused as too old (the ZEO
        // client refuses an explicit tid not later than the server's last one):
        // when the source holds that very transaction next, it is the one the
        // crash interrupted — say so and what to do; otherwise the target has
        // diverged.
        let reported = self
            .target
            .call(Kind::Probe, self.target.storage.last_transaction())
            .await
            .map_err(|e| self.target_err(format!("last_transaction failed: {}", fault_text(e))))?;
        if reported > last {
            let next = next_of(&self.source, &mut src)
                .await
                .map_err(|e| self.source_err(e))?;
            if next.is_some_and(|s| s.tid == reported) {
                return Err(self.target_err(format!(
                    "it reports {} as its last transaction but holds transactions only up to {}: \
                     a transaction it voted was never finished (Python's FileStorage reports \
                     its tid after a crash until it is restarted once more); restart it and \
                     recover it again",
                    tid_str(reported),
                    tid_str(last)
                )));
            }
            return Err(self.diverged(
                reported,
                &format!(
                    "it reports {} as its last transaction but holds transactions only up to {}",
                    tid_str(reported),
                    tid_str(last)
                ),
            ));
        }
        Ok((last, count))
    }

    /// Counts what is to be copied after `last` (for progress and ETA).
    async fn count_missing(&mut self, last: Tid) -> Result<(), Failure> {
        let mut src = self
            .source
            .call(Kind::Read, self.source.storage.iterator(after(last), None))
            .await
            .map_err(|e| self.source_err(format!("iterator failed: {}", fault_text(e))))?;
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(t) = next_of(&self.source, &mut src)
            .await
            .map_err(|e| self.source_err(e))?
        {
            n += 1;
            bytes += data_bytes(&t);
        }
        self.progress.transactions_total = Some(n);
        self.progress.bytes_total = Some(bytes);
        Ok(())
    }

    /// Copies every source transaction after `last` to the target; returns the new
    /// last tid and how many were copied. `paced`: apply the rate limit.
    ///
    /// The source is read ahead (transactions and their blob files, at most
    /// [`READ_AHEAD`] transactions) while the target writes, so a copy between
    /// remote backends pays the source's round trips and the target's
    /// concurrently rather than one after the other.
    async fn copy_after(&mut self, last: Tid, paced: bool) -> Result<(Tid, u64), Failure> {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let reader = read_source(Arc::clone(&self.source), last, tx);
        let writer = self.write_target(last, paced, rx);
        let ((), copied) = tokio::join!(reader, writer);
        copied
    }

    /// The writing half of [`Run::copy_after`]: restores what the reader sends.
    /// Returning early (a failure) drops `rx`, which stops the reader.
    async fn write_target(
        &mut self,
        mut last: Tid,
        paced: bool,
        mut rx: tokio::sync::mpsc::Receiver<Result<Fetched, Failure>>,
    ) -> Result<(Tid, u64), Failure> {
        let mut pacer = Pacer::new();
        let mut n = 0u64;
        while let Some(fetched) = rx.recv().await {
            let fetched = fetched?;
            let bytes = self.restore(&fetched).await?;
            last = fetched.txn.tid;
            n += 1;
            self.copied += 1;
            self.progress.transactions += 1;
            self.progress.bytes += bytes;
            if let Some(total) = &mut self.progress.transactions_total {
                *total = (*total).max(self.progress.transactions);
            }
            if let Some(total) = &mut self.progress.bytes_total {
                *total = (*total).max(self.progress.bytes);
            }
            let rate = self.inner.recovery_rate.load(Ordering::Relaxed);
            self.publish(if paced { rate } else { 0 })?;
            if paced {
                pacer.pace(rate, bytes).await;
            }
            if self.progress.transactions.is_multiple_of(1000) {
                tracing::info!(backend = %self.target.name, progress = %self.progress, "recovery progress");
            }
        }
        Ok((last, n))
    }

    /// Restores one transaction on the target; returns the bytes copied.
    async fn restore(&self, fetched: &Fetched) -> Result<u64, Failure> {
        let txn = &fetched.txn;
        let id = TxnId(NEXT_RESTORE_ID.fetch_add(1, Ordering::Relaxed));
        let mut t = Transaction::new(id, txn.meta.clone());
        t.tid = Some(txn.tid);
        t.status = txn.status;
        for (r, blob) in txn.records.iter().zip(&fetched.blobs) {
            t.ops.push(Operation::Restore {
                oid: r.oid,
                data: r.data.clone(),
                prev_txn: r.data_txn,
                blob: blob.clone(),
            });
        }
        let tb = &self.target;
        match tb.call(Kind::Write, tb.storage.vote(t)).await {
            Ok(VoteOutcome::Voted { .. }) => {}
            Ok(VoteOutcome::Conflicts(c)) => {
                let _ = tb.call(Kind::Write, tb.storage.abort(id)).await;
                return Err(self.target_err(format!(
                    "restore of {} answered {} conflict(s)",
                    tid_str(txn.tid),
                    c.len()
                )));
            }
            Err(e) => {
                let _ = tb.call(Kind::Write, tb.storage.abort(id)).await;
                return Err(self.target_err(format!(
                    "restore of {} failed: {}",
                    tid_str(txn.tid),
                    fault_text(e)
                )));
            }
        }
        match tb.call(Kind::Write, tb.storage.finish(id)).await {
            Ok(got) if got == txn.tid => {
                tb.note_tid(got);
                Ok(fetched.bytes)
            }
            Ok(got) => Err(self.target_err(format!(
                "restore of {} finished as {}",
                tid_str(txn.tid),
                tid_str(got)
            ))),
            Err(e) => Err(self.target_err(format!(
                "finish of the restore of {} failed: {}",
                tid_str(txn.tid),
                fault_text(e)
            ))),
        }
    }
}

/// How many source transactions (with their blob files) the copy reads ahead of
/// the target.
const READ_AHEAD: usize = 16;

/// A source transaction read ahead of the copy, with its records' blob files
/// (`None` for a record without a blob) and the bytes it counts for (data as
/// the source holds it, blob files).
struct Fetched {
    txn: TransactionRecord,
    blobs: Vec<Option<PathBuf>>,
    bytes: u64,
}

fn source_failure(source: &Backend, what: impl Into<String>) -> Failure {
    Failure::Source {
        backend: source.name.clone(),
        what: what.into(),
    }
}

/// The reading half of [`Run::copy_after`]: sends every source transaction after
/// `last` with its blob files, then ends (or sends the failure and ends). Stops
/// when the writer is gone.
async fn read_source(
    source: Arc<Backend>,
    last: Tid,
    tx: tokio::sync::mpsc::Sender<Result<Fetched, Failure>>,
) {
    let mut src = match source
        .call(Kind::Read, source.storage.iterator(after(last), None))
        .await
    {
        Ok(stream) => stream,
        Err(e) => {
            let what = format!("iterator failed: {}", fault_text(e));
            let _ = tx.send(Err(source_failure(&source, what))).await;
            return;
        }
    };
    loop {
        let item = match next_of(&source, &mut src).await {
            Ok(None) => return,
            Ok(Some(txn)) if txn.tid <= last => continue,
            Ok(Some(txn)) => fetch_blobs(&source, txn).await,
            Err(e) => Err(source_failure(&source, e)),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// Keeps, per oid, only the last record of the transaction (in their order). An
/// earlier record of the same oid in one transaction is invisible to every read;
/// it appears when a blob is stored through ZEO (Python's FileStorage then writes
/// a plain record and the blob record). Restoring both through a ZEO target
/// would double them again (a blob restore over ZEO is a store plus a blob
/// store); restoring the last one gives the target what the source shows.
fn last_record_per_oid(txn: &mut TransactionRecord) {
    let mut seen = std::collections::HashSet::new();
    let mut keep: Vec<bool> = txn
        .records
        .iter()
        .rev()
        .map(|r| seen.insert(r.oid))
        .collect();
    keep.reverse();
    let mut keep = keep.into_iter();
    txn.records.retain(|_| keep.next().unwrap_or(true));
}

/// Loads the blob files of `txn`'s blob records from the source (a record that
/// is a back-pointer may have its blob under the transaction it points to).
/// Superseded records are dropped first ([`last_record_per_oid`]).
async fn fetch_blobs(source: &Backend, mut txn: TransactionRecord) -> Result<Fetched, Failure> {
    let bytes = data_bytes(&txn);
    last_record_per_oid(&mut txn);
    let mut blobs = Vec::with_capacity(txn.records.len());
    let mut blob_bytes = 0;
    for r in &txn.records {
        if !r.has_blob {
            blobs.push(None);
            continue;
        }
        let path = match source
            .call(Kind::Read, source.storage.load_blob(r.oid, r.tid))
            .await
        {
            Ok(p) => p,
            Err(first) => match r.data_txn {
                Some(prev) => source
                    .call(Kind::Read, source.storage.load_blob(r.oid, prev))
                    .await
                    .map_err(|e| {
                        source_failure(source, format!("load_blob failed: {}", fault_text(e)))
                    })?,
                None => {
                    return Err(source_failure(
                        source,
                        format!("load_blob failed: {}", fault_text(first)),
                    ))
                }
            },
        };
        blob_bytes += tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        blobs.push(Some(path));
    }
    Ok(Fetched {
        txn,
        blobs,
        bytes: bytes + blob_bytes,
    })
}

impl Inner {
    /// Checks that `name` can be recovered now, picks the source (the first
    /// optimal backend in configuration order), marks the target recovering and
    /// returns (target, source).
    pub(crate) fn begin_recovery(&self, name: &str) -> Result<(usize, usize), RaidError> {
        self.check_open().map_err(|_| RaidError::Closed)?;
        let t = self
            .backend_index(name)
            .ok_or_else(|| RaidError::UnknownBackend(name.to_string()))?;
        if self
            .recovery_running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            let running = lock(&self.recovery).clone().unwrap_or_default();
            return Err(RaidError::RecoveryRunning(running));
        }
        let refuse = |e: RaidError| {
            self.recovery_running.store(false, Ordering::SeqCst);
            Err(e)
        };
        if self.pack_running.load(Ordering::SeqCst) > 0 {
            return refuse(RaidError::PackRunning);
        }
        let mut states = self.states();
        match states.state(t) {
            BackendState::Optimal => return refuse(RaidError::AlreadyOptimal(name.to_string())),
            BackendState::Recovering { .. } => {
                return refuse(RaidError::RecoveryRunning(name.to_string()))
            }
            BackendState::Degraded { .. } => {}
        }
        let Some(s) = states.optimal().into_iter().find(|&i| i != t) else {
            return refuse(RaidError::NoSource(name.to_string()));
        };
        *lock(&self.recovery) = Some(name.to_string());
        states.set_recovering(t, RecoveryProgress::default());
        Ok((t, s))
    }

    /// Runs the recovery of `t` from `s` (begun by [`Inner::begin_recovery`]).
    pub(crate) async fn run_recovery(
        self: Arc<Self>,
        t: usize,
        s: usize,
    ) -> Result<RecoveryReport, RaidError> {
        let _running = Running(Arc::clone(&self));
        let mut run = Run {
            inner: Arc::clone(&self),
            t,
            target: self.backend(t),
            source: self.backend(s),
            progress: RecoveryProgress::default(),
            started: Instant::now(),
            copied: 0,
        };
        tracing::info!(backend = %run.target.name, source = %run.source.name,
            rate = self.recovery_rate.load(Ordering::Relaxed), "recovery started");
        match Self::recover_steps(&mut run).await {
            Ok(report) => {
                tracing::info!(backend = %report.target, source = %report.source,
                    common = report.common, copied = report.copied, bytes = report.bytes,
                    passes = report.passes, elapsed = ?report.elapsed, "recovery finished: backend is optimal");
                Ok(report)
            }
            Err(failure) => {
                let reason = match &failure {
                    Failure::Diverged(_) => format!("recovery refused: {failure}"),
                    _ => format!("recovery failed: {failure}"),
                };
                match &failure {
                    Failure::Cancelled(_) => {
                        tracing::warn!(backend = %run.target.name, %reason, "recovery stopped")
                    }
                    _ => tracing::error!(backend = %run.target.name, %reason, "recovery failed"),
                }
                {
                    let mut states = self.states();
                    if matches!(states.state(t), BackendState::Recovering { .. }) {
                        states.degrade(t, reason.clone());
                    }
                }
                Err(RaidError::RecoveryFailed {
                    backend: run.target.name.clone(),
                    reason,
                })
            }
        }
    }

    async fn recover_steps(run: &mut Run) -> Result<RecoveryReport, Failure> {
        let (common_tid, common) = run.common_prefix().await?;
        tracing::info!(backend = %run.target.name, common, last_common = %tid_str(common_tid),
            "recovery: common prefix verified");
        run.count_missing(common_tid).await?;
        run.publish(0)?;
        let mut last = common_tid;
        let mut passes = 0u64;
        loop {
            let (l, n) = run.copy_after(last, true).await?;
            last = l;
            passes += 1;
            if n <= SWITCH_OVER_AT {
                break;
            }
            tracing::info!(backend = %run.target.name, pass = passes, copied = n,
                "recovery: catching up with commits made meanwhile");
        }
        // The switch-over: no commit is in progress, or finishing, while we hold this.
        let inner = Arc::clone(&run.inner);
        let quiet = inner
            .quiesce()
            .await
            .ok_or_else(|| Failure::Cancelled("closed".into()))?;
        let (last, _) = run.copy_after(last, false).await?;
        let source_last = run
            .source
            .call(Kind::Probe, run.source.storage.last_transaction())
            .await
            .map_err(|e| run.source_err(format!("last_transaction failed: {}", fault_text(e))))?;
        if source_last > last {
            return Err(run.source_err(format!(
                "reports last transaction {} but its iterator ended at {}",
                tid_str(source_last),
                tid_str(last)
            )));
        }
        {
            let mut states = inner.states();
            if states.is_removed(run.t) {
                return Err(Failure::Cancelled("removed".into()));
            }
            match states.state(run.t) {
                BackendState::Recovering { .. } => states.set_optimal(run.t),
                other => return Err(Failure::Cancelled(other.to_string())),
            }
        }
        run.target.note_tid(last);
        drop(quiet);
        // Pull the recovered backend's oid counter up to the others'.
        if let Err(e) = inner.new_oids(1).await {
            if !matches!(e, StorageError::ReadOnly) {
                tracing::warn!(backend = %run.target.name, error = %e,
                    "new_oids after the recovery failed");
            }
        }
        Ok(RecoveryReport {
            target: run.target.name.clone(),
            source: run.source.name.clone(),
            common,
            copied: run.copied,
            bytes: run.progress.bytes,
            passes,
            elapsed: run.started.elapsed(),
        })
    }
}

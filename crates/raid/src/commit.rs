//! Writes: tid assignment under the RAID's commit lock, `vote`/`finish`/`abort`
//! fanned out to every optimal backend concurrently (each within its timeout), the
//! comparison of their outcomes ([`crate::verdict`]) and the degrading of backends
//! that fail, time out or disagree. `pack` is fanned out the same way.
//!
//! A commit is acknowledged (`finish` returns its tid) only once every backend that
//! is still optimal has finished it with exactly the assigned tid; with no backend
//! left the caller gets an error and nothing is acknowledged.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::future::join_all;
use tokio::sync::{OwnedRwLockReadGuard, OwnedSemaphorePermit};
use zeoraid_storage::{
    DurableWait, Finished, StorageError, StorageResult, Tid, Transaction, TxnId, VoteOutcome,
};

use crate::backend::{CallError, Fault, Kind};
use crate::error::{closed, no_backend_left};
use crate::verdict::{decide, AnswerKind, Verdict};
use crate::{lock, Inner, ReadPolicy};

/// The RAID's tids: the last committed one (what `last_transaction` answers) and
/// the last assigned one (which an aborted transaction may leave above it).
#[derive(Debug)]
pub(crate) struct TidClock {
    pub committed: Tid,
    pub assigned: Tid,
    /// The last tid past its commit point ([`Inner::finish_deferred`]), durable
    /// or not yet: an explicit tid must be later than it too.
    finishing: Tid,
    /// The later of `committed` and `finishing`, readable without the lock: the
    /// last transaction every optimal backend shows. Reads answer as of it
    /// ([`Inner::as_of_visible`]), because while the backends finish a commit
    /// one may show it and the next not yet.
    visible: Arc<AtomicU64>,
}

impl TidClock {
    pub(crate) fn new(newest: Tid) -> Self {
        TidClock {
            committed: newest,
            assigned: newest,
            finishing: newest,
            visible: Arc::new(AtomicU64::new(newest.as_u64())),
        }
    }

    /// The shared handle on the last visible tid.
    pub(crate) fn visible(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.visible)
    }

    /// The tid of a new transaction: the client's explicit tid when it is later than
    /// the last committed transaction (restore, copy), else a fresh tid later than
    /// every tid seen or assigned.
    pub(crate) fn assign(&mut self, explicit: Option<Tid>) -> StorageResult<Tid> {
        let last = self.committed.max(self.finishing);
        let tid = match explicit {
            Some(tid) if tid > last => tid,
            Some(tid) => {
                return Err(StorageError::Transaction(format!(
                    "explicit tid {tid:?} is not later than the last transaction {last:?}"
                )))
            }
            None => Tid::now_later_than(self.committed.max(self.assigned)),
        };
        self.assigned = self.assigned.max(tid);
        Ok(tid)
    }

    /// Notes a tid committed (by the RAID or, through an invalidation, by others).
    pub(crate) fn note_committed(&mut self, tid: Tid) {
        self.committed = self.committed.max(tid);
        self.visible.fetch_max(tid.as_u64(), Ordering::Release);
    }

    /// Notes a tid past its commit point on every backend that finishes it.
    fn note_finishing(&mut self, tid: Tid) {
        self.finishing = self.finishing.max(tid);
        self.visible.fetch_max(tid.as_u64(), Ordering::Release);
    }
}

/// The degrade reason of a backend whose finish failed.
fn finish_failure(e: CallError) -> String {
    match e {
        CallError::Answer(e) => format!("finish failed: {e}"),
        CallError::Fault(f) => f.reason("finish"),
    }
}

/// The backends' answers to a finish, sorted ([`sort_finishes`]).
struct FinishAnswers<T> {
    /// The backends that finished it with exactly the assigned tid, with their answers.
    finished: Vec<(usize, T)>,
    /// The backends to degrade, with the reason.
    failed: Vec<(usize, String)>,
}

/// Sorts the backends' answers to a finish of `tid`; `tid_of` reads from an
/// answer the tid the backend finished it with.
fn sort_finishes<T>(
    tid: Tid,
    results: Vec<(usize, Result<T, CallError>)>,
    tid_of: impl Fn(&T) -> Tid,
) -> FinishAnswers<T> {
    let mut sorted = FinishAnswers {
        finished: Vec::new(),
        failed: Vec::new(),
    };
    for (i, result) in results {
        match result {
            Ok(answer) if tid_of(&answer) == tid => sorted.finished.push((i, answer)),
            Ok(answer) => {
                let got = tid_of(&answer);
                let reason = format!("finish returned tid {got:?}, expected {tid:?}");
                sorted.failed.push((i, reason));
            }
            Err(e) => sorted.failed.push((i, finish_failure(e))),
        }
    }
    sorted
}

/// Work that runs to its end even if its caller goes away. It is awaited in
/// place, so work whose backends answer at once (embedded ones) costs no task
/// and no hand-over to another thread, and neither does a wait (an fsync):
/// the backend wakes the caller itself. Only if the caller drops it unfinished
/// does the rest move into a task of its own.
struct RunToEnd<F: Future + Send + 'static>
where
    F::Output: Send,
{
    /// `None` once finished.
    work: Option<Pin<Box<F>>>,
}

impl<F: Future + Send + 'static> RunToEnd<F>
where
    F::Output: Send,
{
    fn new(work: F) -> Self {
        RunToEnd {
            work: Some(Box::pin(work)),
        }
    }
}

impl<F: Future + Send + 'static> Future for RunToEnd<F>
where
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Never polled again once finished (it is only ever awaited).
        let Some(work) = self.work.as_mut() else {
            return Poll::Pending;
        };
        let outcome = ready!(work.as_mut().poll(cx));
        self.work = None;
        Poll::Ready(outcome)
    }
}

impl<F: Future + Send + 'static> Drop for RunToEnd<F>
where
    F::Output: Send,
{
    fn drop(&mut self) {
        let Some(work) = self.work.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(work);
            }
            // Dropped outside any runtime: in this program only while the
            // runtime itself goes away, which ends its tasks too.
            Err(_) => tracing::warn!("a commit step was dropped outside the runtime, unfinished"),
        }
    }
}

/// How often a coop vote is tried when every backend refuses its tid.
const COOP_VOTE_ATTEMPTS: u32 = 5;

/// Aborts the vote on its backends if the RAID's `vote` is dropped midway (the
/// caller went away): no backend is left holding a transaction nobody will finish.
struct AbortOnDrop {
    inner: Arc<Inner>,
    id: TxnId,
    backends: Vec<usize>,
}

impl AbortOnDrop {
    fn disarm(mut self) {
        self.backends.clear();
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let backends = std::mem::take(&mut self.backends);
        self.inner.abort_in_background(backends, self.id);
    }
}

/// The refusals of a fan-out (backends refusing out of their own state or
/// configuration): when some backend gave a verdict, the refusers are at fault and
/// join `degrade`; when none did, every backend refused, so the first refusal in
/// configuration order is the answer and nobody is degraded.
pub(crate) fn settle_refusals(
    op: &str,
    any_verdict: bool,
    refusals: Vec<(usize, StorageError)>,
    degrade: &mut Vec<(usize, String)>,
) -> Option<StorageError> {
    if any_verdict {
        degrade.extend(refusals.into_iter().map(|(i, e)| {
            (
                i,
                format!("{op} refused while other backends answered: {e}"),
            )
        }));
        None
    } else {
        refusals.into_iter().min_by_key(|(i, _)| *i).map(|(_, e)| e)
    }
}

/// Counts a pack in progress until dropped.
struct PackGuard<'a>(&'a Inner);

impl Drop for PackGuard<'_> {
    fn drop(&mut self) {
        self.0.pack_running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The transaction between `vote` and `finish`/`abort`, holding the commit lock.
pub(crate) struct Pending {
    id: TxnId,
    tid: Tid,
    /// The backends that voted it (the agreeing ones), in configuration order.
    participants: Vec<usize>,
    _permit: OwnedSemaphorePermit,
}

impl Inner {
    pub(crate) async fn vote(self: &Arc<Self>, txn: Transaction) -> StorageResult<VoteOutcome> {
        if !self.coop() || txn.tid.is_some() {
            return self.vote_once(txn).await;
        }
        // Coop: another RAID may commit between our reading the backends' last
        // transactions and our vote, so that every backend refuses our tid as too
        // old. The clock has caught up by then: try again with a later tid.
        let mut attempt = 1;
        loop {
            match self.vote_once(txn.clone()).await {
                Err(StorageError::Transaction(reason)) if attempt < COOP_VOTE_ATTEMPTS => {
                    tracing::debug!(%reason, attempt, "coop vote refused by every backend; retrying");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn vote_once(self: &Arc<Self>, mut txn: Transaction) -> StorageResult<VoteOutcome> {
        self.check_writable()?;
        let permit = Arc::clone(&self.commit_lock)
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        self.check_writable()?;
        let txn_had_no_tid = txn.tid.is_none();
        if self.coop() {
            // Other RAIDs commit to the same backends: start after their last
            // transactions (gocept.zeoraid asks them at every tpc_begin too).
            self.refresh_clock(&self.optimal()).await;
        }
        let tid = lock(&self.tids).assign(txn.tid)?;
        txn.tid = Some(tid);
        self.invalidations.mark_own(tid);
        let participants = self.optimal();
        if participants.is_empty() {
            return Err(self.failed_error());
        }

        let guard = AbortOnDrop {
            inner: Arc::clone(self),
            id: txn.id,
            backends: participants.clone(),
        };
        let calls = participants.iter().map(|&i| {
            let b = self.backend(i);
            let t = txn.clone();
            async move { (i, b.call(Kind::Write, b.storage.vote(t)).await) }
        });
        let results = if self.coop() {
            // One after the other in configuration order: a backend's commit lock
            // is held from its vote, and every RAID of the cluster taking them in
            // the same order is what keeps two RAIDs from deadlocking.
            let mut results = Vec::with_capacity(participants.len());
            for call in calls {
                results.push(call.await);
            }
            results
        } else {
            join_all(calls).await
        };
        guard.disarm();

        let mut faults = Vec::new();
        let mut refusals = Vec::new();
        let mut verdicts = Vec::new();
        let mut answers: HashMap<usize, StorageResult<VoteOutcome>> = HashMap::new();
        for (i, result) in results {
            match result {
                Ok(outcome) => {
                    verdicts.push((i, Verdict::of_vote(&outcome)));
                    answers.insert(i, Ok(outcome));
                }
                Err(CallError::Answer(e)) => {
                    verdicts.push((i, Verdict::of_error(&e)));
                    answers.insert(i, Err(e));
                }
                Err(CallError::Fault(Fault::Error(e))) if e.is_refusal() => refusals.push((i, e)),
                Err(CallError::Fault(f)) => faults.push((i, f.reason("vote"))),
            }
        }
        let decision = decide("vote", &verdicts);
        let mut out = faults;
        let refused = settle_refusals("vote", !verdicts.is_empty(), refusals, &mut out);
        if let Some(d) = &decision {
            out.extend(d.disagreeing.iter().cloned());
        }
        self.degrade_many(&out);
        self.abort_in_background(out.iter().map(|(i, _)| *i).collect(), txn.id);

        let Some(decision) = decision else {
            if let Some(e) = refused {
                return Err(e);
            }
            return Err(no_backend_left(
                "vote failed on every backend; the transaction is not committed",
            ));
        };
        if self.states().status() == crate::RaidStatus::Failed {
            // Coop: the degrades above left no more than half of the backends
            // optimal. The RAID has failed; nothing is committed.
            self.abort_in_background(decision.agreeing.clone(), txn.id);
            return Err(self.failed_error());
        }
        let first = decision.agreeing[0];
        let answer = answers
            .remove(&first)
            .ok_or_else(|| StorageError::Transaction("vote answer missing".into()))?;
        if matches!(decision.winner, Verdict::Ok(_)) {
            *lock(&self.pending) = Some(Pending {
                id: txn.id,
                tid,
                participants: decision.agreeing.clone(),
                _permit: permit,
            });
        }
        // Otherwise (conflicts, an answer-error) nothing is held: the permit drops.
        if decision.winner == Verdict::Error(AnswerKind::Transaction) && txn_had_no_tid {
            // The backends refused the tid the RAID chose: they may hold commits the
            // RAID never heard of. Catch the clock up so the next tid is later.
            self.refresh_clock(&decision.agreeing).await;
        }
        answer
    }

    /// Moves the tid clock up to the last transaction of `backends`.
    pub(crate) async fn refresh_clock(&self, backends: &[usize]) {
        let calls = backends.iter().map(|&i| {
            let b = self.backend(i);
            async move { b.call(Kind::Probe, b.storage.last_transaction()).await }
        });
        for tid in join_all(calls).await.into_iter().flatten() {
            lock(&self.tids).note_committed(tid);
        }
    }

    /// Takes the pending transaction if it is `id`.
    fn take_pending(&self, id: TxnId) -> Option<Pending> {
        let mut slot = lock(&self.pending);
        match slot.take() {
            Some(p) if p.id == id => Some(p),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// The pending transaction `id`, which a finish needs.
    fn take_voted(&self, id: TxnId) -> StorageResult<Pending> {
        self.take_pending(id).ok_or_else(|| {
            StorageError::Transaction(format!("finish of transaction {id:?}, which is not voted"))
        })
    }

    /// Splits the participants of `pending` into those still optimal and those
    /// degraded meanwhile (e.g. by a failed read), aborting the latter.
    fn live_participants(self: &Arc<Self>, pending: &Pending) -> Vec<usize> {
        let (live, dropped): (Vec<usize>, Vec<usize>) = pending
            .participants
            .iter()
            .partition(|&&i| self.is_optimal(i));
        self.abort_in_background(dropped, pending.id);
        live
    }

    /// Once begun, a finish runs to its end even if the caller goes away
    /// ([`RunToEnd`]), so backends never stay half-committed.
    pub(crate) async fn finish(self: &Arc<Self>, id: TxnId) -> StorageResult<Tid> {
        let inner = Arc::clone(self);
        RunToEnd::new(async move { inner.finish_now(id).await }).await
    }

    async fn finish_now(self: &Arc<Self>, id: TxnId) -> StorageResult<Tid> {
        let pending = self.take_voted(id)?;
        let tid = pending.tid;
        let live = self.live_participants(&pending);
        let calls = live.iter().map(|&i| {
            let b = self.backend(i);
            async move { (i, b.call(Kind::Write, b.storage.finish(id)).await) }
        });
        // Voted reads compare backends, and one that has finished and one that has
        // not yet would disagree: they wait for the whole finish. Other reads go to
        // one backend and are not held back, or every load would stall for the
        // backends' fsyncs: loads answer as of the last tid every backend shows
        // (`AsOfVisible`), which this commit joins once all have finished it.
        let results = if self.options.read_policy == ReadPolicy::Vote {
            let _publishing = self.visibility.write().await;
            join_all(calls).await
        } else {
            join_all(calls).await
        };
        let sorted = sort_finishes(tid, results, |&got| got);
        self.degrade_many(&sorted.failed);
        let finished: Vec<usize> = sorted.finished.into_iter().map(|(i, _)| i).collect();
        self.note_finished(tid, &finished)?;
        Ok(tid)
        // The commit lock is released when `pending` drops.
    }

    /// Books a transaction that the backends `finished` hold durably; with none,
    /// it is not acknowledged.
    fn note_finished(&self, tid: Tid, finished: &[usize]) -> StorageResult<()> {
        if finished.is_empty() {
            return Err(no_backend_left(
                "finish failed on every backend; the transaction is not acknowledged",
            ));
        }
        for &i in finished {
            let b = self.backend(i);
            b.note_tid(tid);
            b.counters.commits.fetch_add(1, Ordering::Relaxed);
        }
        lock(&self.tids).note_committed(tid);
        Ok(())
    }

    /// `finish` split at the commit point (`Storage::finish_deferred`): every live
    /// participant passes its own commit point — an embedded backend has written
    /// the status byte, a remote one has `tpc_finish` on its way, ahead of the
    /// next transaction on that connection — and the RAID's commit lock is
    /// released, so the next transaction votes while this one's fsyncs run. The
    /// returned wait completes once every participant finished it durably (those
    /// that failed are degraded then); only then may it be acknowledged. Both
    /// phases run to their end ([`RunToEnd`]), so the bookkeeping happens
    /// even if the caller goes away. Under
    /// `read-policy vote` it is a plain `finish`: voted reads must not see a
    /// commit that some backends have not finished.
    pub(crate) async fn finish_deferred(self: &Arc<Self>, id: TxnId) -> StorageResult<Finished> {
        if self.options.read_policy == ReadPolicy::Vote {
            return self.finish(id).await.map(Finished::already_durable);
        }
        let inner = Arc::clone(self);
        RunToEnd::new(async move { inner.pass_commit_point(id).await }).await
    }

    async fn pass_commit_point(self: &Arc<Self>, id: TxnId) -> StorageResult<Finished> {
        let pending = self.take_voted(id)?;
        let tid = pending.tid;
        // Held until this transaction is durable: a switch-over waits for it.
        let in_flight = Arc::clone(&self.finishes).read_owned().await;
        let live = self.live_participants(&pending);
        let calls = live.iter().map(|&i| {
            let b = self.backend(i);
            async move { (i, b.call(Kind::Write, b.storage.finish_deferred(id)).await) }
        });
        let sorted = sort_finishes(tid, join_all(calls).await, |f: &Finished| f.tid);
        self.degrade_many(&sorted.failed);
        let passed: Vec<(usize, DurableWait)> = sorted
            .finished
            .into_iter()
            .map(|(i, f)| (i, f.durable))
            .collect();
        if passed.is_empty() {
            return Err(no_backend_left(
                "finish failed on every backend; the transaction is not acknowledged",
            ));
        }
        lock(&self.tids).note_finishing(tid);
        drop(pending);
        let inner = Arc::clone(self);
        Ok(Finished {
            tid,
            durable: Box::pin(RunToEnd::new(async move {
                inner.await_durable(tid, passed, in_flight).await
            })),
        })
    }

    /// The second half of [`Inner::finish_deferred`]: waits for every backend
    /// that passed the commit point to have the transaction durable.
    async fn await_durable(
        self: Arc<Self>,
        tid: Tid,
        passed: Vec<(usize, DurableWait)>,
        _in_flight: OwnedRwLockReadGuard<()>,
    ) -> StorageResult<()> {
        let waits = passed.into_iter().map(|(i, durable)| {
            let b = self.backend(i);
            async move { (i, b.call(Kind::Write, durable).await) }
        });
        // A wait answers nothing but whether the tid it was given is durable.
        let sorted = sort_finishes(tid, join_all(waits).await, |_| tid);
        self.degrade_many(&sorted.failed);
        let finished: Vec<usize> = sorted.finished.into_iter().map(|(i, _)| i).collect();
        self.note_finished(tid, &finished)
    }

    /// Aborts to the end, like `finish`.
    pub(crate) async fn abort(self: &Arc<Self>, id: TxnId) -> StorageResult<()> {
        let inner = Arc::clone(self);
        RunToEnd::new(async move { inner.abort_now(id).await }).await
    }

    async fn abort_now(self: &Arc<Self>, id: TxnId) -> StorageResult<()> {
        let Some(pending) = self.take_pending(id) else {
            return Ok(());
        };
        let live = self.live_participants(&pending);
        let calls = live.iter().map(|&i| {
            let b = self.backend(i);
            async move { (i, b.call(Kind::Write, b.storage.abort(id)).await) }
        });
        let out: Vec<(usize, String)> = join_all(calls)
            .await
            .into_iter()
            .filter_map(|(i, r)| match r {
                Ok(()) => None,
                Err(CallError::Answer(e)) => Some((i, format!("abort failed: {e}"))),
                Err(CallError::Fault(f)) => Some((i, f.reason("abort"))),
            })
            .collect();
        self.degrade_many(&out);
        Ok(())
    }

    /// Packs every optimal backend concurrently. No timeout applies (a pack may run
    /// for a long time); outcomes are compared like votes. Refused while a backend
    /// is recovering.
    pub(crate) async fn pack(self: &Arc<Self>, t: f64) -> StorageResult<()> {
        self.check_writable()?;
        // Announce the pack before looking for a recovery (and a recovery does the
        // reverse): whichever comes second sees the other.
        let packs_before = self.pack_running.fetch_add(1, Ordering::SeqCst);
        let _packing = PackGuard(self);
        if packs_before > 0 {
            // Refused here, once, rather than by every backend: a backend that says
            // "Already packing" while the others pack is degraded.
            return Err(StorageError::Refused(
                "Already packing (a pack of the RAID is running)".into(),
            ));
        }
        if self.recovery_running.load(Ordering::SeqCst) {
            return Err(StorageError::Transaction(
                "pack is refused while a backend is recovering".into(),
            ));
        }
        let participants = self.optimal();
        let calls = participants.iter().map(|&i| {
            let b = self.backend(i);
            async move { (i, b.call_within(Kind::Write, None, b.storage.pack(t)).await) }
        });
        let mut faults = Vec::new();
        let mut refusals = Vec::new();
        let mut verdicts = Vec::new();
        let mut answers: HashMap<usize, StorageResult<()>> = HashMap::new();
        for (i, result) in join_all(calls).await {
            match result {
                Ok(()) => {
                    verdicts.push((i, Verdict::Ok(Vec::new())));
                    answers.insert(i, Ok(()));
                }
                Err(CallError::Answer(e)) => {
                    verdicts.push((i, Verdict::of_error(&e)));
                    answers.insert(i, Err(e));
                }
                Err(CallError::Fault(Fault::Error(e))) if e.is_refusal() => refusals.push((i, e)),
                Err(CallError::Fault(f)) => faults.push((i, f.reason("pack"))),
            }
        }
        let decision = decide("pack", &verdicts);
        let refused = settle_refusals("pack", !verdicts.is_empty(), refusals, &mut faults);
        if let Some(d) = &decision {
            faults.extend(d.disagreeing.iter().cloned());
        }
        self.degrade_many(&faults);
        let Some(decision) = decision else {
            return Err(refused.unwrap_or_else(|| no_backend_left("pack failed on every backend")));
        };
        answers
            .remove(&decision.agreeing[0])
            .unwrap_or_else(|| Err(StorageError::Transaction("pack answer missing".into())))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_dropped_unfinished_still_runs_to_its_end() {
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let mut work = Box::pin(RunToEnd::new(async move {
            let _ = wait.await;
            let _ = done_tx.send("finished");
        }));
        assert!(futures::poll!(work.as_mut()).is_pending());
        drop(work);
        go.send(()).unwrap();
        let finished = tokio::time::timeout(std::time::Duration::from_secs(5), done)
            .await
            .expect("the rest ran in a task of its own")
            .unwrap();
        assert_eq!(finished, "finished");
    }

    #[tokio::test]
    async fn work_awaited_in_place_gives_its_outcome_and_spawns_nothing() {
        let runtime = tokio::runtime::Handle::current();
        let tasks_before = runtime.metrics().num_alive_tasks();
        let mut work = Box::pin(RunToEnd::new(async {
            tokio::task::yield_now().await;
            42
        }));
        assert!(futures::poll!(work.as_mut()).is_pending());
        assert_eq!(
            runtime.metrics().num_alive_tasks(),
            tasks_before,
            "no task of its own while it waits"
        );
        assert_eq!(work.await, 42);
    }

    #[test]
    fn tids_increase_and_explicit_tids_must_be_later() {
        let mut clock = TidClock::new(Tid::ZERO);
        let a = clock.assign(None).unwrap();
        let b = clock.assign(None).unwrap();
        assert!(
            b > a,
            "later than the previous assigned tid even without commit"
        );
        assert!(clock.assign(Some(Tid::ZERO)).is_err());
        clock.note_committed(b);
        assert!(clock.assign(Some(b)).is_err());
        let future = Tid::from_u64(b.as_u64() + 1_000_000);
        assert_eq!(clock.assign(Some(future)).unwrap(), future);
        assert!(clock.assign(None).unwrap() > future);
    }
}

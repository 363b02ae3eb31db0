//! Reads: each goes to one backend chosen by the read policy (round-robin or
//! least-outstanding), failing over to the next optimal backend on a failure (the
//! failing backend is degraded) without the caller noticing. Answers about the data
//! (`POSKeyError`, …) are returned as they are. Never to a recovering or degraded
//! backend — except that a failed RAID in fail-mode `read-only` keeps reading from
//! the backends that were optimal last.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use zeoraid_storage::{LoadedRecord, Oid, Storage, StorageError, StorageInfo, StorageResult, Tid};

use crate::backend::{CallError, Fault, Kind};
use crate::commit::settle_refusals;
use crate::error::no_backend_left;
use crate::verdict::{decide, AnswerKind, ReadVerdict};
use crate::{FailMode, Inner, RaidStatus, ReadPolicy};

/// Loads answer as of the last transaction that every optimal backend shows.
/// While the backends finish a commit, one of them may already show it and the
/// next not yet; a reader that saw it on the first must not then miss it on the
/// second (a `load_serial` of the serial it was given, say). So a load never
/// looks past this tid, and a revision that ends in a later one is current.
#[derive(Clone, Copy)]
struct AsOfVisible(Tid);

impl AsOfVisible {
    /// `before`, lowered to just past the last visible transaction.
    fn bound(self, before: Tid) -> Tid {
        before.min(Tid::from_u64(self.0.as_u64().saturating_add(1)))
    }

    fn hide_later(self, record: Option<LoadedRecord>) -> Option<LoadedRecord> {
        record.map(|mut r| {
            if r.end.is_some_and(|end| end > self.0) {
                r.end = None;
            }
            r
        })
    }
}

thread_local! {
    /// This thread's round-robin turn: a counter per thread rather than one
    /// shared by every load, whose cache line the cores would pass back and forth.
    static TURN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The next round-robin turn of this thread.
fn next_turn() -> usize {
    TURN.with(|turn| {
        let t = turn.get();
        turn.set(t.wrapping_add(1));
        t
    })
}

/// Undoes this thread's last [`next_turn`].
fn give_back_turn() {
    TURN.with(|turn| turn.set(turn.get().wrapping_sub(1)));
}

/// The indices of the set bits of a backend bit set, lowest first.
#[derive(Clone, Copy)]
struct SetBits(u64);

impl Iterator for SetBits {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

impl Inner {
    /// The backends reads may go to, and whether a failing one is to be degraded.
    fn read_targets(&self) -> StorageResult<(Vec<usize>, bool)> {
        self.check_open()?;
        let states = self.states();
        let optimal = states.optimal();
        if states.status() != RaidStatus::Failed {
            return Ok((optimal, true));
        }
        drop(states);
        if self.options.fail_mode == FailMode::Close {
            return Err(self.failed_error());
        }
        // Fail-mode read-only: a coop RAID short of a majority still reads from
        // (and fails over among) the backends that are optimal.
        if !optimal.is_empty() {
            return Ok((optimal, true));
        }
        let states = self.states();
        match self.options.fail_mode {
            FailMode::ReadOnly if !states.last_good().is_empty() => {
                Ok((states.last_good().to_vec(), false))
            }
            FailMode::ReadOnly => Err(no_backend_left("no backend can read")),
            FailMode::Close => Err(self.failed_error()),
        }
    }

    /// Fails unless reads can be served at all.
    pub(crate) fn read_check(&self) -> StorageResult<()> {
        self.read_targets().map(|_| ())
    }

    /// `targets` rotated so that the one the read policy picks comes first, the
    /// others following in configuration order (for failover).
    fn read_order(&self, mut targets: Vec<usize>) -> Vec<usize> {
        if let Some(first) = self.policy_pick(targets.iter().copied()) {
            targets.rotate_left(first);
        }
        targets
    }

    /// The position among `candidates` of the backend the read policy picks
    /// (`None` when there is none); round-robin advances this thread's turn.
    fn policy_pick(&self, candidates: impl Iterator<Item = usize> + Clone) -> Option<usize> {
        match self.options.read_policy {
            // Reads that are not voted go round-robin under `vote`.
            ReadPolicy::RoundRobin | ReadPolicy::Vote => {
                let count = candidates.count();
                (count > 0).then(|| next_turn() % count)
            }
            ReadPolicy::LeastOutstanding => {
                let backends = self.backends.load();
                candidates
                    .enumerate()
                    .min_by_key(|&(_, i)| backends.get(i).map_or(usize::MAX, |b| b.in_flight()))
                    .map(|(pos, _)| pos)
            }
        }
    }

    /// Runs the read `f` on one backend, failing over; returns the answer.
    pub(crate) async fn read<T, F, Fut>(&self, op: &'static str, f: F) -> StorageResult<T>
    where
        F: Fn(Arc<dyn Storage>) -> Fut + Send + Sync,
        Fut: Future<Output = StorageResult<T>> + Send,
        T: Send,
    {
        self.read_from(op, Kind::Read, &f, None)
            .await
            .map(|(_, v)| v)
    }

    /// Runs the read `f` on one backend (other than `exclude`), failing over;
    /// returns which backend answered, and the answer. Each try is counted as
    /// `kind`.
    pub(crate) async fn read_from<T, F, Fut>(
        &self,
        op: &'static str,
        kind: Kind,
        f: &F,
        exclude: Option<usize>,
    ) -> StorageResult<(usize, T)>
    where
        F: Fn(Arc<dyn Storage>) -> Fut + Send + Sync,
        Fut: Future<Output = StorageResult<T>> + Send,
        T: Send,
    {
        let (targets, degrade) = self.read_targets()?;
        let targets: Vec<usize> = targets
            .into_iter()
            .filter(|&i| Some(i) != exclude)
            .collect();
        let mut last_fault = None;
        // Backends that refused (read-only, unsupported, …): degraded only once
        // another backend answers; when all refuse, the first refusal is the answer.
        let mut refusals: Vec<(usize, StorageError)> = Vec::new();
        for i in self.read_order(targets) {
            if degrade && !self.is_optimal(i) {
                continue;
            }
            let b = self.backend(i);
            let answer = {
                let _visible = self.visibility.read().await;
                b.call(kind, f(Arc::clone(&b.storage))).await
            };
            let answered = |i: usize, refusals: Vec<(usize, StorageError)>| {
                if degrade {
                    let mut out = Vec::new();
                    settle_refusals(op, true, refusals, &mut out);
                    self.degrade_many(&out);
                }
                i
            };
            match answer {
                Ok(v) => return Ok((answered(i, refusals), v)),
                Err(CallError::Answer(e)) => {
                    answered(i, refusals);
                    return Err(e);
                }
                Err(CallError::Fault(Fault::Error(e))) if e.is_refusal() => refusals.push((i, e)),
                Err(CallError::Fault(fault)) => {
                    let reason = fault.reason(op);
                    if degrade {
                        self.degrade(i, reason.clone());
                    } else {
                        tracing::warn!(backend = %b.name, %reason, "read from a degraded backend failed");
                    }
                    last_fault = Some(reason);
                }
            }
        }
        if let Some(refused) = settle_refusals(op, false, refusals, &mut Vec::new()) {
            return Err(refused);
        }
        Err(no_backend_left(&match last_fault {
            Some(reason) => format!("{op}: last failure: {reason}"),
            None => format!("{op}: no backend to read from"),
        }))
    }

    /// `load_before` answered at once on the calling thread by the backend the read
    /// policy picks, when that backend can answer so (an embedded FileStorage): the
    /// ZEO server then saves a task hand-off per load, as it does for a FileStorage
    /// served directly. `None` whenever the async path is needed: voted reads, a
    /// failed RAID, a backend that cannot answer inline, or one that fails — it is
    /// degraded here as the async path would, and the caller's async read fails
    /// over to the next backend.
    pub(crate) fn load_before_inline(
        &self,
        oid: Oid,
        before: Tid,
    ) -> Option<StorageResult<Option<LoadedRecord>>> {
        let as_of = self.as_of_visible();
        let answer = self.load_before_inline_from_policy(oid, as_of.bound(before))?;
        Some(answer.map(|record| as_of.hide_later(record)))
    }

    /// `load_before` of the revision current before `before`, as of the last
    /// visible transaction ([`AsOfVisible`]).
    pub(crate) async fn load_before(
        &self,
        oid: Oid,
        before: Tid,
    ) -> StorageResult<Option<LoadedRecord>> {
        let as_of = self.as_of_visible();
        let before = as_of.bound(before);
        self.read_voted(
            "load_before",
            move |s| async move { s.load_before(oid, before).await },
            Option::clone,
        )
        .await
        .map(|record| as_of.hide_later(record))
    }

    fn as_of_visible(&self) -> AsOfVisible {
        AsOfVisible(Tid::from_u64(self.visible.load(Ordering::Acquire)))
    }

    /// The inline read itself, from the backend the read policy picks, with
    /// `before` already bounded.
    fn load_before_inline_from_policy(
        &self,
        oid: Oid,
        before: Tid,
    ) -> Option<StorageResult<Option<LoadedRecord>>> {
        let i = self.pick_reader()?;
        let backends = self.backends.load();
        let b = backends.get(i)?;
        let Some(answer) = b.read_inline(|| b.storage.load_before_inline(oid, before)) else {
            // The backend cannot answer at once (a `<zeoclient>`'s cache miss):
            // its turn was not used, so the async read that follows on this
            // thread goes to it — and fills its cache. Otherwise the turns taken
            // by the server's tries could keep the misses away from it for good.
            if self.options.read_policy == ReadPolicy::RoundRobin {
                give_back_turn();
            }
            return None;
        };
        match answer {
            Ok(v) => Some(Ok(v)),
            Err(CallError::Answer(e)) => Some(Err(e)),
            // Whether a refusal degrades depends on what the others answer: the
            // async path settles that.
            Err(CallError::Fault(Fault::Error(e))) if e.is_refusal() => None,
            Err(CallError::Fault(fault)) => {
                self.degrade(i, fault.reason("load_before"));
                None
            }
        }
    }

    /// The optimal backend a plain (not voted) read goes to first under the read
    /// policy — [`Inner::read_order`]'s first pick, without allocating, for the
    /// inline path. `None` under `vote`, and when the RAID has failed or is closed
    /// (the async path knows what the fail-mode allows).
    fn pick_reader(&self) -> Option<usize> {
        if self.options.read_policy == ReadPolicy::Vote || self.closed.load(Ordering::SeqCst) {
            return None;
        }
        // The published bit set, not the state table: no lock shared by every
        // load (0 once the RAID has failed).
        let mask = self.readable.load(Ordering::Acquire);
        let first = self.policy_pick(SetBits(mask))?;
        SetBits(mask).nth(first)
    }

    /// `info` of one backend, named after the RAID, read-only when the RAID is.
    /// Not counted as a read: the ZEO server asks for it after every commit.
    pub(crate) async fn info(&self) -> StorageResult<StorageInfo> {
        let info_of = |s: Arc<dyn Storage>| async move { s.info().await };
        let (_, mut info) = self.read_from("info", Kind::Probe, &info_of, None).await?;
        let names = self.states().names();
        info.name = format!("RAID of {}", names.join(", "));
        info.read_only = info.read_only
            || self.options.read_only
            || self.states().status() == RaidStatus::Failed;
        Ok(info)
    }
}

impl Inner {
    /// A read that is voted under [`ReadPolicy::Vote`]: `f` runs on every optimal
    /// backend concurrently, the answers (reduced by `key`) are compared with the
    /// rule of the votes, and every backend that answered otherwise, failed, or
    /// refused while others answered is degraded. Under the other policies, with a
    /// single optimal backend, or reading from the last good backends of a failed
    /// RAID, it is a plain [`Inner::read`].
    pub(crate) async fn read_voted<T, K, F, Fut, Key>(
        &self,
        op: &'static str,
        f: F,
        key: Key,
    ) -> StorageResult<T>
    where
        F: Fn(Arc<dyn Storage>) -> Fut + Send + Sync,
        Fut: Future<Output = StorageResult<T>> + Send,
        T: Send,
        K: PartialEq + Clone + std::fmt::Debug,
        Key: Fn(&T) -> K,
    {
        if self.options.read_policy != ReadPolicy::Vote {
            return self.read(op, f).await;
        }
        let (targets, degrade) = self.read_targets()?;
        if !degrade || targets.len() < 2 {
            return self.read(op, f).await;
        }
        let results = {
            let _visible = self.visibility.read().await;
            let calls = targets.iter().map(|&i| {
                let b = self.backend(i);
                let call = f(Arc::clone(&b.storage));
                async move { (i, b.call(Kind::Read, call).await) }
            });
            futures::future::join_all(calls).await
        };
        let mut verdicts = Vec::new();
        let mut answers: HashMap<usize, StorageResult<T>> = HashMap::new();
        let mut refusals = Vec::new();
        let mut out = Vec::new();
        for (i, result) in results {
            match result {
                Ok(v) => {
                    verdicts.push((i, ReadVerdict::Value(key(&v))));
                    answers.insert(i, Ok(v));
                }
                Err(CallError::Answer(e)) => {
                    verdicts.push((i, ReadVerdict::Error(AnswerKind::of(&e))));
                    answers.insert(i, Err(e));
                }
                Err(CallError::Fault(Fault::Error(e))) if e.is_refusal() => refusals.push((i, e)),
                Err(CallError::Fault(fault)) => out.push((i, fault.reason(op))),
            }
        }
        let refused = settle_refusals(op, !verdicts.is_empty(), refusals, &mut out);
        let decision = decide(op, &verdicts);
        if let Some(d) = &decision {
            out.extend(d.disagreeing.iter().cloned());
        }
        self.degrade_many(&out);
        match decision {
            Some(d) => answers
                .remove(&d.agreeing[0])
                .unwrap_or_else(|| Err(no_backend_left(&format!("{op}: answer missing")))),
            None => {
                Err(refused
                    .unwrap_or_else(|| no_backend_left(&format!("{op}: every backend failed"))))
            }
        }
    }
}

//! `new_oids`: oids identical on every backend and never handed out twice, also
//! across RAID restarts and after recovery.
//!
//! **The rule.** Under the RAID's oid lock, every optimal backend is asked for
//! `count` oids concurrently. Let `top` be the highest oid any of them returned, and
//! at least the highest oid the RAID handed out before plus `count`. The RAID hands
//! out `top-count+1 ..= top`, after making every backend whose counter is below
//! `top` catch up (asking it for more oids until it has handed out `top`).
//!
//! **Why it is safe.** Afterwards every optimal backend's own counter is at or above
//! `top`, so every optimal backend is past every oid the RAID ever handed out while
//! it was optimal: a restarted RAID (which keeps no oid state of its own) asks them again
//! and gets only fresh oids, whichever of them are still reachable. A backend that
//! was behind (degraded, recovered, or brand new) is pulled up on the first call.
//! Each backend's counter is also above the oids it stores, so the range is above
//! every stored oid. In steady state all counters move in lockstep and no catch-up
//! call is needed. (gocept.zeoraid took the minimum and degraded backends that gave
//! more; zeoraid takes the maximum and pulls the others up instead, which never
//! degrades a healthy backend and never hands out an oid a backend already passed.)
//!
//! The one case not covered: oids handed out but never stored, by backends that are
//! all unreachable when the RAID restarts, can be handed out again by the others.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use zeoraid_storage::{Oid, StorageError, StorageResult, MAX_NEW_OIDS};

use crate::backend::{CallError, Fault, Kind};
use crate::commit::settle_refusals;
use crate::error::no_backend_left;
use crate::Inner;

/// How many catch-up calls one backend may need before it is degraded.
const MAX_CATCH_UP_CALLS: u32 = 10_000;

impl Inner {
    pub(crate) async fn new_oids(self: &Arc<Self>, count: u32) -> StorageResult<Vec<Oid>> {
        let count = count.clamp(1, MAX_NEW_OIDS);
        self.check_writable()?;
        if self.coop() {
            return self.new_oids_coop(count).await;
        }
        let mut last = self.oids.lock().await;
        let participants = self.optimal();
        if participants.is_empty() {
            return Err(self.failed_error());
        }
        let calls = participants.iter().map(|&i| {
            let b = self.backend(i);
            async move { (i, b.call(Kind::Write, b.storage.new_oids(count)).await) }
        });
        let mut counters = Vec::new();
        let mut out = Vec::new();
        let mut refusals = Vec::new();
        for (i, result) in join_all(calls).await {
            match result {
                Err(CallError::Fault(Fault::Error(e))) if e.is_refusal() => refusals.push((i, e)),
                result => match highest(result) {
                    Ok(high) => counters.push((i, high)),
                    Err(reason) => out.push((i, reason)),
                },
            }
        }
        let refused = settle_refusals("new_oids", !counters.is_empty(), refusals, &mut out);
        self.degrade_many(&out);
        if counters.is_empty() {
            return Err(
                refused.unwrap_or_else(|| no_backend_left("new_oids failed on every backend"))
            );
        }
        let count64 = u64::from(count);
        let top = counters
            .iter()
            .map(|(_, high)| *high)
            .max()
            .unwrap_or(0)
            .max(last.saturating_add(count64));

        let catch_up = counters
            .iter()
            .filter(|(_, high)| *high < top)
            .map(|&(i, high)| self.catch_up(i, high, top));
        let out: Vec<(usize, String)> = join_all(catch_up).await.into_iter().flatten().collect();
        self.degrade_many(&out);
        if counters
            .iter()
            .all(|(i, _)| out.iter().any(|(o, _)| o == i))
        {
            return Err(no_backend_left("new_oids failed on every backend"));
        }
        *last = top;
        Ok((top + 1 - count64..=top).map(Oid::from_u64).collect())
    }

    /// Asks backend `i` for oids until its counter reaches `top`; the degrade reason
    /// if it fails.
    async fn catch_up(&self, i: usize, mut high: u64, top: u64) -> Option<(usize, String)> {
        let b = self.backend(i);
        for _ in 0..MAX_CATCH_UP_CALLS {
            if high >= top {
                return None;
            }
            let n = u32::try_from((top - high).min(u64::from(MAX_NEW_OIDS))).unwrap_or(1);
            match highest(b.call(Kind::Write, b.storage.new_oids(n)).await) {
                Ok(h) if h > high => high = h,
                Ok(_) => return Some((i, "new_oids went backwards while catching up".into())),
                Err(reason) => return Some((i, format!("{reason} (catching up)"))),
            }
        }
        Some((i, "oid counter could not catch up".into()))
    }
}

/// How many rounds a coop `new_oids` makes before it gives up.
const COOP_ROUNDS: u32 = 20;

impl Inner {
    /// `new_oids` in `cluster-mode coop`. Other RAIDs take oids from the same
    /// backends meanwhile, so "the highest counter" may be an oid another RAID got
    /// from another backend. Hands out only oids that **every** optimal backend
    /// handed to this RAID (in this call or its catch-up): a backend hands each oid
    /// out once, so no other RAID can have it from any of them.
    async fn new_oids_coop(self: &Arc<Self>, count: u32) -> StorageResult<Vec<Oid>> {
        let mut last = self.oids.lock().await;
        for _ in 0..COOP_ROUNDS {
            let participants = self.optimal();
            if participants.is_empty() || self.states().status() == crate::RaidStatus::Failed {
                return Err(self.failed_error());
            }
            let calls = participants.iter().map(|&i| {
                let b = self.backend(i);
                async move { (i, b.call(Kind::Write, b.storage.new_oids(count)).await) }
            });
            let mut got: Vec<(usize, BTreeSet<u64>)> = Vec::new();
            let mut out = Vec::new();
            let mut refusals = Vec::new();
            for (i, result) in join_all(calls).await {
                match result {
                    Ok(oids) if !oids.is_empty() => {
                        got.push((i, oids.iter().map(|o| o.as_u64()).collect()))
                    }
                    Err(CallError::Fault(Fault::Error(e))) if e.is_refusal() => {
                        refusals.push((i, e))
                    }
                    result => {
                        if let Err(reason) = highest(result) {
                            out.push((i, reason));
                        }
                    }
                }
            }
            let refused = settle_refusals("new_oids", !got.is_empty(), refusals, &mut out);
            self.degrade_many(&out);
            let Some((top, floor)) = got
                .iter()
                .filter_map(|(_, s)| Some((*s.last()?, *s.first()?)))
                .max()
            else {
                return Err(
                    refused.unwrap_or_else(|| no_backend_left("new_oids failed on every backend"))
                );
            };
            let catch_up = got.iter().map(|(i, s)| {
                let (i, high) = (*i, s.last().copied().unwrap_or(0));
                async move { (i, self.catch_up_collecting(i, high, top, floor).await) }
            });
            let mut out = Vec::new();
            let mut more: Vec<(usize, BTreeSet<u64>)> = Vec::new();
            for (i, result) in join_all(catch_up).await {
                match result {
                    Ok(oids) => more.push((i, oids)),
                    Err(reason) => out.push((i, reason)),
                }
            }
            self.degrade_many(&out);
            let mut common: Option<BTreeSet<u64>> = None;
            for (i, mut oids) in got {
                if out.iter().any(|(o, _)| *o == i) {
                    continue;
                }
                if let Some((_, extra)) = more.iter().find(|(m, _)| *m == i) {
                    oids.extend(extra);
                }
                common = Some(match common {
                    None => oids,
                    Some(c) => c.intersection(&oids).copied().collect(),
                });
            }
            let Some(common) = common else {
                return Err(no_backend_left("new_oids failed on every backend"));
            };
            if !common.is_empty() {
                let oids: Vec<u64> = common.into_iter().take(count as usize).collect();
                *last = (*last).max(oids.iter().copied().max().unwrap_or(0));
                return Ok(oids.into_iter().map(Oid::from_u64).collect());
            }
            // Other RAIDs took every candidate from some backend: ask again.
        }
        Err(StorageError::Refused(format!(
            "no oids that every backend handed to this RAID after {COOP_ROUNDS} rounds \
             (other RAIDs are allocating heavily)"
        )))
    }

    /// Asks backend `i` for oids until its counter reaches `top`; returns those
    /// at or above `floor` (the candidates), or the degrade reason.
    async fn catch_up_collecting(
        &self,
        i: usize,
        mut high: u64,
        top: u64,
        floor: u64,
    ) -> Result<BTreeSet<u64>, String> {
        let b = self.backend(i);
        let mut oids = BTreeSet::new();
        for _ in 0..MAX_CATCH_UP_CALLS {
            if high >= top {
                return Ok(oids);
            }
            let n = u32::try_from((top - high).min(u64::from(MAX_NEW_OIDS))).unwrap_or(1);
            let got = match b.call(Kind::Write, b.storage.new_oids(n)).await {
                Ok(got) => got,
                Err(CallError::Answer(e)) => {
                    return Err(format!("new_oids failed: {e} (catching up)"))
                }
                Err(CallError::Fault(f)) => {
                    return Err(format!("{} (catching up)", f.reason("new_oids")))
                }
            };
            let h = got.iter().map(|o| o.as_u64()).max().unwrap_or(0);
            if h <= high {
                return Err("new_oids went backwards while catching up".into());
            }
            high = h;
            oids.extend(got.iter().map(|o| o.as_u64()).filter(|&o| o >= floor));
        }
        Err("oid counter could not catch up".into())
    }
}

/// The highest oid of a `new_oids` answer, or the degrade reason.
fn highest(result: Result<Vec<Oid>, CallError>) -> Result<u64, String> {
    match result {
        Ok(oids) => oids
            .iter()
            .map(|o| o.as_u64())
            .max()
            .ok_or_else(|| "new_oids returned no oids".to_string()),
        Err(CallError::Answer(e)) => Err(format!("new_oids failed: {e}")),
        Err(CallError::Fault(f)) => Err(f.reason("new_oids")),
    }
}

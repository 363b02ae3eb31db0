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
//! it was optimal: a restarted RAID (which keeps no state of its own) asks them again
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

use std::sync::Arc;

use futures::future::join_all;
use zeoraid_storage::{Oid, StorageResult, MAX_NEW_OIDS};

use crate::backend::{CallError, Kind};
use crate::error::no_backend_left;
use crate::Inner;

/// How many catch-up calls one backend may need before it is degraded.
const MAX_CATCH_UP_CALLS: u32 = 10_000;

impl Inner {
    pub(crate) async fn new_oids(self: &Arc<Self>, count: u32) -> StorageResult<Vec<Oid>> {
        let count = count.clamp(1, MAX_NEW_OIDS);
        self.check_writable()?;
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
        for (i, result) in join_all(calls).await {
            match highest(result) {
                Ok(high) => counters.push((i, high)),
                Err(reason) => out.push((i, reason)),
            }
        }
        self.degrade_many(&out);
        if counters.is_empty() {
            return Err(no_backend_left("new_oids failed on every backend"));
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

//! Backend states and the RAID status derived from them, with every change of
//! state logged once: `warn` when a backend is degraded, `info` when one becomes
//! optimal or starts recovering, `error` when the RAID fails.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::optimal_record::OptimalRecord;

/// How far a recovery has come (filled in by the recovery).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryProgress {
    /// Transactions copied so far.
    pub transactions: u64,
    /// Transactions to copy in all, when known.
    pub transactions_total: Option<u64>,
    /// Bytes copied so far.
    pub bytes: u64,
    /// Bytes to copy in all, when known.
    pub bytes_total: Option<u64>,
    /// Estimated time until the recovery catches up.
    pub eta: Option<Duration>,
}

impl fmt::Display for RecoveryProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} transactions", self.transactions)?;
        if let Some(total) = self.transactions_total {
            write!(f, " of {total}")?;
        }
        write!(f, ", {} bytes", self.bytes)?;
        if let Some(total) = self.bytes_total {
            write!(f, " of {total}")?;
        }
        if let Some(eta) = self.eta {
            write!(f, ", eta {}s", eta.as_secs())?;
        }
        Ok(())
    }
}

/// The state of one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendState {
    /// In the RAID: takes every write, serves reads.
    Optimal,
    /// Out of the RAID, with the reason it was taken out.
    Degraded { reason: String },
    /// Being rebuilt from an optimal backend; takes no reads.
    Recovering { progress: RecoveryProgress },
}

impl BackendState {
    pub fn is_optimal(&self) -> bool {
        matches!(self, BackendState::Optimal)
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendState::Optimal => f.write_str("optimal"),
            BackendState::Degraded { reason } => write!(f, "degraded: {reason}"),
            BackendState::Recovering { progress } => write!(f, "recovering: {progress}"),
        }
    }
}

/// The status of the whole RAID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaidStatus {
    /// Every backend is optimal.
    Optimal,
    /// Some backend is not optimal, at least one is.
    Degraded,
    /// A backend is recovering (and at least one is optimal).
    Recovering,
    /// No backend is optimal.
    Failed,
}

impl RaidStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RaidStatus::Optimal => "optimal",
            RaidStatus::Degraded => "degraded",
            RaidStatus::Recovering => "recovering",
            RaidStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RaidStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The states of all backends (in configuration order) and the status derived
/// from them. Kept behind one lock so that "is this the last optimal backend" is
/// answered atomically.
#[derive(Debug)]
pub(crate) struct StateTable {
    names: Vec<String>,
    states: Vec<BackendState>,
    /// Backends removed by a reload: they keep their index but count for nothing.
    removed: Vec<bool>,
    status: RaidStatus,
    /// The backends that were optimal when the RAID failed: they hold every
    /// acknowledged commit, so fail-mode `read-only` keeps reading from them.
    last_good: Vec<usize>,
    /// `cluster-mode coop`: the RAID has failed as soon as no more than half of the
    /// (present) backends are optimal (gocept.zeoraid's rule).
    majority_needed: bool,
    /// Where the backends holding every acknowledged commit are recorded
    /// (`optimal_record.rs`); kept up to date on every change of the set.
    record: Option<OptimalRecord>,
    /// The optimal backends as a bit set (bit i: backend i), 0 once the RAID has
    /// failed or when it has more than 64 slots: what the inline read path reads
    /// without taking this table's lock.
    readable: Arc<AtomicU64>,
}

impl StateTable {
    /// A table with the states derived at startup; logs them. With
    /// `majority_needed` (coop) the RAID fails once no more than half of its
    /// backends are optimal, else once none is.
    pub(crate) fn new(
        names: Vec<String>,
        states: Vec<BackendState>,
        majority_needed: bool,
        record: Option<OptimalRecord>,
    ) -> Self {
        for (name, state) in names.iter().zip(&states) {
            match state {
                BackendState::Optimal => tracing::info!(backend = %name, "backend is optimal"),
                BackendState::Degraded { reason } => {
                    tracing::warn!(backend = %name, %reason, "backend is degraded")
                }
                BackendState::Recovering { .. } => {
                    tracing::info!(backend = %name, "backend is recovering")
                }
            }
        }
        let removed = vec![false; states.len()];
        let mut table = StateTable {
            names,
            states,
            removed,
            status: RaidStatus::Optimal,
            last_good: Vec::new(),
            majority_needed,
            record,
            readable: Arc::new(AtomicU64::new(0)),
        };
        table.status = table.derive_status();
        table.publish_readable();
        table.log_status();
        table.persist();
        table
    }

    /// Starts keeping `record` up to date (once the backends unreachable at
    /// startup are settled), writing the current set now.
    pub(crate) fn install_record(&mut self, record: OptimalRecord) {
        self.record = Some(record);
        self.persist();
    }

    /// Records the backends holding every acknowledged commit: the optimal ones,
    /// or the last good ones once none is optimal.
    fn persist(&mut self) {
        let Some(record) = self.record.as_mut() else {
            return;
        };
        let optimal = (0..self.states.len()).filter(|&i| {
            !self.removed.get(i).copied().unwrap_or(true) && self.states[i].is_optimal()
        });
        let holders: Vec<usize> = match optimal.collect::<Vec<_>>() {
            v if v.is_empty() => self.last_good.clone(),
            v => v,
        };
        record.write(holders.into_iter().map(|i| self.names[i].clone()).collect());
    }

    pub(crate) fn status(&self) -> RaidStatus {
        self.status
    }

    pub(crate) fn state(&self, i: usize) -> &BackendState {
        &self.states[i]
    }

    pub(crate) fn is_optimal(&self, i: usize) -> bool {
        !self.is_removed(i) && self.states.get(i).is_some_and(BackendState::is_optimal)
    }

    pub(crate) fn is_removed(&self, i: usize) -> bool {
        self.removed.get(i).copied().unwrap_or(true)
    }

    /// The indices of the backends that are not removed, in configuration order.
    pub(crate) fn present(&self) -> Vec<usize> {
        (0..self.states.len())
            .filter(|&i| !self.removed[i])
            .collect()
    }

    /// The names of the backends that are not removed, in configuration order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.present()
            .into_iter()
            .map(|i| self.names[i].clone())
            .collect()
    }

    /// The index of the (not removed) backend called `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.present().into_iter().find(|&i| self.names[i] == name)
    }

    /// The optimal backends, in configuration order.
    pub(crate) fn optimal(&self) -> Vec<usize> {
        (0..self.states.len())
            .filter(|&i| self.is_optimal(i))
            .collect()
    }

    /// Adds a backend (a reload) with `state`; returns its index.
    pub(crate) fn push(&mut self, name: String, state: BackendState) -> usize {
        if let BackendState::Degraded { reason } = &state {
            tracing::warn!(backend = %name, %reason, "backend added, degraded");
        }
        self.names.push(name);
        self.states.push(state);
        self.removed.push(false);
        self.update_status();
        self.states.len() - 1
    }

    /// Removes backend `i` (a reload): it no longer counts for anything.
    pub(crate) fn remove(&mut self, i: usize) {
        if let Some(r) = self.removed.get_mut(i) {
            *r = true;
            self.states[i] = BackendState::Degraded {
                reason: "removed".into(),
            };
            tracing::info!(backend = %self.names[i], "backend removed");
            self.last_good.retain(|&g| g != i);
            self.update_status();
        }
    }

    pub(crate) fn last_good(&self) -> &[usize] {
        &self.last_good
    }

    /// Degrades every backend in `batch` (those already degraded keep their first
    /// reason). Returns whether any state changed. When the batch takes the last
    /// optimal backends, those of them that were optimal are remembered as the last
    /// good ones.
    pub(crate) fn degrade_many(&mut self, batch: &[(usize, String)]) -> bool {
        let optimal_before = self.optimal();
        let mut changed = false;
        for (i, reason) in batch {
            if self.removed.get(*i).copied().unwrap_or(true) {
                continue;
            }
            let Some(state) = self.states.get_mut(*i) else {
                continue;
            };
            if matches!(state, BackendState::Degraded { .. }) {
                continue;
            }
            *state = BackendState::Degraded {
                reason: reason.clone(),
            };
            tracing::warn!(backend = %self.names[*i], %reason, "backend degraded");
            changed = true;
        }
        if changed {
            if self.optimal().is_empty() && !optimal_before.is_empty() {
                self.last_good = optimal_before;
            }
            self.update_status();
        }
        changed
    }

    pub(crate) fn degrade(&mut self, i: usize, reason: String) -> bool {
        self.degrade_many(&[(i, reason)])
    }

    /// Makes a backend optimal (the recovery does this under the commit lock).
    pub(crate) fn set_optimal(&mut self, i: usize) {
        if let Some(state) = self.states.get_mut(i) {
            if !state.is_optimal() {
                *state = BackendState::Optimal;
                tracing::info!(backend = %self.names[i], "backend is optimal");
                self.last_good.clear();
                self.update_status();
            }
        }
    }

    /// Replaces the reason of a degraded backend (a backend unreachable at
    /// startup that answers later, behind the others).
    pub(crate) fn set_reason(&mut self, i: usize, reason: String) {
        if let Some(BackendState::Degraded { reason: old }) = self.states.get_mut(i) {
            tracing::warn!(backend = %self.names[i], %reason, "backend degraded");
            *old = reason;
        }
    }

    /// Marks a backend as recovering, or updates its progress.
    pub(crate) fn set_recovering(&mut self, i: usize, progress: RecoveryProgress) {
        if let Some(state) = self.states.get_mut(i) {
            let started = !matches!(state, BackendState::Recovering { .. });
            *state = BackendState::Recovering { progress };
            if started {
                tracing::info!(backend = %self.names[i], "backend is recovering");
                self.update_status();
            }
        }
    }

    fn derive_status(&self) -> RaidStatus {
        let present: Vec<&BackendState> = self
            .present()
            .into_iter()
            .map(|i| &self.states[i])
            .collect();
        let optimal = present.iter().filter(|s| s.is_optimal()).count();
        if optimal == 0 || (self.majority_needed && optimal * 2 <= present.len()) {
            RaidStatus::Failed
        } else if present
            .iter()
            .any(|s| matches!(s, BackendState::Recovering { .. }))
        {
            RaidStatus::Recovering
        } else if present.iter().all(|s| s.is_optimal()) {
            RaidStatus::Optimal
        } else {
            RaidStatus::Degraded
        }
    }

    fn update_status(&mut self) {
        self.persist();
        let status = self.derive_status();
        if status != self.status {
            self.status = status;
            self.log_status();
        }
        self.publish_readable();
    }

    /// The bit set of optimal backends, kept current by every change of a state.
    pub(crate) fn readable(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.readable)
    }

    fn publish_readable(&self) {
        let mask = if self.status == RaidStatus::Failed || self.states.len() > 64 {
            0
        } else {
            (0..self.states.len())
                .filter(|&i| self.is_optimal(i))
                .fold(0u64, |mask, i| mask | 1 << i)
        };
        self.readable.store(mask, Ordering::Release);
    }

    fn log_status(&self) {
        let optimal = self.optimal().len();
        let total = self.present().len();
        match self.status {
            RaidStatus::Optimal => tracing::info!(optimal, total, "RAID is optimal"),
            RaidStatus::Degraded => tracing::warn!(optimal, total, "RAID is degraded"),
            RaidStatus::Recovering => tracing::info!(optimal, total, "RAID is recovering"),
            RaidStatus::Failed if optimal > 0 => tracing::error!(
                optimal,
                total,
                "RAID failed: cluster-mode coop needs more than half of the backends optimal"
            ),
            RaidStatus::Failed => {
                tracing::error!(total, "RAID failed: no optimal backend left")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn table(n: usize) -> StateTable {
        StateTable::new(
            (0..n).map(|i| format!("b{i}")).collect(),
            vec![BackendState::Optimal; n],
            false,
            None,
        )
    }

    #[test]
    fn coop_fails_without_a_majority_of_optimal_backends() {
        let mut t = StateTable::new(
            (0..4).map(|i| format!("b{i}")).collect(),
            vec![BackendState::Optimal; 4],
            true,
            None,
        );
        t.degrade(0, "x".into());
        assert_eq!(t.status(), RaidStatus::Degraded, "3 of 4 optimal");
        t.degrade(1, "x".into());
        assert_eq!(
            t.status(),
            RaidStatus::Failed,
            "2 of 4 is not more than half"
        );
        t.set_optimal(1);
        assert_eq!(t.status(), RaidStatus::Degraded);
        let t = StateTable::new(
            vec!["a".into(), "b".into()],
            vec![
                BackendState::Optimal,
                BackendState::Degraded {
                    reason: "missing transactions".into(),
                },
            ],
            true,
            None,
        );
        assert_eq!(t.status(), RaidStatus::Failed, "1 of 2 at startup");
    }

    #[test]
    fn the_record_follows_the_backends_holding_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raid.state");
        let read = || OptimalRecord::new(path.clone()).read().unwrap();
        let mut t = StateTable::new(
            vec!["a".into(), "b".into()],
            vec![BackendState::Optimal; 2],
            false,
            Some(OptimalRecord::new(path.clone())),
        );
        assert_eq!(read(), ["a", "b"]);
        t.degrade(0, "x".into());
        assert_eq!(read(), ["b"]);
        // The last one fails too: it still holds every acknowledged commit.
        t.degrade(1, "y".into());
        assert_eq!(read(), ["b"]);
        t.set_optimal(0);
        assert_eq!(read(), ["a"]);
    }

    #[test]
    fn status_follows_states() {
        let mut t = table(2);
        assert_eq!(t.status(), RaidStatus::Optimal);
        assert!(t.degrade(1, "x".into()));
        assert_eq!(t.status(), RaidStatus::Degraded);
        assert!(
            !t.degrade(1, "y".into()),
            "a second degrade changes nothing"
        );
        assert_eq!(t.state(1).to_string(), "degraded: x");
        t.set_recovering(1, RecoveryProgress::default());
        assert_eq!(t.status(), RaidStatus::Recovering);
        t.set_optimal(1);
        assert_eq!(t.status(), RaidStatus::Optimal);
        t.degrade_many(&[(0, "a".into()), (1, "b".into())]);
        assert_eq!(t.status(), RaidStatus::Failed);
        assert_eq!(t.last_good(), &[0, 1]);
    }

    #[test]
    fn the_readable_set_follows_every_change_of_state() {
        let mut t = table(3);
        let readable = t.readable();
        let bits = || readable.load(Ordering::Acquire);
        assert_eq!(bits(), 0b111);
        t.degrade(1, "x".into());
        assert_eq!(bits(), 0b101);
        t.set_recovering(1, RecoveryProgress::default());
        assert_eq!(bits(), 0b101, "a recovering backend is not read");
        t.set_optimal(1);
        assert_eq!(bits(), 0b111);
        t.remove(2);
        assert_eq!(bits(), 0b011);
        let added = t.push("b3".into(), BackendState::Optimal);
        assert_eq!(bits(), 0b011 | 1 << added);
        t.degrade_many(&[(0, "a".into()), (1, "b".into()), (added, "c".into())]);
        assert_eq!(t.status(), RaidStatus::Failed);
        assert_eq!(bits(), 0, "a failed RAID reads through the async path");
    }
}

//! Reads: each goes to one backend chosen by the read policy (round-robin or
//! least-outstanding), failing over to the next optimal backend on a failure (the
//! failing backend is degraded) without the caller noticing. Answers about the data
//! (`POSKeyError`, …) are returned as they are. Never to a recovering or degraded
//! backend — except that a failed RAID in fail-mode `read-only` keeps reading from
//! the backends that were optimal last.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use zeoraid_storage::{Storage, StorageInfo, StorageResult};

use crate::backend::{CallError, Kind};
use crate::error::no_backend_left;
use crate::{FailMode, Inner, RaidStatus, ReadPolicy};

impl Inner {
    /// The backends reads may go to, and whether a failing one is to be degraded.
    fn read_targets(&self) -> StorageResult<(Vec<usize>, bool)> {
        self.check_open()?;
        let states = self.states();
        let optimal = states.optimal();
        if !optimal.is_empty() {
            return Ok((optimal, true));
        }
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
        if targets.is_empty() {
            return targets;
        }
        let first = match self.options.read_policy {
            ReadPolicy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed) % targets.len(),
            ReadPolicy::LeastOutstanding => targets
                .iter()
                .enumerate()
                .min_by_key(|(_, &i)| self.backend(i).in_flight())
                .map(|(pos, _)| pos)
                .unwrap_or(0),
        };
        targets.rotate_left(first);
        targets
    }

    /// Runs the read `f` on one backend, failing over; returns the answer.
    pub(crate) async fn read<T, F, Fut>(&self, op: &'static str, f: F) -> StorageResult<T>
    where
        F: Fn(Arc<dyn Storage>) -> Fut + Send + Sync,
        Fut: Future<Output = StorageResult<T>> + Send,
        T: Send,
    {
        self.read_from(op, &f, None).await.map(|(_, v)| v)
    }

    /// Runs the read `f` on one backend (other than `exclude`), failing over;
    /// returns which backend answered, and the answer.
    pub(crate) async fn read_from<T, F, Fut>(
        &self,
        op: &'static str,
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
        for i in self.read_order(targets) {
            if degrade && !self.is_optimal(i) {
                continue;
            }
            let b = self.backend(i);
            let answer = {
                let _visible = self.visibility.read().await;
                b.call(Kind::Read, f(Arc::clone(&b.storage))).await
            };
            match answer {
                Ok(v) => return Ok((i, v)),
                Err(CallError::Answer(e)) => return Err(e),
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
        Err(no_backend_left(&match last_fault {
            Some(reason) => format!("{op}: last failure: {reason}"),
            None => format!("{op}: no backend to read from"),
        }))
    }

    /// `info` of one backend, named after the RAID, read-only when the RAID is.
    pub(crate) async fn info(&self) -> StorageResult<StorageInfo> {
        let mut info = self.read("info", |s| async move { s.info().await }).await?;
        let names = self.states().names();
        info.name = format!("RAID of {}", names.join(", "));
        info.read_only = info.read_only
            || self.options.read_only
            || self.states().status() == RaidStatus::Failed;
        Ok(info)
    }
}

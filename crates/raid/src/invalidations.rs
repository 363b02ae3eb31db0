//! Invalidations: the backends' `invalidations()` streams (commits that reached a
//! backend by another path) merged into the RAID's own broadcast. Each tid is
//! announced once, however many backends report it, and the RAID's own commits are
//! never re-announced (their tids are marked when they are assigned). Reports from
//! backends that are not optimal are ignored. Every reported tid also moves the
//! RAID's tid clock, so the next tid the RAID assigns is later than it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use zeoraid_storage::{Invalidation, Tid};

use crate::{lock, Inner};

/// How many recent tids are remembered for de-duplication.
const REMEMBERED_TIDS: usize = 4096;

/// Capacity of the RAID's invalidation broadcast.
const CHANNEL_CAPACITY: usize = 1024;

pub(crate) struct Hub {
    tx: broadcast::Sender<Invalidation>,
    seen: Mutex<BTreeSet<Tid>>,
    /// Whether any backend has an invalidation stream (else the RAID has none).
    has_sources: std::sync::atomic::AtomicBool,
}

impl Hub {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        Hub {
            tx,
            seen: Mutex::new(BTreeSet::new()),
            has_sources: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The merged stream; `None` when no backend reports invalidations (every
    /// commit then goes through the RAID, which its server announces itself).
    pub(crate) fn subscribe(&self) -> Option<broadcast::Receiver<Invalidation>> {
        self.has_sources
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| self.tx.subscribe())
    }

    /// Makes the RAID's stream exist even without backend streams (for events of
    /// the RAID itself, such as a late backend's newer history).
    pub(crate) fn enable(&self) {
        self.has_sources
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Remembers `tid`; false when it was already known.
    fn remember(&self, tid: Tid) -> bool {
        let mut seen = lock(&self.seen);
        if !seen.insert(tid) {
            return false;
        }
        while seen.len() > REMEMBERED_TIDS {
            seen.pop_first();
        }
        true
    }

    /// Marks a tid the RAID assigned itself: never announced from a backend.
    pub(crate) fn mark_own(&self, tid: Tid) {
        self.remember(tid);
    }

    /// Announces `inv` unless its tid was seen before (or is older than everything
    /// remembered, i.e. long past). Returns whether it was announced.
    pub(crate) fn offer(&self, inv: Invalidation) -> bool {
        let too_old = {
            let seen = lock(&self.seen);
            seen.len() >= REMEMBERED_TIDS && seen.first().is_some_and(|&first| inv.tid < first)
        };
        if too_old || !self.remember(inv.tid) {
            return false;
        }
        // No receiver is not an error: nobody listens yet.
        let _ = self.tx.send(inv);
        true
    }
}

/// One forwarding task per backend that has an invalidation stream.
pub(crate) fn spawn_forwarders(inner: &Arc<Inner>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (i, b) in inner.all_backends().iter().enumerate() {
        let Some(rx) = b.storage.invalidations() else {
            continue;
        };
        tasks.push(tokio::spawn(forward(Arc::downgrade(inner), i, rx)));
    }
    inner
        .invalidations
        .has_sources
        .store(!tasks.is_empty(), std::sync::atomic::Ordering::SeqCst);
    tasks
}

/// The forwarding task of backend `i` added later, if it has a stream. (The RAID's
/// own stream exists only if some backend had one at `open`: the ZEO server
/// subscribes once.)
pub(crate) fn spawn_forwarder(inner: &Arc<Inner>, i: usize) -> Option<JoinHandle<()>> {
    let rx = inner.backend(i).storage.invalidations()?;
    Some(tokio::spawn(forward(Arc::downgrade(inner), i, rx)))
}

async fn forward(inner: Weak<Inner>, i: usize, mut rx: broadcast::Receiver<Invalidation>) {
    loop {
        let inv = match rx.recv().await {
            Ok(inv) => inv,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                if let Some(inner) = inner.upgrade() {
                    tracing::warn!(backend = %inner.backend(i).name, missed = n,
                        "invalidations from a backend were lost (lagging)");
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if !inner.is_optimal(i) {
            continue;
        }
        inner.backend(i).note_tid(inv.tid);
        lock(&inner.tids).note_committed(inv.tid);
        inner.invalidations.offer(inv);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use zeoraid_storage::Oid;

    #[test]
    fn each_tid_once_and_own_tids_never() {
        let hub = Hub::new();
        let mut rx = hub.tx.subscribe();
        let inv = |t: u64| Invalidation {
            tid: Tid::from_u64(t),
            oids: vec![Oid::from_u64(1)],
        };
        hub.mark_own(Tid::from_u64(5));
        assert!(!hub.offer(inv(5)));
        assert!(hub.offer(inv(6)));
        assert!(!hub.offer(inv(6)));
        assert_eq!(rx.try_recv().unwrap().tid, Tid::from_u64(6));
        assert!(rx.try_recv().is_err());
    }
}

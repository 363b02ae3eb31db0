//! The state at startup. Every backend is asked for its last transaction
//! concurrently, each within its timeout (a hung backend delays `open` by at most
//! its timeout); those that fail or time out are degraded with the failure as
//! reason and are *unreachable*.
//!
//! With the RAID's record of the backends that held every acknowledged commit when
//! it stopped (`optimal_record.rs`), and one of them reachable: the recorded,
//! reachable backends at the newest tid among them are optimal; every other
//! reachable backend is degraded — `missing transactions` when behind, `not
//! optimal when the RAID stopped` otherwise (its tid may look current and still
//! lack transactions, e.g. Python's FileStorage reports a transaction cut off
//! between vote and finish as its last one). Writes go on at once: the unreachable
//! backends cannot hold anything acknowledged that the optimal ones lack.
//!
//! A backend must hold the transaction it reports as its last (one short
//! iteration): one that does not is degraded (`CUT_OFF`) and counts as empty.
//!
//! Without a record, or with none of its backends reachable, the backends alone
//! decide: those at the newest tid are optimal, those behind are degraded
//! (`missing transactions`), and the unreachable ones are *unverified*: writes wait
//! for them (`unverified.rs`).

use std::sync::Arc;

use futures::future::join_all;
use futures::StreamExt;
use zeoraid_storage::Tid;

use crate::backend::{Backend, CallError, Kind};
use crate::state::BackendState;

/// The reason given to backends that are behind the newest one at startup.
pub const MISSING_TRANSACTIONS: &str = "missing transactions";
/// The reason given to backends at a current-looking tid that the record does not
/// name.
pub const NOT_RECORDED: &str = "not optimal when the RAID stopped";

/// The reason given to a backend whose reported last transaction is not in its
/// history (Python's FileStorage after a crash between vote and finish).
pub const CUT_OFF: &str =
    "reports a last transaction it does not hold (cut off between vote and finish)";

/// Whether backend `b` holds transaction `tid` (one short iteration).
async fn holds(b: &Backend, tid: Tid) -> bool {
    let Ok(mut stream) = b
        .call(Kind::Probe, b.storage.iterator(Some(tid), Some(tid)))
        .await
    else {
        // Unanswered here means unknown, not cut off: the state comes from the
        // last-transaction probe alone.
        return true;
    };
    match tokio::time::timeout(b.timeout, stream.next()).await {
        Ok(Some(Ok(t))) => t.tid == tid,
        Ok(None) => false,
        Ok(Some(Err(_))) | Err(_) => true,
    }
}

/// What startup found.
pub(crate) struct Derived {
    /// The states, in configuration order.
    pub states: Vec<BackendState>,
    /// The newest tid any reachable backend reported (the RAID's tid clock starts
    /// after it).
    pub newest: Tid,
    /// The unreachable backends writes must wait for.
    pub unverified: Vec<usize>,
    /// The recorded backend that settled the states, if the record did.
    pub recorded_holder: Option<String>,
}

/// Derives the states; `recorded` is the record of optimal backends, if any.
pub(crate) async fn derive(backends: &[Arc<Backend>], recorded: Option<&[String]>) -> Derived {
    let calls = backends
        .iter()
        .map(|b| async move { b.call(Kind::Probe, b.storage.last_transaction()).await });
    let mut results = join_all(calls).await;
    // A backend must hold the transaction it reports as its last one.
    let checks = backends.iter().zip(&results).map(|(b, r)| async move {
        match r {
            Ok(tid) if !tid.is_zero() => holds(b, *tid).await,
            _ => true,
        }
    });
    let holding = join_all(checks).await;
    let mut cut_off = vec![None; backends.len()];
    for (i, held) in holding.into_iter().enumerate() {
        if let (false, Ok(tid)) = (held, &results[i]) {
            tracing::warn!(backend = %backends[i].name, tid = ?tid,
                "backend reports a last transaction it does not hold");
            cut_off[i] = Some(*tid);
            results[i] = Ok(Tid::ZERO);
        }
    }
    let tids: Vec<Option<Tid>> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
    // Details show what each backend reports, a cut-off tid included.
    for (i, b) in backends.iter().enumerate() {
        if let Some(tid) = cut_off[i].or(tids[i]) {
            b.note_tid(tid);
        }
    }
    let newest_held = tids.iter().flatten().max().copied().unwrap_or(Tid::ZERO);
    // The clock also starts after a cut-off tid: it was handed out once.
    let newest = cut_off.iter().flatten().fold(newest_held, |a, &b| a.max(b));
    let is_recorded = |i: usize| recorded.is_some_and(|names| names.contains(&backends[i].name));
    let newest_recorded = (0..backends.len())
        .filter(|&i| is_recorded(i))
        .filter_map(|i| tids[i])
        .max();
    let recorded_holder = newest_recorded.and_then(|t| {
        (0..backends.len())
            .find(|&i| is_recorded(i) && tids[i] == Some(t))
            .map(|i| backends[i].name.clone())
    });
    let states = results
        .into_iter()
        .enumerate()
        .map(|(i, result)| match (result, newest_recorded) {
            _ if cut_off[i].is_some() => degraded(CUT_OFF),
            (Ok(tid), Some(holders_tid)) => {
                if tid == holders_tid && is_recorded(i) {
                    BackendState::Optimal
                } else if tid < holders_tid {
                    degraded(MISSING_TRANSACTIONS)
                } else {
                    degraded(NOT_RECORDED)
                }
            }
            (Ok(tid), None) if tid == newest_held => BackendState::Optimal,
            (Ok(_), None) => degraded(MISSING_TRANSACTIONS),
            (Err(CallError::Answer(e)), _) => BackendState::Degraded {
                reason: format!("unreachable at startup: last_transaction failed: {e}"),
            },
            (Err(CallError::Fault(f)), _) => BackendState::Degraded {
                reason: format!("unreachable at startup: {}", f.reason("last_transaction")),
            },
        })
        .collect();
    let unverified = if recorded_holder.is_some() {
        Vec::new()
    } else {
        (0..backends.len()).filter(|&i| tids[i].is_none()).collect()
    };
    Derived {
        states,
        newest,
        unverified,
        recorded_holder,
    }
}

fn degraded(reason: &str) -> BackendState {
    BackendState::Degraded {
        reason: reason.into(),
    }
}

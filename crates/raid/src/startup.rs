//! The state at startup, derived from the backends alone (the RAID keeps no state
//! of its own): every backend is asked for its last transaction concurrently, each
//! within its timeout. Those at the newest tid are optimal; those behind are
//! degraded with reason `missing transactions`; those that fail or time out are
//! degraded with the failure as reason. A hung backend delays `open` by at most its
//! timeout.

use std::sync::Arc;

use futures::future::join_all;
use zeoraid_storage::Tid;

use crate::backend::{Backend, CallError, Kind};
use crate::state::BackendState;

/// The reason given to backends that are behind the newest one at startup.
pub const MISSING_TRANSACTIONS: &str = "missing transactions";

/// The derived states (in configuration order) and the newest tid.
pub(crate) async fn derive_states(backends: &[Arc<Backend>]) -> (Vec<BackendState>, Tid) {
    let calls = backends
        .iter()
        .map(|b| async move { b.call(Kind::Probe, b.storage.last_transaction()).await });
    let results = join_all(calls).await;
    let newest = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .max()
        .copied()
        .unwrap_or(Tid::ZERO);
    let states = results
        .into_iter()
        .zip(backends)
        .map(|(result, b)| match result {
            Ok(tid) => {
                b.note_tid(tid);
                if tid == newest {
                    BackendState::Optimal
                } else {
                    BackendState::Degraded {
                        reason: MISSING_TRANSACTIONS.into(),
                    }
                }
            }
            Err(CallError::Answer(e)) => BackendState::Degraded {
                reason: format!("unreachable at startup: last_transaction failed: {e}"),
            },
            Err(CallError::Fault(f)) => BackendState::Degraded {
                reason: format!("unreachable at startup: {}", f.reason("last_transaction")),
            },
        })
        .collect();
    (states, newest)
}

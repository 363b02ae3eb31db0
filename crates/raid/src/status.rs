//! The management view: a snapshot of every backend (state, reason or progress,
//! last tid, counters) for the admin API and metrics, and `disable`.

use std::time::Duration;

use zeoraid_storage::Tid;

use crate::backend::BackendCounters;
use crate::error::RaidError;
use crate::state::{BackendState, StateTable};
use crate::Inner;

/// One backend as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendDetails {
    pub name: String,
    /// The state, with the degrade reason or the recovery progress.
    pub state: BackendState,
    /// The last tid this backend is known to hold.
    pub last_tid: Tid,
    /// The backend's call timeout.
    pub timeout: Duration,
    pub counters: BackendCounters,
}

impl Inner {
    pub(crate) fn details(&self) -> Vec<BackendDetails> {
        let backends = self.all_backends();
        let states = self.states();
        states
            .present()
            .into_iter()
            .filter_map(|i| {
                let b = backends.get(i)?;
                Some(BackendDetails {
                    name: b.name.clone(),
                    state: states.state(i).clone(),
                    last_tid: b.last_tid(),
                    timeout: b.timeout,
                    counters: b.snapshot(),
                })
            })
            .collect()
    }

    pub(crate) fn backend_index(&self, name: &str) -> Option<usize> {
        self.states().index_of(name)
    }

    pub(crate) fn backend_state(&self, name: &str) -> Option<BackendState> {
        let i = self.backend_index(name)?;
        Some(self.states().state(i).clone())
    }

    /// Degrades `name` ("disabled by operator") once no commit is in progress;
    /// refused for the last optimal backend.
    pub(crate) async fn disable(&self, name: &str) -> Result<(), RaidError> {
        self.take_out(name, |states, i| {
            states.degrade(i, "disabled by operator".into());
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Takes backend `name` out of the commits — `how` degrades or removes it in
    /// the state table — once nothing is committing or finishing; refused for
    /// the last optimal backend. Returns its index.
    pub(crate) async fn take_out(
        &self,
        name: &str,
        how: impl FnOnce(&mut StateTable, usize) -> Result<(), RaidError>,
    ) -> Result<usize, RaidError> {
        let i = self
            .backend_index(name)
            .ok_or_else(|| RaidError::UnknownBackend(name.to_string()))?;
        let _quiet = self.quiesce().await.ok_or(RaidError::Closed)?;
        {
            let mut states = self.states();
            if states.is_optimal(i) && states.optimal().len() == 1 {
                return Err(RaidError::LastOptimal(name.to_string()));
            }
            how(&mut states, i)?;
        }
        self.forget_unverified(i);
        Ok(i)
    }
}

//! Backends joining and leaving a running RAID (the binary's `reload`). A new
//! backend joins degraded (`added by controller`) and takes part in nothing
//! until `recover` rebuilds it; a removed backend is closed and forgotten (its
//! index stays taken, so indices held by commits in flight never change meaning).
//! Both wait for a commit in progress to end (they take the commit lock).

use std::sync::Arc;
use std::time::Duration;

use zeoraid_storage::Storage;

use crate::backend::{Backend, Kind};
use crate::error::RaidError;
use crate::state::BackendState;
use crate::{invalidations, lock, Inner};

/// The reason a backend added while running is degraded with.
pub const ADDED_BY_CONTROLLER: &str = "added by controller";

impl Inner {
    pub(crate) async fn add_backend(
        self: &Arc<Self>,
        name: &str,
        storage: Arc<dyn Storage>,
        timeout: Option<Duration>,
    ) -> Result<(), RaidError> {
        self.check_open().map_err(|_| RaidError::Closed)?;
        let _quiet = self.quiesce().await.ok_or(RaidError::Closed)?;
        if self.backend_index(name).is_some() {
            return Err(RaidError::DuplicateName(name.to_string()));
        }
        let backend = Arc::new(Backend::new(
            name.to_string(),
            storage,
            timeout.unwrap_or(self.options.backend_timeout),
        ));
        if let Ok(tid) = backend
            .call(Kind::Probe, backend.storage.last_transaction())
            .await
        {
            backend.note_tid(tid);
        }
        let i = {
            let mut states = self.states();
            let mut backends = self.backends.load().to_vec();
            backends.push(Arc::clone(&backend));
            self.backends.store(Arc::new(backends));
            states.push(
                name.to_string(),
                BackendState::Degraded {
                    reason: ADDED_BY_CONTROLLER.into(),
                },
            )
        };
        if let Some(task) = invalidations::spawn_forwarder(self, i) {
            lock(&self.tasks).push(task);
        }
        Ok(())
    }

    pub(crate) async fn remove_backend(&self, name: &str) -> Result<(), RaidError> {
        let i = self
            .take_out(name, |states, i| {
                if lock(&self.recovery).is_some() {
                    if matches!(states.state(i), BackendState::Recovering { .. }) {
                        return Err(RaidError::RemoveRefused(
                            name.to_string(),
                            "it is being recovered".into(),
                        ));
                    }
                    if states.is_optimal(i) {
                        return Err(RaidError::RemoveRefused(
                            name.to_string(),
                            "a recovery is running (it may be copying from it)".into(),
                        ));
                    }
                }
                states.remove(i);
                Ok(())
            })
            .await?;
        let b = self.backend(i);
        if let Err(e) = b.call(Kind::Write, b.storage.close()).await {
            tracing::warn!(backend = %b.name, error = ?e, "closing a removed backend failed");
        }
        Ok(())
    }
}

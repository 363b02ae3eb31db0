//! gocept.zeoraid's management methods over the ZEO port (`raid_status`,
//! `raid_details`, `raid_disable`, `raid_recover`, `raid_reload`, and
//! zeoraid's `raid_verify`): the zeo-server's [`ZeoManagement`] hook on top of
//! the same [`Management`] the admin API uses, with gocept.zeoraid's result
//! shapes. Enabled by `management-methods` in `<zeo>` (see
//! docs/configuration.md).

use std::sync::Arc;

use zeoraid_zeo_server::management::{BoxFuture, ManagementResult};
use zeoraid_zeo_server::ZeoManagement;

use super::model::{BackendState, Management};

/// A [`Management`] answering the ZEO port's `raid_*` methods.
pub struct ZeoPortManagement<M>(pub Arc<M>);

/// Python's `repr` of a str, as gocept.zeoraid's `'disabled %r' % name`.
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A backend's state as gocept.zeoraid's `raid_details` words it.
pub fn gocept_detail(state: &BackendState) -> String {
    match state {
        BackendState::Optimal => "optimal".to_owned(),
        BackendState::Degraded { reason } => format!("failed: {reason}"),
        BackendState::Recovering { progress } => format!("recovering: {progress}"),
    }
}

impl<M: Management> ZeoManagement for ZeoPortManagement<M> {
    fn raid_status<'a>(&'a self, storage: &'a str) -> BoxFuture<'a, ManagementResult<String>> {
        Box::pin(async move {
            let snapshot = self.0.snapshot().await;
            snapshot
                .storage(storage)
                .map(|s| s.status.as_str().to_owned())
                .ok_or_else(|| format!("no storage is named {storage:?}"))
        })
    }

    fn raid_details<'a>(
        &'a self,
        storage: &'a str,
    ) -> BoxFuture<'a, ManagementResult<Vec<(String, String)>>> {
        Box::pin(async move {
            let snapshot = self.0.snapshot().await;
            let s = snapshot
                .storage(storage)
                .ok_or_else(|| format!("no storage is named {storage:?}"))?;
            Ok(s.backends
                .iter()
                .map(|b| (b.name.clone(), gocept_detail(&b.state)))
                .collect())
        })
    }

    fn raid_disable<'a>(
        &'a self,
        storage: &'a str,
        backend: &'a str,
    ) -> BoxFuture<'a, ManagementResult<String>> {
        Box::pin(async move {
            self.0
                .disable(storage, backend)
                .await
                .map(|()| format!("disabled {}", py_repr(backend)))
                .map_err(|e| e.to_string())
        })
    }

    fn raid_recover<'a>(
        &'a self,
        storage: &'a str,
        backend: &'a str,
    ) -> BoxFuture<'a, ManagementResult<String>> {
        Box::pin(async move {
            self.0
                .recover(storage, backend)
                .await
                .map(|()| format!("recovering {}", py_repr(backend)))
                .map_err(|e| e.to_string())
        })
    }

    fn raid_reload<'a>(&'a self, _storage: &'a str) -> BoxFuture<'a, ManagementResult<String>> {
        Box::pin(async move { self.0.reload().await.map_err(|e| e.to_string()) })
    }

    fn raid_verify<'a>(&'a self, storage: &'a str) -> BoxFuture<'a, ManagementResult<String>> {
        Box::pin(async move { self.0.verify(storage).await.map_err(|e| e.to_string()) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::admin::model::RecoveryProgress;

    #[test]
    fn repr_like_python() {
        assert_eq!(py_repr("b"), "'b'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'\"b"), "'a\\'\"b'");
        assert_eq!(py_repr("a\\b"), "'a\\\\b'");
    }

    #[test]
    fn details_words() {
        assert_eq!(gocept_detail(&BackendState::Optimal), "optimal");
        assert_eq!(
            gocept_detail(&BackendState::Degraded {
                reason: "disabled by operator".into()
            }),
            "failed: disabled by operator"
        );
        let progress = RecoveryProgress {
            transactions: 1,
            transactions_total: Some(2),
            ..RecoveryProgress::default()
        };
        assert_eq!(
            gocept_detail(&BackendState::Recovering { progress }),
            "recovering: 1 of 2 transactions (50%), 0 bytes"
        );
    }
}

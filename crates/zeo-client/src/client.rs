//! [`ZeoClient`]: the handle the rest of zeoraid holds. It owns the shared state
//! (options, the current connection, callbacks, the commit state) and the
//! supervisor task that keeps a connection up, and exposes the connection state
//! (`is_connected`, a watch channel) that a RAID builds on. The `Storage`
//! implementation lives in [`crate::storage`].

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;
use zeoraid_storage::Tid;
use zeoraid_wire::{Encoding, Value};

use crate::blob_cache::{BlobCache, BlobCachePrune};
use crate::callbacks::Callbacks;
use crate::commit::CommitState;
use crate::error::ClientError;
use crate::object_cache::ObjectCacheStats;
use crate::options::{ServerAddress, ZeoClientOptions};
use crate::rpc::Session;
use crate::supervisor;
use crate::tls::Tls;

/// Where the client's connection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Trying the addresses (first connect, or after a loss).
    Connecting,
    /// Registered with a server.
    Connected {
        address: ServerAddress,
        /// Counts the connections this client made (starting at 1).
        generation: u64,
        encoding: Encoding,
    },
    /// Not connected; the next attempt comes after the backoff delay.
    Disconnected { reason: String },
    /// Closed for good (`close`, or the client was dropped).
    Closed,
}

impl ConnectionState {
    pub fn is_connected(&self) -> bool {
        matches!(self, ConnectionState::Connected { .. })
    }

    fn describe(&self) -> String {
        match self {
            ConnectionState::Connecting => "connecting".into(),
            ConnectionState::Connected { address, .. } => format!("connected to {address}"),
            ConnectionState::Disconnected { reason } => reason.clone(),
            ConnectionState::Closed => "client is closed".into(),
        }
    }
}

/// State shared by the handle, the supervisor and the storage operations.
pub(crate) struct Shared {
    pub(crate) options: ZeoClientOptions,
    pub(crate) tls: Option<Tls>,
    pub(crate) callbacks: Arc<Callbacks>,
    pub(crate) current: RwLock<Option<Arc<Session>>>,
    pub(crate) state_tx: watch::Sender<ConnectionState>,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    pub(crate) generation: AtomicU64,
    pub(crate) commit: CommitState,
    /// Serialises blob downloads into the cache.
    pub(crate) blob_download: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The live session, or why there is none.
    pub(crate) fn session(&self) -> Result<Arc<Session>, ClientError> {
        let current = self
            .current
            .read()
            .map_err(|_| ClientError::NotConnected("poisoned".into()))?
            .clone();
        match current {
            Some(session) => match session.closed_reason() {
                None => Ok(session),
                Some(reason) => Err(ClientError::Disconnected(reason)),
            },
            None => {
                let state = self.state_tx.borrow().clone();
                Err(match state {
                    ConnectionState::Closed => ClientError::Closed,
                    other => ClientError::NotConnected(format!(
                        "{} ({})",
                        self.options
                            .servers
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        other.describe()
                    )),
                })
            }
        }
    }

    pub(crate) fn shut_down(&self) {
        self.shutdown_tx.send_replace(true);
        let session = self.current.write().ok().and_then(|mut c| c.take());
        if let Some(session) = session {
            session.close("client closed");
        }
        self.state_tx.send_replace(ConnectionState::Closed);
    }
}

/// A remote ZEO server as a [`zeoraid_storage::Storage`].
///
/// One connection at a time carries every call (multiplexed); it is reopened in
/// the background when lost. Dropping the client (or `Storage::close`) closes it.
pub struct ZeoClient {
    pub(crate) shared: Arc<Shared>,
}

impl ZeoClient {
    /// Starts the client. With `options.wait` it waits up to `wait_timeout` for the
    /// first connection and fails without one; otherwise it returns at once and
    /// calls fail with `Disconnected` until the connection is up.
    pub async fn connect(options: ZeoClientOptions) -> Result<ZeoClient, ClientError> {
        options.validate()?;
        let tls = options.tls.as_ref().map(Tls::new).transpose()?;
        if let Some(dir) = &options.blob_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| ClientError::Config(format!("blob-dir {}: {e}", dir.display())))?;
        }
        let cache = match (&options.blob_dir, options.shared_blob_dir) {
            (Some(dir), false) => Some(Arc::new(BlobCache::new(
                dir.clone(),
                options.blob_cache_size,
                options.blob_cache_size_check,
                options.blob_cache_grace,
            ))),
            _ => None,
        };
        // As ZEO does at start: a cache left over by an earlier run may be too big.
        if let Some(cache) = &cache {
            cache.prune_in_background();
        }
        let (state_tx, _) = watch::channel(ConnectionState::Connecting);
        let (shutdown_tx, _) = watch::channel(false);
        let wait = options.wait.then_some(options.wait_timeout);
        let object_cache_size = options.cache_size;
        let shared = Arc::new(Shared {
            options,
            tls,
            callbacks: Arc::new(Callbacks::new(cache, object_cache_size)),
            current: RwLock::new(None),
            state_tx,
            shutdown_tx,
            generation: AtomicU64::new(0),
            commit: CommitState::default(),
            blob_download: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(supervisor::run(shared.clone()));
        let client = ZeoClient { shared };
        if let Some(limit) = wait {
            if let Err(e) = client.wait_connected(limit).await {
                client.shared.shut_down();
                return Err(e);
            }
        }
        Ok(client)
    }

    pub fn options(&self) -> &ZeoClientOptions {
        &self.shared.options
    }

    /// Whether a registered connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.shared.session().is_ok()
    }

    pub fn connection_state(&self) -> ConnectionState {
        self.shared.state_tx.borrow().clone()
    }

    /// A receiver that sees every change of the connection state.
    pub fn watch_connection(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state_tx.subscribe()
    }

    /// Waits until connected, at most `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> Result<(), ClientError> {
        let mut rx = self.shared.state_tx.subscribe();
        let waited = tokio::time::timeout(limit, async {
            loop {
                let state = rx.borrow_and_update().clone();
                match state {
                    ConnectionState::Connected { .. } if self.is_connected() => return Ok(()),
                    ConnectionState::Closed => return Err(ClientError::Closed),
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    return Err(ClientError::Closed);
                }
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => Err(ClientError::NotConnected(format!(
                "no connection within {limit:?} ({})",
                self.connection_state().describe()
            ))),
        }
    }

    /// The storage facts last heard from the server (`get_info` at connect, then
    /// `info` callbacks), as `(key, value)` pairs.
    pub fn server_info(&self) -> Vec<(String, Value)> {
        self.shared
            .callbacks
            .info
            .lock()
            .map(|info| {
                info.iter()
                    .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The newest tid this client has seen (register, invalidations, commits).
    pub fn last_seen_tid(&self) -> Tid {
        self.shared.callbacks.last_tid()
    }

    /// The encoding of the current connection.
    pub fn encoding(&self) -> Option<Encoding> {
        self.shared.session().ok().map(|s| s.encoding)
    }

    /// `ping()`: a round trip.
    pub async fn ping(&self) -> Result<(), ClientError> {
        let session = self.shared.session()?;
        session
            .call("ping", Value::Tuple(vec![]), self.shared.options.timeout)
            .await
            .map(|_| ())
    }

    /// Any other synchronous call `name(*args)` on the current connection
    /// (e.g. zeoraid's management methods `raid_status`…), waiting up to `limit`
    /// for the reply. An error reply is `ClientError::Remote`.
    pub async fn call_method(
        &self,
        name: &'static str,
        args: Vec<Value>,
        limit: Duration,
    ) -> Result<Value, ClientError> {
        let session = self.shared.session()?;
        session.call(name, Value::Tuple(args), limit).await
    }

    /// Drops the current connection (pending calls fail with `Disconnected`); the
    /// supervisor reconnects after the backoff delay.
    pub fn disconnect(&self, reason: &str) {
        if let Ok(session) = self.shared.session() {
            info!(server = %session.address, "disconnecting: {reason}");
            session.close(reason.to_owned());
        }
    }

    /// Runs a blob cache pruning pass now (it otherwise runs in the background
    /// after `blob-cache-size-check` percent of the size was downloaded) and says
    /// what it did. Nothing to do without a (non-shared) blob cache or a size.
    pub async fn prune_blob_cache(&self) -> Result<BlobCachePrune, ClientError> {
        match &self.shared.callbacks.blob_cache {
            Some(cache) => cache
                .prune_now()
                .await
                .map_err(|e| ClientError::Io(format!("pruning the blob cache: {e}"))),
            None => Ok(BlobCachePrune::default()),
        }
    }

    /// The object cache's hit and miss counters and its size (`cache-size`).
    pub fn cache_stats(&self) -> ObjectCacheStats {
        self.shared.callbacks.object_cache.stats()
    }

    /// Closes the connection for good.
    pub fn shutdown(&self) {
        self.shared.shut_down();
    }
}

impl Drop for ZeoClient {
    fn drop(&mut self) {
        self.shared.shut_down();
    }
}

impl std::fmt::Debug for ZeoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeoClient")
            .field("servers", &self.shared.options.servers)
            .field("storage", &self.shared.options.storage)
            .field("state", &self.connection_state())
            .finish()
    }
}

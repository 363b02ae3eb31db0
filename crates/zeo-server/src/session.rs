//! The per-connection state — what ZEO calls a `ZEOStorage`: the registered
//! storage, the read-only flag, the transaction being built (its metadata and the
//! ordered log of operations, blob temp files), a vote waiting for the commit lock,
//! the open iterators and the blob upload in progress — and the loop that reads
//! the client's messages and answers them in order, except `loadBefore` calls,
//! which overlap each other (their replies carry their msgids).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::AsyncRead;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};
use zeoraid_storage::{
    DataRecord, Oid, Tid, TransactionMeta, TransactionRecord, TransactionStream, TxnId,
};
use zeoraid_wire::Value;

use crate::codec::{self, Incoming};
use crate::commands::loads::{start_detached_load, start_load, DetachedLoad};
use crate::connection::{ConnHandle, FrameReader, ReadError};
use crate::error::CloseReason;
use crate::server::{ServedStorage, ServerShared};
use crate::shutdown::Shutdown;

/// One buffered operation, in the order the client sent it.
#[derive(Debug, Clone)]
pub(crate) enum LoggedOp {
    Store {
        oid: Oid,
        serial: Tid,
        data: bytes::Bytes,
    },
    StoreBlob {
        oid: Oid,
        serial: Tid,
        data: bytes::Bytes,
        blob: PathBuf,
    },
    Restore {
        oid: Oid,
        data: Option<bytes::Bytes>,
        prev_txn: Option<Tid>,
    },
    CheckCurrentSerial {
        oid: Oid,
        serial: Tid,
    },
    Delete {
        oid: Oid,
        serial: Tid,
    },
    Undo {
        undo_id: bytes::Bytes,
    },
}

/// The ZEO-level transaction between `tpc_begin` and `tpc_finish`/`tpc_abort`.
#[derive(Debug)]
pub(crate) struct ZeoTxn {
    /// The client's transaction id (`id(txn)` in Python), compared as a value.
    pub client_id: Value,
    pub meta: TransactionMeta,
    pub tid: Option<Tid>,
    pub status: u8,
    pub log: Vec<LoggedOp>,
    /// Uploaded blob files to delete when the transaction ends.
    pub blob_files: Vec<PathBuf>,
    /// Set once the vote succeeded: the storage transaction holding the lock.
    pub voted: Option<TxnId>,
    /// Oids to invalidate at finish (stored and undone).
    pub invalidated: Vec<Oid>,
    /// Votes of this transaction that answered conflicts so far.
    pub conflict_rounds: u32,
    /// A store ZEO would buffer but its storage would refuse at vote (data
    /// that is not bytes): the vote answers this error.
    pub store_error: Option<crate::error::ZeoError>,
}

/// A vote waiting for the commit lock.
pub(crate) struct PendingVote {
    pub msgid: Value,
    pub oneway: bool,
    pub grant: oneshot::Receiver<()>,
}

pub(crate) enum IterState {
    Txns(TransactionStream),
    Records(std::vec::IntoIter<DataRecord>),
}

/// `loadBefore` calls of one connection being answered at the same time at most;
/// past that the connection reads no further request until one completes.
const MAX_LOADS_IN_FLIGHT: usize = 64;

/// What a handler produced for a call.
pub(crate) enum Outcome {
    Reply(Value),
    Error(crate::error::ZeoError),
    /// The reply comes later (a vote waiting for the lock, a pack).
    Delayed,
    /// The handler sent the reply itself (to order it against other output).
    Replied,
}

impl From<Result<Value, crate::error::ZeoError>> for Outcome {
    fn from(r: Result<Value, crate::error::ZeoError>) -> Self {
        match r {
            Ok(v) => Outcome::Reply(v),
            Err(e) => Outcome::Error(e),
        }
    }
}

pub(crate) struct Session {
    pub server: Arc<ServerShared>,
    pub conn: Arc<ConnHandle>,
    pub served: Option<Arc<ServedStorage>>,
    pub read_only: bool,
    pub txn: Option<ZeoTxn>,
    pub pending_vote: Option<PendingVote>,
    pub iterators: HashMap<i64, IterState>,
    pub txn_iterators_last: HashMap<i64, TransactionRecord>,
    pub next_iterator_id: i64,
    /// The blob upload in progress (`storeBlobStart` … `storeBlobEnd`).
    pub blob_upload: Option<(PathBuf, tokio::fs::File)>,
}

impl Session {
    pub fn new(server: Arc<ServerShared>, conn: Arc<ConnHandle>) -> Self {
        let read_only = server.options.read_only;
        Session {
            server,
            conn,
            served: None,
            read_only,
            txn: None,
            pending_vote: None,
            iterators: HashMap::new(),
            txn_iterators_last: HashMap::new(),
            next_iterator_id: 0,
            blob_upload: None,
        }
    }

    pub fn label(&self) -> String {
        self.conn.label()
    }

    /// Serve the connection until it ends; returns why.
    pub async fn run<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        shutdown: &mut Shutdown,
    ) -> CloseReason {
        let mut close = self.conn.close_signal();
        // Loads answered apart from the in-order handling (see `dispatch`).
        let mut loads: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
        loop {
            if shutdown.is_shutdown() && !self.in_commit() {
                return CloseReason::Shutdown;
            }
            // Backpressure: no new request is read while our output is piling up
            // (a vote granted the lock runs regardless).
            let conn = self.conn.clone();
            tokio::select! {
                biased;
                _ = close.changed() => {
                    let reason = close.borrow().clone();
                    return reason.unwrap_or(CloseReason::Server("closed".into()));
                }
                _ = shutdown.recv(), if !shutdown.is_shutdown() => {
                    continue;
                }
                Some(()) = loads.next(), if !loads.is_empty() => {}
                granted = wait_grant(&mut self.pending_vote), if self.pending_vote.is_some() => {
                    if let Some(pending) = self.pending_vote.take() {
                        if granted {
                            drain(&mut loads).await;
                            self.finish_delayed_vote(pending).await;
                        } else {
                            debug!(conn = %self.label(), "lost the lock queue entry");
                        }
                    }
                }
                frame = async { conn.wait_room().await; reader.read_frame().await },
                    if loads.len() < MAX_LOADS_IN_FLIGHT => {
                    let mut frame = frame;
                    loop {
                        let payload = match frame {
                            Ok(Some(payload)) => payload,
                            Ok(None) => return CloseReason::Eof,
                            Err(e) => return self.read_failed(e),
                        };
                        if let Err(reason) = self.handle_frame(payload, &mut loads).await {
                            return reason;
                        }
                        // The other frames that came with the same socket read are
                        // handled here rather than one select round each (pipelined
                        // loads arrive several per read); the conditions are the
                        // select's, checked without waiting. A vote waiting for the
                        // lock goes back to the select, whose bias serves its grant
                        // before the next frame, as before.
                        if loads.len() >= MAX_LOADS_IN_FLIGHT
                            || !self.conn.has_room()
                            || self.conn.is_closing()
                            || shutdown.is_shutdown()
                            || self.pending_vote.is_some()
                        {
                            break;
                        }
                        frame = match reader.buffered_frame() {
                            Ok(None) => break,
                            other => other,
                        };
                    }
                }
            }
        }
    }

    /// Why the connection ends after a failed read.
    fn read_failed(&self, e: ReadError) -> CloseReason {
        match e {
            ReadError::Frame(e) => {
                warn!(conn = %self.label(), "bad frame: {e}; closing the connection");
                CloseReason::Protocol(e.to_string())
            }
            e @ ReadError::Stalled(_) => {
                warn!(conn = %self.label(), "{e}; closing the connection");
                CloseReason::Protocol(e.to_string())
            }
            e => CloseReason::Io(e.to_string()),
        }
    }

    /// Decode one frame and dispatch it. A registered pickle connection's
    /// `loadBefore` in the exact form ZEO clients write is recognised from its
    /// bytes ([`codec::parse_load_before_call`]) and answered without building
    /// a message value; it is the same call `dispatch` would detach.
    async fn handle_frame(
        &mut self,
        payload: bytes::Bytes,
        loads: &mut FuturesUnordered<BoxFuture<'static, ()>>,
    ) -> Result<(), CloseReason> {
        let encoding = self.conn.encoding();
        if let (Some(served), codec::Encoding::Pickle) = (&self.served, encoding) {
            if let Some(call) = codec::parse_load_before_call(&payload) {
                let (oid, before) = (Oid(call.oid), Tid(call.before));
                if let DetachedLoad::Pending(load) =
                    start_load(served, &self.conn, call.msgid, oid, before)
                {
                    loads.push(load);
                }
                return Ok(());
            }
        }
        let message = match codec::decode_message(&payload, encoding) {
            Ok(m) => m,
            Err(e) => {
                warn!(conn = %self.label(), "Can't deserialize message ({e}); closing the connection");
                return Err(CloseReason::Protocol(e.to_string()));
            }
        };
        self.dispatch(message, loads).await
    }

    /// A registered connection's `loadBefore` is answered on its own (inline, or
    /// as a future in `loads`); every other message first waits for the loads in
    /// flight, then is handled in order. So a load overlaps only other loads: a
    /// commit step never waits for a visibility read guard held by a load future
    /// that nobody polls, and its effects are ordered after the earlier loads as
    /// in ZEO.
    async fn dispatch(
        &mut self,
        message: Incoming,
        loads: &mut FuturesUnordered<BoxFuture<'static, ()>>,
    ) -> Result<(), CloseReason> {
        let message = match &self.served {
            Some(served) => match start_detached_load(served, &self.conn, message) {
                DetachedLoad::Answered => return Ok(()),
                DetachedLoad::Pending(load) => {
                    loads.push(load);
                    return Ok(());
                }
                DetachedLoad::InOrder(message) => message,
            },
            None => message,
        };
        if !message.is_heartbeat() {
            drain(loads).await;
        }
        self.handle(message).await
    }

    /// Whether a transaction is between a successful vote and finish/abort (a
    /// graceful shutdown lets it complete).
    pub fn in_commit(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| t.voted.is_some())
    }

    /// Dispatch one message.
    async fn handle(&mut self, msg: Incoming) -> Result<(), CloseReason> {
        if msg.is_heartbeat() {
            return Ok(());
        }
        let allowed = if self.served.is_none() {
            msg.name == "register"
        } else {
            crate::commands::REGISTERED_METHODS.contains(&msg.name.as_str())
                || (self.server.options.management.is_some()
                    && crate::management::MANAGEMENT_METHODS.contains(&msg.name.as_str()))
        };
        if !allowed {
            warn!(conn = %self.label(), "Invalid method, {:?}; closing the connection", msg.name);
            return Err(CloseReason::Protocol(format!(
                "invalid method {:?}",
                msg.name
            )));
        }
        let guard = match (&self.served, crate::commands::needs_read_guard(&msg.name)) {
            (Some(served), true) => Some(served.visibility.clone().read_owned().await),
            _ => None,
        };
        let started = std::time::Instant::now();
        let outcome =
            crate::commands::call(self, &msg.msgid, msg.oneway, &msg.name, msg.args).await;
        let elapsed = started.elapsed();
        if elapsed > std::time::Duration::from_secs(5) {
            warn!(conn = %self.label(), "slow {} took {:.1}s", msg.name, elapsed.as_secs_f64());
        }
        let result = match outcome {
            Outcome::Reply(value) => {
                if !msg.oneway {
                    self.conn.send_reply(&msg.msgid, value);
                }
                Ok(())
            }
            Outcome::Error(err) => {
                if msg.oneway {
                    warn!(conn = %self.label(), "async {:?} raised {}{}; closing the connection",
                        msg.name, err.class_name, crate::commands::short_payload(&err));
                    Err(CloseReason::Protocol(format!("async {} failed", msg.name)))
                } else {
                    if !err.is_quiet() {
                        info!(conn = %self.label(), "{:?} raised {}{}", msg.name, err.class_name,
                            crate::commands::short_payload(&err));
                    }
                    self.conn.send_error(&msg.msgid, &err);
                    Ok(())
                }
            }
            Outcome::Delayed | Outcome::Replied => Ok(()),
        };
        drop(guard);
        result
    }

    /// The storage this session registered for (every method but `register` has one).
    pub fn served(&self) -> Result<Arc<ServedStorage>, crate::error::ZeoError> {
        self.served
            .clone()
            .ok_or_else(|| crate::error::ZeoError::value_error("not registered"))
    }

    /// Abort what is in flight and unregister: the connection is gone.
    pub async fn cleanup(&mut self) {
        if let Some(served) = self.served.clone() {
            if let Some(pending) = self.pending_vote.take() {
                drop(pending);
                served.lock.release(self.conn.id);
            }
            if let Some(txn) = &self.txn {
                let state = if txn.voted.is_some() {
                    "locked"
                } else {
                    "unlocked"
                };
                info!(conn = %self.label(), "disconnected during {state} transaction");
                if let Some(id) = txn.voted {
                    if let Err(e) = served.storage.abort(id).await {
                        warn!(conn = %self.label(), "abort after disconnect failed: {e}");
                    }
                }
                served.stat(|s| s.aborts += 1);
                self.clear_transaction().await;
            }
            served.unregister(self.conn.id);
        }
        self.discard_blob_upload().await;
        self.iterators.clear();
        self.txn_iterators_last.clear();
    }

    /// End the ZEO transaction: release the commit lock (or our place in its
    /// queue), forget the log, delete uploaded blob files.
    pub async fn clear_transaction(&mut self) {
        if let Some(served) = &self.served {
            served.lock.release(self.conn.id);
            if self.txn.is_some() {
                served.stat(|s| s.active_txns -= 1);
            }
        }
        if let Some(pending) = self.pending_vote.take() {
            // A vote still waiting for the lock when its transaction ends gets an
            // answer rather than hanging.
            if !pending.oneway {
                self.conn.send_error(
                    &pending.msgid,
                    &crate::error::ZeoError::storage_transaction_msg(
                        "transaction ended while waiting for the commit lock",
                    ),
                );
            }
        }
        if let Some(txn) = self.txn.take() {
            for path in txn.blob_files {
                if let Err(e) = tokio::fs::remove_file(&path).await {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        debug!("cannot remove blob temp file {}: {e}", path.display());
                    }
                }
            }
        }
    }

    pub async fn discard_blob_upload(&mut self) {
        if let Some((path, file)) = self.blob_upload.take() {
            drop(file);
            let _ = tokio::fs::remove_file(&path).await;
        }
    }

    pub fn next_iterator_id(&mut self) -> i64 {
        let id = self.next_iterator_id;
        self.next_iterator_id += 1;
        id
    }
}

/// Complete every load in flight.
async fn drain(loads: &mut FuturesUnordered<BoxFuture<'static, ()>>) {
    while loads.next().await.is_some() {}
}

async fn wait_grant(pending: &mut Option<PendingVote>) -> bool {
    match pending {
        Some(p) => (&mut p.grant).await.is_ok(),
        None => std::future::pending().await,
    }
}

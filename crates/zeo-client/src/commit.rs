//! Two-phase commit over the wire. `vote(txn)` pipelines one-way `tpc_begin` and
//! one message per operation (`storea`, `restorea`,
//! `checkCurrentSerialInTransaction`, `deleteObject`, `undoa`, blob messages) and
//! then makes ONE `vote` round trip; `finish` is `tpc_finish`, `abort` `tpc_abort`.
//! The messages are encoded into one buffer and written together with the `vote`
//! call (a small transaction is one write, which the server reads at once).
//!
//! A ZEO connection carries one transaction at a time (a second `tpc_begin` would
//! make the server drop the connection), so a local commit lock is held from the
//! start of `vote` until `finish`/`abort` (or a failed vote's remote abort) — a
//! second vote waits, as the `Storage` contract says.
//!
//! Vote outcomes: a reply list of oids → `Voted{undone}`; a list with conflict
//! dicts `{'oid','serials','data'}` (client-conflict-resolution servers) →
//! `Conflicts` and the server-side transaction is aborted; an error reply → the
//! mapped `StorageError`, also after a `tpc_abort`.
//!
//! The oids a voted transaction changes (stores, restores, deletes, blob stores
//! and what the vote reply says undo touched) travel with its `tpc_finish` call:
//! the reader invalidates them in the object cache when it reads the reply — the
//! server sends us no invalidation for our own commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedMutexGuard;
use tracing::{debug, warn};
use zeoraid_storage::{
    Conflict, Finished, Oid, Operation, StorageError, StorageResult, Tid, Transaction, TxnId,
    VoteOutcome,
};
use zeoraid_wire::Value;

use crate::blobs;
use crate::callbacks::Callbacks;
use crate::client::Shared;
use crate::convert::{self, bytes_of, items, oid_of, protocol, tid_of};
use crate::error::{storage_error, ClientError};
use crate::rpc::{CacheEffect, Session};

/// A voted transaction waiting for `finish` or `abort`.
struct Voted {
    id: TxnId,
    /// The explicit tid it was voted with, if any.
    tid: Option<Tid>,
    /// The oids it changes, to invalidate in the object cache when it commits.
    changed: Vec<Oid>,
    session: Arc<Session>,
    _lock: OwnedMutexGuard<()>,
}

/// The local commit lock and the voted transaction, if any.
#[derive(Default)]
pub(crate) struct CommitState {
    lock: Arc<tokio::sync::Mutex<()>>,
    voted: Mutex<Option<Voted>>,
}

impl CommitState {
    fn take_voted(&self, id: TxnId) -> Option<Voted> {
        let mut voted = self.voted.lock().ok()?;
        if voted.as_ref().is_some_and(|v| v.id == id) {
            voted.take()
        } else {
            None
        }
    }
}

/// The transaction id sent on the wire (ZEO uses Python's `id(txn)`: any int).
fn wire_id(id: TxnId) -> Value {
    Value::from(id.0)
}

fn tid_or_none(tid: Option<Tid>) -> Value {
    tid.map(|t| Value::from(t.0)).unwrap_or(Value::None)
}

fn args(items: Vec<Value>) -> Value {
    Value::Tuple(items)
}

/// The serial a blob restore is stored against: the object's current tid (ZEO has
/// no `restoreBlob`, so a restore with a blob is sent as `storea` + blob).
async fn current_serial(session: &Session, oid: Oid, limit: Duration) -> Result<Tid, ClientError> {
    let reply = session
        .call(
            "loadBefore",
            args(vec![Value::from(oid.0), Value::from(Tid::MAX.0)]),
            limit,
        )
        .await;
    match reply {
        Ok(v) => Ok(convert::loaded_record(&v)?
            .map(|r| r.start)
            .unwrap_or(Tid::ZERO)),
        Err(ClientError::Remote(zeoraid_wire::ErrorPayload::PosKey(_))) => Ok(Tid::ZERO),
        Err(e) => Err(e),
    }
}

async fn send_blob_store(
    shared: &Shared,
    session: &Session,
    (oid, serial, data): (Oid, Tid, &Bytes),
    blob: &std::path::Path,
    id: &Value,
    limit: Duration,
) -> Result<(), ClientError> {
    let store_args = || {
        vec![
            Value::from(oid.0),
            Value::from(serial.0),
            Value::Bytes(data.clone()),
        ]
    };
    let mut storea = store_args();
    storea.push(id.clone());
    session.send_oneway("storea", args(storea), limit).await?;
    match (&shared.options.blob_dir, shared.options.shared_blob_dir) {
        (Some(dir), true) => {
            let name = blobs::stage_shared(dir, oid, blob).await?;
            let mut a = store_args();
            a.push(Value::Str(name));
            a.push(id.clone());
            session.send_oneway("storeBlobShared", args(a), limit).await
        }
        _ => {
            let mut a = store_args();
            a.push(id.clone());
            blobs::send_blob(session, blob, args(a), limit).await
        }
    }
}

/// Above this many buffered bytes, `send_ops` hands the batch to the writer and
/// starts a new one, so a big transaction streams instead of piling up.
const BATCH_FLUSH_BYTES: usize = 1 << 20;

/// Encodes `tpc_begin` and one message per operation into `batch` (flushed to the
/// writer when it grows large, and before blob messages, which stream from their
/// files). What is left in `batch` goes out with the `vote` call, in one write.
async fn send_ops(
    shared: &Shared,
    session: &Session,
    txn: &Transaction,
    prepared: &PreparedRestores,
    batch: &mut BytesMut,
    limit: Duration,
) -> Result<(), ClientError> {
    let id = wire_id(txn.id);
    let ext = convert::extension_to_wire(&txn.meta.extension)?;
    session.push_oneway(
        batch,
        "tpc_begin",
        args(vec![
            id.clone(),
            Value::Bytes(txn.meta.user.clone()),
            Value::Bytes(txn.meta.description.clone()),
            ext,
            tid_or_none(txn.tid),
            Value::Str(char::from(txn.status).to_string()),
        ]),
    )?;
    for op in &txn.ops {
        if batch.len() >= BATCH_FLUSH_BYTES {
            session.send_batch(batch, limit).await?;
        }
        match op {
            Operation::Store { oid, serial, data } => session.push_oneway(
                batch,
                "storea",
                args(vec![
                    Value::from(oid.0),
                    Value::from(serial.0),
                    Value::Bytes(data.clone()),
                    id.clone(),
                ]),
            )?,
            Operation::StoreBlob {
                oid,
                serial,
                data,
                blob,
            } => {
                session.send_batch(batch, limit).await?;
                send_blob_store(shared, session, (*oid, *serial, data), blob, &id, limit).await?
            }
            Operation::Restore {
                oid,
                data: Some(data),
                blob: Some(blob),
                ..
            } => {
                session.send_batch(batch, limit).await?;
                let serial = prepared.serials.get(oid).copied().unwrap_or(Tid::ZERO);
                send_blob_store(shared, session, (*oid, serial, data), blob, &id, limit).await?
            }
            Operation::Restore {
                oid,
                data,
                prev_txn,
                blob,
            } => {
                if blob.is_some() {
                    warn!(%oid, "restore of a back-pointer with a blob: the blob is not sent (ZEO has no restoreBlob)");
                }
                let data = match (data, prev_txn) {
                    (None, Some(prev)) => prepared.data.get(&(*oid, *prev)).cloned().flatten(),
                    (data, _) => data.clone(),
                };
                session.push_oneway(
                    batch,
                    "restorea",
                    args(vec![
                        Value::from(oid.0),
                        Value::from(txn.tid.unwrap_or(Tid::ZERO).0),
                        data.map(Value::Bytes).unwrap_or(Value::None),
                        tid_or_none(*prev_txn),
                        id.clone(),
                    ]),
                )?
            }
            Operation::CheckCurrentSerial { oid, serial } => session.push_oneway(
                batch,
                "checkCurrentSerialInTransaction",
                args(vec![Value::from(oid.0), Value::from(serial.0), id.clone()]),
            )?,
            Operation::Delete { oid, serial } => session.push_oneway(
                batch,
                "deleteObject",
                args(vec![Value::from(oid.0), Value::from(serial.0), id.clone()]),
            )?,
            Operation::Undo { undo_id } => session.push_oneway(
                batch,
                "undoa",
                args(vec![Value::Bytes(undo_id.clone()), id.clone()]),
            )?,
        }
    }
    Ok(())
}

/// Interprets the vote reply.
fn vote_outcome(reply: &Value) -> Result<VoteOutcome, ClientError> {
    if reply.is_none() {
        return Ok(VoteOutcome::Voted { undone: vec![] });
    }
    let mut undone: Vec<Oid> = Vec::new();
    let mut conflicts = Vec::new();
    for item in items(reply, "vote")? {
        if item.as_dict().is_some() {
            let field = |k: &str| {
                item.get(k)
                    .ok_or_else(|| protocol(format!("vote conflict without {k:?}")))
            };
            let serials = items(field("serials")?, "vote conflict serials")?;
            let [committed, read] = serials else {
                return Err(protocol("vote conflict serials: expected 2 tids"));
            };
            conflicts.push(Conflict {
                oid: oid_of(field("oid")?, "vote conflict oid")?,
                committed: tid_of(committed, "vote conflict serial")?,
                read: tid_of(read, "vote conflict serial")?,
                data: bytes_of(field("data")?, "vote conflict data")?,
            });
        } else {
            let oid = oid_of(item, "vote reply")?;
            if !undone.contains(&oid) {
                undone.push(oid);
            }
        }
    }
    Ok(if conflicts.is_empty() {
        VoteOutcome::Voted { undone }
    } else {
        VoteOutcome::Conflicts(conflicts)
    })
}

/// Aborts the server-side transaction in the background, keeping the commit lock
/// until the server has answered (or the call failed), so that the next
/// transaction's `tpc_begin` cannot overtake it.
fn abort_in_background(
    session: Arc<Session>,
    id: TxnId,
    lock: OwnedMutexGuard<()>,
    limit: Duration,
) {
    if session.is_closed() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // Only while the runtime itself goes away, which closes the connection:
        // the server aborts the transaction of a connection that went away.
        return;
    };
    runtime.spawn(async move {
        let _lock = lock;
        if let Err(e) = session
            .call("tpc_abort", args(vec![wire_id(id)]), limit)
            .await
        {
            debug!("tpc_abort after a failed vote: {e}");
        }
    });
}

/// The server-side transaction of a vote under way. Unless the vote ends in
/// `Voted` ([`VoteUnderWay::voted`]), it is aborted on the server: after an
/// error or conflicts, and also when the caller drops the vote midway (a RAID's
/// own timeout). Otherwise the server would keep it, voted and holding its
/// commit lock against every other client, until this connection closes.
struct VoteUnderWay {
    /// `None` once voted.
    held: Option<(Arc<Session>, OwnedMutexGuard<()>)>,
    id: TxnId,
    limit: Duration,
}

impl VoteUnderWay {
    /// The connection and commit lock, kept for `finish`/`abort`.
    fn voted(mut self) -> Option<(Arc<Session>, OwnedMutexGuard<()>)> {
        self.held.take()
    }
}

impl Drop for VoteUnderWay {
    fn drop(&mut self) {
        if let Some((session, lock)) = self.held.take() {
            abort_in_background(session, self.id, lock, self.limit);
        }
    }
}

/// What restores need looked up before anything is sent.
#[derive(Default)]
struct PreparedRestores {
    /// Blob restores are sent as `storea` against the object's current serial.
    serials: HashMap<Oid, Tid>,
    /// Back-pointer restores without data: FileStorage's `restore` needs the data
    /// to find the record `prev_txn` points to, so it is loaded first.
    data: HashMap<(Oid, Tid), Option<Bytes>>,
}

/// Looks up what the restores of `txn` need, and gives a transaction with
/// restores an explicit tid if it has none: `restorea` carries the record's tid
/// (FileStorage writes it into the data record), which must be the transaction's.
async fn prepare_restores(
    session: &Session,
    txn: &mut Transaction,
    limit: Duration,
) -> StorageResult<PreparedRestores> {
    let mut prepared = PreparedRestores::default();
    let mut needs_tid = false;
    for op in &txn.ops {
        match op {
            Operation::Restore {
                oid,
                data: Some(_),
                blob: Some(_),
                ..
            } => {
                let serial = current_serial(session, *oid, limit)
                    .await
                    .map_err(|e| storage_error(e, Some(*oid)))?;
                prepared.serials.insert(*oid, serial);
            }
            Operation::Restore {
                oid,
                data: None,
                prev_txn: Some(prev),
                ..
            } => {
                needs_tid = true;
                let reply = session
                    .call(
                        "loadSerial",
                        args(vec![Value::from(oid.0), Value::from(prev.0)]),
                        limit,
                    )
                    .await;
                let data = match reply {
                    Ok(v) => Some(bytes_of(&v, "loadSerial")?),
                    Err(ClientError::Remote(_)) => None,
                    Err(e) => return Err(storage_error(e, Some(*oid))),
                };
                prepared.data.insert((*oid, *prev), data);
            }
            Operation::Restore { .. } => needs_tid = true,
            _ => {}
        }
    }
    if needs_tid && txn.tid.is_none() {
        let last = session.call("lastTransaction", args(vec![]), limit).await?;
        txn.tid = Some(Tid::now_later_than(tid_of(&last, "lastTransaction")?));
    }
    Ok(prepared)
}

pub(crate) async fn vote(shared: &Shared, txn: Transaction) -> StorageResult<VoteOutcome> {
    if shared.options.read_only {
        return Err(StorageError::ReadOnly);
    }
    let limit = shared.options.timeout;
    let lock = shared.commit.lock.clone().lock_owned().await;
    let session = shared.session()?;
    if let Some(tid) = txn.tid {
        // FileStorage would accept an explicit tid that is not later than its last
        // transaction (and corrupt its history), so refuse it here. The last tid
        // known locally (register, invalidations, our commits, lastTransaction)
        // saves a round trip.
        let last = shared.callbacks.last_tid();
        if tid <= last {
            return Err(StorageError::Transaction(format!(
                "explicit tid {tid:?} is not later than the last transaction {last:?}"
            )));
        }
    }
    let mut txn = txn;
    let prepared = prepare_restores(&session, &mut txn, limit).await?;
    let under_way = VoteUnderWay {
        held: Some((Arc::clone(&session), lock)),
        id: txn.id,
        limit,
    };
    let mut batch = BytesMut::new();
    let sent = send_ops(shared, &session, &txn, &prepared, &mut batch, limit).await;
    let reply = match sent {
        Ok(()) => {
            session
                .call_after(batch, "vote", args(vec![wire_id(txn.id)]), limit)
                .await
        }
        Err(e) => Err(e),
    };
    // Conflicts and errors drop `under_way`, which aborts: the server keeps its
    // transaction after returning conflicts, and may after an error.
    match reply.and_then(|r| vote_outcome(&r)) {
        Ok(VoteOutcome::Voted { undone }) => {
            let changed = changed_oids(&txn, &undone);
            let kept = || StorageError::Transaction("the voted transaction was not kept".into());
            // A poisoned lock: `under_way`, still holding, aborts.
            let Ok(mut voted) = shared.commit.voted.lock() else {
                return Err(kept());
            };
            let Some((session, lock)) = under_way.voted() else {
                return Err(kept());
            };
            *voted = Some(Voted {
                id: txn.id,
                tid: txn.tid,
                changed,
                session,
                _lock: lock,
            });
            Ok(VoteOutcome::Voted { undone })
        }
        Ok(conflicts @ VoteOutcome::Conflicts(_)) => Ok(conflicts),
        Err(e) => Err(vote_error(e, &txn)),
    }
}

/// Every oid `txn` changes once committed: the oids of its stores, restores,
/// deletes and blob stores, and those its undos touched (`undone`, from the vote
/// reply). Serial checks change nothing.
fn changed_oids(txn: &Transaction, undone: &[Oid]) -> Vec<Oid> {
    let mut oids: Vec<Oid> = txn
        .ops
        .iter()
        .filter_map(|op| match op {
            Operation::Store { oid, .. }
            | Operation::StoreBlob { oid, .. }
            | Operation::Restore { oid, .. }
            | Operation::Delete { oid, .. } => Some(*oid),
            Operation::CheckCurrentSerial { .. } | Operation::Undo { .. } => None,
        })
        .chain(undone.iter().copied())
        .collect();
    oids.sort_unstable();
    oids.dedup();
    oids
}

/// Maps a failed vote's error; an undo id the storage cannot even decode
/// (FileStorage: `binascii.Error`) is an `UndoError` in the model.
fn vote_error(e: ClientError, txn: &Transaction) -> StorageError {
    let has_undo = txn
        .ops
        .iter()
        .any(|op| matches!(op, Operation::Undo { .. }));
    match storage_error(e, None) {
        StorageError::Remote { class, message } if has_undo && class == "binascii.Error" => {
            StorageError::Undo {
                reason: format!("invalid undo id: {message}"),
                oid: None,
            }
        }
        other => other,
    }
}

pub(crate) async fn finish(shared: &Shared, id: TxnId) -> StorageResult<Tid> {
    finish_voted(shared, take_live_voted(shared, id)?).await
}

/// `tpc_finish` of `voted`, waiting for the reply.
async fn finish_voted(shared: &Shared, mut voted: Voted) -> StorageResult<Tid> {
    let reply = voted
        .session
        .call_with(
            BytesMut::new(),
            "tpc_finish",
            args(vec![wire_id(voted.id)]),
            shared.options.timeout,
            CacheEffect::Finish(std::mem::take(&mut voted.changed)),
        )
        .await;
    finish_outcome(reply, &voted.session, &shared.callbacks, voted.id)
}

/// `finish` split at its commit point (`Storage::finish_deferred`): `tpc_finish`
/// is queued on the voted transaction's connection and the local commit lock
/// released, so the next transaction's messages follow it on the same connection
/// — the server reads them after it, and votes them only once it is finished.
/// The reply is the durability wait. A transaction voted without an explicit tid
/// does not know its tid before the reply: it finishes in full.
pub(crate) async fn finish_deferred(shared: &Shared, id: TxnId) -> StorageResult<Finished> {
    let mut voted = take_live_voted(shared, id)?;
    let Some(tid) = voted.tid else {
        return finish_voted(shared, voted)
            .await
            .map(Finished::already_durable);
    };
    let wait = voted
        .session
        .send_call(
            "tpc_finish",
            args(vec![wire_id(id)]),
            shared.options.timeout,
            CacheEffect::Finish(std::mem::take(&mut voted.changed)),
        )
        .await
        .map_err(StorageError::from)?;
    drop(voted);
    let callbacks = Arc::clone(&shared.callbacks);
    let durable = async move {
        let session = Arc::clone(wait.session());
        let got = finish_outcome(wait.wait().await, &session, &callbacks, id)?;
        if got == tid {
            Ok(())
        } else {
            Err(StorageError::Transaction(format!(
                "tpc_finish returned tid {got:?}, expected {tid:?}"
            )))
        }
    };
    Ok(Finished {
        tid,
        durable: Box::pin(durable),
    })
}

/// The voted transaction `id`, on a connection that is still up.
fn take_live_voted(shared: &Shared, id: TxnId) -> StorageResult<Voted> {
    let Some(voted) = shared.commit.take_voted(id) else {
        return Err(StorageError::Transaction(format!(
            "transaction {:#x} is not voted",
            id.0
        )));
    };
    if let Some(reason) = voted.session.closed_reason() {
        return Err(StorageError::Disconnected(format!(
            "connection lost after the vote ({reason}); the server aborted the transaction"
        )));
    }
    Ok(voted)
}

/// The committed tid from a `tpc_finish` reply.
fn finish_outcome(
    reply: Result<Value, ClientError>,
    session: &Session,
    callbacks: &Callbacks,
    id: TxnId,
) -> StorageResult<Tid> {
    match reply {
        Ok(Value::None) => Err(StorageError::Transaction(format!(
            "the server does not know transaction {:#x}",
            id.0
        ))),
        Ok(v) => {
            let tid = tid_of(&v, "tpc_finish")?;
            callbacks.saw_tid(tid);
            Ok(tid)
        }
        Err(e @ ClientError::Timeout(_)) => {
            // The outcome is unknown: drop the connection (the server aborts the
            // transaction if it did not commit it) and let the caller decide.
            session.close("tpc_finish timed out; its outcome is unknown");
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn abort(shared: &Shared, id: TxnId) -> StorageResult<()> {
    let Some(voted) = shared.commit.take_voted(id) else {
        return Ok(());
    };
    if voted.session.is_closed() {
        // A ZEO server aborts the transaction of a connection that went away.
        return Ok(());
    }
    let reply = voted
        .session
        .call("tpc_abort", args(vec![wire_id(id)]), shared.options.timeout)
        .await;
    match reply {
        Ok(_) => Ok(()),
        Err(e @ ClientError::Timeout(_)) => {
            voted
                .session
                .close("tpc_abort timed out; dropping the connection aborts the transaction");
            Err(e.into())
        }
        Err(ClientError::Disconnected(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

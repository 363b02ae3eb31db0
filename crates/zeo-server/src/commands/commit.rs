//! Two-phase commit: `tpc_begin`, the buffered one-way operations (`storea`,
//! `restorea`, `checkCurrentSerialInTransaction`, `deleteObject`, `undoa`; blob
//! stores are in `blobs.rs`), `vote` (under the commit lock, possibly delayed),
//! `tpc_finish` (the storage's commit point, then the lock is released for the
//! next vote; once the commit is durable and every earlier one published:
//! invalidations to the others, `info` to the committer, then the reply) and
//! `tpc_abort`.
//!
//! Conflicts are handed to the client as ZEO's `client-conflict-resolution` mode
//! does: the vote answers a list of `{'oid', 'serials', 'data'}` dicts, the lock is
//! released, and the ZEO transaction and its log are kept so the client can store
//! resolved data and vote again (a later store of an oid replaces the earlier one).

use std::collections::HashMap;

use tracing::{debug, error, info, warn};
use zeoraid_storage::{Oid, Operation, Transaction, TransactionMeta, TxnId, VoteOutcome};
use zeoraid_wire::Value;

use super::{extension, Args};
use crate::commit_lock::Acquire;
use crate::error::ZeoError;
use crate::invalidation::info_args;
use crate::session::{LoggedOp, Outcome, PendingVote, Session, ZeoTxn};

/// ZEO's `_check_tid`: read-only connections may not touch transactions; a call
/// for another (or no) transaction is an error when `strict`, ignored otherwise.
/// Returns whether `id` is the current transaction.
fn check_tid(session: &Session, id: &Value, strict: bool, caller: &str) -> Result<bool, ZeoError> {
    if session.read_only {
        return Err(ZeoError::read_only());
    }
    match &session.txn {
        None => {
            if caller != "tpc_abort" {
                warn!(conn = %session.label(), "no current transaction: {caller}()");
            }
            if strict {
                Err(ZeoError::storage_transaction(vec![Value::None, id.clone()]))
            } else {
                Ok(false)
            }
        }
        Some(t) if t.client_id != *id => {
            if caller != "tpc_abort" {
                warn!(conn = %session.label(), "{caller}({id:?}) invalid; current transaction = {:?}", t.client_id);
            }
            if strict {
                Err(ZeoError::storage_transaction(vec![
                    t.client_id.clone(),
                    id.clone(),
                ]))
            } else {
                Ok(false)
            }
        }
        Some(_) => Ok(true),
    }
}

fn log_op(
    session: &mut Session,
    id: &Value,
    caller: &str,
    op: LoggedOp,
    store: bool,
) -> Result<Value, ZeoError> {
    check_tid(session, id, true, caller)?;
    if store {
        if let Some(served) = &session.served {
            served.stat(|s| s.stores += 1);
        }
    }
    if let Some(txn) = session.txn.as_mut() {
        txn.log.push(op);
    }
    Ok(Value::None)
}

/// `tpc_begin(txn_id, user, description, ext, tid=None, status=' ')`.
pub(crate) fn tpc_begin(session: &mut Session, mut a: Args) -> Result<Value, ZeoError> {
    let id = a.get(0)?.clone();
    if session.read_only {
        return Err(ZeoError::read_only());
    }
    if let Some(t) = &session.txn {
        if t.client_id == id {
            info!(conn = %session.label(), "duplicate tpc_begin({id:?})");
            return Ok(Value::None);
        }
        return Err(ZeoError::storage_transaction_msg(
            "Multiple simultaneous tpc_begin requests from one client.",
        ));
    }
    let user = a.bytes_or_str(1)?;
    let description = a.bytes_or_str(2)?;
    let ext = extension::encode(a.get(3)?)?;
    let tid = a.opt_tid(4)?;
    let status = match a.opt(5) {
        None | Some(Value::None) => b' ',
        Some(Value::Str(s)) => s.bytes().next().unwrap_or(b' '),
        Some(Value::Bytes(b)) => b.first().copied().unwrap_or(b' '),
        Some(_) => return Err(ZeoError::type_error("tpc_begin() status must be a str")),
    };
    if let Some(served) = &session.served {
        served.stat(|s| s.active_txns += 1);
    }
    session.txn = Some(ZeoTxn {
        client_id: id,
        meta: TransactionMeta {
            user,
            description,
            extension: ext,
        },
        tid,
        status,
        log: Vec::new(),
        blob_files: Vec::new(),
        voted: None,
        invalidated: Vec::new(),
        conflict_rounds: 0,
        store_error: None,
    });
    Ok(Value::None)
}

/// `storea(oid, serial, data, txn_id)`.
pub(crate) fn storea(session: &mut Session, mut a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let serial = a.serial(1)?;
    let id = a.get(3)?.clone();
    let data = match a.take(2)? {
        Value::Bytes(b) => b,
        other => {
            // ZEO buffers the store as it comes; the storage's store() refuses
            // it at vote. Do the same rather than closing the connection, so
            // that an abort (ZEO's checkTransactionBufferCleanup) just works.
            check_tid(session, &id, true, "storea")?;
            if let Some(txn) = session.txn.as_mut() {
                txn.store_error.get_or_insert_with(|| {
                    ZeoError::type_error(format!(
                        "store() data must be bytes, not {}",
                        other.type_name()
                    ))
                });
            }
            return Ok(Value::None);
        }
    };
    log_op(
        session,
        &id,
        "storea",
        LoggedOp::Store { oid, serial, data },
        true,
    )
}

/// `restorea(oid, serial, data, prev_txn, txn_id)`.
pub(crate) fn restorea(session: &mut Session, mut a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    // The serial of a restore is the transaction's own tid (given at tpc_begin).
    a.tid(1)?;
    let data = a.opt_bytes(2)?;
    let prev_txn = a.opt_tid(3)?;
    let id = a.get(4)?.clone();
    log_op(
        session,
        &id,
        "restorea",
        LoggedOp::Restore {
            oid,
            data,
            prev_txn,
        },
        true,
    )
}

/// `checkCurrentSerialInTransaction(oid, serial, txn_id)`.
pub(crate) fn check_current_serial(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let serial = a.tid(1)?;
    let id = a.get(2)?.clone();
    log_op(
        session,
        &id,
        "checkCurrentSerialInTransaction",
        LoggedOp::CheckCurrentSerial { oid, serial },
        false,
    )
}

/// `deleteObject(oid, serial, txn_id)`.
pub(crate) fn delete_object(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let serial = a.tid(1)?;
    let id = a.get(2)?.clone();
    log_op(
        session,
        &id,
        "deleteObject",
        LoggedOp::Delete { oid, serial },
        true,
    )
}

/// `undoa(undo_id, txn_id)`.
pub(crate) fn undoa(session: &mut Session, mut a: Args) -> Result<Value, ZeoError> {
    let undo_id = a.bytes(0)?;
    let id = a.get(1)?.clone();
    log_op(session, &id, "undoa", LoggedOp::Undo { undo_id }, false)
}

/// The storage transaction for the buffered log. A later store (plain or blob) of
/// an oid replaces an earlier one, which is how a re-vote after client-side
/// conflict resolution works. Also returns the oids to invalidate at finish.
fn build_transaction(txn: &ZeoTxn, id: TxnId) -> (Transaction, Vec<Oid>) {
    let mut last_store: HashMap<Oid, usize> = HashMap::new();
    for (i, op) in txn.log.iter().enumerate() {
        if let LoggedOp::Store { oid, .. } | LoggedOp::StoreBlob { oid, .. } = op {
            last_store.insert(*oid, i);
        }
    }
    let mut t = Transaction::new(id, txn.meta.clone());
    t.tid = txn.tid;
    t.status = txn.status;
    let mut stored = Vec::new();
    for (i, op) in txn.log.iter().enumerate() {
        let op = match op.clone() {
            LoggedOp::Store { oid, serial, data } => {
                if last_store.get(&oid) != Some(&i) {
                    continue;
                }
                stored.push(oid);
                Operation::Store { oid, serial, data }
            }
            LoggedOp::StoreBlob {
                oid,
                serial,
                data,
                blob,
            } => {
                if last_store.get(&oid) != Some(&i) {
                    continue;
                }
                stored.push(oid);
                Operation::StoreBlob {
                    oid,
                    serial,
                    data,
                    blob,
                }
            }
            LoggedOp::Restore {
                oid,
                data,
                prev_txn,
            } => {
                // ZEO does not invalidate restored objects; we do, so that no client
                // keeps a stale copy of an object a restore changed.
                stored.push(oid);
                Operation::Restore {
                    oid,
                    data,
                    prev_txn,
                    blob: None,
                }
            }
            LoggedOp::CheckCurrentSerial { oid, serial } => {
                Operation::CheckCurrentSerial { oid, serial }
            }
            LoggedOp::Delete { oid, serial } => Operation::Delete { oid, serial },
            LoggedOp::Undo { undo_id } => Operation::Undo { undo_id },
        };
        t.ops.push(op);
    }
    (t, stored)
}

/// `vote(txn_id)`: the reply may be delayed until the commit lock is free.
pub(crate) async fn vote(session: &mut Session, msgid: &Value, oneway: bool, a: Args) -> Outcome {
    let id = match a.get(0) {
        Ok(v) => v.clone(),
        Err(e) => return Outcome::Error(e),
    };
    if let Err(e) = check_tid(session, &id, true, "vote") {
        return Outcome::Error(e);
    }
    if session.pending_vote.is_some() {
        return Outcome::Error(ZeoError::storage_transaction_msg(
            "Already voting (waiting)",
        ));
    }
    let served = match session.served() {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    if session.txn.as_ref().is_some_and(|t| t.voted.is_some()) {
        return Outcome::Error(ZeoError::storage_transaction_msg("Already voting (locked)"));
    }
    if let Some(e) = session.txn.as_mut().and_then(|t| t.store_error.take()) {
        session.clear_transaction().await;
        return Outcome::Error(e);
    }
    match served.lock.acquire(&session.conn) {
        Err(e) => Outcome::Error(e),
        Ok(Acquire::Acquired) => vote_locked(session).await.into(),
        Ok(Acquire::Wait(grant)) => {
            session.pending_vote = Some(PendingVote {
                msgid: msgid.clone(),
                oneway,
                grant,
            });
            Outcome::Delayed
        }
    }
}

impl Session {
    /// The lock was handed to our waiting vote: run it and send the delayed reply.
    pub(crate) async fn finish_delayed_vote(&mut self, pending: PendingVote) {
        let result = vote_locked(self).await;
        if pending.oneway {
            return;
        }
        match result {
            Ok(v) => self.conn.send_reply(&pending.msgid, v),
            Err(e) => self.conn.send_error(&pending.msgid, &e),
        }
    }
}

/// Votes of one transaction that may answer conflicts for the client to resolve;
/// the last one answers a `ConflictError` instead. ZEO 5/6's
/// `ClientStorage.tpc_vote` votes at most this many times.
pub(crate) const MAX_CONFLICT_ROUNDS: u32 = 9;

/// Vote with the commit lock held.
async fn vote_locked(session: &mut Session) -> Result<Value, ZeoError> {
    let served = session.served()?;
    let Some(txn) = session.txn.as_ref() else {
        served.lock.release(session.conn.id);
        return Err(ZeoError::storage_transaction_msg("no transaction to vote"));
    };
    let id = TxnId(session.server.next_txn_id());
    let (t, stored) = build_transaction(txn, id);
    debug!(conn = %session.label(), "Preparing to commit transaction: {} operations", t.ops.len());
    match served.storage.vote(t).await {
        Ok(VoteOutcome::Voted { undone }) => {
            if let Some(txn) = session.txn.as_mut() {
                txn.voted = Some(id);
                let mut inval = stored;
                inval.extend(undone.iter().copied());
                txn.invalidated = inval;
            }
            Ok(Value::List(
                undone.into_iter().map(|o| Value::from(o.0)).collect(),
            ))
        }
        Ok(VoteOutcome::Conflicts(conflicts)) => {
            served.lock.release(session.conn.id);
            served.stat(|s| s.conflicts += conflicts.len() as u64);
            let rounds = session.txn.as_mut().map_or(0, |t| {
                t.conflict_rounds += 1;
                t.conflict_rounds
            });
            // ZEO's client re-votes at most 9 times and then goes on to tpc_finish
            // as if it had won (ZEO answers AssertionError "finished called wo
            // lock", which applications do not retry). Answer this last round with
            // a ConflictError instead: the client aborts and `transaction`'s retry
            // loops start over.
            if let Some(first) = conflicts.first().filter(|_| rounds >= MAX_CONFLICT_ROUNDS) {
                let err = ZeoError::conflict(first.oid, first.committed, first.read);
                info!(conn = %session.label(), "vote: conflicts after {rounds} rounds; giving up");
                session.clear_transaction().await;
                return Err(err);
            }
            debug!(conn = %session.label(), "vote: {} conflicts handed to the client", conflicts.len());
            Ok(Value::List(
                conflicts
                    .into_iter()
                    .map(|c| {
                        Value::dict_from_pairs([
                            ("oid", Value::from(c.oid.0)),
                            (
                                "serials",
                                Value::Tuple(vec![
                                    Value::from(c.committed.0),
                                    Value::from(c.read.0),
                                ]),
                            ),
                            ("data", Value::Bytes(c.data)),
                        ])
                    })
                    .collect(),
            ))
        }
        Err(err) => {
            if let Err(e) = served.storage.abort(id).await {
                debug!(conn = %session.label(), "abort after failed vote: {e}");
            }
            let zeo = ZeoError::from(err);
            if zeo.class_name.ends_with("ConflictError") {
                served.stat(|s| s.conflicts += 1);
            }
            session.clear_transaction().await;
            Err(zeo)
        }
    }
}

/// `tpc_finish(txn_id)` → the committed tid (group commit, docs/zeo-server.md):
///
/// 1. `Storage::finish_deferred`: the commit point — the storage shows the
///    transaction and the next vote checks against it; a failure here aborts.
/// 2. Take a publication ticket (still under the commit lock, so tickets are in
///    tid order) and release the commit lock: the next delayed vote runs while
///    this commit's fsync does, and its finish can share that fsync.
/// 3. Wait until the commit is durable, then until every earlier commit is
///    published.
/// 4. Publish: under the visibility lock, queue `invalidateTransaction` to every
///    other client and advance the published tid; then `info` and the reply,
///    before the next commit may publish (so the committer never gets a later
///    commit's invalidation before its own tid).
///
/// Nothing after step 1 can abort the transaction: a disconnect meanwhile only
/// loses the reply (the session handles this call to its end before it notices).
pub(crate) async fn tpc_finish(
    session: &mut Session,
    msgid: &Value,
    oneway: bool,
    a: Args,
) -> Outcome {
    let id = match a.get(0) {
        Ok(v) => v.clone(),
        Err(e) => return Outcome::Error(e),
    };
    match check_tid(session, &id, false, "tpc_finish") {
        Err(e) => return Outcome::Error(e),
        Ok(false) => return Outcome::Reply(Value::None),
        Ok(true) => {}
    }
    let served = match session.served() {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let Some((txn_id, oids)) = session
        .txn
        .as_ref()
        .and_then(|t| t.voted.map(|v| (v, t.invalidated.clone())))
    else {
        return Outcome::Error(ZeoError::assertion_error("finished called wo lock"));
    };
    let finished = match served.storage.finish_deferred(txn_id).await {
        Ok(finished) => finished,
        Err(err) => {
            // Loads waiting for this commit to be published look again.
            served.published_changed.notify_waiters();
            error!(conn = %session.label(), "tpc_finish failed: {err}");
            if let Err(e) = served.storage.abort(txn_id).await {
                debug!("abort after failed finish: {e}");
            }
            served.stat(|s| s.aborts += 1);
            session.clear_transaction().await;
            return Outcome::Error(err.into());
        }
    };
    let tid = finished.tid;
    let ticket = served.publication.take(tid);
    served.lock.release(session.conn.id);
    if let Err(err) = finished.durable.await {
        // Past the commit point: nothing to abort; the storage refuses writes
        // from now on (a failed fsync is final) and the commit is in doubt
        // until it is reopened. Never published, never acknowledged.
        drop(ticket);
        served.published_changed.notify_waiters();
        error!(conn = %session.label(), ?tid, "tpc_finish: the commit could not be made durable: {err}");
        session.clear_transaction().await;
        return Outcome::Error(err.into());
    }
    let info = served.storage.info().await;
    ticket.wait_turn().await;
    // Loads hold the visibility lock shared from reading to queueing their
    // reply: one that read the state before this commit is queued before its
    // invalidation; loads that start later see the commit as published.
    let guard = served.visibility.write().await;
    let unsent = served.invalidate(Some(session.conn.id), tid, oids);
    drop(guard);
    // The reply is queued before the next commit may publish: ZEO's client
    // refuses an acknowledged tid older than an invalidation it already got
    // (`ClientCache.setLastTid`: "new last tid must be greater").
    match info {
        Ok(info) => session
            .conn
            .send_own_callback("info", info_args(info.length, info.size)),
        Err(e) => warn!(conn = %session.label(), "no size info after commit: {e}"),
    }
    if !oneway {
        session.conn.send_reply(msgid, Value::from(tid.0));
    }
    ticket.complete();
    // The other clients' invalidations are in place in their outputs; sent
    // after this client's reply is queued, which they do not hold back.
    unsent.send();
    served.stat(|s| s.commits += 1);
    session.clear_transaction().await;
    Outcome::Replied
}

/// `tpc_abort(txn_id)` → None (also for an unknown transaction).
pub(crate) async fn tpc_abort(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let id = a.get(0)?.clone();
    if !check_tid(session, &id, false, "tpc_abort")? {
        return Ok(Value::None);
    }
    let served = session.served()?;
    if let Some(voted) = session.txn.as_ref().and_then(|t| t.voted) {
        if let Err(e) = served.storage.abort(voted).await {
            warn!(conn = %session.label(), "storage abort failed: {e}");
        }
    }
    served.stat(|s| s.aborts += 1);
    session.clear_transaction().await;
    Ok(Value::None)
}

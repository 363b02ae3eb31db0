//! Reads: `loadBefore`, `loadSerial`, `getTid`, `history` and `record_iternext`.
//!
//! `loadBefore` is also answered apart from the connection's message loop
//! ([`start_detached_load`]): inline when the storage can answer at once, else as a
//! future the session polls alongside further requests, so pipelined loads of one
//! connection overlap.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::RwLockReadGuard;
use tracing::{debug, info};
use zeoraid_storage::{LoadedRecord, Oid, StorageError, StorageResult, Tid};
use zeoraid_wire::Value;

use super::{extension, Args};
use crate::codec::Incoming;
use crate::connection::ConnHandle;
use crate::error::ZeoError;
use crate::server::ServedStorage;
use crate::session::Session;

/// `loadBefore`'s reply: `(data, start_tid, end_tid|None)` or `None`.
fn load_before_reply(record: Option<LoadedRecord>) -> Value {
    match record {
        None => Value::None,
        Some(r) => Value::Tuple(vec![
            Value::Bytes(r.data),
            Value::from(r.start.0),
            r.end.map(|t| Value::from(t.0)).unwrap_or(Value::None),
        ]),
    }
}

/// What [`start_detached_load`] did with a message.
pub(crate) enum DetachedLoad {
    /// Answered already (the reply is queued).
    Answered,
    /// Answered when this future completes; the session polls it.
    Pending(BoxFuture<'static, ()>),
    /// Not a load that can be detached: the session handles it in order.
    InOrder(Incoming),
}

/// Start answering `msg` if it is a well-formed `loadBefore` call; anything else
/// (other methods, one-way calls, bad arguments, which get the in-order handler's
/// error reply) comes back as [`DetachedLoad::InOrder`].
///
/// The reply is read and queued under the storage's visibility lock (shared), as
/// every in-order read: a `tpc_finish` queues its invalidations under the exclusive
/// side, so a reply built from data older than a commit is queued before that
/// commit's invalidation.
pub(crate) fn start_detached_load(
    served: &Arc<ServedStorage>,
    conn: &Arc<ConnHandle>,
    msg: Incoming,
) -> DetachedLoad {
    if msg.name != "loadBefore" || msg.oneway || msg.args.len() != 2 {
        return DetachedLoad::InOrder(msg);
    }
    let (Some(oid), Some(before)) = (msg.args[0].as_bytes8(), msg.args[1].as_bytes8()) else {
        return DetachedLoad::InOrder(msg);
    };
    start_load(served, conn, msg.msgid, Oid(oid), Tid(before))
}

/// Answer the call `msgid`, `loadBefore(oid, before)`, of a registered
/// connection: inline if the storage can answer at once and nothing holds the
/// visibility lock exclusively, else as a future to poll (see
/// [`start_detached_load`]). Never [`DetachedLoad::InOrder`].
pub(crate) fn start_load(
    served: &Arc<ServedStorage>,
    conn: &Arc<ConnHandle>,
    msgid: Value,
    oid: Oid,
    before: Tid,
) -> DetachedLoad {
    if let Ok(guard) = served.visibility.try_read() {
        let before = as_of(served, before);
        if let Some(result) = served.storage.load_before_inline(oid, before) {
            if let Ok(result) = as_of_published(served, result) {
                answer_load(served, conn, &msgid, oid, result);
                drop(guard);
                return DetachedLoad::Answered;
            }
        }
    }
    let served = served.clone();
    let conn = conn.clone();
    DetachedLoad::Pending(Box::pin(async move {
        let (guard, result) = load_published(&served, oid, before).await;
        answer_load(&served, &conn, &msgid, oid, result);
        drop(guard);
    }))
}

/// How long a load waits for the commit that wrote the revision it read to be
/// published before answering anyway (a commit the storage shows but nobody
/// publishes: a failed finish that left it behind, or a remote backend's commit
/// whose invalidation was lost).
const PUBLICATION_WAIT: Duration = Duration::from_secs(1);

/// `load_before` as of the published tid, with the visibility lock (shared) to
/// hold until the reply is queued; see [`as_of_published`].
async fn load_published(
    served: &ServedStorage,
    oid: Oid,
    before: Tid,
) -> (RwLockReadGuard<'_, ()>, StorageResult<Option<LoadedRecord>>) {
    let mut waited = false;
    loop {
        let notified = served.published_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let guard = served.visibility.read().await;
        let before = as_of(served, before);
        let result = match served.storage.load_before_inline(oid, before) {
            Some(result) => result,
            None => served.storage.load_before(oid, before).await,
        };
        match as_of_published(served, result) {
            Ok(result) => return (guard, result),
            // A commit past its commit point but not yet durable is waited for
            // as long as it takes: it must not be shown before its fsync.
            Err(newer) if waited && !served.publication.is_publishing(newer.start) => {
                debug!(?oid, start = ?newer.start, "answering a revision not published in time");
                return (guard, Ok(Some(newer)));
            }
            Err(_) => {
                drop(guard);
                waited = true;
                let _ = tokio::time::timeout(PUBLICATION_WAIT, notified).await;
            }
        }
    }
}

/// `before` for the storage: a load of the current revision (`Tid::MAX`, as
/// `ClientStorage.load` asks) is a load as of the published tid `P`, i.e.
/// before `P + 1`, which is what [`as_of_published`] would make of its answer
/// anyway. Asked that way, a storage with a client cache (a `<zeoclient>`
/// backend) can answer from it: ZEO's cache answers a current revision only
/// up to the last tid it heard of. Call it holding the visibility lock, under
/// which `P` does not change. Other tids are the client's snapshot and are
/// passed on as they are.
fn as_of(served: &ServedStorage, before: Tid) -> Tid {
    if before == Tid::MAX {
        let published = served.published_tid().as_u64();
        Tid::from_u64(published.saturating_add(1)).min(Tid::MAX)
    } else {
        before
    }
}

/// The answer a load would have had at the published tid `P` (the last commit
/// whose invalidations are queued), so that, as in ZEO, no client sees a commit
/// before its invalidation. The storage may already show a commit `T > P` that
/// `tpc_finish` is about to publish:
/// - a revision written by `T` (`start > P`) cannot be answered yet: `Err` with
///   it (the caller waits for `T`'s publication and reads again);
/// - an older revision that `T` ended (`end > P`) is answered as current
///   (`end` None), exactly as before the commit; the reply is queued under the
///   shared visibility lock, so before `T`'s invalidation, which sets the end in
///   the client's cache.
fn as_of_published(
    served: &ServedStorage,
    result: StorageResult<Option<LoadedRecord>>,
) -> Result<StorageResult<Option<LoadedRecord>>, LoadedRecord> {
    let published = served.published_tid();
    match result {
        Ok(Some(record)) if record.start > published => Err(record),
        Ok(Some(mut record)) => {
            if record.end.is_some_and(|end| end > published) {
                record.end = None;
            }
            Ok(Ok(Some(record)))
        }
        other => Ok(other),
    }
}

fn answer_load(
    served: &ServedStorage,
    conn: &ConnHandle,
    msgid: &Value,
    oid: Oid,
    result: StorageResult<Option<LoadedRecord>>,
) {
    served.count_load();
    match result {
        Ok(record) => conn.send_load_before_reply(msgid, record.as_ref()),
        Err(e) => {
            let err = ZeoError::from(e);
            if !err.is_quiet() {
                info!(conn = %conn.label(), "\"loadBefore\" of {oid:?} raised {}{}", err.class_name,
                    super::short_payload(&err));
            }
            conn.send_error(msgid, &err);
        }
    }
}

/// `loadBefore(oid, tid)` → `(data, start_tid, end_tid|None)` or `None`.
pub(crate) async fn load_before(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let before = a.tid(1)?;
    let served = session.served()?;
    served.count_load();
    // Called with the visibility lock held (shared) until the reply is queued;
    // a revision not published yet is not waited for on this rare path (one-way
    // or malformed calls), it is answered as read.
    let result = served
        .storage
        .load_before(oid, as_of(&served, before))
        .await;
    let record = as_of_published(&served, result).unwrap_or_else(|newer| Ok(Some(newer)))?;
    Ok(load_before_reply(record))
}

/// `loadSerial(oid, serial)` → data.
pub(crate) async fn load_serial(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let serial = a.tid(1)?;
    let served = session.served()?;
    Ok(Value::Bytes(served.storage.load_serial(oid, serial).await?))
}

/// `getTid(oid)` → the tid of the current revision.
pub(crate) async fn get_tid(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let served = session.served()?;
    match served.storage.load_before(oid, Tid::MAX).await? {
        Some(r) => Ok(Value::from(r.start.0)),
        None => Err(StorageError::PosKey { oid }.into()),
    }
}

/// `history(oid, size=1)` → dicts newest first: extension keys, then `time`,
/// `user_name`, `description`, `tid`, `size` (FileStorage's order).
pub(crate) async fn history(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let served = session.served()?;
    let size = match a.opt(1) {
        None => 1,
        // FileStorage.history(oid, None): POSKeyError for an unknown oid, else
        // the TypeError of comparing an int with None.
        Some(Value::None) => {
            served.storage.history(oid, 1).await?;
            return Err(ZeoError::type_error(
                "'>=' not supported between instances of 'int' and 'NoneType'",
            ));
        }
        Some(v) => v
            .as_int()
            .ok_or_else(|| ZeoError::type_error("history() size must be an int"))?,
    };
    let size = usize::try_from(size.max(0)).unwrap_or(0);
    let entries = served.storage.history(oid, size).await?;
    Ok(Value::List(
        entries
            .into_iter()
            .map(|h| {
                let mut d = extension::decode(&h.meta.extension);
                extension::set(&mut d, "time", Value::Float(h.tid.unix_time()));
                extension::set(&mut d, "user_name", Value::Bytes(h.meta.user));
                extension::set(&mut d, "description", Value::Bytes(h.meta.description));
                extension::set(&mut d, "tid", Value::from(h.tid.0));
                extension::set(&mut d, "size", Value::from(h.size));
                Value::Dict(d)
            })
            .collect(),
    ))
}

/// `record_iternext(next=None)` → `(oid, tid, data, next_oid|None)`.
pub(crate) async fn record_iternext(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let start = match a.opt(0) {
        None | Some(Value::None) => None,
        Some(_) => Some(a.oid(0)?),
    };
    let served = session.served()?;
    Ok(match served.storage.record_iternext(start).await? {
        None => Value::None,
        Some(r) => Value::Tuple(vec![
            Value::from(r.oid.0),
            Value::from(r.tid.0),
            Value::Bytes(r.data),
            r.next.map(|o| Value::from(o.0)).unwrap_or(Value::None),
        ]),
    })
}

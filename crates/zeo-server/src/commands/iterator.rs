//! Transaction iteration over the wire: `iterator_start(start, stop)` → id,
//! `iterator_next(id)` → `(tid, status, user, description, ext)` or None,
//! `iterator_record_start(txn_id, tid)` → id, `iterator_record_next(id)` →
//! `(oid, tid, data, data_txn)` or None, and one-way `iterator_gc(ids)`. Ids come
//! from one counter per connection, shared by both kinds, as in ZEO.

use futures::StreamExt;
use zeoraid_wire::Value;

use super::{bytes_repr, extension, Args};
use crate::error::ZeoError;
use crate::session::{IterState, Session};

pub(crate) async fn iterator_start(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let start = a.opt_tid(0)?;
    let stop = a.opt_tid(1)?;
    let served = session.served()?;
    let stream = served.storage.iterator(start, stop).await?;
    let iid = session.next_iterator_id();
    session.iterators.insert(iid, IterState::Txns(stream));
    Ok(Value::from(iid))
}

pub(crate) async fn iterator_next(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let iid = a.int(0)?;
    let Some(IterState::Txns(stream)) = session.iterators.get_mut(&iid) else {
        return Err(ZeoError::key_error(Value::from(iid)));
    };
    match stream.next().await {
        None => {
            session.iterators.remove(&iid);
            session.txn_iterators_last.remove(&iid);
            Ok(Value::None)
        }
        Some(Err(e)) => {
            session.iterators.remove(&iid);
            session.txn_iterators_last.remove(&iid);
            Err(e.into())
        }
        Some(Ok(t)) => {
            let item = Value::Tuple(vec![
                Value::from(t.tid.0),
                Value::Str(char::from(t.status).to_string()),
                Value::Bytes(t.meta.user.clone()),
                Value::Bytes(t.meta.description.clone()),
                Value::Dict(extension::decode(&t.meta.extension)),
            ]);
            session.txn_iterators_last.insert(iid, t);
            Ok(item)
        }
    }
}

pub(crate) fn iterator_record_start(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let txn_iid = a.int(0)?;
    let tid = a.tid(1)?;
    let Some(last) = session.txn_iterators_last.get(&txn_iid) else {
        return Err(ZeoError::key_error(Value::from(txn_iid)));
    };
    if last.tid != tid {
        return Err(ZeoError::exception(format!(
            "Out-of-order request for record iterator for transaction {}",
            bytes_repr(&tid.0)
        )));
    }
    let records = last.records.clone();
    let riid = session.next_iterator_id();
    session
        .iterators
        .insert(riid, IterState::Records(records.into_iter()));
    Ok(Value::from(riid))
}

pub(crate) fn iterator_record_next(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let riid = a.int(0)?;
    let Some(IterState::Records(records)) = session.iterators.get_mut(&riid) else {
        return Err(ZeoError::key_error(Value::from(riid)));
    };
    match records.next() {
        None => {
            session.iterators.remove(&riid);
            Ok(Value::None)
        }
        Some(r) => Ok(Value::Tuple(vec![
            Value::from(r.oid.0),
            Value::from(r.tid.0),
            r.data.map(Value::Bytes).unwrap_or(Value::None),
            r.data_txn.map(|t| Value::from(t.0)).unwrap_or(Value::None),
        ])),
    }
}

pub(crate) fn iterator_gc(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let ids = a
        .get(0)?
        .as_tuple_or_list()
        .ok_or_else(|| ZeoError::type_error("iterator_gc() takes a list of ids"))?;
    for id in ids {
        if let Some(n) = id.as_int() {
            session.iterators.remove(&n);
            session.txn_iterators_last.remove(&n);
        }
    }
    Ok(Value::None)
}

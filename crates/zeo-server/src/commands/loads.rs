//! Reads: `loadBefore`, `loadSerial`, `getTid`, `history` and `record_iternext`.

use zeoraid_storage::{StorageError, Tid};
use zeoraid_wire::Value;

use super::{extension, Args};
use crate::error::ZeoError;
use crate::session::Session;

/// `loadBefore(oid, tid)` → `(data, start_tid, end_tid|None)` or `None`.
pub(crate) async fn load_before(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let before = a.tid(1)?;
    let served = session.served()?;
    served.stat(|s| s.loads += 1);
    Ok(match served.storage.load_before(oid, before).await? {
        None => Value::None,
        Some(r) => Value::Tuple(vec![
            Value::Bytes(r.data),
            Value::from(r.start.0),
            r.end.map(|t| Value::from(t.0)).unwrap_or(Value::None),
        ]),
    })
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

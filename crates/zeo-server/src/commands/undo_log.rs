//! `undoLog(first, last)` and `undoInfo(first, last, specification)`: undo-log
//! entries `{'id', 'time', 'user_name', 'size', 'description'}` plus the extension
//! keys (FileStorage's order); a negative `last` means `first - last` entries.

use std::sync::Arc;

use zeoraid_storage::{UndoEntry, UndoFilter};
use zeoraid_wire::Value;

use super::{extension, Args};
use crate::error::ZeoError;
use crate::session::Session;

/// The dict a client sees for one entry.
pub(crate) fn entry_dict(e: &UndoEntry) -> Value {
    let mut d = vec![
        (Value::from("id"), Value::Bytes(e.id.clone())),
        (Value::from("time"), Value::Float(e.tid.unix_time())),
        (Value::from("user_name"), Value::Bytes(e.meta.user.clone())),
        (Value::from("size"), Value::from(e.size)),
        (
            Value::from("description"),
            Value::Bytes(e.meta.description.clone()),
        ),
    ];
    for (k, v) in extension::decode(&e.meta.extension) {
        match k.as_str() {
            Some(key) => extension::set(&mut d, key, v),
            None => d.push((k, v)),
        }
    }
    Value::Dict(d)
}

fn range(a: &Args) -> Result<(u64, u64), ZeoError> {
    let first = a.int_or(0, 0)?.max(0);
    let mut last = a.int_or(1, -20)?;
    if last < 0 {
        last = first.saturating_sub(last);
    }
    Ok((first as u64, last.max(0) as u64))
}

async fn run(
    session: &mut Session,
    first: u64,
    last: u64,
    filter: Option<UndoFilter>,
) -> Result<Value, ZeoError> {
    let served = session.served()?;
    let info = served.storage.info().await?;
    if !info.supports_undo {
        return Ok(Value::Tuple(Vec::new()));
    }
    let entries = served.storage.undo_log(first, last, filter).await?;
    Ok(Value::List(entries.iter().map(entry_dict).collect()))
}

pub(crate) async fn undo_log(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let (first, last) = range(&a)?;
    run(session, first, last, None).await
}

pub(crate) async fn undo_info(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let (first, last) = range(&a)?;
    let filter: Option<UndoFilter> = match a.opt(2) {
        None | Some(Value::None) => None,
        Some(Value::Dict(spec)) => {
            let spec = spec.clone();
            Some(Arc::new(move |entry: &UndoEntry| {
                let d = entry_dict(entry);
                spec.iter().all(|(k, v)| {
                    d.as_dict()
                        .and_then(|items| items.iter().find(|(ek, _)| ek == k))
                        .is_some_and(|(_, ev)| ev == v)
                })
            }))
        }
        Some(_) => {
            return Err(ZeoError::type_error(
                "undoInfo() specification must be a dict",
            ))
        }
    };
    run(session, first, last, filter).await
}

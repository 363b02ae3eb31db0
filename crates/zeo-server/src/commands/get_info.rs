//! `get_info()`: the storage's size, name and capabilities, with the ZODB
//! interfaces it provides (they decide which features a client enables).

use zeoraid_wire::Value;

use crate::error::ZeoError;
use crate::session::Session;

/// The interfaces a storage provides, in `__iro__` order as ZEO lists them.
pub fn interfaces(supports_blobs: bool, supports_undo: bool) -> Value {
    let mut names: Vec<(&str, &str)> = Vec::new();
    if supports_blobs {
        names.push(("ZODB.interfaces", "IBlobStorageRestoreable"));
        names.push(("ZODB.interfaces", "IBlobStorage"));
    }
    names.push(("ZODB.interfaces", "IStorageRestoreable"));
    names.push(("ZODB.interfaces", "IStorageIteration"));
    if supports_undo {
        names.push(("ZODB.interfaces", "IStorageUndoable"));
    }
    names.push(("ZODB.interfaces", "IStorageCurrentRecordIteration"));
    names.push(("ZODB.interfaces", "IExternalGC"));
    names.push(("ZODB.interfaces", "IStorage"));
    names.push(("zope.interface", "Interface"));
    Value::Tuple(
        names
            .into_iter()
            .map(|(m, n)| Value::Tuple(vec![Value::from(m), Value::from(n)]))
            .collect(),
    )
}

pub(crate) async fn get_info(session: &mut Session) -> Result<Value, ZeoError> {
    let served = session.served()?;
    let info = served.storage.info().await?;
    Ok(Value::dict_from_pairs([
        ("length", Value::from(info.length)),
        ("size", Value::from(info.size)),
        ("name", Value::from(info.name)),
        ("supportsUndo", Value::Bool(info.supports_undo)),
        ("supports_record_iternext", Value::Bool(true)),
        (
            "interfaces",
            interfaces(info.supports_blobs, info.supports_undo),
        ),
    ]))
}

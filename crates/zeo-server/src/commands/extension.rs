//! Transaction extension dicts: pickled for the storage at vote time (empty dict →
//! empty bytes, as ZODB does) and unpickled for history, undo log and iterator
//! replies. Entries that cannot travel back to a client (opaque objects written by
//! Python applications, e.g. a `datetime`) are dropped with a debug log line.

use bytes::Bytes;
use tracing::debug;
use zeoraid_wire::Value;

use crate::error::ZeoError;

/// Whether a value can be sent to a ZEO client (builtin types only).
pub(crate) fn sendable(value: &Value) -> bool {
    match value {
        Value::None
        | Value::Bool(_)
        | Value::Int(_)
        | Value::BigInt(_)
        | Value::Float(_)
        | Value::Bytes(_)
        | Value::Str(_) => true,
        Value::Tuple(v) | Value::List(v) => v.iter().all(sendable),
        Value::Dict(d) => d.iter().all(|(k, v)| sendable(k) && sendable(v)),
        _ => false,
    }
}

/// The stored form of the extension dict a client sent in `tpc_begin`.
pub(crate) fn encode(ext: &Value) -> Result<Bytes, ZeoError> {
    match ext {
        Value::Dict(d) if d.is_empty() => Ok(Bytes::new()),
        Value::None => Ok(Bytes::new()),
        Value::Dict(_) => zeoraid_wire::pickle::encode(ext)
            .map(Bytes::from)
            .map_err(|e| ZeoError::value_error(format!("cannot pickle extension: {e}"))),
        other => Err(ZeoError::type_error(format!(
            "extension must be a dict, not {}",
            other.type_name()
        ))),
    }
}

/// The extension dict's items, minus what cannot be sent.
pub(crate) fn decode(stored: &[u8]) -> Vec<(Value, Value)> {
    if stored.is_empty() {
        return Vec::new();
    }
    match zeoraid_wire::pickle::decode(stored) {
        Ok(Value::Dict(items)) => items
            .into_iter()
            .filter(|(k, v)| {
                let ok = sendable(k) && sendable(v);
                if !ok {
                    debug!("dropping extension entry {k:?} that cannot be sent to clients");
                }
                ok
            })
            .collect(),
        Ok(other) => {
            debug!(
                "extension is a {} rather than a dict; ignored",
                other.type_name()
            );
            Vec::new()
        }
        Err(e) => {
            debug!("undecodable extension ({e}); ignored");
            Vec::new()
        }
    }
}

/// Set `key` in an ordered dict, replacing an existing entry in place (as Python's
/// `dict.update` does).
pub(crate) fn set(items: &mut Vec<(Value, Value)>, key: &str, value: Value) {
    if let Some(slot) = items.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
        slot.1 = value;
    } else {
        items.push((Value::from(key), value));
    }
}

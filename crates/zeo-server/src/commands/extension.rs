//! Transaction extension dicts in the server: the client's `tpc_begin` dict stored
//! as bytes at vote time, and stored bytes turned back into dict items for history,
//! undo log and iterator replies (the conversions live in the wire layer). Entries
//! that cannot travel back to a client (opaque objects written by Python
//! applications, e.g. a `datetime`) are dropped with a debug log line.

use bytes::Bytes;
use tracing::debug;
use zeoraid_wire::extension::{decode_extension, encode_extension_value, is_plain_data};
use zeoraid_wire::{ExtensionError, Value};

use crate::error::ZeoError;

/// The stored form of the extension dict a client sent in `tpc_begin`.
pub(crate) fn encode(ext: &Value) -> Result<Bytes, ZeoError> {
    encode_extension_value(ext).map_err(|e| match e {
        ExtensionError::WrongType(_) => ZeoError::type_error(e.to_string()),
        other => ZeoError::value_error(other.to_string()),
    })
}

/// The extension dict's items, minus what cannot be sent.
pub(crate) fn decode(stored: &[u8]) -> Vec<(Value, Value)> {
    match decode_extension(stored) {
        Ok(items) => items
            .into_iter()
            .filter(|(k, v)| {
                let ok = is_plain_data(k) && is_plain_data(v);
                if !ok {
                    debug!("dropping extension entry {k:?} that cannot be sent to clients");
                }
                ok
            })
            .collect(),
        Err(e) => {
            debug!("{e}; ignored");
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

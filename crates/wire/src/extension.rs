//! Transaction extension dicts between their stored form and the wire.
//!
//! Storages keep a transaction's extension as opaque bytes: empty for an empty dict
//! (as ZODB writes it), else the dict pickled with ZEO's encoder. On the wire it
//! travels as a dict value — and only plain data may travel: a ZEO server refuses to
//! unpickle arbitrary classes, so entries holding other objects (a `datetime`
//! written by a Python application, say) cannot be sent.

use bytes::Bytes;
use thiserror::Error;

use crate::pickle;
use crate::value::Value;
use crate::WireError;

/// Why stored extension bytes are not a dict that can be sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExtensionError {
    /// The bytes are not a pickle we can decode.
    #[error("undecodable transaction extension: {0}")]
    Undecodable(WireError),
    /// The pickle holds something other than a dict.
    #[error("transaction extension is a {0}, not a dict")]
    NotADict(&'static str),
    /// A `tpc_begin` extension argument that is neither a dict nor None.
    #[error("extension must be a dict, not {0}")]
    WrongType(&'static str),
    /// The dict could not be pickled.
    #[error("cannot pickle extension: {0}")]
    Unpicklable(WireError),
}

/// Whether a value is plain data (builtin scalars, bytes, text, and tuples, lists
/// and dicts of those): what a ZEO peer accepts in an extension.
pub fn is_plain_data(value: &Value) -> bool {
    match value {
        Value::None
        | Value::Bool(_)
        | Value::Int(_)
        | Value::BigInt(_)
        | Value::Float(_)
        | Value::Bytes(_)
        | Value::Str(_) => true,
        Value::Tuple(items) | Value::List(items) => items.iter().all(is_plain_data),
        Value::Dict(pairs) => pairs
            .iter()
            .all(|(k, v)| is_plain_data(k) && is_plain_data(v)),
        _ => false,
    }
}

/// The stored form of an extension dict's items: empty bytes for an empty dict,
/// else the pickle (protocol 3, ZEO's encoder).
pub fn encode_extension(items: Vec<(Value, Value)>) -> Result<Bytes, ExtensionError> {
    if items.is_empty() {
        return Ok(Bytes::new());
    }
    pickle::encode(&Value::Dict(items))
        .map(Bytes::from)
        .map_err(ExtensionError::Unpicklable)
}

/// The stored form of the extension argument a client sent in `tpc_begin`
/// (a dict, or None for none).
pub fn encode_extension_value(ext: &Value) -> Result<Bytes, ExtensionError> {
    match ext {
        Value::None => Ok(Bytes::new()),
        Value::Dict(items) => encode_extension(items.clone()),
        other => Err(ExtensionError::WrongType(other.type_name())),
    }
}

/// The items of a stored extension dict, in order (none for empty bytes).
pub fn decode_extension(stored: &[u8]) -> Result<Vec<(Value, Value)>, ExtensionError> {
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    match pickle::decode(stored).map_err(ExtensionError::Undecodable)? {
        Value::Dict(items) => Ok(items),
        other => Err(ExtensionError::NotADict(other.type_name())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_empty_forms() {
        let items = vec![(Value::from("user"), Value::from("alice"))];
        let stored = encode_extension(items.clone()).unwrap();
        assert_eq!(decode_extension(&stored).unwrap(), items);
        assert!(encode_extension(vec![]).unwrap().is_empty());
        assert!(encode_extension_value(&Value::None).unwrap().is_empty());
        assert!(decode_extension(b"").unwrap().is_empty());
        assert_eq!(
            encode_extension_value(&Value::from(3)),
            Err(ExtensionError::WrongType("int"))
        );
    }

    #[test]
    fn not_a_dict_and_garbage_are_errors() {
        let list = pickle::encode(&Value::List(vec![])).unwrap();
        assert!(matches!(
            decode_extension(&list),
            Err(ExtensionError::NotADict(_))
        ));
        assert!(matches!(
            decode_extension(b"\xff\xfe"),
            Err(ExtensionError::Undecodable(_))
        ));
    }

    #[test]
    fn plain_data_excludes_objects() {
        let plain = Value::Dict(vec![(
            Value::from("k"),
            Value::List(vec![Value::from(1i64), Value::from(&b"x"[..])]),
        )]);
        assert!(is_plain_data(&plain));
        let datetime =
            pickle::decode(b"\x80\x03cdatetime\ndate\nC\x04\x07\xe9\x01\x01\x85R.").unwrap();
        assert!(matches!(datetime, Value::Object(_)));
        let with_object = Value::Dict(vec![(Value::from("when"), datetime)]);
        assert!(!is_plain_data(&with_object));
        assert!(!is_plain_data(&Value::Set(vec![])));
    }
}

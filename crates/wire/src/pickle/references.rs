//! Persistent references inside ZODB object records, for pack / garbage collection.
//!
//! Mirrors `ZODB.serialize.referencesf` (ZODB 6.4): a record is two pickles back to
//! back (class metadata, then state), written by one Pickler so they share a memo;
//! every persistent id (PERSID/BINPERSID) in
//! either is a reference. `referencesf` keeps only *ordinary internal* references:
//! * `oid` (bytes, or a Python 2 str) → the oid;
//! * `(oid, klass)` tuple → `oid`;
//! * list forms are skipped: `['w', (oid,)]` / `['w', (oid, db)]` weak references,
//!   `['m', (db, oid, klass)]` and `['n', (db, oid)]` cross-database references,
//!   and any other list-form id (e.g. `['o', …]`).
//!
//! Ids of any other shape make `referencesf` fail an assertion; here they are a
//! [`WireError::BadReference`]. Unlike `referencesf` (which returns oids of any
//! length) we insist on 8-byte oids, the only kind ZODB storages hand out.

use super::decode::{DecodeLimits, Unpickler};
use crate::error::{Result, WireError};
use crate::value::Value;

/// The oids an object record refers to, in order of appearance (duplicates kept,
/// as `referencesf` keeps them). Weak and cross-database references are excluded.
///
/// An empty record (a deleted object) is not a pickle and is an error, as in ZODB;
/// callers skip records without data.
pub fn persistent_references(record: &[u8]) -> Result<Vec<[u8; 8]>> {
    persistent_references_with_limits(record, &DecodeLimits::default())
}

/// [`persistent_references`] with explicit decoder limits.
pub fn persistent_references_with_limits(
    record: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<[u8; 8]>> {
    // One unpickler for both pickles: the state pickle may reference the memo of
    // the class pickle (ZODB writes both with one Pickler).
    let mut unpickler = Unpickler::new(record, limits.clone());
    unpickler.load()?;
    unpickler.load()?;
    let mut oids = Vec::new();
    for pid in &unpickler.take_persistent_ids() {
        if let Some(oid) = reference_oid(pid)? {
            oids.push(oid);
        }
    }
    Ok(oids)
}

/// The oid of one persistent id, or `None` for the list forms `referencesf` skips.
pub fn reference_oid(pid: &Value) -> Result<Option<[u8; 8]>> {
    let oid = match pid {
        Value::List(_) => return Ok(None),
        Value::Tuple(items) => items
            .first()
            .ok_or_else(|| WireError::BadReference("empty tuple".to_owned()))?,
        other => other,
    };
    let raw: &[u8] = match oid {
        Value::Bytes(b) => b,
        Value::Str(s) => s.as_bytes(),
        other => {
            return Err(WireError::BadReference(format!(
                "oid is a {}",
                other.type_name()
            )))
        }
    };
    <[u8; 8]>::try_from(raw)
        .map(Some)
        .map_err(|_| WireError::BadReference(format!("oid of {} bytes", raw.len())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OID1: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 1];

    #[test]
    fn reference_shapes() {
        assert_eq!(reference_oid(&Value::from(OID1)).unwrap(), Some(OID1));
        let with_class = Value::Tuple(vec![
            Value::from(OID1),
            Value::Global {
                module: "m".into(),
                name: "C".into(),
            },
        ]);
        assert_eq!(reference_oid(&with_class).unwrap(), Some(OID1));
        let weak = Value::List(vec![
            Value::from("w"),
            Value::Tuple(vec![Value::from(OID1)]),
        ]);
        assert_eq!(reference_oid(&weak).unwrap(), None);
        assert!(reference_oid(&Value::Int(3)).is_err());
        assert!(reference_oid(&Value::from(&b"short"[..])).is_err());
        assert!(reference_oid(&Value::Tuple(vec![])).is_err());
    }

    #[test]
    fn two_pickles_needed() {
        // class pickle only: the state pickle is missing
        assert!(persistent_references(b"\x80\x03cfoo\nBar\nq\x00.").is_err());
        let record = b"\x80\x03cfoo\nBar\n.\x80\x03C\x08\x00\x00\x00\x00\x00\x00\x00\x01Q\x85.";
        assert_eq!(persistent_references(record).unwrap(), vec![OID1]);
    }
}

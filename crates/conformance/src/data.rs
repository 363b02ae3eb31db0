//! The object records the suite writes: real ZODB records (a class pickle followed
//! by a state pickle, protocol 3), so that a storage that unpickles them (a Python
//! ZEO server packing with GC, a Rust reference finder) can read them, with
//! persistent references to other oids where a case needs them.
//!
//! [`references`] finds those references again. It understands exactly the
//! records [`record`] writes (and the common `(oid, class)` BINPERSID form in
//! general); a storage with a real pickle-based reference finder should use that
//! one instead.

use bytes::Bytes;
use zeoraid_storage::{Oid, TransactionMeta};

const PROTO3: &[u8] = b"\x80\x03";

fn push_unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A ZODB record of a `persistent.mapping.PersistentMapping`-like object whose state
/// is `{'data': payload, 'r0': <ref>, 'r1': <ref>, …}`.
pub fn record_with_refs(payload: &str, refs: &[Oid]) -> Bytes {
    let mut out = Vec::new();
    // Class pickle: ((persistent.mapping.PersistentMapping), None) as a tuple.
    out.extend_from_slice(PROTO3);
    out.extend_from_slice(b"cpersistent.mapping\nPersistentMapping\n");
    out.push(b'N');
    out.push(0x86); // TUPLE2
    out.push(b'.');
    // State pickle.
    out.extend_from_slice(PROTO3);
    out.push(b'}'); // EMPTY_DICT
    push_unicode(&mut out, "data");
    push_unicode(&mut out, payload);
    out.push(b's'); // SETITEM
    for (i, oid) in refs.iter().enumerate() {
        push_unicode(&mut out, &format!("r{i}"));
        // Persistent id (oid, None): SHORT_BINBYTES oid, NONE, TUPLE2, BINPERSID.
        out.push(b'C');
        out.push(8);
        out.extend_from_slice(oid.as_bytes());
        out.push(b'N');
        out.push(0x86);
        out.push(b'Q');
        out.push(b's');
    }
    out.push(b'.');
    Bytes::from(out)
}

/// A record without references.
pub fn record(payload: &str) -> Bytes {
    record_with_refs(payload, &[])
}

/// The record of a `ZODB.blob.Blob`, exactly as ZODB writes one: the class
/// pickle `ZODB.blob Blob` (a bare global, no tuple) and the state `None` (a
/// blob's content lives in its file, not in the record). Python storages tell
/// blob records by this class (`ZODB.blob.is_blob_record`): FileStorage's undo
/// and ZEO's iterators only carry blobs for them.
pub fn blob_record() -> Bytes {
    Bytes::from_static(b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.")
}

/// The oids `data` refers to, for records written by [`record_with_refs`].
pub fn references(data: &[u8]) -> Vec<Oid> {
    let mut found = Vec::new();
    let mut i = 0;
    while i + 13 <= data.len() {
        if data[i] == b'C'
            && data[i + 1] == 8
            && data[i + 10] == b'N'
            && data[i + 11] == 0x86
            && data[i + 12] == b'Q'
        {
            if let Some(oid) = Oid::from_slice(&data[i + 2..i + 10]) {
                found.push(oid);
            }
            i += 13;
        } else {
            i += 1;
        }
    }
    found
}

/// A pickled extension dict `{'k': value}` (protocol 3), as ZODB stores
/// `extension_bytes`.
pub fn extension(value: &str) -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(PROTO3);
    out.push(b'}');
    push_unicode(&mut out, "k");
    push_unicode(&mut out, value);
    out.push(b's');
    out.push(b'.');
    Bytes::from(out)
}

/// Transaction metadata with a user, a description and a non-empty extension.
pub fn meta(user: &str, description: &str) -> TransactionMeta {
    TransactionMeta {
        user: Bytes::copy_from_slice(user.as_bytes()),
        description: Bytes::copy_from_slice(description.as_bytes()),
        extension: extension(description),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_record_is_a_blob_class_and_a_none_state() {
        let data = blob_record();
        // Class pickle (GLOBAL 'ZODB.blob Blob', BINPUT 0, STOP), then the
        // state pickle `None`.
        let (class, state) = data.split_at(21);
        assert_eq!(class, b"\x80\x03cZODB.blob\nBlob\nq\x00.");
        assert_eq!(state, b"\x80\x03N.");
        assert!(references(&data).is_empty());
    }

    #[test]
    fn references_round_trip() {
        let refs = [Oid::from_u64(1), Oid::from_u64(0x0102_0304_0506_0708)];
        assert_eq!(references(&record_with_refs("x", &refs)), refs.to_vec());
        assert!(references(&record("no refs")).is_empty());
    }

    #[test]
    fn real_reference_finder_agrees() {
        let refs = [Oid::from_u64(7), Oid::from_u64(0x0102_0304_0506_0708)];
        let found =
            zeoraid_wire::pickle::references::persistent_references(&record_with_refs("x", &refs))
                .map(|v| v.into_iter().map(Oid).collect::<Vec<_>>());
        assert_eq!(found.ok(), Some(refs.to_vec()));
    }

    #[test]
    fn extension_matches_python() {
        // pickle.dumps({'k': 'v'}, 3) without the memo opcodes ZODB would not need.
        assert_eq!(
            &extension("v")[..],
            b"\x80\x03}X\x01\x00\x00\x00kX\x01\x00\x00\x00vs."
        );
    }
}

//! Wire values ⇄ the storage model: oids and tids as 8-byte bytes, the extension
//! dict (a dict on the wire, pickled bytes in the model), and the shapes of
//! `loadBefore`, `history`, `undoLog`, `iterator_next`, `record_iternext` …
//! replies. Anything of the wrong shape is a `ClientError::Protocol`, never a panic.

use bytes::Bytes;
use zeoraid_storage::{
    CurrentRecord, DataRecord, HistoryEntry, LoadedRecord, Oid, Tid, TransactionMeta, UndoEntry,
};
use zeoraid_wire::extension::{decode_extension, encode_extension, is_plain_data};
use zeoraid_wire::{pickle, Value};

use crate::error::ClientError;

pub(crate) fn protocol(what: impl Into<String>) -> ClientError {
    ClientError::Protocol(what.into())
}

pub(crate) fn oid_of(v: &Value, what: &str) -> Result<Oid, ClientError> {
    v.as_bytes8()
        .map(Oid)
        .ok_or_else(|| protocol(format!("{what}: expected an 8-byte oid, got {}", short(v))))
}

pub(crate) fn tid_of(v: &Value, what: &str) -> Result<Tid, ClientError> {
    v.as_bytes8()
        .map(Tid)
        .ok_or_else(|| protocol(format!("{what}: expected an 8-byte tid, got {}", short(v))))
}

pub(crate) fn opt_tid(v: &Value, what: &str) -> Result<Option<Tid>, ClientError> {
    match v {
        Value::None => Ok(None),
        other => tid_of(other, what).map(Some),
    }
}

pub(crate) fn bytes_of(v: &Value, what: &str) -> Result<Bytes, ClientError> {
    v.as_shared_bytes()
        .ok_or_else(|| protocol(format!("{what}: expected bytes, got a {}", v.type_name())))
}

pub(crate) fn opt_bytes(v: &Value, what: &str) -> Result<Option<Bytes>, ClientError> {
    match v {
        Value::None => Ok(None),
        other => bytes_of(other, what).map(Some),
    }
}

/// Some text (ZODB sends user/description as bytes, but a str is tolerated).
fn text_bytes(v: Option<&Value>) -> Bytes {
    match v {
        Some(Value::Bytes(b)) => b.clone(),
        Some(Value::Str(s)) => Bytes::copy_from_slice(s.as_bytes()),
        _ => Bytes::new(),
    }
}

fn uint(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_int)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// A short description of a value for error messages.
fn short(v: &Value) -> String {
    let mut s = v.python_repr();
    if s.len() > 80 {
        let mut cut = 80;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

pub(crate) fn items<'a>(v: &'a Value, what: &str) -> Result<&'a [Value], ClientError> {
    v.as_tuple_or_list().ok_or_else(|| {
        protocol(format!(
            "{what}: expected a tuple or list, got {}",
            short(v)
        ))
    })
}

/// The extension dict to send in `tpc_begin` for the stored (pickled) form.
/// Only plain data may go: a ZEO server closes the connection on any class
/// reference it does not allow.
pub(crate) fn extension_to_wire(stored: &[u8]) -> Result<Value, ClientError> {
    let items = decode_extension(stored).map_err(|e| ClientError::Config(e.to_string()))?;
    let value = Value::Dict(items);
    if !is_plain_data(&value) {
        return Err(ClientError::Config(
            "transaction extension holds objects a ZEO server refuses (only plain data can be sent)"
                .into(),
        ));
    }
    Ok(value)
}

/// The stored form of an extension dict received from the server.
pub(crate) fn extension_from_items(items: Vec<(Value, Value)>) -> Result<Bytes, ClientError> {
    encode_extension(items).map_err(|e| ClientError::Config(e.to_string()))
}

/// The standard keys of a dict, and the rest (the extension items).
type SplitDict<'a> = (Vec<(&'a str, &'a Value)>, Vec<(Value, Value)>);

/// Splits a `history`/`undoLog` dict into its standard keys and the extension
/// keys (everything else, in order).
fn split_dict<'a>(
    v: &'a Value,
    standard: &[&str],
    what: &str,
) -> Result<SplitDict<'a>, ClientError> {
    let pairs = v
        .as_dict()
        .ok_or_else(|| protocol(format!("{what}: expected a dict, got {}", short(v))))?;
    let mut known = Vec::new();
    let mut ext = Vec::new();
    for (k, val) in pairs {
        match k.as_str() {
            Some(key) if standard.contains(&key) => known.push((key, val)),
            _ => ext.push((k.clone(), val.clone())),
        }
    }
    Ok((known, ext))
}

fn lookup<'a>(known: &[(&str, &'a Value)], key: &str) -> Option<&'a Value> {
    known.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `loadBefore` reply: `None` or `(data, start, end)`.
pub(crate) fn loaded_record(v: &Value) -> Result<Option<LoadedRecord>, ClientError> {
    if v.is_none() {
        return Ok(None);
    }
    match items(v, "loadBefore")? {
        [data, start, end] => Ok(Some(LoadedRecord {
            data: bytes_of(data, "loadBefore data")?,
            start: tid_of(start, "loadBefore start")?,
            end: opt_tid(end, "loadBefore end")?,
        })),
        other => Err(protocol(format!(
            "loadBefore: expected 3 items, got {}",
            other.len()
        ))),
    }
}

/// One `history` dict.
pub(crate) fn history_entry(v: &Value) -> Result<HistoryEntry, ClientError> {
    const STANDARD: &[&str] = &["time", "user_name", "description", "tid", "size"];
    let (known, ext) = split_dict(v, STANDARD, "history entry")?;
    let tid = lookup(&known, "tid").ok_or_else(|| protocol("history entry without tid"))?;
    Ok(HistoryEntry {
        tid: tid_of(tid, "history tid")?,
        meta: TransactionMeta {
            user: text_bytes(lookup(&known, "user_name")),
            description: text_bytes(lookup(&known, "description")),
            extension: extension_from_items(ext)?,
        },
        size: uint(lookup(&known, "size")),
    })
}

/// One `undoLog`/`undoInfo` dict. The tid is the decoded `id` when that is base64
/// of 8 bytes (FileStorage, RelStorage), else taken from `time`.
pub(crate) fn undo_entry(v: &Value) -> Result<UndoEntry, ClientError> {
    const STANDARD: &[&str] = &["id", "time", "user_name", "description", "size"];
    let (known, ext) = split_dict(v, STANDARD, "undo entry")?;
    let id = lookup(&known, "id").ok_or_else(|| protocol("undo entry without id"))?;
    let id = match id {
        Value::Bytes(b) => b.clone(),
        Value::Str(s) => Bytes::copy_from_slice(s.as_bytes()),
        other => return Err(protocol(format!("undo entry id: {}", short(other)))),
    };
    let tid = match base64_decode(&id).and_then(|raw| Tid::from_slice(&raw)) {
        Some(tid) => tid,
        None => lookup(&known, "time")
            .and_then(Value::as_float)
            .map(Tid::from_unix_time)
            .ok_or_else(|| protocol("undo entry: id is not a tid and there is no time"))?,
    };
    Ok(UndoEntry {
        id,
        tid,
        meta: TransactionMeta {
            user: text_bytes(lookup(&known, "user_name")),
            description: text_bytes(lookup(&known, "description")),
            extension: extension_from_items(ext)?,
        },
        size: uint(lookup(&known, "size")),
    })
}

/// `record_iternext` reply: `(oid, tid, data, next_oid or None)`.
pub(crate) fn current_record(v: &Value) -> Result<CurrentRecord, ClientError> {
    match items(v, "record_iternext")? {
        [oid, tid, data, next] => Ok(CurrentRecord {
            oid: oid_of(oid, "record_iternext oid")?,
            tid: tid_of(tid, "record_iternext tid")?,
            data: bytes_of(data, "record_iternext data")?,
            next: match next {
                Value::None => None,
                n => Some(oid_of(n, "record_iternext next")?),
            },
        }),
        other => Err(protocol(format!(
            "record_iternext: expected 4 items, got {}",
            other.len()
        ))),
    }
}

/// `iterator_next` reply (not None): `(tid, status, user, description, ext)`.
pub(crate) fn transaction_header(v: &Value) -> Result<(Tid, u8, TransactionMeta), ClientError> {
    match items(v, "iterator_next")? {
        [tid, status, user, description, ext, ..] => {
            let status = match status {
                Value::Str(s) => s.bytes().next().unwrap_or(b' '),
                Value::Bytes(b) => b.first().copied().unwrap_or(b' '),
                other => return Err(protocol(format!("iterator_next status: {}", short(other)))),
            };
            let ext = match ext {
                Value::Dict(items) => extension_from_items(items.clone())?,
                Value::None => Bytes::new(),
                Value::Bytes(raw) => raw.clone(),
                other => {
                    return Err(protocol(format!(
                        "iterator_next extension: {}",
                        short(other)
                    )))
                }
            };
            Ok((
                tid_of(tid, "iterator_next tid")?,
                status,
                TransactionMeta {
                    user: text_bytes(Some(user)),
                    description: text_bytes(Some(description)),
                    extension: ext,
                },
            ))
        }
        other => Err(protocol(format!(
            "iterator_next: expected 5 items, got {}",
            other.len()
        ))),
    }
}

/// `iterator_record_next` reply (not None): `(oid, tid, data, data_txn)`.
pub(crate) fn data_record(v: &Value) -> Result<DataRecord, ClientError> {
    match items(v, "iterator_record_next")? {
        [oid, tid, data, data_txn, ..] => {
            let data = opt_bytes(data, "iterator_record_next data")?;
            let has_blob = data.as_deref().is_some_and(is_blob_record);
            Ok(DataRecord {
                oid: oid_of(oid, "iterator_record_next oid")?,
                tid: tid_of(tid, "iterator_record_next tid")?,
                data,
                data_txn: opt_tid(data_txn, "iterator_record_next data_txn")?,
                has_blob,
            })
        }
        other => Err(protocol(format!(
            "iterator_record_next: expected 4 items, got {}",
            other.len()
        ))),
    }
}

/// ZODB's `is_blob_record`: the record's class pickle is `ZODB.blob.Blob` (the
/// only way a ZEO client can tell; the protocol does not say which records have
/// blobs).
pub(crate) fn is_blob_record(data: &[u8]) -> bool {
    if !data.windows(9).any(|w| w == b"ZODB.blob") {
        return false;
    }
    let is_blob = |v: &Value| matches!(v, Value::Global { module, name } if module == "ZODB.blob" && name == "Blob");
    match pickle::decode_prefix(data) {
        Ok((Value::Tuple(items), _)) => items.first().is_some_and(is_blob),
        Ok((v, _)) => is_blob(&v),
        Err(_) => false,
    }
}

/// Standard base64 (with padding), as Python's `encodebytes` writes undo ids.
pub(crate) fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if text.len() & 3 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (i, chunk) in text.chunks(4).enumerate() {
        let last = i == text.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64() {
        // From traces/05_undo: b'BA026S5mrO4=' is the tid 040d36e92e66acee.
        assert_eq!(
            base64_decode(b"BA026S5mrO4=").unwrap(),
            vec![0x04, 0x0d, 0x36, 0xe9, 0x2e, 0x66, 0xac, 0xee]
        );
        assert_eq!(
            base64_decode(b"AAAAAAAAAAE=").unwrap(),
            vec![0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(base64_decode(b"not an undo id"), None);
        assert_eq!(base64_decode(b"YQ==").unwrap(), b"a".to_vec());
    }

    #[test]
    fn extension_round_trip() {
        let stored = b"\x80\x03}X\x01\x00\x00\x00kX\x01\x00\x00\x00vs.";
        let wire = extension_to_wire(stored).unwrap();
        let back = extension_from_items(wire.as_dict().unwrap().to_vec()).unwrap();
        assert_eq!(&back[..], &stored[..]);
        assert_eq!(extension_to_wire(b"").unwrap(), Value::Dict(vec![]));
        assert!(extension_from_items(vec![]).unwrap().is_empty());
        // A class reference cannot be sent.
        assert!(extension_to_wire(b"\x80\x03}X\x01\x00\x00\x00kcdatetime\ndate\ns.").is_err());
    }

    #[test]
    fn blob_records() {
        assert!(is_blob_record(
            b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N."
        ));
        assert!(!is_blob_record(
            b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01."
        ));
        assert!(!is_blob_record(b"ZODB.blob garbage"));
    }

    #[test]
    fn history_dict() {
        let d = Value::dict_from_pairs([
            ("k", Value::from("v")),
            ("time", Value::Float(1.0)),
            ("user_name", Value::from(&b"u"[..])),
            ("description", Value::from(&b"d"[..])),
            ("tid", Value::from([0u8, 0, 0, 0, 0, 0, 0, 5])),
            ("size", Value::Int(12)),
        ]);
        let h = history_entry(&d).unwrap();
        assert_eq!(h.tid, Tid::from_u64(5));
        assert_eq!(h.size, 12);
        assert_eq!(&h.meta.user[..], b"u");
        assert_eq!(
            &h.meta.extension[..],
            b"\x80\x03}X\x01\x00\x00\x00kX\x01\x00\x00\x00vs."
        );
        assert!(history_entry(&Value::None).is_err());
    }
}

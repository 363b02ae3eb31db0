//! Comparing transactions of two backends, for recovery (the common prefix) and
//! `verify` (backends identical record by record).
//!
//! Two transactions are *the same* when their tids, status bytes, user and
//! description are equal, their extensions are equal **decoded** (Python's
//! pickler and ours may write the same dict with other bytes, or in another key
//! order; undecodable extensions are compared as bytes), and their records are
//! the same: per oid the last record of the transaction (a ZEO blob store makes
//! Python's FileStorage write two records for the oid, the plain one first),
//! compared by oid, back-pointer (`data_txn`) and data checksum. A back-pointer
//! whose data one side resolved and the other did not is the same record.

use std::collections::BTreeMap;

use bytes::Bytes;
use zeoraid_storage::{DataRecord, Oid, Tid, TransactionMeta, TransactionRecord};
use zeoraid_wire::{pickle, Value};

/// `03ec5b2a0d1eb9bb (2026-11-23 18:49:07.157609)`, for messages.
pub(crate) fn tid_str(tid: Tid) -> String {
    format!("{:016x} ({tid})", tid.as_u64())
}

/// A 64-bit FNV-1a checksum of record data (messages and cheap comparison).
pub(crate) fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The records of a transaction as compared: per oid the last one, by oid.
pub(crate) fn normalized(txn: &TransactionRecord) -> BTreeMap<Oid, &DataRecord> {
    let mut out = BTreeMap::new();
    for r in &txn.records {
        out.insert(r.oid, r);
    }
    out
}

/// Sorts dict entries (recursively) so that key order does not matter.
fn canonical(v: Value) -> Value {
    match v {
        Value::Dict(entries) => {
            let mut entries: Vec<(Value, Value)> = entries
                .into_iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect();
            entries.sort_by_key(|(k, _)| format!("{k:?}"));
            Value::Dict(entries)
        }
        Value::List(items) => Value::List(items.into_iter().map(canonical).collect()),
        Value::Tuple(items) => Value::Tuple(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn decoded_extension(ext: &Bytes) -> Option<Value> {
    if ext.is_empty() {
        return Some(Value::Dict(Vec::new()));
    }
    pickle::decode(ext).ok().map(canonical)
}

/// Whether two stored extensions hold the same dict.
pub(crate) fn extensions_equal(a: &Bytes, b: &Bytes) -> bool {
    if a == b {
        return true;
    }
    match (decoded_extension(a), decoded_extension(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn meta_difference(a: &TransactionMeta, b: &TransactionMeta) -> Option<String> {
    if a.user != b.user {
        return Some(format!("user {:?} vs {:?}", a.user, b.user));
    }
    if a.description != b.description {
        return Some(format!(
            "description {:?} vs {:?}",
            a.description, b.description
        ));
    }
    if !extensions_equal(&a.extension, &b.extension) {
        return Some("extension differs".into());
    }
    None
}

fn data_str(data: &Option<Bytes>) -> String {
    match data {
        None => "no data".into(),
        Some(d) => format!("{} bytes, checksum {:016x}", d.len(), checksum(d)),
    }
}

/// How record `a` differs from `b` (same oid), if it does.
fn record_difference(a: &DataRecord, b: &DataRecord, with_blob_flag: bool) -> Option<String> {
    if a.data_txn != b.data_txn {
        return Some(format!(
            "back-pointer {:?} vs {:?}",
            a.data_txn.map(tid_str),
            b.data_txn.map(tid_str)
        ));
    }
    let resolved_one_side = a.data_txn.is_some() && (a.data.is_none() || b.data.is_none());
    if !resolved_one_side && a.data != b.data {
        return Some(format!("{} vs {}", data_str(&a.data), data_str(&b.data)));
    }
    if with_blob_flag && a.has_blob != b.has_blob {
        return Some(format!(
            "blob {} vs {}",
            if a.has_blob { "present" } else { "absent" },
            if b.has_blob { "present" } else { "absent" }
        ));
    }
    None
}

/// How transaction `a` (of backend `an`) differs from `b` (of `bn`), both with
/// the same tid; `None` when they are the same. `with_blob_flag` also compares
/// the records' `has_blob` (verify; recovery leaves it out, since backends of
/// different kinds decide it differently).
pub(crate) fn transaction_difference(
    a: &TransactionRecord,
    an: &str,
    b: &TransactionRecord,
    bn: &str,
    with_blob_flag: bool,
) -> Option<String> {
    if a.status != b.status {
        return Some(format!(
            "status {:?} on {an} vs {:?} on {bn}",
            char::from(a.status),
            char::from(b.status)
        ));
    }
    if let Some(d) = meta_difference(&a.meta, &b.meta) {
        return Some(format!("metadata: {d} ({an} vs {bn})"));
    }
    let (ra, rb) = (normalized(a), normalized(b));
    for oid in ra.keys().chain(rb.keys()) {
        match (ra.get(oid), rb.get(oid)) {
            (Some(x), Some(y)) => {
                if let Some(d) = record_difference(x, y, with_blob_flag) {
                    return Some(format!("record of oid {oid:?}: {d} ({an} vs {bn})"));
                }
            }
            (Some(_), None) => return Some(format!("{an} has a record of oid {oid:?}, {bn} not")),
            (None, Some(_)) => return Some(format!("{bn} has a record of oid {oid:?}, {an} not")),
            (None, None) => {}
        }
    }
    None
}

/// The bytes a transaction's records hold (progress and rate limit).
pub(crate) fn data_bytes(txn: &TransactionRecord) -> u64 {
    txn.records
        .iter()
        .map(|r| r.data.as_ref().map_or(0, |d| d.len() as u64))
        .sum::<u64>()
        + txn.meta.user.len() as u64
        + txn.meta.description.len() as u64
        + txn.meta.extension.len() as u64
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn extensions_compare_decoded() {
        let enc = |v: &Value| Bytes::from(pickle::encode(v).unwrap());
        let a = Value::Dict(vec![
            (Value::Str("a".into()), Value::Int(1)),
            (Value::Str("b".into()), Value::Int(2)),
        ]);
        let b = Value::Dict(vec![
            (Value::Str("b".into()), Value::Int(2)),
            (Value::Str("a".into()), Value::Int(1)),
        ]);
        assert!(extensions_equal(&enc(&a), &enc(&b)));
        assert!(extensions_equal(&Bytes::new(), &enc(&Value::Dict(vec![]))));
        assert!(!extensions_equal(&Bytes::new(), &enc(&a)));
    }
}

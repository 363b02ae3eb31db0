//! `persistent_references` against real ZODB 6.4 records and the oids
//! `ZODB.serialize.referencesf` found in them (tests/fixtures/zodb_records.json,
//! made by tests/fixtures/gen_zodb_records.py).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use zeoraid_wire::pickle::{persistent_references, DecodeLimits, Unpickler};
use zeoraid_wire::Value;

#[test]
fn references_match_referencesf() {
    let text = std::fs::read_to_string(common::fixtures_dir().join("zodb_records.json")).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(records.len() > 100);
    let mut list_forms = std::collections::BTreeSet::new();
    let mut total_refs = 0;
    for record in &records {
        let data = common::hex_field(record, "data");
        let expected: Vec<[u8; 8]> = record["refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| <[u8; 8]>::try_from(hex::decode(h.as_str().unwrap()).unwrap()).unwrap())
            .collect();
        let found = persistent_references(&data).unwrap_or_else(|e| panic!("{record}: {e}"));
        assert_eq!(
            found,
            expected,
            "record {}",
            common::str_field(record, "oid")
        );
        total_refs += found.len();

        // Both pickles decode (sharing the memo), together spanning the whole record.
        let mut unpickler = Unpickler::new(&data, DecodeLimits::default());
        unpickler.load().unwrap();
        unpickler.load().unwrap();
        assert_eq!(unpickler.position(), data.len());
        for pid in &unpickler.take_persistent_ids() {
            if let Value::List(items) = pid {
                if let Some(tag) = items.first().and_then(Value::as_str) {
                    list_forms.insert(tag.to_owned());
                } else if let Some(tag) = items.first().and_then(Value::as_bytes) {
                    list_forms.insert(String::from_utf8_lossy(tag).into_owned());
                }
            }
        }
    }
    assert!(total_refs > 100);
    // Weak references and cross-database references were present and skipped.
    assert!(list_forms.contains("w"), "{list_forms:?}");
    assert!(
        list_forms.contains("m") || list_forms.contains("n"),
        "{list_forms:?}"
    );
}

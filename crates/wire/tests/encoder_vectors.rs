//! Byte-exact checks against `encoder_vectors.jsonl`: what ZEO 6.2's encoders emit
//! (pickle `Z5` and server-side msgpack `M5`) for edge cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{hex_field, load_jsonl, str_field};
use zeoraid_wire::exception::ErrorPayload;
use zeoraid_wire::{
    decode_message, encode_message, msgpack, pickle, Encoding, Message, MessageKind, Value,
};

fn vectors() -> Vec<serde_json::Value> {
    load_jsonl("encoder_vectors.jsonl")
}

fn vector(name: &str) -> serde_json::Value {
    vectors()
        .into_iter()
        .find(|v| str_field(v, "name") == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

#[test]
fn every_pickle_vector_decodes_to_python_repr_and_reencodes_identically() {
    let all = vectors();
    assert_eq!(all.len(), 19);
    for v in &all {
        let name = str_field(v, "name");
        let bytes = hex_field(v, "pickle");
        let value = pickle::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(value.python_repr(), str_field(v, "value"), "{name}: repr");
        assert_eq!(
            pickle::encode(&value).unwrap(),
            bytes,
            "{name}: value re-encode"
        );
        let message = decode_message(&bytes, Encoding::Pickle).unwrap();
        assert_eq!(
            encode_message(&message, Encoding::Pickle).unwrap(),
            bytes,
            "{name}: message re-encode"
        );
    }
}

#[test]
fn every_msgpack_vector_matches_or_fails_like_python() {
    for v in &vectors() {
        let name = str_field(v, "name");
        let expected = str_field(v, "msgpack_server");
        let value = pickle::decode(&hex_field(v, "pickle")).unwrap();
        match hex::decode(expected) {
            Ok(bytes) => {
                // The same Python value, packed by msgpack: identical bytes.
                assert_eq!(msgpack::encode(&value).unwrap(), bytes, "{name}: encode");
                let decoded = msgpack::decode(&bytes).unwrap();
                assert_eq!(
                    msgpack::encode(&decoded).unwrap(),
                    bytes,
                    "{name}: re-encode"
                );
                let message = decode_message(&bytes, Encoding::Msgpack).unwrap();
                assert_eq!(
                    encode_message(&message, Encoding::Msgpack).unwrap(),
                    bytes,
                    "{name}: message"
                );
            }
            Err(_) => {
                // Python raised (e.g. OverflowError for ints beyond 64 bits).
                assert!(expected.starts_with("OverflowError"), "{name}: {expected}");
                assert!(
                    msgpack::encode(&value).is_err(),
                    "{name}: should not encode"
                );
            }
        }
    }
}

/// Typed error payloads, built from Rust values, must give Python's exact bytes.
#[test]
fn error_vectors_from_typed_payloads() {
    let oid0 = [0u8; 8];
    let oid1 = [0, 0, 0, 0, 0, 0, 0, 1];
    let cases: Vec<(&str, i64, ErrorPayload)> = vec![
        (
            "error_ConflictError",
            3,
            ErrorPayload::conflict(
                oid1,
                Some("persistent.mapping.PersistentMapping".into()),
                [4; 8],
                [3; 8],
            ),
        ),
        (
            "error_ReadConflictError",
            3,
            ErrorPayload::read_conflict(oid1, None, [4; 8], [3; 8]),
        ),
        ("error_POSKeyError", 4, ErrorPayload::PosKey(oid0)),
        ("error_ReadOnlyError", 5, ErrorPayload::ReadOnly),
        (
            "error_StorageTransactionError",
            6,
            ErrorPayload::StorageTransaction(vec![Value::None, Value::Int(12345)]),
        ),
        (
            "error_BTreesConflictError",
            6,
            ErrorPayload::BTreesConflict {
                p1: 1,
                p2: 2,
                p3: 3,
                reason: 4,
            },
        ),
        (
            "error_MultipleUndoErrors",
            6,
            ErrorPayload::MultipleUndo {
                errors: vec![("reason".into(), Some(oid0))],
            },
        ),
        (
            "error_UndoError",
            6,
            ErrorPayload::Undo {
                reason: "nope".into(),
                oid: Some(oid0),
            },
        ),
        (
            "error_ValueError",
            6,
            ErrorPayload::value_error("unknown storage: 2"),
        ),
        ("error_KeyError", 6, ErrorPayload::key_error(3)),
    ];
    for (name, msgid, payload) in cases {
        let v = vector(name);
        let message = Message::error_reply(Value::Int(msgid), &payload);
        assert_eq!(
            encode_message(&message, Encoding::Pickle).unwrap(),
            hex_field(&v, "pickle"),
            "{name} pickle"
        );
        assert_eq!(
            encode_message(&message, Encoding::Msgpack).unwrap(),
            hex_field(&v, "msgpack_server"),
            "{name} msgpack"
        );
        // And back: both encodings parse to the same typed payload.
        for (encoding, field) in [
            (Encoding::Pickle, "pickle"),
            (Encoding::Msgpack, "msgpack_server"),
        ] {
            let decoded = decode_message(&hex_field(&v, field), encoding).unwrap();
            assert_eq!(decoded.kind, MessageKind::ErrorReply);
            assert_eq!(
                ErrorPayload::from_value(&decoded.args).unwrap(),
                payload,
                "{name} {field} parse"
            );
        }
    }
}

/// A few messages built by hand equal the vectors.
#[test]
fn hand_built_messages() {
    let cases: Vec<(&str, Message)> = vec![
        ("heartbeat", Message::heartbeat()),
        (
            "call_sync_register",
            Message::call(1, "register", ("1", false)),
        ),
        (
            "callback_info",
            Message::one_way(
                "info",
                (Value::dict_from_pairs([("length", 2), ("size", 595)]),),
            ),
        ),
        (
            "callback_invalidateTransaction",
            Message::one_way(
                "invalidateTransaction",
                (
                    [0x04u8, 0x0d, 0x36, 0xde, 0x84, 0x3a, 0xaf, 0xee],
                    Value::list([[0u8, 0, 0, 0, 0, 0, 0, 1]]),
                ),
            ),
        ),
        (
            "reply_one_item_dict_list",
            Message::reply(
                Value::Int(9),
                (
                    Value::dict_from_pairs([("a", 1)]),
                    Value::list([[0u8; 8]]),
                    Value::List(vec![]),
                    Value::Dict(vec![]),
                ),
            ),
        ),
        (
            "reply_list_1001",
            Message::reply(Value::Int(10), Value::list(0..1001)),
        ),
    ];
    for (name, message) in cases {
        let v = vector(name);
        assert_eq!(
            encode_message(&message, Encoding::Pickle).unwrap(),
            hex_field(&v, "pickle"),
            "{name}"
        );
        assert_eq!(
            encode_message(&message, Encoding::Msgpack).unwrap(),
            hex_field(&v, "msgpack_server"),
            "{name} msgpack"
        );
    }
}

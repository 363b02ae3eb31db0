//! Every frame captured from real ZEO 6.2 clients and servers (tests/fixtures/NN_*.jsonl)
//! decodes, reads back as Python's `repr`, and re-encodes to the very same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{hex_field, load_jsonl, str_field, trace_files};
use zeoraid_wire::handshake::{client_reply, parse_client_handshake, ClientHandshake};
use zeoraid_wire::{decode_message, encode_message, msgpack, pickle, Encoding};

#[test]
fn all_trace_frames_decode_and_reencode() {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for file in trace_files() {
        for frame in load_jsonl(&file) {
            let kind = str_field(&frame, "kind").to_owned();
            let seq = frame.get("seq").cloned().unwrap_or_default();
            let at = format!("{file} seq {seq}");
            let payload = hex_field(&frame, "hex");
            *counts.entry(kind.clone()).or_default() += 1;
            match kind.as_str() {
                "pickle" | "msgpack" => {
                    let encoding = if kind == "pickle" {
                        Encoding::Pickle
                    } else {
                        Encoding::Msgpack
                    };
                    let value = encoding
                        .decode_value(&payload)
                        .unwrap_or_else(|e| panic!("{at}: {e}"));
                    assert_eq!(
                        value.python_repr(),
                        str_field(&frame, "decoded"),
                        "{at}: repr"
                    );
                    assert_eq!(
                        encoding.encode_value(&value).unwrap(),
                        payload,
                        "{at}: value re-encode"
                    );
                    let message =
                        decode_message(&payload, encoding).unwrap_or_else(|e| panic!("{at}: {e}"));
                    assert_eq!(
                        encode_message(&message, encoding).unwrap(),
                        payload,
                        "{at}: message re-encode"
                    );
                    // The other codec decodes nothing it should not: cross-check the model.
                    if kind == "pickle" {
                        assert!(pickle::decode(&payload).is_ok());
                    } else {
                        assert!(msgpack::decode(&payload).is_ok());
                    }
                }
                "handshake" => {
                    if str_field(&frame, "dir") == "S->C" {
                        let (reply, _) =
                            client_reply(&payload).expect("client accepts server announcement");
                        assert_eq!(reply, payload, "{at}");
                    } else {
                        match parse_client_handshake(&payload) {
                            ClientHandshake::Protocol(_) | ClientHandshake::Ruok => {}
                            ClientHandshake::Unsupported(p) => assert_eq!(p, b"Z4", "{at}"),
                        }
                    }
                }
                "raw" => {
                    // The ruok status reply: a JSON object, not a pickle.
                    let json: serde_json::Value =
                        serde_json::from_slice(&payload).expect("ruok JSON");
                    assert!(json.is_object(), "{at}");
                }
                other => panic!("{at}: unknown kind {other}"),
            }
        }
    }
    assert_eq!(counts.get("pickle"), Some(&388));
    assert_eq!(counts.get("msgpack"), Some(&49));
}

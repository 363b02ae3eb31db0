//! Property tests: no input makes a decoder panic, and every builtin value survives
//! encode → decode unchanged in both codecs. Case counts are bounded so this runs
//! in seconds; the cargo-fuzz targets in `crates/wire/fuzz/` go further.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use num_bigint::BigInt;
use proptest::prelude::*;
use zeoraid_wire::{decode_message, msgpack, pickle, Encoding, FrameDecoder, Message, Value};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Arbitrary values of the kinds both encoders support.
fn builtin_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop::collection::vec(any::<u8>(), 9..40)
            .prop_map(|b| Value::from_bigint(BigInt::from_signed_bytes_le(&b))),
        any::<f64>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Value::from),
        ".{0,40}".prop_map(Value::Str),
    ];
    leaf.prop_recursive(6, 256, 12, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..12).prop_map(Value::Tuple),
            prop::collection::vec(inner.clone(), 0..12).prop_map(Value::List),
            prop::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Dict),
        ]
    })
}

/// msgpack has no list/tuple distinction and no ints beyond u64: what Python
/// would get back from `unpackb(..., use_list=False)`.
fn as_msgpack_sees_it(v: &Value) -> Value {
    match v {
        Value::List(items) | Value::Tuple(items) => {
            Value::Tuple(items.iter().map(as_msgpack_sees_it).collect())
        }
        Value::Dict(pairs) => Value::Dict(
            pairs
                .iter()
                .map(|(k, v)| (as_msgpack_sees_it(k), as_msgpack_sees_it(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What msgpack (as ZEO uses it) can carry: ints up to 64 bits, and dict keys that
/// are str or bytes (`strict_map_key`).
fn fits_msgpack(v: &Value) -> bool {
    match v {
        Value::BigInt(n) => u64::try_from(n).is_ok(),
        Value::List(items) | Value::Tuple(items) => items.iter().all(fits_msgpack),
        Value::Dict(pairs) => pairs
            .iter()
            .all(|(k, v)| matches!(k, Value::Str(_) | Value::Bytes(_)) && fits_msgpack(v)),
        _ => true,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frame_decoder_never_panics(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        for chunk in chunks {
            buf.extend_from_slice(&chunk);
            while let Ok(Some(frame)) = dec.decode(&mut buf) {
                prop_assert!(frame.len() <= 1024);
            }
        }
    }

    #[test]
    fn pickle_decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = pickle::decode(&data);
        let _ = pickle::persistent_references(&data);
        let _ = decode_message(&data, Encoding::Pickle);
    }

    #[test]
    fn pickle_decoder_never_panics_on_opcode_soup(
        ops in prop::collection::vec(prop::sample::select(b"()0125FIJKLMNPQRSTUVXabcdeghijlopqrstu}]G.BC\x80\x81\x82\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8f\x90\x91\x92\x93\x94\x95\x96\n\x00\x01\x02".to_vec()), 0..256)
    ) {
        let _ = pickle::decode(&ops);
        let _ = pickle::persistent_references(&ops);
    }

    #[test]
    fn msgpack_decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = msgpack::decode(&data);
        let _ = decode_message(&data, Encoding::Msgpack);
    }

    #[test]
    fn mutated_valid_pickles_never_panic(value in builtin_value(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = pickle::encode(&value).unwrap();
        for (index, byte) in flips {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = pickle::decode(&bytes);
        let _ = decode_message(&bytes, Encoding::Pickle);
    }

    #[test]
    fn pickle_round_trip(value in builtin_value()) {
        let bytes = pickle::encode(&value).unwrap();
        let back = pickle::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &value);
        prop_assert_eq!(pickle::encode(&back).unwrap(), bytes);
    }

    #[test]
    fn msgpack_round_trip(value in builtin_value().prop_filter("msgpack ints are 64-bit", fits_msgpack)) {
        let bytes = msgpack::encode(&value).unwrap();
        let back = msgpack::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &as_msgpack_sees_it(&value));
        prop_assert_eq!(msgpack::encode(&back).unwrap(), bytes);
    }

    #[test]
    fn message_round_trip(msgid in any::<i64>(), name in "[a-z_]{1,20}", args in builtin_value()) {
        for encoding in [Encoding::Pickle, Encoding::Msgpack] {
            if encoding == Encoding::Msgpack && !fits_msgpack(&args) {
                continue;
            }
            let m = Message::call(msgid, name.clone(), args.clone());
            let Ok(bytes) = zeoraid_wire::encode_message(&m, encoding) else { continue };
            let back = decode_message(&bytes, encoding).unwrap();
            prop_assert_eq!(back.kind, m.kind);
            prop_assert_eq!(&back.name, &m.name);
        }
    }
}

//! The msgpack codec (`M5` servers), mapped onto the same [`Value`] model as pickle.
//!
//! Decoding follows ZEO's `unpackb(data, raw=False, use_list=False)`: arrays become
//! tuples, str must be UTF-8, bin is bytes, maps are dicts (in wire order) whose keys
//! must be str or bytes (msgpack-python's default `strict_map_key=True`).
//! Encoding follows `packb(..., use_bin_type=True)`: minimal int widths (unsigned
//! forms for non-negative ints), float64, str8/16/32, bin8/16/32 — exactly what
//! rmpv's `write_value` emits. Ints beyond u64/i64 fail like Python's
//! `OverflowError`; sets and opaque pickle values are not encodable.

use num_bigint::BigInt;
use num_traits::ToPrimitive;
use rmpv::Value as Mp;

use crate::error::{Result, WireError};
use crate::pickle::DecodeLimits;
use crate::value::Value;

/// Decode one msgpack value that must span all of `data`.
pub fn decode(data: &[u8]) -> Result<Value> {
    decode_with_limits(data, &DecodeLimits::default())
}

/// [`decode`] with explicit limits (only `max_depth` applies: rmpv never
/// preallocates from length prefixes, so memory is bounded by the input size).
pub fn decode_with_limits(data: &[u8], limits: &DecodeLimits) -> Result<Value> {
    let mut reader = data;
    // rmpv counts a level for every value and again for str/bin bodies.
    let rmpv_depth = limits.max_depth.saturating_mul(2).saturating_add(4);
    let mp = rmpv::decode::read_value_with_max_depth(&mut reader, rmpv_depth)
        .map_err(|e| WireError::Msgpack(e.to_string()))?;
    if !reader.is_empty() {
        return Err(WireError::TrailingBytes {
            count: reader.len(),
        });
    }
    from_msgpack(mp, 0, limits.max_depth)
}

fn from_msgpack(mp: Mp, depth: usize, max_depth: usize) -> Result<Value> {
    if depth > max_depth {
        return Err(WireError::LimitExceeded {
            what: "nesting depth",
            limit: max_depth as u64,
        });
    }
    Ok(match mp {
        Mp::Nil => Value::None,
        Mp::Boolean(b) => Value::Bool(b),
        Mp::Integer(n) => match (n.as_i64(), n.as_u64()) {
            (Some(small), _) => Value::Int(small),
            (None, Some(big)) => Value::from(big),
            (None, None) => return Err(WireError::Msgpack("integer out of range".to_owned())),
        },
        Mp::F32(f) => Value::Float(f64::from(f)),
        Mp::F64(f) => Value::Float(f),
        Mp::String(s) => match s.into_str() {
            Some(s) => Value::Str(s),
            None => return Err(WireError::InvalidUtf8 { offset: 0 }),
        },
        Mp::Binary(b) => Value::Bytes(b.into()),
        Mp::Array(items) => Value::Tuple(
            items
                .into_iter()
                .map(|item| from_msgpack(item, depth + 1, max_depth))
                .collect::<Result<_>>()?,
        ),
        Mp::Map(pairs) => Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    // Python's unpackb(strict_map_key=True), ZEO's default: only str
                    // and bytes keys; anything else makes ZEO drop the connection.
                    if !matches!(k, Mp::String(_) | Mp::Binary(_)) {
                        return Err(WireError::Msgpack(format!(
                            "map key {k} is not str or bytes"
                        )));
                    }
                    Ok((
                        from_msgpack(k, depth + 1, max_depth)?,
                        from_msgpack(v, depth + 1, max_depth)?,
                    ))
                })
                .collect::<Result<_>>()?,
        ),
        Mp::Ext(kind, _) => {
            return Err(WireError::Msgpack(format!(
                "extension type {kind} is not used by ZEO"
            )));
        }
    })
}

/// Encode `value` as ZEO's `packb(..., use_bin_type=True)` does.
pub fn encode(value: &Value) -> Result<Vec<u8>> {
    let mp = to_msgpack(value, 0)?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &mp).map_err(|e| WireError::Msgpack(e.to_string()))?;
    Ok(out)
}

fn to_msgpack(value: &Value, depth: usize) -> Result<Mp> {
    if depth > crate::pickle::encode::MAX_ENCODE_DEPTH {
        return Err(WireError::Unencodable {
            what: "a value nested too deeply".to_owned(),
        });
    }
    Ok(match value {
        Value::None => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Int(n) => Mp::from(*n),
        Value::BigInt(n) => bigint_to_msgpack(n)?,
        Value::Float(f) => Mp::F64(*f),
        Value::Bytes(b) => Mp::Binary(b.to_vec()),
        Value::Str(s) => Mp::from(s.as_str()),
        Value::Tuple(items) | Value::List(items) => Mp::Array(
            items
                .iter()
                .map(|item| to_msgpack(item, depth + 1))
                .collect::<Result<_>>()?,
        ),
        Value::Dict(pairs) => Mp::Map(
            pairs
                .iter()
                .map(|(k, v)| Ok((to_msgpack(k, depth + 1)?, to_msgpack(v, depth + 1)?)))
                .collect::<Result<_>>()?,
        ),
        other => {
            return Err(WireError::Unencodable {
                what: format!("a {} in msgpack", other.type_name()),
            })
        }
    })
}

fn bigint_to_msgpack(n: &BigInt) -> Result<Mp> {
    if let Some(small) = n.to_i64() {
        return Ok(Mp::from(small));
    }
    match n.to_u64() {
        Some(big) => Ok(Mp::from(big)),
        // Python: OverflowError('Integer value out of range')
        None => Err(WireError::Unencodable {
            what: format!("integer {n} in msgpack (out of range)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hex(value: &Value) -> String {
        encode(value)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn heartbeat_and_register() {
        assert_eq!(
            hex(&Value::from((-1, 0, ".reply", Value::None))),
            "94ff00a62e7265706c79c0"
        );
        assert_eq!(
            hex(&Value::from((1, false, "register", ("1", false)))),
            "9401c2a8726567697374657292a131c2"
        );
    }

    #[test]
    fn int_widths_match_python() {
        let cases: [(i64, &str); 10] = [
            (0, "00"),
            (127, "7f"),
            (128, "cc80"),
            (256, "cd0100"),
            (65536, "ce00010000"),
            (1 << 32, "cf0000000100000000"),
            (-1, "ff"),
            (-32, "e0"),
            (-33, "d0df"),
            (i64::MIN, "d38000000000000000"),
        ];
        for (n, want) in cases {
            assert_eq!(hex(&Value::Int(n)), want, "{n}");
        }
        assert_eq!(hex(&Value::from(u64::MAX)), "cfffffffffffffffff");
        assert!(encode(&Value::BigInt(BigInt::from(u64::MAX) + 1u32)).is_err());
    }

    #[test]
    fn decode_arrays_as_tuples() {
        let v = decode(&encode(&Value::list([1, 2])).unwrap()).unwrap();
        assert_eq!(v, Value::from((1, 2)));
        assert_eq!(
            decode(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            Value::from(u64::MAX)
        );
        assert_eq!(
            decode(&[0xca, 0x3f, 0xc0, 0, 0]).unwrap(),
            Value::Float(1.5)
        );
    }

    #[test]
    fn bad_input() {
        assert!(decode(&[]).is_err());
        assert!(matches!(
            decode(&[0xc0, 0xc0]),
            Err(WireError::TrailingBytes { count: 1 })
        ));
        assert!(decode(&[0xa2, 0xff, 0xfe]).is_err()); // invalid UTF-8 str
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err()); // huge array, no items
        assert!(decode(&[0xd4, 0x01, 0x00]).is_err()); // ext
        assert!(decode(&[0x81, 0x01, 0x02]).is_err()); // int map key
        assert_eq!(
            decode(&[0x81, 0xa1, b'k', 0x02]).unwrap(),
            Value::dict_from_pairs([("k", 2)])
        );
        let deep: Vec<u8> = std::iter::repeat_n(0x91, 10_000).chain([0xc0]).collect();
        assert!(decode(&deep).is_err());
    }
}

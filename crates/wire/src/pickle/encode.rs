//! The pickle encoder: byte for byte what ZEO's `encoder(b'Z5')` emits, i.e.
//! CPython's C `Pickler(f, 3)` with `fast = 1` (no memo, no FRAME).
//!
//! Only builtin data kinds are encodable (None/bool/int/float/bytes/str/tuple/list/
//! dict): Python ZEO peers refuse anything needing GLOBAL, and the server must never
//! send it.

use num_bigint::BigInt;

use super::opcodes::*;
use crate::error::{Result, WireError};
use crate::value::Value;

/// CPython's `BATCHSIZE` for APPENDS/SETITEMS.
const BATCH_SIZE: usize = 1000;

/// Deepest nesting the encoder follows (it recurses).
pub const MAX_ENCODE_DEPTH: usize = 512;

/// Pickle `value` as ZEO does (`PROTO 3` … `STOP`).
pub fn encode(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Append the pickle of `value` to `out`. On error `out` may hold a partial pickle.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&[PROTO, 3]);
    save(value, out, 0)?;
    out.push(STOP);
    Ok(())
}

/// Append the opcodes of `value` alone (no `PROTO`, no `STOP`), to splice into a
/// pickle written by hand around it: the server's fast path for `loadBefore`
/// replies writes the fixed parts itself and the msgid and data through here.
pub fn encode_value_into(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    save(value, out, 0)
}

fn save(value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<()> {
    if depth > MAX_ENCODE_DEPTH {
        return Err(WireError::Unencodable {
            what: format!("a value nested deeper than {MAX_ENCODE_DEPTH} levels"),
        });
    }
    match value {
        Value::None => out.push(NONE),
        Value::Bool(true) => out.push(NEWTRUE),
        Value::Bool(false) => out.push(NEWFALSE),
        Value::Int(n) => save_int(*n, out),
        Value::BigInt(n) => save_bigint(n, out)?,
        Value::Float(f) => {
            out.push(BINFLOAT);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Bytes(b) => {
            if let Ok(len) = u8::try_from(b.len()) {
                out.extend_from_slice(&[SHORT_BINBYTES, len]);
            } else {
                out.push(BINBYTES);
                out.extend_from_slice(&len_u32(b.len(), "bytes")?.to_le_bytes());
            }
            out.extend_from_slice(b);
        }
        Value::Str(s) => {
            // Protocol 3 has no SHORT_BINUNICODE.
            out.push(BINUNICODE);
            out.extend_from_slice(&len_u32(s.len(), "str")?.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Tuple(items) => match items.len() {
            0 => out.push(EMPTY_TUPLE),
            1..=3 => {
                for item in items {
                    save(item, out, depth + 1)?;
                }
                out.push(TUPLE1 + (items.len() as u8 - 1));
            }
            _ => {
                out.push(MARK);
                for item in items {
                    save(item, out, depth + 1)?;
                }
                out.push(TUPLE);
            }
        },
        Value::List(items) => {
            out.push(EMPTY_LIST);
            save_list_items(items, out, depth)?;
        }
        Value::Dict(pairs) => {
            out.push(EMPTY_DICT);
            save_dict_items(pairs, out, depth)?;
        }
        other => {
            return Err(WireError::Unencodable {
                what: format!("a {} in a ZEO message pickle", other.type_name()),
            })
        }
    }
    Ok(())
}

/// CPython `batch_list_exact`: one item → APPEND; otherwise MARK…APPENDS per batch of
/// 1000 (a trailing batch of one item still uses MARK…APPENDS).
fn save_list_items(items: &[Value], out: &mut Vec<u8>, depth: usize) -> Result<()> {
    match items {
        [] => {}
        [only] => {
            save(only, out, depth + 1)?;
            out.push(APPEND);
        }
        _ => {
            for batch in items.chunks(BATCH_SIZE) {
                out.push(MARK);
                for item in batch {
                    save(item, out, depth + 1)?;
                }
                out.push(APPENDS);
            }
        }
    }
    Ok(())
}

/// CPython `batch_dict_exact`: one pair → SETITEM; otherwise MARK…SETITEMS per batch
/// of 1000, looping while the last batch was full — so a dict of exactly 1000·k
/// items ends with an empty `MARK SETITEMS` (verified against zodbpickle).
fn save_dict_items(pairs: &[(Value, Value)], out: &mut Vec<u8>, depth: usize) -> Result<()> {
    match pairs {
        [] => {}
        [(k, v)] => {
            save(k, out, depth + 1)?;
            save(v, out, depth + 1)?;
            out.push(SETITEM);
        }
        _ => {
            let mut rest = pairs;
            loop {
                let take = rest.len().min(BATCH_SIZE);
                let (batch, tail) = rest.split_at(take);
                out.push(MARK);
                for (k, v) in batch {
                    save(k, out, depth + 1)?;
                    save(v, out, depth + 1)?;
                }
                out.push(SETITEMS);
                rest = tail;
                if take < BATCH_SIZE {
                    break;
                }
            }
        }
    }
    Ok(())
}

fn save_int(n: i64, out: &mut Vec<u8>) {
    if (0..=0xff).contains(&n) {
        out.extend_from_slice(&[BININT1, n as u8]);
    } else if (0..=0xffff).contains(&n) {
        out.push(BININT2);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if let Ok(small) = i32::try_from(n) {
        out.push(BININT);
        out.extend_from_slice(&small.to_le_bytes());
    } else {
        save_long_bytes(&BigInt::from(n).to_signed_bytes_le(), out);
    }
}

fn save_bigint(n: &BigInt, out: &mut Vec<u8>) -> Result<()> {
    // BigInt values are normally outside i64, but accept small ones too.
    if let Some(small) = num_traits::ToPrimitive::to_i64(n) {
        save_int(small, out);
        return Ok(());
    }
    let bytes = n.to_signed_bytes_le();
    len_u32(bytes.len(), "int")?;
    save_long_bytes(&bytes, out);
    Ok(())
}

/// LONG1/LONG4 with minimal little-endian two's complement (what CPython's
/// `save_long` produces after trimming the redundant sign byte).
fn save_long_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    if let Ok(len) = u8::try_from(bytes.len()) {
        out.extend_from_slice(&[LONG1, len]);
    } else {
        out.push(LONG4);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(bytes);
}

fn len_u32(len: usize, what: &str) -> Result<u32> {
    u32::try_from(len).map_err(|_| WireError::Unencodable {
        what: format!("a {what} of {len} bytes (more than 4 GiB)"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hex(value: impl Into<Value>) -> String {
        encode(&value.into())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn spec_examples() {
        assert_eq!(
            hex((1, false, "register", ("1", 0))),
            "8003284b0189580800000072656769737465725801000000314b0086742e"
        );
        assert_eq!(
            hex((-1, 0, ".reply", Value::None)),
            "8003284affffffff4b0058060000002e7265706c794e742e"
        );
    }

    #[test]
    fn int_widths() {
        assert_eq!(hex(255), "80034bff2e");
        assert_eq!(hex(256), "80034d00012e");
        assert_eq!(hex(65536), "80034a000001002e");
        assert_eq!(hex(-129), "80034a7fffffff2e");
        assert_eq!(hex(2147483648i64), "80038a0500000080002e");
        assert_eq!(hex(i64::MIN), "80038a0800000000000000802e");
        let huge = BigInt::from(1) << 2100u32;
        let encoded = encode(&Value::from(huge)).unwrap();
        assert_eq!(&encoded[..7], &[0x80, 3, LONG4, 0x07, 0x01, 0, 0]);
    }

    #[test]
    fn batching() {
        let one = hex(Value::list([5]));
        assert_eq!(one, "80035d4b05612e");
        let list: Vec<Value> = (0..1001).map(Value::from).collect();
        let bytes = encode(&Value::List(list)).unwrap();
        // ... APPENDS MARK <1000 as BININT2> APPENDS STOP
        assert_eq!(
            &bytes[bytes.len() - 7..],
            &[APPENDS, MARK, BININT2, 0xe8, 0x03, APPENDS, STOP]
        );
        let dict: Vec<(Value, Value)> = (0..1000).map(|i| (Value::from(i), Value::None)).collect();
        let bytes = encode(&Value::Dict(dict)).unwrap();
        assert_eq!(&bytes[bytes.len() - 4..], &[SETITEMS, MARK, SETITEMS, STOP]);
        assert_eq!(
            hex(Value::dict_from_pairs([("a", 1)])),
            "80037d5801000000614b01732e"
        );
    }

    #[test]
    fn opaque_values_are_refused() {
        let global = Value::Global {
            module: "os".into(),
            name: "system".into(),
        };
        assert!(matches!(
            encode(&global),
            Err(WireError::Unencodable { .. })
        ));
        assert!(encode(&Value::Set(vec![])).is_err());
        assert!(encode(&Value::PersistentId(Box::new(Value::None))).is_err());
    }

    #[test]
    fn too_deep_is_an_error_not_a_crash() {
        let mut v = Value::None;
        for _ in 0..(MAX_ENCODE_DEPTH + 5) {
            v = Value::List(vec![v]);
        }
        assert!(encode(&v).is_err());
        // Drop iteratively-built deep value without recursion trouble: depth is small.
    }
}

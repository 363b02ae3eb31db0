//! The thin layer between the server and the wire crate: turning a frame into an
//! incoming message `(msgid, flag, name, args)` and replies, error replies and
//! callbacks into frames, in the connection's encoding (pickle `Z` or msgpack `M`).

use bytes::{BufMut, Bytes, BytesMut};
use zeoraid_wire::{ObjectKind, Value};

use crate::error::ZeoError;

/// The encoding a connection speaks, picked by the client's handshake letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Pickle,
    Msgpack,
}

impl Encoding {
    /// The handshake letter: `Z` for pickle, `M` for msgpack.
    pub fn letter(self) -> u8 {
        match self {
            Encoding::Pickle => b'Z',
            Encoding::Msgpack => b'M',
        }
    }
}

/// A decoded client message.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub msgid: Value,
    /// One-way call (flag truthy): no reply, and an error closes the connection.
    pub oneway: bool,
    pub name: String,
    pub args: Vec<Value>,
}

impl Incoming {
    /// A heartbeat `(-1, 0, '.reply', None)` (any message with msgid -1).
    pub fn is_heartbeat(&self) -> bool {
        self.msgid.as_int() == Some(-1) && !matches!(self.msgid, Value::Bool(_))
    }
}

/// Why a frame is not a message.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("can't deserialize message: {0}")]
    Decode(String),
    #[error("not a ZEO message: {0}")]
    Shape(String),
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn decode_value(payload: &[u8], encoding: Encoding) -> Result<Value, CodecError> {
    match encoding {
        Encoding::Pickle => {
            zeoraid_wire::pickle::decode(payload).map_err(|e| CodecError::Decode(e.to_string()))
        }
        Encoding::Msgpack => {
            zeoraid_wire::msgpack::decode(payload).map_err(|e| CodecError::Decode(e.to_string()))
        }
    }
}

/// Values a ZEO server decoder would refuse: anything needing `find_class` outside
/// builtins (ZEO closes the connection for those).
fn is_plain(value: &Value) -> bool {
    match value {
        Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v) => {
            v.iter().all(is_plain)
        }
        Value::Dict(d) => d.iter().all(|(k, v)| is_plain(k) && is_plain(v)),
        Value::Global { .. } | Value::Object(_) | Value::PersistentId(_) | Value::Extension(_) => {
            false
        }
        _ => true,
    }
}

/// Rebuild the containers a Python ZEO server would build itself: its message
/// unpickler allows globals from `builtins`, so a client may send e.g. a `dict`
/// subclass whose `__reduce__` is `(dict, (pairs,))` (ZODB's
/// IteratorStorage.testTransactionExtensionFromIterator does, as a transaction
/// extension). `builtins.dict/list/tuple/set/frozenset` called with no argument
/// or one iterable become the plain value; anything else is left as it is
/// (and refused by [`is_plain`]).
fn builtin_containers(value: Value) -> Value {
    match value {
        Value::Tuple(v) => Value::Tuple(v.into_iter().map(builtin_containers).collect()),
        Value::List(v) => Value::List(v.into_iter().map(builtin_containers).collect()),
        Value::Set(v) => Value::Set(v.into_iter().map(builtin_containers).collect()),
        Value::FrozenSet(v) => Value::FrozenSet(v.into_iter().map(builtin_containers).collect()),
        Value::Dict(d) => Value::Dict(
            d.into_iter()
                .map(|(k, v)| (builtin_containers(k), builtin_containers(v)))
                .collect(),
        ),
        Value::Object(obj) => match builtin_call(&obj) {
            Some(v) => v,
            None => Value::Object(obj),
        },
        other => other,
    }
}

fn builtin_call(obj: &zeoraid_wire::PickledObject) -> Option<Value> {
    let name = match (&obj.kind, &obj.callable) {
        (ObjectKind::Reduce, Value::Global { module, name })
            if (module == "builtins" || module == "__builtin__")
                && obj.kwargs.is_none()
                && obj.state.is_none() =>
        {
            name.as_str()
        }
        _ => return None,
    };
    let args = match &obj.args {
        Value::Tuple(a) => a,
        _ => return None,
    };
    let items: Vec<Value> = match args.as_slice() {
        [] => Vec::new(),
        [Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v)] => {
            v.iter().cloned().map(builtin_containers).collect()
        }
        [Value::Dict(d)] if name == "dict" => d
            .iter()
            .map(|(k, v)| Value::Tuple(vec![k.clone(), v.clone()]))
            .map(builtin_containers)
            .collect(),
        _ => return None,
    };
    match name {
        "dict" => {
            let mut pairs = Vec::with_capacity(items.len() + obj.dictitems.len());
            for item in items {
                match item {
                    Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => {
                        let mut kv = kv.into_iter();
                        let k = kv.next()?;
                        let v = kv.next()?;
                        pairs.push((k, v));
                    }
                    _ => return None,
                }
            }
            for (k, v) in &obj.dictitems {
                pairs.push((builtin_containers(k.clone()), builtin_containers(v.clone())));
            }
            // Later keys win, as in dict(): keep the last value at the first position.
            let mut out: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                match out.iter_mut().find(|(ok, _)| *ok == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
            }
            Some(Value::Dict(out))
        }
        _ if !obj.dictitems.is_empty() => None,
        "list" => {
            let mut items = items;
            items.extend(obj.listitems.iter().cloned().map(builtin_containers));
            Some(Value::List(items))
        }
        _ if !obj.listitems.is_empty() => None,
        "tuple" => Some(Value::Tuple(items)),
        "set" => Some(Value::Set(dedup(items))),
        "frozenset" => Some(Value::FrozenSet(dedup(items))),
        _ => None,
    }
}

fn dedup(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Decode one post-handshake frame.
pub fn decode_message(payload: &[u8], encoding: Encoding) -> Result<Incoming, CodecError> {
    let value = decode_value(payload, encoding)?;
    let items = value
        .into_tuple_or_list()
        .map_err(|v| CodecError::Shape(format!("a {} instead of a tuple", v.type_name())))?;
    let [msgid, flag, name, args]: [Value; 4] = items
        .try_into()
        .map_err(|v: Vec<Value>| CodecError::Shape(format!("a {}-tuple", v.len())))?;
    let name = match name {
        Value::Str(s) => s,
        other => {
            return Err(CodecError::Shape(format!(
                "method name is a {}",
                other.type_name()
            )))
        }
    };
    let args = match builtin_containers(args) {
        Value::Tuple(v) | Value::List(v) => v,
        Value::None => Vec::new(),
        other => {
            return Err(CodecError::Shape(format!(
                "arguments are a {}",
                other.type_name()
            )))
        }
    };
    if !args.iter().all(is_plain) || !is_plain(&msgid) {
        return Err(CodecError::Decode(
            "message refers to a non-builtin class".to_owned(),
        ));
    }
    Ok(Incoming {
        msgid,
        oneway: flag.is_truthy(),
        name,
        args,
    })
}

fn frame(payload: &[u8]) -> Result<Bytes, CodecError> {
    let len = u32::try_from(payload.len())
        .map_err(|_| CodecError::Encode(format!("{} bytes do not fit a frame", payload.len())))?;
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.put_u32(len);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// A raw frame (handshake, ruok's JSON).
pub fn raw_frame(payload: &[u8]) -> Result<Bytes, CodecError> {
    frame(payload)
}

fn encode_tuple(items: Vec<Value>, encoding: Encoding) -> Result<Bytes, CodecError> {
    let value = Value::Tuple(items);
    match encoding {
        Encoding::Pickle => {
            // Pickled straight after a length placeholder: no second copy.
            let mut out = vec![0u8; 4];
            zeoraid_wire::pickle::encode_into(&value, &mut out)
                .map_err(|e| CodecError::Encode(e.to_string()))?;
            framed(out)
        }
        Encoding::Msgpack => frame(
            &zeoraid_wire::msgpack::encode(&value)
                .map_err(|e| CodecError::Encode(e.to_string()))?,
        ),
    }
}

/// Fill in the length prefix of `out`, whose first 4 bytes were reserved for it.
fn framed(mut out: Vec<u8>) -> Result<Bytes, CodecError> {
    let len = u32::try_from(out.len() - 4)
        .map_err(|_| CodecError::Encode(format!("{} bytes do not fit a frame", out.len())))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(Bytes::from(out))
}

/// A `loadBefore(oid, tid)` call recognised by [`parse_load_before_call`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBeforeCall {
    pub msgid: Value,
    pub oid: [u8; 8],
    pub before: [u8; 8],
}

/// Recognise the exact pickle a ZEO client writes for a `loadBefore` call —
/// `PROTO 3`, `MARK`, the msgid (`BININT1`/`BININT2`/`BININT`, or the `(oid, tid)`
/// pair of 8-byte `SHORT_BINBYTES` that ZEO's client uses), `NEWFALSE`,
/// `BINUNICODE 'loadBefore'`, `(oid, tid)` as 8-byte `SHORT_BINBYTES` + `TUPLE2`,
/// `TUPLE`, `STOP` — without building a value tree. Anything else, including
/// other spellings of the same call, is `None` and goes through
/// [`decode_message`], which gives the same result for these bytes (tested).
pub fn parse_load_before_call(payload: &[u8]) -> Option<LoadBeforeCall> {
    fn bytes8(p: &[u8]) -> Option<([u8; 8], &[u8])> {
        match p {
            [b'C', 8, rest @ ..] if rest.len() >= 8 => {
                let (b, rest) = rest.split_at(8);
                Some((b.try_into().ok()?, rest))
            }
            _ => None,
        }
    }
    let p = payload.strip_prefix(&[0x80, 3, b'('])?;
    let (msgid, p) = match p {
        [b'K', n, rest @ ..] => (Value::Int(i64::from(*n)), rest),
        [b'M', lo, hi, rest @ ..] => (Value::Int(i64::from(u16::from_le_bytes([*lo, *hi]))), rest),
        [b'J', a, b, c, d, rest @ ..] => (
            Value::Int(i64::from(i32::from_le_bytes([*a, *b, *c, *d]))),
            rest,
        ),
        [b'C', ..] => {
            let (first, p) = bytes8(p)?;
            let (second, p) = bytes8(p)?;
            let p = p.strip_prefix(&[0x86])?;
            (
                Value::Tuple(vec![Value::from(first), Value::from(second)]),
                p,
            )
        }
        _ => return None,
    };
    let p = p.strip_prefix(b"\x89X\x0a\x00\x00\x00loadBefore")?;
    let (oid, p) = bytes8(p)?;
    let (before, p) = bytes8(p)?;
    if p != [0x86, b't', b'.'] {
        return None;
    }
    Some(LoadBeforeCall { msgid, oid, before })
}

/// A record as `loadBefore` answers it: `(data, start_tid, end_tid|None)`.
pub struct LoadBeforeRecord<'a> {
    pub data: &'a Bytes,
    pub start: [u8; 8],
    pub end: Option<[u8; 8]>,
}

/// `(msgid, 0, '.reply', (data, start, end|None) | None)`: byte for byte
/// [`encode_reply`]'s frame (tested), written without building a value tree.
pub fn encode_load_before_reply(
    msgid: &Value,
    record: Option<LoadBeforeRecord<'_>>,
    encoding: Encoding,
) -> Result<Bytes, CodecError> {
    if encoding != Encoding::Pickle {
        let result = match record {
            None => Value::None,
            Some(r) => Value::Tuple(vec![
                Value::Bytes(r.data.clone()),
                Value::from(r.start),
                r.end.map(Value::from).unwrap_or(Value::None),
            ]),
        };
        return encode_reply(msgid, result, encoding);
    }
    let data_len = record.as_ref().map_or(0, |r| r.data.len());
    let mut out = Vec::with_capacity(64 + data_len);
    out.extend_from_slice(&[0, 0, 0, 0, 0x80, 3, b'(']);
    zeoraid_wire::pickle::encode_value_into(msgid, &mut out)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    out.extend_from_slice(b"K\x00X\x06\x00\x00\x00.reply");
    match record {
        None => out.push(b'N'),
        Some(r) => {
            // The data through the encoder (its opcode depends on the length);
            // the tids are always 8 bytes: SHORT_BINBYTES.
            zeoraid_wire::pickle::encode_value_into(&Value::Bytes(r.data.clone()), &mut out)
                .map_err(|e| CodecError::Encode(e.to_string()))?;
            out.extend_from_slice(&[b'C', 8]);
            out.extend_from_slice(&r.start);
            match r.end {
                Some(end) => {
                    out.extend_from_slice(&[b'C', 8]);
                    out.extend_from_slice(&end);
                }
                None => out.push(b'N'),
            }
            out.push(0x87);
        }
    }
    out.extend_from_slice(b"t.");
    framed(out)
}

/// `(msgid, 0, '.reply', result)`.
pub fn encode_reply(msgid: &Value, result: Value, encoding: Encoding) -> Result<Bytes, CodecError> {
    encode_tuple(
        vec![msgid.clone(), Value::Int(0), Value::from(".reply"), result],
        encoding,
    )
}

/// `(msgid, 2, '.reply', (class_name, dict|args))`.
pub fn encode_error(
    msgid: &Value,
    err: &ZeoError,
    encoding: Encoding,
) -> Result<Bytes, CodecError> {
    encode_tuple(
        vec![
            msgid.clone(),
            Value::Int(2),
            Value::from(".reply"),
            err.to_value(),
        ],
        encoding,
    )
}

/// A server→client one-way call `(0, True, name, args)`.
pub fn encode_callback(
    name: &str,
    args: Vec<Value>,
    encoding: Encoding,
) -> Result<Bytes, CodecError> {
    encode_tuple(
        vec![
            Value::Int(0),
            Value::Bool(true),
            Value::from(name),
            Value::Tuple(args),
        ],
        encoding,
    )
}

/// A client→server message (used by tests and tools speaking to a server).
pub fn encode_call(
    msgid: Value,
    oneway: bool,
    name: &str,
    args: Vec<Value>,
    encoding: Encoding,
) -> Result<Bytes, CodecError> {
    encode_tuple(
        vec![
            msgid,
            Value::Bool(oneway),
            Value::from(name),
            Value::Tuple(args),
        ],
        encoding,
    )
}

/// Decode any message tuple (replies and callbacks included), for test clients.
pub fn decode_any(payload: &[u8], encoding: Encoding) -> Result<Vec<Value>, CodecError> {
    decode_value(payload, encoding)?
        .into_tuple_or_list()
        .map_err(|v| CodecError::Shape(format!("a {} instead of a tuple", v.type_name())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pickled_call(msgid: Value, oneway: bool, name: &str, args: Vec<Value>) -> Vec<u8> {
        let frame = encode_call(msgid, oneway, name, args, Encoding::Pickle).unwrap();
        frame[4..].to_vec()
    }

    #[test]
    fn the_load_before_fast_path_reads_what_the_generic_decoder_reads() {
        let oid = Value::from([0u8, 0, 0, 0, 0, 0, 0, 7]);
        let tid = Value::from([0x03u8, 0xff, 0, 0, 1, 2, 3, 4]);
        let msgids = [
            Value::Int(0),
            Value::Int(255),
            Value::Int(256),
            Value::Int(65535),
            Value::Int(65536),
            Value::Int(-1),
            Value::Int(i64::from(i32::MAX)),
            Value::Int(i64::from(i32::MIN)),
            // ZEO's client: `message_id = (oid, tid)`.
            Value::Tuple(vec![oid.clone(), tid.clone()]),
        ];
        for msgid in msgids {
            let payload = pickled_call(
                msgid.clone(),
                false,
                "loadBefore",
                vec![oid.clone(), tid.clone()],
            );
            let fast = parse_load_before_call(&payload).unwrap();
            let generic = decode_message(&payload, Encoding::Pickle).unwrap();
            assert_eq!(fast.msgid, generic.msgid);
            assert!(!generic.oneway);
            assert_eq!(generic.name, "loadBefore");
            assert_eq!(
                generic.args,
                vec![Value::from(fast.oid), Value::from(fast.before)]
            );
            assert_eq!(fast.msgid, msgid);
        }
    }

    #[test]
    fn the_load_before_fast_path_leaves_everything_else_to_the_decoder() {
        let oid = Value::from([0u8, 0, 0, 0, 0, 0, 0, 7]);
        let short = Value::from(&b"1234567"[..]);
        let others = [
            pickled_call(
                Value::Int(5),
                true,
                "loadBefore",
                vec![oid.clone(), oid.clone()],
            ),
            pickled_call(
                Value::Int(5),
                false,
                "loadSerial",
                vec![oid.clone(), oid.clone()],
            ),
            pickled_call(Value::Int(5), false, "loadBefore", vec![oid.clone()]),
            pickled_call(Value::Int(5), false, "loadBefore", vec![oid.clone(), short]),
            pickled_call(
                Value::Int(1 << 40),
                false,
                "loadBefore",
                vec![oid.clone(), oid.clone()],
            ),
            pickled_call(
                Value::from("x"),
                false,
                "loadBefore",
                vec![oid.clone(), oid.clone()],
            ),
        ];
        for payload in &others {
            assert_eq!(parse_load_before_call(payload), None);
        }
        let good = pickled_call(Value::Int(5), false, "loadBefore", vec![oid.clone(), oid]);
        assert!(parse_load_before_call(&good).is_some());
        let mut trailing = good.clone();
        trailing.push(b'.');
        assert_eq!(parse_load_before_call(&trailing), None);
        for cut in 0..good.len() {
            assert_eq!(parse_load_before_call(&good[..cut]), None);
        }
    }

    #[test]
    fn the_load_before_reply_fast_path_is_byte_identical() {
        let tuple_msgid = Value::Tuple(vec![Value::from([1u8; 8]), Value::from([2u8; 8])]);
        for msgid in [Value::Int(3), Value::Int(70_000), tuple_msgid] {
            for encoding in [Encoding::Pickle, Encoding::Msgpack] {
                assert_eq!(
                    encode_load_before_reply(&msgid, None, encoding).unwrap(),
                    encode_reply(&msgid, Value::None, encoding).unwrap()
                );
                for size in [0usize, 1, 255, 256, 70_000] {
                    let data = Bytes::from(vec![b'd'; size]);
                    for end in [None, Some([9u8; 8])] {
                        let record = LoadBeforeRecord {
                            data: &data,
                            start: [5u8; 8],
                            end,
                        };
                        let generic = Value::Tuple(vec![
                            Value::Bytes(data.clone()),
                            Value::from([5u8; 8]),
                            end.map(Value::from).unwrap_or(Value::None),
                        ]);
                        assert_eq!(
                            encode_load_before_reply(&msgid, Some(record), encoding).unwrap(),
                            encode_reply(&msgid, generic, encoding).unwrap(),
                            "msgid {msgid:?}, {size} bytes, end {end:?}, {encoding:?}"
                        );
                    }
                }
            }
        }
    }
}

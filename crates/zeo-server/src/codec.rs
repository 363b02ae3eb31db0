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
    let payload =
        match encoding {
            Encoding::Pickle => zeoraid_wire::pickle::encode(&value)
                .map_err(|e| CodecError::Encode(e.to_string()))?,
            Encoding::Msgpack => zeoraid_wire::msgpack::encode(&value)
                .map_err(|e| CodecError::Encode(e.to_string()))?,
        };
    frame(&payload)
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

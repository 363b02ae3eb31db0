//! ZEO messages: the 4-tuple `(msgid, flag, name, args)` every post-handshake frame
//! carries, as a typed [`Message`], and its encoding with either codec.
//!
//! | kind | msgid | flag | name | args |
//! |---|---|---|---|---|
//! | call | any (int counter; `(oid, tid)` for loadBefore) | `False` | method | tuple |
//! | one-way call / callback | `0` | `True` | method | tuple |
//! | reply | echoed | `0` | `.reply` | return value |
//! | error reply | echoed | `2` | `.reply` | `(class_name, dict_or_args)` |
//! | heartbeat | `-1` | `0` | `.reply` | `None` |
//!
//! On decode only the flag's truthiness matters (ZEO tests `if flag:`), so a
//! msgpack `true`/`2` and a pickle `True`/`2` mean the same.

use crate::error::{Result, WireError};
use crate::value::Value;
use crate::{msgpack, pickle};

/// The reply pseudo-method name.
pub const REPLY_NAME: &str = ".reply";

/// The msgid of a heartbeat (the server ignores such messages).
pub const HEARTBEAT_MSGID: i64 = -1;

/// The flag value ZEO sends in error replies.
pub const ERROR_FLAG: i64 = 2;

/// Which codec a connection negotiated in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `Z` protocols: pickle protocol 3.
    Pickle,
    /// `M` protocols: msgpack.
    Msgpack,
}

impl Encoding {
    /// The protocol letter (`b'Z'` / `b'M'`).
    pub fn letter(self) -> u8 {
        match self {
            Encoding::Pickle => b'Z',
            Encoding::Msgpack => b'M',
        }
    }

    /// The encoding named by a protocol string's first byte.
    pub fn from_letter(letter: u8) -> Option<Encoding> {
        match letter {
            b'Z' => Some(Encoding::Pickle),
            b'M' => Some(Encoding::Msgpack),
            _ => None,
        }
    }

    /// Encode one value with this codec.
    pub fn encode_value(self, value: &Value) -> Result<Vec<u8>> {
        match self {
            Encoding::Pickle => pickle::encode(value),
            Encoding::Msgpack => msgpack::encode(value),
        }
    }

    /// Decode one whole payload with this codec.
    pub fn decode_value(self, data: &[u8]) -> Result<Value> {
        match self {
            Encoding::Pickle => pickle::decode(data),
            Encoding::Msgpack => msgpack::decode(data),
        }
    }
}

/// What a message is, derived from its flag, name and msgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Synchronous call, expects a reply (flag `False`).
    Call,
    /// One-way call or server callback (flag `True`, msgid `0`).
    OneWay,
    /// Normal reply (flag `0`, name `.reply`).
    Reply,
    /// Error reply (flag `2`, name `.reply`, args = error payload).
    ErrorReply,
    /// Client heartbeat `(-1, 0, '.reply', None)`.
    Heartbeat,
}

/// One ZEO message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Any value; replies echo the call's msgid verbatim.
    pub msgid: Value,
    pub kind: MessageKind,
    /// Method or callback name; `.reply` for replies and heartbeats.
    pub name: String,
    /// Call arguments (a tuple), the reply value, or the error payload.
    pub args: Value,
}

impl Message {
    /// A synchronous call.
    pub fn call(
        msgid: impl Into<Value>,
        name: impl Into<String>,
        args: impl Into<Value>,
    ) -> Message {
        Message {
            msgid: msgid.into(),
            kind: MessageKind::Call,
            name: name.into(),
            args: args.into(),
        }
    }

    /// A one-way call or server callback (msgid 0).
    pub fn one_way(name: impl Into<String>, args: impl Into<Value>) -> Message {
        Message {
            msgid: Value::Int(0),
            kind: MessageKind::OneWay,
            name: name.into(),
            args: args.into(),
        }
    }

    /// A normal reply to `msgid`.
    pub fn reply(msgid: Value, result: impl Into<Value>) -> Message {
        Message {
            msgid,
            kind: MessageKind::Reply,
            name: REPLY_NAME.to_owned(),
            args: result.into(),
        }
    }

    /// An error reply to `msgid`; `payload` is `(class_name, dict_or_args)`
    /// (see [`crate::exception::ErrorPayload`]).
    pub fn error_reply(msgid: Value, payload: impl Into<Value>) -> Message {
        Message {
            msgid,
            kind: MessageKind::ErrorReply,
            name: REPLY_NAME.to_owned(),
            args: payload.into(),
        }
    }

    /// The client heartbeat.
    pub fn heartbeat() -> Message {
        Message {
            msgid: Value::Int(HEARTBEAT_MSGID),
            kind: MessageKind::Heartbeat,
            name: REPLY_NAME.to_owned(),
            args: Value::None,
        }
    }

    /// The flag value ZEO puts on the wire for this kind.
    fn flag(&self) -> Value {
        match self.kind {
            MessageKind::Call => Value::Bool(false),
            MessageKind::OneWay => Value::Bool(true),
            MessageKind::Reply | MessageKind::Heartbeat => Value::Int(0),
            MessageKind::ErrorReply => Value::Int(ERROR_FLAG),
        }
    }

    /// The `(msgid, flag, name, args)` tuple.
    pub fn to_value(&self) -> Value {
        Value::Tuple(vec![
            self.msgid.clone(),
            self.flag(),
            Value::Str(self.name.clone()),
            self.args.clone(),
        ])
    }

    /// Interpret a decoded `(msgid, flag, name, args)` tuple (or list).
    pub fn from_value(value: Value) -> Result<Message> {
        let items = value.into_tuple_or_list().map_err(|other| {
            WireError::BadMessage(format!("expected a 4-tuple, got a {}", other.type_name()))
        })?;
        let [msgid, flag, name, args]: [Value; 4] =
            items.try_into().map_err(|items: Vec<Value>| {
                WireError::BadMessage(format!("expected 4 items, got {}", items.len()))
            })?;
        let name = match name {
            Value::Str(name) => name,
            other => {
                return Err(WireError::BadMessage(format!(
                    "method name is a {}, not a str",
                    other.type_name()
                )))
            }
        };
        let kind = if name == REPLY_NAME {
            if msgid == Value::Int(HEARTBEAT_MSGID) {
                MessageKind::Heartbeat
            } else if flag.is_truthy() {
                MessageKind::ErrorReply
            } else {
                MessageKind::Reply
            }
        } else if flag.is_truthy() {
            MessageKind::OneWay
        } else {
            MessageKind::Call
        };
        Ok(Message {
            msgid,
            kind,
            name,
            args,
        })
    }
}

/// Encode a message as a frame payload (no length prefix).
pub fn encode_message(message: &Message, encoding: Encoding) -> Result<Vec<u8>> {
    encoding.encode_value(&message.to_value())
}

/// Decode a frame payload into a message.
pub fn decode_message(payload: &[u8], encoding: Encoding) -> Result<Message> {
    Message::from_value(encoding.decode_value(payload)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn heartbeat_bytes() {
        let hb = Message::heartbeat();
        assert_eq!(
            hex(&encode_message(&hb, Encoding::Pickle).unwrap()),
            "8003284affffffff4b0058060000002e7265706c794e742e"
        );
        assert_eq!(
            hex(&encode_message(&hb, Encoding::Msgpack).unwrap()),
            "94ff00a62e7265706c79c0"
        );
    }

    #[test]
    fn round_trip_every_kind() {
        let oid = Value::from([0u8; 8]);
        let messages = [
            Message::call(1, "register", ("1", false)),
            Message::call(
                (oid.clone(), oid.clone()),
                "loadBefore",
                (oid.clone(), oid.clone()),
            ),
            Message::one_way("storea", (oid.clone(), oid.clone(), &b"data"[..], 1234)),
            Message::reply(Value::Int(7), Value::None),
            Message::error_reply(Value::Int(3), ("ZODB.POSException.ReadOnlyError", ())),
            Message::heartbeat(),
        ];
        for encoding in [Encoding::Pickle, Encoding::Msgpack] {
            for m in &messages {
                let decoded =
                    decode_message(&encode_message(m, encoding).unwrap(), encoding).unwrap();
                assert_eq!(decoded.kind, m.kind);
                assert_eq!(decoded.name, m.name);
                assert_eq!(
                    encode_message(&decoded, encoding).unwrap(),
                    encode_message(m, encoding).unwrap()
                );
            }
        }
    }

    #[test]
    fn flag_truthiness() {
        let v = Value::from((5, 2, "x", ()));
        assert_eq!(Message::from_value(v).unwrap().kind, MessageKind::OneWay);
        let v = Value::from((5, 0, "x", ()));
        assert_eq!(Message::from_value(v).unwrap().kind, MessageKind::Call);
        let v = Value::from((5, true, ".reply", ()));
        assert_eq!(
            Message::from_value(v).unwrap().kind,
            MessageKind::ErrorReply
        );
        let v = Value::list([
            Value::Int(5),
            Value::Bool(false),
            Value::from(".reply"),
            Value::None,
        ]);
        assert_eq!(Message::from_value(v).unwrap().kind, MessageKind::Reply);
    }

    #[test]
    fn bad_shapes() {
        assert!(Message::from_value(Value::None).is_err());
        assert!(Message::from_value(Value::from((1, 2, 3))).is_err());
        assert!(Message::from_value(Value::from((1, false, 3, ()))).is_err());
        assert!(decode_message(b"garbage", Encoding::Pickle).is_err());
    }
}

//! Error-reply payloads exactly as ZEO 6 sends them, and back.
//!
//! The server's `reduce_exception(exc)` sends `(dotted_class_name, exc.__dict__ or
//! exc.args)` with flag 2 — a class-name string plus a dict (for exceptions with
//! instance attributes, keys in assignment order) or the args tuple. The Python
//! client rebuilds ConflictError/ReadConflictError from the keys `message`, `oid`,
//! `serials` (mandatory) and `class_name`; BTreesConflictError from `p1,p2,p3,reason`;
//! MultipleUndoErrors from `_errs`; KeyError/TypeError/POSKeyError/ReadOnlyError/
//! StorageTransactionError from the args; anything else becomes a `ServerException`.

use std::fmt;

use crate::error::{Result, WireError};
use crate::value::Value;

pub const CONFLICT_ERROR: &str = "ZODB.POSException.ConflictError";
pub const READ_CONFLICT_ERROR: &str = "ZODB.POSException.ReadConflictError";
pub const BTREES_CONFLICT_ERROR: &str = "ZODB.POSException.BTreesConflictError";
pub const POS_KEY_ERROR: &str = "ZODB.POSException.POSKeyError";
pub const READ_ONLY_ERROR: &str = "ZODB.POSException.ReadOnlyError";
pub const STORAGE_TRANSACTION_ERROR: &str = "ZODB.POSException.StorageTransactionError";
pub const UNDO_ERROR: &str = "ZODB.POSException.UndoError";
pub const MULTIPLE_UNDO_ERRORS: &str = "ZODB.POSException.MultipleUndoErrors";

/// `ConflictError.message` default.
pub const CONFLICT_MESSAGE: &str = "database conflict error";
/// `ReadConflictError.message` default.
pub const READ_CONFLICT_MESSAGE: &str = "database read conflict error";

/// The attributes of a (Read)ConflictError, sent as its `__dict__`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictDetails {
    pub message: String,
    pub oid: Option<[u8; 8]>,
    /// Dotted class name of the object in conflict, when known.
    pub class_name: Option<String>,
    /// `(committed_tid, read_tid)`: the current serial, then the one the
    /// transaction started from.
    pub serials: Option<([u8; 8], [u8; 8])>,
}

/// A typed ZEO error reply payload.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorPayload {
    Conflict(ConflictDetails),
    ReadConflict(ConflictDetails),
    BTreesConflict {
        p1: i64,
        p2: i64,
        p3: i64,
        reason: i64,
    },
    /// `POSKeyError(oid)`: args `(oid,)`.
    PosKey([u8; 8]),
    /// `ReadOnlyError()`: args `()`.
    ReadOnly,
    /// `StorageTransactionError(*args)`.
    StorageTransaction(Vec<Value>),
    /// `UndoError(reason, oid)`: dict `{'_reason', '_oid'}`.
    Undo {
        reason: String,
        oid: Option<[u8; 8]>,
    },
    /// `MultipleUndoErrors(errs)`: dict `{'_reason', '_oid', '_errs'}` where
    /// reason/oid are the first error's.
    MultipleUndo {
        errors: Vec<(String, Option<[u8; 8]>)>,
    },
    /// A Python builtin exception (`builtins.<name>`) with its args,
    /// e.g. `ValueError("unknown storage: 2")`.
    Builtin {
        name: String,
        args: Vec<Value>,
    },
    /// Anything else, kept as sent.
    Other {
        class_name: String,
        payload: Value,
    },
}

fn opt_oid(oid: Option<[u8; 8]>) -> Value {
    oid.map(Value::from).unwrap_or(Value::None)
}

impl ErrorPayload {
    /// `ConflictError(oid=…, serials=(committed, read))` with ZODB's default message.
    pub fn conflict(
        oid: [u8; 8],
        class_name: Option<String>,
        committed: [u8; 8],
        read: [u8; 8],
    ) -> Self {
        ErrorPayload::Conflict(ConflictDetails {
            message: CONFLICT_MESSAGE.to_owned(),
            oid: Some(oid),
            class_name,
            serials: Some((committed, read)),
        })
    }

    /// `ReadConflictError(oid=…, serials=(committed, read))` with ZODB's default message.
    pub fn read_conflict(
        oid: [u8; 8],
        class_name: Option<String>,
        committed: [u8; 8],
        read: [u8; 8],
    ) -> Self {
        ErrorPayload::ReadConflict(ConflictDetails {
            message: READ_CONFLICT_MESSAGE.to_owned(),
            oid: Some(oid),
            class_name,
            serials: Some((committed, read)),
        })
    }

    /// `builtins.ValueError(message)`.
    pub fn value_error(message: impl Into<String>) -> Self {
        Self::builtin("ValueError", vec![Value::Str(message.into())])
    }

    /// `builtins.KeyError(key)`.
    pub fn key_error(key: impl Into<Value>) -> Self {
        Self::builtin("KeyError", vec![key.into()])
    }

    /// `builtins.AttributeError(message)`.
    pub fn attribute_error(message: impl Into<String>) -> Self {
        Self::builtin("AttributeError", vec![Value::Str(message.into())])
    }

    /// `builtins.<name>(*args)`.
    pub fn builtin(name: impl Into<String>, args: Vec<Value>) -> Self {
        ErrorPayload::Builtin {
            name: name.into(),
            args,
        }
    }

    /// The dotted class name sent first in the payload.
    pub fn class_name(&self) -> String {
        match self {
            ErrorPayload::Conflict(_) => CONFLICT_ERROR.to_owned(),
            ErrorPayload::ReadConflict(_) => READ_CONFLICT_ERROR.to_owned(),
            ErrorPayload::BTreesConflict { .. } => BTREES_CONFLICT_ERROR.to_owned(),
            ErrorPayload::PosKey(_) => POS_KEY_ERROR.to_owned(),
            ErrorPayload::ReadOnly => READ_ONLY_ERROR.to_owned(),
            ErrorPayload::StorageTransaction(_) => STORAGE_TRANSACTION_ERROR.to_owned(),
            ErrorPayload::Undo { .. } => UNDO_ERROR.to_owned(),
            ErrorPayload::MultipleUndo { .. } => MULTIPLE_UNDO_ERRORS.to_owned(),
            ErrorPayload::Builtin { name, .. } => format!("builtins.{name}"),
            ErrorPayload::Other { class_name, .. } => class_name.clone(),
        }
    }

    /// The second element: `exc.__dict__` or `exc.args`.
    pub fn details(&self) -> Value {
        match self {
            ErrorPayload::Conflict(d) | ErrorPayload::ReadConflict(d) => Value::dict_from_pairs([
                ("message", Value::Str(d.message.clone())),
                ("oid", opt_oid(d.oid)),
                ("class_name", Value::from(d.class_name.clone())),
                (
                    "serials",
                    d.serials
                        .map(|(a, b)| Value::from((a, b)))
                        .unwrap_or(Value::None),
                ),
            ]),
            ErrorPayload::BTreesConflict { p1, p2, p3, reason } => {
                Value::dict_from_pairs([("p1", *p1), ("p2", *p2), ("p3", *p3), ("reason", *reason)])
            }
            ErrorPayload::PosKey(oid) => Value::from((*oid,)),
            ErrorPayload::ReadOnly => Value::Tuple(Vec::new()),
            ErrorPayload::StorageTransaction(args) | ErrorPayload::Builtin { args, .. } => {
                Value::Tuple(args.clone())
            }
            ErrorPayload::Undo { reason, oid } => Value::dict_from_pairs([
                ("_reason", Value::Str(reason.clone())),
                ("_oid", opt_oid(*oid)),
            ]),
            ErrorPayload::MultipleUndo { errors } => {
                let (reason, oid) = errors
                    .first()
                    .map(|(r, o)| (Value::Str(r.clone()), opt_oid(*o)))
                    .unwrap_or((Value::None, Value::None));
                let errs = errors
                    .iter()
                    .map(|(r, o)| Value::Tuple(vec![Value::Str(r.clone()), opt_oid(*o)]))
                    .collect();
                Value::dict_from_pairs([
                    ("_reason", reason),
                    ("_oid", oid),
                    ("_errs", Value::List(errs)),
                ])
            }
            ErrorPayload::Other { payload, .. } => payload.clone(),
        }
    }

    /// The `(class_name, details)` value sent as the error reply's args.
    pub fn to_value(&self) -> Value {
        Value::Tuple(vec![Value::Str(self.class_name()), self.details()])
    }

    /// Parse an error reply's args. Known classes whose details have an unexpected
    /// shape come back as [`ErrorPayload::Other`], so nothing sent is lost; only a
    /// payload that is not `(str, value)` is an error.
    pub fn from_value(value: &Value) -> Result<ErrorPayload> {
        let bad = |reason: &str| WireError::BadErrorPayload {
            class_name: String::from("?"),
            reason: reason.to_owned(),
        };
        let items = value.as_tuple_or_list().ok_or_else(|| bad("not a tuple"))?;
        let [class_name, details] = items else {
            return Err(bad("not a 2-tuple"));
        };
        let class_name = class_name
            .as_str()
            .ok_or_else(|| bad("class name is not a str"))?;
        Ok(
            parse_known(class_name, details).unwrap_or_else(|| ErrorPayload::Other {
                class_name: class_name.to_owned(),
                payload: details.clone(),
            }),
        )
    }
}

fn oid_or_none(value: &Value) -> Option<Option<[u8; 8]>> {
    match value {
        Value::None => Some(None),
        other => other.as_bytes8().map(Some),
    }
}

fn conflict_details(details: &Value) -> Option<ConflictDetails> {
    let serials = match details.get("serials")? {
        Value::None => None,
        pair => match pair.as_tuple_or_list()? {
            [a, b] => Some((a.as_bytes8()?, b.as_bytes8()?)),
            _ => return None,
        },
    };
    let class_name = match details.get("class_name") {
        None | Some(Value::None) => None,
        Some(name) => Some(name.as_str()?.to_owned()),
    };
    Some(ConflictDetails {
        message: details.get("message")?.as_str()?.to_owned(),
        oid: oid_or_none(details.get("oid")?)?,
        class_name,
        serials,
    })
}

fn parse_known(class_name: &str, details: &Value) -> Option<ErrorPayload> {
    let args = || details.as_tuple_or_list().map(<[Value]>::to_vec);
    Some(match class_name {
        CONFLICT_ERROR => ErrorPayload::Conflict(conflict_details(details)?),
        READ_CONFLICT_ERROR => ErrorPayload::ReadConflict(conflict_details(details)?),
        BTREES_CONFLICT_ERROR => ErrorPayload::BTreesConflict {
            p1: details.get("p1")?.as_int()?,
            p2: details.get("p2")?.as_int()?,
            p3: details.get("p3")?.as_int()?,
            reason: details.get("reason")?.as_int()?,
        },
        POS_KEY_ERROR => match details.as_tuple_or_list()? {
            [oid] => ErrorPayload::PosKey(oid.as_bytes8()?),
            _ => return None,
        },
        READ_ONLY_ERROR if details.as_tuple_or_list()?.is_empty() => ErrorPayload::ReadOnly,
        STORAGE_TRANSACTION_ERROR => ErrorPayload::StorageTransaction(args()?),
        UNDO_ERROR => ErrorPayload::Undo {
            reason: details.get("_reason")?.as_str()?.to_owned(),
            oid: oid_or_none(details.get("_oid")?)?,
        },
        MULTIPLE_UNDO_ERRORS => {
            let errors = details
                .get("_errs")?
                .as_tuple_or_list()?
                .iter()
                .map(|pair| match pair.as_tuple_or_list()? {
                    [reason, oid] => Some((reason.as_str()?.to_owned(), oid_or_none(oid)?)),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            let parsed = ErrorPayload::MultipleUndo { errors };
            // `_reason`/`_oid` are the first error's; anything else would not survive
            // re-encoding, so keep such a payload as `Other`.
            let rebuilt = parsed.details();
            if rebuilt.get("_reason") != details.get("_reason")
                || rebuilt.get("_oid") != details.get("_oid")
            {
                return None;
            }
            parsed
        }
        _ => {
            let name = class_name.strip_prefix("builtins.")?;
            ErrorPayload::Builtin {
                name: name.to_owned(),
                args: args()?,
            }
        }
    })
}

impl From<ErrorPayload> for Value {
    fn from(payload: ErrorPayload) -> Value {
        payload.to_value()
    }
}

impl From<&ErrorPayload> for Value {
    fn from(payload: &ErrorPayload) -> Value {
        payload.to_value()
    }
}

impl fmt::Display for ErrorPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class_name(), self.details().python_repr())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips() {
        let oid = [0, 0, 0, 0, 0, 0, 0, 1];
        let payloads = [
            ErrorPayload::conflict(oid, Some("a.B".into()), [4; 8], [3; 8]),
            ErrorPayload::read_conflict(oid, None, [4; 8], [3; 8]),
            ErrorPayload::BTreesConflict {
                p1: 1,
                p2: 2,
                p3: 3,
                reason: 4,
            },
            ErrorPayload::PosKey(oid),
            ErrorPayload::ReadOnly,
            ErrorPayload::StorageTransaction(vec![Value::None, Value::Int(12345)]),
            ErrorPayload::Undo {
                reason: "nope".into(),
                oid: Some(oid),
            },
            ErrorPayload::MultipleUndo {
                errors: vec![("r".into(), Some(oid)), ("s".into(), None)],
            },
            ErrorPayload::value_error("unknown storage: 2"),
            ErrorPayload::key_error(3),
            ErrorPayload::attribute_error("new_oid"),
            ErrorPayload::Other {
                class_name: "builtins.Exception".into(),
                payload: Value::from(("x", 1)),
            },
        ];
        for p in payloads {
            let parsed = ErrorPayload::from_value(&p.to_value()).unwrap();
            // `Other` with a builtins name parses as Builtin when args are a tuple.
            assert_eq!(parsed.to_value(), p.to_value(), "{p}");
        }
    }

    #[test]
    fn odd_shapes_fall_back_to_other() {
        let v = Value::from((CONFLICT_ERROR, Value::dict_from_pairs([("message", "m")])));
        assert!(matches!(
            ErrorPayload::from_value(&v).unwrap(),
            ErrorPayload::Other { .. }
        ));
        let v = Value::from((POS_KEY_ERROR, (1, 2)));
        assert!(matches!(
            ErrorPayload::from_value(&v).unwrap(),
            ErrorPayload::Other { .. }
        ));
        assert!(ErrorPayload::from_value(&Value::from((1, 2))).is_err());
        assert!(ErrorPayload::from_value(&Value::None).is_err());
    }
}

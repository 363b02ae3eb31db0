//! Errors of the ZEO server: [`ServerError`] for the server's own failures (binding,
//! TLS setup, I/O), [`ZeoError`] for the exceptions sent to a client in an error reply
//! (a dotted Python class name and the exception's `__dict__` or `args`, exactly the
//! shapes ZEO 6 sends), and [`CloseReason`] for why a connection is dropped.

use zeoraid_storage::{Oid, StorageError, Tid};
use zeoraid_wire::Value;

/// A failure of the server itself (not of one client's request).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad address {0:?}: expected host:port or a Unix socket path")]
    BadAddress(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("no storage named {0:?}")]
    UnknownStorage(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An exception as ZEO puts it on the wire: `(class_name, __dict__ or args)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeoError {
    /// Dotted Python class name, e.g. `ZODB.POSException.POSKeyError`.
    pub class_name: String,
    /// The exception's `__dict__` (a dict) or its `args` (a tuple).
    pub payload: Value,
}

const POS: &str = "ZODB.POSException.";

fn tuple(items: Vec<Value>) -> Value {
    Value::Tuple(items)
}

fn oid_value(oid: Oid) -> Value {
    Value::from(oid.0)
}

fn tid_value(tid: Tid) -> Value {
    Value::from(tid.0)
}

impl ZeoError {
    pub fn new(class_name: impl Into<String>, payload: Value) -> Self {
        ZeoError {
            class_name: class_name.into(),
            payload,
        }
    }

    fn args(class_name: &str, args: Vec<Value>) -> Self {
        ZeoError::new(class_name, tuple(args))
    }

    /// `POSKeyError(oid)`.
    pub fn pos_key(oid: Oid) -> Self {
        Self::args(&format!("{POS}POSKeyError"), vec![oid_value(oid)])
    }

    /// `ReadOnlyError()`.
    pub fn read_only() -> Self {
        Self::args(&format!("{POS}ReadOnlyError"), vec![])
    }

    /// `StorageTransactionError(*args)`.
    pub fn storage_transaction(args: Vec<Value>) -> Self {
        Self::args(&format!("{POS}StorageTransactionError"), args)
    }

    /// `StorageTransactionError(message)`.
    pub fn storage_transaction_msg(message: impl Into<String>) -> Self {
        Self::storage_transaction(vec![Value::Str(message.into())])
    }

    /// `builtins.ValueError(message)`.
    pub fn value_error(message: impl Into<String>) -> Self {
        Self::args("builtins.ValueError", vec![Value::Str(message.into())])
    }

    /// `builtins.TypeError(message)`: bad arguments to a method.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::args("builtins.TypeError", vec![Value::Str(message.into())])
    }

    /// `builtins.KeyError(key)`.
    pub fn key_error(key: Value) -> Self {
        Self::args("builtins.KeyError", vec![key])
    }

    /// `builtins.AttributeError(message)`.
    pub fn attribute_error(message: impl Into<String>) -> Self {
        Self::args("builtins.AttributeError", vec![Value::Str(message.into())])
    }

    /// `builtins.AssertionError(message)`.
    pub fn assertion_error(message: impl Into<String>) -> Self {
        Self::args("builtins.AssertionError", vec![Value::Str(message.into())])
    }

    /// `builtins.Exception(message)`.
    pub fn exception(message: impl Into<String>) -> Self {
        Self::args("builtins.Exception", vec![Value::Str(message.into())])
    }

    /// A `ConflictError`/`ReadConflictError` `__dict__`: message, oid, class_name,
    /// serials — in that order, as ZODB builds it.
    fn conflict_dict(message: &str, oid: Oid, committed: Tid, read: Tid) -> Value {
        Value::Dict(vec![
            (Value::from("message"), Value::from(message)),
            (Value::from("oid"), oid_value(oid)),
            (Value::from("class_name"), Value::None),
            (
                Value::from("serials"),
                tuple(vec![tid_value(committed), tid_value(read)]),
            ),
        ])
    }

    pub fn conflict(oid: Oid, committed: Tid, read: Tid) -> Self {
        ZeoError::new(
            format!("{POS}ConflictError"),
            Self::conflict_dict("database conflict error", oid, committed, read),
        )
    }

    pub fn read_conflict(oid: Oid, committed: Tid, read: Tid) -> Self {
        ZeoError::new(
            format!("{POS}ReadConflictError"),
            Self::conflict_dict("database read conflict error", oid, committed, read),
        )
    }

    pub fn undo(reason: &str, oid: Option<Oid>) -> Self {
        ZeoError::new(
            format!("{POS}UndoError"),
            Value::Dict(vec![
                (Value::from("_reason"), Value::from(reason)),
                (
                    Value::from("_oid"),
                    oid.map(oid_value).unwrap_or(Value::None),
                ),
            ]),
        )
    }

    pub fn multiple_undo(errs: &[(String, Option<Oid>)]) -> Self {
        let (reason, oid) = errs
            .first()
            .map(|(r, o)| {
                (
                    Value::from(r.as_str()),
                    o.map(oid_value).unwrap_or(Value::None),
                )
            })
            .unwrap_or((Value::from(""), Value::None));
        let list = errs
            .iter()
            .map(|(r, o)| {
                tuple(vec![
                    Value::from(r.as_str()),
                    o.map(oid_value).unwrap_or(Value::None),
                ])
            })
            .collect();
        ZeoError::new(
            format!("{POS}MultipleUndoErrors"),
            Value::Dict(vec![
                (Value::from("_reason"), reason),
                (Value::from("_oid"), oid),
                (Value::from("_errs"), Value::List(list)),
            ]),
        )
    }

    /// Whether ZEO leaves this error out of the server log (answers about data).
    pub fn is_quiet(&self) -> bool {
        matches!(
            self.class_name.as_str(),
            "ZODB.POSException.POSKeyError"
                | "ZODB.POSException.ConflictError"
                | "ZODB.POSException.ReadConflictError"
        )
    }

    /// The reply payload `(class_name, dict|args)`.
    pub fn to_value(&self) -> Value {
        tuple(vec![
            Value::from(self.class_name.as_str()),
            self.payload.clone(),
        ])
    }
}

impl From<StorageError> for ZeoError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::PosKey { oid } => ZeoError::pos_key(oid),
            StorageError::ReadConflict {
                oid,
                committed,
                read,
            } => ZeoError::read_conflict(oid, committed, read),
            StorageError::Conflict {
                oid,
                committed,
                read,
            } => ZeoError::conflict(oid, committed, read),
            StorageError::ReadOnly => ZeoError::read_only(),
            StorageError::Transaction(msg) => ZeoError::storage_transaction_msg(msg),
            StorageError::Undo { reason, oid } => ZeoError::undo(&reason, oid),
            StorageError::MultipleUndo(errs) => ZeoError::multiple_undo(&errs),
            StorageError::Unsupported(msg) => {
                ZeoError::args(&format!("{POS}Unsupported"), vec![Value::Str(msg)])
            }
            StorageError::Remote { class, message } => {
                ZeoError::args(&class, vec![Value::Str(message)])
            }
            other => ZeoError::args(
                &format!("{POS}StorageError"),
                vec![Value::Str(other.to_string())],
            ),
        }
    }
}

/// Why a connection is closed by the server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloseReason {
    #[error("client closed the connection")]
    Eof,
    #[error("{0}")]
    Protocol(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("{0}")]
    Server(String),
    #[error("server shutting down")]
    Shutdown,
}

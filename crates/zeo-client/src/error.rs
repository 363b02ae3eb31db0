//! `ClientError`, everything that can go wrong talking to a ZEO server, and its
//! mapping onto [`StorageError`]: ZEO error replies become the model's typed
//! errors (POSKeyError → `PosKey`, ConflictError → `Conflict`, …), a lost or
//! missing connection becomes `Disconnected`, a call that took too long `Timeout`.

use std::time::Duration;

use zeoraid_storage::{Oid, StorageError, Tid};
use zeoraid_wire::exception::{ConflictDetails, MULTIPLE_UNDO_ERRORS, POS_KEY_ERROR, UNDO_ERROR};
use zeoraid_wire::{ErrorPayload, Value, WireError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No connection right now (connecting, reconnecting, or closed).
    #[error("not connected: {0}")]
    NotConnected(String),

    /// The connection was lost while the call was pending.
    #[error("connection lost: {0}")]
    Disconnected(String),

    /// No reply within the time limit.
    #[error("no reply within {0:?}")]
    Timeout(Duration),

    /// Opening the connection (TCP, TLS, handshake, register) failed.
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },

    /// The server sent something that is not what the protocol says.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The server answered with an error reply.
    #[error("server error {0}")]
    Remote(ErrorPayload),

    /// A value could not be encoded for the wire.
    #[error("cannot encode message: {0}")]
    Encode(#[from] WireError),

    /// Bad options (addresses, TLS files, …).
    #[error("configuration: {0}")]
    Config(String),

    /// A local file (blob, blob cache) could not be read or written.
    #[error("I/O error: {0}")]
    Io(String),

    /// The client was closed.
    #[error("client is closed")]
    Closed,
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e.to_string())
    }
}

impl From<ClientError> for StorageError {
    fn from(e: ClientError) -> Self {
        storage_error(e, None)
    }
}

/// Maps a client error onto the storage model; `oid` names the object the call was
/// about, for error replies that do not say (e.g. a blob's POSKeyError).
pub(crate) fn storage_error(e: ClientError, oid: Option<Oid>) -> StorageError {
    match e {
        ClientError::Remote(payload) => remote_error(payload, oid),
        ClientError::Timeout(d) => StorageError::Timeout(d),
        ClientError::NotConnected(m) | ClientError::Disconnected(m) => {
            StorageError::Disconnected(m)
        }
        e @ ClientError::Connect { .. } => StorageError::Disconnected(e.to_string()),
        ClientError::Closed => StorageError::Disconnected("client is closed".into()),
        ClientError::Protocol(m) => StorageError::Remote {
            class: "zeoraid.ProtocolError".into(),
            message: m,
        },
        ClientError::Encode(e) => StorageError::Remote {
            class: "zeoraid.EncodeError".into(),
            message: e.to_string(),
        },
        ClientError::Config(m) => StorageError::Unsupported(m),
        ClientError::Io(m) => StorageError::Io(std::io::Error::other(m)),
    }
}

fn conflict_parts(d: &ConflictDetails) -> Option<(Oid, Tid, Tid)> {
    let oid = Oid(d.oid?);
    let (committed, read) = d.serials?;
    Some((oid, Tid(committed), Tid(read)))
}

/// The first 8-byte bytes value among an error's args (an oid, by convention).
fn first_oid(details: &Value) -> Option<Oid> {
    details
        .as_tuple_or_list()?
        .iter()
        .find_map(|v| v.as_bytes8().map(Oid))
}

/// The reason string in an undo error's details: a `_reason` str, looked for
/// in dicts, tuples and (opaque) pickled exception objects.
fn find_reason(v: &Value) -> Option<String> {
    match v {
        Value::Dict(_) => match v.get("_reason") {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => v.as_dict()?.iter().find_map(|(_, v)| find_reason(v)),
        },
        Value::Tuple(items) | Value::List(items) => items.iter().find_map(find_reason),
        Value::Object(o) => find_reason(&o.args).or_else(|| o.state.as_ref().and_then(find_reason)),
        _ => None,
    }
}

/// The first oid (8-byte bytes) in an undo error's details.
fn find_oid(v: &Value) -> Option<Oid> {
    match v {
        Value::Bytes(_) => v.as_bytes8().map(Oid),
        Value::Dict(_) => match v.get("_oid") {
            Some(o) if o.as_bytes8().is_some() => o.as_bytes8().map(Oid),
            _ => v.as_dict()?.iter().find_map(|(_, v)| find_oid(v)),
        },
        Value::Tuple(items) | Value::List(items) => items.iter().find_map(find_oid),
        Value::Object(o) => find_oid(&o.args),
        _ => None,
    }
}

/// Maps a ZEO error reply onto the storage model.
pub(crate) fn remote_error(payload: ErrorPayload, oid: Option<Oid>) -> StorageError {
    let other = |payload: &ErrorPayload| StorageError::Remote {
        class: payload.class_name(),
        message: payload.details().python_repr(),
    };
    match &payload {
        ErrorPayload::PosKey(o) => StorageError::PosKey { oid: Oid(*o) },
        ErrorPayload::Conflict(d) => match conflict_parts(d) {
            Some((oid, committed, read)) => StorageError::Conflict {
                oid,
                committed,
                read,
            },
            None => other(&payload),
        },
        ErrorPayload::ReadConflict(d) => match conflict_parts(d) {
            Some((oid, committed, read)) => StorageError::ReadConflict {
                oid,
                committed,
                read,
            },
            None => other(&payload),
        },
        ErrorPayload::ReadOnly => StorageError::ReadOnly,
        ErrorPayload::StorageTransaction(args) => StorageError::Transaction(
            args.iter()
                .map(|a| match a {
                    Value::Str(s) => s.clone(),
                    v => v.python_repr(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ErrorPayload::Undo { reason, oid } => StorageError::Undo {
            reason: reason.clone(),
            oid: oid.map(Oid),
        },
        ErrorPayload::MultipleUndo { errors } => StorageError::MultipleUndo(
            errors
                .iter()
                .map(|(r, o)| (r.clone(), o.map(Oid)))
                .collect(),
        ),
        // POSKeyError with other args, e.g. ("No blob file", oid, serial).
        ErrorPayload::Other {
            class_name,
            payload: details,
        } if class_name == POS_KEY_ERROR => match first_oid(details).or(oid) {
            Some(oid) => StorageError::PosKey { oid },
            None => other(&payload),
        },
        // FileStorage's MultipleUndoErrors carries (oid, UndoError) pairs whose
        // UndoErrors are pickled `_recon` objects; UndoError may be odd too.
        ErrorPayload::Other {
            class_name,
            payload: details,
        } if class_name == MULTIPLE_UNDO_ERRORS => {
            let errors: Vec<(String, Option<Oid>)> = details
                .get("_errs")
                .and_then(Value::as_tuple_or_list)
                .map(|errs| {
                    errs.iter()
                        .map(|e| {
                            (
                                find_reason(e).unwrap_or_else(|| e.python_repr()),
                                find_oid(e),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if errors.is_empty() {
                StorageError::MultipleUndo(vec![(details.python_repr(), None)])
            } else {
                StorageError::MultipleUndo(errors)
            }
        }
        ErrorPayload::Other {
            class_name,
            payload: details,
        } if class_name == UNDO_ERROR => StorageError::Undo {
            reason: find_reason(details).unwrap_or_else(|| details.python_repr()),
            oid: find_oid(details),
        },
        ErrorPayload::Other { class_name, .. }
            if class_name == zeoraid_wire::exception::READ_ONLY_ERROR =>
        {
            StorageError::ReadOnly
        }
        _ => other(&payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        let oid = [0, 0, 0, 0, 0, 0, 0, 7];
        assert!(matches!(
            remote_error(ErrorPayload::PosKey(oid), None),
            StorageError::PosKey { oid: o } if o == Oid(oid)
        ));
        assert!(matches!(
            remote_error(ErrorPayload::conflict(oid, None, [2; 8], [1; 8]), None),
            StorageError::Conflict { committed, read, .. } if committed == Tid([2; 8]) && read == Tid([1; 8])
        ));
        assert!(matches!(
            remote_error(ErrorPayload::read_conflict(oid, None, [2; 8], [1; 8]), None),
            StorageError::ReadConflict { .. }
        ));
        assert!(matches!(
            remote_error(ErrorPayload::ReadOnly, None),
            StorageError::ReadOnly
        ));
        assert!(matches!(
            remote_error(
                ErrorPayload::StorageTransaction(vec![Value::None, Value::Int(5)]),
                None
            ),
            StorageError::Transaction(m) if m == "None, 5"
        ));
        let blob = ErrorPayload::Other {
            class_name: POS_KEY_ERROR.into(),
            payload: Value::from(("No blob file", oid, [1u8; 8])),
        };
        assert!(matches!(
            remote_error(blob, None),
            StorageError::PosKey { oid: o } if o == Oid(oid)
        ));
        assert!(matches!(
            remote_error(ErrorPayload::value_error("x"), None),
            StorageError::Remote { class, .. } if class == "builtins.ValueError"
        ));
        assert!(matches!(
            StorageError::from(ClientError::Timeout(Duration::from_secs(1))),
            StorageError::Timeout(_)
        ));
        assert!(matches!(
            StorageError::from(ClientError::Disconnected("x".into())),
            StorageError::Disconnected(_)
        ));
    }
}

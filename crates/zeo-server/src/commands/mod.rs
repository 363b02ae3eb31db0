//! The server methods, one file per command or small group, and the dispatch from
//! a method name to its handler. Argument parsing helpers live here too: a bad
//! argument is a `builtins.TypeError`/`ValueError` (an error reply for a call,
//! a closed connection for a one-way message, as in ZEO).

use zeoraid_storage::{Oid, Tid};
use zeoraid_wire::Value;

use crate::error::ZeoError;
use crate::session::{Outcome, Session};

pub mod blobs;
pub mod commit;
pub(crate) mod extension;
pub mod get_info;
pub mod invalidations;
pub mod iterator;
pub mod loads;
pub mod new_oids;
pub mod pack;
pub mod raid;
pub mod register;
pub mod status;
pub mod undo_log;

/// ZEO 6.2's `StorageServer.registered_methods`: what a registered client may call.
pub const REGISTERED_METHODS: &[&str] = &[
    "get_info",
    "lastTransaction",
    "getInvalidations",
    "new_oids",
    "pack",
    "loadBefore",
    "storea",
    "checkCurrentSerialInTransaction",
    "restorea",
    "storeBlobStart",
    "storeBlobChunk",
    "storeBlobEnd",
    "storeBlobShared",
    "deleteObject",
    "tpc_begin",
    "vote",
    "tpc_finish",
    "tpc_abort",
    "history",
    "record_iternext",
    "sendBlob",
    "getTid",
    "loadSerial",
    "new_oid",
    "undoa",
    "undoLog",
    "undoInfo",
    "iterator_start",
    "iterator_next",
    "iterator_record_start",
    "iterator_record_next",
    "iterator_gc",
    "server_status",
    "set_client_label",
    "ping",
];

/// Reads whose reply must be queued before a concurrent commit's invalidations.
pub(crate) fn needs_read_guard(name: &str) -> bool {
    matches!(
        name,
        "loadBefore" | "loadSerial" | "getTid" | "lastTransaction" | "getInvalidations"
    )
}

/// Run the handler for `name`.
pub(crate) async fn call(
    session: &mut Session,
    msgid: &Value,
    oneway: bool,
    name: &str,
    args: Vec<Value>,
) -> Outcome {
    let a = Args::new(name, args);
    match name {
        "register" => register::register(session, msgid, oneway, a).await,
        "get_info" => get_info::get_info(session).await.into(),
        "lastTransaction" => invalidations::last_transaction(session).await.into(),
        "getInvalidations" => invalidations::get_invalidations(session, a).await.into(),
        "new_oids" => new_oids::new_oids(session, a).await.into(),
        "new_oid" => Outcome::Error(ZeoError::attribute_error(
            "'ZEOStorage' object has no attribute 'new_oid'",
        )),
        "loadBefore" => loads::load_before(session, a).await.into(),
        "loadSerial" => loads::load_serial(session, a).await.into(),
        "getTid" => loads::get_tid(session, a).await.into(),
        "history" => loads::history(session, a).await.into(),
        "record_iternext" => loads::record_iternext(session, a).await.into(),
        "tpc_begin" => commit::tpc_begin(session, a).into(),
        "storea" => commit::storea(session, a).into(),
        "restorea" => commit::restorea(session, a).into(),
        "checkCurrentSerialInTransaction" => commit::check_current_serial(session, a).into(),
        "deleteObject" => commit::delete_object(session, a).into(),
        "undoa" => commit::undoa(session, a).into(),
        "vote" => commit::vote(session, msgid, oneway, a).await,
        "tpc_finish" => commit::tpc_finish(session, msgid, oneway, a).await,
        "tpc_abort" => commit::tpc_abort(session, a).await.into(),
        "undoLog" => undo_log::undo_log(session, a).await.into(),
        "undoInfo" => undo_log::undo_info(session, a).await.into(),
        "pack" => pack::pack(session, msgid, oneway, a).await,
        "iterator_start" => iterator::iterator_start(session, a).await.into(),
        "iterator_next" => iterator::iterator_next(session, a).await.into(),
        "iterator_record_start" => iterator::iterator_record_start(session, a).into(),
        "iterator_record_next" => iterator::iterator_record_next(session, a).into(),
        "iterator_gc" => iterator::iterator_gc(session, a).into(),
        "storeBlobStart" => blobs::store_blob_start(session).await.into(),
        "storeBlobChunk" => blobs::store_blob_chunk(session, a).await.into(),
        "storeBlobEnd" => blobs::store_blob_end(session, a).await.into(),
        "storeBlobShared" => blobs::store_blob_shared(session, a).into(),
        "sendBlob" => blobs::send_blob(session, a).await.into(),
        "server_status" => status::server_status(session).await.into(),
        "set_client_label" => status::set_client_label(session, a).into(),
        "ping" => Outcome::Reply(Value::None),
        "raid_status" | "raid_details" | "raid_disable" | "raid_recover" | "raid_reload"
        | "raid_verify" => raid::call(session, name, a).await.into(),
        other => Outcome::Error(ZeoError::attribute_error(format!(
            "'ZEOStorage' object has no attribute '{other}'"
        ))),
    }
}

/// A short rendering of an error payload for log lines.
pub(crate) fn short_payload(err: &ZeoError) -> String {
    let mut s = format!("{:?}", err.payload);
    if s.len() > 200 {
        s.truncate(200);
        s.push('…');
    }
    format!(" {s}")
}

/// The positional arguments of a call, with typed accessors.
pub(crate) struct Args {
    method: String,
    values: Vec<Value>,
}

impl Args {
    pub fn new(method: &str, values: Vec<Value>) -> Self {
        Args {
            method: method.to_owned(),
            values,
        }
    }

    fn bad(&self, i: usize, what: &str) -> ZeoError {
        ZeoError::type_error(format!(
            "{}() argument {} must be {what}",
            self.method,
            i + 1
        ))
    }

    /// Argument `i`, required.
    pub fn get(&self, i: usize) -> Result<&Value, ZeoError> {
        self.values.get(i).ok_or_else(|| {
            ZeoError::type_error(format!(
                "{}() missing required positional argument {}",
                self.method,
                i + 1
            ))
        })
    }

    /// Argument `i` if given.
    pub fn opt(&self, i: usize) -> Option<&Value> {
        self.values.get(i)
    }

    /// Take argument `i` out (cheap for bytes).
    pub fn take(&mut self, i: usize) -> Result<Value, ZeoError> {
        self.get(i)?;
        Ok(std::mem::replace(&mut self.values[i], Value::None))
    }

    pub fn oid(&self, i: usize) -> Result<Oid, ZeoError> {
        self.get(i)?
            .as_bytes8()
            .map(Oid)
            .ok_or_else(|| self.bad(i, "an 8-byte oid"))
    }

    pub fn tid(&self, i: usize) -> Result<Tid, ZeoError> {
        self.get(i)?
            .as_bytes8()
            .map(Tid)
            .ok_or_else(|| self.bad(i, "an 8-byte tid"))
    }

    /// A tid or None (missing counts as None).
    pub fn opt_tid(&self, i: usize) -> Result<Option<Tid>, ZeoError> {
        match self.opt(i) {
            None | Some(Value::None) => Ok(None),
            Some(v) => v
                .as_bytes8()
                .map(|b| Some(Tid(b)))
                .ok_or_else(|| self.bad(i, "an 8-byte tid or None")),
        }
    }

    /// The serial a store is based on: a tid, or None for a new object (as
    /// ZODB's storages take it: `store(oid, None, ...)` is `z64`). An 8-char
    /// str (old tests pass `'\0' * 8`) is taken as its Latin-1 bytes: Python's
    /// FileStorage ignores the serial of a new object and finds any other
    /// serial not current, which the bytes reproduce.
    pub fn serial(&self, i: usize) -> Result<Tid, ZeoError> {
        match self.get(i)? {
            Value::None => Ok(Tid::ZERO),
            Value::Str(s) if s.chars().count() == 8 && s.chars().all(|c| (c as u32) < 256) => {
                let mut b = [0u8; 8];
                for (slot, c) in b.iter_mut().zip(s.chars()) {
                    *slot = c as u32 as u8;
                }
                Ok(Tid(b))
            }
            v => v
                .as_bytes8()
                .map(Tid)
                .ok_or_else(|| self.bad(i, "an 8-byte tid or None")),
        }
    }

    pub fn bytes(&mut self, i: usize) -> Result<bytes::Bytes, ZeoError> {
        match self.take(i)? {
            Value::Bytes(b) => Ok(b),
            _ => Err(self.bad(i, "bytes")),
        }
    }

    /// Bytes, or a str taken as its UTF-8 encoding (as ZODB's
    /// `TransactionMetaData` does for `user` and `description`: a client
    /// passing a `transaction.Transaction` sends them as str).
    pub fn bytes_or_str(&mut self, i: usize) -> Result<bytes::Bytes, ZeoError> {
        match self.take(i)? {
            Value::Bytes(b) => Ok(b),
            Value::Str(s) => Ok(bytes::Bytes::from(s.into_bytes())),
            _ => Err(self.bad(i, "bytes or str")),
        }
    }

    /// Bytes or None.
    pub fn opt_bytes(&mut self, i: usize) -> Result<Option<bytes::Bytes>, ZeoError> {
        match self.take(i)? {
            Value::Bytes(b) => Ok(Some(b)),
            Value::None => Ok(None),
            _ => Err(self.bad(i, "bytes or None")),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, ZeoError> {
        self.get(i)?.as_int().ok_or_else(|| self.bad(i, "an int"))
    }

    /// An int, `default` if missing.
    pub fn int_or(&self, i: usize, default: i64) -> Result<i64, ZeoError> {
        match self.opt(i) {
            None => Ok(default),
            Some(v) => v.as_int().ok_or_else(|| self.bad(i, "an int")),
        }
    }

    pub fn str(&self, i: usize) -> Result<&str, ZeoError> {
        self.get(i)?.as_str().ok_or_else(|| self.bad(i, "a str"))
    }

    pub fn float(&self, i: usize) -> Result<f64, ZeoError> {
        let v = self.get(i)?;
        v.as_float()
            .or_else(|| v.as_int().map(|n| n as f64))
            .ok_or_else(|| self.bad(i, "a number"))
    }
}

/// Python's `repr` of bytes, for messages that quote an oid or tid.
pub(crate) fn bytes_repr(b: &[u8]) -> String {
    let mut s = String::from("b'");
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(char::from(c)),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('\'');
    s
}

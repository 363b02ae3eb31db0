//! The transaction iterator over the wire: `iterator_start(start, stop)` → iid,
//! then per transaction `iterator_next(iid)` and `iterator_record_start(iid, tid)` +
//! `iterator_record_next(riid)` until `None`. A stream dropped before its end sends
//! one-way `iterator_gc([ids])` so the server frees its iterators.
//!
//! Server-side iterators live on one connection: if it drops, the stream yields
//! `Disconnected` and ends.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use zeoraid_storage::{StorageError, Tid, TransactionRecord, TransactionStream};
use zeoraid_wire::Value;

use crate::convert::{data_record, protocol, transaction_header};
use crate::error::ClientError;
use crate::rpc::Session;

/// Server iterator ids still open; freed with `iterator_gc` on drop.
struct ServerIterators {
    session: Arc<Session>,
    open: Vec<i64>,
}

impl Drop for ServerIterators {
    fn drop(&mut self) {
        if !self.open.is_empty() {
            let ids = Value::list(self.open.iter().copied());
            self.session
                .try_send_oneway("iterator_gc", Value::Tuple(vec![ids]));
        }
    }
}

struct State {
    iters: ServerIterators,
    iid: i64,
    timeout: Duration,
    done: bool,
}

fn int_reply(v: &Value, what: &str) -> Result<i64, ClientError> {
    v.as_int()
        .ok_or_else(|| protocol(format!("{what}: expected an int, got a {}", v.type_name())))
}

impl State {
    async fn next_transaction(&mut self) -> Result<Option<TransactionRecord>, ClientError> {
        let session = self.iters.session.clone();
        let reply = session
            .call(
                "iterator_next",
                Value::Tuple(vec![Value::Int(self.iid)]),
                self.timeout,
            )
            .await?;
        if reply.is_none() {
            // The server dropped the iterator at its end.
            self.iters.open.retain(|&i| i != self.iid);
            return Ok(None);
        }
        let (tid, status, meta) = transaction_header(&reply)?;
        let riid = session
            .call(
                "iterator_record_start",
                Value::Tuple(vec![Value::Int(self.iid), Value::from(tid.0)]),
                self.timeout,
            )
            .await?;
        let riid = int_reply(&riid, "iterator_record_start")?;
        self.iters.open.push(riid);
        let mut records = Vec::new();
        loop {
            let reply = session
                .call(
                    "iterator_record_next",
                    Value::Tuple(vec![Value::Int(riid)]),
                    self.timeout,
                )
                .await?;
            if reply.is_none() {
                self.iters.open.retain(|&i| i != riid);
                break;
            }
            records.push(data_record(&reply)?);
        }
        Ok(Some(TransactionRecord {
            tid,
            status,
            meta,
            records,
        }))
    }
}

/// Starts a server-side iterator and streams its transactions.
pub(crate) async fn transactions(
    session: Arc<Session>,
    start: Option<Tid>,
    stop: Option<Tid>,
    timeout: Duration,
) -> Result<TransactionStream, ClientError> {
    let tid_arg = |t: Option<Tid>| t.map(|t| Value::from(t.0)).unwrap_or(Value::None);
    let reply = session
        .call(
            "iterator_start",
            Value::Tuple(vec![tid_arg(start), tid_arg(stop)]),
            timeout,
        )
        .await?;
    let iid = int_reply(&reply, "iterator_start")?;
    let state = State {
        iters: ServerIterators {
            session,
            open: vec![iid],
        },
        iid,
        timeout,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        match state.next_transaction().await {
            Ok(Some(record)) => Some((Ok(record), state)),
            Ok(None) => None,
            Err(e) => {
                state.done = true;
                Some((Err(StorageError::from(e)), state))
            }
        }
    });
    Ok(stream.boxed())
}

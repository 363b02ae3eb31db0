//! The transaction iterator: a stream from one backend (chosen like any read) that
//! fails over mid-stream. When the backend's stream fails or stalls past its
//! timeout, the backend is degraded and the iteration resumes on another optimal
//! backend just after the last transaction already yielded, so the caller sees one
//! uninterrupted, gap-free stream.

use std::sync::Arc;

use futures::StreamExt;
use zeoraid_storage::{Storage, StorageResult, Tid, TransactionRecord, TransactionStream};

use crate::backend::{Fault, Kind};
use crate::Inner;

struct Cursor {
    inner: Arc<Inner>,
    backend: usize,
    stream: TransactionStream,
    /// Where to resume: just after the last transaction yielded.
    next_start: Option<Tid>,
    stop: Option<Tid>,
    done: bool,
}

async fn open_on(
    inner: &Inner,
    start: Option<Tid>,
    stop: Option<Tid>,
    exclude: Option<usize>,
) -> StorageResult<(usize, TransactionStream)> {
    let open = move |s: Arc<dyn Storage>| async move { s.iterator(start, stop).await };
    inner
        .read_from("iterator", Kind::Read, &open, exclude)
        .await
}

pub(crate) async fn iterator(
    inner: &Arc<Inner>,
    start: Option<Tid>,
    stop: Option<Tid>,
) -> StorageResult<TransactionStream> {
    let (backend, stream) = open_on(inner, start, stop, None).await?;
    let cursor = Cursor {
        inner: Arc::clone(inner),
        backend,
        stream,
        next_start: start,
        stop,
        done: false,
    };
    Ok(Box::pin(futures::stream::unfold(cursor, next)))
}

async fn next(mut c: Cursor) -> Option<(StorageResult<TransactionRecord>, Cursor)> {
    loop {
        if c.done {
            return None;
        }
        let timeout = c.inner.backend(c.backend).timeout;
        let reason = match tokio::time::timeout(timeout, c.stream.next()).await {
            Ok(Some(Ok(record))) => {
                match record.tid.as_u64().checked_add(1) {
                    Some(n) => c.next_start = Some(Tid::from_u64(n)),
                    None => c.done = true,
                }
                return Some((Ok(record), c));
            }
            Ok(None) => return None,
            Ok(Some(Err(e))) if e.is_answer() => {
                c.done = true;
                return Some((Err(e), c));
            }
            Ok(Some(Err(e))) => Fault::Error(e).reason("iterator"),
            Err(_) => Fault::TimedOut(timeout).reason("iterator"),
        };
        c.inner.degrade(c.backend, reason);
        match open_on(&c.inner, c.next_start, c.stop, Some(c.backend)).await {
            Ok((backend, stream)) => {
                c.backend = backend;
                c.stream = stream;
            }
            Err(e) => {
                c.done = true;
                return Some((Err(e), c));
            }
        }
    }
}

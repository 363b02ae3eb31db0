//! The multiplexed RPC layer over one live connection (a [`Session`]): many calls
//! in flight, replies matched by msgid, one-way calls, a writer task so that every
//! frame goes out in FIFO order, heartbeats, and a reader task that completes
//! calls and hands server callbacks to [`crate::callbacks`].
//!
//! A frame sent while the output is idle (nothing queued, the writer task not
//! writing) is written by the caller itself, on its own thread, instead of
//! waking the writer task for it: a RAID forwarding a commit to its backends so
//! sends its `vote` and `tpc_finish` with one `send` each and no hand-over
//! between threads. What the socket does not take at once goes to the writer
//! task, ahead of anything queued meanwhile ([`Output::rest`]). `loadBefore`
//! calls always go through the writer task ([`Route::Joined`]): they come many
//! at a time, and one `send` for all those queued together costs less than one
//! each.
//!
//! A session dies once: on EOF, an I/O error, a malformed frame, or when closed
//! deliberately. Then every pending call fails at once with `Disconnected(reason)`,
//! the object cache is emptied, both tasks stop and the socket is dropped; the
//! supervisor opens a new session.
//!
//! The reader applies a call's effect on the object cache ([`CacheEffect`])
//! before it completes the call, in wire order with the invalidation callbacks:
//! a `loadBefore` reply is stored, a `tpc_finish` reply invalidates what our
//! transaction changed — also when nobody waits for the reply any more.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};
use zeoraid_storage::Oid;
use zeoraid_wire::{
    decode_message, encode_frame, encode_message, Encoding, ErrorPayload, FrameDecoder, Message,
    MessageKind, Value,
};

use crate::callbacks::{Callbacks, Downloads};
use crate::convert;
use crate::error::ClientError;
use crate::object_cache::{FinishOutcome, ObjectCache};
use crate::options::ServerAddress;
use crate::transport::BoxedStream;

type Reply = Result<Value, ClientError>;

/// How much the reader asks the socket for at a time.
const READ_CHUNK: usize = 64 * 1024;
/// How many frames may wait for the writer before senders wait too.
const OUTGOING_QUEUE: usize = 256;
/// Frames up to this size are joined with their neighbours into one write …
const JOIN_FRAME_MAX: usize = 16 * 1024;
/// … up to this many bytes per write.
const JOIN_MAX: usize = 64 * 1024;

/// What the reader does to the object cache with a call's reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum CacheEffect {
    #[default]
    None,
    /// A `loadBefore` of this oid: store the record it answers.
    StoreLoad(Oid),
    /// Our `tpc_finish` of a transaction that changed these oids: invalidate them
    /// with the committed tid.
    Finish(Vec<Oid>),
}

/// The socket's write side, shared by the writer task and the callers' direct
/// writes; whoever holds its lock is the only one writing.
struct Output {
    half: WriteHalf<BoxedStream>,
    /// The unwritten end of a frame a direct write began: the writer task
    /// writes it before anything it dequeues (which may have been queued while
    /// the direct write held the lock).
    rest: Bytes,
}

/// A frame counted in [`Session::queued`] on its way into the queue: uncounted
/// when dropped before [`QueueSlot::handed_over`].
struct QueueSlot<'a>(Option<&'a AtomicUsize>);

impl<'a> QueueSlot<'a> {
    fn take(queued: &'a AtomicUsize) -> Self {
        queued.fetch_add(1, Ordering::SeqCst);
        QueueSlot(Some(queued))
    }

    /// In the queue: the writer task uncounts it once written.
    fn handed_over(mut self) {
        self.0 = None;
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        if let Some(queued) = self.0 {
            queued.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How a frame is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// Written by the caller when the output is idle (a commit's calls, one
    /// at a time), else queued.
    Direct,
    /// Always queued for the writer task, which joins the frames queued
    /// together into one write (loads, many at a time).
    Joined,
}

/// What became of a frame offered for a direct write.
enum Direct {
    /// Written whole, or its rest handed to the writer task.
    Sent,
    /// The output is busy: queue it.
    Busy(Bytes),
    /// The socket failed.
    Failed(String),
}

struct PendingCall {
    reply: oneshot::Sender<Reply>,
    /// The oid of a `loadBefore` whose answer goes into the object cache.
    load: Option<Oid>,
}

struct Pending {
    calls: HashMap<i64, PendingCall>,
    /// Our `tpc_finish` calls on their way, by msgid, with the oids their
    /// transaction changed. Apart from `calls`: the reader must invalidate them
    /// whether or not anyone still waits for the reply.
    finishes: HashMap<i64, Vec<Oid>>,
    /// Set once, when the session dies; the reason every later call fails with.
    closed: Option<String>,
}

/// One live, registered-or-registering connection.
pub(crate) struct Session {
    /// Counts connections of one client, for logs and to tell a voted transaction's
    /// connection from a later one.
    pub(crate) generation: u64,
    pub(crate) address: ServerAddress,
    pub(crate) encoding: Encoding,
    tx: mpsc::Sender<Bytes>,
    /// Frames in `tx` not yet written; direct writes only while it is 0.
    queued: AtomicUsize,
    output: Arc<tokio::sync::Mutex<Output>>,
    pending: Mutex<Pending>,
    next_msgid: AtomicI64,
    closed_tx: watch::Sender<Option<String>>,
    slow_call: Duration,
    object_cache: Arc<ObjectCache>,
}

/// Removes a call's pending entry when the call ends in any way (reply, timeout,
/// the caller dropping the future).
struct PendingGuard<'a> {
    session: &'a Session,
    msgid: i64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.session.pending.lock() {
            p.calls.remove(&self.msgid);
        }
    }
}

/// A call on its way ([`Session::send_call`]): awaiting [`ReplyWait::wait`] gives
/// its reply. Dropping it forgets the call.
pub(crate) struct ReplyWait {
    session: Arc<Session>,
    msgid: i64,
    name: &'static str,
    reply: Option<oneshot::Receiver<Reply>>,
    limit: Duration,
    started: Instant,
}

impl ReplyWait {
    /// The session the call went out on.
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The reply, within what is left of the call's time limit.
    pub(crate) async fn wait(mut self) -> Reply {
        let Some(reply_rx) = self.reply.take() else {
            return Err(self.session.disconnected());
        };
        let left = self.limit.saturating_sub(self.started.elapsed());
        let outcome = tokio::time::timeout(left, self.session.reply(reply_rx)).await;
        self.session
            .settle(self.name, self.limit, self.started, outcome)
    }
}

impl Drop for ReplyWait {
    fn drop(&mut self) {
        if let Ok(mut p) = self.session.pending.lock() {
            p.calls.remove(&self.msgid);
        }
    }
}

pub(crate) struct SessionParams {
    pub(crate) generation: u64,
    pub(crate) address: ServerAddress,
    pub(crate) encoding: Encoding,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) slow_call: Duration,
    pub(crate) max_frame_size: usize,
}

impl Session {
    /// Starts the reader and writer tasks on a stream whose handshake is done.
    /// `leftover` holds bytes already read past the handshake frame.
    pub(crate) fn start(
        stream: BoxedStream,
        leftover: BytesMut,
        params: SessionParams,
        callbacks: Arc<Callbacks>,
    ) -> Arc<Session> {
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        let (closed_tx, _) = watch::channel(None);
        let (reader, writer) = tokio::io::split(stream);
        let session = Arc::new(Session {
            generation: params.generation,
            address: params.address,
            encoding: params.encoding,
            tx,
            queued: AtomicUsize::new(0),
            output: Arc::new(tokio::sync::Mutex::new(Output {
                half: writer,
                rest: Bytes::new(),
            })),
            pending: Mutex::new(Pending {
                calls: HashMap::new(),
                finishes: HashMap::new(),
                closed: None,
            }),
            next_msgid: AtomicI64::new(1),
            closed_tx,
            slow_call: params.slow_call,
            object_cache: callbacks.object_cache.clone(),
        });
        tokio::spawn(write_loop(session.clone(), rx, params.heartbeat_interval));
        tokio::spawn(read_loop(
            session.clone(),
            reader,
            leftover,
            FrameDecoder::new(params.max_frame_size),
            callbacks,
        ));
        session
    }

    /// The reason the session died, if it did.
    pub(crate) fn closed_reason(&self) -> Option<String> {
        self.pending.lock().ok().and_then(|p| p.closed.clone())
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self.pending.lock() {
            Ok(p) => p.closed.is_some(),
            Err(_) => true,
        }
    }

    /// Waits until the session dies; returns the reason.
    pub(crate) async fn closed(&self) -> String {
        let mut rx = self.closed_tx.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return "session dropped".into();
            }
        }
    }

    /// Kills the session: every pending call fails with `Disconnected(reason)` now,
    /// the tasks stop and the socket is closed. Only the first reason counts.
    pub(crate) fn close(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let calls = match self.pending.lock() {
            Ok(mut p) => {
                if p.closed.is_some() {
                    return;
                }
                p.closed = Some(reason.clone());
                p.finishes.clear();
                std::mem::take(&mut p.calls)
            }
            Err(_) => return,
        };
        // What this session stored may be out of date by the next one (and a
        // finish on its way has an unknown outcome): start afresh.
        self.object_cache.session_closed(self.generation);
        info!(
            server = %self.address,
            generation = self.generation,
            pending = calls.len(),
            "ZEO connection closed: {reason}"
        );
        for (_, call) in calls {
            let _ = call
                .reply
                .send(Err(ClientError::Disconnected(reason.clone())));
        }
        self.closed_tx.send_replace(Some(reason));
    }

    fn frame(&self, message: &Message) -> Result<Bytes, ClientError> {
        let mut out = BytesMut::new();
        self.frame_into(message, &mut out)?;
        Ok(out.freeze())
    }

    /// Appends the frame of `message` to `out`.
    fn frame_into(&self, message: &Message, out: &mut BytesMut) -> Result<(), ClientError> {
        let payload = encode_message(message, self.encoding)?;
        out.reserve(payload.len() + 4);
        encode_frame(&payload, out)?;
        Ok(())
    }

    /// Appends a one-way call `name(*args)` to `batch`, to be sent with
    /// [`Session::send_batch`] or [`Session::call_after`]: a transaction's
    /// `tpc_begin` and stores then leave in one write instead of one per message.
    pub(crate) fn push_oneway(
        &self,
        batch: &mut BytesMut,
        name: &str,
        args: Value,
    ) -> Result<(), ClientError> {
        self.frame_into(&Message::one_way(name, args), batch)
    }

    /// Queues the one-way frames in `batch` (in order, behind everything sent
    /// before); nothing to do for an empty batch.
    pub(crate) async fn send_batch(
        &self,
        batch: &mut BytesMut,
        limit: Duration,
    ) -> Result<(), ClientError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.is_closed() {
            return Err(self.disconnected());
        }
        self.enqueue(batch.split().freeze(), Route::Direct, limit)
            .await
    }

    fn disconnected(&self) -> ClientError {
        ClientError::Disconnected(
            self.closed_reason()
                .unwrap_or_else(|| "connection closed".into()),
        )
    }

    /// Sends a frame: on [`Route::Direct`] at once when the output is idle,
    /// else queued for the writer, waiting at most `limit` for room.
    async fn enqueue(
        &self,
        frame: Bytes,
        route: Route,
        limit: Duration,
    ) -> Result<(), ClientError> {
        let frame = match route {
            Route::Joined => frame,
            Route::Direct => match self.write_now(frame) {
                Direct::Sent => return Ok(()),
                Direct::Failed(reason) => {
                    self.close(reason);
                    return Err(self.disconnected());
                }
                Direct::Busy(frame) => frame,
            },
        };
        // Counted from before it may wait for room, so that no direct write
        // overtakes it; uncounted by the writer task once written, or here if
        // it never gets into the queue (also if the caller gives up waiting).
        let slot = QueueSlot::take(&self.queued);
        match tokio::time::timeout(limit, self.tx.send(frame)).await {
            Ok(Ok(())) => {
                slot.handed_over();
                Ok(())
            }
            Ok(Err(_)) => Err(self.disconnected()),
            Err(_) => Err(ClientError::Timeout(limit)),
        }
    }

    /// Writes `frame` into the socket on this thread if nothing is queued and
    /// the writer task is not writing (both checked under the output's lock,
    /// so the frame lands behind everything sent before). Never waits: what
    /// the socket does not take now, the writer task sends.
    fn write_now(&self, frame: Bytes) -> Direct {
        let Ok(mut output) = self.output.try_lock() else {
            return Direct::Busy(frame);
        };
        if self.queued.load(Ordering::SeqCst) != 0 || !output.rest.is_empty() {
            return Direct::Busy(frame);
        }
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut written = 0;
        while written < frame.len() {
            match Pin::new(&mut output.half).poll_write(&mut cx, &frame[written..]) {
                Poll::Ready(Ok(0)) => return Direct::Failed("write error: wrote 0 bytes".into()),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Direct::Failed(format!("write error: {e}")),
                Poll::Pending => break,
            }
        }
        // A TLS stream may hold what it accepted until flushed.
        let flushed = match Pin::new(&mut output.half).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(e)) => return Direct::Failed(format!("write error: {e}")),
            Poll::Pending => false,
        };
        if written == frame.len() && flushed {
            return Direct::Sent;
        }
        output.rest = frame.slice(written..);
        // Wake the writer task (an empty frame: nothing to write but the rest
        // and a flush). Were the queue full, the frames in it wake it anyway.
        let slot = QueueSlot::take(&self.queued);
        if self.tx.try_send(Bytes::new()).is_ok() {
            slot.handed_over();
        }
        Direct::Sent
    }

    /// A synchronous call: sends `name(*args)` and waits up to `limit` for the reply.
    /// Error replies come back as `ClientError::Remote`.
    pub(crate) async fn call(
        &self,
        name: &'static str,
        args: Value,
        limit: Duration,
    ) -> Result<Value, ClientError> {
        self.call_with(BytesMut::new(), name, args, limit, CacheEffect::None)
            .await
    }

    /// A synchronous call sent in the same write as the one-way frames already in
    /// `prefix` (which go first).
    pub(crate) async fn call_after(
        &self,
        prefix: BytesMut,
        name: &'static str,
        args: Value,
        limit: Duration,
    ) -> Result<Value, ClientError> {
        self.call_with(prefix, name, args, limit, CacheEffect::None)
            .await
    }

    /// [`Session::call_after`] whose reply the reader applies to the object
    /// cache as `effect` says, before completing the call.
    pub(crate) async fn call_with(
        &self,
        mut prefix: BytesMut,
        name: &'static str,
        args: Value,
        limit: Duration,
        effect: CacheEffect,
    ) -> Result<Value, ClientError> {
        let msgid = self.next_msgid.fetch_add(1, Ordering::Relaxed);
        self.frame_into(&Message::call(msgid, name, args), &mut prefix)?;
        let route = match effect {
            CacheEffect::StoreLoad(_) => Route::Joined,
            CacheEffect::None | CacheEffect::Finish(_) => Route::Direct,
        };
        let reply_rx = self.register(msgid, effect)?;
        let _guard = PendingGuard {
            session: self,
            msgid,
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(limit, async {
            if let Err(e) = self.enqueue(prefix.freeze(), route, limit).await {
                self.unsent(msgid);
                return Err(e);
            }
            self.reply(reply_rx).await
        })
        .await;
        self.settle(name, limit, started, outcome)
    }

    /// Sends `name(*args)` — queued now, in order behind everything sent before —
    /// and returns the wait for its reply. The wait owns what it needs, so the
    /// caller may release its locks and send further messages (which the server
    /// reads after this one) before awaiting it. `limit` covers both.
    /// The reader applies the reply to the object cache as `effect` says, whether
    /// or not the wait is still there.
    pub(crate) async fn send_call(
        self: &Arc<Self>,
        name: &'static str,
        args: Value,
        limit: Duration,
        effect: CacheEffect,
    ) -> Result<ReplyWait, ClientError> {
        let msgid = self.next_msgid.fetch_add(1, Ordering::Relaxed);
        let frame = self.frame(&Message::call(msgid, name, args))?;
        let reply = self.register(msgid, effect)?;
        let wait = ReplyWait {
            session: Arc::clone(self),
            msgid,
            name,
            reply: Some(reply),
            limit,
            started: Instant::now(),
        };
        if let Err(e) = self.enqueue(frame, Route::Direct, limit).await {
            self.unsent(msgid);
            return Err(e);
        }
        Ok(wait)
    }

    /// Registers the call `msgid`; its reply (or the session's death) comes on
    /// the returned channel. A finish marks its oids in the object cache before
    /// its frame can leave, so no current revision it may end is served meanwhile.
    fn register(
        &self,
        msgid: i64,
        effect: CacheEffect,
    ) -> Result<oneshot::Receiver<Reply>, ClientError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut p = self.pending.lock().map_err(|_| self.disconnected())?;
        if let Some(reason) = &p.closed {
            return Err(ClientError::Disconnected(reason.clone()));
        }
        let load = match effect {
            CacheEffect::None => None,
            CacheEffect::StoreLoad(oid) => Some(oid),
            CacheEffect::Finish(oids) => {
                self.object_cache.finishing(self.generation, &oids);
                p.finishes.insert(msgid, oids);
                None
            }
        };
        p.calls.insert(
            msgid,
            PendingCall {
                reply: reply_tx,
                load,
            },
        );
        Ok(reply_rx)
    }

    /// The frame of call `msgid` could not be queued, so it never leaves: a
    /// finish it carried changes nothing.
    fn unsent(&self, msgid: i64) {
        let oids = match self.pending.lock() {
            Ok(mut p) => p.finishes.remove(&msgid),
            Err(_) => None,
        };
        if let Some(oids) = oids {
            self.object_cache
                .finished(self.generation, &oids, FinishOutcome::NotSent);
        }
    }

    async fn reply(&self, reply_rx: oneshot::Receiver<Reply>) -> Reply {
        match reply_rx.await {
            Ok(reply) => reply,
            Err(_) => Err(self.disconnected()),
        }
    }

    /// The outcome of a call that ran within `limit`, logged when slow or late.
    fn settle(
        &self,
        name: &'static str,
        limit: Duration,
        started: Instant,
        outcome: Result<Reply, tokio::time::error::Elapsed>,
    ) -> Reply {
        let elapsed = started.elapsed();
        match outcome {
            Ok(reply) => {
                if elapsed >= self.slow_call {
                    warn!(server = %self.address, method = name, ?elapsed, "slow ZEO call");
                }
                reply
            }
            Err(_) => {
                warn!(server = %self.address, method = name, ?limit, "ZEO call timed out");
                Err(ClientError::Timeout(limit))
            }
        }
    }

    /// A one-way call (`(0, True, name, args)`): queued in order behind everything
    /// sent before; fails only if the session is dead or the queue stays full for
    /// `limit`.
    pub(crate) async fn send_oneway(
        &self,
        name: &str,
        args: Value,
        limit: Duration,
    ) -> Result<(), ClientError> {
        if self.is_closed() {
            return Err(self.disconnected());
        }
        let frame = self.frame(&Message::one_way(name, args))?;
        self.enqueue(frame, Route::Direct, limit).await
    }

    /// Queues a one-way call without waiting (for `Drop` impls); dropped silently
    /// when the queue is full or the session dead.
    pub(crate) fn try_send_oneway(&self, name: &str, args: Value) {
        if self.is_closed() {
            return;
        }
        let frame = match self.frame(&Message::one_way(name, args)) {
            Ok(frame) => frame,
            Err(e) => return debug!("cannot encode {name}: {e}"),
        };
        match self.write_now(frame) {
            Direct::Sent => {}
            Direct::Failed(reason) => self.close(reason),
            Direct::Busy(frame) => {
                let slot = QueueSlot::take(&self.queued);
                match self.tx.try_send(frame) {
                    Ok(()) => slot.handed_over(),
                    Err(_) => {
                        debug!(server = %self.address, method = name, "one-way call dropped (queue full)")
                    }
                }
            }
        }
    }

    /// Completes the call `msgid` with `reply`, after applying it to the object
    /// cache (here, in the reader, so in wire order with the invalidations).
    fn complete(&self, msgid: i64, reply: Reply) {
        let (call, finish) = match self.pending.lock() {
            Ok(mut p) => (p.calls.remove(&msgid), p.finishes.remove(&msgid)),
            Err(_) => (None, None),
        };
        if let Some(oids) = finish {
            let outcome = match &reply {
                Ok(v) if !v.is_none() => match convert::tid_of(v, "tpc_finish") {
                    Ok(tid) => FinishOutcome::Committed(tid),
                    Err(_) => FinishOutcome::Unknown,
                },
                // An error reply, or None (the server does not know the
                // transaction): what the server holds now is not certain.
                _ => FinishOutcome::Unknown,
            };
            self.object_cache.finished(self.generation, &oids, outcome);
        }
        if let (
            Some(PendingCall {
                load: Some(oid), ..
            }),
            Ok(value),
        ) = (&call, &reply)
        {
            // A reply that does not parse is the caller's error to report.
            if let Ok(Some(record)) = convert::loaded_record(value) {
                self.object_cache.store(self.generation, *oid, &record);
            }
        }
        match call {
            Some(call) => {
                let _ = call.reply.send(reply);
            }
            None => debug!(
                server = %self.address,
                msgid,
                "reply to a call nobody waits for (timed out?)"
            ),
        }
    }
}

async fn write_loop(
    session: Arc<Session>,
    mut rx: mpsc::Receiver<Bytes>,
    heartbeat_interval: Duration,
) {
    let mut closed = session.closed_tx.subscribe();
    let heartbeat = match session.frame(&Message::heartbeat()) {
        Ok(frame) => frame,
        Err(e) => {
            session.close(format!("cannot encode heartbeat: {e}"));
            return;
        }
    };
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_interval,
        heartbeat_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if closed.borrow().is_some() {
            break;
        }
        // Frames taken from the queue (a heartbeat is not in it).
        let (batch, dequeued) = tokio::select! {
            _ = closed.changed() => break,
            frame = rx.recv() => match frame {
                Some(first) => {
                    let mut batch = vec![first];
                    while batch.len() < 64 {
                        match rx.try_recv() {
                            Ok(frame) => batch.push(frame),
                            Err(_) => break,
                        }
                    }
                    let dequeued = batch.len();
                    (batch, dequeued)
                }
                None => break,
            },
            _ = ticker.tick() => (vec![heartbeat.clone()], 0),
        };
        let write = async {
            let mut output = session.output.lock().await;
            let rest = std::mem::take(&mut output.rest);
            let writer = &mut output.half;
            if !rest.is_empty() {
                writer.write_all(&rest).await?;
            }
            // Small frames queued together (e.g. by several callers) are joined
            // into one write: one syscall, and one TCP segment, instead of one per
            // frame. Large frames (blob chunks, big vote batches) go as they are,
            // rather than being copied.
            let mut joined = BytesMut::new();
            for frame in &batch {
                if frame.len() <= JOIN_FRAME_MAX && joined.len() + frame.len() <= JOIN_MAX {
                    joined.extend_from_slice(frame);
                    continue;
                }
                if !joined.is_empty() {
                    writer.write_all(&joined).await?;
                    joined.clear();
                }
                writer.write_all(frame).await?;
            }
            if !joined.is_empty() {
                writer.write_all(&joined).await?;
            }
            writer.flush().await?;
            // Under the lock: a direct write may follow at once.
            session.queued.fetch_sub(dequeued, Ordering::SeqCst);
            Ok::<(), std::io::Error>(())
        };
        tokio::select! {
            _ = closed.changed() => break,
            result = write => {
                if let Err(e) = result {
                    session.close(format!("write error: {e}"));
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(100), async {
        session.output.lock().await.half.shutdown().await
    })
    .await;
}

async fn read_loop(
    session: Arc<Session>,
    mut reader: ReadHalf<BoxedStream>,
    mut buf: BytesMut,
    mut decoder: FrameDecoder,
    callbacks: Arc<Callbacks>,
) {
    let mut closed = session.closed_tx.subscribe();
    let mut downloads = Downloads::default();
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(reason) =
                        dispatch(&session, &frame, &callbacks, &mut downloads).await
                    {
                        warn!(server = %session.address, "dropping ZEO connection: {reason}");
                        session.close(reason);
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let reason = format!("malformed frame from server: {e}");
                    warn!(server = %session.address, "dropping ZEO connection: {reason}");
                    session.close(reason);
                    return;
                }
            }
        }
        if closed.borrow().is_some() {
            return;
        }
        // Room for many replies per read: with less spare capacity, `read_buf`
        // reads only what fits (64 bytes when full), a syscall per small reply.
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            _ = closed.changed() => return,
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => {
                    session.close("server closed the connection");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    session.close(format!("read error: {e}"));
                    return;
                }
            },
        }
    }
}

/// Handles one frame; `Err(reason)` drops the connection.
async fn dispatch(
    session: &Session,
    frame: &[u8],
    callbacks: &Callbacks,
    downloads: &mut Downloads,
) -> Result<(), String> {
    let message =
        decode_message(frame, session.encoding).map_err(|e| format!("malformed message: {e}"))?;
    match message.kind {
        MessageKind::Reply | MessageKind::ErrorReply => {
            let Some(msgid) = message.msgid.as_int() else {
                return Err(format!(
                    "reply with a msgid we never send: {}",
                    message.msgid.python_repr()
                ));
            };
            let reply = if message.kind == MessageKind::Reply {
                Ok(message.args)
            } else {
                match ErrorPayload::from_value(&message.args) {
                    Ok(payload) => Err(ClientError::Remote(payload)),
                    Err(e) => Err(ClientError::Protocol(format!("malformed error reply: {e}"))),
                }
            };
            session.complete(msgid, reply);
            Ok(())
        }
        MessageKind::OneWay => {
            callbacks
                .handle(session.generation, &message.name, message.args, downloads)
                .await
        }
        MessageKind::Heartbeat => Ok(()),
        MessageKind::Call => {
            warn!(
                server = %session.address,
                method = %message.name,
                "server sent a synchronous call; ignored"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn session_over(stream: tokio::io::DuplexStream) -> Arc<Session> {
        let params = SessionParams {
            generation: 1,
            address: ServerAddress::Unix("/nowhere".into()),
            encoding: Encoding::Msgpack,
            heartbeat_interval: Duration::from_secs(3600),
            slow_call: Duration::from_secs(60),
            max_frame_size: 1 << 20,
        };
        Session::start(
            Box::new(stream),
            BytesMut::new(),
            params,
            Arc::new(Callbacks::new(None, 0)),
        )
    }

    /// Reads `count` frames off `peer`; each must decode whole.
    async fn read_messages(peer: &mut tokio::io::DuplexStream, count: usize) -> Vec<Message> {
        let mut messages = Vec::with_capacity(count);
        for _ in 0..count {
            let mut len = [0u8; 4];
            peer.read_exact(&mut len).await.unwrap();
            let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
            peer.read_exact(&mut payload).await.unwrap();
            messages.push(decode_message(&payload, Encoding::Msgpack).expect("a whole frame"));
        }
        messages
    }

    #[tokio::test]
    async fn a_frame_sent_while_the_output_is_idle_is_written_by_the_sender() {
        let (ours, mut peer) = tokio::io::duplex(64 * 1024);
        let session = session_over(ours);
        let limit = Duration::from_secs(5);
        session
            .send_oneway("first", Value::Tuple(vec![]), limit)
            .await
            .unwrap();
        // Written on this task: the writer task has not run (nor needed to).
        assert_eq!(session.queued.load(Ordering::SeqCst), 0);
        let got = read_messages(&mut peer, 1).await;
        assert_eq!(got[0].name, "first");
    }

    #[tokio::test]
    async fn a_sender_dropped_while_waiting_for_room_leaves_no_count_behind() {
        // A 64-byte pipe nobody reads: the writer task blocks, the queue fills.
        let (ours, mut peer) = tokio::io::duplex(64);
        let session = session_over(ours);
        let args = || Value::Tuple(vec![Value::Bytes(vec![b'x'; 100].into())]);
        let mut sent = 0;
        loop {
            // Given up from outside (a caller's own timeout), not by the call.
            let send = session.send_oneway("fill", args(), Duration::from_secs(60));
            match tokio::time::timeout(Duration::from_millis(50), send).await {
                Ok(outcome) => {
                    outcome.unwrap();
                    sent += 1;
                }
                Err(_) => break,
            }
        }
        assert!(sent > OUTGOING_QUEUE, "the queue filled up");
        let got = read_messages(&mut peer, sent).await;
        assert!(got.iter().all(|m| m.name == "fill"));
        tokio::time::timeout(Duration::from_secs(5), async {
            while session.queued.load(Ordering::SeqCst) != 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("every counted frame was written or given up");
        // So the output is idle again, and the next frame goes out directly.
        session
            .send_oneway("after", Value::Tuple(vec![]), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(session.queued.load(Ordering::SeqCst), 0);
        assert_eq!(read_messages(&mut peer, 1).await[0].name, "after");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_the_socket_takes_in_part_stay_whole_and_in_order() {
        // A 50-byte pipe: most frames go out partly at once, the rest through
        // the writer task, while other senders keep sending.
        let (ours, mut peer) = tokio::io::duplex(50);
        let session = session_over(ours);
        let senders = 4;
        let per_sender = 200;
        let mut tasks = Vec::new();
        for s in 0..senders {
            let session = Arc::clone(&session);
            tasks.push(tokio::spawn(async move {
                for i in 0..per_sender {
                    let args = Value::Tuple(vec![
                        Value::Int(s),
                        Value::Int(i),
                        Value::Bytes(vec![b'x'; (i as usize * 7) % 120].into()),
                    ]);
                    session
                        .send_oneway("item", args, Duration::from_secs(10))
                        .await
                        .unwrap();
                    if i % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        let total = (senders * per_sender) as usize;
        let messages =
            tokio::time::timeout(Duration::from_secs(20), read_messages(&mut peer, total))
                .await
                .expect("every frame arrives");
        for t in tasks {
            t.await.unwrap();
        }
        let mut next = vec![0i64; senders as usize];
        for m in messages {
            let args = m.args.as_tuple_or_list().unwrap();
            let (s, i) = (args[0].as_int().unwrap(), args[1].as_int().unwrap());
            assert_eq!(i, next[s as usize], "sender {s}'s frames in order");
            next[s as usize] += 1;
        }
        assert!(next.iter().all(|&n| n == per_sender));
        assert!(!session.is_closed());
    }
}

//! Buffered framed I/O for one client over any `AsyncRead + AsyncWrite`, and the
//! handshake.
//!
//! Reading: [`FrameReader`] pulls whole frames off the socket (cancel-safe, bounded
//! by the maximum frame size). Writing: every frame for a connection — replies,
//! error replies, callbacks from other connections' commits, blob chunks — goes
//! through one FIFO, the [`Outbox`], drained by a writer task, so output is never
//! interleaved wrongly. The outbox counts queued bytes: the connection's own replies
//! wait for it to drain (backpressure), callbacks from elsewhere never wait, and a
//! client whose queue grows past the hard limit (it stopped reading) is disconnected.
//!
//! A callback from elsewhere (an invalidation) skips the queue when it is empty and
//! the writer idle: it is copied into the socket's write buffer on the caller's
//! thread, in order behind everything written before, and sent by
//! [`ConnHandle::flush_direct`], or by the writer task when the socket is full.
//! A commit so sends its invalidations itself, one `send` per client, instead of
//! waking every client's writer task (as asyncio's `transport.write` does for
//! Python's ZEO).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, warn};
use zeoraid_wire::{FrameDecoder, Value};

use crate::codec::{self, Encoding};
use crate::error::{CloseReason, ZeoError};

/// Identifies a connection within the server.
pub type ConnId = u64;

enum Out {
    Frame(Bytes),
    /// Send what direct writes left in the write buffer (the socket was full).
    Flush,
    Close,
}

/// The socket's write side with its buffer, shared by the writer task and direct
/// writes.
type SharedWriter = Arc<tokio::sync::Mutex<BufWriter<Box<dyn AsyncWrite + Unpin + Send>>>>;

/// The write buffer's size.
const WRITE_BUFFER: usize = 64 * 1024;

/// What became of a callback frame handed to [`ConnHandle::send_callback_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In the write buffer: call [`ConnHandle::flush_direct`] to send it.
    Buffered,
    /// Queued for the writer task (or dropped: the connection is going away).
    Queued,
}

/// The FIFO of frames waiting to be written to one client.
pub struct Outbox {
    tx: mpsc::UnboundedSender<Out>,
    /// Bytes queued and not yet written; direct writes only while it is zero.
    queued: AtomicUsize,
    drained: Notify,
    soft_limit: usize,
    hard_limit: usize,
    writer: SharedWriter,
}

impl Outbox {
    /// Copies `frame` into the write buffer when nothing is queued and the writer
    /// is idle (checked under the writer's lock, which the writer task holds while
    /// it writes, so the frame lands behind everything before it); hands it back
    /// otherwise. No I/O: the buffer is sent by [`Outbox::flush_direct`].
    fn buffer_now(&self, frame: Bytes) -> Result<(), Bytes> {
        let Ok(mut writer) = self.writer.try_lock() else {
            return Err(frame);
        };
        if self.queued.load(Ordering::SeqCst) != 0
            || self.tx.is_closed()
            || writer.buffer().len() + frame.len() >= WRITE_BUFFER
        {
            return Err(frame);
        }
        // With room in the buffer, `BufWriter` copies without touching the
        // socket: the write completes at once, whole.
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match Pin::new(&mut *writer).poll_write(&mut cx, &frame) {
            Poll::Ready(Ok(n)) if n == frame.len() => Ok(()),
            _ => Err(frame),
        }
    }

    /// Sends what direct writes buffered, without waiting: whatever the socket
    /// does not take now (or a busy writer) is left to the writer task.
    fn flush_direct(&self) -> std::io::Result<()> {
        if let Ok(mut writer) = self.writer.try_lock() {
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            match Pin::new(&mut *writer).poll_flush(&mut cx) {
                Poll::Ready(result) => return result,
                Poll::Pending => {}
            }
        }
        let _ = self.tx.send(Out::Flush);
        Ok(())
    }

    /// Queue a frame whatever the queue's size (the caller waited for room first).
    fn push_own(&self, frame: Bytes) {
        self.queued.fetch_add(frame.len(), Ordering::SeqCst);
        // A closed writer means the connection is going away; nothing to do.
        let _ = self.tx.send(Out::Frame(frame));
    }

    /// Queue a frame unless the queue is over the hard limit.
    fn push_other(&self, frame: Bytes) -> bool {
        let len = frame.len();
        if self.queued.load(Ordering::SeqCst) + len > self.hard_limit {
            return false;
        }
        self.push_own(frame);
        true
    }

    /// Wait until the queue is below the soft limit.
    async fn wait_room(&self) {
        loop {
            let notified = self.drained.notified();
            if self.queued.load(Ordering::SeqCst) <= self.soft_limit || self.tx.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// Everything other tasks need to talk to (or close) one connection.
pub struct ConnHandle {
    pub id: ConnId,
    pub peer: String,
    encoding: Mutex<Encoding>,
    label: Mutex<String>,
    outbox: Outbox,
    close_tx: watch::Sender<Option<CloseReason>>,
    closing: AtomicBool,
}

impl ConnHandle {
    pub fn encoding(&self) -> Encoding {
        self.encoding.lock().map(|e| *e).unwrap_or(Encoding::Pickle)
    }

    pub(crate) fn set_encoding(&self, encoding: Encoding) {
        if let Ok(mut e) = self.encoding.lock() {
            *e = encoding;
        }
    }

    /// The label used in log lines: `set_client_label`'s label and the peer address.
    pub fn label(&self) -> String {
        self.label
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|_| self.peer.clone())
    }

    pub fn set_label(&self, label: &str) {
        if let Ok(mut l) = self.label.lock() {
            *l = format!("{label} {}", self.peer);
        }
    }

    /// Ask the connection's task to close the connection (idempotent).
    pub fn close(&self, reason: CloseReason) {
        if !self.closing.swap(true, Ordering::SeqCst) {
            let _ = self.close_tx.send(Some(reason));
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    pub(crate) fn close_signal(&self) -> watch::Receiver<Option<CloseReason>> {
        self.close_tx.subscribe()
    }

    /// Whether the output queue is below its soft limit (what [`Self::wait_room`]
    /// waits for), without waiting.
    pub fn has_room(&self) -> bool {
        self.outbox.queued.load(Ordering::SeqCst) <= self.outbox.soft_limit
    }

    /// Wait until this connection's output queue has room (backpressure for its
    /// own replies).
    pub async fn wait_room(&self) {
        self.outbox.wait_room().await
    }

    /// Queue a raw frame (handshake, ruok JSON).
    pub(crate) fn send_raw(&self, payload: &[u8]) {
        match codec::raw_frame(payload) {
            Ok(frame) => self.outbox.push_own(frame),
            Err(e) => warn!(peer = %self.peer, "cannot frame raw output: {e}"),
        }
    }

    /// Queue the reply to a call. A result that cannot be encoded becomes
    /// `ValueError("Couldn't pickle response")`, as in ZEO.
    pub fn send_reply(&self, msgid: &Value, result: Value) {
        let encoding = self.encoding();
        match codec::encode_reply(msgid, result, encoding) {
            Ok(frame) => self.outbox.push_own(frame),
            Err(e) => {
                warn!(conn = %self.label(), "unencodable response: {e}");
                self.send_error(msgid, &ZeoError::value_error("Couldn't pickle response"));
            }
        }
    }

    /// Queue the reply to a `loadBefore` call (the common read: encoded without
    /// building a value tree).
    pub fn send_load_before_reply(
        &self,
        msgid: &Value,
        record: Option<&zeoraid_storage::LoadedRecord>,
    ) {
        let record = record.map(|r| codec::LoadBeforeRecord {
            data: &r.data,
            start: r.start.0,
            end: r.end.map(|t| t.0),
        });
        match codec::encode_load_before_reply(msgid, record, self.encoding()) {
            Ok(frame) => self.outbox.push_own(frame),
            Err(e) => {
                warn!(conn = %self.label(), "unencodable response: {e}");
                self.send_error(msgid, &ZeoError::value_error("Couldn't pickle response"));
            }
        }
    }

    /// Queue an error reply.
    pub fn send_error(&self, msgid: &Value, err: &ZeoError) {
        match codec::encode_error(msgid, err, self.encoding()) {
            Ok(frame) => self.outbox.push_own(frame),
            Err(e) => {
                warn!(conn = %self.label(), "unencodable error reply {}: {e}", err.class_name);
                let fallback = ZeoError::value_error("Couldn't pickle response");
                if let Ok(frame) = codec::encode_error(msgid, &fallback, self.encoding()) {
                    self.outbox.push_own(frame);
                }
            }
        }
    }

    /// Queue a callback produced by this connection's own request (blob chunks,
    /// `info` before a `tpc_finish` reply).
    pub fn send_own_callback(&self, name: &str, args: Vec<Value>) {
        match codec::encode_callback(name, args, self.encoding()) {
            Ok(frame) => self.outbox.push_own(frame),
            Err(e) => warn!(conn = %self.label(), "unencodable callback {name}: {e}"),
        }
    }

    /// Queue a callback caused by someone else (invalidations, pack `info`). Never
    /// waits: a client that lets its queue grow past the limit is disconnected.
    pub fn send_callback(&self, name: &str, args: Vec<Value>) {
        if self.is_closing() {
            return;
        }
        match codec::encode_callback(name, args, self.encoding()) {
            Ok(frame) => {
                if self.send_callback_frame(frame) == Delivery::Buffered {
                    self.flush_direct();
                }
            }
            Err(e) => warn!(conn = %self.label(), "unencodable callback {name}: {e}"),
        }
    }

    /// [`Self::send_callback`] of a frame encoded already (in this connection's
    /// encoding): written into the socket's buffer at once when the connection's
    /// output is idle ([`Delivery::Buffered`]: send it with
    /// [`Self::flush_direct`]), else queued.
    pub fn send_callback_frame(&self, frame: Bytes) -> Delivery {
        if self.is_closing() {
            return Delivery::Queued;
        }
        let frame = match self.outbox.buffer_now(frame) {
            Ok(()) => return Delivery::Buffered,
            Err(frame) => frame,
        };
        if !self.outbox.push_other(frame) {
            warn!(
                conn = %self.label(),
                "client is not reading its output (queue over {} bytes); disconnecting",
                self.outbox.hard_limit
            );
            self.close(CloseReason::Server("output queue overflow".into()));
        }
        Delivery::Queued
    }

    /// Sends what [`Self::send_callback_frame`] buffered (the writer task sends
    /// what the socket does not take now).
    pub fn flush_direct(&self) {
        if let Err(e) = self.outbox.flush_direct() {
            debug!(conn = %self.label(), "write failed: {e}");
            self.close(CloseReason::Io(e.to_string()));
        }
    }

    /// Ask the writer to flush what is queued and close the socket.
    pub(crate) fn finish_output(&self) {
        let _ = self.outbox.tx.send(Out::Close);
    }
}

/// Limits of one connection's output queue.
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    /// A connection's own requests wait while more than this is queued.
    pub soft_limit: usize,
    /// Callbacks from elsewhere that would push the queue past this disconnect it.
    pub hard_limit: usize,
}

/// Create the handle and spawn the writer task over `writer`.
pub(crate) fn spawn_writer<W>(
    id: ConnId,
    peer: String,
    writer: W,
    limits: OutputLimits,
) -> (Arc<ConnHandle>, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let (close_tx, _) = watch::channel(None);
    let boxed: Box<dyn AsyncWrite + Unpin + Send> = Box::new(writer);
    let writer: SharedWriter = Arc::new(tokio::sync::Mutex::new(BufWriter::with_capacity(
        WRITE_BUFFER,
        boxed,
    )));
    let handle = Arc::new(ConnHandle {
        id,
        label: Mutex::new(peer.clone()),
        peer,
        encoding: Mutex::new(Encoding::Pickle),
        outbox: Outbox {
            tx,
            queued: AtomicUsize::new(0),
            drained: Notify::new(),
            soft_limit: limits.soft_limit,
            hard_limit: limits.hard_limit,
            writer: writer.clone(),
        },
        close_tx,
        closing: AtomicBool::new(false),
    });
    let task = tokio::spawn(writer_task(Arc::downgrade(&handle), rx, writer));
    (handle, task)
}

async fn writer_task(
    handle: std::sync::Weak<ConnHandle>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    shared: SharedWriter,
) {
    let mut done = false;
    while !done {
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        while batch.len() < 64 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        // Held while writing: direct writes wait for the queue meanwhile.
        let mut writer = shared.lock().await;
        let mut written = 0usize;
        let mut failed = None;
        for item in batch {
            match item {
                Out::Frame(frame) => {
                    if let Err(e) = writer.write_all(&frame).await {
                        failed = Some(e);
                        break;
                    }
                    written += frame.len();
                }
                Out::Flush => {}
                Out::Close => {
                    done = true;
                    break;
                }
            }
        }
        if failed.is_none() {
            if let Err(e) = writer.flush().await {
                failed = Some(e);
            }
        }
        if let Some(h) = handle.upgrade() {
            h.outbox.queued.fetch_sub(written, Ordering::SeqCst);
            h.outbox.drained.notify_waiters();
            if let Some(e) = &failed {
                debug!(conn = %h.label(), "write failed: {e}");
                h.close(CloseReason::Io(e.to_string()));
            }
        }
        drop(writer);
        if failed.is_some() {
            break;
        }
    }
    let mut writer = shared.lock().await;
    let _ = writer.shutdown().await;
    // Under the writer's lock: no direct write comes after the shutdown.
    rx.close();
    drop(writer);
    if let Some(h) = handle.upgrade() {
        h.outbox.drained.notify_waiters();
    }
}

/// Reads whole frames from the socket.
pub struct FrameReader<R> {
    reader: R,
    buffer: BytesMut,
    decoder: FrameDecoder,
    max_frame_size: usize,
    stall_timeout: Option<Duration>,
}

/// How much the read buffer grows at a time while a frame arrives: memory follows
/// what the peer actually sent, not the length it announced (a 4-byte prefix must
/// not make the server reserve `max_frame_size`).
const READ_CHUNK: usize = 64 * 1024;

/// A failure while reading frames.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(zeoraid_wire::WireError),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("nothing received for {0:?} in the middle of a frame")]
    Stalled(Duration),
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_frame_size: usize) -> Self {
        FrameReader {
            reader,
            buffer: BytesMut::with_capacity(8 * 1024),
            decoder: FrameDecoder::new(max_frame_size),
            max_frame_size,
            stall_timeout: None,
        }
    }

    /// Fail with [`ReadError::Stalled`] when the peer sends nothing for `timeout`
    /// while a frame is incomplete (idle time between frames is not limited).
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = Some(timeout);
        self
    }

    /// Whether the buffer holds a whole frame, or a length prefix the decoder
    /// refuses.
    fn frame_decidable(&self) -> bool {
        let Some(prefix) = self.buffer.get(..4) else {
            return false;
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        len > self.max_frame_size || self.buffer.len() - 4 >= len
    }

    /// The next frame if the bytes already read hold one whole (or a length
    /// prefix the decoder refuses: an error, as from [`Self::read_frame`]);
    /// `Ok(None)` otherwise. Never reads from the socket.
    pub fn buffered_frame(&mut self) -> Result<Option<Bytes>, ReadError> {
        if !self.frame_decidable() {
            return Ok(None);
        }
        self.decoder
            .decode(&mut self.buffer)
            .map_err(ReadError::Frame)
    }

    /// The next frame's payload; `Ok(None)` at a clean end of stream. Cancel-safe:
    /// bytes read so far stay in the buffer.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            if self.frame_decidable() {
                if let Some(frame) = self
                    .decoder
                    .decode(&mut self.buffer)
                    .map_err(ReadError::Frame)?
                {
                    return Ok(Some(frame));
                }
            }
            if self.buffer.capacity() - self.buffer.len() < READ_CHUNK / 2 {
                self.buffer.reserve(READ_CHUNK);
            }
            let stall = self.stall_timeout.filter(|_| !self.buffer.is_empty());
            let read = self.reader.read_buf(&mut self.buffer);
            let n = match stall {
                Some(limit) => tokio::time::timeout(limit, read)
                    .await
                    .map_err(|_| ReadError::Stalled(limit))??,
                None => read.await?,
            };
            if n == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
        }
    }
}

/// What the client answered to the server's protocol announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// A ZEO 5 client speaking this encoding.
    Zeo5(Encoding),
    /// A `ruok` status probe.
    Ruok,
    /// Anything else (e.g. a ZEO 4 client's `Z4`, `Z3101`).
    Bad(Vec<u8>),
}

/// Interpret the client's handshake frame the way ZEO's `finish_connection` does.
pub fn parse_handshake(payload: &[u8]) -> Handshake {
    if payload == b"ruok" {
        return Handshake::Ruok;
    }
    if payload.get(1..) == Some(&b"5"[..]) {
        let encoding = if payload.first() == Some(&b'M') {
            Encoding::Msgpack
        } else {
            Encoding::Pickle
        };
        return Handshake::Zeo5(encoding);
    }
    Handshake::Bad(payload.to_vec())
}

/// How long a client may take to answer the handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// A short printable form of arbitrary bytes for log lines.
pub fn short_repr(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(40)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > 40 {
        format!("b'{shown}'...")
    } else {
        format!("b'{shown}'")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_peer_that_stops_reading_is_closed_at_the_hard_limit() {
        // The peer end of a 1 KiB pipe is never read.
        let (ours, _peer) = tokio::io::duplex(1024);
        let limits = OutputLimits {
            soft_limit: 4096,
            hard_limit: 16 * 1024,
        };
        let (conn, _writer) = spawn_writer(1, "test".into(), ours, limits);
        let mut close = conn.close_signal();
        let payload = Value::Bytes(bytes::Bytes::from(vec![0u8; 1000]));
        let mut sent = 0;
        while !conn.is_closing() && sent < 1000 {
            conn.send_callback("invalidateTransaction", vec![payload.clone()]);
            sent += 1;
            tokio::task::yield_now().await;
        }
        assert!(conn.is_closing(), "closed after {sent} callbacks");
        assert!(sent < 40, "closed late: {sent}");
        close.changed().await.unwrap();
        assert!(
            matches!(&*close.borrow(), Some(CloseReason::Server(r)) if r == "output queue overflow")
        );
        // Its own replies still queue (bounded by waiting for room first).
        conn.send_reply(&Value::Int(1), Value::None);
    }

    fn callback_frame(i: i64) -> Bytes {
        codec::encode_callback(
            "invalidateTransaction",
            vec![Value::Int(i)],
            Encoding::Pickle,
        )
        .unwrap()
    }

    /// Reads `n` bytes from `peer`, or fails after 5 s.
    async fn read_exactly(peer: &mut tokio::io::DuplexStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        got
    }

    #[tokio::test]
    async fn callbacks_from_elsewhere_skip_an_idle_queue_and_keep_their_order() {
        let (ours, mut peer) = tokio::io::duplex(64 * 1024);
        let limits = OutputLimits {
            soft_limit: 1 << 20,
            hard_limit: 1 << 20,
        };
        let (conn, _writer) = spawn_writer(1, "test".into(), ours, limits);
        // Behind a queued reply, a callback is queued too, never ahead of it.
        conn.send_reply(&Value::Int(7), Value::None);
        let reply = codec::encode_reply(&Value::Int(7), Value::None, Encoding::Pickle).unwrap();
        assert_eq!(
            conn.send_callback_frame(callback_frame(1)),
            Delivery::Queued
        );
        let mut expected = reply.to_vec();
        expected.extend_from_slice(&callback_frame(1));
        assert_eq!(read_exactly(&mut peer, expected.len()).await, expected);
        // The writer is idle now: the next ones go straight into the socket's
        // buffer, and out with one flush.
        tokio::time::timeout(Duration::from_secs(5), async {
            while conn.outbox.queued.load(Ordering::SeqCst) != 0
                || conn.outbox.writer.try_lock().is_err()
            {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(
            conn.send_callback_frame(callback_frame(2)),
            Delivery::Buffered
        );
        assert_eq!(
            conn.send_callback_frame(callback_frame(3)),
            Delivery::Buffered
        );
        conn.flush_direct();
        let mut expected = callback_frame(2).to_vec();
        expected.extend_from_slice(&callback_frame(3));
        assert_eq!(read_exactly(&mut peer, expected.len()).await, expected);
    }

    #[tokio::test]
    async fn direct_writes_the_socket_does_not_take_are_sent_by_the_writer_task() {
        // A 16-byte pipe: no frame fits.
        let (ours, mut peer) = tokio::io::duplex(16);
        let limits = OutputLimits {
            soft_limit: 1 << 20,
            hard_limit: 1 << 20,
        };
        let (conn, _writer) = spawn_writer(1, "test".into(), ours, limits);
        // One frame alone: the socket takes 16 bytes of it, the writer task the
        // rest as the peer reads.
        let first = callback_frame(-1);
        assert_eq!(conn.send_callback_frame(first.clone()), Delivery::Buffered);
        conn.flush_direct();
        assert_eq!(read_exactly(&mut peer, first.len()).await, first.to_vec());
        // Many, read only after all were handed over.
        let mut expected = Vec::new();
        let mut buffered = 0;
        for i in 0..200 {
            let frame = callback_frame(i);
            expected.extend_from_slice(&frame);
            if conn.send_callback_frame(frame) == Delivery::Buffered {
                buffered += 1;
                conn.flush_direct();
            }
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert!(buffered > 0, "the first callback finds the output idle");
        assert_eq!(read_exactly(&mut peer, expected.len()).await, expected);
        assert!(!conn.is_closing());
    }

    #[tokio::test]
    async fn own_output_waits_for_room() {
        let (ours, mut peer) = tokio::io::duplex(1024);
        let limits = OutputLimits {
            soft_limit: 2048,
            hard_limit: 1 << 20,
        };
        let (conn, _writer) = spawn_writer(1, "test".into(), ours, limits);
        for _ in 0..10 {
            conn.send_own_callback(
                "receiveBlobChunk",
                vec![Value::Bytes(bytes::Bytes::from(vec![1u8; 1000]))],
            );
        }
        // Over the soft limit: waiting does not finish until the peer reads.
        let waited = tokio::time::timeout(Duration::from_millis(100), conn.wait_room()).await;
        assert!(waited.is_err());
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut peer, &mut sink).await;
        });
        tokio::time::timeout(Duration::from_secs(5), conn.wait_room())
            .await
            .unwrap();
        conn.finish_output();
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_length_prefix_alone_reserves_no_memory() {
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let mut reader = FrameReader::new(ours, 64 << 20);
        tokio::io::AsyncWriteExt::write_all(&mut peer, &(60u32 << 20).to_be_bytes())
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut peer, &[7u8; 1000])
            .await
            .unwrap();
        let pending = tokio::time::timeout(Duration::from_millis(50), reader.read_frame()).await;
        assert!(pending.is_err(), "a partial frame is not a frame");
        assert_eq!(reader.buffer.len(), 1004);
        assert!(
            reader.buffer.capacity() < 1 << 20,
            "{}",
            reader.buffer.capacity()
        );
        // The whole frame still arrives intact, in pieces.
        let rest = vec![7u8; (60 << 20) - 1000];
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut peer, &rest)
                .await
                .unwrap();
            peer
        });
        let frame = reader.read_frame().await.unwrap().unwrap();
        assert_eq!(frame.len(), 60 << 20);
        assert!(frame.iter().all(|b| *b == 7));
        drop(writer.await.unwrap());
        assert!(reader.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_peer_silent_in_the_middle_of_a_frame_is_dropped() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut reader =
            FrameReader::new(ours, 1 << 20).with_stall_timeout(Duration::from_millis(100));
        // Idle between frames: no limit.
        let idle = tokio::time::timeout(Duration::from_millis(300), reader.read_frame()).await;
        assert!(idle.is_err());
        tokio::io::AsyncWriteExt::write_all(&mut peer, &[0, 0, 0, 10, 1, 2])
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(5), reader.read_frame())
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, ReadError::Stalled(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_oversized_prefix_fails_at_once() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(ours, 1 << 20);
        tokio::io::AsyncWriteExt::write_all(&mut peer, &[0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let err = reader.read_frame().await.unwrap_err();
        assert!(matches!(err, ReadError::Frame(_)), "{err}");
    }

    #[test]
    fn handshake_forms() {
        assert_eq!(parse_handshake(b"Z5"), Handshake::Zeo5(Encoding::Pickle));
        assert_eq!(parse_handshake(b"M5"), Handshake::Zeo5(Encoding::Msgpack));
        assert_eq!(parse_handshake(b"ruok"), Handshake::Ruok);
        assert_eq!(parse_handshake(b"Z4"), Handshake::Bad(b"Z4".to_vec()));
        assert_eq!(parse_handshake(b"Z3101"), Handshake::Bad(b"Z3101".to_vec()));
        assert_eq!(parse_handshake(b""), Handshake::Bad(Vec::new()));
    }
}

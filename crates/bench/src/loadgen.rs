//! The Rust load generator. Loads: many bare ZEO connections ([`LoadConnection`]:
//! a tokio `TcpStream` speaking the protocol directly, no `ZeoClient`) keeping
//! `pipeline` `loadBefore` calls each in flight on random preloaded oids, one task
//! per connection, every reply checked. Commits: zeoraid's own ZEO client,
//! `ZeoClient` (one-way `tpc_begin` + `storea`, then `vote` and `tpc_finish` round
//! trips). It measures server capacity beyond what Python clients can generate —
//! but it runs on the same machine, so its own CPU is reported too; the load side
//! is kept lean so that as much of the machine as possible is left to the server.
//! The same code drives runzeo and zeoraid.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeoraid_storage::{
    Oid, Operation, Storage, Tid, Transaction, TransactionMeta, TxnId, VoteOutcome, MAX_NEW_OIDS,
};
use zeoraid_wire::handshake::client_reply;
use zeoraid_wire::{decode_message, encode_message, FrameDecoder, Message, MessageKind, Value};
use zeoraid_zeo_client::{ServerAddress, ZeoClient, ZeoClientOptions};

use crate::procs::own_cpu_seconds;
use crate::stats::Sample;

/// Open `n` connections to `addr` (storage "1").
pub async fn connect(addr: &str, n: usize) -> anyhow::Result<Vec<Arc<ZeoClient>>> {
    let address = ServerAddress::parse(addr)?;
    let clients = futures::future::try_join_all((0..n).map(|_| {
        let options = ZeoClientOptions::new(address.clone()).timeout(Duration::from_secs(120));
        ZeoClient::connect(options)
    }))
    .await
    .with_context(|| format!("cannot connect to {addr}"))?;
    Ok(clients.into_iter().map(Arc::new).collect())
}

pub fn close(clients: Vec<Arc<ZeoClient>>) {
    for c in clients {
        c.shutdown();
    }
}

fn meta() -> TransactionMeta {
    TransactionMeta {
        user: Bytes::from_static(b"bench"),
        description: Bytes::from_static(b"zeoraid-bench"),
        extension: Bytes::new(),
    }
}

/// Commit `count` new objects of `size` bytes (500 per transaction); returns
/// their oids.
pub async fn preload(addr: &str, count: usize, size: usize) -> anyhow::Result<Vec<Oid>> {
    let clients = connect(addr, 1).await?;
    let client = &clients[0];
    let data = Bytes::from(vec![b'p'; size]);
    let mut oids = Vec::with_capacity(count);
    let mut txn_no = 1u64;
    while oids.len() < count {
        let batch = (count - oids.len()).min(500);
        let mut txn = Transaction::new(TxnId(txn_no), meta());
        txn_no += 1;
        let mut fresh = Vec::new();
        while fresh.len() < batch {
            let want = (batch - fresh.len()).min(MAX_NEW_OIDS as usize) as u32;
            fresh.extend(client.new_oids(want).await?);
        }
        fresh.truncate(batch);
        for &oid in &fresh {
            txn.ops.push(Operation::Store {
                oid,
                serial: Tid::ZERO,
                data: data.clone(),
            });
        }
        commit(client, txn).await?;
        oids.extend(fresh);
    }
    close(clients);
    Ok(oids)
}

async fn commit(client: &ZeoClient, txn: Transaction) -> anyhow::Result<Tid> {
    let id = txn.id;
    match client.vote(txn).await? {
        VoteOutcome::Voted { .. } => Ok(client.finish(id).await?),
        VoteOutcome::Conflicts(c) => bail!("unexpected conflicts: {c:?}"),
    }
}

/// A tiny xorshift generator: random oids without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `pipeline` concurrent `loadBefore` loops per `ZeoClient` on random `oids`: what
/// the `client` benchmark measures (our client's cost). Server capacity is measured
/// with [`pipelined_loads`], which does not go through `ZeoClient`.
pub async fn loads(
    clients: &[Arc<ZeoClient>],
    pipeline: usize,
    oids: Arc<Vec<Oid>>,
    seconds: f64,
) -> anyhow::Result<Sample> {
    if oids.is_empty() {
        bail!("no preloaded oids");
    }
    let cpu0 = own_cpu_seconds()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        for p in 0..pipeline {
            let client = client.clone();
            let oids = oids.clone();
            let seed = 0x9e37_79b9_7f4a_7c15_u64 ^ ((c as u64) << 20 | p as u64 | 1);
            tasks.push(tokio::spawn(async move {
                let mut rng = XorShift(seed);
                let mut latencies = Vec::new();
                loop {
                    let t = Instant::now();
                    if t >= deadline {
                        break;
                    }
                    let oid = oids[(rng.next() % oids.len() as u64) as usize];
                    let record = client.load_before(oid, Tid::MAX).await?;
                    if record.is_none() {
                        bail!("oid {oid:x} not found");
                    }
                    latencies.push(t.elapsed().as_secs_f64());
                }
                Ok(latencies)
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Sample {
        ops: all.len() as u64,
        elapsed,
        latencies: all,
        server_cpu: 0.0,
        client_cpu: own_cpu_seconds()? - cpu0,
    })
}

/// Each connection commits small transactions (one 100-byte store to its own
/// object) back to back.
pub async fn commits(clients: &[Arc<ZeoClient>], seconds: f64) -> anyhow::Result<Sample> {
    // Each connection's own object, created before the clock starts.
    let mut own = Vec::new();
    for client in clients {
        let oid = client.new_oids(1).await?[0];
        let mut txn = Transaction::new(TxnId(1), meta());
        txn.ops.push(Operation::Store {
            oid,
            serial: Tid::ZERO,
            data: Bytes::from(vec![b'c'; 100]),
        });
        let tid = commit(client, txn).await?;
        own.push((oid, tid));
    }
    let cpu0 = own_cpu_seconds()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for (client, (oid, tid)) in clients.iter().cloned().zip(own) {
        tasks.push(tokio::spawn(async move {
            let mut serial = tid;
            let mut latencies = Vec::new();
            let data = Bytes::from(vec![b'c'; 100]);
            let mut n = 2u64;
            loop {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                let mut txn = Transaction::new(TxnId(n), meta());
                n += 1;
                txn.ops.push(Operation::Store {
                    oid,
                    serial,
                    data: data.clone(),
                });
                serial = commit(&client, txn).await?;
                latencies.push(t.elapsed().as_secs_f64());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Sample {
        ops: all.len() as u64,
        elapsed,
        latencies: all,
        server_cpu: 0.0,
        client_cpu: own_cpu_seconds()? - cpu0,
    })
}

/// The storage name every benchmark server serves.
const STORAGE: &str = "1";

/// The msgid of the `register` call; loads use [`FIRST_LOAD_MSGID`] and up.
const REGISTER_MSGID: i64 = 1;

/// Load msgids count up from here and stay below 2³¹, so each one pickles as a
/// 4-byte `BININT` and a request is a fixed template with the msgid, oid and tid
/// patched in.
const FIRST_LOAD_MSGID: u32 = 1 << 16;
const LAST_LOAD_MSGID: u32 = i32::MAX as u32;

/// How long a connection waits for a reply before the run fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many bytes one read may take at most (many replies per syscall).
const READ_BUFFER: usize = 64 * 1024;

/// Byte offsets of the patched fields in [`load_before_template`].
const MSGID_AT: usize = 4 + 4;
const OID_AT: usize = MSGID_AT + 4 + 1 + 1 + 4 + 10 + 2;
const TID_AT: usize = OID_AT + 8 + 2;

/// The frame of `(msgid, False, 'loadBefore', (oid, tid))` as ZEO's pickle encoder
/// writes it (protocol 3, no memo): length prefix, `PROTO 3`, `MARK`, `BININT`
/// msgid, `NEWFALSE`, `BINUNICODE 'loadBefore'`, `SHORT_BINBYTES` oid and tid,
/// `TUPLE2`, `TUPLE`, `STOP`. A unit test checks it against `zeoraid_wire`'s
/// encoder.
fn load_before_template() -> Vec<u8> {
    let mut payload = vec![0x80, 3, b'(', b'J', 0, 0, 0, 0, 0x89, b'X'];
    payload.extend_from_slice(&10u32.to_le_bytes());
    payload.extend_from_slice(b"loadBefore");
    payload.extend_from_slice(&[b'C', 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    payload.extend_from_slice(&[b'C', 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    payload.extend_from_slice(&[0x86, b't', b'.']);
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

/// Append one `loadBefore(oid, before)` request frame to `out`.
fn push_load_before(out: &mut Vec<u8>, template: &[u8], msgid: u32, oid: Oid, before: Tid) {
    let at = out.len();
    out.extend_from_slice(template);
    out[at + MSGID_AT..at + MSGID_AT + 4].copy_from_slice(&msgid.to_le_bytes());
    out[at + OID_AT..at + OID_AT + 8].copy_from_slice(&oid.0);
    out[at + TID_AT..at + TID_AT + 8].copy_from_slice(&before.0);
}

/// Why a reply does not count as a successful load.
#[derive(Debug)]
enum BadReply {
    /// The server answered with an error (or a result that is not a record):
    /// counted, the run fails at the end.
    Failed { msgid: i64, what: String },
    /// Not an answer to anything we asked: the connection cannot go on.
    Protocol(String),
}

/// A bare ZEO connection for loads: handshake and `register` done, then only
/// pipelined `loadBefore` calls.
pub struct LoadConnection {
    stream: TcpStream,
    buffer: BytesMut,
    frames: FrameDecoder,
}

impl LoadConnection {
    /// Connect to `addr`, answer the server's protocol announcement with `Z5`
    /// (pickle; the server follows the client's letter) and register storage "1"
    /// read-only.
    pub async fn connect(addr: &str) -> anyhow::Result<LoadConnection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = LoadConnection {
            stream,
            buffer: BytesMut::with_capacity(READ_BUFFER),
            frames: FrameDecoder::default(),
        };
        let announcement = conn.read_frame().await?;
        if client_reply(&announcement).is_none() {
            bail!("{addr}: unsupported protocol announcement {announcement:?}");
        }
        let mut out = Vec::new();
        zeoraid_wire::encode_frame(b"Z5", &mut out)?;
        let register = Message::call(REGISTER_MSGID, "register", (STORAGE, true));
        let payload = encode_message(&register, zeoraid_wire::Encoding::Pickle)?;
        zeoraid_wire::encode_frame(&payload, &mut out)?;
        conn.stream.write_all(&out).await?;
        loop {
            let frame = conn.read_frame().await?;
            let reply = decode_message(&frame, zeoraid_wire::Encoding::Pickle)?;
            match reply.kind {
                MessageKind::OneWay => continue,
                MessageKind::Reply if reply.msgid == Value::Int(REGISTER_MSGID) => break,
                _ => bail!("{addr}: register answered {reply:?}"),
            }
        }
        Ok(conn)
    }

    /// Open `n` connections concurrently.
    pub async fn connect_many(addr: &str, n: usize) -> anyhow::Result<Vec<LoadConnection>> {
        futures::future::try_join_all((0..n).map(|_| LoadConnection::connect(addr))).await
    }

    /// The next whole frame (used before the pipelined phase only).
    async fn read_frame(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(frame) = self.frames.decode(&mut self.buffer)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// One read of whatever the server has sent so far.
    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.buffer.capacity() - self.buffer.len() < READ_BUFFER / 2 {
            self.buffer.reserve(READ_BUFFER);
        }
        let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.buffer))
            .await
            .map_err(|_| anyhow!("no reply for {REPLY_TIMEOUT:?}"))??;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }

    /// Keep `pipeline` loads in flight until `deadline`, then collect the
    /// outstanding replies. Requests go out in one write per batch of replies
    /// read; every reply must answer a msgid in flight with a `(data, tid,
    /// end)` record. Returns the latencies and the failed replies.
    async fn run_loads(
        mut self,
        pipeline: usize,
        oids: &[Oid],
        seed: u64,
        deadline: Instant,
    ) -> anyhow::Result<(Vec<f64>, Vec<BadReply>)> {
        let template = load_before_template();
        let mut rng = XorShift(seed);
        let mut next_msgid = FIRST_LOAD_MSGID;
        // (msgid, sent at): at most `pipeline` entries, searched linearly.
        let mut in_flight: Vec<(u32, Instant)> = Vec::with_capacity(pipeline);
        let mut out = Vec::with_capacity(pipeline * template.len());
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        let mut issue = |out: &mut Vec<u8>, in_flight: &mut Vec<(u32, Instant)>, now: Instant| {
            let oid = oids[(rng.next() % oids.len() as u64) as usize];
            let msgid = next_msgid;
            next_msgid = if next_msgid == LAST_LOAD_MSGID {
                FIRST_LOAD_MSGID
            } else {
                next_msgid + 1
            };
            push_load_before(out, &template, msgid, oid, Tid::MAX);
            in_flight.push((msgid, now));
        };
        let now = Instant::now();
        if now < deadline {
            for _ in 0..pipeline {
                issue(&mut out, &mut in_flight, now);
            }
        }
        while !in_flight.is_empty() {
            if !out.is_empty() {
                self.stream.write_all(&out).await?;
                out.clear();
            }
            self.fill().await?;
            let now = Instant::now();
            while let Some(frame) = self.frames.decode(&mut self.buffer)? {
                let answered = match check_load_reply(&frame) {
                    Ok(None) => continue, // a callback (e.g. an invalidation)
                    Ok(Some(msgid)) => Ok(msgid),
                    Err(BadReply::Failed { msgid, what }) => Err((msgid, what)),
                    Err(BadReply::Protocol(what)) => bail!("{what}"),
                };
                let msgid = match &answered {
                    Ok(m) | Err((m, _)) => *m,
                };
                let Some(slot) = u32::try_from(msgid)
                    .ok()
                    .and_then(|m| in_flight.iter().position(|(id, _)| *id == m))
                else {
                    bail!("a reply to msgid {msgid}, which is not in flight");
                };
                let (_, sent) = in_flight.swap_remove(slot);
                match answered {
                    Ok(_) => latencies.push(now.duration_since(sent).as_secs_f64()),
                    Err((msgid, what)) => failures.push(BadReply::Failed { msgid, what }),
                }
                if now < deadline {
                    issue(&mut out, &mut in_flight, now);
                }
            }
        }
        Ok((latencies, failures))
    }
}

/// Check one frame received during the loads: `Ok(Some(msgid))` for a reply
/// carrying a record, `Ok(None)` for a server callback (ignored).
fn check_load_reply(frame: &[u8]) -> Result<Option<i64>, BadReply> {
    let message = decode_message(frame, zeoraid_wire::Encoding::Pickle)
        .map_err(|e| BadReply::Protocol(format!("undecodable frame: {e}")))?;
    let msgid = match message.kind {
        MessageKind::OneWay => return Ok(None),
        MessageKind::Reply | MessageKind::ErrorReply => message
            .msgid
            .as_int()
            .ok_or_else(|| BadReply::Protocol(format!("a reply to msgid {:?}", message.msgid)))?,
        kind => return Err(BadReply::Protocol(format!("unexpected {kind:?} message"))),
    };
    if message.kind == MessageKind::ErrorReply {
        return Err(BadReply::Failed {
            msgid,
            what: format!("error reply {:?}", message.args),
        });
    }
    // `(data, start_tid, end_tid|None)`; `None` would mean the oid is unknown.
    let is_record = match message.args.as_tuple_or_list() {
        Some([data, start, end]) => {
            data.as_bytes().is_some()
                && start.as_bytes8().is_some()
                && (end.is_none() || end.as_bytes8().is_some())
        }
        _ => false,
    };
    if is_record {
        Ok(Some(msgid))
    } else {
        Err(BadReply::Failed {
            msgid,
            what: format!("not a record: {:?}", message.args),
        })
    }
}

/// Pipelined `loadBefore` calls on random `oids` over bare connections: each
/// keeps `pipeline` calls in flight for `seconds`. Any error reply or reply that
/// is not a record fails the run (after the phase, with the count).
pub async fn pipelined_loads(
    connections: Vec<LoadConnection>,
    pipeline: usize,
    oids: Arc<Vec<Oid>>,
    seconds: f64,
) -> anyhow::Result<Sample> {
    if oids.is_empty() {
        bail!("no preloaded oids");
    }
    let pipeline = pipeline.max(1);
    let cpu0 = own_cpu_seconds()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for (c, conn) in connections.into_iter().enumerate() {
        let oids = oids.clone();
        let seed = 0x9e37_79b9_7f4a_7c15_u64 ^ ((c as u64) << 20 | 1);
        tasks.push(tokio::spawn(async move {
            conn.run_loads(pipeline, &oids, seed, deadline).await
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for t in tasks {
        let (l, f) = t.await??;
        latencies.extend(l);
        failures.extend(f);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let client_cpu = own_cpu_seconds()? - cpu0;
    if let Some(first) = failures.first() {
        bail!(
            "{} of {} loads failed; the first: {first:?}",
            failures.len(),
            failures.len() + latencies.len()
        );
    }
    Ok(Sample {
        ops: latencies.len() as u64,
        elapsed,
        latencies,
        server_cpu: 0.0,
        client_cpu,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_request_template_is_what_the_wire_encoder_writes() {
        let template = load_before_template();
        for (msgid, oid, tid) in [
            (FIRST_LOAD_MSGID, Oid([0, 0, 0, 0, 0, 0, 0, 1]), Tid::MAX),
            (LAST_LOAD_MSGID, Oid([1, 2, 3, 4, 5, 6, 7, 8]), Tid([9; 8])),
        ] {
            let mut ours = Vec::new();
            push_load_before(&mut ours, &template, msgid, oid, tid);
            let call = Message::call(
                i64::from(msgid),
                "loadBefore",
                (Value::from(oid.0), Value::from(tid.0)),
            );
            let payload = encode_message(&call, zeoraid_wire::Encoding::Pickle).unwrap();
            let mut expected = Vec::new();
            zeoraid_wire::encode_frame(&payload, &mut expected).unwrap();
            assert_eq!(ours, expected);
        }
    }

    #[test]
    fn replies_are_checked() {
        let encode = |m: &Message| encode_message(m, zeoraid_wire::Encoding::Pickle).unwrap();
        let record = Value::from((
            Value::from(&b"data"[..]),
            Value::from([0u8, 0, 0, 0, 0, 0, 0, 5]),
            Value::None,
        ));
        let ok = encode(&Message::reply(Value::Int(70000), record));
        assert_eq!(check_load_reply(&ok).unwrap(), Some(70000));
        let none = encode(&Message::reply(Value::Int(70001), Value::None));
        assert!(matches!(
            check_load_reply(&none),
            Err(BadReply::Failed { msgid: 70001, .. })
        ));
        let error = encode(&Message::error_reply(
            Value::Int(70002),
            ("ZODB.POSException.POSKeyError", (Value::from(&b"x"[..]),)),
        ));
        assert!(matches!(
            check_load_reply(&error),
            Err(BadReply::Failed { msgid: 70002, .. })
        ));
        let callback = encode(&Message::one_way("invalidateTransaction", (1, 2)));
        assert_eq!(check_load_reply(&callback).unwrap(), None);
        assert!(matches!(
            check_load_reply(b"garbage"),
            Err(BadReply::Protocol(_))
        ));
    }
}

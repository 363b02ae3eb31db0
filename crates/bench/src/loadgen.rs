//! The Rust load generator: many ZEO connections (zeoraid's own ZEO client,
//! `ZeoClient`, which multiplexes calls on one connection) issuing pipelined
//! `loadBefore` calls on random preloaded oids, or small commits (one-way
//! `tpc_begin` + `storea`, then `vote` and `tpc_finish` round trips), for a fixed
//! time. It measures server capacity beyond what Python clients can generate —
//! but it runs on the same machine, so its own CPU is reported too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use zeoraid_storage::{
    Oid, Operation, Storage, Tid, Transaction, TransactionMeta, TxnId, VoteOutcome, MAX_NEW_OIDS,
};
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

/// `pipeline` concurrent `loadBefore` loops per connection on random `oids`.
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

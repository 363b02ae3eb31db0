//! The object cache (`cache-size`) against real runzeo servers: repeated loads
//! are hits with identical answers, commits by others (a real Python
//! `ClientStorage`, another client) and our own (stores, undo, deferred finishes)
//! invalidate, a reconnect clears it, it stays within its size, and loads racing
//! another client's commits always answer what the committed history says.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zeoraid_conformance::check::{store, txn, txn_at};
use zeoraid_conformance::data::record;
use zeoraid_storage::{LoadedRecord, Oid, Operation, Storage, Tid, TransactionMeta, VoteOutcome};
use zeoraid_zeo_client::{ConnectionState, ZeoClient, ENTRY_OVERHEAD};

use crate::common::{commit, venv, ServerConfig, ZeoServer};
use crate::init_tracing;

async fn load(s: &ZeoClient, oid: Oid, before: Tid) -> LoadedRecord {
    s.load_before(oid, before)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{oid} has no revision before {before:?}"))
}

/// The inline (cache-only) answer: `None` on a miss.
fn inline(s: &ZeoClient, oid: Oid, before: Tid) -> Option<LoadedRecord> {
    s.load_before_inline(oid, before)
        .map(|r| r.unwrap().expect("a cache hit is a record"))
}

fn just_after(tid: Tid) -> Tid {
    Tid::from_u64(tid.as_u64() + 1)
}

/// `before` of a load as of the newest commit the client's cache has heard of
/// (as a ZODB connection loads: its snapshot plus one); a later `before` is
/// never answered from a current revision in the cache.
fn now(s: &ZeoClient) -> Tid {
    just_after(s.cache_stats().last_tid)
}

/// Waits until `client` has heard of the commit `tid` by someone else (its
/// invalidation was handled by the reader, cache included).
async fn wait_heard(client: &ZeoClient, tid: Tid) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.last_seen_tid() < tid {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no invalidation for {tid:?}"));
}

/// Stores `data` as the revision of `oid` after `serial` with a real Python ZEO
/// `ClientStorage` (its own connection, its own commit path); returns the tid.
fn python_store(server: &ZeoServer, oid: Oid, serial: Tid, data: &Bytes) -> Tid {
    const SCRIPT: &str = r#"
import sys
from ZEO.ClientStorage import ClientStorage
from ZODB.Connection import TransactionMetaData
port, oid, serial, data = sys.argv[1:]
cs = ClientStorage(('127.0.0.1', int(port)), wait_timeout=10)
try:
    t = TransactionMetaData()
    cs.tpc_begin(t)
    cs.store(bytes.fromhex(oid), bytes.fromhex(serial), bytes.fromhex(data), '', t)
    cs.tpc_vote(t)
    print(cs.tpc_finish(t).hex())
finally:
    cs.close()
"#;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let out = Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(SCRIPT)
        .arg(server.port.to_string())
        .arg(hex(oid.as_bytes()))
        .arg(hex(serial.as_bytes()))
        .arg(hex(data))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python store failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: Vec<u8> = (0..16)
        .step_by(2)
        .map(|i| u8::from_str_radix(&text.trim()[i..i + 2], 16).unwrap())
        .collect();
    Tid::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_load_is_a_hit_unless_the_cache_is_off() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::default());
    let writer = server.client().await;
    let oids = writer.new_oids(2).await.unwrap();
    let t1 = commit(
        &writer,
        vec![
            store(oids[0], Tid::ZERO, record("a1")),
            store(oids[1], Tid::ZERO, record("b1")),
        ],
    )
    .await;

    let cached = server.client().await;
    assert_eq!(cached.cache_stats().capacity, 20 << 20, "ZEO's default");
    assert!(cached.load_before_inline(oids[0], now(&cached)).is_none());
    let first = load(&cached, oids[0], now(&cached)).await;
    assert_eq!((first.start, first.end), (t1, None));
    let stats = cached.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (0, 1, 1));
    assert_eq!(stats.bytes, first.data.len() as u64 + ENTRY_OVERHEAD);
    let second = load(&cached, oids[0], now(&cached)).await;
    assert_eq!(second, first);
    assert_eq!(inline(&cached, oids[0], now(&cached)), Some(first.clone()));
    let stats = cached.cache_stats();
    assert_eq!((stats.hits, stats.misses), (2, 1));
    // Later than the last commit heard of (`Tid::MAX`: "current, whatever was
    // committed meanwhile"), only the server knows.
    assert_eq!(cached.cache_stats().last_tid, t1);
    assert!(cached.load_before_inline(oids[0], Tid::MAX).is_none());
    assert_eq!(load(&cached, oids[0], Tid::MAX).await, first);
    let stats = cached.cache_stats();
    assert_eq!((stats.hits, stats.misses), (2, 2));
    // Before the first revision: the server's answer (None) is not cached.
    assert_eq!(cached.load_before(oids[1], t1).await.unwrap(), None);
    assert_eq!(cached.load_before(oids[1], t1).await.unwrap(), None);
    assert_eq!(cached.cache_stats().misses, 4);

    let uncached = ZeoClient::connect(server.options().cache_size(0))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(load(&uncached, oids[0], Tid::MAX).await, first);
        assert!(uncached.load_before_inline(oids[0], Tid::MAX).is_none());
    }
    let stats = uncached.cache_stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.entries, stats.capacity),
        (0, 0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_by_others_invalidate_and_old_revisions_stay_right() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::default());
    let ours = server.client().await;
    let reference = ZeoClient::connect(server.options().cache_size(0))
        .await
        .unwrap();
    let oid = ours.new_oids(1).await.unwrap()[0];
    let t1 = commit(&ours, vec![store(oid, Tid::ZERO, record("one"))]).await;
    load(&ours, oid, now(&ours)).await;
    assert_eq!(load(&ours, oid, now(&ours)).await.data, record("one"));
    assert_eq!(ours.cache_stats().hits, 1);

    // A real Python ZEO client commits the next revision.
    let t2 = python_store(&server, oid, t1, &record("two"));
    assert!(t2 > t1);
    wait_heard(&ours, t2).await;
    let current = load(&ours, oid, now(&ours)).await;
    assert_eq!(
        (current.data, current.start, current.end),
        (record("two"), t2, None)
    );
    // The old revision is still answered right, from the cache (its current
    // entry was ended by the invalidation), exactly as the server answers.
    let hits = ours.cache_stats().hits;
    let old = load(&ours, oid, just_after(t1)).await;
    assert_eq!(ours.cache_stats().hits, hits + 1);
    assert_eq!(
        (old.data.clone(), old.start, old.end),
        (record("one"), t1, Some(t2))
    );
    assert_eq!(old, load(&reference, oid, just_after(t1)).await);
    assert_eq!(load(&ours, oid, t2).await, old);

    // And another client of ours, for good measure.
    let t3 = commit(&reference, vec![store(oid, t2, record("three"))]).await;
    wait_heard(&ours, t3).await;
    assert_eq!(load(&ours, oid, now(&ours)).await.data, record("three"));
    let middle = load(&ours, oid, t3).await;
    assert_eq!(middle, load(&reference, oid, t3).await);
    assert_eq!((middle.start, middle.end), (t2, Some(t3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_commits_and_undos_invalidate() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::default());
    let s = server.client().await;
    let oids = s.new_oids(2).await.unwrap();
    let (a, b) = (oids[0], oids[1]);
    let t1 = commit(
        &s,
        vec![
            store(a, Tid::ZERO, record("a1")),
            store(b, Tid::ZERO, record("b1")),
        ],
    )
    .await;
    load(&s, a, now(&s)).await;
    load(&s, b, now(&s)).await;
    assert!(s.load_before_inline(a, now(&s)).is_some());

    // A plain finish.
    let t2 = commit(&s, vec![store(a, t1, record("a2"))]).await;
    assert!(s.load_before_inline(a, now(&s)).is_none());
    let current = load(&s, a, now(&s)).await;
    assert_eq!((current.data, current.start), (record("a2"), t2));
    assert_eq!(
        inline(&s, a, t2),
        Some(LoadedRecord {
            data: record("a1"),
            start: t1,
            end: Some(t2)
        })
    );
    // b was not in the transaction: still current, still cached.
    assert!(s.load_before_inline(b, now(&s)).is_some());

    // A deferred finish: a load right after the commit point gets what the
    // server answers after the commit — the cached current revision is not
    // served while the finish is on its way — and the wait may be dropped: the
    // reader invalidates anyway.
    load(&s, a, now(&s)).await;
    assert!(inline(&s, a, just_after(t2)).is_some());
    let t3 = Tid::now_later_than(t2);
    let t = txn_at(
        t3,
        TransactionMeta::default(),
        vec![store(a, t2, record("a3"))],
    );
    let id = t.id;
    assert!(matches!(
        s.vote(t).await.unwrap(),
        VoteOutcome::Voted { .. }
    ));
    let finished = s.finish_deferred(id).await.unwrap();
    assert_eq!(finished.tid, t3);
    drop(finished);
    let old = load(&s, a, just_after(t2)).await;
    assert_eq!((old.data, old.start, old.end), (record("a2"), t2, Some(t3)));
    s.ping().await.unwrap();
    assert_eq!(s.cache_stats().last_tid, t3);
    assert!(inline(&s, a, now(&s)).is_none());
    assert_eq!(inline(&s, a, t3).map(|r| r.end), Some(Some(t3)));
    let current = load(&s, a, now(&s)).await;
    assert_eq!((current.data, current.start), (record("a3"), t3));

    // Undo of the last transaction: the oid comes from the vote reply.
    let log = s.undo_log(0, 1, None).await.unwrap();
    assert_eq!(log[0].tid, t3);
    assert_eq!(load(&s, a, now(&s)).await.data, record("a3"));
    let t = txn(
        TransactionMeta::default(),
        vec![Operation::Undo {
            undo_id: log[0].id.clone(),
        }],
    );
    let id = t.id;
    assert!(matches!(
        s.vote(t).await.unwrap(),
        VoteOutcome::Voted { undone } if undone == vec![a]
    ));
    let t4 = s.finish(id).await.unwrap();
    assert!(s.load_before_inline(a, now(&s)).is_none());
    let current = load(&s, a, now(&s)).await;
    assert_eq!((current.data, current.start), (record("a2"), t4));

    // A delete: the next load is the server's POSKeyError, not the cache's data.
    let t = txn(
        TransactionMeta::default(),
        vec![Operation::Delete { oid: b, serial: t1 }],
    );
    let id = t.id;
    s.vote(t).await.unwrap();
    s.finish(id).await.unwrap();
    assert!(s.load_before(b, Tid::MAX).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_clears_the_cache() {
    init_tracing();
    let mut server = ZeoServer::start(ServerConfig::default());
    let s = server.client().await;
    let oid = s.new_oids(1).await.unwrap()[0];
    let t1 = commit(&s, vec![store(oid, Tid::ZERO, record("x"))]).await;
    load(&s, oid, now(&s)).await;
    load(&s, oid, now(&s)).await;
    assert_eq!(s.cache_stats().entries, 1);

    server.kill();
    let mut rx = s.watch_connection();
    tokio::time::timeout(Duration::from_secs(5), async {
        while rx.borrow_and_update().is_connected() {
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    // Nothing is served without a connection.
    assert!(s.load_before_inline(oid, now(&s)).is_none());
    assert_eq!(s.cache_stats().entries, 0);

    server.spawn();
    s.wait_connected(Duration::from_secs(10)).await.unwrap();
    assert!(matches!(
        s.connection_state(),
        ConnectionState::Connected { generation, .. } if generation >= 2
    ));
    assert_eq!(s.cache_stats().entries, 0);
    assert!(s.load_before_inline(oid, now(&s)).is_none());
    let misses = s.cache_stats().misses;
    let rec = load(&s, oid, now(&s)).await;
    assert_eq!((rec.data, rec.start), (record("x"), t1));
    assert_eq!(s.cache_stats().misses, misses + 1);
    assert!(s.load_before_inline(oid, now(&s)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_within_its_size() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::default());
    let writer = server.client().await;
    let oids = writer.new_oids(100).await.unwrap();
    let payload = |o: Oid| record(&format!("{:0>2000}", o.as_u64()));
    let ops = oids
        .iter()
        .map(|&o| store(o, Tid::ZERO, payload(o)))
        .collect();
    commit(&writer, ops).await;

    let capacity = 64 * 1024;
    let s = ZeoClient::connect(server.options().cache_size(capacity))
        .await
        .unwrap();
    for &oid in &oids {
        assert_eq!(load(&s, oid, now(&s)).await.data, payload(oid));
        assert!(s.cache_stats().bytes <= capacity);
    }
    let stats = s.cache_stats();
    let each = payload(oids[0]).len() as u64 + ENTRY_OVERHEAD;
    assert_eq!(stats.entries, capacity / each);
    assert_eq!(stats.misses, 100);
    // The most recent are cached, the first ones were evicted.
    assert!(s.load_before_inline(oids[99], now(&s)).is_some());
    assert!(s.load_before_inline(oids[0], now(&s)).is_none());
}

/// Loads of a client with a cache race another client's commits (and commits
/// of its own): every answer must be what the committed history says. The
/// interleaving varies from run to run; the check holds for every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_racing_commits_answer_the_committed_history() {
    init_tracing();
    const SHARED: usize = 6;
    const COMMITS: usize = 200;
    let server = ZeoServer::start(ServerConfig::default());
    let writer = server.client().await;
    let reader = Arc::new(server.client().await);
    let oids = writer.new_oids(SHARED as u32).await.unwrap();
    let own = reader.new_oids(1).await.unwrap()[0];
    // oid → [(tid, data)] in tid order.
    let mut history: HashMap<Oid, Vec<(Tid, Bytes)>> = HashMap::new();
    let t0 = commit(
        &writer,
        oids.iter()
            .map(|&o| store(o, Tid::ZERO, record(&format!("{o} 0"))))
            .collect(),
    )
    .await;
    for &o in &oids {
        history.insert(o, vec![(t0, record(&format!("{o} 0")))]);
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Each answer with what the reader had seen before asking.
    type Answer = (Oid, Tid, Tid, LoadedRecord);
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let reader = reader.clone();
            let oids = oids.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut answers: Vec<Answer> = Vec::new();
                let mut n = r;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 7;
                    let oid = oids[n % SHARED];
                    let seen = reader.last_seen_tid();
                    // Current, as of what was seen, and a slightly older snapshot.
                    let before = match n % 3 {
                        0 => Tid::MAX,
                        1 => just_after(seen),
                        _ => Tid::from_u64(seen.as_u64().saturating_sub(1 << 26).max(1)),
                    };
                    if let Some(rec) = reader.load_before(oid, before).await.unwrap() {
                        answers.push((oid, before, seen, rec));
                    }
                    if n % 5 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                answers
            })
        })
        .collect();

    // The reader's own commits, interleaved: its next load sees each at once.
    let own_commits = {
        let reader = reader.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut serial = Tid::ZERO;
            let mut k = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                k += 1;
                let data = record(&format!("own {k}"));
                serial = commit(&reader, vec![store(own, serial, data.clone())]).await;
                let current = load(&reader, own, Tid::MAX).await;
                assert_eq!(
                    (current.data, current.start),
                    (data, serial),
                    "own commit {k}"
                );
                load(&reader, own, Tid::MAX).await;
            }
            k
        })
    };

    let mut serials: HashMap<Oid, Tid> = oids.iter().map(|&o| (o, t0)).collect();
    for k in 1..=COMMITS {
        let changed: Vec<Oid> = (0..3)
            .map(|j| oids[(k * 5 + j * (k % 4 + 1)) % SHARED])
            .collect();
        let mut changed = changed;
        changed.sort();
        changed.dedup();
        let ops = changed
            .iter()
            .map(|&o| store(o, serials[&o], record(&format!("{o} {k}"))))
            .collect();
        let tid = commit(&writer, ops).await;
        for &o in &changed {
            serials.insert(o, tid);
            history
                .get_mut(&o)
                .unwrap()
                .push((tid, record(&format!("{o} {k}"))));
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let own_count = own_commits.await.unwrap();
    assert!(own_count > 0);

    let mut checked = 0;
    for handle in readers {
        for (oid, before, seen, rec) in handle.await.unwrap() {
            let revs = &history[&oid];
            let Some(at) = revs.iter().position(|(t, _)| *t == rec.start) else {
                panic!("{oid}: start {:?} is no committed revision", rec.start);
            };
            assert_eq!(rec.data, revs[at].1, "{oid} at {:?}", rec.start);
            assert!(rec.start < before);
            let next = revs.get(at + 1).map(|(t, _)| *t);
            match rec.end {
                Some(end) => assert_eq!(Some(end), next, "{oid}: end of {:?}", rec.start),
                // Current when answered: nothing newer had been seen.
                None => assert!(
                    next.is_none_or(|n| n > seen),
                    "{oid}: {:?} answered as current although {next:?} was seen ({seen:?})",
                    rec.start
                ),
            }
            // The newest revision before `before` among those seen.
            if let Some(newer) = revs.get(at + 1) {
                assert!(
                    newer.0 >= before || newer.0 > seen,
                    "{oid}: {:?} answered before {before:?}, but {:?} was seen",
                    rec.start,
                    newer.0
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} loads checked");
    let stats = reader.cache_stats();
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
}

//! Group commit in the server: `tpc_finish` releases the commit lock at the
//! storage's commit point and publishes (invalidations, last tid, reply) only
//! once the commit is durable, in tid order. Checked with many concurrent
//! committers on the embedded FileStorage, and with a storage whose durability
//! the test holds back or fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::held::HeldStorage;
use common::{oid, TestClient, TestServer, BEYOND_EVERY_COMMIT, MAX_TID, Z64};
use tokio::sync::oneshot;
use zeoraid_filestorage::{AsyncFileStorage, Options};
use zeoraid_storage::Storage;
use zeoraid_wire::Value;
use zeoraid_zeo_server::ServerOptions;

fn tid_of(v: &Value) -> u64 {
    u64::from_be_bytes(v.as_bytes8().expect("an 8-byte tid"))
}

async fn filestorage(dir: &tempfile::TempDir, vote_fsync: bool) -> Arc<AsyncFileStorage> {
    let opts = Options {
        vote_fsync,
        ..Options::default()
    };
    Arc::new(
        AsyncFileStorage::open(dir.path().join("Data.fs"), opts)
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_committers_are_acknowledged_and_invalidated_in_tid_order() {
    let dir = tempfile::tempdir().unwrap();
    let storage = filestorage(&dir, true).await;
    let server = TestServer::start_with(ServerOptions::default(), storage.clone()).await;
    let mut observer = TestClient::connect(&server.addr).await;
    observer.register().await;
    const CLIENTS: u64 = 8;
    const EACH: i64 = 15;
    let committers: Vec<_> = (1..=CLIENTS)
        .map(|n| {
            let addr = server.addr.clone();
            tokio::spawn(async move {
                let mut c = TestClient::connect(&addr).await;
                c.register().await;
                let mut serial = Z64.to_vec();
                let mut acked = Vec::new();
                // Every tid this client learns — invalidations and its own
                // acknowledged commits, in arrival order — is newer than the
                // one before (ZEO's client cache refuses anything else).
                let mut last_seen = 0u64;
                let mut checked = 0;
                for txn in 1..=EACH {
                    let data = format!("{n}-{txn}").into_bytes();
                    let tid = c.commit(txn, &[(oid(n), serial, data)]).await.unwrap();
                    for (name, args) in &c.callbacks[checked..] {
                        if name == "invalidateTransaction" {
                            let t = tid_of(&args[0]);
                            assert!(t > last_seen, "invalidation {t} after {last_seen}");
                            last_seen = t;
                        }
                    }
                    checked = c.callbacks.len();
                    let tid_n = tid_of(&tid);
                    assert!(tid_n > last_seen, "own tid {tid_n} after {last_seen}");
                    last_seen = tid_n;
                    serial = tid.as_bytes().unwrap().to_vec();
                    acked.push(tid_n);
                }
                // The others' commits reached this client in tid order too.
                let seen: Vec<u64> = c
                    .callbacks
                    .iter()
                    .filter(|(name, _)| name == "invalidateTransaction")
                    .map(|(_, args)| tid_of(&args[0]))
                    .collect();
                assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
                assert!(
                    seen.iter().all(|t| !acked.contains(t)),
                    "no invalidation of its own"
                );
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for c in committers {
        let tids = c.await.unwrap();
        assert!(tids.windows(2).all(|w| w[0] < w[1]));
        acked.extend(tids);
    }
    acked.sort_unstable();
    acked.dedup();
    assert_eq!(acked.len() as u64, CLIENTS * EACH as u64);
    let mut invalidated = Vec::new();
    while invalidated.len() < acked.len() {
        let args = tokio::time::timeout(
            Duration::from_secs(10),
            observer.wait_callback("invalidateTransaction"),
        )
        .await
        .expect("every commit is invalidated");
        invalidated.push(tid_of(&args[0]));
    }
    assert_eq!(
        invalidated, acked,
        "one invalidation per commit, in tid order"
    );
    let last = observer.ok("lastTransaction", vec![]).await;
    assert_eq!(tid_of(&last), *acked.last().unwrap());
    // Every acknowledged commit is in the file: one fsync may have covered
    // several, but none was skipped.
    let fsyncs = storage.engine().group_sync().fsyncs();
    assert!(fsyncs >= 1);
    server.stop().await;
    let engine = zeoraid_filestorage::FileStorage::open(
        dir.path().join("Data.fs"),
        Options {
            read_only: true,
            ..Options::default()
        },
    )
    .unwrap();
    let written: Vec<u64> = engine
        .iterator(None, None)
        .unwrap()
        .map(|t| t.unwrap().tid.as_u64())
        .collect();
    assert_eq!(written, acked);
}

/// `a` commits object 1 (v0), then starts a second commit (v1) whose
/// durability is held; returns (v0's tid, the held `tpc_finish` msgid, the
/// sender that ends the hold).
async fn commit_then_hold_durability(
    storage: &HeldStorage,
    a: &mut TestClient,
) -> (Value, Value, oneshot::Sender<Result<(), String>>) {
    let t0 = a
        .commit(1, &[(oid(1), Z64.to_vec(), b"v0".to_vec())])
        .await
        .unwrap();
    a.begin(2).await;
    a.store(2, &oid(1), t0.as_bytes().unwrap(), b"v1").await;
    a.ok("vote", vec![Value::Int(2)]).await;
    let hold = storage.hold_next_durability();
    let finish = a.start_call("tpc_finish", vec![Value::Int(2)]).await;
    (t0, finish, hold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_commit_runs_during_an_fsync_but_nothing_is_published_before_it() {
    let storage = HeldStorage::new(None);
    let server = TestServer::start_with(ServerOptions::default(), storage.clone()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut b = TestClient::connect(&server.addr).await;
    let mut c = TestClient::connect(&server.addr).await;
    a.register().await;
    b.register().await;
    c.register().await;
    let (t0, a_finish, hold) = commit_then_hold_durability(&storage, &mut a).await;
    c.wait_callback("invalidateTransaction").await;
    b.wait_callback("invalidateTransaction").await;

    // The commit lock was released at a's commit point: b votes and reaches
    // its own commit point while a's commit is not durable yet...
    b.begin(1).await;
    b.store(1, &oid(2), &Z64, b"w1").await;
    let b_vote = b.start_call("vote", vec![Value::Int(1)]).await;
    b.reply_within(&b_vote, Duration::from_secs(5))
        .await
        .expect("the vote does not wait for a's fsync")
        .unwrap();
    let b_finish = b.start_call("tpc_finish", vec![Value::Int(1)]).await;
    // ...but neither commit is acknowledged or published before a's is durable
    // (b's, though durable, comes after a's in tid order).
    assert!(b
        .reply_within(&b_finish, Duration::from_millis(300))
        .await
        .is_none());
    assert!(a.reply_within(&a_finish, Duration::ZERO).await.is_none());
    assert_eq!(c.ok("lastTransaction", vec![]).await, t0);
    let mut d = TestClient::connect(&server.addr).await;
    assert_eq!(d.register().await, t0);
    // A load of the current revision is a load as of the published tid: a's
    // v1 is not shown, v0 is answered at once, as current.
    assert_eq!(
        c.ok(
            "loadBefore",
            vec![Value::from(oid(1)), Value::from(&MAX_TID)]
        )
        .await,
        Value::Tuple(vec![Value::from(&b"v0"[..]), t0.clone(), Value::None])
    );
    // A load before a tid past a's waits for as long as a's fsync takes
    // (longer than the 1 s after which a load answers a commit nobody
    // publishes).
    let load = c
        .start_call(
            "loadBefore",
            vec![Value::from(oid(1)), Value::from(&BEYOND_EVERY_COMMIT)],
        )
        .await;
    assert!(c
        .reply_within(&load, Duration::from_millis(1500))
        .await
        .is_none());
    assert!(c.callbacks.is_empty(), "{:?}", c.callbacks);

    hold.send(Ok(())).unwrap();
    let t1 = a.wait_reply(&a_finish).await.unwrap();
    let t2 = b.wait_reply(&b_finish).await.unwrap();
    assert!(tid_of(&t1) < tid_of(&t2));
    let loaded = c.wait_reply(&load).await.unwrap();
    assert_eq!(
        loaded,
        Value::Tuple(vec![Value::from(&b"v1"[..]), t1.clone(), Value::None])
    );
    // c got a's invalidation before the load's answer, then b's.
    assert_eq!(c.callbacks[0].0, "invalidateTransaction");
    assert_eq!(c.callbacks[0].1[0], t1);
    let inv = c.wait_callback("invalidateTransaction").await;
    let inv = if inv[0] == t1 {
        c.wait_callback("invalidateTransaction").await
    } else {
        inv
    };
    assert_eq!(inv[0], t2);
    assert_eq!(c.ok("lastTransaction", vec![]).await, t2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_cannot_be_made_durable_is_neither_acknowledged_nor_published() {
    let storage = HeldStorage::new(None);
    let server = TestServer::start_with(ServerOptions::default(), storage.clone()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut c = TestClient::connect(&server.addr).await;
    a.register().await;
    c.register().await;
    let (t0, a_finish, hold) = commit_then_hold_durability(&storage, &mut a).await;
    c.wait_callback("invalidateTransaction").await;
    hold.send(Err("disk on fire".into())).unwrap();
    let err = a.wait_reply(&a_finish).await.unwrap_err();
    assert!(format!("{err:?}").contains("disk on fire"), "{err:?}");
    assert_eq!(c.ok("lastTransaction", vec![]).await, t0);
    assert!(c.callbacks.is_empty(), "{:?}", c.callbacks);
    // The failed commit's place in the publication order does not hold up
    // the next one (here the storage goes on; FileStorage would refuse).
    let t2 = a
        .commit(3, &[(oid(2), Z64.to_vec(), b"w".to_vec())])
        .await
        .unwrap();
    let inv = c.wait_callback("invalidateTransaction").await;
    assert_eq!(inv[0], t2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_waits_for_a_commit_waiting_for_its_fsync() {
    let storage = HeldStorage::new(None);
    let server = TestServer::start_with(ServerOptions::default(), storage.clone()).await;
    let mut a = TestClient::connect(&server.addr).await;
    a.register().await;
    let (_, a_finish, hold) = commit_then_hold_durability(&storage, &mut a).await;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "the stop waits for the commit");
    hold.send(Ok(())).unwrap();
    let t1 = a.wait_reply(&a_finish).await.unwrap();
    assert_eq!(
        tid_of(&t1),
        storage.inner.last_transaction().await.unwrap().as_u64()
    );
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_of_the_filestorage_fails_the_finish_and_later_votes() {
    let dir = tempfile::tempdir().unwrap();
    // Without the vote's fsync, the finish's group fsync is the one that fails.
    let storage = filestorage(&dir, false).await;
    let server = TestServer::start_with(ServerOptions::default(), storage.clone()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut c = TestClient::connect(&server.addr).await;
    a.register().await;
    c.register().await;
    let t0 = a
        .commit(1, &[(oid(1), Z64.to_vec(), b"v0".to_vec())])
        .await
        .unwrap();
    c.wait_callback("invalidateTransaction").await;
    storage.engine().group_sync().fail_next_fsync();
    let err = a
        .commit(
            2,
            &[(oid(1), t0.as_bytes().unwrap().to_vec(), b"v1".to_vec())],
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("fdatasync failed"), "{err:?}");
    assert_eq!(c.ok("lastTransaction", vec![]).await, t0);
    assert!(c.callbacks.is_empty(), "{:?}", c.callbacks);
    // Every later write is refused, with the reason.
    c.begin(1).await;
    c.store(1, &oid(2), &Z64, b"w").await;
    let err = c.call("vote", vec![Value::Int(1)]).await.unwrap_err();
    assert!(format!("{err:?}").contains("reopened"), "{err:?}");
    server.stop().await;
}

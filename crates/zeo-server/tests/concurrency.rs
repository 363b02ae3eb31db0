//! What the server overlaps and what it keeps in order: loads keep being answered
//! while a commit is being finished (its fsync), pipelined loads of one connection
//! run at the same time, and still no client is told about a transaction before
//! its invalidation is on the way. The storage is the in-memory one behind a
//! wrapper that can hold `finish` (before or after publishing) and slow loads down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::held::{HeldStorage, HoldFinish};
use common::{oid, TestClient, TestServer, BEYOND_EVERY_COMMIT, MAX_TID, Z64};
use zeoraid_wire::Value;
use zeoraid_zeo_server::ServerOptions;

fn load_args(n: u64) -> Vec<Value> {
    vec![Value::from(oid(n)), Value::from(&MAX_TID)]
}

/// Commit `v1` of object 1 from `a`, then start a second commit (`v2`) whose
/// finish the storage holds at `at`; returns (first tid, msgid of the held
/// `tpc_finish`).
async fn commit_and_hold_the_next(
    storage: &HeldStorage,
    a: &mut TestClient,
    at: HoldFinish,
) -> (Value, Value) {
    let t1 = a
        .commit(1, &[(oid(1), Z64.to_vec(), b"v1".to_vec())])
        .await
        .unwrap();
    a.begin(2).await;
    a.store(2, &oid(1), t1.as_bytes().unwrap(), b"v2").await;
    a.ok("vote", vec![Value::Int(2)]).await;
    storage.hold_next_finish(at);
    let finish = a.start_call("tpc_finish", vec![Value::Int(2)]).await;
    tokio::time::timeout(Duration::from_secs(5), storage.entered.notified())
        .await
        .expect("the finish reaches the storage");
    (t1, finish)
}

/// A server on a [`HeldStorage`], two registered clients, and a second commit
/// of `a` whose finish the storage holds at `at` until `release` is dropped
/// (`b` has seen the first commit's invalidation).
struct HeldFinish {
    server: TestServer,
    a: TestClient,
    b: TestClient,
    release: tokio::sync::OwnedMutexGuard<()>,
    t1: Value,
    finish: Value,
}

async fn hold_a_finish(at: HoldFinish) -> HeldFinish {
    let storage = HeldStorage::new(None);
    let server = TestServer::start_with(ServerOptions::default(), storage.clone()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut b = TestClient::connect(&server.addr).await;
    a.register().await;
    b.register().await;
    let release = storage.release.clone().lock_owned().await;
    let (t1, finish) = commit_and_hold_the_next(&storage, &mut a, at).await;
    b.wait_callback("invalidateTransaction").await;
    HeldFinish {
        server,
        a,
        b,
        release,
        t1,
        finish,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_are_answered_while_a_finish_is_held_and_precede_its_invalidation() {
    let HeldFinish {
        server,
        mut a,
        mut b,
        release,
        t1,
        finish,
    } = hold_a_finish(HoldFinish::BeforePublishing).await;

    // The finish is stuck in the storage (an fsync that takes forever): b's load
    // is still answered, with the state before the commit, as current data.
    let load = b.start_call("loadBefore", load_args(1)).await;
    let loaded = b
        .reply_within(&load, Duration::from_secs(2))
        .await
        .expect("a load is answered during a commit's finish")
        .unwrap();
    assert_eq!(
        loaded,
        Value::Tuple(vec![Value::from(&b"v1"[..]), t1.clone(), Value::None])
    );
    assert_eq!(b.ok("lastTransaction", vec![]).await, t1);
    assert!(b.callbacks.is_empty(), "{:?}", b.callbacks);

    drop(release);
    let t2 = a.wait_reply(&finish).await.unwrap();
    // The invalidation follows the old data, so b's cache entry gets its end.
    let inv = b.wait_callback("invalidateTransaction").await;
    assert_eq!(inv[0], t2);
    assert_eq!(b.ok("lastTransaction", vec![]).await, t2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_visible_in_the_storage_is_not_shown_before_its_invalidation() {
    let HeldFinish {
        server,
        mut a,
        mut b,
        release,
        t1,
        finish,
    } = hold_a_finish(HoldFinish::AfterPublishing).await;

    // The storage already shows v2, but the server answers as of the last
    // transaction whose invalidations are queued (t1): register, lastTransaction
    // and getInvalidations say t1, a snapshot load and a load of the current
    // revision get v1 as current data, and a load before a later tid waits for
    // v2's invalidation.
    let t1_plus_1 = (u64::from_be_bytes(t1.as_bytes().unwrap().try_into().unwrap()) + 1)
        .to_be_bytes()
        .to_vec();
    let old = b
        .ok(
            "loadBefore",
            vec![Value::from(oid(1)), Value::from(t1_plus_1)],
        )
        .await;
    assert_eq!(
        old,
        Value::Tuple(vec![Value::from(&b"v1"[..]), t1.clone(), Value::None])
    );
    assert_eq!(b.ok("lastTransaction", vec![]).await, t1);
    let mut c = TestClient::connect(&server.addr).await;
    assert_eq!(c.register().await, t1);
    assert_eq!(
        c.ok("getInvalidations", vec![t1.clone()]).await,
        Value::Tuple(vec![t1.clone(), Value::List(vec![])])
    );
    assert_eq!(
        b.ok("loadBefore", load_args(1)).await,
        Value::Tuple(vec![Value::from(&b"v1"[..]), t1.clone(), Value::None])
    );
    let current = b
        .start_call(
            "loadBefore",
            vec![Value::from(oid(1)), Value::from(&BEYOND_EVERY_COMMIT)],
        )
        .await;
    assert!(
        b.reply_within(&current, Duration::from_millis(300))
            .await
            .is_none(),
        "v2 is not sent before its invalidation"
    );
    assert!(b.callbacks.is_empty(), "{:?}", b.callbacks);

    drop(release);
    let t2 = a.wait_reply(&finish).await.unwrap();
    let loaded = b.wait_reply(&current).await.unwrap();
    assert_eq!(
        loaded,
        Value::Tuple(vec![Value::from(&b"v2"[..]), t2.clone(), Value::None])
    );
    // The invalidation came first (callbacks are collected while waiting).
    assert_eq!(
        b.callbacks
            .first()
            .map(|(name, args)| (name.as_str(), &args[0])),
        Some(("invalidateTransaction", &t2))
    );
    b.callbacks.clear();
    assert_eq!(b.ok("lastTransaction", vec![]).await, t2);
    let inv = c.wait_callback("invalidateTransaction").await;
    assert_eq!(inv[0], t2);
    assert_eq!(c.ok("lastTransaction", vec![]).await, t2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_loads_of_one_connection_overlap_and_later_calls_wait_for_them() {
    let delay = Duration::from_millis(200);
    let storage = HeldStorage::new(Some(delay));
    let server = TestServer::start_with(ServerOptions::default(), storage.clone()).await;
    let mut a = TestClient::connect(&server.addr).await;
    a.register().await;
    for n in 1..=8u64 {
        a.commit(n as i64, &[(oid(n), Z64.to_vec(), vec![n as u8])])
            .await
            .unwrap();
    }
    let started = Instant::now();
    let mut loads = Vec::new();
    for n in 1..=8u64 {
        loads.push((n, a.start_call("loadBefore", load_args(n)).await));
    }
    // An unknown oid: an error reply, also from the overlapped path.
    let missing = a.start_call("loadBefore", load_args(99)).await;
    let ping = a.start_call("ping", vec![]).await;
    // The ping is handled after every earlier load is answered: its reply comes
    // last.
    a.wait_reply(&ping).await.unwrap();
    let elapsed = started.elapsed();
    for (n, msgid) in loads {
        let loaded = a
            .reply_within(&msgid, Duration::ZERO)
            .await
            .expect("answered before the ping")
            .unwrap();
        assert_eq!(
            loaded.as_tuple_or_list().unwrap()[0],
            Value::from(vec![n as u8])
        );
    }
    let err = a
        .reply_within(&missing, Duration::ZERO)
        .await
        .expect("answered before the ping")
        .unwrap_err();
    assert_eq!(err.0, "ZODB.POSException.POSKeyError");
    // Nine loads of 200 ms each, one after the other, would take 1.8 s.
    assert!(elapsed < delay * 4, "pipelined loads took {elapsed:?}");
    server.stop().await;
}

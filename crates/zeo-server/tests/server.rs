//! The server over a real TCP socket, driven by a tiny client built on the wire
//! codec, with the in-memory storage behind it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{oid, TestClient, TestServer, Z64};
use zeoraid_wire::Value;
use zeoraid_zeo_server::codec::encode_call;
use zeoraid_zeo_server::{Encoding, ServerOptions};

fn bytes(v: &Value) -> Vec<u8> {
    v.as_bytes().expect("bytes").to_vec()
}

#[tokio::test]
async fn handshake_register_get_info() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut c = TestClient::connect(&server.addr).await;
    assert_eq!(c.register().await, Value::from(&Z64));
    let info = c.ok("get_info", vec![]).await;
    for key in [
        "length",
        "size",
        "name",
        "supportsUndo",
        "supports_record_iternext",
        "interfaces",
    ] {
        assert!(info.get(key).is_some(), "get_info has {key}: {info:?}");
    }
    let ifaces = info
        .get("interfaces")
        .unwrap()
        .as_tuple_or_list()
        .unwrap()
        .to_vec();
    assert_eq!(
        ifaces.last().unwrap(),
        &Value::Tuple(vec![
            Value::from("zope.interface"),
            Value::from("Interface")
        ])
    );
    assert_eq!(c.ok("lastTransaction", vec![]).await, Value::from(&Z64));
    assert_eq!(c.ok("ping", vec![]).await, Value::None);
    let err = c
        .call(
            "loadBefore",
            vec![
                Value::from(&Z64),
                Value::from(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            ],
        )
        .await;
    assert_eq!(err.unwrap_err().0, "ZODB.POSException.POSKeyError");
    let err = c.call("new_oid", vec![]).await.unwrap_err();
    assert_eq!(err.0, "builtins.AttributeError");
    let err = c.call("vote", vec![Value::Int(12345)]).await.unwrap_err();
    assert_eq!(
        err,
        (
            "ZODB.POSException.StorageTransactionError".to_string(),
            Value::Tuple(vec![Value::None, Value::Int(12345)])
        )
    );
    assert_eq!(
        c.ok("tpc_abort", vec![Value::Int(12345)]).await,
        Value::None
    );
    let status = c.ok("server_status", vec![]).await;
    assert_eq!(status.get("connections"), Some(&Value::Int(1)));
    assert_eq!(
        status.get("timeout-thread-is-alive"),
        Some(&Value::from("stub"))
    );
    server.stop().await;
}

#[tokio::test]
async fn commit_read_back_and_invalidate_the_others() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut b = TestClient::connect(&server.addr).await;
    a.register().await;
    b.register().await;
    let oids = a.ok("new_oids", vec![]).await;
    assert_eq!(oids.as_tuple_or_list().unwrap().len(), 100);
    let tid = a
        .commit(
            7,
            &[
                (Z64.to_vec(), Z64.to_vec(), b"root".to_vec()),
                (oid(1), Z64.to_vec(), b"one".to_vec()),
            ],
        )
        .await
        .unwrap();
    // info reached the committer before its reply.
    let info = a
        .callbacks
        .iter()
        .find(|(n, _)| n == "info")
        .expect("info callback")
        .1
        .clone();
    assert_eq!(info[0].get("length"), Some(&Value::Int(2)));
    // The other client got the invalidation.
    let inv = b.wait_callback("invalidateTransaction").await;
    assert_eq!(inv[0], tid);
    assert_eq!(
        inv[1],
        Value::List(vec![Value::from(&Z64), Value::from(oid(1))])
    );
    assert!(a
        .callbacks
        .iter()
        .all(|(n, _)| n != "invalidateTransaction"));
    let loaded = b
        .ok(
            "loadBefore",
            vec![
                Value::from(oid(1)),
                Value::from(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            ],
        )
        .await;
    assert_eq!(
        loaded,
        Value::Tuple(vec![Value::from(&b"one"[..]), tid.clone(), Value::None])
    );
    assert_eq!(b.ok("lastTransaction", vec![]).await, tid);
    assert_eq!(
        b.ok("loadSerial", vec![Value::from(oid(1)), tid.clone()])
            .await,
        Value::from(&b"one"[..])
    );
    assert_eq!(b.ok("getTid", vec![Value::from(oid(1))]).await, tid);
    // getInvalidations from before the commit.
    let invs = b.ok("getInvalidations", vec![Value::from(&Z64)]).await;
    assert_eq!(
        invs,
        Value::Tuple(vec![
            tid.clone(),
            Value::List(vec![Value::from(&Z64), Value::from(oid(1))])
        ])
    );
    let history = b
        .ok("history", vec![Value::from(oid(1)), Value::Int(3)])
        .await;
    let h = history.as_tuple_or_list().unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].get("description"), Some(&Value::from(&b"test"[..])));
    assert_eq!(h[0].get("tid"), Some(&tid));
    server.stop().await;
}

#[tokio::test]
async fn conflicts_come_back_as_dicts_and_a_revote_commits() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut b = TestClient::connect(&server.addr).await;
    a.register().await;
    b.register().await;
    let t1 = a
        .commit(1, &[(oid(1), Z64.to_vec(), b"v1".to_vec())])
        .await
        .unwrap();
    let t2 = a
        .commit(2, &[(oid(1), bytes(&t1), b"v2".to_vec())])
        .await
        .unwrap();
    // b read t1 and writes: conflict.
    b.begin(3).await;
    b.store(3, &oid(1), &bytes(&t1), b"b-version").await;
    let voted = b.ok("vote", vec![Value::Int(3)]).await;
    let list = voted.as_tuple_or_list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].get("oid"), Some(&Value::from(oid(1))));
    assert_eq!(
        list[0].get("serials"),
        Some(&Value::Tuple(vec![t2.clone(), t1.clone()]))
    );
    assert_eq!(list[0].get("data"), Some(&Value::from(&b"b-version"[..])));
    // The lock was released: a can still commit meanwhile? No — resolve and re-vote.
    b.store(3, &oid(1), &bytes(&t2), b"resolved").await;
    assert_eq!(b.ok("vote", vec![Value::Int(3)]).await, Value::List(vec![]));
    let t3 = b.ok("tpc_finish", vec![Value::Int(3)]).await;
    let inv = a.wait_callback("invalidateTransaction").await;
    assert_eq!(inv[0], t3);
    assert_eq!(
        a.ok("loadSerial", vec![Value::from(oid(1)), t3]).await,
        Value::from(&b"resolved"[..])
    );
    server.stop().await;
}

#[tokio::test]
async fn storage_errors_at_vote_clear_the_transaction() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut a = TestClient::connect(&server.addr).await;
    a.register().await;
    let t1 = a
        .commit(1, &[(oid(1), Z64.to_vec(), b"v1".to_vec())])
        .await
        .unwrap();
    a.commit(2, &[(oid(1), bytes(&t1), b"v2".to_vec())])
        .await
        .unwrap();
    a.begin(3).await;
    a.oneway(
        "checkCurrentSerialInTransaction",
        vec![Value::from(oid(1)), t1.clone(), Value::Int(3)],
    )
    .await;
    a.store(3, &oid(2), &Z64, b"x").await;
    let err = a.call("vote", vec![Value::Int(3)]).await.unwrap_err();
    assert_eq!(err.0, "ZODB.POSException.ReadConflictError");
    assert_eq!(err.1.get("oid"), Some(&Value::from(oid(1))));
    assert!(err.1.get("serials").is_some() && err.1.get("message").is_some());
    // The transaction is gone: abort answers None, a new one works.
    assert_eq!(a.ok("tpc_abort", vec![Value::Int(3)]).await, Value::None);
    a.commit(4, &[(oid(2), Z64.to_vec(), b"y".to_vec())])
        .await
        .unwrap();
    server.stop().await;
}

async fn wait_for_waiting(c: &mut TestClient, n: i64) {
    for _ in 0..100 {
        let status = c.ok("server_status", vec![]).await;
        if status.get("waiting") == Some(&Value::Int(n)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never {n} waiting votes");
}

#[tokio::test]
async fn delayed_vote_waits_in_fifo_order_while_other_calls_are_answered() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut b = TestClient::connect(&server.addr).await;
    let mut c = TestClient::connect(&server.addr).await;
    for x in [&mut a, &mut b, &mut c] {
        x.register().await;
    }
    a.begin(1).await;
    a.store(1, &oid(1), &Z64, b"a").await;
    assert_eq!(a.ok("vote", vec![Value::Int(1)]).await, Value::List(vec![]));
    b.begin(2).await;
    b.store(2, &oid(2), &Z64, b"b").await;
    let b_vote = b.start_call("vote", vec![Value::Int(2)]).await;
    wait_for_waiting(&mut a, 1).await;
    c.begin(3).await;
    c.store(3, &oid(3), &Z64, b"c").await;
    let c_vote = c.start_call("vote", vec![Value::Int(3)]).await;
    wait_for_waiting(&mut a, 2).await;
    assert!(
        b.reply_within(&b_vote, Duration::from_millis(300))
            .await
            .is_none(),
        "b's vote waits"
    );
    // b's connection still answers other calls (replies out of order).
    assert_eq!(b.ok("ping", vec![]).await, Value::None);
    let status = b.ok("server_status", vec![]).await;
    assert_eq!(status.get("waiting"), Some(&Value::Int(2)));
    a.ok("tpc_finish", vec![Value::Int(1)]).await;
    assert_eq!(b.wait_reply(&b_vote).await.unwrap(), Value::List(vec![]));
    assert!(
        c.reply_within(&c_vote, Duration::from_millis(300))
            .await
            .is_none(),
        "c waits for b"
    );
    b.ok("tpc_finish", vec![Value::Int(2)]).await;
    assert_eq!(c.wait_reply(&c_vote).await.unwrap(), Value::List(vec![]));
    c.ok("tpc_finish", vec![Value::Int(3)]).await;
    server.stop().await;
}

#[tokio::test]
async fn a_disconnect_mid_commit_releases_the_lock() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut b = TestClient::connect(&server.addr).await;
    a.register().await;
    b.register().await;
    a.begin(1).await;
    a.store(1, &oid(1), &Z64, b"a").await;
    assert_eq!(a.ok("vote", vec![Value::Int(1)]).await, Value::List(vec![]));
    b.begin(2).await;
    b.store(2, &oid(1), &Z64, b"b").await;
    let vote = b.start_call("vote", vec![Value::Int(2)]).await;
    assert!(b
        .reply_within(&vote, Duration::from_millis(200))
        .await
        .is_none());
    drop(a);
    // a's transaction was aborted: b's store of the same new oid does not conflict.
    assert_eq!(b.wait_reply(&vote).await.unwrap(), Value::List(vec![]));
    b.ok("tpc_finish", vec![Value::Int(2)]).await;
    server.stop().await;
}

#[tokio::test]
async fn transaction_timeout_closes_the_holder() {
    let options = ServerOptions {
        transaction_timeout: Some(Duration::from_millis(300)),
        ..ServerOptions::default()
    };
    let server = TestServer::start(options).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut b = TestClient::connect(&server.addr).await;
    a.register().await;
    b.register().await;
    a.begin(1).await;
    a.store(1, &oid(1), &Z64, b"a").await;
    assert_eq!(a.ok("vote", vec![Value::Int(1)]).await, Value::List(vec![]));
    assert!(a.is_closed().await, "holder disconnected after the timeout");
    b.commit(2, &[(oid(1), Z64.to_vec(), b"b".to_vec())])
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let options = ServerOptions {
        max_frame_size: 1 << 20,
        ..ServerOptions::default()
    };
    let server = TestServer::start(options).await;
    let mut good = TestClient::connect(&server.addr).await;
    good.register().await;

    // Garbage that is not a pickle.
    let mut bad = TestClient::connect(&server.addr).await;
    bad.write_frame(b"\xffnot a pickle").await;
    assert!(bad.is_closed().await);

    // An oversized length prefix.
    let mut big = TestClient::connect(&server.addr).await;
    big.register().await;
    big.write_raw(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]).await;
    assert!(big.is_closed().await);

    // An unknown method.
    let mut unknown = TestClient::connect(&server.addr).await;
    unknown.register().await;
    unknown.start_call("no_such_method", vec![]).await;
    assert!(unknown.is_closed().await);

    // A method before register.
    let mut early = TestClient::connect(&server.addr).await;
    early.start_call("get_info", vec![]).await;
    assert!(early.is_closed().await);

    // A second register.
    let mut twice = TestClient::connect(&server.addr).await;
    twice.register().await;
    twice
        .start_call("register", vec![Value::from("1"), Value::Bool(false)])
        .await;
    assert!(twice.is_closed().await);

    // A failing one-way call (storea without a transaction).
    let mut oneway = TestClient::connect(&server.addr).await;
    oneway.register().await;
    oneway.store(99, &oid(1), &Z64, b"x").await;
    assert!(oneway.is_closed().await);

    // A bad handshake: closed without a word.
    let mut z4 = TestClient::connect_raw(&server.addr).await;
    assert_eq!(z4.read_frame().await.unwrap(), b"Z5");
    z4.write_frame(b"Z4").await;
    assert!(z4.read_frame().await.is_none());

    // The good client never noticed.
    assert_eq!(good.ok("ping", vec![]).await, Value::None);
    good.commit(1, &[(oid(1), Z64.to_vec(), b"ok".to_vec())])
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_are_ignored() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut c = TestClient::connect(&server.addr).await;
    c.register().await;
    c.send(Value::Int(-1), false, ".reply", vec![]).await;
    // The real heartbeat has None as args.
    let frame = zeoraid_wire::pickle::encode(&Value::Tuple(vec![
        Value::Int(-1),
        Value::Int(0),
        Value::from(".reply"),
        Value::None,
    ]))
    .unwrap();
    c.write_frame(&frame).await;
    assert_eq!(c.ok("ping", vec![]).await, Value::None);
    server.stop().await;
}

#[tokio::test]
async fn ruok_answers_json_and_closes() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut c = TestClient::connect_raw(&server.addr).await;
    assert_eq!(c.read_frame().await.unwrap(), b"Z5");
    c.write_frame(b"ruok").await;
    let json = c.read_frame().await.unwrap();
    let text = String::from_utf8(json).unwrap();
    assert!(
        text.starts_with("{\"1\": {\"connections\": 0, \"loads\": 0"),
        "{text}"
    );
    assert!(
        text.contains("\"last-transaction\": \"0000000000000000\""),
        "{text}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(parsed["1"]["lock_time"].is_null());
    assert!(c.read_frame().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn msgpack_server() {
    let options = ServerOptions {
        msgpack: true,
        ..ServerOptions::default()
    };
    let server = TestServer::start(options).await;
    let mut a = TestClient::connect(&server.addr).await;
    assert_eq!(a.encoding, zeoraid_zeo_server::Encoding::Msgpack);
    a.register().await;
    let tid = a
        .commit(1, &[(oid(1), Z64.to_vec(), b"m".to_vec())])
        .await
        .unwrap();
    assert_eq!(tid.as_bytes().map(<[u8]>::len), Some(8));
    // Arrays decode as tuples, as Python's unpackb(use_list=False) does.
    let oids = a.ok("new_oids", vec![Value::Int(3)]).await;
    assert!(matches!(oids, Value::Tuple(ref v) if v.len() == 3));
    let err = a
        .call("loadBefore", vec![Value::from(oid(9)), tid.clone()])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        (
            "ZODB.POSException.POSKeyError".to_string(),
            Value::Tuple(vec![Value::from(oid(9))])
        )
    );
    let history = a.ok("history", vec![Value::from(oid(1))]).await;
    assert_eq!(
        history.as_tuple_or_list().unwrap()[0].get("tid"),
        Some(&tid)
    );
    server.stop().await;
}

#[tokio::test]
async fn read_only_server_refuses_writes() {
    let options = ServerOptions {
        read_only: true,
        ..ServerOptions::default()
    };
    let server = TestServer::start(options).await;
    let mut c = TestClient::connect(&server.addr).await;
    let err = c
        .call("register", vec![Value::from("1"), Value::Bool(false)])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        (
            "ZODB.POSException.ReadOnlyError".to_string(),
            Value::Tuple(vec![])
        )
    );
    c.ok("register", vec![Value::from("1"), Value::Bool(true)])
        .await;
    let err = c.call("new_oids", vec![]).await.unwrap_err();
    assert_eq!(err.0, "ZODB.POSException.ReadOnlyError");
    let mut d = TestClient::connect(&server.addr).await;
    let err = d
        .call("register", vec![Value::from("nope"), Value::Bool(true)])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        (
            "builtins.ValueError".to_string(),
            Value::Tuple(vec![Value::from("unknown storage: nope")])
        )
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_loads_in_one_segment_are_each_answered_before_a_later_call() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut c = TestClient::connect(&server.addr).await;
    c.register().await;
    for n in 1..=4u64 {
        c.commit(n as i64, &[(oid(n), Z64.to_vec(), vec![n as u8; 300])])
            .await
            .unwrap();
    }
    let max = Value::from([0xffu8; 8]);
    // Written with one `write`, so the server reads them together: loads with
    // ZEO's `(oid, tid)` msgids and with int msgids (the server's fast path for
    // `loadBefore` frames), an unknown oid, a one-way `loadBefore` (handled in
    // order: no reply), then a call that must be answered after every load.
    let mut segment = Vec::new();
    let mut loads = Vec::new();
    for n in 1..=4u64 {
        let tuple_id = Value::from((Value::from(oid(n)), max.clone()));
        let int_id = Value::Int(1000 + n as i64);
        for msgid in [tuple_id, int_id] {
            let args = vec![Value::from(oid(n)), max.clone()];
            segment.extend_from_slice(
                &encode_call(msgid.clone(), false, "loadBefore", args, Encoding::Pickle).unwrap(),
            );
            loads.push((n, msgid));
        }
    }
    let missing = Value::Int(2000);
    let args = vec![Value::from(oid(99)), max.clone()];
    segment.extend_from_slice(
        &encode_call(missing.clone(), false, "loadBefore", args, Encoding::Pickle).unwrap(),
    );
    let args = vec![Value::from(oid(1)), max.clone()];
    segment.extend_from_slice(
        &encode_call(Value::Int(0), true, "loadBefore", args, Encoding::Pickle).unwrap(),
    );
    let last = Value::Int(3000);
    segment.extend_from_slice(
        &encode_call(
            last.clone(),
            false,
            "lastTransaction",
            vec![],
            Encoding::Pickle,
        )
        .unwrap(),
    );
    c.write_raw(&segment).await;

    c.wait_reply(&last).await.unwrap();
    for (n, msgid) in loads {
        let record = c
            .reply_within(&msgid, Duration::ZERO)
            .await
            .expect("answered before the later call")
            .unwrap();
        let record = record.as_tuple_or_list().unwrap();
        assert_eq!(bytes(&record[0]), vec![n as u8; 300]);
        assert_eq!(record[2], Value::None);
    }
    let err = c
        .reply_within(&missing, Duration::ZERO)
        .await
        .expect("answered before the later call")
        .unwrap_err();
    assert_eq!(err.0, "ZODB.POSException.POSKeyError");
    // The connection is still fine.
    assert_eq!(c.ok("ping", vec![]).await, Value::None);
    server.stop().await;
}

//! Pack broadcasts, getInvalidations, iterators, undo, blobs, output overflow and
//! graceful shutdown, over a real socket with the in-memory storage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{oid, TestClient, TestServer, Z64};
use zeoraid_memstorage::MemStorage;
use zeoraid_wire::Value;
use zeoraid_zeo_server::ServerOptions;

#[tokio::test]
async fn pack_sends_info_to_everybody_before_the_reply() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut b = TestClient::connect(&server.addr).await;
    a.register().await;
    b.register().await;
    let t1 = a
        .commit(1, &[(oid(1), Z64.to_vec(), b"v1".to_vec())])
        .await
        .unwrap();
    a.commit(
        2,
        &[(oid(1), t1.as_bytes().unwrap().to_vec(), b"v2".to_vec())],
    )
    .await
    .unwrap();
    a.callbacks.clear();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 1.0;
    assert_eq!(
        a.ok("pack", vec![Value::Float(now), Value::Int(1)]).await,
        Value::None
    );
    assert!(
        a.callbacks.iter().any(|(n, _)| n == "info"),
        "caller got info before the reply"
    );
    let info = b.wait_callback("info").await;
    assert!(info[0].get("size").is_some());
    server.stop().await;
}

#[tokio::test]
async fn get_invalidations_from_the_queue_or_none() {
    let options = ServerOptions {
        invalidation_queue_size: 2,
        ..ServerOptions::default()
    };
    let server = TestServer::start(options).await;
    let mut a = TestClient::connect(&server.addr).await;
    a.register().await;
    let mut tids = vec![];
    for i in 0..4u64 {
        tids.push(
            a.commit(i as i64 + 1, &[(oid(10 + i), Z64.to_vec(), b"x".to_vec())])
                .await
                .unwrap(),
        );
    }
    let last = tids[3].clone();
    assert_eq!(
        a.ok("getInvalidations", vec![tids[2].clone()]).await,
        Value::Tuple(vec![last.clone(), Value::List(vec![Value::from(oid(13))])])
    );
    assert_eq!(
        a.ok("getInvalidations", vec![last.clone()]).await,
        Value::Tuple(vec![last.clone(), Value::List(vec![])])
    );
    // Too old for a queue of 2: the client must drop its cache.
    assert_eq!(
        a.ok("getInvalidations", vec![tids[0].clone()]).await,
        Value::None
    );
    server.stop().await;

    // With invalidation-age, the storage is iterated instead.
    let options = ServerOptions {
        invalidation_queue_size: 1,
        invalidation_age: Some(Duration::from_secs(3600)),
        ..ServerOptions::default()
    };
    let server = TestServer::start(options).await;
    let mut a = TestClient::connect(&server.addr).await;
    a.register().await;
    let t1 = a
        .commit(1, &[(oid(1), Z64.to_vec(), b"x".to_vec())])
        .await
        .unwrap();
    a.commit(2, &[(oid(2), Z64.to_vec(), b"x".to_vec())])
        .await
        .unwrap();
    let t3 = a
        .commit(3, &[(oid(3), Z64.to_vec(), b"x".to_vec())])
        .await
        .unwrap();
    assert_eq!(
        a.ok("getInvalidations", vec![t1]).await,
        Value::Tuple(vec![
            t3,
            Value::List(vec![Value::from(oid(2)), Value::from(oid(3))])
        ])
    );
    server.stop().await;
}

#[tokio::test]
async fn iterators_and_undo() {
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
        .commit(
            2,
            &[(oid(1), t1.as_bytes().unwrap().to_vec(), b"v2".to_vec())],
        )
        .await
        .unwrap();
    let iid = a.ok("iterator_start", vec![Value::None, Value::None]).await;
    assert_eq!(iid, Value::Int(0));
    let first = a.ok("iterator_next", vec![iid.clone()]).await;
    let items = first.as_tuple_or_list().unwrap();
    assert_eq!(items[0], t1);
    assert_eq!(items[1], Value::from(" "));
    assert_eq!(items[3], Value::from(&b"test"[..]));
    assert_eq!(items[4], Value::Dict(vec![]));
    let err = a
        .call("iterator_record_start", vec![iid.clone(), t2.clone()])
        .await
        .unwrap_err();
    assert_eq!(err.0, "builtins.Exception");
    let riid = a
        .ok("iterator_record_start", vec![iid.clone(), t1.clone()])
        .await;
    assert_eq!(riid, Value::Int(1));
    let rec = a.ok("iterator_record_next", vec![riid.clone()]).await;
    assert_eq!(
        rec,
        Value::Tuple(vec![
            Value::from(oid(1)),
            t1.clone(),
            Value::from(&b"v1"[..]),
            Value::None
        ])
    );
    assert_eq!(
        a.ok("iterator_record_next", vec![riid.clone()]).await,
        Value::None
    );
    assert_eq!(
        a.call("iterator_record_next", vec![riid])
            .await
            .unwrap_err()
            .0,
        "builtins.KeyError"
    );
    a.oneway("iterator_gc", vec![Value::List(vec![iid.clone()])])
        .await;
    assert_eq!(
        a.call("iterator_next", vec![iid]).await.unwrap_err().0,
        "builtins.KeyError"
    );

    // Undo the second transaction: the vote answers the undone oid, b is told.
    let log = a.ok("undoLog", vec![Value::Int(0), Value::Int(-20)]).await;
    let entries = log.as_tuple_or_list().unwrap().to_vec();
    assert_eq!(entries.len(), 2);
    let id = entries[0].get("id").unwrap().clone();
    let spec = Value::Dict(vec![(Value::from("id"), id.clone())]);
    let info = a
        .ok("undoInfo", vec![Value::Int(0), Value::Int(20), spec])
        .await;
    assert_eq!(info.as_tuple_or_list().unwrap().len(), 1);
    a.begin(3).await;
    a.oneway("undoa", vec![id, Value::Int(3)]).await;
    assert_eq!(
        a.ok("vote", vec![Value::Int(3)]).await,
        Value::List(vec![Value::from(oid(1))])
    );
    let t3 = a.ok("tpc_finish", vec![Value::Int(3)]).await;
    let mut inv = b.wait_callback("invalidateTransaction").await;
    while inv[0] != t3 {
        inv = b.wait_callback("invalidateTransaction").await;
    }
    assert_eq!(inv[1], Value::List(vec![Value::from(oid(1))]));
    let current = b
        .ok(
            "loadBefore",
            vec![
                Value::from(oid(1)),
                Value::from(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            ],
        )
        .await;
    assert_eq!(
        current.as_tuple_or_list().unwrap()[0],
        Value::from(&b"v1"[..])
    );
    server.stop().await;
}

#[tokio::test]
async fn blob_upload_and_send_blob() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(
        MemStorage::new()
            .with_blob_dir(dir.path().join("blobs"))
            .unwrap(),
    );
    let options = ServerOptions {
        blob_temp_dir: Some(dir.path().join("uploads")),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(options, storage).await;
    let mut a = TestClient::connect(&server.addr).await;
    a.register().await;
    let info = a.ok("get_info", vec![]).await;
    let ifaces = info
        .get("interfaces")
        .unwrap()
        .as_tuple_or_list()
        .unwrap()
        .to_vec();
    assert_eq!(
        ifaces[1],
        Value::Tuple(vec![
            Value::from("ZODB.interfaces"),
            Value::from("IBlobStorage")
        ])
    );
    let payload: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    a.begin(1).await;
    a.store(1, &oid(5), &Z64, b"blob record").await;
    a.oneway("storeBlobStart", vec![]).await;
    for chunk in payload.chunks(59000) {
        a.oneway("storeBlobChunk", vec![Value::from(chunk)]).await;
    }
    a.oneway(
        "storeBlobEnd",
        vec![
            Value::from(oid(5)),
            Value::from(&Z64),
            Value::from(&b"blob record"[..]),
            Value::Int(1),
        ],
    )
    .await;
    assert_eq!(a.ok("vote", vec![Value::Int(1)]).await, Value::List(vec![]));
    let tid = a.ok("tpc_finish", vec![Value::Int(1)]).await;
    // The upload's temp file is gone (removed right after the reply is sent).
    let uploads = dir.path().join("uploads");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_dir(&uploads).unwrap().count() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "blob upload temp file left behind"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let mut b = TestClient::connect(&server.addr).await;
    b.register().await;
    assert_eq!(
        b.ok("sendBlob", vec![Value::from(oid(5)), tid.clone()])
            .await,
        Value::None
    );
    // Everything arrived before the reply, in order.
    let names: Vec<&str> = b.callbacks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "receiveBlobStart",
            "receiveBlobChunk",
            "receiveBlobChunk",
            "receiveBlobChunk",
            "receiveBlobStop"
        ]
    );
    let mut got = Vec::new();
    for (_, args) in &b.callbacks[1..4] {
        got.extend_from_slice(args[2].as_bytes().unwrap());
    }
    assert_eq!(got, payload);
    let err = b
        .call("sendBlob", vec![Value::from(oid(6)), tid])
        .await
        .unwrap_err();
    assert_eq!(err.0, "ZODB.POSException.POSKeyError");

    // storeBlobShared needs a .tmp basename.
    b.begin(2).await;
    b.oneway(
        "storeBlobShared",
        vec![
            Value::from(oid(7)),
            Value::from(&Z64),
            Value::from(&b"r"[..]),
            Value::from("../../etc/passwd"),
            Value::Int(2),
        ],
    )
    .await;
    assert!(b.is_closed().await);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_voted_transaction_finish() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut idle = TestClient::connect(&server.addr).await;
    a.register().await;
    idle.register().await;
    a.begin(1).await;
    a.store(1, &oid(1), &Z64, b"v").await;
    assert_eq!(a.ok("vote", vec![Value::Int(1)]).await, Value::List(vec![]));
    let stopping = tokio::spawn(server.stop());
    // The idle client is closed; the committing one may finish.
    assert!(idle.is_closed().await);
    let tid = a.ok("tpc_finish", vec![Value::Int(1)]).await;
    assert_eq!(tid.as_bytes().map(<[u8]>::len), Some(8));
    assert!(a.is_closed().await);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

//! Failure behaviour a RAID builds on: a hung server becomes `Timeout`, a killed
//! server fails pending calls at once with `Disconnected`, the client reconnects
//! (and re-registers) when the server comes back, and garbage from the server
//! drops the connection without a panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeoraid_conformance::check::{store, txn};
use zeoraid_conformance::data::record;
use zeoraid_storage::{Oid, Storage, StorageError, Tid, TransactionMeta, VoteOutcome};
use zeoraid_zeo_client::{ConnectionState, ServerAddress, ZeoClient, ZeoClientOptions};

use crate::common::{commit, ServerConfig, ZeoServer};
use crate::init_tracing;

async fn wait_state(
    client: &ZeoClient,
    limit: Duration,
    pred: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    let mut rx = client.watch_connection();
    tokio::time::timeout(limit, async {
        loop {
            let state = rx.borrow_and_update().clone();
            if pred(&state) {
                return state;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("state not reached; now {:?}", client.connection_state()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_times_out_then_killed_server_disconnects() {
    init_tracing();
    let mut server = ZeoServer::start(ServerConfig::default());
    let client = Arc::new(
        ZeoClient::connect(server.options().timeout(Duration::from_millis(800)))
            .await
            .unwrap(),
    );
    let oid = client.new_oids(1).await.unwrap()[0];
    let t = txn(
        TransactionMeta::default(),
        vec![store(oid, Tid::ZERO, record("x"))],
    );
    let id = t.id;
    client.vote(t).await.unwrap();
    let tid = client.finish(id).await.unwrap();

    server.pause();
    // A call to a hung server: Timeout within the configured timeout.
    let started = Instant::now();
    let r = client.load_before(oid, Tid::MAX).await;
    let took = started.elapsed();
    assert!(matches!(r, Err(StorageError::Timeout(_))), "{r:?}");
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    // A vote too.
    let t = txn(
        TransactionMeta::default(),
        vec![store(oid, tid, record("y"))],
    );
    let started = Instant::now();
    assert!(matches!(
        client.vote(t).await,
        Err(StorageError::Timeout(_))
    ));
    assert!(started.elapsed() < Duration::from_millis(2500));

    // Calls pending on the hung server fail at once when it dies.
    let pending: Vec<_> = (0..5)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.history(oid, 1).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = Instant::now();
    server.kill();
    for p in pending {
        let r = p.await.unwrap();
        assert!(
            matches!(
                r,
                Err(StorageError::Disconnected(_)) | Err(StorageError::Timeout(_))
            ),
            "{r:?}"
        );
    }
    assert!(killed.elapsed() < Duration::from_millis(900));
    wait_state(&client, Duration::from_secs(5), |s| !s.is_connected()).await;
    assert!(!client.is_connected());
    // Calls while disconnected fail immediately.
    let started = Instant::now();
    assert!(matches!(
        client.last_transaction().await,
        Err(StorageError::Disconnected(_))
    ));
    assert!(started.elapsed() < Duration::from_millis(100));
}

/// A RAID gives up on a hung backend's vote by its own timeout, dropping the
/// vote midway. The server must not keep that transaction voted — holding its
/// commit lock against every other client — until the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_dropped_midway_is_aborted_on_the_server() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::default());
    let quitter = server.client().await;
    let other = server.client().await;
    let oids = quitter.new_oids(2).await.unwrap();
    let first = commit(&quitter, vec![store(oids[0], Tid::ZERO, record("a1"))]).await;

    server.pause();
    let t = txn(
        TransactionMeta::default(),
        vec![store(oids[0], first, record("a2"))],
    );
    let gave_up = tokio::time::timeout(Duration::from_millis(300), quitter.vote(t)).await;
    assert!(
        gave_up.is_err(),
        "the vote answered a paused server: {gave_up:?}"
    );
    server.resume();

    // Another client commits at once: the dropped vote holds no lock.
    let started = Instant::now();
    let t = txn(
        TransactionMeta::default(),
        vec![store(oids[1], Tid::ZERO, record("b1"))],
    );
    let id = t.id;
    let voted = tokio::time::timeout(Duration::from_secs(5), other.vote(t)).await;
    assert!(
        matches!(voted, Ok(Ok(VoteOutcome::Voted { .. }))),
        "the other client's vote waited {:?}: {voted:?}\n{}",
        started.elapsed(),
        server.log()
    );
    other.finish(id).await.unwrap();
    // The quitter's own connection commits again, and its transaction left
    // nothing behind.
    let second = commit(&quitter, vec![store(oids[0], first, record("a3"))]).await;
    assert!(second > first);
    let current = other.load_before(oids[0], Tid::MAX).await.unwrap().unwrap();
    assert_eq!((current.data, current.start), (record("a3"), second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_calls_fail_at_once_when_the_server_dies() {
    init_tracing();
    let mut server = ZeoServer::start(ServerConfig::default());
    let client = Arc::new(
        ZeoClient::connect(server.options().timeout(Duration::from_secs(30)))
            .await
            .unwrap(),
    );
    client.last_transaction().await.unwrap();
    server.pause();
    let pending: Vec<_> = (0..5)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.load_before(Oid::ZERO, Tid::MAX).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Instant::now();
    server.kill();
    for p in pending {
        let r = p.await.unwrap();
        assert!(matches!(r, Err(StorageError::Disconnected(_))), "{r:?}");
    }
    // Well within the 30 s call timeout.
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "{:?}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_restart_on_the_same_port() {
    init_tracing();
    let mut server = ZeoServer::start(ServerConfig::default());
    let client = server.client().await;
    let oid = client.new_oids(1).await.unwrap()[0];
    let t = txn(
        TransactionMeta::default(),
        vec![store(oid, Tid::ZERO, record("x"))],
    );
    let id = t.id;
    client.vote(t).await.unwrap();
    let tid = client.finish(id).await.unwrap();

    // A transaction voted when the connection drops cannot finish.
    let t = txn(
        TransactionMeta::default(),
        vec![store(oid, tid, record("y"))],
    );
    let id = t.id;
    assert!(matches!(
        client.vote(t).await.unwrap(),
        VoteOutcome::Voted { .. }
    ));
    server.kill();
    wait_state(&client, Duration::from_secs(5), |s| !s.is_connected()).await;
    assert!(matches!(
        client.finish(id).await,
        Err(StorageError::Disconnected(_))
    ));

    // Meanwhile another client commits to the restarted server; ours catches up.
    server.spawn();
    let state = wait_state(
        &client,
        Duration::from_secs(10),
        ConnectionState::is_connected,
    )
    .await;
    match state {
        ConnectionState::Connected { generation, .. } => assert!(generation >= 2),
        other => panic!("{other:?}"),
    }
    // Re-registered: reads and commits work again. (Python's FileStorage, after
    // truncating the voted-but-unfinished transaction at start-up, reports that
    // transaction's tid as lastTransaction, so only the data is checked here.)
    assert!(client.last_transaction().await.unwrap() >= tid);
    let rec = client.load_before(oid, Tid::MAX).await.unwrap().unwrap();
    assert_eq!((rec.data, rec.start), (record("x"), tid));
    let mut inval = client.invalidations().unwrap();
    let other = server.client().await;
    let t = txn(
        TransactionMeta::default(),
        vec![store(oid, tid, record("z"))],
    );
    let id2 = t.id;
    other.vote(t).await.unwrap();
    let t2 = other.finish(id2).await.unwrap();
    let inv = tokio::time::timeout(Duration::from_secs(5), inval.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((inv.tid, inv.oids), (t2, vec![oid]));

    // Missed while disconnected: announced after the reconnect (getInvalidations).
    server.kill();
    wait_state(&client, Duration::from_secs(5), |s| !s.is_connected()).await;
    server.spawn();
    let t = txn(
        TransactionMeta::default(),
        vec![store(oid, t2, record("w"))],
    );
    let id3 = t.id;
    let third = server.client().await;
    third.vote(t).await.unwrap();
    let t3 = third.finish(id3).await.unwrap();
    let inv = tokio::time::timeout(Duration::from_secs(10), inval.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((inv.tid, inv.oids), (t3, vec![oid]));
    client.wait_connected(Duration::from_secs(5)).await.unwrap();
    assert_eq!(client.last_transaction().await.unwrap(), t3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_clear() {
    init_tracing();
    // Nobody listens: connect with wait fails within wait_timeout.
    let port = crate::common::free_port();
    let mut options = ZeoClientOptions::new(ServerAddress::tcp("127.0.0.1", port))
        .connect_timeout(Duration::from_millis(500));
    options.wait_timeout = Duration::from_millis(700);
    let started = Instant::now();
    let err = ZeoClient::connect(options.clone()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(err.to_string().contains("no connection"), "{err}");

    // Without wait: calls fail with Disconnected until a server appears.
    let client = ZeoClient::connect(options.wait(false)).await.unwrap();
    assert!(matches!(
        client.last_transaction().await,
        Err(StorageError::Disconnected(_))
    ));

    // Unknown storage name: registration fails, reported.
    let server = ZeoServer::start(ServerConfig::default());
    let mut options = server.options().storage("nope");
    options.wait_timeout = Duration::from_secs(1);
    let err = ZeoClient::connect(options).await.unwrap_err();
    assert!(err.to_string().contains("unknown storage"), "{err}");
}

/// Serves one connection: `announce`, then `then` after the client's handshake.
async fn fake_server(announce: &'static [u8], then: &'static [u8]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut frame = (announce.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(announce);
                let _ = sock.write_all(&frame).await;
                let mut buf = [0u8; 6];
                if sock.read_exact(&mut buf).await.is_err() {
                    return;
                }
                let _ = sock.write_all(then).await;
                let mut sink = vec![0u8; 4096];
                while let Ok(n) = sock.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_server_drops_the_connection() {
    init_tracing();
    let quick = |port| {
        let mut o = ZeoClientOptions::new(ServerAddress::tcp("127.0.0.1", port))
            .connect_timeout(Duration::from_millis(500));
        o.wait_timeout = Duration::from_millis(600);
        o
    };
    // An unsupported protocol version.
    let port = fake_server(b"Z4", b"").await;
    let err = ZeoClient::connect(quick(port)).await.unwrap_err();
    assert!(err.to_string().contains("no connection"), "{err}");
    // A malformed frame instead of the register reply.
    let port = fake_server(b"Z5", b"\x00\x00\x00\x03abc").await;
    assert!(ZeoClient::connect(quick(port)).await.is_err());
    // A frame announcing 4 GiB.
    let port = fake_server(b"Z5", b"\xff\xff\xff\xff").await;
    assert!(ZeoClient::connect(quick(port)).await.is_err());
    // A well-formed pickle that is not a message.
    let port = fake_server(b"Z5", b"\x00\x00\x00\x04\x80\x03N.").await;
    assert!(ZeoClient::connect(quick(port)).await.is_err());
}

//! Connect, reads, commits, conflicts, undo, iteration, blobs, invalidations,
//! concurrency and msgpack against real runzeo servers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use zeoraid_conformance::check::{store, txn, txn_at};
use zeoraid_conformance::data::{meta, record, record_with_refs};
use zeoraid_storage::{Oid, Operation, Storage, StorageError, Tid, TransactionMeta, VoteOutcome};
use zeoraid_zeo_client::{ConnectionState, Encoding, ZeoClient};

use crate::common::{commit, ServerConfig, ZeoServer};
use crate::init_tracing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_read_commit_and_iterate() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::default());
    let s = server.client().await;
    assert!(s.is_connected());
    assert!(matches!(
        s.connection_state(),
        ConnectionState::Connected {
            encoding: Encoding::Pickle,
            generation: 1,
            ..
        }
    ));
    assert_eq!(s.last_transaction().await.unwrap(), Tid::ZERO);
    assert!(matches!(
        s.load_before(Oid::ZERO, Tid::MAX).await,
        Err(StorageError::PosKey { oid }) if oid == Oid::ZERO
    ));
    let info = s.info().await.unwrap();
    assert_eq!(info.length, 0);
    assert!(s
        .server_info()
        .iter()
        .any(|(k, v)| k == "supportsUndo" && v.is_truthy()));
    assert!(info.supports_undo);
    assert!(!info.supports_blobs);

    let oids = s.new_oids(3).await.unwrap();
    assert_eq!(oids.len(), 3);
    assert!(oids.windows(2).all(|w| w[0] < w[1]));
    let (a, b) = (oids[0], oids[1]);

    let t = txn(
        meta("alice", "first"),
        vec![
            store(a, Tid::ZERO, record("a1")),
            store(b, Tid::ZERO, record("b1")),
        ],
    );
    let id = t.id;
    assert_eq!(
        s.vote(t).await.unwrap(),
        VoteOutcome::Voted { undone: vec![] }
    );
    let t1 = s.finish(id).await.unwrap();
    assert!(t1 > Tid::ZERO);
    assert_eq!(s.last_transaction().await.unwrap(), t1);
    let rec = s.load_before(a, Tid::MAX).await.unwrap().unwrap();
    assert_eq!((rec.data, rec.start, rec.end), (record("a1"), t1, None));
    assert_eq!(s.load_before(a, t1).await.unwrap(), None);
    assert_eq!(s.load_serial(b, t1).await.unwrap(), record("b1"));
    assert_eq!(s.info().await.unwrap().length, 2);
    // The server's `info` callback (sent before the tpc_finish reply) updates the
    // cached facts too.
    let t = txn(
        TransactionMeta::default(),
        vec![store(oids[2], Tid::ZERO, record("c"))],
    );
    let id = t.id;
    s.vote(t).await.unwrap();
    let tc = s.finish(id).await.unwrap();
    assert!(s
        .server_info()
        .iter()
        .any(|(k, v)| k == "length" && v.as_int() == Some(3)));

    let t2 = commit(&s, vec![store(a, t1, record("a2"))]).await;
    let hist = s.history(a, 10).await.unwrap();
    assert_eq!(hist.iter().map(|h| h.tid).collect::<Vec<_>>(), vec![t2, t1]);
    assert_eq!(hist[1].meta, meta("alice", "first"));

    // Explicit tid: honoured when later, refused when not.
    let explicit = Tid::from_unix_time(t2.unix_time() + 60.0);
    let t = txn_at(
        explicit,
        meta("r", "explicit"),
        vec![store(b, t1, record("b2"))],
    );
    let id = t.id;
    s.vote(t).await.unwrap();
    assert_eq!(s.finish(id).await.unwrap(), explicit);
    let t = txn_at(
        t2,
        TransactionMeta::default(),
        vec![store(b, explicit, record("x"))],
    );
    assert!(matches!(s.vote(t).await, Err(StorageError::Transaction(_))));

    let txns: Vec<_> = s
        .iterator(None, None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        txns.iter().map(|t| t.tid).collect::<Vec<_>>(),
        vec![t1, tc, t2, explicit]
    );
    assert_eq!(txns[0].meta, meta("alice", "first"));
    assert_eq!(txns[0].records.len(), 2);
    assert_eq!(txns[3].meta, meta("r", "explicit"));

    // A stream dropped early frees the server iterator (iterator_gc) and the
    // connection stays usable.
    let mut stream = s.iterator(None, None).await.unwrap();
    let first = stream.try_next().await.unwrap().unwrap();
    assert_eq!(first.tid, t1);
    drop(stream);

    let cur = s.record_iternext(None).await.unwrap().unwrap();
    assert_eq!(cur.oid, a);
    assert_eq!(cur.next, Some(b));
    assert_eq!(
        s.record_iternext(Some(Oid::from_u64(oids[2].as_u64() + 1)))
            .await
            .unwrap(),
        None
    );

    // abort / finish bookkeeping
    let t = txn(TransactionMeta::default(), vec![store(a, t2, record("a3"))]);
    let id = t.id;
    s.vote(t).await.unwrap();
    s.abort(id).await.unwrap();
    assert!(matches!(
        s.finish(id).await,
        Err(StorageError::Transaction(_))
    ));
    assert_eq!(s.last_transaction().await.unwrap(), explicit);
    s.close().await.unwrap();
    assert!(!s.is_connected());
    assert!(matches!(
        s.last_transaction().await,
        Err(StorageError::Disconnected(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_undo_and_pack() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::raid_backend());
    // Frequent heartbeats interleave with everything below.
    let s = ZeoClient::connect(
        server
            .options()
            .heartbeat_interval(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let oids = s.new_oids(3).await.unwrap();
    let (a, b, c) = (oids[0], oids[1], oids[2]);
    let t1 = commit(
        &s,
        vec![
            store(Oid::ZERO, Tid::ZERO, record_with_refs("root", &[a, b, c])),
            store(a, Tid::ZERO, record("a1")),
            store(b, Tid::ZERO, record("b1")),
        ],
    )
    .await;
    let t2 = commit(
        &s,
        vec![store(a, t1, record("a2")), store(b, t1, record("b2"))],
    )
    .await;

    // client-conflict-resolution: every conflict comes back in the vote reply.
    let t = txn(
        TransactionMeta::default(),
        vec![
            store(a, t1, record("a-stale")),
            store(b, t1, record("b-stale")),
            store(c, Tid::ZERO, record("c")),
        ],
    );
    let id = t.id;
    match s.vote(t).await.unwrap() {
        VoteOutcome::Conflicts(mut c) => {
            c.sort_by_key(|c| c.oid);
            assert_eq!(c.len(), 2);
            assert_eq!((c[0].oid, c[0].committed, c[0].read), (a, t2, t1));
            assert_eq!(c[0].data, record("a-stale"));
            assert_eq!(c[1].oid, b);
        }
        other => panic!("expected conflicts, got {other:?}"),
    }
    s.abort(id).await.unwrap();
    // The server-side transaction was aborted: the next commit goes through.
    let t3 = commit(&s, vec![store(c, Tid::ZERO, record("c1"))]).await;

    // ReadConflict and a delete conflict are error replies.
    let t = txn(
        TransactionMeta::default(),
        vec![
            Operation::CheckCurrentSerial { oid: a, serial: t1 },
            store(c, t3, record("c2")),
        ],
    );
    assert!(matches!(
        s.vote(t).await,
        Err(StorageError::ReadConflict { oid, committed, read }) if oid == a && committed == t2 && read == t1
    ));
    let t = txn(
        TransactionMeta::default(),
        vec![Operation::Delete { oid: b, serial: t1 }],
    );
    assert!(matches!(
        s.vote(t).await,
        Err(StorageError::Conflict { oid, .. }) if oid == b
    ));

    // Undo through the undo log.
    let log = s.undo_log(0, 10, None).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![t3, t2, t1]
    );
    let undo_t2 = log[1].id.clone();
    let t = txn(
        TransactionMeta::default(),
        vec![Operation::Undo { undo_id: undo_t2 }],
    );
    let id = t.id;
    match s.vote(t).await.unwrap() {
        VoteOutcome::Voted { mut undone } => {
            undone.sort();
            assert_eq!(undone, vec![a, b]);
        }
        other => panic!("{other:?}"),
    }
    let t4 = s.finish(id).await.unwrap();
    assert_eq!(
        s.load_before(a, Tid::MAX).await.unwrap().unwrap().data,
        record("a1")
    );
    let filtered = s
        .undo_log(
            0,
            10,
            Some(Arc::new(move |e: &zeoraid_storage::UndoEntry| e.tid != t4)),
        )
        .await
        .unwrap();
    assert_eq!(
        filtered.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![t3, t2, t1]
    );
    // An invalid undo id is an UndoError.
    let t = txn(
        TransactionMeta::default(),
        vec![Operation::Undo {
            undo_id: Bytes::from_static(b"AAAAAAAAAAE="),
        }],
    );
    assert!(matches!(s.vote(t).await, Err(StorageError::Undo { .. })));

    // Pack to now: old revisions go.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    s.pack(now + 1.0).await.unwrap();
    assert!(matches!(
        s.load_serial(a, t2).await,
        Err(StorageError::PosKey { .. })
    ));
    assert_eq!(s.load_before(a, Tid::MAX).await.unwrap().unwrap().start, t4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_both_ways() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::raid_backend());
    let cache = tempfile::tempdir().unwrap();
    let s = ZeoClient::connect(server.options().blob_dir(cache.path(), false))
        .await
        .unwrap();
    assert!(s.info().await.unwrap().supports_blobs);
    let files = tempfile::tempdir().unwrap();
    // Larger than several chunks, not a multiple of the chunk size.
    let big: Vec<u8> = (0..(3 * zeoraid_zeo_client::BLOB_CHUNK_SIZE + 1234))
        .map(|i| (i % 251) as u8)
        .collect();
    let f = files.path().join("big");
    std::fs::write(&f, &big).unwrap();
    let oid = s.new_oids(1).await.unwrap()[0];
    let blob_record = Bytes::from_static(b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.");
    let t1 = commit(
        &s,
        vec![Operation::StoreBlob {
            oid,
            serial: Tid::ZERO,
            data: blob_record.clone(),
            blob: f.clone(),
        }],
    )
    .await;
    assert!(f.exists(), "the caller's file must stay");
    let path = s.load_blob(oid, t1).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), big);
    // Cached the second time.
    assert_eq!(s.load_blob(oid, t1).await.unwrap(), path);
    // Missing blob: PosKey.
    assert!(matches!(
        s.load_blob(oid, Tid::from_u64(t1.as_u64() + 1)).await,
        Err(StorageError::PosKey { .. })
    ));
    // has_blob in the iterator (ZODB's is_blob_record rule).
    let txns: Vec<_> = s
        .iterator(None, None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(txns[0].records[0].has_blob);

    // A second client sharing the server's blob directory reads it directly and
    // stores with storeBlobShared.
    let shared = ZeoClient::connect(server.options().blob_dir(server.blob_dir("1"), true))
        .await
        .unwrap();
    let direct = shared.load_blob(oid, t1).await.unwrap();
    assert!(direct.starts_with(server.blob_dir("1")));
    assert_eq!(std::fs::read(&direct).unwrap(), big);
    let f2 = files.path().join("small");
    std::fs::write(&f2, b"small blob").unwrap();
    let t2 = commit(
        &shared,
        vec![Operation::StoreBlob {
            oid,
            serial: t1,
            data: blob_record,
            blob: f2.clone(),
        }],
    )
    .await;
    assert!(f2.exists());
    assert_eq!(
        std::fs::read(s.load_blob(oid, t2).await.unwrap()).unwrap(),
        b"small blob"
    );

    // Undo brings the old blob back under the undo's tid.
    let log = s.undo_log(0, 1, None).await.unwrap();
    assert_eq!(log[0].tid, t2);
    let t = txn(
        TransactionMeta::default(),
        vec![Operation::Undo {
            undo_id: log[0].id.clone(),
        }],
    );
    let id = t.id;
    s.vote(t).await.unwrap();
    let t3 = s.finish(id).await.unwrap();
    let blob = s.load_blob(oid, t3).await;
    let blob = blob.unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(std::fs::read(blob).unwrap(), big);

    // A restore with a blob (sent as storea + blob: ZEO has no restoreBlob).
    let other = s.new_oids(1).await.unwrap()[0];
    let explicit = Tid::from_unix_time(t3.unix_time() + 10.0);
    let t = txn_at(
        explicit,
        meta("restorer", "blob"),
        vec![Operation::Restore {
            oid: other,
            data: Some(Bytes::from_static(
                b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.",
            )),
            prev_txn: None,
            blob: Some(f2.clone()),
        }],
    );
    let id = t.id;
    s.vote(t).await.unwrap();
    assert_eq!(s.finish(id).await.unwrap(), explicit);
    assert_eq!(
        std::fs::read(s.load_blob(other, explicit).await.unwrap()).unwrap(),
        b"small blob"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_loads_and_invalidations() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::default());
    let a = Arc::new(server.client().await);
    let b = server.client().await;
    let mut inval = b.invalidations().unwrap();
    let oids = a.new_oids(50).await.unwrap();
    let ops = oids
        .iter()
        .map(|&o| store(o, Tid::ZERO, record(&format!("obj {}", o.as_u64()))))
        .collect();
    let t1 = commit(&a, ops).await;

    // 500 loads in flight at once on one connection.
    let loads = (0..500).map(|i| {
        let a = a.clone();
        let oid = oids[i % oids.len()];
        async move { (oid, a.load_before(oid, Tid::MAX).await) }
    });
    for (oid, result) in futures::future::join_all(loads).await {
        let rec = result.unwrap().unwrap();
        assert_eq!(rec.data, record(&format!("obj {}", oid.as_u64())));
        assert_eq!(rec.start, t1);
    }

    // The other client hears of the commit, with every oid.
    let inv = tokio::time::timeout(Duration::from_secs(5), inval.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inv.tid, t1);
    let mut got = inv.oids.clone();
    got.sort();
    assert_eq!(got, oids);
    // The committer hears nothing of its own commit.
    let mut own = a.invalidations().unwrap();
    let t2 = commit(&b, vec![store(oids[0], t1, record("changed"))]).await;
    let inv = tokio::time::timeout(Duration::from_secs(5), own.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((inv.tid, inv.oids), (t2, vec![oids[0]]));
    assert!(inval.try_recv().is_err());
}

/// `info()` answers from the facts the server keeps the client told of (its
/// `info` callback before every `tpc_finish` reply), without a round trip — a
/// ZEO server asks for them after every commit — and asks again only after a
/// commit by someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_is_cached_and_kept_current() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::default());
    let a = server.client().await;
    let b = server.client().await;
    let mut heard = a.invalidations().unwrap();
    assert_eq!(a.info().await.unwrap().length, 0);
    let oids = a.new_oids(2).await.unwrap();
    commit(&a, vec![store(oids[0], Tid::ZERO, record("a"))]).await;
    // Current after our own commit, and answered while the server hangs.
    server.pause();
    let info = tokio::time::timeout(Duration::from_secs(1), a.info()).await;
    server.resume();
    let info = info.expect("info() must not wait for the server").unwrap();
    assert_eq!(info.length, 1);
    assert!(info.size > 0);
    assert!(info.supports_undo);
    // Someone else's commit: the next info() asks the server.
    commit(&b, vec![store(oids[1], Tid::ZERO, record("b"))]).await;
    tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .unwrap()
        .unwrap();
    let after = a.info().await.unwrap();
    assert_eq!(after.length, 2);
    assert!(after.size > info.size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_server_over_a_unix_socket() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig {
        msgpack: true,
        client_conflict_resolution: true,
        unix_socket: true,
        ..Default::default()
    });
    let s = server.client().await;
    assert_eq!(s.encoding(), Some(Encoding::Msgpack));
    let oids = s.new_oids(2).await.unwrap();
    let a = oids[0];
    let t = txn(
        meta("m", "msgpack"),
        vec![store(a, Tid::ZERO, record("a1"))],
    );
    let id = t.id;
    s.vote(t).await.unwrap();
    let t1 = s.finish(id).await.unwrap();
    let t2 = commit(&s, vec![store(a, t1, record("a2"))]).await;
    assert_eq!(
        s.load_before(a, t2).await.unwrap().unwrap().data,
        record("a1")
    );
    let hist = s.history(a, 5).await.unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[1].meta, meta("m", "msgpack"));
    let t = txn(
        TransactionMeta::default(),
        vec![store(a, t1, record("stale"))],
    );
    assert!(matches!(
        s.vote(t).await.unwrap(),
        VoteOutcome::Conflicts(c) if c.len() == 1 && c[0].committed == t2
    ));
    assert!(matches!(
        s.load_before(oids[1], Tid::MAX).await,
        Err(StorageError::PosKey { .. })
    ));
    let txns: Vec<_> = s
        .iterator(None, None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(txns.len(), 2);
    assert_eq!(txns[0].meta, meta("m", "msgpack"));
    assert_eq!(s.undo_log(0, 5, None).await.unwrap().len(), 2);
}

/// `finish_deferred` returns once `tpc_finish` is queued (here: with the server
/// stopped), and the next transaction's messages follow it on the same
/// connection; its durability wait is the `tpc_finish` reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_finish_is_followed_by_the_next_vote_on_the_same_connection() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::default());
    let s = server.client().await;
    let oids = s.new_oids(2).await.unwrap();
    let t1 = Tid::now_later_than(s.last_transaction().await.unwrap());
    let first = txn_at(
        t1,
        meta("d", "first"),
        vec![store(oids[0], Tid::ZERO, record("one"))],
    );
    let first_id = first.id;
    assert!(matches!(
        s.vote(first).await.unwrap(),
        VoteOutcome::Voted { .. }
    ));
    server.pause();
    let finished = tokio::time::timeout(Duration::from_secs(1), s.finish_deferred(first_id))
        .await
        .expect("the commit point does not wait for the server")
        .unwrap();
    assert_eq!(finished.tid, t1);
    let mut durable = finished.durable;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut durable)
            .await
            .is_err(),
        "durable only once the server answered tpc_finish"
    );
    server.resume();
    // The next transaction votes on the same connection, behind tpc_finish.
    let t2 = Tid::now_later_than(t1);
    let second = txn_at(
        t2,
        meta("d", "second"),
        vec![store(oids[1], Tid::ZERO, record("two"))],
    );
    let second_id = second.id;
    assert!(matches!(
        s.vote(second).await.unwrap(),
        VoteOutcome::Voted { .. }
    ));
    durable.await.unwrap();
    assert_eq!(s.finish(second_id).await.unwrap(), t2);
    let tids: Vec<Tid> = s
        .iterator(None, None)
        .await
        .unwrap()
        .map_ok(|t| t.tid)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tids, vec![t1, t2]);
    // Without an explicit tid the tid is known only from the reply: a full finish.
    let third = txn(
        TransactionMeta::default(),
        vec![store(oids[0], t1, record("three"))],
    );
    let third_id = third.id;
    s.vote(third).await.unwrap();
    let finished = s.finish_deferred(third_id).await.unwrap();
    assert!(finished.tid > t2);
    finished.durable.await.unwrap();
    assert_eq!(s.last_transaction().await.unwrap(), finished.tid);
}

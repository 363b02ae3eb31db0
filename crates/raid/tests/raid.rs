//! The RAID rules (docs/raid.md), pinned down with fault-injecting backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use zeoraid_memstorage::MemStorage;
use zeoraid_raid::{
    BackendState, FailMode, RaidError, RaidOptions, RaidStatus, RaidStorage, ReadPolicy,
};
use zeoraid_storage::{
    Finished, Invalidation, Oid, Operation, Storage, StorageError, Tid, VoteOutcome,
};

async fn assert_identical(backends: &[&Arc<Faulty>]) {
    let reference = transactions(&*backends[0].inner).await;
    for b in &backends[1..] {
        assert_eq!(
            transactions(&*b.inner).await,
            reference,
            "backends hold different transactions"
        );
    }
}

#[tokio::test]
async fn every_backend_holds_identical_tids_and_oids() {
    let b = backends(3);
    let raid = open(&b, RaidOptions::default()).await;
    let mut tids = Vec::new();
    let mut oids = Vec::new();
    for i in 0..5 {
        let batch = raid.new_oids(3).await.unwrap();
        let ops = batch
            .iter()
            .map(|&o| store(o, Tid::ZERO, &format!("v{i}")))
            .collect();
        tids.push(commit(&raid, ops).await.unwrap());
        oids.extend(batch);
    }
    let mut sorted = oids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), oids.len(), "oids never repeat");
    assert_identical(&[&b[0], &b[1], &b[2]]).await;
    let on_backend: Vec<Tid> = transactions(&*b[0].inner)
        .await
        .iter()
        .map(|t| t.tid)
        .collect();
    assert_eq!(on_backend, tids, "backends hold the tids the RAID returned");
    for backend in &b {
        assert_eq!(backend.inner.last_transaction().await.unwrap(), tids[4]);
        // Every backend's own counter is past every oid the RAID handed out.
        let next = backend.inner.new_oids(1).await.unwrap()[0];
        assert!(next > *oids.iter().max().unwrap());
    }
    assert_eq!(raid.last_transaction().await.unwrap(), tids[4]);
    assert_eq!(raid.status(), RaidStatus::Optimal);
    // Memory backends report no foreign commits, so neither does the RAID.
    assert!(raid.invalidations().is_none());
}

#[tokio::test]
async fn a_backend_failing_at_vote_is_degraded_and_the_commit_goes_on() {
    let b = backends(3);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[1].next(Op::Vote, Action::Fail);
    let t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    let reason = degraded_reason(&raid, "b1");
    assert!(reason.starts_with("vote failed: I/O error"), "{reason}");
    assert_eq!(raid.status(), RaidStatus::Degraded);
    for i in [0, 2] {
        assert_eq!(
            current(&*b[i].inner, oid).await.unwrap(),
            (Bytes::from("b"), t2)
        );
    }
    assert_eq!(current(&*b[1].inner, oid).await.unwrap().1, t1);
    // Later commits leave the degraded backend alone (its vote would fail again).
    b[1].always(Op::Vote, Action::Fail);
    let t3 = commit(&raid, vec![store(oid, t2, "c")]).await.unwrap();
    assert_eq!(current(&*b[2].inner, oid).await.unwrap().1, t3);
    assert_identical(&[&b[0], &b[2]]).await;
}

#[tokio::test]
async fn a_backend_failing_at_finish_is_degraded_and_the_commit_acknowledged() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].next(Op::Finish, Action::Fail);
    let t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    assert!(degraded_reason(&raid, "b0").starts_with("finish failed: I/O error"));
    assert_eq!(
        current(&*b[1].inner, oid).await.unwrap(),
        (Bytes::from("b"), t2)
    );
    // The RAID still reads the committed data (from the survivor).
    assert_eq!(current(&raid, oid).await.unwrap(), (Bytes::from("b"), t2));
}

#[tokio::test]
async fn a_backend_returning_another_tid_at_finish_is_degraded() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[1].next(Op::Finish, Action::WrongTid);
    let t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    let reason = degraded_reason(&raid, "b1");
    assert!(reason.starts_with("finish returned tid"), "{reason}");
    assert_eq!(current(&*b[0].inner, oid).await.unwrap().1, t2);
}

#[tokio::test]
async fn a_backend_timing_out_at_vote_is_degraded() {
    let b = backends(2);
    let mut specs = specs(&b, None);
    specs[1].2 = Some(Duration::from_millis(200));
    let raid = RaidStorage::open(specs, RaidOptions::default())
        .await
        .unwrap();
    let (oid, t1) = commit_new(&raid, "a").await;
    b[1].next(Op::Vote, Action::Hang);
    let started = Instant::now();
    let t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(degraded_reason(&raid, "b1"), "vote timed out after 200ms");
    assert_eq!(current(&*b[0].inner, oid).await.unwrap().1, t2);
    let details = raid.details();
    assert_eq!(details[1].counters.errors, 1);
    assert_eq!(details[0].counters.commits, 2);
    assert_eq!(details[1].counters.commits, 1);
    assert_eq!(details[0].last_tid, t2);
}

#[tokio::test]
async fn a_backend_timing_out_at_finish_is_degraded() {
    let b = backends(2);
    let mut specs = specs(&b, None);
    specs[0].2 = Some(Duration::from_millis(200));
    let raid = RaidStorage::open(specs, RaidOptions::default())
        .await
        .unwrap();
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].next(Op::Finish, Action::Hang);
    let t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    assert_eq!(degraded_reason(&raid, "b0"), "finish timed out after 200ms");
    assert_eq!(current(&*b[1].inner, oid).await.unwrap().1, t2);
}

#[tokio::test]
async fn agreeing_conflicts_are_the_clients_answer() {
    let b = backends(3);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    let _t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    // A store based on the old serial conflicts on every backend alike.
    let t = txn(vec![store(oid, t1, "stale")]);
    match raid.vote(t).await.unwrap() {
        VoteOutcome::Conflicts(c) => {
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].oid, oid);
            assert_eq!(c[0].read, t1);
        }
        other => panic!("expected conflicts, got {other:?}"),
    }
    assert_eq!(raid.status(), RaidStatus::Optimal);
    // Nothing is held: the next commit goes through.
    let (_, _) = commit_new(&raid, "next").await;
}

#[tokio::test]
async fn agreeing_answer_errors_are_the_clients_answer() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    commit_new(&raid, "a").await;
    let t = txn(vec![Operation::Undo {
        undo_id: Bytes::from_static(b"not an undo id"),
    }]);
    match raid.vote(t).await {
        Err(StorageError::Undo { .. }) => {}
        other => panic!("expected an undo error, got {other:?}"),
    }
    // A load of an oid that never existed: POSKeyError, as is.
    match raid.load_before(Oid::from_u64(999), Tid::MAX).await {
        Err(StorageError::PosKey { .. }) => {}
        other => panic!("expected POSKeyError, got {other:?}"),
    }
    assert_eq!(raid.status(), RaidStatus::Optimal);
    commit_new(&raid, "b").await;
}

#[tokio::test]
async fn a_disagreeing_minority_is_degraded() {
    let b = backends(3);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].next(Op::Vote, Action::Conflict);
    let t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    let reason = degraded_reason(&raid, "b0");
    assert!(
        reason.starts_with("disagreed on vote: answered conflicts"),
        "{reason}"
    );
    assert_optimal(&raid, "b1");
    assert_optimal(&raid, "b2");
    assert_identical(&[&b[1], &b[2]]).await;
    assert_eq!(current(&*b[2].inner, oid).await.unwrap().1, t2);

    // And a minority that votes ok while the majority answers an error.
    let b = backends(3);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].next(Op::Vote, Action::PosKey);
    b[1].next(Op::Vote, Action::PosKey);
    match raid.vote(txn(vec![store(oid, t1, "b")])).await {
        Err(StorageError::PosKey { oid: got }) => assert_eq!(got, oid),
        other => panic!("expected the majority's POSKeyError, got {other:?}"),
    }
    assert!(degraded_reason(&raid, "b2").starts_with("disagreed on vote: answered ok"));
    // b2 voted ok and was aborted: it is not held (a direct commit goes through).
    tokio::time::timeout(
        Duration::from_secs(5),
        commit(&*b[2].inner, vec![store(oid, t1, "direct")]),
    )
    .await
    .expect("b2 was aborted")
    .unwrap();
}

#[tokio::test]
async fn without_a_majority_the_first_backend_in_configuration_order_wins() {
    // b1 disagrees with b0: b0's vote (ok) wins, b1 is degraded, the commit succeeds.
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[1].next(Op::Vote, Action::Conflict);
    let t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    assert!(degraded_reason(&raid, "b1").starts_with("disagreed on vote"));
    assert_optimal(&raid, "b0");
    assert_eq!(current(&*b[0].inner, oid).await.unwrap().1, t2);

    // b0 disagrees with b1: b0's conflict wins and goes to the client, b1 (which
    // voted ok) is degraded and aborted.
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].next(Op::Vote, Action::Conflict);
    match raid.vote(txn(vec![store(oid, t1, "b")])).await.unwrap() {
        VoteOutcome::Conflicts(c) => assert_eq!(c[0].oid, oid),
        other => panic!("expected b0's conflict, got {other:?}"),
    }
    assert!(degraded_reason(&raid, "b1").starts_with("disagreed on vote: answered ok"));
    assert_optimal(&raid, "b0");
    tokio::time::timeout(
        Duration::from_secs(5),
        commit(&*b[1].inner, vec![store(oid, t1, "direct")]),
    )
    .await
    .expect("b1 was aborted")
    .unwrap();
    // The RAID goes on with b0.
    let t2 = commit(&raid, vec![store(oid, t1, "c")]).await.unwrap();
    assert_eq!(current(&*b[0].inner, oid).await.unwrap().1, t2);
}

#[tokio::test]
async fn all_backends_failing_fails_the_raid_in_fail_mode_close() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].next(Op::Vote, Action::Fail);
    b[1].next(Op::Vote, Action::Fail);
    match commit(&raid, vec![store(oid, t1, "b")]).await {
        Err(StorageError::Disconnected(m)) => assert!(m.contains("no optimal backend left"), "{m}"),
        other => panic!("expected a clear error, got {other:?}"),
    }
    assert_eq!(raid.status(), RaidStatus::Failed);
    for backend in &b {
        assert_eq!(
            current(&*backend.inner, oid).await.unwrap().1,
            t1,
            "nothing committed"
        );
    }
    assert!(matches!(
        raid.load_before(oid, Tid::MAX).await,
        Err(StorageError::Disconnected(_))
    ));
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::Disconnected(_))
    ));
    assert!(matches!(
        raid.last_transaction().await,
        Err(StorageError::Disconnected(_))
    ));
}

#[tokio::test]
async fn all_backends_failing_at_finish_acknowledges_nothing() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].next(Op::Finish, Action::Fail);
    b[1].next(Op::Finish, Action::Fail);
    let t = txn(vec![store(oid, t1, "b")]);
    let id = t.id;
    assert!(matches!(raid.vote(t).await, Ok(VoteOutcome::Voted { .. })));
    match raid.finish(id).await {
        Err(StorageError::Disconnected(m)) => assert!(m.contains("no optimal backend left"), "{m}"),
        other => panic!("expected a clear error, got {other:?}"),
    }
    assert_eq!(raid.status(), RaidStatus::Failed);
}

#[tokio::test]
async fn fail_mode_read_only_keeps_reading_and_refuses_writes() {
    let b = backends(2);
    let options = RaidOptions {
        fail_mode: FailMode::ReadOnly,
        ..RaidOptions::default()
    };
    let raid = open(&b, options).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].next(Op::Vote, Action::Fail);
    b[1].next(Op::Vote, Action::Fail);
    assert!(commit(&raid, vec![store(oid, t1, "b")]).await.is_err());
    assert_eq!(raid.status(), RaidStatus::Failed);
    assert_eq!(current(&raid, oid).await.unwrap(), (Bytes::from("a"), t1));
    assert_eq!(raid.last_transaction().await.unwrap(), t1);
    assert!(matches!(
        raid.vote(txn(vec![store(oid, t1, "c")])).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(raid.info().await.unwrap().read_only);
}

#[tokio::test]
async fn read_only_option_refuses_writes() {
    let b = backends(2);
    let raid = open(
        &b,
        RaidOptions {
            read_only: true,
            ..RaidOptions::default()
        },
    )
    .await;
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(
        raid.vote(txn(vec![store(Oid::from_u64(1), Tid::ZERO, "x")]))
            .await,
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(raid.pack(0.0).await, Err(StorageError::ReadOnly)));
    assert_eq!(raid.status(), RaidStatus::Optimal);
}

#[tokio::test]
async fn reads_fail_over_transparently_and_degrade_the_failing_backend() {
    for policy in [ReadPolicy::RoundRobin, ReadPolicy::LeastOutstanding] {
        let b = backends(2);
        let raid = open(
            &b,
            RaidOptions {
                read_policy: policy,
                ..RaidOptions::default()
            },
        )
        .await;
        let (oid, t1) = commit_new(&raid, "a").await;
        b[0].always(Op::Read, Action::Fail);
        for _ in 0..4 {
            assert_eq!(current(&raid, oid).await.unwrap(), (Bytes::from("a"), t1));
        }
        let reason = degraded_reason(&raid, "b0");
        assert!(reason.starts_with("load_before failed"), "{reason}");
        let details = raid.details();
        assert_eq!(
            details[0].counters.errors, 1,
            "{policy:?}: tried once, then left alone"
        );
        assert_eq!(details[1].counters.reads, 4);
    }
}

#[tokio::test]
async fn reads_are_balanced_round_robin() {
    let b = backends(3);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, _) = commit_new(&raid, "a").await;
    for _ in 0..9 {
        current(&raid, oid).await.unwrap();
    }
    for d in raid.details() {
        assert_eq!(d.counters.reads, 3, "{}", d.name);
    }
}

#[tokio::test]
async fn info_after_commits_is_not_counted_as_a_read() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, mut tid) = commit_new(&raid, "a").await;
    for i in 0..4 {
        tid = commit(&raid, vec![store(oid, tid, &format!("v{i}"))])
            .await
            .unwrap();
        // What the ZEO server asks after every commit.
        assert_eq!(raid.info().await.unwrap().length, 1);
    }
    let reads = |raid: &RaidStorage| -> Vec<u64> {
        raid.details().iter().map(|d| d.counters.reads).collect()
    };
    assert_eq!(reads(&raid), vec![0, 0], "info is not a read");
    current(&raid, oid).await.unwrap();
    assert_eq!(reads(&raid).iter().sum::<u64>(), 1, "a load is one");
}

#[tokio::test]
async fn a_hung_read_times_out_and_fails_over() {
    let b = backends(2);
    let raid = RaidStorage::open(
        specs(&b, Some(Duration::from_millis(150))),
        RaidOptions::default(),
    )
    .await
    .unwrap();
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].always(Op::Read, Action::Hang);
    b[1].always(Op::Read, Action::Hang);
    b[1].heal();
    for _ in 0..2 {
        assert_eq!(current(&raid, oid).await.unwrap().1, t1);
    }
    assert_eq!(
        degraded_reason(&raid, "b0"),
        "load_before timed out after 150ms"
    );
}

#[tokio::test]
async fn the_iterator_fails_over_mid_stream() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    for i in 0..6 {
        commit_new(&raid, &format!("v{i}")).await;
    }
    let expected = transactions(&*b[1].inner).await;
    // The first read goes to b0 (round-robin starts there); its stream breaks
    // after two transactions and the rest comes from b1.
    b[0].next(Op::Read, Action::StreamFailAfter(2));
    let got = transactions(&raid).await;
    assert_eq!(got, expected);
    assert!(degraded_reason(&raid, "b0").starts_with("iterator failed"));
    assert_optimal(&raid, "b1");
}

#[tokio::test]
async fn startup_derives_states_from_the_backends() {
    let b = backends(3);
    {
        let raid = open(&b, RaidOptions::default()).await;
        commit_new(&raid, "a").await;
    }
    // b2 gets a commit the others miss.
    let oid = b[2].inner.new_oids(1).await.unwrap()[0];
    commit(&*b[2].inner, vec![store(oid, Tid::ZERO, "only on b2")])
        .await
        .unwrap();
    let raid = open(&b, RaidOptions::default()).await;
    assert_eq!(degraded_reason(&raid, "b0"), "missing transactions");
    assert_eq!(degraded_reason(&raid, "b1"), "missing transactions");
    assert_optimal(&raid, "b2");
    assert_eq!(raid.status(), RaidStatus::Degraded);
    assert_eq!(
        raid.last_transaction().await.unwrap(),
        b[2].inner.last_transaction().await.unwrap()
    );
    // Commits go to b2 only, with a tid later than its last.
    let (_, t) = commit_new(&raid, "b").await;
    assert_eq!(b[2].inner.last_transaction().await.unwrap(), t);
    assert!(b[0].inner.last_transaction().await.unwrap() < t);
}

#[tokio::test]
async fn a_hung_backend_does_not_block_startup_beyond_its_timeout() {
    let b = backends(3);
    b[1].next(Op::LastTransaction, Action::Hang);
    b[2].next(Op::LastTransaction, Action::Fail);
    let started = Instant::now();
    let raid = RaidStorage::open(
        specs(&b, Some(Duration::from_millis(300))),
        RaidOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_optimal(&raid, "b0");
    assert_eq!(
        degraded_reason(&raid, "b1"),
        "unreachable at startup: last_transaction timed out after 300ms"
    );
    assert!(
        degraded_reason(&raid, "b2").starts_with("unreachable at startup: last_transaction failed")
    );
    // Until they answer, they might hold newer transactions: writes are refused.
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::ReadOnly)
    ));
    // They answer the next probe (the faults were one-off), at the same tid.
    wait_until_optimal(&raid).await;
    commit_new(&raid, "a").await;
}

async fn wait_until_optimal(raid: &RaidStorage) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while raid.status() != RaidStatus::Optimal {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the RAID becomes optimal");
}

#[tokio::test]
async fn a_restart_with_only_behind_backends_reachable_neither_commits_nor_reuses_oids() {
    // b0 went on alone (b1 was degraded) and handed out oids it never stored.
    let b = backends(2);
    let oid = b[0].inner.new_oids(1).await.unwrap()[0];
    let t1 = commit(&*b[0].inner, vec![store(oid, Tid::ZERO, "only on b0")])
        .await
        .unwrap();
    let handed_out = b[0].inner.new_oids(5).await.unwrap();
    // The RAID restarts while b0 is unreachable: b1, behind, is the newest it sees.
    b[0].always(Op::LastTransaction, Action::Fail);
    let raid = open(&b, RaidOptions::default()).await;
    assert_optimal(&raid, "b1");
    assert!(degraded_reason(&raid, "b0").starts_with("unreachable at startup"));
    // No oid from b1 (which would hand out b0's again), no commit on top of
    // b1's stale history: refused as read-only. Reads go on from b1.
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(
        commit(&raid, vec![store(Oid::from_u64(99), Tid::ZERO, "fork")]).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(raid.pack(0.0).await, Err(StorageError::ReadOnly)));
    assert!(matches!(
        raid.load_before(oid, Tid::MAX).await,
        Err(StorageError::PosKey { .. }) | Ok(None)
    ));
    assert_eq!(b[1].inner.last_transaction().await.unwrap(), Tid::ZERO);
    // b0 comes back: it is the newest, so it becomes the optimal one and b1 is
    // behind.
    b[0].heal();
    tokio::time::timeout(Duration::from_secs(10), async {
        while raid.backend_state("b0") != Some(BackendState::Optimal) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("b0 answers");
    assert_eq!(degraded_reason(&raid, "b1"), "missing transactions");
    assert_eq!(raid.last_transaction().await.unwrap(), t1);
    let fresh = raid.new_oids(3).await.unwrap();
    let highest = handed_out.iter().max().unwrap();
    assert!(
        fresh.iter().all(|o| o > highest),
        "{fresh:?} vs {handed_out:?}"
    );
    let t2 = commit(&raid, vec![store(oid, t1, "after")]).await.unwrap();
    assert_eq!(b[0].inner.last_transaction().await.unwrap(), t2);

    // Or the operator states that the missing backend is gone for good.
    let b = backends(2);
    commit(
        &*b[0].inner,
        vec![store(Oid::from_u64(1), Tid::ZERO, "lost")],
    )
    .await
    .unwrap();
    b[0].always(Op::LastTransaction, Action::Fail);
    let raid = open(&b, RaidOptions::default()).await;
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::ReadOnly)
    ));
    raid.disable("b0").await.unwrap();
    commit_new(&raid, "on b1").await;
    assert_eq!(
        degraded_reason(&raid, "b0").split(':').next(),
        Some("unreachable at startup")
    );
}

/// With a `state_file`, the RAID records which backends hold every acknowledged
/// commit; a restart with a backend unreachable then takes writes at once when a
/// reachable one was recorded, and waits (as without a record) when none was.
#[tokio::test]
async fn a_recorded_holder_lets_a_restart_write_without_the_unreachable_backends() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("raid.state");
    let options = || RaidOptions {
        state_file: Some(state_file.clone()),
        ..RaidOptions::default()
    };
    let b = backends(2);
    let raid = open(&b, options()).await;
    let (_, t1) = commit_new(&raid, "on both").await;
    drop(raid);
    // Restart with b1 unreachable: b0 was recorded optimal, so writes go on.
    b[1].always(Op::LastTransaction, Action::Fail);
    let raid = open(&b, options()).await;
    assert_optimal(&raid, "b0");
    assert!(degraded_reason(&raid, "b1").starts_with("unreachable at startup"));
    let (_, t2) = commit_new(&raid, "b0 alone").await;
    assert!(t2 > t1);
    drop(raid);
    // Now b0 is unreachable and b1 (behind, not recorded since it was degraded)
    // is the only one reachable: writes wait, the record is kept as it was.
    b[1].heal();
    b[0].always(Op::LastTransaction, Action::Fail);
    let raid = open(&b, options()).await;
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::ReadOnly)
    ));
    let recorded = std::fs::read_to_string(&state_file).unwrap();
    assert!(recorded.lines().any(|l| l == "b0"), "{recorded}");
    assert!(!recorded.lines().any(|l| l == "b1"), "{recorded}");
    // b0 answers: it is the newest; the record follows again.
    b[0].heal();
    tokio::time::timeout(Duration::from_secs(10), async {
        while raid.backend_state("b0") != Some(BackendState::Optimal) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("b0 answers");
    assert_eq!(raid.last_transaction().await.unwrap(), t2);
    commit_new(&raid, "after").await;
    drop(raid);

    // A backend degraded when the RAID stopped stays degraded after a restart,
    // even when its last tid looks current.
    std::fs::remove_file(&state_file).unwrap();
    let b = backends(2);
    let raid = open(&b, options()).await;
    assert_optimal(&raid, "b1");
    commit_new(&raid, "x").await;
    raid.disable("b1").await.unwrap();
    drop(raid);
    let raid = open(&b, options()).await;
    assert_optimal(&raid, "b0");
    assert_eq!(
        degraded_reason(&raid, "b1"),
        "not optimal when the RAID stopped"
    );
}

/// A backend reporting as its last a transaction it does not hold (cut off
/// between vote and finish) is degraded at startup, even at the newest tid, and
/// the RAID's next tid is later than the cut-off one.
#[tokio::test]
async fn a_backend_reporting_a_cut_off_transaction_starts_degraded() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (_, t1) = commit_new(&raid, "on both").await;
    drop(raid);
    let phantom = Tid::from_u64(t1.as_u64() + 1000);
    b[1].always(Op::LastTransaction, Action::ReportLast(phantom));
    let raid = open(&b, RaidOptions::default()).await;
    assert_optimal(&raid, "b0");
    assert!(
        degraded_reason(&raid, "b1").contains("cut off between vote and finish"),
        "{}",
        degraded_reason(&raid, "b1")
    );
    let (_, t2) = commit_new(&raid, "after").await;
    assert!(t2 > phantom);
}

#[tokio::test]
async fn all_backends_unreachable_at_startup_opens_failed() {
    let b = backends(2);
    b[0].next(Op::LastTransaction, Action::Fail);
    b[1].next(Op::LastTransaction, Action::Fail);
    let raid = open(&b, RaidOptions::default()).await;
    assert_eq!(raid.status(), RaidStatus::Failed);
    assert!(raid.new_oids(1).await.is_err());
    assert!(raid.load_before(Oid::from_u64(0), Tid::MAX).await.is_err());
}

#[tokio::test]
async fn open_refuses_bad_configurations() {
    assert!(matches!(
        RaidStorage::open(Vec::new(), RaidOptions::default()).await,
        Err(RaidError::NoBackends)
    ));
    let b = backends(2);
    let mut specs = specs(&b, None);
    specs[1].0 = "b0".into();
    assert!(matches!(
        RaidStorage::open(specs, RaidOptions::default()).await,
        Err(RaidError::DuplicateName(_))
    ));
}

#[tokio::test]
async fn disable_is_refused_for_the_last_optimal_backend() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    raid.disable("b0").await.unwrap();
    assert_eq!(degraded_reason(&raid, "b0"), "disabled by operator");
    assert!(matches!(
        raid.disable("b1").await,
        Err(RaidError::LastOptimal(_))
    ));
    assert_optimal(&raid, "b1");
    assert!(matches!(
        raid.disable("nope").await,
        Err(RaidError::UnknownBackend(_))
    ));
    // Writes and reads go on with b1.
    let (oid, t) = commit_new(&raid, "a").await;
    assert_eq!(current(&raid, oid).await.unwrap().1, t);
    assert!(current(&*b[0].inner, oid).await.is_err());
}

#[tokio::test]
async fn disable_waits_for_a_commit_in_progress() {
    let b = backends(2);
    let raid = Arc::new(open(&b, RaidOptions::default()).await);
    let oid = raid.new_oids(1).await.unwrap()[0];
    let t = txn(vec![store(oid, Tid::ZERO, "a")]);
    let id = t.id;
    raid.vote(t).await.unwrap();
    let disabling = {
        let raid = Arc::clone(&raid);
        tokio::spawn(async move { raid.disable("b1").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!disabling.is_finished(), "disable waits for finish");
    let tid = raid.finish(id).await.unwrap();
    disabling.await.unwrap().unwrap();
    assert_eq!(
        current(&*b[1].inner, oid).await.unwrap().1,
        tid,
        "b1 got the commit"
    );
}

#[tokio::test]
async fn oids_are_never_reused_when_a_backend_is_behind() {
    let b = backends(2);
    // b0's counter is far ahead (e.g. oids handed out before b1 was added).
    let ahead = b[0].inner.new_oids(50).await.unwrap();
    let raid = open(&b, RaidOptions::default()).await;
    let first = raid.new_oids(5).await.unwrap();
    assert!(first[0] > *ahead.last().unwrap(), "{first:?}");
    // b1 caught up: its own next oid is past every oid handed out.
    assert!(b[1].inner.new_oids(1).await.unwrap()[0] > *first.last().unwrap());
    // Without b0, the RAID still never hands out an oid twice.
    raid.disable("b0").await.unwrap();
    let second = raid.new_oids(5).await.unwrap();
    assert!(
        second[0] > *first.last().unwrap(),
        "{second:?} after {first:?}"
    );
    // A new RAID over the same backends (a restart) continues above.
    drop(raid);
    let raid = open(&b[1..], RaidOptions::default()).await;
    let third = raid.new_oids(3).await.unwrap();
    assert!(
        third[0] > *second.last().unwrap(),
        "{third:?} after {second:?}"
    );
}

#[tokio::test]
async fn a_backend_failing_new_oids_is_degraded() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    b[1].next(Op::NewOids, Action::Fail);
    let oids = raid.new_oids(2).await.unwrap();
    assert_eq!(oids.len(), 2);
    assert!(degraded_reason(&raid, "b1").starts_with("new_oids failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_keep_every_backend_identical() {
    let b = backends(3);
    let raid = Arc::new(open(&b, RaidOptions::default()).await);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let raid = Arc::clone(&raid);
        tasks.push(tokio::spawn(async move {
            let oid = raid.new_oids(1).await.unwrap()[0];
            let mut serial = Tid::ZERO;
            for i in 0..10 {
                serial = commit(&*raid, vec![store(oid, serial, &format!("{w}-{i}"))])
                    .await
                    .unwrap();
                let _ = current(&*raid, oid).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(raid.status(), RaidStatus::Optimal);
    let through_raid = transactions(&*raid).await;
    assert_eq!(through_raid.len(), 80);
    assert_identical(&[&b[0], &b[1], &b[2]]).await;
    assert_eq!(transactions(&*b[0].inner).await, through_raid);
}

#[tokio::test]
async fn invalidations_are_merged_once_and_own_commits_not_reannounced() {
    let b: Vec<Arc<Faulty>> = (0..2)
        .map(|_| Faulty::with_invalidations(MemStorage::new()))
        .collect();
    let raid = open(&b, RaidOptions::default()).await;
    let mut rx = raid.invalidations().expect("a stream");
    let (_, own) = commit_new(&raid, "a").await;
    // A backend reporting the RAID's own commit: not re-announced.
    b[0].announce(Invalidation {
        tid: own,
        oids: vec![Oid::from_u64(1)],
    });
    // A commit by another path, reported by both backends: announced once.
    let foreign = Tid::from_u64(own.as_u64() + 1000);
    let inv = Invalidation {
        tid: foreign,
        oids: vec![Oid::from_u64(7)],
    };
    b[0].announce(inv.clone());
    b[1].announce(inv.clone());
    let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, inv);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err(), "announced once");
    // The next RAID tid is later than the foreign one.
    let (_, next) = commit_new(&raid, "b").await;
    assert!(next > foreign);
}

#[tokio::test]
async fn blobs_are_stored_on_every_backend_from_the_callers_file() {
    let dir = tempfile::tempdir().unwrap();
    let b: Vec<Arc<Faulty>> = (0..2)
        .map(|i| {
            Faulty::new(
                MemStorage::new()
                    .with_blob_dir(dir.path().join(format!("blobs{i}")))
                    .unwrap(),
            )
        })
        .collect();
    let raid = open(&b, RaidOptions::default()).await;
    let oid = raid.new_oids(1).await.unwrap()[0];
    let file = dir.path().join("upload.blob");
    std::fs::write(&file, b"blob data").unwrap();
    let tid = commit(
        &raid,
        vec![Operation::StoreBlob {
            oid,
            serial: Tid::ZERO,
            data: Bytes::from_static(b"state"),
            blob: file.clone(),
        }],
    )
    .await
    .unwrap();
    assert!(file.exists(), "the caller's file is left alone");
    for backend in &b {
        let path = backend.inner.load_blob(oid, tid).await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"blob data");
    }
    let path = raid.load_blob(oid, tid).await.unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"blob data");
}

#[tokio::test]
async fn pack_goes_to_every_backend() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    let t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    raid.pack(t2.unix_time() + 0.01).await.unwrap();
    for backend in &b {
        assert!(
            backend.inner.load_serial(oid, t1).await.is_err(),
            "old revision packed away"
        );
    }
    assert_eq!(raid.status(), RaidStatus::Optimal);
}

#[tokio::test]
async fn close_makes_every_call_fail() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    raid.close().await.unwrap();
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::Disconnected(_))
    ));
    assert!(matches!(
        raid.load_before(Oid::from_u64(0), Tid::MAX).await,
        Err(StorageError::Disconnected(_))
    ));
}

#[tokio::test]
async fn a_vote_dropped_midway_leaves_no_backend_held() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    // b1 is slow to vote; the caller gives up (drops the vote) meanwhile.
    b[1].next(Op::Vote, Action::Hang);
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        raid.vote(txn(vec![store(oid, t1, "abandoned")])),
    )
    .await;
    assert!(dropped.is_err(), "the vote was still running");
    // b0 had voted; it was aborted, so the next commit goes through everywhere.
    let t2 = tokio::time::timeout(
        Duration::from_secs(5),
        commit(&raid, vec![store(oid, t1, "b")]),
    )
    .await
    .expect("no backend held")
    .unwrap();
    assert_eq!(raid.status(), RaidStatus::Optimal);
    for backend in &b {
        assert_eq!(
            current(&*backend.inner, oid).await.unwrap(),
            (Bytes::from("b"), t2)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_avoids_a_busy_backend() {
    let b = backends(2);
    let raid = Arc::new(
        open(
            &b,
            RaidOptions {
                read_policy: ReadPolicy::LeastOutstanding,
                ..RaidOptions::default()
            },
        )
        .await,
    );
    let (oid, _) = commit_new(&raid, "a").await;
    // b0 is busy with a slow read (the first read goes to b0: ties go to the first).
    b[0].next(Op::Read, Action::Hang);
    let slow = {
        let raid = Arc::clone(&raid);
        tokio::spawn(async move { raid.load_before(oid, Tid::MAX).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(raid.details()[0].counters.in_flight, 1);
    for _ in 0..5 {
        current(&*raid, oid).await.unwrap();
    }
    assert_eq!(
        raid.details()[1].counters.reads,
        5,
        "every read went to the idle b1"
    );
    slow.abort();
    assert_eq!(raid.status(), RaidStatus::Optimal);
}

#[tokio::test]
async fn a_tid_refused_by_every_backend_catches_the_clock_up() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    // Both backends got a commit far in the future by another path, unannounced.
    let future = Tid::from_u64(t1.as_u64() + (1 << 40));
    for backend in &b {
        let mut t = txn(vec![store(oid, t1, "elsewhere")]);
        t.tid = Some(future);
        let id = t.id;
        backend.inner.vote(t).await.unwrap();
        assert_eq!(backend.inner.finish(id).await.unwrap(), future);
    }
    let ahead = b[0].inner.last_transaction().await.unwrap();
    assert_eq!(ahead, b[1].inner.last_transaction().await.unwrap());
    // The first commit is refused by both (an agreeing answer), the next succeeds.
    let serial = current(&*b[0].inner, oid).await.unwrap().1;
    assert!(commit(&raid, vec![store(oid, serial, "b")]).await.is_err());
    assert_eq!(raid.status(), RaidStatus::Optimal);
    let t = commit(&raid, vec![store(oid, serial, "b")]).await.unwrap();
    assert!(t > ahead);
}

#[tokio::test]
async fn inline_loads_follow_the_read_policy_and_are_counted() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, tid) = commit_new(&raid, "inline").await;
    for _ in 0..4 {
        let rec = raid
            .load_before_inline(oid, Tid::MAX)
            .expect("memory backends answer inline here")
            .unwrap()
            .expect("a current revision");
        assert_eq!((rec.data, rec.start), (Bytes::from("inline"), tid));
    }
    let reads: Vec<u64> = raid.details().iter().map(|d| d.counters.reads).collect();
    assert_eq!(reads, vec![2, 2], "round-robin over both backends");
    // An answer about the data is an answer, not a failure.
    let missing = raid
        .load_before_inline(Oid::from_u64(999), Tid::MAX)
        .unwrap();
    assert!(
        matches!(missing, Err(StorageError::PosKey { .. })),
        "{missing:?}"
    );
    assert_eq!(raid.status(), RaidStatus::Optimal);
}

#[tokio::test]
async fn a_backend_failing_an_inline_load_is_degraded_and_the_read_fails_over() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, _) = commit_new(&raid, "x").await;
    b[0].always(Op::Read, Action::Fail);
    // Round-robin reaches b0 within two loads; its failure sends the caller to the
    // async path, which reads from b1.
    let mut fell_back = 0;
    for _ in 0..2 {
        match raid.load_before_inline(oid, Tid::MAX) {
            Some(answer) => assert_eq!(answer.unwrap().unwrap().data, Bytes::from("x")),
            None => {
                fell_back += 1;
                assert_eq!(current(&raid, oid).await.unwrap().0, Bytes::from("x"));
            }
        }
    }
    assert_eq!(fell_back, 1);
    assert!(
        degraded_reason(&raid, "b0").starts_with("load_before failed"),
        "{}",
        degraded_reason(&raid, "b0")
    );
    assert_optimal(&raid, "b1");
}

#[tokio::test]
async fn voted_reads_are_never_answered_inline() {
    let b = backends(2);
    let options = RaidOptions {
        read_policy: ReadPolicy::Vote,
        ..RaidOptions::default()
    };
    let raid = open(&b, options).await;
    let (oid, _) = commit_new(&raid, "v").await;
    assert!(raid.load_before_inline(oid, Tid::MAX).is_none());
}

#[tokio::test]
async fn reads_go_on_while_a_backend_is_slow_to_finish() {
    let b = backends(2);
    let mut specs = specs(&b, None);
    specs[1].2 = Some(Duration::from_secs(2));
    let raid = Arc::new(
        RaidStorage::open(specs, RaidOptions::default())
            .await
            .unwrap(),
    );
    let (other, _) = commit_new(&raid, "other").await;
    let oid = raid.new_oids(1).await.unwrap()[0];
    b[1].next(Op::Finish, Action::Hang);
    let t = txn(vec![store(oid, Tid::ZERO, "slow")]);
    let id = t.id;
    assert!(matches!(
        raid.vote(t).await.unwrap(),
        VoteOutcome::Voted { .. }
    ));
    let finishing = {
        let raid = Arc::clone(&raid);
        tokio::spawn(async move { raid.finish(id).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !finishing.is_finished(),
        "b1's finish hangs until its timeout"
    );
    // Neither the async nor the inline path waits for the finish.
    for _ in 0..4 {
        let answer = tokio::time::timeout(Duration::from_millis(500), current(&*raid, other))
            .await
            .expect("a read does not wait for a finish");
        assert_eq!(answer.unwrap().0, Bytes::from("other"));
    }
    let tid = finishing.await.unwrap().unwrap();
    assert_eq!(degraded_reason(&raid, "b1"), "finish timed out after 2s");
    assert_eq!(
        current(&*raid, oid).await.unwrap(),
        (Bytes::from("slow"), tid)
    );
}

#[tokio::test]
async fn a_finish_dropped_midway_still_commits_everywhere_and_frees_the_lock() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let oid = raid.new_oids(1).await.unwrap()[0];
    let t = txn(vec![store(oid, Tid::ZERO, "kept")]);
    let id = t.id;
    raid.vote(t).await.unwrap();
    // b1 is slow to reach its commit point; the caller gives up meanwhile.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    b[1].next(Op::Finish, Action::WaitFor(Arc::clone(&gate)));
    let dropped = tokio::time::timeout(Duration::from_millis(100), raid.finish_deferred(id)).await;
    assert!(dropped.is_err(), "the finish was still running");
    gate.add_permits(1);
    // The finish ran to its end without its caller: the next commit gets the lock,
    // and both backends hold the first transaction.
    let (_, later) = tokio::time::timeout(Duration::from_secs(5), commit_new(&raid, "next"))
        .await
        .expect("the commit lock was released");
    let (data, tid) = current(&raid, oid).await.unwrap();
    assert_eq!(data, Bytes::from("kept"));
    assert!(tid < later);
    assert_eq!(raid.status(), RaidStatus::Optimal);
    assert_identical(&[&b[0], &b[1]]).await;
}

#[tokio::test]
async fn reads_do_not_see_a_commit_before_every_backend_shows_it() {
    for deferred in [false, true] {
        let b = backends(2);
        let raid = Arc::new(open(&b, RaidOptions::default()).await);
        let (oid, first) = commit_new(&raid, "old").await;
        let t = txn(vec![store(oid, first, "new")]);
        let id = t.id;
        raid.vote(t).await.unwrap();
        // b0 finishes the commit at once, b1 only once the gate opens.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        b[1].next(Op::Finish, Action::WaitFor(Arc::clone(&gate)));
        let finishing = {
            let raid = Arc::clone(&raid);
            tokio::spawn(async move {
                if deferred {
                    let finished = raid.finish_deferred(id).await?;
                    (finished.durable).await?;
                    Ok(finished.tid)
                } else {
                    raid.finish(id).await
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while b[0].inner.last_transaction().await.unwrap() == first {
            assert!(Instant::now() < deadline, "b0 did not finish");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Round-robin: these reads go to both backends, and all answer the same.
        for _ in 0..4 {
            let got = raid.load_before(oid, Tid::MAX).await.unwrap().unwrap();
            assert_eq!(
                (got.data, got.start, got.end),
                (Bytes::from("old"), first, None)
            );
            if let Some(inline) = raid.load_before_inline(oid, Tid::MAX) {
                let got = inline.unwrap().unwrap();
                assert_eq!(
                    (got.data, got.start, got.end),
                    (Bytes::from("old"), first, None)
                );
            }
            assert_eq!(
                raid.load_serial(oid, first).await.unwrap(),
                Bytes::from("old")
            );
        }
        gate.add_permits(1);
        let tid = finishing.await.unwrap().unwrap();
        assert_eq!(
            current(&*raid, oid).await.unwrap(),
            (Bytes::from("new"), tid)
        );
        let old = raid.load_before(oid, tid).await.unwrap().unwrap();
        assert_eq!((old.start, old.end), (first, Some(tid)));
        assert_identical(&[&b[0], &b[1]]).await;
    }
}

/// Votes a fresh store through the RAID and passes its commit point.
async fn vote_and_pass_commit_point(raid: &RaidStorage, data: &str) -> (Oid, Finished) {
    let oid = raid.new_oids(1).await.unwrap()[0];
    let t = txn(vec![store(oid, Tid::ZERO, data)]);
    let id = t.id;
    assert!(matches!(
        raid.vote(t).await.unwrap(),
        VoteOutcome::Voted { .. }
    ));
    (oid, raid.finish_deferred(id).await.unwrap())
}

#[tokio::test]
async fn a_deferred_finish_lets_the_next_commit_vote_before_it_is_durable() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let before = raid.last_transaction().await.unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    for backend in &b {
        backend.next(Op::Durable, Action::WaitFor(Arc::clone(&gate)));
    }
    let (oid, first) = vote_and_pass_commit_point(&raid, "first").await;
    assert_eq!(
        raid.last_transaction().await.unwrap(),
        before,
        "not the last transaction before it is durable"
    );
    // The commit lock is free: the next transaction votes and finishes meanwhile.
    let second = tokio::time::timeout(Duration::from_secs(2), commit_new(&raid, "second"))
        .await
        .expect("the next commit does not wait for the first one's durability");
    assert!(second.1 > first.tid);
    gate.add_permits(2);
    first.durable.await.unwrap();
    assert_eq!(raid.last_transaction().await.unwrap(), second.1);
    assert_eq!(
        current(&raid, oid).await.unwrap(),
        (Bytes::from("first"), first.tid)
    );
    assert_eq!(raid.status(), RaidStatus::Optimal);
    assert_identical(&[&b[0], &b[1]]).await;
}

#[tokio::test]
async fn a_backend_failing_to_make_a_finish_durable_is_degraded() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    b[1].next(Op::Durable, Action::Fail);
    let (_, finished) = vote_and_pass_commit_point(&raid, "x").await;
    let tid = finished.tid;
    finished.durable.await.unwrap();
    assert!(
        degraded_reason(&raid, "b1").starts_with("finish failed"),
        "{}",
        degraded_reason(&raid, "b1")
    );
    assert_optimal(&raid, "b0");
    assert_eq!(raid.last_transaction().await.unwrap(), tid);
}

#[tokio::test]
async fn a_finish_durable_nowhere_is_not_acknowledged() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    b[0].next(Op::Durable, Action::Fail);
    b[1].next(Op::Durable, Action::Fail);
    let (_, finished) = vote_and_pass_commit_point(&raid, "x").await;
    let err = finished.durable.await.unwrap_err();
    assert!(err.to_string().contains("not acknowledged"), "{err}");
    assert_eq!(raid.status(), RaidStatus::Failed);
    assert!(raid.last_transaction().await.is_err());
}

#[tokio::test]
async fn disabling_a_backend_waits_for_finishes_in_flight() {
    let b = backends(2);
    let raid = Arc::new(open(&b, RaidOptions::default()).await);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    b[0].next(Op::Durable, Action::WaitFor(Arc::clone(&gate)));
    let (_, finished) = vote_and_pass_commit_point(&raid, "x").await;
    let disabling = {
        let raid = Arc::clone(&raid);
        tokio::spawn(async move { raid.disable("b1").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!disabling.is_finished(), "waits for the finish in flight");
    gate.add_permits(1);
    finished.durable.await.unwrap();
    disabling.await.unwrap().unwrap();
    assert_eq!(degraded_reason(&raid, "b1"), "disabled by operator");
}

#[tokio::test]
async fn under_read_voting_a_deferred_finish_is_durable_when_it_returns() {
    let b = backends(2);
    let options = RaidOptions {
        read_policy: ReadPolicy::Vote,
        ..RaidOptions::default()
    };
    let raid = open(&b, options).await;
    b[0].next(Op::Durable, Action::Hang);
    let (_, finished) = vote_and_pass_commit_point(&raid, "v").await;
    // The plain finish ran: the backends' deferred waits were never used.
    tokio::time::timeout(Duration::from_secs(1), finished.durable)
        .await
        .expect("already durable")
        .unwrap();
    assert_eq!(raid.last_transaction().await.unwrap(), finished.tid);
}

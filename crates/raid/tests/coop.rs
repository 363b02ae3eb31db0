//! `cluster-mode coop` (gocept.zeoraid's default, zeoraid's on request) and read
//! voting: the RAID fails once no more than half of its backends are optimal,
//! reads are asked of every backend and compared, and several RAIDs sharing
//! the same backends commit with identical tids and never hand out an oid twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{
    backends, commit, commit_new, current, degraded_reason, open, specs, store, Action, Faulty, Op,
};
use zeoraid_raid::{ClusterMode, FailMode, RaidOptions, RaidStatus, RaidStorage, ReadPolicy};
use zeoraid_storage::{Oid, Storage, StorageError, Tid};

fn coop(fail_mode: FailMode) -> RaidOptions {
    RaidOptions {
        cluster_mode: ClusterMode::Coop,
        read_policy: ReadPolicy::Vote,
        fail_mode,
        ..RaidOptions::default()
    }
}

#[tokio::test]
async fn coop_fails_once_no_more_than_half_of_the_backends_are_optimal() {
    // 3 backends: one lost is degraded, two lost is failed.
    let b = backends(3);
    let raid = open(&b, coop(FailMode::Close)).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[2].next(Op::Vote, Action::Fail);
    let t2 = commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    assert_eq!(raid.status(), RaidStatus::Degraded);
    b[1].next(Op::Vote, Action::Fail);
    let err = commit(&raid, vec![store(oid, t2, "c")]).await.unwrap_err();
    assert!(
        err.to_string().contains("only 1 of 3 backends are optimal"),
        "{err}"
    );
    assert_eq!(raid.status(), RaidStatus::Failed);
    // Nothing was committed, b0 was aborted (not held), every call fails (close).
    assert_eq!(current(&*b[0].inner, oid).await.unwrap().1, t2);
    commit(&*b[0].inner, vec![store(oid, t2, "direct")])
        .await
        .unwrap();
    assert!(matches!(
        raid.load_before(oid, Tid::MAX).await,
        Err(StorageError::Disconnected(m)) if m.contains("cluster-mode coop")
    ));
    assert!(raid.new_oids(1).await.is_err());

    // The same in single mode keeps going on b0 alone.
    let b = backends(3);
    let raid = open(&b, RaidOptions::default()).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[1].next(Op::Vote, Action::Fail);
    b[2].next(Op::Vote, Action::Fail);
    commit(&raid, vec![store(oid, t1, "b")]).await.unwrap();
    assert_eq!(raid.status(), RaidStatus::Degraded);
}

#[tokio::test]
async fn coop_with_fail_mode_read_only_keeps_reading_from_the_minority() {
    let b = backends(2);
    let raid = open(&b, coop(FailMode::ReadOnly)).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[1].next(Op::Vote, Action::Fail);
    assert!(matches!(
        commit(&raid, vec![store(oid, t1, "b")]).await,
        Err(StorageError::ReadOnly)
    ));
    assert_eq!(raid.status(), RaidStatus::Failed);
    assert_eq!(current(&raid, oid).await.unwrap().1, t1);
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(raid.info().await.unwrap().read_only);
}

#[tokio::test]
async fn coop_opens_failed_when_half_the_backends_are_behind() {
    let b = backends(2);
    commit(&*b[0].inner, vec![store(Oid::from_u64(1), Tid::ZERO, "x")])
        .await
        .unwrap();
    let raid = open(&b, coop(FailMode::Close)).await;
    assert_eq!(raid.status(), RaidStatus::Failed);
    assert_eq!(degraded_reason(&raid, "b1"), "missing transactions");
    // A recovery brings the majority back.
    raid.recover("b1").await.unwrap();
    assert_eq!(raid.status(), RaidStatus::Optimal);
    commit_new(&raid, "after").await;
}

#[tokio::test]
async fn voted_reads_ask_every_backend_and_degrade_the_one_that_differs() {
    let b = backends(3);
    let raid = open(&b, coop(FailMode::Close)).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    let reads_before: Vec<u64> = raid.details().iter().map(|d| d.counters.reads).collect();
    assert_eq!(current(&raid, oid).await.unwrap(), ("a".into(), t1));
    let reads_after: Vec<u64> = raid.details().iter().map(|d| d.counters.reads).collect();
    for (before, after) in reads_before.iter().zip(&reads_after) {
        assert_eq!(after - before, 1, "every backend answered the read");
    }
    // b2 holds other data for the oid (written behind the RAID's back).
    commit(&*b[2].inner, vec![store(oid, t1, "tampered")])
        .await
        .unwrap();
    assert_eq!(current(&raid, oid).await.unwrap(), ("a".into(), t1));
    let why = degraded_reason(&raid, "b2");
    assert!(
        why.starts_with("disagreed on load_before: answered result"),
        "{why}"
    );
    assert!(why.contains("while 2 backend(s) answered"), "{why}");
    assert_eq!(raid.status(), RaidStatus::Degraded);
    // Answers about the data are voted too: all agree on POSKeyError.
    assert!(matches!(
        raid.load_serial(Oid::from_u64(4242), t1).await,
        Err(StorageError::PosKey { .. })
    ));
    assert_eq!(raid.status(), RaidStatus::Degraded);
}

#[tokio::test]
async fn a_read_vote_without_majority_goes_to_the_first_backend() {
    // read-policy vote in single mode: a 1:1 tie is the first backend's answer.
    let b = backends(2);
    let options = RaidOptions {
        read_policy: ReadPolicy::Vote,
        ..RaidOptions::default()
    };
    let raid = open(&b, options).await;
    let (oid, t1) = commit_new(&raid, "a").await;
    commit(&*b[0].inner, vec![store(oid, t1, "first")])
        .await
        .unwrap();
    // Reads answer as of the RAID's last commit: one more makes b0's write seen.
    commit_new(&raid, "later").await;
    let (data, _) = current(&raid, oid).await.unwrap();
    assert_eq!(data, "first");
    assert!(degraded_reason(&raid, "b1").starts_with("disagreed on load_before"));
    // A read that fails on one backend degrades it and takes the other's answer.
    let b = backends(2);
    let raid = open(
        &b,
        RaidOptions {
            read_policy: ReadPolicy::Vote,
            ..RaidOptions::default()
        },
    )
    .await;
    let (oid, t1) = commit_new(&raid, "a").await;
    b[0].next(Op::Read, Action::Fail);
    assert_eq!(current(&raid, oid).await.unwrap().1, t1);
    assert!(degraded_reason(&raid, "b0").contains("injected failure"));
}

async fn two_raids(b: &[Arc<Faulty>]) -> (Arc<RaidStorage>, Arc<RaidStorage>) {
    let one = RaidStorage::open(specs(b, None), coop(FailMode::Close))
        .await
        .unwrap();
    let two = RaidStorage::open(specs(b, None), coop(FailMode::Close))
        .await
        .unwrap();
    (Arc::new(one), Arc::new(two))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coop_raids_share_backends_with_identical_tids_and_unique_oids() {
    let b = backends(2);
    let (one, two) = two_raids(&b).await;
    // Alternating commits: each RAID's tid starts after the other's commits.
    let (oid, mut last) = commit_new(&one, "one").await;
    for i in 0..6 {
        let raid = if i % 2 == 0 { &two } else { &one };
        let tid = commit(&**raid, vec![store(oid, last, &format!("v{i}"))])
            .await
            .unwrap();
        assert!(tid > last);
        last = tid;
    }
    assert_eq!(one.last_transaction().await.unwrap(), last);
    assert_eq!(two.last_transaction().await.unwrap(), last);

    // Concurrent commits and oid allocations from both RAIDs.
    let mut tasks = Vec::new();
    for r in 0..2 {
        for t in 0..4 {
            let raid = Arc::clone(if r == 0 { &one } else { &two });
            tasks.push(tokio::spawn(async move {
                let mut oids = Vec::new();
                for n in 0..5 {
                    let got = raid.new_oids(3).await.unwrap();
                    let tid = commit(
                        &*raid,
                        vec![store(got[0], Tid::ZERO, &format!("r{r}t{t}n{n}"))],
                    )
                    .await
                    .unwrap();
                    assert!(tid > Tid::ZERO);
                    oids.extend(got);
                }
                oids
            }));
        }
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for oid in task.await.unwrap() {
            assert!(seen.insert(oid), "oid {oid:?} handed out twice");
        }
    }
    assert_eq!(seen.len(), 2 * 4 * 5 * 3);
    assert_eq!(one.status(), RaidStatus::Optimal);
    assert_eq!(two.status(), RaidStatus::Optimal);
    // Both backends hold the same transactions with the same tids.
    let (t0, t1) = (
        common::transactions(&*b[0].inner).await,
        common::transactions(&*b[1].inner).await,
    );
    assert_eq!(t0.len(), 1 + 6 + 2 * 4 * 5);
    let tids0: Vec<Tid> = t0.iter().map(|t| t.tid).collect();
    let tids1: Vec<Tid> = t1.iter().map(|t| t.tid).collect();
    assert_eq!(tids0, tids1);
}

//! Online recovery, verify and backends joining/leaving, over fault-injecting
//! memory backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use zeoraid_memstorage::MemStorage;
use zeoraid_raid::{BackendState, RaidError, RaidOptions, RaidStatus, RaidStorage};
use zeoraid_storage::{Oid, Operation, Storage, StorageError, Tid};

async fn new_object(raid: &RaidStorage, data: &str) -> (Oid, Tid) {
    let oid = raid.new_oids(1).await.unwrap()[0];
    let tid = commit(raid, vec![store(oid, Tid::ZERO, data)])
        .await
        .unwrap();
    (oid, tid)
}

/// Commits `n` transactions of `size` bytes each, one object per transaction
/// modified in turn among a few.
async fn history(raid: &RaidStorage, n: usize, size: usize) {
    let mut objects = Vec::new();
    for i in 0..4 {
        objects.push(new_object(raid, &format!("obj {i}")).await);
    }
    for i in 0..n {
        let k = i % objects.len();
        let (oid, serial) = objects[k];
        let data = format!("{i:0size$}");
        let tid = commit(raid, vec![store(oid, serial, &data)]).await.unwrap();
        objects[k] = (oid, tid);
    }
}

/// An undo of the last transaction (records with back-pointers).
async fn undo_last(raid: &RaidStorage) {
    let log = raid.undo_log(0, 1, None).await.unwrap();
    commit(
        raid,
        vec![Operation::Undo {
            undo_id: log[0].id.clone(),
        }],
    )
    .await
    .unwrap();
}

/// Tasks that keep committing (each to an object of its own) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
}

impl Load {
    async fn start(raid: &Arc<RaidStorage>, tasks: usize, size: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (oid, mut serial) = new_object(raid, &format!("load {t}")).await;
            let raid = Arc::clone(raid);
            let stop = Arc::clone(&stop);
            handles.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let data = format!("{t}:{n:0size$}");
                    serial = commit(raid.as_ref(), vec![store(oid, serial, &data)])
                        .await
                        .expect("a commit during recovery");
                    n += 1;
                    tokio::time::sleep(pause).await;
                }
                n
            }));
        }
        Load {
            stop,
            tasks: handles,
        }
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = 0;
        for t in self.tasks {
            total += t.await.unwrap();
        }
        total
    }
}

async fn assert_identical(a: &dyn Storage, b: &dyn Storage) {
    let (ta, tb) = (transactions(a).await, transactions(b).await);
    assert_eq!(ta.len(), tb.len(), "transaction counts");
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x, y, "transaction {:?}", x.tid);
    }
}

fn degraded_reason(raid: &RaidStorage, name: &str) -> String {
    match raid.backend_state(name).unwrap() {
        BackendState::Degraded { reason } => reason,
        other => panic!("{name} is {other}, not degraded"),
    }
}

/// RAID of b0 and an empty b1 (degraded from the start).
async fn with_empty_b1(rate: Option<u64>) -> (Vec<Arc<Faulty>>, Arc<RaidStorage>) {
    let b = backends(2);
    let raid = open(
        &b,
        RaidOptions {
            recovery_rate: rate,
            ..RaidOptions::default()
        },
    )
    .await;
    raid.disable("b1").await.unwrap();
    (b, Arc::new(raid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_backend_is_rebuilt_while_clients_commit() {
    let (b, raid) = with_empty_b1(None).await;
    history(&raid, 60, 200).await;
    undo_last(&raid).await;
    let load = Load::start(&raid, 4, 100, Duration::from_millis(2)).await;
    let report = raid.recover("b1").await.unwrap();
    let committed = load.stop().await;
    assert!(committed > 0);
    assert_eq!(raid.status(), RaidStatus::Optimal);
    assert_eq!(report.common, 0);
    assert!(report.copied >= 66, "{report:?}");
    // Commits after the switch-over reach the recovered backend.
    new_object(&raid, "after").await;
    assert_identical(b[0].as_ref(), b[1].as_ref()).await;
    let v = raid.verify().await.unwrap();
    assert!(v.identical(), "{v}");
    assert!(v.to_string().starts_with("identical: "), "{v}");
    // The recovered backend's oid counter is not behind.
    let next = raid.new_oids(1).await.unwrap()[0];
    let b1_next = b[1].inner.new_oids(1).await.unwrap()[0];
    assert!(b1_next > next, "{b1_next:?} vs {next:?}");
}

#[tokio::test]
async fn a_stale_backend_gets_only_the_missing_tail() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    history(&raid, 20, 50).await; // 4 + 20 transactions
    raid.disable("b1").await.unwrap();
    history(&raid, 3, 50).await; // 4 + 3 more
    let report = raid.recover("b1").await.unwrap();
    assert_eq!(report.common, 24);
    assert_eq!(report.copied, 7);
    assert_eq!(raid.status(), RaidStatus::Optimal);
    assert_identical(b[0].as_ref(), b[1].as_ref()).await;
    // Nothing to copy: an optimal backend is not recovered.
    assert!(matches!(
        raid.recover("b1").await,
        Err(RaidError::AlreadyOptimal(_))
    ));
    assert!(matches!(
        raid.recover("nope").await,
        Err(RaidError::UnknownBackend(_))
    ));
}

#[tokio::test]
async fn a_failing_target_stays_degraded_and_a_new_recovery_resumes() {
    let (b, raid) = with_empty_b1(None).await;
    history(&raid, 20, 50).await;
    // The target's 10th restore fails (the first nine pass through).
    for _ in 0..9 {
        b[1].next(Op::Vote, Action::StreamFailAfter(0));
    }
    b[1].next(Op::Vote, Action::Fail);
    let err = raid.recover("b1").await.unwrap_err();
    let reason = degraded_reason(&raid, "b1");
    assert!(
        reason.starts_with("recovery failed: target b1: restore of"),
        "{reason}"
    );
    assert!(reason.contains("injected failure"), "{reason}");
    assert_eq!(err.to_string(), reason);
    // The RAID is up and takes commits.
    assert_eq!(raid.status(), RaidStatus::Degraded);
    new_object(&raid, "meanwhile").await;
    b[1].heal();
    let report = raid.recover("b1").await.unwrap();
    assert_eq!(report.common, 9, "resumed after the common prefix");
    assert_eq!(raid.status(), RaidStatus::Optimal);
    assert_identical(b[0].as_ref(), b[1].as_ref()).await;
}

#[tokio::test]
async fn a_failing_source_leaves_the_raid_up() {
    let (b, raid) = with_empty_b1(None).await;
    history(&raid, 20, 50).await;
    // Iterators opened on the source: the prefix walk, the count, the copy.
    b[0].next(Op::Read, Action::Conflict);
    b[0].next(Op::Read, Action::Conflict);
    b[0].next(Op::Read, Action::StreamFailAfter(5));
    raid.recover("b1").await.unwrap_err();
    let reason = degraded_reason(&raid, "b1");
    assert!(
        reason.starts_with("recovery failed: source b0: iterator failed"),
        "{reason}"
    );
    assert!(raid.backend_state("b0").unwrap().is_optimal());
    new_object(&raid, "meanwhile").await;
    let report = raid.recover("b1").await.unwrap();
    assert_eq!(report.common, 5);
    assert_identical(b[0].as_ref(), b[1].as_ref()).await;
}

#[tokio::test]
async fn a_diverged_target_is_refused_and_untouched() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    history(&raid, 3, 10).await;
    raid.disable("b1").await.unwrap();
    // b1 gets a commit the RAID never saw.
    commit(
        b[1].inner.as_ref(),
        vec![store(Oid::from_u64(100), Tid::ZERO, "rogue")],
    )
    .await
    .unwrap();
    let before = transactions(b[1].as_ref()).await;
    history(&raid, 2, 10).await;
    let err = raid.recover("b1").await.unwrap_err();
    let reason = degraded_reason(&raid, "b1");
    assert!(
        reason.starts_with("recovery refused: backend b1 has diverged from b0 at tid "),
        "{reason}"
    );
    assert!(
        reason.contains("it has transactions b0 does not have"),
        "{reason}"
    );
    assert!(matches!(err, RaidError::RecoveryFailed { .. }));
    assert_eq!(transactions(b[1].as_ref()).await, before, "not overwritten");
    // Truncation is refused at once.
    let err = raid.start_recover("b1", true).unwrap_err();
    assert!(matches!(err, RaidError::TruncateUnsupported));
    assert!(err.to_string().contains("wipe"), "{err}");
}

#[tokio::test]
async fn a_transaction_with_other_content_is_divergence() {
    let (a, c) = (Arc::new(MemStorage::new()), Arc::new(MemStorage::new()));
    let tid = Tid::now_later_than(Tid::ZERO);
    let meta = txn(vec![]).meta;
    for (s, data) in [(&a, "one"), (&c, "two")] {
        let mut t = txn(vec![store(Oid::from_u64(1), Tid::ZERO, data)]);
        t.meta = meta.clone();
        t.tid = Some(tid);
        let id = t.id;
        s.vote(t).await.unwrap();
        s.finish(id).await.unwrap();
    }
    let raid = RaidStorage::open(
        vec![
            ("a".into(), a.clone() as Arc<dyn Storage>, None),
            ("c".into(), c.clone() as Arc<dyn Storage>, None),
        ],
        RaidOptions::default(),
    )
    .await
    .unwrap();
    // Both at the same tid: both optimal, and verify tells them apart.
    let v = raid.verify().await.unwrap();
    assert!(!v.identical());
    assert!(v.to_string().contains("record of oid"), "{v}");
    raid.disable("c").await.unwrap();
    raid.recover("c").await.unwrap_err();
    let reason = degraded_reason(&raid, "c");
    assert!(reason.contains("the transaction differs"), "{reason}");
}

#[tokio::test]
async fn one_recovery_at_a_time_and_no_pack_meanwhile() {
    let b = backends(3);
    let raid = open(
        &b,
        RaidOptions {
            recovery_rate: Some(20_000),
            ..RaidOptions::default()
        },
    )
    .await;
    raid.disable("b1").await.unwrap();
    raid.disable("b2").await.unwrap();
    history(&raid, 20, 1000).await; // ~20 kB: a second at 20 kB/s
    let running = raid.start_recover("b1", false).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(raid.status(), RaidStatus::Recovering);
    let err = raid.start_recover("b2", false).unwrap_err();
    assert!(
        matches!(&err, RaidError::RecoveryRunning(n) if n == "b1"),
        "{err}"
    );
    assert!(err.to_string().contains("one recovery at a time"), "{err}");
    assert!(matches!(
        raid.pack(0.0).await,
        Err(StorageError::Transaction(m)) if m.contains("recovering")
    ));
    // Progress is visible meanwhile.
    match raid.backend_state("b1").unwrap() {
        BackendState::Recovering { progress } => {
            assert_eq!(progress.transactions_total, Some(24));
            assert!(progress.bytes_total.unwrap() > 20_000);
        }
        other => panic!("b1 is {other}"),
    }
    running.await.unwrap().unwrap();
    raid.pack(0.0).await.unwrap();
    raid.recover("b2").await.unwrap();
    assert_eq!(raid.status(), RaidStatus::Optimal);
}

#[tokio::test]
async fn disabling_a_recovering_backend_stops_the_recovery() {
    let (_b, raid) = with_empty_b1(Some(10_000)).await;
    history(&raid, 20, 1000).await;
    let running = raid.start_recover("b1", false).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    raid.disable("b1").await.unwrap();
    let err = running.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert_eq!(degraded_reason(&raid, "b1"), "disabled by operator");
    // A new one can run.
    raid.set_recovery_rate(None);
    raid.recover("b1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_and_recovery_converges_under_load_below_it() {
    let rate = 100_000u64;
    let (b, raid) = with_empty_b1(Some(rate)).await;
    history(&raid, 100, 1000).await; // ~100 kB: a second at the limit
                                     // ~4 × 250 B / 10 ms = ~25 kB/s: a quarter of the copy rate.
    let load = Load::start(&raid, 4, 240, Duration::from_millis(10)).await;
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(30), raid.recover("b1"))
        .await
        .expect("recovery converges under a load below the rate limit")
        .unwrap();
    let elapsed = started.elapsed();
    load.stop().await;
    // The paced copy cannot be faster than the limit (the switch-over pass is
    // unpaced, hence the margin).
    let min = Duration::from_secs_f64(report.bytes as f64 / rate as f64 * 0.8);
    assert!(elapsed >= min, "{elapsed:?} < {min:?} for {report:?}");
    assert!(report.bytes >= 100_000, "{report:?}");
    assert_eq!(raid.status(), RaidStatus::Optimal);
    assert_identical(b[0].as_ref(), b[1].as_ref()).await;
}

#[tokio::test]
async fn verify_reports_the_first_difference() {
    let b = backends(2);
    let raid = open(&b, RaidOptions::default()).await;
    let v = raid.verify().await.unwrap();
    assert_eq!(v.transactions, 0);
    history(&raid, 5, 10).await;
    let v = raid.verify().await.unwrap();
    assert_eq!(
        v.to_string(),
        "identical: 9 transactions, 9 records, 0 blobs on b0, b1"
    );
    // b0 gets a transaction b1 does not, then both get one more.
    commit(
        b[0].inner.as_ref(),
        vec![store(Oid::from_u64(100), Tid::ZERO, "only on b0")],
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    new_object(&raid, "both").await;
    let v = raid.verify().await.unwrap();
    assert!(!v.identical());
    assert_eq!(v.transactions, 9);
    assert!(v.to_string().contains("next transaction is "), "{v}");
}

#[tokio::test]
async fn blobs_are_recovered_and_verified() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let b: Vec<Arc<Faulty>> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Faulty::new(
                MemStorage::new()
                    .with_name(format!("b{i}"))
                    .with_blob_dir(d.path())
                    .unwrap(),
            )
        })
        .collect();
    let raid = open(&b, RaidOptions::default()).await;
    raid.disable("b1").await.unwrap();
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), b"blob content").unwrap();
    let oid = raid.new_oids(1).await.unwrap()[0];
    commit(
        &raid,
        vec![Operation::StoreBlob {
            oid,
            serial: Tid::ZERO,
            data: Bytes::from_static(b"blob record"),
            blob: src.path().to_path_buf(),
        }],
    )
    .await
    .unwrap();
    raid.recover("b1").await.unwrap();
    let v = raid.verify().await.unwrap();
    assert!(v.identical(), "{v}");
    assert_eq!(v.blobs, 1, "{v}");
    let tid = raid.last_transaction().await.unwrap();
    let p = b[1].inner.load_blob(oid, tid).await.unwrap();
    assert_eq!(std::fs::read(p).unwrap(), b"blob content");
}

#[tokio::test]
async fn backends_join_degraded_and_leave() {
    let b = backends(1);
    let raid = Arc::new(open(&b, RaidOptions::default()).await);
    history(&raid, 5, 10).await;
    let added = Faulty::new(MemStorage::new());
    raid.add_backend("new", added.clone(), None).await.unwrap();
    assert_eq!(degraded_reason(&raid, "new"), "added by controller");
    assert!(matches!(
        raid.add_backend("new", added.clone(), None).await,
        Err(RaidError::DuplicateName(_))
    ));
    raid.recover("new").await.unwrap();
    assert_eq!(raid.status(), RaidStatus::Optimal);
    assert_identical(b[0].as_ref(), added.as_ref()).await;
    let names: Vec<String> = raid.details().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["b0", "new"]);
    raid.remove_backend("b0").await.unwrap();
    let names: Vec<String> = raid.details().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["new"]);
    new_object(&raid, "after removal").await;
    assert!(matches!(
        raid.remove_backend("new").await,
        Err(RaidError::LastOptimal(_))
    ));
    assert!(matches!(
        raid.remove_backend("b0").await,
        Err(RaidError::UnknownBackend(_))
    ));
}

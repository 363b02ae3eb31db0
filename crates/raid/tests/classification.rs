//! Which errors are answers and which are failures of one backend, pinned down
//! with real FileStorage backends: under the tie rule (no majority → the first
//! backend in configuration order wins), a first backend that refuses out of its
//! own state (already packing, a transaction of its own still voted, opened
//! read-only, no blob directory) must be degraded, not the healthy second one.
//! When every backend refuses alike, the refusal is the client's answer and
//! nobody is degraded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::{assert_optimal, commit, current, degraded_reason, store, txn};
use zeoraid_filestorage::{AsyncFileStorage, Options, PackOptions};
use zeoraid_raid::{BackendSpec, RaidOptions, RaidStatus, RaidStorage};
use zeoraid_storage::{Oid, Operation, Storage, StorageError, Tid};

struct Fs {
    storage: Arc<AsyncFileStorage>,
    path: PathBuf,
}

async fn filestorage(dir: &Path, name: &str, blobs: bool, read_only: bool) -> Fs {
    let path = dir.join(format!("{name}.fs"));
    if read_only {
        // A read-only FileStorage needs an existing file.
        let s = AsyncFileStorage::open(&path, Options::default())
            .await
            .unwrap();
        s.close().await.unwrap();
    }
    let opts = Options {
        read_only,
        blob_dir: blobs.then(|| dir.join(format!("{name}-blobs"))),
        ..Options::default()
    };
    let storage = Arc::new(AsyncFileStorage::open(&path, opts).await.unwrap());
    Fs { storage, path }
}

async fn raid_of(backends: &[(&str, &Fs)]) -> RaidStorage {
    let specs: Vec<BackendSpec> = backends
        .iter()
        .map(|(name, fs)| {
            (
                name.to_string(),
                Arc::clone(&fs.storage) as Arc<dyn Storage>,
                None,
            )
        })
        .collect();
    RaidStorage::open(specs, RaidOptions::default())
        .await
        .unwrap()
}

async fn new_oid(raid: &RaidStorage) -> Oid {
    raid.new_oids(1).await.unwrap()[0]
}

#[tokio::test]
async fn a_first_backend_already_packing_is_degraded_not_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        filestorage(dir.path(), "a", false, false).await,
        filestorage(dir.path(), "b", false, false).await,
    );
    let raid = raid_of(&[("a", &a), ("b", &b)]).await;
    let oid = new_oid(&raid).await;
    let t1 = commit(&raid, vec![store(oid, Tid::ZERO, "one")])
        .await
        .unwrap();
    commit(&raid, vec![store(oid, t1, "two")]).await.unwrap();
    // Someone packs `a` behind the RAID's back: it is busy packing.
    let opts = PackOptions {
        gc: false,
        references: zeoraid_filestorage::refs::default_references(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 1.0;
    let _job = a.storage.engine().pack_prepare(now, opts).unwrap();
    raid.pack(now).await.unwrap();
    let why = degraded_reason(&raid, "a");
    assert!(why.contains("Already packing"), "{why}");
    assert!(
        why.starts_with("pack refused while other backends answered"),
        "{why}"
    );
    assert_optimal(&raid, "b");
    assert_eq!(raid.status(), RaidStatus::Degraded);
    // The RAID goes on with b.
    commit(
        &raid,
        vec![store(oid, raid.last_transaction().await.unwrap(), "three")],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_first_backend_refusing_out_of_its_own_state_is_degraded_not_the_second() {
    // (A FileStorage still holding a voted transaction refuses the next vote with
    // "already voted"; the async FileStorage aborts such orphans itself, so the
    // refusal is injected here.)
    let b = common::backends(2);
    let raid = common::open(&b, RaidOptions::default()).await;
    let oid = new_oid(&raid).await;
    b[0].next(
        common::Op::Vote,
        common::Action::Refuse("transaction 7 is already voted"),
    );
    let tid = commit(&raid, vec![store(oid, Tid::ZERO, "x")])
        .await
        .unwrap();
    let why = degraded_reason(&raid, "b0");
    assert_eq!(
        why,
        "vote refused while other backends answered: storage error: transaction 7 is already voted"
    );
    assert_optimal(&raid, "b1");
    assert_eq!(current(&*b[1].inner, oid).await.unwrap().1, tid);

    // new_oids and reads alike.
    let b = common::backends(2);
    let raid = common::open(&b, RaidOptions::default()).await;
    b[0].next(
        common::Op::NewOids,
        common::Action::Refuse("oid space exhausted"),
    );
    let oid = new_oid(&raid).await;
    assert!(degraded_reason(&raid, "b0").contains("oid space exhausted"));
    let tid = commit(&raid, vec![store(oid, Tid::ZERO, "x")])
        .await
        .unwrap();
    let b = common::backends(2);
    let raid = common::open(&b, RaidOptions::default()).await;
    let oid = new_oid(&raid).await;
    let tid2 = commit(&raid, vec![store(oid, Tid::ZERO, "y")])
        .await
        .unwrap();
    b[0].always(common::Op::Read, common::Action::Refuse("busy"));
    for _ in 0..2 {
        assert_eq!(current(&raid, oid).await.unwrap().1, tid2);
    }
    assert!(degraded_reason(&raid, "b0")
        .starts_with("load_before refused while other backends answered"));
    assert_optimal(&raid, "b1");
    assert!(tid > Tid::ZERO);
}

#[tokio::test]
async fn a_first_backend_opened_read_only_is_degraded_not_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        filestorage(dir.path(), "a", false, true).await,
        filestorage(dir.path(), "b", false, false).await,
    );
    let raid = raid_of(&[("a", &a), ("b", &b)]).await;
    assert_eq!(raid.status(), RaidStatus::Optimal);
    // new_oids: `a` refuses, `b` answers.
    let oid = new_oid(&raid).await;
    assert!(
        degraded_reason(&raid, "a").contains("read-only"),
        "{}",
        degraded_reason(&raid, "a")
    );
    assert_optimal(&raid, "b");
    let tid = commit(&raid, vec![store(oid, Tid::ZERO, "x")])
        .await
        .unwrap();
    assert_eq!(current(&*b.storage, oid).await.unwrap().1, tid);

    // The vote alone (oids from elsewhere): the same.
    let (a, b) = (
        filestorage(dir.path(), "a2", false, true).await,
        filestorage(dir.path(), "b2", false, false).await,
    );
    let raid = raid_of(&[("a", &a), ("b", &b)]).await;
    let tid = commit(&raid, vec![store(Oid::from_u64(5), Tid::ZERO, "x")])
        .await
        .unwrap();
    let why = degraded_reason(&raid, "a");
    assert!(
        why.starts_with("vote refused while other backends answered: storage is read-only"),
        "{why}"
    );
    assert_optimal(&raid, "b");
    assert_eq!(b.storage.last_transaction().await.unwrap(), tid);
    assert!(a.path.exists());
}

async fn blob_file(dir: &Path, content: &str) -> PathBuf {
    let path = dir.join(format!("upload-{content}.blob"));
    tokio::fs::write(&path, content).await.unwrap();
    path
}

/// Commits a first revision of blob object `oid` from the upload file `blob`.
async fn commit_blob(raid: &RaidStorage, oid: Oid, blob: std::path::PathBuf) -> Tid {
    commit(
        raid,
        vec![Operation::StoreBlob {
            oid,
            serial: Tid::ZERO,
            data: Bytes::from_static(b"blob record"),
            blob,
        }],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_first_backend_without_a_blob_directory_is_degraded_not_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        filestorage(dir.path(), "a", false, false).await,
        filestorage(dir.path(), "b", true, false).await,
    );
    let raid = raid_of(&[("a", &a), ("b", &b)]).await;
    let oid = new_oid(&raid).await;
    let blob = blob_file(dir.path(), "blob-data").await;
    let tid = commit_blob(&raid, oid, blob).await;
    let why = degraded_reason(&raid, "a");
    assert!(why.contains("not supported"), "{why}");
    assert_optimal(&raid, "b");
    let path = raid.load_blob(oid, tid).await.unwrap();
    assert_eq!(std::fs::read_to_string(path).unwrap(), "blob-data");
}

#[tokio::test]
async fn a_read_refused_by_the_first_backend_degrades_it_once_another_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        filestorage(dir.path(), "a", true, false).await,
        filestorage(dir.path(), "b", true, false).await,
    );
    let raid = raid_of(&[("a", &a), ("b", &b)]).await;
    let oid = new_oid(&raid).await;
    let blob = blob_file(dir.path(), "both").await;
    let tid = commit_blob(&raid, oid, blob).await;
    drop(raid);
    // Same data, no blob directory: open a's file again without blobs.
    a.storage.close().await.unwrap();
    let a3 = Fs {
        storage: Arc::new(
            AsyncFileStorage::open(&a.path, Options::default())
                .await
                .unwrap(),
        ),
        path: a.path.clone(),
    };
    let raid = raid_of(&[("a", &a3), ("b", &b)]).await;
    assert_eq!(raid.status(), RaidStatus::Optimal);
    // Round-robin starts with `a`: it refuses, `b` answers, `a` is degraded.
    for _ in 0..2 {
        let path = raid.load_blob(oid, tid).await.unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "both");
    }
    let why = degraded_reason(&raid, "a");
    assert!(
        why.starts_with("load_blob refused while other backends answered"),
        "{why}"
    );
    assert_optimal(&raid, "b");
}

#[tokio::test]
async fn every_backend_refusing_alike_is_the_answer_and_degrades_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        filestorage(dir.path(), "a", false, false).await,
        filestorage(dir.path(), "b", false, false).await,
    );
    let raid = raid_of(&[("a", &a), ("b", &b)]).await;
    let oid = new_oid(&raid).await;
    let blob = blob_file(dir.path(), "nowhere").await;
    let t = txn(vec![Operation::StoreBlob {
        oid,
        serial: Tid::ZERO,
        data: Bytes::from_static(b"blob record"),
        blob,
    }]);
    match raid.vote(t).await {
        Err(StorageError::Unsupported(m)) => assert!(m.contains("blob"), "{m}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    match raid.load_blob(oid, Tid::from_u64(1)).await {
        Err(StorageError::Unsupported(_)) => {}
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert_eq!(raid.status(), RaidStatus::Optimal);
    // Both read-only: new_oids and the vote are refused with ReadOnly, nobody
    // is degraded.
    drop(raid);
    a.storage.close().await.unwrap();
    b.storage.close().await.unwrap();
    let (a, b) = (
        filestorage(dir.path(), "a", false, true).await,
        filestorage(dir.path(), "b", false, true).await,
    );
    let raid = raid_of(&[("a", &a), ("b", &b)]).await;
    assert!(matches!(
        raid.new_oids(1).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(
        commit(&raid, vec![store(Oid::from_u64(9), Tid::ZERO, "x")]).await,
        Err(StorageError::ReadOnly)
    ));
    assert_eq!(raid.status(), RaidStatus::Optimal);
}

#[tokio::test]
async fn answers_about_the_data_stay_answers_and_follow_the_tie_rule() {
    // An explicit tid refused by both is the client's answer; nobody is degraded.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        filestorage(dir.path(), "a", false, false).await,
        filestorage(dir.path(), "b", false, false).await,
    );
    let raid = raid_of(&[("a", &a), ("b", &b)]).await;
    let oid = new_oid(&raid).await;
    let t1 = commit(&raid, vec![store(oid, Tid::ZERO, "x")])
        .await
        .unwrap();
    let mut t = txn(vec![store(oid, t1, "y")]);
    t.tid = Some(t1);
    assert!(matches!(
        raid.vote(t).await,
        Err(StorageError::Transaction(_))
    ));
    // A write conflict agreed by both: an answer.
    match raid
        .vote(txn(vec![store(oid, Tid::ZERO, "z")]))
        .await
        .unwrap()
    {
        zeoraid_storage::VoteOutcome::Conflicts(c) => assert_eq!(c[0].oid, oid),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Undo of an unknown transaction: both answer alike.
    let undo = txn(vec![Operation::Undo {
        undo_id: Bytes::from_static(b"AAAAAAAAAAA="),
    }]);
    assert!(matches!(
        raid.vote(undo).await,
        Err(StorageError::Undo { .. }
            | StorageError::MultipleUndo(_)
            | StorageError::PosKey { .. })
    ));
    assert_eq!(raid.status(), RaidStatus::Optimal);
}

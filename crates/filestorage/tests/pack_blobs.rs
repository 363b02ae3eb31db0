//! Pack (with and without GC, concurrent readers and commits) and blobs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use zeoraid_filestorage::refs::default_references;
use zeoraid_filestorage::undo::undo_id;
use zeoraid_filestorage::{AsyncFileStorage, FileStorage, PackOptions};
use zeoraid_storage::{Operation, Storage, Tid, VoteOutcome};

fn pack_opts(gc: bool) -> PackOptions {
    PackOptions {
        gc,
        references: default_references(),
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// root(0) -> 1 -> 2, plus 3 unreferenced; two revisions of 1.
fn populate(fs: &FileStorage) -> Vec<Tid> {
    let t1 = commit(
        fs,
        txn(
            "1",
            vec![
                store(0, Tid::ZERO, &record(&[1], b"root")),
                store(1, Tid::ZERO, &record(&[2], b"one")),
                store(2, Tid::ZERO, &record(&[], b"two")),
                store(3, Tid::ZERO, &record(&[], b"garbage")),
            ],
        ),
    );
    let t2 = commit(fs, txn("2", vec![store(1, t1, &record(&[2], b"one v2"))]));
    vec![t1, t2]
}

#[test]
fn pack_with_gc() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let tids = populate(&fs);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let size_before = fs.size();
    fs.pack(now(), pack_opts(true)).unwrap();
    assert!(fs.size() < size_before);
    assert!(dir.path().join("Data.fs.old").exists());
    assert!(!dir.path().join("Data.fs.pack").exists());
    assert_eq!(fs.len(), 3);
    assert!(fs.load(oid(3)).is_err());
    assert_eq!(fs.load(oid(1)).unwrap().1, tids[1]);
    assert!(fs.load_before(oid(1), tids[1]).unwrap().is_none());
    assert_eq!(fs.history(oid(1), 10).unwrap().len(), 1);
    assert_eq!(fs.last_transaction(), tids[1]);
    let txns: Vec<_> = fs
        .iterator(None, None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(txns.iter().all(|t| t.status == b'p'));
    assert!(fs.undo_log(0, 10, None).unwrap().is_empty());
    // Commits go on after pack, and survive reopening.
    let t3 = commit(
        &fs,
        txn("3", vec![store(2, tids[0], &record(&[], b"two v2"))]),
    );
    fs.close().unwrap();
    let fs = open(&path);
    assert_eq!((fs.last_transaction(), fs.len()), (t3, 3));
    // Packing again to the same time is redundant.
    let size = fs.size();
    fs.pack(now(), pack_opts(true)).unwrap();
    assert!(fs.size() <= size);
}

#[test]
fn pack_without_gc_keeps_unreachable_objects() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let tids = populate(&fs);
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs.pack(now(), pack_opts(false)).unwrap();
    assert_eq!(fs.len(), 4);
    assert_eq!(fs.load(oid(3)).unwrap().1, tids[0]);
    assert!(fs.load_before(oid(1), tids[1]).unwrap().is_none());
}

#[test]
fn pack_keeps_history_after_pack_time_and_back_pointers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let tids = populate(&fs);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let pack_time = now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let t3 = commit(
        &fs,
        txn("3", vec![store(1, tids[1], &record(&[2], b"one v3"))]),
    );
    // Undo t3 after the pack time: a back-pointer to t2's record.
    let u = commit(
        &fs,
        txn(
            "undo",
            vec![Operation::Undo {
                undo_id: undo_id(t3),
            }],
        ),
    );
    fs.pack(pack_time, pack_opts(true)).unwrap();
    let txns: Vec<_> = fs
        .iterator(None, None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        txns.iter().map(|t| t.tid).collect::<Vec<_>>(),
        vec![tids[0], tids[1], t3, u]
    );
    assert_eq!(txns[3].records[0].data_txn, Some(tids[1]));
    assert_eq!(fs.load(oid(1)).unwrap().0.as_ref(), record(&[2], b"one v2"));
    assert_eq!(fs.load_before(oid(1), u).unwrap().unwrap().start, t3);
    assert_eq!(fs.undo_log(0, 10, None).unwrap().len(), 2);
}

#[test]
fn readers_and_commits_during_pack() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(open(&data_fs(&dir)));
    let mut serial = populate(&fs)[1];
    for i in 0..200u64 {
        let data = record(&[2], format!("one v{i}").as_bytes());
        serial = commit(&fs, txn("churn", vec![store(1, serial, &data)]));
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let pack_time = now();
    let job = fs.pack_prepare(pack_time, pack_opts(true)).unwrap();
    let mut job = job.expect("something to pack");
    // Between the steps readers read and writers commit without waiting.
    let reader = {
        let fs = fs.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                assert!(fs.load(oid(1)).is_ok());
                assert_eq!(fs.history(oid(0), 1).unwrap().len(), 1);
            }
        })
    };
    let t_mid = commit(
        &fs,
        txn("during", vec![store(1, serial, &record(&[2], b"mid"))]),
    );
    fs.pack_copy_rest(&mut job).unwrap();
    let t_late = commit(
        &fs,
        txn(
            "late",
            vec![store(2, fs.load(oid(2)).unwrap().1, &record(&[], b"late"))],
        ),
    );
    // A voted transaction blocks the final step.
    let voted = txn(
        "voted",
        vec![store(0, fs.load(oid(0)).unwrap().1, &record(&[1], b"r2"))],
    );
    assert!(matches!(
        fs.vote(&voted).unwrap(),
        VoteOutcome::Voted { .. }
    ));
    assert!(fs.pack_commit(&mut job).is_err());
    let t_voted = fs.finish(voted.id).unwrap();
    fs.pack_commit(&mut job).unwrap();
    reader.join().unwrap();
    assert_eq!(fs.last_transaction(), t_voted);
    assert_eq!(
        fs.load(oid(1)).unwrap(),
        (Bytes::from(record(&[2], b"mid")), t_mid)
    );
    assert_eq!(fs.load(oid(2)).unwrap().1, t_late);
    let txns: Vec<_> = fs
        .iterator(None, None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(txns.len(), 5); // two packed + three after
    fs.close().unwrap();
    let fs = open(&data_fs(&dir));
    assert_eq!(fs.last_transaction(), t_voted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_pack_while_reading_and_committing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(&data_fs(&dir));
    let mut serial = populate(&engine)[1];
    for i in 0..100u64 {
        serial = commit(
            &engine,
            txn(
                "churn",
                vec![store(1, serial, &record(&[2], format!("v{i}").as_bytes()))],
            ),
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let st = Arc::new(AsyncFileStorage::from_engine(engine));
    let packer = {
        let st = st.clone();
        tokio::spawn(async move { st.pack(now()).await })
    };
    let mut last = serial;
    for i in 0..20u64 {
        assert!(st.load_before(oid(0), Tid::MAX).await.unwrap().is_some());
        let t = txn(
            "during",
            vec![store(1, last, &record(&[2], format!("w{i}").as_bytes()))],
        );
        let id = t.id;
        assert!(matches!(
            st.vote(t).await.unwrap(),
            VoteOutcome::Voted { .. }
        ));
        last = st.finish(id).await.unwrap();
    }
    packer.await.unwrap().unwrap();
    let loaded = st.load_before(oid(1), Tid::MAX).await.unwrap().unwrap();
    assert_eq!(
        (loaded.data, loaded.start),
        (Bytes::from(record(&[2], b"w19")), last)
    );
    assert!(st.load_before(oid(3), Tid::MAX).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_vote_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let st = Arc::new(
        AsyncFileStorage::open(data_fs(&dir), Default::default())
            .await
            .unwrap(),
    );
    let a = txn("a", vec![store(1, Tid::ZERO, b"a")]);
    let a_id = a.id;
    assert!(matches!(
        st.vote(a).await.unwrap(),
        VoteOutcome::Voted { .. }
    ));
    let b = txn("b", vec![store(2, Tid::ZERO, b"b")]);
    let b_id = b.id;
    let waiting = {
        let st = st.clone();
        tokio::spawn(async move { st.vote(b).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    let ta = st.finish(a_id).await.unwrap();
    assert!(matches!(
        waiting.await.unwrap().unwrap(),
        VoteOutcome::Voted { .. }
    ));
    let tb = st.finish(b_id).await.unwrap();
    assert!(tb > ta);
    // Conflicts release the lock at once.
    let c = txn("c", vec![store(1, Tid::ZERO, b"c")]);
    assert!(matches!(
        st.vote(c).await.unwrap(),
        VoteOutcome::Conflicts(_)
    ));
    let d = txn("d", vec![store(1, ta, b"d")]);
    let d_id = d.id;
    assert!(matches!(
        st.vote(d).await.unwrap(),
        VoteOutcome::Voted { .. }
    ));
    st.abort(d_id).await.unwrap();
    let e = txn("e", vec![store(1, ta, b"e")]);
    let e_id = e.id;
    st.vote(e).await.unwrap();
    st.finish(e_id).await.unwrap();
    let items: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(st.iterator(None, None).await.unwrap()).await;
    assert_eq!(items.len(), 3);
    st.close().await.unwrap();
}

/// Commit a new revision of blob object 7 over `serial`.
fn src_commit_blob(fs: &FileStorage, src: &std::path::Path, serial: Tid) -> Tid {
    // The previous upload may be linked read-only into the blob directory.
    let _ = std::fs::remove_file(src);
    std::fs::write(src, b"blob three").unwrap();
    commit(
        fs,
        txn(
            "blob3",
            vec![Operation::StoreBlob {
                oid: oid(7),
                serial,
                data: Bytes::from(record(&[], b"blob")),
                blob: src.to_path_buf(),
            }],
        ),
    )
}

#[test]
fn blobs_store_load_undo_pack() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let blobs = dir.path().join("blobs");
    let fs = open_with(&path, |o| o.blob_dir = Some(blobs.clone()));
    assert_eq!(
        std::fs::read_to_string(blobs.join(".layout")).unwrap(),
        "bushy"
    );
    assert!(blobs.join("tmp").is_dir());
    let src = dir.path().join("upload");
    std::fs::write(&src, b"blob one").unwrap();
    let t0 = commit(
        &fs,
        txn("root", vec![store(0, Tid::ZERO, &record(&[7], b"root"))]),
    );
    let t1 = commit(
        &fs,
        txn(
            "blob",
            vec![Operation::StoreBlob {
                oid: oid(7),
                serial: Tid::ZERO,
                data: Bytes::from(record(&[], b"blob")),
                blob: src.clone(),
            }],
        ),
    );
    assert!(src.exists(), "the caller's file stays");
    let p1 = fs.load_blob(oid(7), t1).unwrap();
    let expected = blobs
        .join("0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x07")
        .join(format!(
            "{}.blob",
            zeoraid_filestorage::blobs::id_repr(&t1.0)
        ));
    assert_eq!(p1, expected);
    assert_eq!(std::fs::read(&p1).unwrap(), b"blob one");
    // The committed blob is read-only (and may share the caller's inode):
    // callers replace their file rather than write into it.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&p1).unwrap().permissions().mode() & 0o222,
        0
    );
    std::fs::remove_file(&src).unwrap();
    std::fs::write(&src, b"blob two").unwrap();
    let t2 = commit(
        &fs,
        txn(
            "blob2",
            vec![Operation::StoreBlob {
                oid: oid(7),
                serial: t1,
                data: Bytes::from(record(&[], b"blob")),
                blob: src.clone(),
            }],
        ),
    );
    assert_eq!(
        std::fs::read(fs.load_blob(oid(7), t2).unwrap()).unwrap(),
        b"blob two"
    );
    assert!(fs.load_blob(oid(7), t0).is_err());
    let recs: Vec<_> = fs
        .iterator(None, None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(recs[1].records[0].has_blob && recs[2].records[0].has_blob);
    assert!(!recs[0].records[0].has_blob);

    // Undo t2: the blob of t1 is copied to the undo's tid.
    let t3 = commit(
        &fs,
        txn(
            "undo",
            vec![Operation::Undo {
                undo_id: undo_id(t2),
            }],
        ),
    );
    assert_eq!(
        std::fs::read(fs.load_blob(oid(7), t3).unwrap()).unwrap(),
        b"blob one"
    );

    // An aborted blob store leaves no file.
    let v = txn(
        "aborted",
        vec![Operation::StoreBlob {
            oid: oid(8),
            serial: Tid::ZERO,
            data: Bytes::from_static(b"x"),
            blob: src.clone(),
        }],
    );
    assert!(matches!(fs.vote(&v).unwrap(), VoteOutcome::Voted { .. }));
    let tv = fs.voted_tid().unwrap();
    assert!(fs.blob_dir().unwrap().exists(oid(8), tv));
    fs.abort(v.id).unwrap();
    assert!(!fs.blob_dir().unwrap().exists(oid(8), tv));
    assert!(!blobs
        .join("0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x08")
        .exists());

    // Pack to now: only the current revision's blob stays.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs.pack(now(), pack_opts(true)).unwrap();
    assert!(fs.load_blob(oid(7), t1).is_err());
    assert!(fs.load_blob(oid(7), t2).is_err());
    assert_eq!(
        std::fs::read(fs.load_blob(oid(7), t3).unwrap()).unwrap(),
        b"blob one"
    );
    // As Python's pack_keep_old: the removed revisions moved to blobs.old, and
    // the kept one is linked there too, next to Data.fs.old.
    let old = dir.path().join("blobs.old");
    let old_oid = old.join("0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x07");
    let name = |t: Tid| format!("{}.blob", zeoraid_filestorage::blobs::id_repr(&t.0));
    assert_eq!(
        std::fs::read_to_string(old.join(".layout")).unwrap(),
        "bushy"
    );
    assert_eq!(std::fs::read(old_oid.join(name(t1))).unwrap(), b"blob one");
    assert_eq!(std::fs::read(old_oid.join(name(t2))).unwrap(), b"blob two");
    assert_eq!(std::fs::read(old_oid.join(name(t3))).unwrap(), b"blob one");
    assert!(!old.join("tmp").exists());
    drop(fs);

    // Without pack_keep_old, removed blobs are deleted and no blobs.old stays.
    let fs = open_with(&path, |o| {
        o.blob_dir = Some(blobs.clone());
        o.pack_keep_old = false;
    });
    src_commit_blob(&fs, &src, t3);
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs.pack(now(), pack_opts(true)).unwrap();
    assert!(
        !old.exists(),
        "blobs.old is removed when not keeping old files"
    );
    assert!(fs.load_blob(oid(7), t3).is_err());
    drop(fs);

    // No blob dir: blobs are refused.
    let other = tempfile::tempdir().unwrap();
    let plain = open(&data_fs(&other));
    let v = txn(
        "b",
        vec![Operation::StoreBlob {
            oid: oid(1),
            serial: Tid::ZERO,
            data: Bytes::from_static(b"x"),
            blob: src,
        }],
    );
    assert!(plain.vote(&v).is_err());
}

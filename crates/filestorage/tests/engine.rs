//! The synchronous engine: commit/read round trips, conflicts, delete, restore,
//! undo, explicit tids, abort, oids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use zeoraid_filestorage::undo::undo_id;
use zeoraid_filestorage::FsError;
use zeoraid_storage::{Operation, StorageError, Tid, VoteOutcome};

fn storage_err(e: FsError) -> StorageError {
    e.into()
}

#[test]
fn commit_and_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    assert_eq!(fs.last_transaction(), Tid::ZERO);
    assert_eq!(file_len(&path), 4);

    let t1 = commit(
        &fs,
        txn(
            "first",
            vec![store(0, Tid::ZERO, b"root1"), store(1, Tid::ZERO, b"one1")],
        ),
    );
    let t2 = commit(&fs, txn("second", vec![store(0, t1, b"root2")]));
    assert!(t2 > t1);
    assert_eq!(fs.last_transaction(), t2);

    assert_eq!(fs.load(oid(0)).unwrap(), (Bytes::from_static(b"root2"), t2));
    let r = fs.load_before(oid(0), Tid::MAX).unwrap().unwrap();
    assert_eq!((r.data.as_ref(), r.start, r.end), (&b"root2"[..], t2, None));
    let r = fs.load_before(oid(0), t2).unwrap().unwrap();
    assert_eq!(
        (r.data.as_ref(), r.start, r.end),
        (&b"root1"[..], t1, Some(t2))
    );
    assert!(fs.load_before(oid(0), t1).unwrap().is_none());
    assert!(matches!(
        storage_err(fs.load_before(oid(9), Tid::MAX).unwrap_err()),
        StorageError::PosKey { .. }
    ));
    assert_eq!(fs.load_serial(oid(0), t1).unwrap().as_ref(), b"root1");
    assert!(fs.load_serial(oid(1), t2).is_err());

    let h = fs.history(oid(0), 10).unwrap();
    assert_eq!(h.iter().map(|e| e.tid).collect::<Vec<_>>(), vec![t2, t1]);
    assert_eq!(h[0].meta.description.as_ref(), b"second");
    assert_eq!(h[0].size, 5);
    assert_eq!(fs.history(oid(0), 1).unwrap().len(), 1);

    let txns: Vec<_> = fs
        .iterator(None, None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(txns.len(), 2);
    assert_eq!(txns[0].tid, t1);
    assert_eq!(txns[0].status, b' ');
    assert_eq!(txns[0].records.len(), 2);
    assert_eq!(txns[0].meta.user.as_ref(), b"tester");
    assert_eq!(txns[1].records[0].data.as_deref(), Some(&b"root2"[..]));
    let only2: Vec<_> = fs
        .iterator(Some(t2), None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(only2.len(), 1);
    let only1: Vec<_> = fs
        .iterator(None, Some(t1))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(only1.len(), 1);

    let first = fs.record_iternext(None).unwrap().unwrap();
    assert_eq!(
        (first.oid, first.tid, first.next),
        (oid(0), t2, Some(oid(1)))
    );
    let second = fs.record_iternext(first.next).unwrap().unwrap();
    assert_eq!(
        (second.oid, second.data.as_ref(), second.next),
        (oid(1), &b"one1"[..], None)
    );

    let info = fs.info();
    assert_eq!(info.length, 2);
    assert_eq!(info.size, file_len(&path));

    // Reopen: from our index file, and by scanning.
    let size = fs.size();
    fs.close().unwrap();
    let fs = open(&path);
    assert_eq!((fs.last_transaction(), fs.size(), fs.len()), (t2, size, 2));
    fs.close().unwrap();
    std::fs::remove_file(dir.path().join("Data.fs.zeoraid-index")).unwrap();
    let fs = open(&path);
    assert_eq!((fs.last_transaction(), fs.size(), fs.len()), (t2, size, 2));
    assert_eq!(fs.load(oid(1)).unwrap().0.as_ref(), b"one1");
}

#[test]
fn conflicts_are_collected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let t1 = commit(
        &fs,
        txn(
            "a",
            vec![store(1, Tid::ZERO, b"a"), store(2, Tid::ZERO, b"b")],
        ),
    );
    let _t2 = commit(
        &fs,
        txn("b", vec![store(1, t1, b"a2"), store(2, t1, b"b2")]),
    );
    let size = file_len(&path);
    let t = txn(
        "late",
        vec![
            store(1, t1, b"x"),
            store(3, Tid::ZERO, b"new"),
            store(2, t1, b"y"),
        ],
    );
    match fs.vote(&t).unwrap() {
        VoteOutcome::Conflicts(c) => {
            assert_eq!(c.len(), 2);
            assert_eq!(c[0].oid, oid(1));
            assert_eq!(c[0].read, t1);
            assert_eq!(c[0].data.as_ref(), b"x");
            assert_eq!(c[1].oid, oid(2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(file_len(&path), size);
    // Not voted: another vote goes through.
    commit(&fs, txn("c", vec![store(3, Tid::ZERO, b"new")]));
}

#[test]
fn read_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let t1 = commit(&fs, txn("a", vec![store(1, Tid::ZERO, b"a")]));
    let t2 = commit(&fs, txn("b", vec![store(1, t1, b"b")]));
    let t = txn(
        "c",
        vec![
            Operation::CheckCurrentSerial {
                oid: oid(1),
                serial: t1,
            },
            store(2, Tid::ZERO, b"x"),
        ],
    );
    match storage_err(fs.vote(&t).unwrap_err()) {
        StorageError::ReadConflict {
            oid: o,
            committed,
            read,
        } => {
            assert_eq!((o, committed, read), (oid(1), t2, t1));
        }
        other => panic!("{other:?}"),
    }
    let ok = txn(
        "d",
        vec![
            Operation::CheckCurrentSerial {
                oid: oid(1),
                serial: t2,
            },
            store(2, Tid::ZERO, b"x"),
        ],
    );
    commit(&fs, ok);
}

#[test]
fn delete_object() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let t1 = commit(&fs, txn("a", vec![store(1, Tid::ZERO, b"a")]));
    let bad = txn(
        "del",
        vec![Operation::Delete {
            oid: oid(1),
            serial: Tid::from_u64(5),
        }],
    );
    assert!(matches!(
        storage_err(fs.vote(&bad).unwrap_err()),
        StorageError::Conflict { .. }
    ));
    let missing = txn(
        "del",
        vec![Operation::Delete {
            oid: oid(7),
            serial: Tid::ZERO,
        }],
    );
    assert!(matches!(
        storage_err(fs.vote(&missing).unwrap_err()),
        StorageError::PosKey { .. }
    ));
    let t2 = commit(
        &fs,
        txn(
            "del",
            vec![Operation::Delete {
                oid: oid(1),
                serial: t1,
            }],
        ),
    );
    assert!(matches!(
        storage_err(fs.load_before(oid(1), Tid::MAX).unwrap_err()),
        StorageError::PosKey { .. }
    ));
    assert_eq!(
        fs.load_before(oid(1), t2).unwrap().unwrap().data.as_ref(),
        b"a"
    );
    let last = fs
        .iterator(Some(t2), None)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(last.records[0].data, None);
    assert_eq!(last.records[0].data_txn, None);
    assert!(fs.record_iternext(None).unwrap().is_none());
    assert_eq!(fs.len(), 1);
}

#[test]
fn explicit_tids() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let mut t = txn("a", vec![store(1, Tid::ZERO, b"a")]);
    let tid = Tid::from_u64(0x03ea_0000_0000_0001);
    t.tid = Some(tid);
    assert_eq!(commit(&fs, t), tid);
    for bad in [tid, Tid::from_u64(0x03ea_0000_0000_0000)] {
        let mut t = txn("b", vec![store(2, Tid::ZERO, b"b")]);
        t.tid = Some(bad);
        assert!(matches!(
            storage_err(fs.vote(&t).unwrap_err()),
            StorageError::Transaction(_)
        ));
    }
    let next = commit(&fs, txn("c", vec![store(2, Tid::ZERO, b"b")]));
    assert!(next > tid);
}

#[test]
fn abort_leaves_no_trace_and_one_vote_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let t1 = commit(&fs, txn("a", vec![store(1, Tid::ZERO, b"a")]));
    let size = file_len(&path);
    let before = std::fs::read(&path).unwrap();
    let t = txn("b", vec![store(1, t1, b"bbbbbbbbbbbbbbbbb")]);
    assert!(matches!(fs.vote(&t).unwrap(), VoteOutcome::Voted { .. }));
    assert!(file_len(&path) > size);
    // Readers do not see the voted transaction.
    assert_eq!(fs.load(oid(1)).unwrap().1, t1);
    let second = txn("c", vec![store(2, Tid::ZERO, b"c")]);
    assert!(matches!(
        storage_err(fs.vote(&second).unwrap_err()),
        StorageError::Refused(_)
    ));
    assert!(fs.finish(second.id).is_err());
    fs.abort(t.id).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(fs.last_transaction(), t1);
    fs.abort(t.id).unwrap(); // aborting again is a no-op
    commit(&fs, second);
}

#[test]
fn new_oids_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let a = fs.new_oids(3).unwrap();
    assert_eq!(a, vec![oid(1), oid(2), oid(3)]);
    commit(
        &fs,
        txn(
            "a",
            vec![store(0, Tid::ZERO, b"r"), store(10, Tid::ZERO, b"x")],
        ),
    );
    assert_eq!(fs.new_oids(1).unwrap(), vec![oid(11)]);
    fs.close().unwrap();
    // Saved index remembers handed-out oids.
    let fs = open(&path);
    assert_eq!(fs.new_oids(1).unwrap(), vec![oid(12)]);
    drop(fs);
    // Without the index: the max oid in the file (like FileStorage).
    std::fs::remove_file(dir.path().join("Data.fs.zeoraid-index")).unwrap();
    let fs = open(&path);
    assert_eq!(fs.new_oids(1).unwrap(), vec![oid(11)]);
}

#[test]
fn restore_with_back_pointers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let t1 = Tid::from_u64(0x03ea_0000_0000_0010);
    let t2 = Tid::from_u64(0x03ea_0000_0000_0020);
    let t3 = Tid::from_u64(0x03ea_0000_0000_0030);
    let mut a = txn(
        "r1",
        vec![Operation::Restore {
            oid: oid(5),
            data: Some(Bytes::from_static(b"five")),
            prev_txn: None,
            blob: None,
        }],
    );
    a.tid = Some(t1);
    commit(&fs, a);
    let mut b = txn(
        "r2",
        vec![Operation::Restore {
            oid: oid(5),
            data: None,
            prev_txn: Some(t1),
            blob: None,
        }],
    );
    b.tid = Some(t2);
    b.status = b'p';
    commit(&fs, b);
    let mut c = txn(
        "r3",
        vec![Operation::Restore {
            oid: oid(5),
            data: None,
            prev_txn: None,
            blob: None,
        }],
    );
    c.tid = Some(t3);
    commit(&fs, c);
    let txns: Vec<_> = fs
        .iterator(None, None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(txns[1].status, b'p');
    assert_eq!(txns[1].records[0].data.as_deref(), Some(&b"five"[..]));
    assert_eq!(txns[1].records[0].data_txn, Some(t1));
    assert_eq!(txns[2].records[0].data, None);
    assert_eq!(
        fs.load_before(oid(5), t3).unwrap().unwrap().data.as_ref(),
        b"five"
    );
    assert_eq!(fs.load_serial(oid(5), t2).unwrap().as_ref(), b"five");
    assert!(fs.load_before(oid(5), Tid::MAX).is_err());
    assert_eq!(fs.new_oids(1).unwrap(), vec![oid(6)]);
    // A back-pointer to a transaction without that oid is refused.
    let mut d = txn(
        "r4",
        vec![Operation::Restore {
            oid: oid(9),
            data: None,
            prev_txn: Some(t1),
            blob: None,
        }],
    );
    d.tid = Some(Tid::from_u64(0x03ea_0000_0000_0040));
    assert!(fs.vote(&d).is_err());
}

#[test]
fn undo_and_undo_log() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let t1 = commit(
        &fs,
        txn(
            "create",
            vec![store(1, Tid::ZERO, b"v1"), store(2, Tid::ZERO, b"w1")],
        ),
    );
    let t2 = commit(&fs, txn("change", vec![store(1, t1, b"v2")]));
    let log = fs.undo_log(0, 20, None).unwrap();
    assert_eq!(log.iter().map(|e| e.tid).collect::<Vec<_>>(), vec![t2, t1]);
    assert_eq!(log[0].id, undo_id(t2));
    assert_eq!(log[0].meta.description.as_ref(), b"change");
    assert_eq!(fs.undo_log(1, 20, None).unwrap().len(), 1);
    let only_create: zeoraid_storage::UndoFilter =
        std::sync::Arc::new(|e: &zeoraid_storage::UndoEntry| {
            e.meta.description.as_ref() == b"create"
        });
    assert_eq!(fs.undo_log(0, 20, Some(&only_create)).unwrap()[0].tid, t1);

    // Undo t2: oid 1 back to v1 via a back-pointer.
    let u = txn(
        "undo",
        vec![Operation::Undo {
            undo_id: undo_id(t2),
        }],
    );
    let id = u.id;
    match fs.vote(&u).unwrap() {
        VoteOutcome::Voted { undone } => assert_eq!(undone, vec![oid(1)]),
        other => panic!("{other:?}"),
    }
    let t3 = fs.finish(id).unwrap();
    assert_eq!(fs.load(oid(1)).unwrap(), (Bytes::from_static(b"v1"), t3));
    let rec = fs
        .iterator(Some(t3), None)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(rec.records[0].data.as_deref(), Some(&b"v1"[..]));
    assert_eq!(rec.records[0].data_txn, Some(t1));
    assert_eq!(fs.history(oid(1), 5).unwrap()[0].size, 0);

    // Undo the creation t1 now: oid 1's current data equals t1's (the undo
    // restored it), so it is allowed; both objects become undone creations.
    let u = txn(
        "undo create",
        vec![Operation::Undo {
            undo_id: undo_id(t1),
        }],
    );
    commit(&fs, u);
    assert!(fs.load(oid(1)).is_err());
    assert!(fs.load(oid(2)).is_err());

    // Undo errors: create, change, then undo the create.
    let t5 = commit(&fs, txn("create3", vec![store(3, Tid::ZERO, b"x1")]));
    commit(&fs, txn("change3", vec![store(3, t5, b"x2")]));
    let u = txn(
        "bad undo",
        vec![Operation::Undo {
            undo_id: undo_id(t5),
        }],
    );
    match storage_err(fs.vote(&u).unwrap_err()) {
        StorageError::MultipleUndo(list) => {
            assert_eq!(list.len(), 1);
            assert!(list[0].0.contains("Can't undo an add transaction"));
            assert_eq!(list[0].1, Some(oid(3)));
        }
        other => panic!("{other:?}"),
    }
    let u = txn(
        "bogus",
        vec![Operation::Undo {
            undo_id: Bytes::from_static(b"AAAAAAAAAAE="),
        }],
    );
    assert!(matches!(
        storage_err(fs.vote(&u).unwrap_err()),
        StorageError::Undo { .. }
    ));
}

#[test]
fn undo_of_a_change_followed_by_another_change_fails() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let t1 = commit(&fs, txn("1", vec![store(1, Tid::ZERO, b"a")]));
    let t2 = commit(&fs, txn("2", vec![store(1, t1, b"b")]));
    commit(&fs, txn("3", vec![store(1, t2, b"c")]));
    let u = txn(
        "undo 2",
        vec![Operation::Undo {
            undo_id: undo_id(t2),
        }],
    );
    match storage_err(fs.vote(&u).unwrap_err()) {
        StorageError::MultipleUndo(list) => assert!(list[0].0.contains("modified by a later")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn read_only_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    commit(&fs, txn("a", vec![store(0, Tid::ZERO, b"r")]));
    match zeoraid_filestorage::FileStorage::open(&path, Default::default()) {
        Err(FsError::Locked(p)) => assert!(p.ends_with("Data.fs.lock")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("second writer opened the file"),
    }
    let lock = std::fs::read_to_string(dir.path().join("Data.fs.lock")).unwrap();
    assert_eq!(lock, format!(" {}\n", std::process::id()));
    let ro = open_with(&path, |o| o.read_only = true);
    assert_eq!(ro.load(oid(0)).unwrap().0.as_ref(), b"r");
    assert!(matches!(
        storage_err(ro.vote(&txn("x", vec![])).unwrap_err()),
        StorageError::ReadOnly
    ));
    fs.close().unwrap();
    let again = open(&path);
    assert_eq!(again.len(), 1);
}

#[test]
fn garbage_files_are_corrupt_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    for content in [&b"FS"[..], b"XXXXXXXX", b"FS21\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01 \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"] {
        let path = dir.path().join("g.fs");
        std::fs::write(&path, content).unwrap();
        let _ = std::fs::remove_file(dir.path().join("g.fs.zeoraid-index"));
        match FileStorageOpen::open(&path) {
            Err(FsError::Corrupt { .. }) => {}
            Err(e) => panic!("{e}"),
            Ok(_) => {}
        }
    }
}

struct FileStorageOpen;
impl FileStorageOpen {
    fn open(path: &std::path::Path) -> Result<zeoraid_filestorage::FileStorage, FsError> {
        zeoraid_filestorage::FileStorage::open(path, Default::default())
    }
}

#[test]
fn empty_transaction_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let mut t = txn("", vec![]);
    t.meta.extension = Bytes::from_static(b"\x80\x03}q\x00.");
    let tid = commit(&fs, t);
    let rec = fs.iterator(None, None).unwrap().next().unwrap().unwrap();
    assert_eq!(rec.tid, tid);
    assert!(rec.records.is_empty());
    assert_eq!(rec.meta.extension.as_ref(), b"\x80\x03}q\x00.");
    let mut big = txn("", vec![]);
    big.meta.description = Bytes::from(vec![b'x'; 70000]);
    assert!(fs.vote(&big).is_err());
}

#[test]
fn exceeding_the_quota_is_a_storage_failure_not_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open_with(&path, |o| o.quota = Some(200));
    commit(&fs, txn("small", vec![store(0, Tid::ZERO, b"root")]));
    let err = storage_err(
        fs.vote(&txn("big", vec![store(1, Tid::ZERO, &[b'x'; 300])]))
            .unwrap_err(),
    );
    assert!(
        matches!(&err, StorageError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull),
        "{err:?}"
    );
    assert!(!err.is_answer());
    assert!(err.to_string().contains("quota"));
    // Nothing was written; smaller transactions still fit.
    let len = file_len(&path);
    assert!(len < 200);
    commit(&fs, txn("small again", vec![store(2, Tid::ZERO, b"2")]));
}

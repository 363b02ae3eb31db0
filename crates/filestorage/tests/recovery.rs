//! Crash recovery and the persisted index: torn last transactions are cut like
//! Python's FileStorage cuts them, a corrupt middle is an error, and a stale or
//! corrupt index file is rebuilt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use zeoraid_filestorage::{FileStorage, FsError, Options};
use zeoraid_storage::{Tid, VoteOutcome};

/// Three committed transactions; returns (file bytes, start of the last one, tids).
fn three_transactions(dir: &tempfile::TempDir) -> (Vec<u8>, usize, Vec<Tid>) {
    let path = data_fs(dir);
    let fs = open(&path);
    let t1 = commit(
        &fs,
        txn(
            "1",
            vec![store(0, Tid::ZERO, b"root"), store(1, Tid::ZERO, b"a")],
        ),
    );
    let t2 = commit(&fs, txn("2", vec![store(1, t1, b"b")]));
    let before_last = fs.size() as usize;
    let t3 = commit(
        &fs,
        txn("3", vec![store(1, t2, b"c"), store(2, Tid::ZERO, b"new")]),
    );
    fs.close().unwrap();
    (std::fs::read(&path).unwrap(), before_last, vec![t1, t2, t3])
}

#[test]
fn truncated_last_transaction_is_cut_at_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, last, tids) = three_transactions(&dir);
    for cut in last + 1..bytes.len() {
        let d = tempfile::tempdir().unwrap();
        let path = data_fs(&d);
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let fs = FileStorage::open(&path, Options::default())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(fs.last_transaction(), tids[1], "cut at {cut}");
        assert_eq!(fs.load(oid(1)).unwrap().0.as_ref(), b"b");
        assert!(fs.load(oid(2)).is_err());
        assert_eq!(fs.size() as usize, last);
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..last]);
        // The cut bytes are kept, like Python's Data.fs.tr0.
        assert_eq!(
            std::fs::read(d.path().join("Data.fs.tr0")).unwrap(),
            &bytes[last..cut]
        );
        // And the storage commits on top.
        let t = commit(&fs, txn("again", vec![store(2, Tid::ZERO, b"again")]));
        assert!(t > tids[1]);
    }
}

#[test]
fn read_only_open_does_not_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, last, tids) = three_transactions(&dir);
    let path = data_fs(&dir);
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    std::fs::remove_file(dir.path().join("Data.fs.zeoraid-index")).unwrap();
    let fs = open_with(&path, |o| o.read_only = true);
    assert_eq!(fs.last_transaction(), tids[1]);
    assert_eq!(fs.size() as usize, last);
    assert_eq!(std::fs::read(&path).unwrap().len(), bytes.len() - 3);
}

#[test]
fn checkpoint_transaction_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let t1 = commit(&fs, txn("1", vec![store(0, Tid::ZERO, b"root")]));
    let size = fs.size();
    let t = txn("2", vec![store(0, t1, b"voted")]);
    assert!(matches!(fs.vote(&t).unwrap(), VoteOutcome::Voted { .. }));
    // Simulate a crash between vote and finish: copy the file as it is now.
    let crashed = std::fs::read(&path).unwrap();
    assert_eq!(crashed[size as usize + 16], b'c');
    fs.abort(t.id).unwrap();
    drop(fs);
    std::fs::write(&path, &crashed).unwrap();
    let fs = open(&path);
    assert_eq!((fs.last_transaction(), fs.size()), (t1, size));
    assert_eq!(fs.load(oid(0)).unwrap().0.as_ref(), b"root");
}

#[test]
fn corrupt_middle_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _, _) = three_transactions(&dir);
    let path = data_fs(&dir);
    std::fs::remove_file(dir.path().join("Data.fs.zeoraid-index")).unwrap();
    // Damage the first transaction's length: it then runs past the end.
    let mut bad = bytes.clone();
    bad[4 + 8] = 0x7f;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        FileStorage::open(&path, Options::default()),
        Err(FsError::Corrupt { .. })
    ));
    // Damage a data record's transaction back-pointer in the middle.
    let mut bad = bytes.clone();
    let first_record = 4 + 23 + 6 + 1; // header + "tester" + "1"
    bad[first_record + 24 + 7] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        FileStorage::open(&path, Options::default()),
        Err(FsError::Corrupt { .. })
    ));
    // The file was not truncated by any of this.
    assert_eq!(std::fs::read(&path).unwrap().len(), bytes.len());
}

#[test]
fn complete_transactions_after_a_checkpoint_flag_are_cut_like_python() {
    // What a crash can leave when several finished transactions waited for
    // their status bytes (flips.rs): the first still `c`, later ones flipped
    // or not. None was acknowledged; Python's read_index cuts at the first.
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _, _) = three_transactions(&dir);
    let path = data_fs(&dir);
    std::fs::remove_file(dir.path().join("Data.fs.zeoraid-index")).unwrap();
    let mut bad = bytes.clone();
    bad[4 + 16] = b'c';
    std::fs::write(&path, &bad).unwrap();
    let fs = FileStorage::open(&path, Options::default()).unwrap();
    assert_eq!(fs.last_transaction(), Tid::ZERO);
    fs.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap().len(), 4);
    let saved = std::fs::read(dir.path().join("Data.fs.tr0")).unwrap();
    assert_eq!(saved, bad[4..]);
}

#[test]
fn corrupt_or_stale_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _, tids) = three_transactions(&dir);
    let path = data_fs(&dir);
    let idx = dir.path().join("Data.fs.zeoraid-index");
    let good = std::fs::read(&idx).unwrap();

    // Flipped byte: checksum fails.
    let mut bad = good.clone();
    bad[60] ^= 0xff;
    std::fs::write(&idx, &bad).unwrap();
    let fs = open(&path);
    assert_eq!((fs.last_transaction(), fs.len()), (tids[2], 3));
    assert_eq!(fs.load(oid(1)).unwrap().0.as_ref(), b"c");
    fs.close().unwrap();
    assert_eq!(std::fs::read(&idx).unwrap(), good);

    // Garbage and empty index files.
    for junk in [
        &b""[..],
        b"ZRFSIDX1",
        b"nonsense nonsense nonsense nonsense nonsense nonsense",
    ] {
        std::fs::write(&idx, junk).unwrap();
        let fs = open(&path);
        assert_eq!(fs.len(), 3);
        fs.close().unwrap();
    }

    // An index of another file (replaced data file): inode differs -> rebuilt.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let fs = open(&path);
    assert_eq!((fs.last_transaction(), fs.len()), (tids[2], 3));
    fs.close().unwrap();

    // Index saved, then the file grew behind our back (Python appended): the
    // saved index is used and the rest scanned.
    let fs = open(&path);
    let t4 = commit(&fs, txn("4", vec![store(3, Tid::ZERO, b"d")]));
    let grown = std::fs::read(&path).unwrap();
    drop(fs);
    std::fs::write(&idx, &good).unwrap(); // index from before t4
    assert_eq!(std::fs::read(&path).unwrap(), grown);
    let fs = open(&path);
    assert_eq!((fs.last_transaction(), fs.len()), (t4, 4));
    assert_eq!(fs.load(oid(3)).unwrap().0.as_ref(), b"d");
}

#[test]
fn index_pointing_past_a_truncated_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, tids) = three_transactions(&dir);
    let path = data_fs(&dir);
    let fs = open(&path);
    commit(&fs, txn("4", vec![store(3, Tid::ZERO, b"d")]));
    fs.close().unwrap();
    // Cut the last transaction off after the index was saved.
    let bytes = std::fs::read(&path).unwrap();
    let tl = u64::from_be_bytes(bytes[bytes.len() - 8..].try_into().unwrap()) as usize;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len((bytes.len() - tl - 8) as u64).unwrap();
    drop(f);
    let fs = open(&path);
    assert_eq!((fs.last_transaction(), fs.len()), (tids[2], 3));
    assert!(fs.load(oid(3)).is_err());
}

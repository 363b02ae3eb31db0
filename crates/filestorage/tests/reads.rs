//! Reads around the engine's read sizes: a load reads a record's first
//! `RECORD_READ` bytes in one `pread` and only longer pickles take a second
//! read; the open's scan reads the file in 1 MiB chunks. Records just under,
//! at and over those sizes, a transaction spanning several chunks and a record
//! longer than a chunk must read back exactly — after the commit, after a full
//! scan (no index file, read-only and writable), from our index, and from an
//! index older than the file (incremental scan over updated oids).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use zeoraid_filestorage::format::{DATA_HEADER_LEN, RECORD_READ};
use zeoraid_filestorage::{FileStorage, Options};
use zeoraid_storage::{Oid, Tid};

/// Pickle sizes around the boundaries.
fn sizes() -> Vec<usize> {
    let in_one_read = RECORD_READ - DATA_HEADER_LEN as usize;
    vec![
        1,
        7,
        8,
        9,
        in_one_read - 1,
        in_one_read,
        in_one_read + 1,
        RECORD_READ,
        4096,
        (1 << 20) + 3,
        (2 << 20) + 17,
    ]
}

fn payload(oid: u64, revision: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(31)
                .wrapping_add(oid * 7 + u64::from(revision)) as u8
        })
        .collect()
}

/// Every revision the test wrote: oid → [(tid, data)], oldest first.
type Written = BTreeMap<u64, Vec<(Tid, Vec<u8>)>>;

fn check_all(fs: &FileStorage, written: &Written) {
    assert_eq!(fs.len(), written.len());
    for (o, revisions) in written {
        let oid = Oid::from_u64(*o);
        let (last_tid, last_data) = revisions.last().unwrap();
        let (data, tid) = fs.load(oid).unwrap();
        assert_eq!(
            (tid, data.as_ref()),
            (*last_tid, last_data.as_slice()),
            "oid {o}"
        );
        let current = fs.load_before(oid, Tid::MAX).unwrap().unwrap();
        assert_eq!(current.data.as_ref(), last_data.as_slice(), "oid {o}");
        assert_eq!((current.start, current.end), (*last_tid, None));
        for (i, (tid, data)) in revisions.iter().enumerate() {
            assert_eq!(fs.load_serial(oid, *tid).unwrap().as_ref(), data.as_slice());
            let next = revisions.get(i + 1).map(|(t, _)| *t);
            if let Some(next_tid) = next {
                let before = fs.load_before(oid, next_tid).unwrap().unwrap();
                assert_eq!(before.data.as_ref(), data.as_slice(), "oid {o} rev {i}");
                assert_eq!((before.start, before.end), (*tid, Some(next_tid)));
            }
        }
        assert!(fs.load_before(oid, revisions[0].0).unwrap().is_none());
    }
}

fn reopen_all_ways(path: &std::path::Path, written: &Written) {
    let index = path.with_file_name("Data.fs.zeoraid-index");
    for read_only in [true, false] {
        let _ = std::fs::remove_file(&index);
        let fs = FileStorage::open(
            path,
            Options {
                read_only,
                ..Options::default()
            },
        )
        .unwrap();
        check_all(&fs, written);
        fs.close().unwrap();
    }
    // The writable open saved our index: from it.
    assert!(index.exists());
    let fs = open(path);
    check_all(&fs, written);
    fs.close().unwrap();
}

#[test]
fn records_around_the_read_sizes_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let mut written = Written::new();
    // One transaction per size, then one rewriting each with another size
    // (so loads walk `prev` across records of every size).
    for (i, len) in sizes().into_iter().enumerate() {
        let o = i as u64 + 1;
        let data = payload(o, 0, len);
        let tid = commit(&fs, txn("create", vec![store(o, Tid::ZERO, &data)]));
        written.entry(o).or_default().push((tid, data));
    }
    let mut ops = Vec::new();
    let mut pending = Vec::new();
    for (i, len) in sizes().into_iter().rev().enumerate() {
        let o = i as u64 + 1;
        let data = payload(o, 1, len);
        let serial = written[&o].last().unwrap().0;
        ops.push(store(o, serial, &data));
        pending.push((o, data));
    }
    let tid = commit(&fs, txn("rewrite all, > 3 MiB", ops));
    for (o, data) in pending {
        written.entry(o).or_default().push((tid, data));
    }
    // A transaction of many small records spanning scan chunks.
    let base = 100u64;
    let ops: Vec<_> = (0..3000u64)
        .map(|k| store(base + k, Tid::ZERO, &payload(base + k, 0, 500)))
        .collect();
    let tid = commit(&fs, txn("many", ops));
    for k in 0..3000u64 {
        written
            .entry(base + k)
            .or_default()
            .push((tid, payload(base + k, 0, 500)));
    }
    check_all(&fs, &written);
    fs.close().unwrap();
    reopen_all_ways(&path, &written);

    // Our index is now older than the file: transactions updating known oids
    // and adding new ones are found by the incremental scan.
    let index = dir.path().join("Data.fs.zeoraid-index");
    let saved = std::fs::read(&index).unwrap();
    let fs = open(&path);
    for round in 0..3u8 {
        let mut ops = Vec::new();
        let mut pending = Vec::new();
        for o in [1u64, 5, 11, 150, 5000 + u64::from(round)] {
            let serial = written.get(&o).map_or(Tid::ZERO, |r| r.last().unwrap().0);
            let data = payload(o, 2 + round, 300 + usize::from(round) * 700);
            ops.push(store(o, serial, &data));
            pending.push((o, data));
        }
        let tid = commit(&fs, txn("update", ops));
        for (o, data) in pending {
            written.entry(o).or_default().push((tid, data));
        }
    }
    drop(fs);
    std::fs::write(&index, &saved).unwrap();
    let fs = open(&path);
    check_all(&fs, &written);
    fs.close().unwrap();
}

#[test]
fn two_records_of_one_oid_in_a_transaction_survive_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let t1 = commit(&fs, txn("1", vec![store(1, Tid::ZERO, b"first")]));
    let t2 = commit(
        &fs,
        txn(
            "2",
            vec![
                store(1, t1, b"second"),
                store(2, Tid::ZERO, b"other"),
                store(1, t1, b"third"),
            ],
        ),
    );
    fs.close().unwrap();
    std::fs::remove_file(dir.path().join("Data.fs.zeoraid-index")).unwrap();
    let fs = open(&path);
    assert_eq!(fs.len(), 2);
    let (data, tid) = fs.load(oid(1)).unwrap();
    assert_eq!((data.as_ref(), tid), (&b"third"[..], t2));
    assert_eq!(
        fs.load_before(oid(1), t2).unwrap().unwrap().data.as_ref(),
        b"first"
    );
    assert_eq!(fs.load(oid(2)).unwrap().0.as_ref(), b"other");
}

//! Damaged files never panic: every byte of a small database is flipped in turn
//! and the file opened and read through every API (with and without our index
//! file, read-only and writable). Errors are fine; panics are not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use zeoraid_filestorage::undo::undo_id;
use zeoraid_filestorage::{FileStorage, Options, PackOptions};
use zeoraid_storage::{Operation, Tid};

fn exercise(fs: &FileStorage, pack: bool) {
    if let Ok(iter) = fs.iterator(None, None) {
        for t in iter {
            if t.is_err() {
                break;
            }
        }
    }
    let tids: Vec<Tid> = fs
        .iterator(None, None)
        .map(|it| it.filter_map(Result::ok).map(|t| t.tid).collect())
        .unwrap_or_default();
    let _ = fs.iterator(tids.get(1).copied(), None).map(|it| it.count());
    for o in 0..4 {
        let _ = fs.load(oid(o));
        let _ = fs.load_before(oid(o), Tid::MAX);
        for t in &tids {
            let _ = fs.load_before(oid(o), *t);
            let _ = fs.load_serial(oid(o), *t);
        }
        let _ = fs.history(oid(o), 100);
    }
    let _ = fs.record_iternext(None);
    let _ = fs.undo_log(0, 100, None);
    if !fs.options().read_only {
        if let Some(t) = tids.first() {
            let u = txn(
                "undo",
                vec![Operation::Undo {
                    undo_id: undo_id(*t),
                }],
            );
            if fs.vote(&u).is_ok() {
                let _ = fs.abort(u.id);
            }
        }
        let restore = txn(
            "restore",
            vec![Operation::Restore {
                oid: oid(1),
                data: None,
                prev_txn: tids.first().copied(),
                blob: None,
            }],
        );
        if fs.vote(&restore).is_ok() {
            let _ = fs.abort(restore.id);
        }
        if pack {
            let _ = fs.pack(
                4102444800.0,
                PackOptions {
                    gc: true,
                    references: zeoraid_filestorage::refs::default_references(),
                },
            );
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let t1 = commit(
        &fs,
        txn(
            "1",
            vec![
                store(0, Tid::ZERO, &record(&[1], b"r")),
                store(1, Tid::ZERO, &record(&[], b"a")),
            ],
        ),
    );
    let t2 = commit(
        &fs,
        txn(
            "2",
            vec![
                store(1, t1, &record(&[2], b"b")),
                store(2, Tid::ZERO, &record(&[], b"c")),
            ],
        ),
    );
    commit(
        &fs,
        txn(
            "3",
            vec![Operation::Undo {
                undo_id: undo_id(t2),
            }],
        ),
    );
    fs.close().unwrap();
    let good = std::fs::read(&path).unwrap();
    let index = std::fs::read(dir.path().join("Data.fs.zeoraid-index")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let wpath = work.path().join("Data.fs");
    for i in 0..good.len() {
        for flip in [0xffu8] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            for (with_index, read_only) in [(false, false), (true, true)] {
                for f in std::fs::read_dir(work.path()).unwrap() {
                    std::fs::remove_file(f.unwrap().path()).unwrap();
                }
                std::fs::write(&wpath, &bad).unwrap();
                if with_index {
                    std::fs::write(work.path().join("Data.fs.zeoraid-index"), &index).unwrap();
                }
                let opts = Options {
                    read_only,
                    ..Options::default()
                };
                let result = std::panic::catch_unwind(|| {
                    if let Ok(fs) = FileStorage::open(&wpath, opts) {
                        exercise(&fs, !with_index);
                        let _ = fs.close();
                    }
                });
                assert!(
                    result.is_ok(),
                    "panic with byte {i} ^ {flip:#x} (index {with_index}, ro {read_only})"
                );
            }
        }
    }
}

//! Helpers shared by the FileStorage tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use zeoraid_filestorage::{FileStorage, Options};
use zeoraid_storage::{Oid, Operation, Tid, Transaction, TransactionMeta, TxnId, VoteOutcome};

static NEXT_TXN: AtomicU64 = AtomicU64::new(1);

pub fn oid(n: u64) -> Oid {
    Oid::from_u64(n)
}

pub fn meta(desc: &str) -> TransactionMeta {
    TransactionMeta {
        user: Bytes::from_static(b"tester"),
        description: Bytes::copy_from_slice(desc.as_bytes()),
        extension: Bytes::new(),
    }
}

pub fn txn(desc: &str, ops: Vec<Operation>) -> Transaction {
    let mut t = Transaction::new(TxnId(NEXT_TXN.fetch_add(1, Ordering::Relaxed)), meta(desc));
    t.ops = ops;
    t
}

pub fn store(o: u64, serial: Tid, data: &[u8]) -> Operation {
    Operation::Store {
        oid: oid(o),
        serial,
        data: Bytes::copy_from_slice(data),
    }
}

/// A ZODB-like record: a class pickle, then a state pickle that is a list of
/// persistent references (BINPERSID of 8-byte oids) plus a payload.
pub fn record(refs: &[u64], payload: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.".to_vec();
    p.extend_from_slice(b"\x80\x03]q\x01");
    for r in refs {
        p.push(b'C');
        p.push(8);
        p.extend_from_slice(&r.to_be_bytes());
        p.push(b'Q');
        p.push(b'a');
    }
    p.push(b'C');
    p.push(payload.len() as u8);
    p.extend_from_slice(payload);
    p.push(b'a');
    p.push(b'.');
    p
}

pub fn open(path: &Path) -> FileStorage {
    FileStorage::open(path, Options::default()).unwrap()
}

pub fn open_with(path: &Path, f: impl FnOnce(&mut Options)) -> FileStorage {
    let mut o = Options::default();
    f(&mut o);
    FileStorage::open(path, o).unwrap()
}

/// Vote and finish; panics on conflicts.
pub fn commit(fs: &FileStorage, t: Transaction) -> Tid {
    let id = t.id;
    match fs.vote(&t).unwrap() {
        VoteOutcome::Voted { .. } => fs.finish(id).unwrap(),
        VoteOutcome::Conflicts(c) => panic!("unexpected conflicts {c:?}"),
    }
}

pub fn data_fs(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("Data.fs")
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

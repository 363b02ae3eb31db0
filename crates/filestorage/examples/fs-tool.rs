//! `fs-tool`: drive the FileStorage engine from the command line with JSON, for
//! the Python interoperability tests (tests/python/test_filestorage_interop.py).
//! Bytes are hex strings; oids and tids are 16-digit hex.
//!
//! ```text
//! fs-tool dump PATH [--blob-dir DIR]             read-only; everything as JSON
//! fs-tool commit PATH [--blob-dir DIR] < script  transactions from JSON; results as JSON
//! fs-tool pack PATH UNIX_TIME [--no-gc] [--blob-dir DIR]
//! fs-tool new-oids PATH COUNT
//! fs-tool hold PATH                              take the lock until stdin closes
//! ```
//!
//! A commit script is a list of transactions:
//! `{"user": hex, "description": hex, "extension": hex, "tid": hex?, "status": " ",
//!   "ops": [{"op": "store", "oid", "serial", "data"}, {"op": "store_blob", ..., "blob": path},
//!   {"op": "restore", "oid", "data": hex|null, "prev_txn": hex|null, "blob": path?},
//!   {"op": "delete", "oid", "serial"}, {"op": "check", "oid", "serial"},
//!   {"op": "undo", "tid"}]}`; each answer is `{"tid", "undone"}`, `{"conflicts"}` or
//! `{"error"}` (`"abort": true` in a transaction votes and then aborts it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;
use serde_json::{json, Value};
use zeoraid_filestorage::undo::undo_id;
use zeoraid_filestorage::{FileStorage, Options, PackOptions};
use zeoraid_storage::{
    Oid, Operation, StorageError, Tid, Transaction, TransactionMeta, TxnId, VoteOutcome,
};

fn h(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}

fn id_hex(raw: &[u8; 8]) -> Value {
    Value::String(hex::encode(raw))
}

fn parse8(v: &Value) -> [u8; 8] {
    let s = v.as_str().expect("hex id");
    let raw = hex::decode(s).expect("hex");
    raw.try_into().expect("8 bytes")
}

fn bytes_of(v: &Value) -> Bytes {
    match v.as_str() {
        Some(s) => Bytes::from(hex::decode(s).expect("hex")),
        None => Bytes::new(),
    }
}

fn die(msg: String) -> ! {
    eprintln!("fs-tool: {msg}");
    std::process::exit(2)
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut positional = Vec::new();
    let mut opts = Options::default();
    let mut gc = true;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--blob-dir" => {
                i += 1;
                opts.blob_dir = Some(PathBuf::from(&args[i]));
            }
            "--no-gc" => gc = false,
            "--no-keep-old" => opts.pack_keep_old = false,
            other => positional.push(other.to_string()),
        }
        i += 1;
    }
    let (cmd, path) = match (positional.first(), positional.get(1)) {
        (Some(c), Some(p)) => (c.clone(), PathBuf::from(p)),
        _ => die("usage: fs-tool dump|commit|pack|new-oids|hold PATH ...".into()),
    };
    let out = match cmd.as_str() {
        "dump" => {
            opts.read_only = true;
            let fs = FileStorage::open(&path, opts).unwrap_or_else(|e| die(e.to_string()));
            dump(&fs)
        }
        "commit" => {
            let fs = FileStorage::open(&path, opts).unwrap_or_else(|e| die(e.to_string()));
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).unwrap();
            let script: Value = serde_json::from_str(&input).unwrap();
            let r = commit(&fs, &script);
            fs.close().unwrap();
            r
        }
        "pack" => {
            let t: f64 = positional
                .get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| die("pack PATH UNIX_TIME".into()));
            let fs = FileStorage::open(&path, opts).unwrap_or_else(|e| die(e.to_string()));
            let po = PackOptions {
                gc,
                references: zeoraid_filestorage::refs::default_references(),
            };
            fs.pack(t, po).unwrap_or_else(|e| die(e.to_string()));
            fs.close().unwrap();
            json!({"size": std::fs::metadata(&path).unwrap().len()})
        }
        "new-oids" => {
            let n: u32 = positional.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            let fs = FileStorage::open(&path, opts).unwrap_or_else(|e| die(e.to_string()));
            let oids = fs.new_oids(n).unwrap();
            fs.close().unwrap();
            Value::Array(oids.iter().map(|o| id_hex(&o.0)).collect())
        }
        "hold" => {
            let fs = FileStorage::open(&path, opts).unwrap_or_else(|e| die(e.to_string()));
            println!("locked");
            let mut sink = String::new();
            let _ = std::io::stdin().read_to_string(&mut sink);
            fs.close().unwrap();
            return;
        }
        other => die(format!("unknown command {other}")),
    };
    println!("{}", serde_json::to_string(&out).unwrap());
}

fn load_json(fs: &FileStorage, oid: Oid, before: Tid) -> Value {
    match fs.load_before(oid, before) {
        Ok(Some(r)) => json!({
            "data": h(&r.data), "start": id_hex(&r.start.0),
            "end": r.end.map(|e| id_hex(&e.0)),
        }),
        Ok(None) => Value::Null,
        Err(e) => match StorageError::from(e) {
            StorageError::PosKey { .. } => json!("POSKeyError"),
            other => json!(format!("error: {other}")),
        },
    }
}

fn dump(fs: &FileStorage) -> Value {
    let mut txns = Vec::new();
    let mut oids = std::collections::BTreeSet::new();
    let mut tids = Vec::new();
    for t in fs.iterator(None, None).unwrap() {
        let t = t.unwrap_or_else(|e| die(e.to_string()));
        tids.push(t.tid);
        let records: Vec<Value> = t
            .records
            .iter()
            .map(|r| {
                oids.insert(r.oid);
                json!({
                    "oid": id_hex(&r.oid.0), "tid": id_hex(&r.tid.0),
                    "data": r.data.as_ref().map(|d| h(d)),
                    "data_txn": r.data_txn.map(|t| id_hex(&t.0)),
                    "has_blob": r.has_blob,
                })
            })
            .collect();
        txns.push(json!({
            "tid": id_hex(&t.tid.0), "status": String::from_utf8_lossy(&[t.status]),
            "user": h(&t.meta.user), "description": h(&t.meta.description),
            "extension": h(&t.meta.extension), "records": records,
        }));
    }
    let mut objects = serde_json::Map::new();
    for oid in oids {
        let history: Vec<Value> = match fs.history(oid, 1000) {
            Ok(hs) => hs
                .iter()
                .map(|e| {
                    json!({"tid": id_hex(&e.tid.0), "size": e.size,
                    "user": h(&e.meta.user), "description": h(&e.meta.description)})
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut before = serde_json::Map::new();
        for t in tids.iter().chain(std::iter::once(&Tid::MAX)) {
            before.insert(hex::encode(t.0), load_json(fs, oid, *t));
        }
        let blobs: Vec<Value> = tids
            .iter()
            .filter(|t| fs.load_blob(oid, **t).is_ok())
            .map(|t| {
                let p = fs.load_blob(oid, *t).unwrap();
                json!({"tid": id_hex(&t.0), "path": p.display().to_string(),
                    "data": h(&std::fs::read(&p).unwrap())})
            })
            .collect();
        objects.insert(
            hex::encode(oid.0),
            json!({"history": history, "load_before": before, "blobs": blobs}),
        );
    }
    let undo: Vec<Value> = fs
        .undo_log(0, 1000, None)
        .unwrap()
        .iter()
        .map(|e| {
            json!({"id": String::from_utf8_lossy(&e.id), "tid": id_hex(&e.tid.0),
            "size": e.size, "description": h(&e.meta.description)})
        })
        .collect();
    let info = fs.info();
    json!({
        "last_tid": id_hex(&fs.last_transaction().0),
        "size": info.size, "length": info.length,
        "transactions": txns, "objects": objects, "undo_log": undo,
    })
}

fn commit(fs: &FileStorage, script: &Value) -> Value {
    let mut answers = Vec::new();
    for (n, t) in script.as_array().expect("a list").iter().enumerate() {
        let mut txn = Transaction::new(
            TxnId(n as u64 + 1),
            TransactionMeta {
                user: bytes_of(&t["user"]),
                description: bytes_of(&t["description"]),
                extension: bytes_of(&t["extension"]),
            },
        );
        if !t["tid"].is_null() {
            txn.tid = Some(Tid(parse8(&t["tid"])));
        }
        if let Some(s) = t["status"].as_str() {
            txn.status = s.as_bytes().first().copied().unwrap_or(b' ');
        }
        for op in t["ops"].as_array().expect("ops") {
            let oid = || Oid(parse8(&op["oid"]));
            let serial = || Tid(parse8(&op["serial"]));
            let blob = op["blob"].as_str().map(PathBuf::from);
            txn.ops.push(match op["op"].as_str().expect("op") {
                "store" => Operation::Store {
                    oid: oid(),
                    serial: serial(),
                    data: bytes_of(&op["data"]),
                },
                "store_blob" => Operation::StoreBlob {
                    oid: oid(),
                    serial: serial(),
                    data: bytes_of(&op["data"]),
                    blob: blob.expect("blob"),
                },
                "restore" => Operation::Restore {
                    oid: oid(),
                    data: op["data"]
                        .as_str()
                        .map(|s| Bytes::from(hex::decode(s).unwrap())),
                    prev_txn: (!op["prev_txn"].is_null()).then(|| Tid(parse8(&op["prev_txn"]))),
                    blob,
                },
                "delete" => Operation::Delete {
                    oid: oid(),
                    serial: serial(),
                },
                "check" => Operation::CheckCurrentSerial {
                    oid: oid(),
                    serial: serial(),
                },
                "undo" => Operation::Undo {
                    undo_id: undo_id(Tid(parse8(&op["tid"]))),
                },
                other => die(format!("unknown op {other}")),
            });
        }
        let answer = match fs.vote(&txn) {
            Ok(VoteOutcome::Voted { undone }) => {
                if t["abort"].as_bool() == Some(true) {
                    fs.abort(txn.id).unwrap();
                    json!({"aborted": true})
                } else {
                    match fs.finish(txn.id) {
                        Ok(tid) => json!({"tid": id_hex(&tid.0),
                            "undone": undone.iter().map(|o| id_hex(&o.0)).collect::<Vec<_>>()}),
                        Err(e) => json!({"error": e.to_string()}),
                    }
                }
            }
            Ok(VoteOutcome::Conflicts(c)) => json!({"conflicts": c.iter().map(|c| json!({
                "oid": id_hex(&c.oid.0), "committed": id_hex(&c.committed.0),
                "read": id_hex(&c.read.0)})).collect::<Vec<_>>()}),
            Err(e) => json!({"error": e.to_string()}),
        };
        answers.push(answer);
    }
    Value::Array(answers)
}

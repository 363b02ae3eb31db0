//! Blobs: stored with `StoreBlob` or `Restore`, read back through `load_blob`,
//! the caller's file left alone, undo bringing an old blob back (ZODB's blob
//! storage tests). Blob objects are written as ZODB writes them (records of
//! class `ZODB.blob.Blob`, [`blob_record`]), so the cases hold for Python
//! storages behind a ZEO server too, which tell blobs by that class.

use std::path::Path;

use zeoraid_storage::{Oid, Operation, Storage, Tid, TransactionMeta};

use super::fresh;
use crate::check::*;
use crate::data::{blob_record, record};
use crate::harness::Harness;
use crate::{check, check_eq};

fn write_file(dir: &Path, name: &str, content: &[u8]) -> Result<std::path::PathBuf, Failure> {
    let path = dir.join(name);
    std::fs::write(&path, content)
        .map_err(|e| Failure(format!("writing test blob {}: {e}", path.display())))?;
    Ok(path)
}

async fn blob_content<S: Storage + ?Sized>(
    s: &S,
    oid: Oid,
    serial: Tid,
) -> Result<Vec<u8>, Failure> {
    let path = s
        .load_blob(oid, serial)
        .await
        .ctx(&format!("load_blob({oid}, {serial:?})"))?;
    std::fs::read(&path).map_err(|e| {
        Failure(format!(
            "load_blob({oid}, {serial:?}) returned {} which cannot be read: {e}",
            path.display()
        ))
    })
}

fn store_blob(oid: Oid, serial: Tid, blob: std::path::PathBuf) -> Operation {
    Operation::StoreBlob {
        oid,
        serial,
        data: blob_record(),
        blob,
    }
}

pub async fn store_and_load_blobs<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let dir = tempfile::tempdir().map_err(|e| Failure(format!("tempdir: {e}")))?;
    let o = new_oids(&*s, 2).await?;
    let (a, plain) = (o[0], o[1]);
    let f1 = write_file(dir.path(), "one", b"blob number one")?;
    let t1 = commit(
        &*s,
        vec![
            store_blob(a, Tid::ZERO, f1.clone()),
            store(plain, Tid::ZERO, record("plain")),
        ],
    )
    .await?;
    check_eq!(
        std::fs::read(&f1).ok(),
        Some(b"blob number one".to_vec()),
        "the caller's blob file must be left in place"
    );
    check_eq!(
        blob_content(&*s, a, t1).await?,
        b"blob number one".to_vec(),
        "blob content"
    );
    check_eq!(
        load_current(&*s, a).await?,
        (blob_record(), t1),
        "blob record data"
    );
    let f2 = write_file(dir.path(), "two", b"the second blob, longer than the first")?;
    let t2 = commit(&*s, vec![store_blob(a, t1, f2)]).await?;
    check_eq!(
        blob_content(&*s, a, t2).await?,
        b"the second blob, longer than the first".to_vec(),
        "second blob revision"
    );
    check_eq!(
        blob_content(&*s, a, t1).await?,
        b"blob number one".to_vec(),
        "first blob revision after a second was stored"
    );
    check!(
        s.load_blob(a, Tid::from_u64(t2.as_u64() + 1))
            .await
            .is_err(),
        "load_blob of a serial the object does not have succeeded"
    );
    check!(
        s.load_blob(plain, t1).await.is_err(),
        "load_blob of an object without a blob succeeded"
    );
    let txns = transactions(&*s, None, None).await?;
    // The last record of each oid: a blob stored through ZEO is `storea` +
    // `storeBlob*`, which Python's FileStorage writes as two records.
    let mut flags: Vec<(Oid, bool)> = Vec::new();
    for r in &txns[0].records {
        flags.retain(|(oid, _)| *oid != r.oid);
        flags.push((r.oid, r.has_blob));
    }
    flags.sort();
    check_eq!(
        flags,
        vec![(a, true), (plain, false)],
        "has_blob in the iterator (last record of each oid)"
    );
    Ok(())
}

pub async fn restore_and_undo_blobs<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let dir = tempfile::tempdir().map_err(|e| Failure(format!("tempdir: {e}")))?;
    let o = new_oids(&*s, 2).await?;
    let (a, b) = (o[0], o[1]);
    let f = write_file(dir.path(), "restored", b"restored blob")?;
    let t1 = commit(
        &*s,
        vec![Operation::Restore {
            oid: b,
            data: Some(blob_record()),
            prev_txn: None,
            blob: Some(f.clone()),
        }],
    )
    .await?;
    check_eq!(
        blob_content(&*s, b, t1).await?,
        b"restored blob".to_vec(),
        "restored blob"
    );
    check!(f.exists(), "the caller's restored blob file was removed");
    if !h.capabilities().undo {
        return Ok(());
    }
    let f1 = write_file(dir.path(), "v1", b"version one")?;
    let f2 = write_file(dir.path(), "v2", b"version two")?;
    let t2 = commit(&*s, vec![store_blob(a, Tid::ZERO, f1)]).await?;
    let t3 = commit(&*s, vec![store_blob(a, t2, f2)]).await?;
    let log = s.undo_log(0, 10, None).await.ctx("undo_log")?;
    let id = log
        .iter()
        .find(|e| e.tid == t3)
        .map(|e| e.id.clone())
        .ok_or_else(|| Failure("t3 not in the undo log".into()))?;
    let (t4, _) = commit_txn(
        &*s,
        txn(
            TransactionMeta::default(),
            vec![Operation::Undo { undo_id: id }],
        ),
    )
    .await?;
    check_eq!(
        load_current(&*s, a).await?,
        (blob_record(), t4),
        "data after undo"
    );
    check_eq!(
        blob_content(&*s, a, t4).await?,
        b"version one".to_vec(),
        "blob of the undo revision (the undone change's previous blob)"
    );
    Ok(())
}

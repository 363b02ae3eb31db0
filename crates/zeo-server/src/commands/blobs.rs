//! Blobs over the wire. Upload: `storeBlobStart()`, `storeBlobChunk(chunk)`×n,
//! `storeBlobEnd(oid, serial, data, txn_id)` write a temp file in the server's
//! blob temp dir that becomes a `StoreBlob` operation; `storeBlobShared(oid,
//! serial, data, filename, txn_id)` names a file the client wrote into the shared
//! blob directory. Download: `sendBlob(oid, serial)` streams `receiveBlobStart`,
//! `receiveBlobChunk`×n (59000-byte chunks), `receiveBlobStop`, then replies None.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, error};
use zeoraid_storage::{Oid, StorageError};
use zeoraid_wire::Value;

use super::Args;
use crate::error::ZeoError;
use crate::session::{LoggedOp, Session};

/// Blob chunk size, both directions (ZEO's).
pub const BLOB_CHUNK_SIZE: usize = 59000;

fn io_err(e: std::io::Error) -> ZeoError {
    ZeoError::from(StorageError::Io(e))
}

pub(crate) async fn store_blob_start(session: &mut Session) -> Result<Value, ZeoError> {
    if session.blob_upload.is_some() {
        return Err(ZeoError::assertion_error(
            "storeBlobStart while a blob upload is open",
        ));
    }
    let path = session.server.blob_upload_path(session.conn.id);
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(io_err)?;
    session.blob_upload = Some((path, file));
    Ok(Value::None)
}

pub(crate) async fn store_blob_chunk(
    session: &mut Session,
    mut a: Args,
) -> Result<Value, ZeoError> {
    let chunk = a.bytes(0)?;
    let Some((_, file)) = session.blob_upload.as_mut() else {
        return Err(ZeoError::assertion_error(
            "storeBlobChunk without storeBlobStart",
        ));
    };
    file.write_all(&chunk).await.map_err(io_err)?;
    Ok(Value::None)
}

fn check_txn(session: &Session, id: &Value) -> Result<(), ZeoError> {
    if session.read_only {
        return Err(ZeoError::read_only());
    }
    match &session.txn {
        None => Err(ZeoError::storage_transaction(vec![Value::None, id.clone()])),
        Some(t) if t.client_id != *id => Err(ZeoError::storage_transaction(vec![
            t.client_id.clone(),
            id.clone(),
        ])),
        Some(_) => Ok(()),
    }
}

fn push_blob(
    session: &mut Session,
    oid: Oid,
    serial: zeoraid_storage::Tid,
    data: bytes::Bytes,
    blob: PathBuf,
) {
    if let Some(served) = &session.served {
        served.stat(|s| s.stores += 1);
    }
    if let Some(txn) = session.txn.as_mut() {
        txn.blob_files.push(blob.clone());
        txn.log.push(LoggedOp::StoreBlob {
            oid,
            serial,
            data,
            blob,
        });
    }
}

pub(crate) async fn store_blob_end(session: &mut Session, mut a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let serial = a.serial(1)?;
    let data = a.bytes(2)?;
    let id = a.get(3)?.clone();
    check_txn(session, &id)?;
    let Some((path, mut file)) = session.blob_upload.take() else {
        return Err(ZeoError::assertion_error(
            "storeBlobEnd without storeBlobStart",
        ));
    };
    if let Err(e) = file.flush().await {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(io_err(e));
    }
    drop(file);
    push_blob(session, oid, serial, data, path);
    Ok(Value::None)
}

/// ZODB's bushy blob layout: one directory level per oid byte (`0x00/…/0x65`).
pub fn bushy_path(oid: Oid) -> PathBuf {
    oid.0.iter().map(|b| format!("0x{b:02x}")).collect()
}

pub(crate) fn store_blob_shared(session: &mut Session, mut a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let serial = a.serial(1)?;
    let data = a.bytes(2)?;
    let filename = a.str(3)?.to_owned();
    let id = a.get(4)?.clone();
    check_txn(session, &id)?;
    let stem_ok = filename.ends_with(".tmp")
        || filename
            .char_indices()
            .last()
            .is_some_and(|(i, _)| filename[..i].ends_with(".tmp"));
    if filename.contains(std::path::MAIN_SEPARATOR) || filename.contains('/') || !stem_ok {
        error!(conn = %session.label(), "We're under attack! (bad filename to storeBlobShared, {filename:?})");
        return Err(ZeoError::value_error(filename));
    }
    let served = session.served()?;
    let Some(dir) = &served.shared_blob_dir else {
        return Err(ZeoError::value_error(
            "storeBlobShared: this server has no shared blob directory",
        ));
    };
    let path = dir.join(bushy_path(oid)).join(&filename);
    push_blob(session, oid, serial, data, path);
    Ok(Value::None)
}

pub(crate) async fn send_blob(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let oid = a.oid(0)?;
    let serial = a.tid(1)?;
    let served = session.served()?;
    debug!(conn = %session.label(), "Blob requested {oid} {serial:?}");
    let path = served.storage.load_blob(oid, serial).await?;
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ZeoError::pos_key(oid));
        }
        Err(e) => return Err(io_err(e)),
    };
    let conn = session.conn.clone();
    let key = vec![Value::from(oid.0), Value::from(serial.0)];
    conn.send_own_callback("receiveBlobStart", key.clone());
    let mut buf = vec![0u8; BLOB_CHUNK_SIZE];
    loop {
        // Fill a whole chunk (a short read is not the end of the file).
        let mut filled = 0;
        while filled < BLOB_CHUNK_SIZE {
            let n = file.read(&mut buf[filled..]).await.map_err(io_err)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        conn.wait_room().await;
        let mut args = key.clone();
        args.push(Value::Bytes(bytes::Bytes::copy_from_slice(&buf[..filled])));
        conn.send_own_callback("receiveBlobChunk", args);
        if filled < BLOB_CHUNK_SIZE {
            break;
        }
    }
    conn.send_own_callback("receiveBlobStop", key);
    Ok(Value::None)
}

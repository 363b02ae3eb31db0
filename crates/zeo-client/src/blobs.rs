//! Blobs both ways. Storing: after a plain `storea` for the oid (as ZEO clients
//! do), either `storeBlobStart` + `storeBlobChunk`×n (59000-byte chunks) +
//! `storeBlobEnd`, or, with a shared blob directory, a copy of the file next to the
//! server's blobs and `storeBlobShared`. Loading: `sendBlob(oid, serial)`, whose
//! `receiveBlob*` callbacks fill the blob cache (`<blob-dir>/<oid>/<tid>.blob`), or a
//! direct read of the server's directory when it is shared.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use zeoraid_storage::{Oid, Tid};
use zeoraid_wire::Value;

use crate::error::ClientError;
use crate::rpc::Session;

/// Blob chunk size on the wire, both directions (ZEO's).
pub const BLOB_CHUNK_SIZE: usize = 59_000;

/// The cache file of a blob revision: `<dir>/<oid hex>/<tid hex>.blob`.
pub(crate) fn cache_path(dir: &Path, oid: Oid, tid: Tid) -> PathBuf {
    dir.join(format!("{:016x}", oid.as_u64()))
        .join(format!("{:016x}.blob", tid.as_u64()))
}

/// Where a download goes until it is complete.
pub(crate) fn download_path(cache_path: &Path) -> PathBuf {
    cache_path.with_extension("dl")
}

/// The layout of a ZODB blob directory (its `.layout` file; `bushy` by default).
fn layout_is_lawn(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(".layout"))
        .map(|s| s.trim() == "lawn")
        .unwrap_or(false)
}

/// The directory of `oid` in a ZODB blob directory (bushy: `0x00/…/0x2a`; lawn:
/// `0x2a`).
pub(crate) fn server_oid_dir(dir: &Path, oid: Oid) -> PathBuf {
    if layout_is_lawn(dir) {
        dir.join(oid.to_string())
    } else {
        let mut path = dir.to_path_buf();
        for byte in oid.as_bytes() {
            path.push(format!("0x{byte:02x}"));
        }
        path
    }
}

/// A blob file in a ZODB blob directory: `<oid dir>/<tid_repr>.blob`.
pub(crate) fn server_blob_path(dir: &Path, oid: Oid, tid: Tid) -> PathBuf {
    // tid_repr is oid_repr applied to the tid bytes.
    server_oid_dir(dir, oid).join(format!("{}.blob", Oid(tid.0)))
}

/// Sends the blob in `file` for `oid` as ZEO clients do, after the `storea` that
/// the caller sent for the same oid: `storeBlobStart`, chunks, `storeBlobEnd`.
pub(crate) async fn send_blob(
    session: &Session,
    file: &Path,
    end_args: Value,
    limit: Duration,
) -> Result<(), ClientError> {
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|e| ClientError::Io(format!("opening blob {}: {e}", file.display())))?;
    session
        .send_oneway("storeBlobStart", Value::Tuple(vec![]), limit)
        .await?;
    let mut buf = vec![0u8; BLOB_CHUNK_SIZE];
    loop {
        let mut filled = 0;
        while filled < BLOB_CHUNK_SIZE {
            let n = f
                .read(&mut buf[filled..])
                .await
                .map_err(|e| ClientError::Io(format!("reading blob {}: {e}", file.display())))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let chunk = Value::Bytes(Bytes::copy_from_slice(&buf[..filled]));
        session
            .send_oneway("storeBlobChunk", Value::Tuple(vec![chunk]), limit)
            .await?;
        if filled < BLOB_CHUNK_SIZE {
            break;
        }
    }
    session.send_oneway("storeBlobEnd", end_args, limit).await
}

static SHARED_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Copies `file` into the oid's directory of a shared blob directory under a
/// `.tmp` name the server accepts (`storeBlobShared` moves it into place); returns
/// the file name to send.
pub(crate) async fn stage_shared(dir: &Path, oid: Oid, file: &Path) -> Result<String, ClientError> {
    let oid_dir = server_oid_dir(dir, oid);
    tokio::fs::create_dir_all(&oid_dir)
        .await
        .map_err(|e| ClientError::Io(format!("creating {}: {e}", oid_dir.display())))?;
    let name = format!(
        "zeoraid-{}-{}.tmp",
        std::process::id(),
        SHARED_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let target = oid_dir.join(&name);
    tokio::fs::copy(file, &target)
        .await
        .map_err(|e| ClientError::Io(format!("copying blob to {}: {e}", target.display())))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let dir = Path::new("/nonexistent-blobs");
        assert_eq!(
            server_blob_path(dir, Oid::from_u64(0x2a), Tid::from_u64(0x03f0_0000_0000_0001)),
            PathBuf::from(
                "/nonexistent-blobs/0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x2a/0x03f0000000000001.blob"
            )
        );
        let c = cache_path(dir, Oid::from_u64(1), Tid::from_u64(2));
        assert_eq!(
            download_path(&c),
            PathBuf::from("/nonexistent-blobs/0000000000000001/0000000000000002.dl")
        );
        assert_eq!(download_path(&c).with_extension("blob"), c);
    }
}

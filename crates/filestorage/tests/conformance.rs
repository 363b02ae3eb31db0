//! The shared Storage conformance suite (crates/conformance) against the
//! embedded FileStorage, with blobs, undo, pack with GC, and reopening.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use zeoraid_conformance::{Capabilities, Harness};
use zeoraid_filestorage::{AsyncFileStorage, Options};
use zeoraid_storage::StorageResult;

struct FileHarness;

fn options(dir: &tempfile::TempDir) -> Options {
    Options {
        blob_dir: Some(dir.path().join("blobs")),
        ..Options::default()
    }
}

#[async_trait]
impl Harness for FileHarness {
    type Storage = AsyncFileStorage;
    type Place = tempfile::TempDir;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            undo: true,
            blobs: true,
            pack: true,
            gc: true,
            durable: true,
        }
    }

    async fn create(&self) -> StorageResult<(AsyncFileStorage, tempfile::TempDir)> {
        let dir = tempfile::tempdir()?;
        let st = AsyncFileStorage::open(dir.path().join("Data.fs"), options(&dir)).await?;
        Ok((st, dir))
    }

    async fn reopen(&self, dir: &tempfile::TempDir) -> StorageResult<AsyncFileStorage> {
        AsyncFileStorage::open(dir.path().join("Data.fs"), options(dir)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    zeoraid_conformance::run_all(FileHarness).await;
}

//! The blob cache stays within `blob-cache-size` (ZEO's `_check_blob_size`):
//! blobs downloaded from a real runzeo, least recently used files pruned first,
//! a cache hit counting as a use, and a too-big cache pruned at start.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use zeoraid_conformance::check::txn;
use zeoraid_storage::{Oid, Operation, Storage, Tid, TransactionMeta, VoteOutcome};
use zeoraid_zeo_client::ZeoClient;

use crate::common::{ServerConfig, ZeoServer};
use crate::init_tracing;

const BLOB_SIZE: usize = 40_000;

/// Bytes of complete `.blob` files in a cache directory, and their count.
fn cache_size(dir: &Path) -> (u64, usize) {
    let mut size = 0;
    let mut count = 0;
    for d in std::fs::read_dir(dir).unwrap().flatten() {
        if !d.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "blob") {
                size += f.metadata().unwrap().len();
                count += 1;
            }
        }
    }
    (size, count)
}

fn content(i: usize) -> Vec<u8> {
    (0..BLOB_SIZE).map(|b| ((b + i * 7) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_cache_is_pruned_least_recently_used_first() {
    init_tracing();
    let server = ZeoServer::start(ServerConfig::raid_backend());
    // The writer's cache is unlimited and separate: only the reader's is pruned.
    let writer_cache = tempfile::tempdir().unwrap();
    let writer = ZeoClient::connect(
        server
            .options()
            .blob_dir(writer_cache.path(), false)
            .blob_cache_size(None, 10),
    )
    .await
    .unwrap();
    let files = tempfile::tempdir().unwrap();
    let oids = writer.new_oids(10).await.unwrap();
    let mut ops = Vec::new();
    for (i, &oid) in oids.iter().enumerate() {
        let f = files.path().join(format!("blob{i}"));
        std::fs::write(&f, content(i)).unwrap();
        ops.push(Operation::StoreBlob {
            oid,
            serial: Tid::ZERO,
            data: Bytes::from_static(b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N."),
            blob: f,
        });
    }
    let t = txn(TransactionMeta::default(), ops);
    let id = t.id;
    let VoteOutcome::Voted { .. } = writer.vote(t).await.unwrap() else {
        panic!("conflicts on fresh oids");
    };
    let tid = writer.finish(id).await.unwrap();

    // 100 kB cache, check every 10 %: a pass after each 40 kB download, down to
    // 90 kB, so two blobs fit. No grace period, so that the test need not wait.
    let cache = tempfile::tempdir().unwrap();
    let reader = ZeoClient::connect(
        server
            .options()
            .blob_dir(cache.path(), false)
            .blob_cache_size(Some(100_000), 10)
            .blob_cache_grace(Duration::ZERO),
    )
    .await
    .unwrap();
    let load = |oid: Oid| {
        let reader = &reader;
        async move { reader.load_blob(oid, tid).await.unwrap() }
    };
    let mut paths = Vec::new();
    for &oid in &oids {
        paths.push(load(oid).await);
        // Distinct use times even on coarse file-system clocks.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.prune_blob_cache().await.unwrap();
    let (size, count) = cache_size(cache.path());
    assert!(size <= 90_000, "cache holds {size} bytes in {count} files");
    assert_eq!(count, 2);
    assert!(paths[8].exists() && paths[9].exists());
    assert!(!paths[0].exists() && !paths[7].exists());

    // A hit makes blob 8 the most recently used: the next download (blob 0
    // again, fetched anew with the right content) evicts blob 9, not 8.
    assert_eq!(load(oids[8]).await, paths[8]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = load(oids[0]).await;
    assert_eq!(std::fs::read(&again).unwrap(), content(0));
    reader.prune_blob_cache().await.unwrap();
    assert!(paths[8].exists() && again.exists());
    assert!(!paths[9].exists());
    assert_eq!(cache_size(cache.path()).1, 2);
    reader.shutdown();

    // A client started on a cache bigger than its size prunes it at start.
    for &oid in &oids {
        writer.load_blob(oid, tid).await.unwrap();
    }
    writer.shutdown();
    let (before, _) = cache_size(writer_cache.path());
    assert_eq!(
        before,
        10 * BLOB_SIZE as u64,
        "the unlimited cache keeps all"
    );
    let small = ZeoClient::connect(
        server
            .options()
            .blob_dir(writer_cache.path(), false)
            .blob_cache_size(Some(50_000), 10)
            .blob_cache_grace(Duration::ZERO),
    )
    .await
    .unwrap();
    // Waits for the pass started at connect, then checks again.
    small.prune_blob_cache().await.unwrap();
    let (after, count) = cache_size(writer_cache.path());
    assert!(after <= 45_000, "{after} bytes left in {count} files");
    assert_eq!(count, 1);
}

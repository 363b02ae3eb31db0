//! The shared Storage conformance suite against the ZEO client, backed by ONE
//! runzeo (client-conflict-resolution, blobs — how RAID backends run) serving a
//! fresh FileStorage per case (`<filestorage c0>` … ), so the suite costs one
//! Python start-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use zeoraid_conformance::{Capabilities, Harness};
use zeoraid_storage::StorageResult;
use zeoraid_zeo_client::ZeoClient;

use crate::common::{ServerConfig, ZeoServer};
use crate::init_tracing;

struct RunzeoHarness {
    server: Arc<ZeoServer>,
    cache: tempfile::TempDir,
    next: AtomicUsize,
    count: usize,
}

impl RunzeoHarness {
    async fn client(&self, storage: &str) -> StorageResult<ZeoClient> {
        let options = self
            .server
            .options()
            .storage(storage)
            .blob_dir(self.cache.path().join(storage), false);
        Ok(ZeoClient::connect(options).await?)
    }
}

#[async_trait]
impl Harness for RunzeoHarness {
    type Storage = ZeoClient;
    type Place = String;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            undo: true,
            blobs: true,
            pack: true,
            gc: true,
            durable: true,
        }
    }

    async fn create(&self) -> StorageResult<(ZeoClient, String)> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        assert!(n < self.count, "more cases than prepared storages");
        let name = format!("c{n}");
        Ok((self.client(&name).await?, name))
    }

    async fn reopen(&self, place: &String) -> StorageResult<ZeoClient> {
        self.client(place).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_against_runzeo() {
    init_tracing();
    let count = zeoraid_conformance::cases::all::<RunzeoHarness>().len() + 2;
    let server = ZeoServer::start(ServerConfig {
        storages: (0..count).map(|i| format!("c{i}")).collect(),
        ..ServerConfig::raid_backend()
    });
    let server = Arc::new(server);
    let harness = RunzeoHarness {
        server: server.clone(),
        cache: tempfile::tempdir().unwrap(),
        next: AtomicUsize::new(0),
        count,
    };
    let only = std::env::var("ZEORAID_CONFORMANCE_ONLY").ok();
    let report = zeoraid_conformance::run_selected(&harness, |name| match &only {
        Some(list) => list.split(',').any(|part| name.contains(part.trim())),
        None => true,
    })
    .await;
    println!("{}", report.summary());
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{} conformance case(s) failed: {failures:#?}\nserver log:\n{}",
        failures.len(),
        server.log()
    );
}

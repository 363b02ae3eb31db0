//! The Storage conformance suite through `RaidStorage`, over 2 and over 3 memory
//! storages (each with its own blob directory and garbage collection at pack), with
//! every read policy, and through a `cluster-mode coop` RAID with voted reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use zeoraid_conformance::{Capabilities, Harness};
use zeoraid_memstorage::MemStorage;
use zeoraid_raid::{ClusterMode, RaidOptions, RaidStatus, RaidStorage, ReadPolicy};
use zeoraid_storage::{Oid, Storage, StorageError, StorageResult};

fn wire_references(data: &[u8]) -> Vec<Oid> {
    zeoraid_wire::pickle::references::persistent_references(data)
        .map(|oids| oids.into_iter().map(Oid).collect())
        .unwrap_or_default()
}

struct RaidHarness {
    backends: usize,
    policy: ReadPolicy,
    cluster_mode: ClusterMode,
}

#[async_trait]
impl Harness for RaidHarness {
    type Storage = RaidStorage;
    type Place = tempfile::TempDir;

    fn capabilities(&self) -> Capabilities {
        Capabilities::all_in_memory()
    }

    async fn create(&self) -> StorageResult<(RaidStorage, tempfile::TempDir)> {
        let dir = tempfile::tempdir()?;
        let mut specs = Vec::new();
        for i in 0..self.backends {
            let storage = MemStorage::new()
                .with_name(format!("m{i}"))
                .with_blob_dir(dir.path().join(format!("blobs{i}")))?
                .with_references(Arc::new(wire_references));
            specs.push((format!("m{i}"), Arc::new(storage) as Arc<dyn Storage>, None));
        }
        let options = RaidOptions {
            read_policy: self.policy,
            cluster_mode: self.cluster_mode,
            ..RaidOptions::default()
        };
        let raid = RaidStorage::open(specs, options)
            .await
            .map_err(|e| StorageError::Transaction(e.to_string()))?;
        assert_eq!(raid.status(), RaidStatus::Optimal);
        Ok((raid, dir))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_two_backends() {
    zeoraid_conformance::run_all(RaidHarness {
        backends: 2,
        policy: ReadPolicy::RoundRobin,
        cluster_mode: ClusterMode::Single,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_three_backends_least_outstanding() {
    zeoraid_conformance::run_all(RaidHarness {
        backends: 3,
        policy: ReadPolicy::LeastOutstanding,
        cluster_mode: ClusterMode::Single,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_three_backends_coop_with_voted_reads() {
    zeoraid_conformance::run_all(RaidHarness {
        backends: 3,
        policy: ReadPolicy::Vote,
        cluster_mode: ClusterMode::Coop,
    })
    .await;
}

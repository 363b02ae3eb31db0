//! Integration tests of the ZEO client against real `runzeo` (ZEO 6.2) servers:
//! no mock stands in for ZEO. One test binary (to keep link time down); each test
//! starts its own server(s) on free ports and kills them on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod basic;
mod blob_cache;
mod common;
mod conformance_run;
mod failures;
mod object_cache;
mod tls;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

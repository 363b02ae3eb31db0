//! zeoraid's ZEO client: a [`zeoraid_storage::Storage`] that is a remote ZEO 5/6
//! server (Python `runzeo`, or another zeoraid) — the RAID's backend driver.
//!
//! ```text
//! let options = ZeoClientOptions::new(ServerAddress::parse("db1:8100")?)
//!     .storage("1")
//!     .timeout(Duration::from_secs(30));
//! let client = ZeoClient::connect(options).await?;
//! let tid = client.last_transaction().await?;
//! ```
//!
//! Layout (one concern per module, like tokio-rs/mini-redis):
//!
//! * [`options`] — [`ZeoClientOptions`], mirroring `<clientstorage>`.
//! * [`error`] — [`ClientError`] and its mapping onto `StorageError`.
//! * `transport` / `tls` — TCP, Unix sockets, rustls.
//! * `connection` — handshake (`Z5`/`M5`), `register`, `get_info`.
//! * `rpc` — the multiplexed session: msgid matching, one-way calls, the FIFO
//!   writer task, heartbeats, the reader task; a dead session fails every
//!   pending call at once.
//! * `callbacks` — `invalidateTransaction`, `invalidateCache`, `info`,
//!   `receiveBlob*`.
//! * `object_cache` — the in-memory object cache (`cache-size`), changed only
//!   from the reader task, in wire order.
//! * `supervisor` — reconnects with capped exponential backoff, re-registers.
//! * `commit` — the pipelined two-phase commit and the local commit lock.
//! * `blob_cache` — pruning the blob cache to `blob-cache-size` (LRU).
//! * `iterator`, `blobs`, `convert` — transaction iteration, blobs both ways, and
//!   wire ⇄ model conversions.
//! * `client` / `storage` — [`ZeoClient`], its connection-state API and the
//!   `Storage` implementation.
//!
//! Behaviour a RAID relies on (see `docs/zeo-client.md`): every call is bounded
//! by `timeout` (→ `StorageError::Timeout`; `pack` by `pack_timeout`); when the
//! connection drops, pending calls fail at once with `StorageError::Disconnected`
//! and calls made while disconnected fail immediately (they do not wait for the
//! reconnect); nothing the server sends can make the client panic — a malformed
//! frame drops that connection with a logged reason.

mod blob_cache;
mod blobs;
mod callbacks;
mod client;
mod commit;
mod connection;
mod convert;
pub mod error;
mod iterator;
mod object_cache;
pub mod options;
mod rpc;
mod storage;
mod supervisor;
mod tls;
mod transport;

pub use blob_cache::BlobCachePrune;
pub use blobs::BLOB_CHUNK_SIZE;
pub use client::{ConnectionState, ZeoClient};
pub use error::ClientError;
pub use object_cache::{ObjectCacheStats, ENTRY_OVERHEAD};
pub use options::{ServerAddress, TlsOptions, ZeoClientOptions};
pub use zeoraid_wire::Encoding;

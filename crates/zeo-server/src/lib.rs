//! The ZEO server: serves any [`zeoraid_storage::Storage`] to unmodified ZEO 5/6
//! clients (ZODB 6 / ZEO 6), byte-compatible with ZEO 6.2's `StorageServer`.
//!
//! Layout (after mini-redis): [`connection`] (framed I/O, output FIFO, handshake),
//! [`server`] (listener, per-connection task, options), [`shutdown`], [`session`]
//! (per-connection `ZEOStorage` state), `commands/` (one file per command group),
//! [`commit_lock`], `publication` (commit publication order), [`invalidation`],
//! [`tls`], [`error`]; [`codec`] turns message
//! tuples into frames with `zeoraid-wire`'s pickle and msgpack codecs.
//!
//! ```no_run
//! # async fn demo(storage: std::sync::Arc<dyn zeoraid_storage::Storage>) -> Result<(), zeoraid_zeo_server::ServerError> {
//! use zeoraid_zeo_server::{Address, ServerOptions, ZeoServer};
//! let server = ZeoServer::new(ServerOptions::default(), vec![("1".to_string(), storage)]);
//! let bound = server.bind(&"127.0.0.1:8100".parse::<Address>()?).await?;
//! bound.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod codec;
pub mod commands;
pub mod commit_lock;
pub mod connection;
pub mod error;
pub mod invalidation;
pub mod management;
pub(crate) mod publication;
pub mod server;
pub(crate) mod session;
pub mod shutdown;
pub mod tls;

pub use codec::Encoding;
pub use connection::OutputLimits;
pub use error::{CloseReason, ServerError, ZeoError};
pub use management::{ManagementHook, ManagementResult, ZeoManagement};
pub use server::{Address, BoundServer, ServerOptions, ZeoServer};
pub use tls::TlsOptions;

//! How the suite gets storages: a [`Harness`] creates fresh empty storages (and,
//! for durable ones, reopens them) and says what they can do.

use std::future::Future;

use async_trait::async_trait;
use zeoraid_storage::{Storage, StorageError, StorageResult};

/// What a storage under test supports. Cases that need a capability the storage
/// lacks are reported as skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Transactional undo (`undo_log`, `Operation::Undo`).
    pub undo: bool,
    /// Blobs (`Operation::StoreBlob`, `load_blob`).
    pub blobs: bool,
    /// `pack` removes old history.
    pub pack: bool,
    /// `pack` also removes objects unreachable from the root (oid 0), finding
    /// references in ZODB pickles (the suite writes real ZODB records, see
    /// [`crate::data`]).
    pub gc: bool,
    /// Data survives `close` and [`Harness::reopen`].
    pub durable: bool,
}

impl Capabilities {
    /// Everything except durability: what an in-memory storage can offer.
    pub fn all_in_memory() -> Self {
        Capabilities {
            undo: true,
            blobs: true,
            pack: true,
            gc: true,
            durable: false,
        }
    }
}

/// Creates the storages the suite runs against.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    type Storage: Storage;
    /// Keeps what a storage lives in (a temporary directory, a server process) for
    /// as long as the case runs, and says where it is for [`Harness::reopen`].
    type Place: Send + Sync + 'static;

    fn capabilities(&self) -> Capabilities;

    /// A fresh, empty storage, never seen by another case.
    async fn create(&self) -> StorageResult<(Self::Storage, Self::Place)>;

    /// Opens again the storage that lived at `place` after it was closed. Needed
    /// only when [`Capabilities::durable`] is set.
    async fn reopen(&self, place: &Self::Place) -> StorageResult<Self::Storage> {
        let _ = place;
        Err(StorageError::Unsupported("reopen".into()))
    }
}

/// A [`Harness`] from a closure that creates a fresh storage, for storages that
/// need nothing kept beside them and are not reopened.
pub struct FnHarness<F> {
    caps: Capabilities,
    factory: F,
}

impl<F> FnHarness<F> {
    pub fn new(caps: Capabilities, factory: F) -> Self {
        FnHarness { caps, factory }
    }
}

#[async_trait]
impl<F, Fut, S> Harness for FnHarness<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = StorageResult<S>> + Send + 'static,
    S: Storage,
{
    type Storage = S;
    type Place = ();

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: false,
            ..self.caps
        }
    }

    async fn create(&self) -> StorageResult<(S, ())> {
        Ok(((self.factory)().await?, ()))
    }
}

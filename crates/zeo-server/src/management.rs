//! The optional management hook: gocept.zeoraid's `raid_*` methods over the ZEO
//! port (`raid_status`, `raid_details`, `raid_disable(name)`,
//! `raid_recover(name)`, `raid_reload()`, plus zeoraid's `raid_verify()`).
//!
//! The server does not know what a RAID is: whoever runs it implements
//! [`ZeoManagement`] and sets [`crate::ServerOptions::management`]. Without it
//! the methods are unknown, as in ZEO (the connection is closed). Each method
//! acts on the storage the calling client registered for, as gocept.zeoraid's
//! did (they were methods of its `RAIDStorage`).

use std::fmt;
use std::sync::Arc;

pub use futures::future::BoxFuture;

/// A failed management call: sent to the client as `builtins.RuntimeError(message)`.
pub type ManagementResult<T> = Result<T, String>;

/// What the `raid_*` methods ask of the server. `storage` is the name the
/// calling client registered for.
pub trait ZeoManagement: Send + Sync + 'static {
    /// `raid_status()`: `optimal`, `degraded`, `recovering` or `failed`.
    fn raid_status<'a>(&'a self, storage: &'a str) -> BoxFuture<'a, ManagementResult<String>>;

    /// `raid_details()`: backend name → `optimal`, `failed: REASON` or
    /// `recovering: PROGRESS`.
    fn raid_details<'a>(
        &'a self,
        storage: &'a str,
    ) -> BoxFuture<'a, ManagementResult<Vec<(String, String)>>>;

    /// `raid_disable(name)`: `disabled 'NAME'`.
    fn raid_disable<'a>(
        &'a self,
        storage: &'a str,
        backend: &'a str,
    ) -> BoxFuture<'a, ManagementResult<String>>;

    /// `raid_recover(name)`: `recovering 'NAME'` (the recovery runs on).
    fn raid_recover<'a>(
        &'a self,
        storage: &'a str,
        backend: &'a str,
    ) -> BoxFuture<'a, ManagementResult<String>>;

    /// `raid_reload()`: re-reads the configuration file; what changed.
    fn raid_reload<'a>(&'a self, storage: &'a str) -> BoxFuture<'a, ManagementResult<String>>;

    /// `raid_verify()`: compares the backends; the report when identical.
    fn raid_verify<'a>(&'a self, storage: &'a str) -> BoxFuture<'a, ManagementResult<String>>;
}

/// A [`ZeoManagement`] in [`crate::ServerOptions`] (cloneable, debuggable).
#[derive(Clone)]
pub struct ManagementHook(pub Arc<dyn ZeoManagement>);

impl ManagementHook {
    pub fn new(management: Arc<dyn ZeoManagement>) -> Self {
        ManagementHook(management)
    }
}

impl fmt::Debug for ManagementHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManagementHook")
    }
}

/// The method names the hook answers (accepted only when it is set).
pub const MANAGEMENT_METHODS: &[&str] = &[
    "raid_status",
    "raid_details",
    "raid_disable",
    "raid_recover",
    "raid_reload",
    "raid_verify",
];

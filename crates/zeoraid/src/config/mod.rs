//! Configuration in the ZEO world's own ZConfig syntax (`zeo.conf`).
//!
//! [`load`] reads a file into a checked [`Config`]: `zconfig` parses the syntax
//! into sections and keys, `model` (with the key tables of `keys` and the
//! value types of `datatypes`) turns them into typed settings, and `plan`
//! renders a configuration for humans. Every error is a [`ConfigError`] naming
//! the file and, where there is one, the line.

mod datatypes;
mod error;
mod keys;
mod model;
mod plan;
mod zconfig;

use std::path::Path;

// The module's public surface; `serve` uses only part of it so far (the admin
// API and other commands will use the rest), hence the allows.
#[allow(unused_imports)]
pub use datatypes::SocketAddress;
#[allow(unused_imports)]
pub use error::{ConfigError, Position};
#[allow(unused_imports)]
pub use keys::Warning;
#[allow(unused_imports)]
pub use model::{
    BackendConfig, BackendKind, ClusterMode, Config, FailMode, FileStorageConfig, LogConfig,
    RaidConfig, ReadPolicy, SslConfig, StorageConfig, StorageKind, ZeoClientConfig, ZeoConfig,
    DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_STORAGE_NAME,
};
pub use plan::render_plan;
#[allow(unused_imports)]
pub use zconfig::{Document, Entry, Import, KeyValue, Section};

/// Read, parse and check a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let doc = zconfig::parse_file(path)?;
    model::from_document(&doc, path)
}

/// Parse and check configuration text; `path` names it in messages and is the
/// base for `%include`. (Only tests need it so far.)
#[cfg(test)]
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let doc = zconfig::parse_str(text, path)?;
    model::from_document(&doc, path)
}

#[cfg(test)]
mod tests;

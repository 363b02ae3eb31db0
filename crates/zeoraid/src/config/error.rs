//! The one error type of the configuration layer: every problem names its file,
//! and (when there is one) the line it comes from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A place in a configuration file: the file as the user named it (includes are
/// joined to the including file's directory) and a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub file: Arc<PathBuf>,
    pub line: usize,
}

impl Position {
    pub fn new(file: Arc<PathBuf>, line: usize) -> Self {
        Position { file, line }
    }

    /// An error at this position.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::At {
            file: self.file.as_ref().clone(),
            line: self.line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or an `%include`d file) could not be read.
    /// (The I/O error is in the message, not a `source`, so it prints once.)
    #[error("{}: cannot read configuration: {cause}", file.display())]
    Read {
        file: PathBuf,
        cause: std::io::Error,
    },
    /// A problem at a given line: syntax, unknown key, bad value, missing key.
    #[error("{}:{line}: {message}", file.display())]
    At {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// A problem of the file as a whole (e.g. no `<zeo>` section at all).
    #[error("{}: {message}", file.display())]
    File { file: PathBuf, message: String },
}

impl ConfigError {
    pub(crate) fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError::File {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

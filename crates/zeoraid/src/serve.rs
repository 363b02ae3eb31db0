//! `zeoraid serve`: load the configuration and run the server.

use std::path::Path;
use std::process::ExitCode;

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("serving is not implemented yet (config {})", config.display())
}

//! `zeoraid serve`: load the configuration and run the server.
//!
//! The ZEO server itself is not built yet: after a valid configuration this
//! prints what it would serve and exits with status 1. A configuration error is
//! returned to `main`, which prints it once and exits with status 2.

use std::path::Path;
use std::process::ExitCode;

use crate::config;

/// Exit status when the configuration is valid but serving is not available.
const EXIT_NOT_IMPLEMENTED: u8 = 1;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    print!("{}", config::render_plan(&config));
    eprintln!("zeoraid: error: serving is not implemented yet");
    Ok(ExitCode::from(EXIT_NOT_IMPLEMENTED))
}

//! Hidden developer subcommands (`zeoraid debug ...`): codec and tid inspection,
//! used by the Python integration tests to cross-check the Rust codec against ZEO.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {}

impl DebugCommand {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        match *self {}
    }
}

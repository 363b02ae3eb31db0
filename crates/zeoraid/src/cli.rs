//! The command line: one subcommand per operator action.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a bad command line or a configuration that does not parse.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "zeoraid",
    version,
    about = "A ZEO server that mirrors a ZODB database onto N storages, like RAID-1.",
    propagate_version = true
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). ZEORAID_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server from a configuration file in zeo.conf syntax.
    Serve {
        /// The configuration file (`<zeo>`, `<filestorage>`, `<zeoclient>`, `<raidstorage>`).
        #[arg(short = 'C', long = "config")]
        config: PathBuf,
    },
    /// Developer tools: inspect wire frames and transaction ids.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: crate::debug::DebugCommand,
    },
}

impl Cli {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        match &self.command {
            Command::Serve { config } => crate::serve::run(config),
            Command::Debug { command } => command.run(),
        }
    }
}

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
    /// Print the status of a running server as one word (Nagios exit codes).
    ///
    /// The word is optimal, recovering, degraded or failed: the worst over the
    /// server's storages, or with -S the status of one storage. Exit status as gocept.zeoraid's controller, for Nagios: 0 optimal,
    /// 1 recovering, 2 degraded or failed, 2 when the server cannot be reached.
    /// Talks to the admin API at the configuration's `admin-address`.
    Status {
        /// The server's configuration file (its `<zeo>` needs `admin-address`).
        #[arg(short = 'C', long = "config")]
        config: PathBuf,
        /// Only this storage.
        #[arg(short = 'S', long = "storage")]
        storage: Option<String>,
    },
    /// Print every backend of a running server as a table.
    ///
    /// Per backend: its state, the last transaction it holds, and the reason
    /// it is degraded or the progress of its recovery. Exit status as for
    /// `status`.
    Details {
        /// The server's configuration file (its `<zeo>` needs `admin-address`).
        #[arg(short = 'C', long = "config")]
        config: PathBuf,
        /// Only this storage.
        #[arg(short = 'S', long = "storage")]
        storage: Option<String>,
    },
    /// Take a backend out of a RAID of a running server.
    ///
    /// The backend becomes degraded ("disabled by operator"). Refused for the
    /// last optimal backend. Exit status 0 when done, 2 when refused or on
    /// error.
    Disable {
        /// The backend's name (its section name in the `<raidstorage>`).
        #[arg(value_name = "NAME")]
        backend: String,
        /// The server's configuration file (its `<zeo>` needs `admin-address`).
        #[arg(short = 'C', long = "config")]
        config: PathBuf,
        /// The RAID storage (default: the server's only RAID storage).
        #[arg(short = 'S', long = "storage")]
        storage: Option<String>,
    },
    /// Rebuild a degraded backend of a RAID of a running server, online.
    ///
    /// The backend is copied from an optimal one with its full history (resuming
    /// after what it already holds) while clients go on writing, then takes part
    /// in the RAID again. The command returns at once ("recovering …"); follow
    /// the progress with `details`, or pass --wait. Exit status 0 when started
    /// (with --wait: when the backend is optimal), 2 when refused or failed.
    Recover {
        /// The backend's name (its section name in the `<raidstorage>`).
        #[arg(value_name = "NAME")]
        backend: String,
        /// The server's configuration file (its `<zeo>` needs `admin-address`).
        #[arg(short = 'C', long = "config")]
        config: PathBuf,
        /// The RAID storage (default: the server's only RAID storage).
        #[arg(short = 'S', long = "storage")]
        storage: Option<String>,
        /// Wait until the recovery ends, printing its progress.
        #[arg(long)]
        wait: bool,
    },
    /// Compare the optimal backends of a RAID record by record.
    ///
    /// Prints "identical: N transactions, M records, …" (exit 0) or the first
    /// difference (exit 2). Clients may go on writing: it compares up to the
    /// transaction that was the last when it started.
    Verify {
        /// The server's configuration file (its `<zeo>` needs `admin-address`).
        #[arg(short = 'C', long = "config")]
        config: PathBuf,
        /// The RAID storage (default: the server's only RAID storage).
        #[arg(short = 'S', long = "storage")]
        storage: Option<String>,
    },
    /// Make a running server re-read its configuration file.
    ///
    /// Backends added to a `<raidstorage>` join degraded ("added by
    /// controller"; then `recover` them), removed ones are closed. Other changes
    /// are refused and nothing changes. Exit status 0 when reloaded, 2 when
    /// refused.
    Reload {
        /// The server's configuration file (its `<zeo>` needs `admin-address`).
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
            Command::Status { config, storage } => {
                crate::control::status(config, storage.as_deref())
            }
            Command::Details { config, storage } => {
                crate::control::details(config, storage.as_deref())
            }
            Command::Disable {
                backend,
                config,
                storage,
            } => crate::control::disable(config, backend, storage.as_deref()),
            Command::Recover {
                backend,
                config,
                storage,
                wait,
            } => crate::control::recover(config, backend, storage.as_deref(), *wait),
            Command::Verify { config, storage } => {
                crate::control::verify(config, storage.as_deref())
            }
            Command::Reload { config } => crate::control::reload(config),
            Command::Debug { command } => command.run(),
        }
    }
}

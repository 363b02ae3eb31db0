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

    /// The storage (RAID) to manage. Without -C: the storage to register for
    /// (default "1", as gocept.zeoraid's controller); with -C: only this
    /// storage (default: all, or the only RAID for actions).
    #[arg(short = 'S', long = "storage", global = true)]
    pub storage: Option<String>,

    /// Without -C: the ZEO server's host (default 127.0.0.1). The management
    /// commands then talk to the ZEO port, as gocept.zeoraid's controller.
    #[arg(short = 'H', long = "host", global = true)]
    pub host: Option<String>,

    /// Without -C: the ZEO server's port (default 8100).
    #[arg(short = 'p', long = "port", global = true)]
    pub port: Option<u16>,

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
    /// With -C: talks to the admin API at the configuration's `admin-address`.
    /// Without -C: gocept.zeoraid's controller over the ZEO port at -H/-p
    /// (default 127.0.0.1:8100, storage -S or "1"; the server needs
    /// `management-methods`).
    Status {
        /// The server's configuration file (its `<zeo>` needs `admin-address`);
        /// without it, the ZEO port at -H/-p is used.
        #[arg(short = 'C', long = "config")]
        config: Option<PathBuf>,
    },
    /// Print every backend of a running server as a table.
    ///
    /// Per backend: its state, the last transaction it holds, and the reason
    /// it is degraded or the progress of its recovery. Exit status as for
    /// `status`.
    Details {
        /// The server's configuration file (its `<zeo>` needs `admin-address`);
        /// without it, the ZEO port at -H/-p is used.
        #[arg(short = 'C', long = "config")]
        config: Option<PathBuf>,
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
        /// The server's configuration file (its `<zeo>` needs `admin-address`);
        /// without it, the ZEO port at -H/-p is used.
        #[arg(short = 'C', long = "config")]
        config: Option<PathBuf>,
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
        /// The server's configuration file (its `<zeo>` needs `admin-address`);
        /// without it, the ZEO port at -H/-p is used.
        #[arg(short = 'C', long = "config")]
        config: Option<PathBuf>,
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
        /// The server's configuration file (its `<zeo>` needs `admin-address`);
        /// without it, the ZEO port at -H/-p is used.
        #[arg(short = 'C', long = "config")]
        config: Option<PathBuf>,
    },
    /// Make a running server re-read its configuration file.
    ///
    /// Backends added to a `<raidstorage>` join degraded ("added by
    /// controller"; then `recover` them), removed ones are closed. Other changes
    /// are refused and nothing changes. Exit status 0 when reloaded, 2 when
    /// refused.
    Reload {
        /// The server's configuration file (its `<zeo>` needs `admin-address`);
        /// without it, the ZEO port at -H/-p is used.
        #[arg(short = 'C', long = "config")]
        config: Option<PathBuf>,
    },
    /// Developer tools: inspect wire frames and transaction ids.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: crate::debug::DebugCommand,
    },
}

impl Cli {
    /// Whether this is a management command without -C (gocept.zeoraid's
    /// controller over the ZEO port).
    pub fn is_zeo_port_controller(&self) -> bool {
        match &self.command {
            Command::Serve { .. } | Command::Debug { .. } => false,
            Command::Status { config }
            | Command::Details { config }
            | Command::Disable { config, .. }
            | Command::Recover { config, .. }
            | Command::Verify { config }
            | Command::Reload { config } => config.is_none(),
        }
    }

    pub fn run(&self) -> anyhow::Result<ExitCode> {
        use crate::zeo_control::Action;
        let storage = self.storage.as_deref();
        let (config, action) = match &self.command {
            Command::Serve { config } => return crate::serve::run(config),
            Command::Debug { command } => return command.run(),
            Command::Status { config } => (config, Action::Status),
            Command::Details { config } => (config, Action::Details),
            Command::Disable { backend, config } => (config, Action::Disable(backend.clone())),
            Command::Recover {
                backend,
                config,
                wait,
            } => (
                config,
                Action::Recover {
                    backend: backend.clone(),
                    wait: *wait,
                },
            ),
            Command::Verify { config } => (config, Action::Verify),
            Command::Reload { config } => (config, Action::Reload),
        };
        let Some(config) = config else {
            let target = crate::zeo_control::Target {
                host: self
                    .host
                    .clone()
                    .unwrap_or_else(|| crate::zeo_control::DEFAULT_HOST.to_owned()),
                port: self.port.unwrap_or(crate::zeo_control::DEFAULT_PORT),
                storage: storage
                    .unwrap_or(crate::zeo_control::DEFAULT_STORAGE)
                    .to_owned(),
            };
            return crate::zeo_control::run(&target, &action);
        };
        if self.host.is_some() || self.port.is_some() {
            anyhow::bail!(
                "-H/-p (the ZEO port) and -C (the admin API of a configuration) exclude each other"
            );
        }
        match action {
            Action::Status => crate::control::status(config, storage),
            Action::Details => crate::control::details(config, storage),
            Action::Disable(backend) => crate::control::disable(config, &backend, storage),
            Action::Recover { backend, wait } => {
                crate::control::recover(config, &backend, storage, wait)
            }
            Action::Verify => crate::control::verify(config, storage),
            Action::Reload => crate::control::reload(config),
        }
    }
}

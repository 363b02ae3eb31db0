//! `zeoraid-bench`: benchmarks that run zeoraid and its Python counterpart side by
//! side in one run and print medians and ratios (Markdown tables). Not part of the
//! test suite; see `docs/benchmarks.md` for how to run them and the figures.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-bench cargo build --release -p zeoraid -p zeoraid-bench
//! /work/target-bench/release/zeoraid-bench server        # runzeo vs zeoraid serve
//! /work/target-bench/release/zeoraid-bench raid          # RAID overhead / read scaling
//! /work/target-bench/release/zeoraid-bench filestorage   # embedded engine vs Python FileStorage
//! /work/target-bench/release/zeoraid-bench recovery      # recovery copy rate, under load
//! /work/target-bench/release/zeoraid-bench client        # ZeoClient vs Python ClientStorage
//! ```

mod client;
mod filestorage;
mod loadgen;
mod procs;
mod pyclients;
mod raid;
mod recovery;
mod server;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "zeoraid-bench",
    about = "Benchmark zeoraid against Python ZEO / FileStorage in one run."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// runzeo vs zeoraid serve: Python ZODB clients and the Rust load generator.
    Server(server::ServerArgs),
    /// RAID of 2 vs 1 backend: embedded FileStorages, and runzeo backends.
    Raid(raid::RaidArgs),
    /// The embedded FileStorage engine vs Python's FileStorage, in-process.
    Filestorage(filestorage::FsArgs),
    /// Recovery: copy rate of an empty backend, and recovery under a commit load.
    Recovery(recovery::RecoveryArgs),
    /// Our ZeoClient vs Python's ClientStorage against the same runzeo.
    Client(client::ClientArgs),
}

/// Options every benchmark takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Rounds per measurement (the tables show medians).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds per timed phase.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Where the work directory (Data.fs files, configs, logs) is created.
    #[arg(long, default_value = "/tmp")]
    pub workdir: PathBuf,
    /// Keep the work directory afterwards.
    #[arg(long)]
    pub keep: bool,
    /// The venv's python (default: $ZEORAID_VENV/bin/python, .venv, /tmp/venvtest).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The zeoraid binary (default: next to zeoraid-bench).
    #[arg(long)]
    pub zeoraid: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZEORAID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zeoraid-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C drops the benchmark future: every child process guard in it is
    // dropped and kills its process.
    let result = runtime.block_on(async {
        let bench = async {
            match cli.command {
                Command::Server(args) => server::run(args).await,
                Command::Raid(args) => raid::run(args).await,
                Command::Filestorage(args) => filestorage::run(args).await,
                Command::Recovery(args) => recovery::run(args).await,
                Command::Client(args) => client::run(args).await,
            }
        };
        tokio::select! {
            r = bench => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zeoraid-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

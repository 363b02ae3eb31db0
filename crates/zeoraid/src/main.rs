//! The `zeoraid` binary: command line, configuration, and the wiring of layers.
//!
//! `anyhow` lives here and only here: every layer below reports typed errors, and
//! this edge turns them into one clear message and an exit code.

mod admin;
mod cli;
mod config;
mod control;
mod debug;
mod serve;
mod zeo_control;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose, cli.is_zeo_port_controller());
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("zeoraid: error: {err:#}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}

/// `quiet`: only errors without -v (gocept.zeoraid's controller printed
/// nothing but its result; a Nagios check reads stdout).
fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 if quiet => "error",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("ZEORAID_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

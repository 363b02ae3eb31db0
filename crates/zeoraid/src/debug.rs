//! Hidden developer subcommands (`zeoraid debug ...`): codec and tid inspection,
//! used by the Python integration tests to cross-check the Rust codec against ZEO.
//!
//! Every subcommand reads one case per stdin line and answers one line per case, so
//! a test can pipe many cases through one process. `decode` and `reencode` take hex
//! payloads (one frame payload per line, no length prefix); `tid` takes `raw HEX`
//! or `time SECONDS`. A case that fails prints `ERROR: <reason>` on its line and
//! makes the exit status 1.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use zeoraid_storage::Tid;
use zeoraid_wire::{float_repr, Encoding};

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Decode hex payloads from stdin; print Python's repr() of each value.
    Decode {
        #[arg(long, value_enum, default_value_t = CodecArg::Pickle)]
        encoding: CodecArg,
    },
    /// Decode hex payloads from stdin and print them re-encoded, as hex.
    Reencode {
        #[arg(long, value_enum, default_value_t = CodecArg::Pickle)]
        encoding: CodecArg,
    },
    /// Timestamp arithmetic: `raw HEX` prints str(TimeStamp), timeTime() and
    /// laterThan(itself) as hex, tab-separated; `time SECONDS` prints the tid of
    /// that wall-clock time as hex.
    Tid,
}

/// The `--encoding` choices.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CodecArg {
    Pickle,
    Msgpack,
}

impl From<CodecArg> for Encoding {
    fn from(arg: CodecArg) -> Encoding {
        match arg {
            CodecArg::Pickle => Encoding::Pickle,
            CodecArg::Msgpack => Encoding::Msgpack,
        }
    }
}

impl DebugCommand {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        match *self {
            DebugCommand::Decode { encoding } => {
                let encoding = Encoding::from(encoding);
                per_line(|line| Ok(encoding.decode_value(&hex::decode(line)?)?.python_repr()))
            }
            DebugCommand::Reencode { encoding } => {
                let encoding = Encoding::from(encoding);
                per_line(|line| {
                    let value = encoding.decode_value(&hex::decode(line)?)?;
                    Ok(hex::encode(encoding.encode_value(&value)?))
                })
            }
            DebugCommand::Tid => per_line(tid_case),
        }
    }
}

fn tid_case(line: &str) -> anyhow::Result<String> {
    match line.split_once(' ') {
        Some(("raw", hex_tid)) => {
            let bytes = hex::decode(hex_tid.trim())?;
            let tid = Tid::from_slice(&bytes)
                .ok_or_else(|| anyhow::anyhow!("a tid is 8 bytes, got {}", bytes.len()))?;
            Ok(format!(
                "{tid}\t{}\t{:x}",
                float_repr(tid.unix_time()),
                tid.later_than(tid)
            ))
        }
        Some(("time", seconds)) => {
            let seconds: f64 = seconds.trim().parse()?;
            Ok(format!("{:x}", Tid::from_unix_time(seconds)))
        }
        _ => anyhow::bail!("expected `raw HEX` or `time SECONDS`"),
    }
}

/// Apply `transform` to each non-empty stdin line, one output line each.
fn per_line(transform: impl Fn(&str) -> anyhow::Result<String>) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut failed = false;
    for line in stdin.lock().lines() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let result = transform(line);
        match result {
            Ok(text) => writeln!(stdout, "{text}")?,
            Err(err) => {
                failed = true;
                writeln!(stdout, "ERROR: {err}")?;
            }
        }
    }
    stdout.flush()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

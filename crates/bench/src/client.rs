//! `zeoraid-bench client`: zeoraid's Rust `ZeoClient` vs Python's
//! `ZEO.ClientStorage` (storage API only, no `ZODB.DB`), both against the same
//! `runzeo` in one run: cold `loadBefore` on random preloaded oids (1 caller, and
//! several concurrent callers sharing one client: tasks for ours, threads for
//! Python's), and small commits (`tpc_begin`, one `store`, `vote`, `tpc_finish`).
//!
//! Round trips to one Python server bound both clients' rates, so besides ops/s
//! the tables show each client's own CPU per operation (its process's user +
//! system time: the Python driver's, or this process's for ours) and runzeo's.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use crate::loadgen;
use crate::procs::{self, Proc, Server};
use crate::pyclients::Answer;
use crate::stats::{verdict, Metric, Results, Sample};

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub common: crate::Common,
    /// Objects preloaded for the load phases.
    #[arg(long, default_value_t = 10_000)]
    pub preload: usize,
    /// Concurrent loadBefore callers per client (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub concurrency: Vec<usize>,
}

const OURS: &str = "ZeoClient (Rust)";
const PY: &str = "ClientStorage (Python)";

/// `bench/client_python.py`: one ClientStorage, one command per line.
struct PythonClient {
    proc: Proc,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl PythonClient {
    async fn start(python: &Path, addr: &str, oids: (u64, u64)) -> anyhow::Result<Self> {
        let script = procs::script("client_python.py")?;
        let args = vec![
            script.display().to_string(),
            "--addr".to_owned(),
            addr.to_owned(),
            "--oids".to_owned(),
            format!("{}:{}", oids.0, oids.1),
        ];
        let mut proc = Proc::spawn_piped("client_python.py", python, &args)?;
        let stdin = proc.child.stdin.take().context("no stdin")?;
        let stdout = proc.child.stdout.take().context("no stdout")?;
        let mut client = PythonClient {
            proc,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        let line = client.read().await?;
        if !line.contains("ready") {
            bail!("client_python.py: unexpected {line:?}");
        }
        Ok(client)
    }

    async fn read(&mut self) -> anyhow::Result<String> {
        let limit = Duration::from_secs(120);
        match tokio::time::timeout(limit, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!("{} exited", self.proc.name),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => bail!("{} did not answer within {limit:?}", self.proc.name),
        }
    }

    /// Runs one phase (`load SECONDS THREADS` or `commit SECONDS`).
    async fn phase(&mut self, command: &str) -> anyhow::Result<Sample> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let line = self.read().await?;
        let answer: Answer = serde_json::from_str(&line)
            .with_context(|| format!("client_python.py: bad answer {line:?}"))?;
        if let Some(e) = answer.error {
            bail!("client_python.py: {e}");
        }
        Ok(Sample {
            ops: answer.ops,
            elapsed: answer.elapsed,
            latencies: answer.lat_us.iter().map(|&us| us as f64 / 1e6).collect(),
            server_cpu: 0.0,
            client_cpu: answer.cpu,
        })
    }

    async fn stop(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.stdin.flush().await;
        if tokio::time::timeout(Duration::from_secs(10), self.proc.child.wait())
            .await
            .is_err()
        {
            let _ = self.proc.child.kill().await;
        }
    }
}

/// Which client a phase runs on.
#[derive(Clone, Copy)]
enum Side {
    Ours,
    Python,
}

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let python = procs::find_python(c.python.as_deref())?;
    let dir = procs::workdir(&c.workdir, "client")?;
    eprintln!("work directory {}", dir.display());
    let server = Server::runzeo("runzeo", &python, &dir.join("runzeo"), false).await?;
    let oids = Arc::new(loadgen::preload(&server.addr, args.preload, 200).await?);
    let first = oids.first().map_or(1, |o| o.as_u64());
    let mut py = PythonClient::start(&python, &server.addr, (first, oids.len() as u64)).await?;
    let ours = loadgen::connect(&server.addr, 1).await?;

    let mut results = Results::default();
    let commit_label = "commit (1 caller)";
    for round in 0..c.rounds {
        let order = if round % 2 == 0 {
            [Side::Ours, Side::Python]
        } else {
            [Side::Python, Side::Ours]
        };
        let mut line = format!("round {round}:");
        for &n in &args.concurrency {
            let label = format!(
                "cold loadBefore ({n} caller{})",
                if n == 1 { "" } else { "s" }
            );
            for side in order {
                let cpu0 = server.cpu()?;
                let mut sample = match side {
                    Side::Ours => loadgen::loads(&ours, n, oids.clone(), c.seconds).await?,
                    Side::Python => py.phase(&format!("load {} {n}", c.seconds)).await?,
                };
                sample.server_cpu = server.cpu()? - cpu0;
                let name = match side {
                    Side::Ours => OURS,
                    Side::Python => PY,
                };
                line.push_str(&format!(" {name} {n}× {:.0} loads/s;", sample.rate()));
                results.add(&label, name, sample);
            }
        }
        for side in order {
            let cpu0 = server.cpu()?;
            let (name, mut sample) = match side {
                Side::Ours => (OURS, loadgen::commits(&ours, c.seconds).await?),
                Side::Python => (PY, py.phase(&format!("commit {}", c.seconds)).await?),
            };
            sample.server_cpu = server.cpu()? - cpu0;
            line.push_str(&format!(" {name} {:.0} commits/s;", sample.rate()));
            results.add(commit_label, name, sample);
        }
        eprintln!("{line}");
    }
    loadgen::close(ours);
    py.stop().await;
    server.stop().await;

    println!(
        "\n## client: ZeoClient vs Python ClientStorage against one runzeo (medians of {} rounds × {} s)\n",
        c.rounds, c.seconds
    );
    let metrics = [
        Metric::Rate("ops/s"),
        Metric::P50,
        Metric::P99,
        Metric::ClientCpuPerOp,
        Metric::CpuPerOp,
    ];
    println!("{}", results.table(OURS, PY, &metrics));
    println!("### Target: ours ≥ 5× Python's client\n");
    for s in results.scenarios() {
        let rate =
            results.median(s, OURS, Metric::Rate("")) / results.median(s, PY, Metric::Rate(""));
        let cpu = results.median(s, PY, Metric::ClientCpuPerOp)
            / results.median(s, OURS, Metric::ClientCpuPerOp);
        println!(
            "- {s}: ops/s {rate:.2}× — {}; client CPU per op (Python / ours) {cpu:.1}× — {}",
            verdict(rate >= 5.0),
            verdict(cpu >= 5.0)
        );
    }
    if !c.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

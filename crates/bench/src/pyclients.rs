//! Real Python ZODB clients as load: N `bench/zodb_client.py` processes against one
//! server, started together, released together (a `commit`/`load` line to each),
//! their answers merged into one [`Sample`] per phase.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use crate::procs::{Proc, Server};
use crate::stats::Sample;

/// One JSON answer line of a Python benchmark driver (`bench/*.py`).
#[derive(Deserialize)]
pub(crate) struct Answer {
    #[serde(default)]
    pub ops: u64,
    #[serde(default)]
    pub elapsed: f64,
    #[serde(default)]
    pub cpu: f64,
    #[serde(default)]
    pub lat_us: Vec<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

struct Driver {
    proc: Proc,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Driver {
    async fn read(&mut self) -> anyhow::Result<String> {
        let limit = Duration::from_secs(120);
        match tokio::time::timeout(limit, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!("{} exited", self.proc.name),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => bail!("{} did not answer within {limit:?}", self.proc.name),
        }
    }
}

/// The phases one set of clients runs, in order.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Commit,
    Load,
}

impl Phase {
    fn command(self) -> &'static str {
        match self {
            Phase::Commit => "commit",
            Phase::Load => "load",
        }
    }
}

/// Start `clients` drivers against `server`, run `phases` for `seconds` each, stop them.
pub async fn run(
    python: &Path,
    server: &Server,
    clients: usize,
    oids: (u64, u64),
    phases: &[Phase],
    seconds: f64,
) -> anyhow::Result<Vec<Sample>> {
    let script = crate::procs::script("zodb_client.py")?;
    let mut drivers = Vec::with_capacity(clients);
    for i in 0..clients {
        let args = vec![
            script.display().to_string(),
            "--addr".to_owned(),
            server.addr.clone(),
            "--index".to_owned(),
            i.to_string(),
            "--oids".to_owned(),
            format!("{}:{}", oids.0, oids.1),
        ];
        let mut proc = Proc::spawn_piped(&format!("zodb_client.py #{i}"), python, &args)?;
        let stdin = proc.child.stdin.take().context("no stdin")?;
        let stdout = proc.child.stdout.take().context("no stdout")?;
        drivers.push(Driver {
            proc,
            stdin,
            lines: BufReader::new(stdout).lines(),
        });
    }
    for d in &mut drivers {
        let line = d.read().await?;
        if !line.contains("ready") {
            bail!("{}: unexpected {line:?}", d.proc.name);
        }
    }
    let mut samples = Vec::new();
    for &phase in phases {
        let cpu0 = server.cpu()?;
        let command = format!("{} {seconds}\n", phase.command());
        for d in &mut drivers {
            d.stdin.write_all(command.as_bytes()).await?;
            d.stdin.flush().await?;
        }
        let answers = futures::future::try_join_all(drivers.iter_mut().map(|d| async {
            let line = d.read().await?;
            let answer: Answer = serde_json::from_str(&line)
                .with_context(|| format!("{}: bad answer {line:?}", d.proc.name))?;
            if let Some(e) = answer.error {
                bail!("{}: {e}", d.proc.name);
            }
            Ok(Sample {
                ops: answer.ops,
                elapsed: answer.elapsed,
                latencies: answer.lat_us.iter().map(|&us| us as f64 / 1e6).collect(),
                server_cpu: 0.0,
                client_cpu: answer.cpu,
            })
        }))
        .await?;
        let cpu1 = server.cpu()?;
        let mut sample = Sample::merge(answers);
        sample.server_cpu = cpu1 - cpu0;
        samples.push(sample);
    }
    for d in &mut drivers {
        let _ = d.stdin.write_all(b"quit\n").await;
    }
    for d in drivers {
        let Driver { mut proc, .. } = d;
        if tokio::time::timeout(Duration::from_secs(10), proc.child.wait())
            .await
            .is_err()
        {
            let _ = proc.child.kill().await;
        }
    }
    Ok(samples)
}

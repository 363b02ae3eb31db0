//! `zeoraid-bench server`: Python `runzeo` vs `zeoraid serve`, each on a fresh
//! FileStorage, driven in the same run by (a) real Python ZODB client processes
//! (1, 4, 16 by default: small-commit rate, commit latency, cold loads) and (b) the
//! Rust load generator (many connections, pipelined loads, small commits).
//! Rounds alternate which server goes first; the tables show medians over rounds
//! and the ratio zeoraid / runzeo, then the targets, met or missed.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::loadgen;
use crate::procs::{self, Server};
use crate::pyclients::{self, Phase};
use crate::stats::{verdict, Metric, Results};

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub common: crate::Common,
    /// Python client counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub clients: Vec<usize>,
    /// Objects preloaded into each server for the load phases.
    #[arg(long, default_value_t = 10_000)]
    pub preload: usize,
    /// Load generator: connections for loads.
    #[arg(long, default_value_t = 32)]
    pub lg_connections: usize,
    /// Load generator: concurrent loadBefore calls per connection.
    #[arg(long, default_value_t = 4)]
    pub lg_pipeline: usize,
    /// Load generator: connections committing concurrently.
    #[arg(long, default_value_t = 16)]
    pub lg_commit_connections: usize,
    /// Skip the Python client part.
    #[arg(long)]
    pub skip_python: bool,
    /// Skip the Rust load generator part.
    #[arg(long)]
    pub skip_loadgen: bool,
}

const Z: &str = "zeoraid";
const R: &str = "runzeo";

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let python = procs::find_python(c.python.as_deref())?;
    let zeoraid_bin = procs::find_zeoraid(c.zeoraid.as_deref())?;
    let dir = procs::workdir(&c.workdir, "server")?;
    eprintln!("work directory {}", dir.display());

    let zdir: PathBuf = dir.join("zeoraid");
    let z = Server::zeoraid(
        Z,
        &zeoraid_bin,
        &zdir,
        "",
        &procs::filestorage_section("1", &zdir),
    )
    .await?;
    let r = Server::runzeo(R, &python, &dir.join("runzeo"), false).await?;
    let servers = [&z, &r];

    let mut preloaded = Vec::new();
    for s in servers {
        let oids = loadgen::preload(&s.addr, args.preload, 200).await?;
        eprintln!("{}: preloaded {} objects", s.label, oids.len());
        preloaded.push(Arc::new(oids));
    }

    let mut py = Results::default();
    let mut lg = Results::default();
    for round in 0..c.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        if !args.skip_python {
            for &n in &args.clients {
                for &i in &order {
                    let s = servers[i];
                    let oids = &preloaded[i];
                    let first = oids.first().map_or(1, |o| o.as_u64());
                    let samples = pyclients::run(
                        &python,
                        s,
                        n,
                        (first, oids.len() as u64),
                        &[Phase::Commit, Phase::Load],
                        c.seconds,
                    )
                    .await?;
                    let [commit, load] = <[_; 2]>::try_from(samples)
                        .map_err(|_| anyhow::anyhow!("expected two phases"))?;
                    eprintln!(
                        "round {round} {:>7} {n:>2} py clients: {:>6.0} commits/s (p99 {:.2} ms), {:>6.0} loads/s (p99 {:.2} ms)",
                        s.label,
                        commit.rate(),
                        commit.percentile(99.0) * 1e3,
                        load.rate(),
                        load.percentile(99.0) * 1e3
                    );
                    py.add(&format!("{n} py clients: commit"), &s.label, commit);
                    py.add(&format!("{n} py clients: cold load"), &s.label, load);
                }
            }
        }
        if !args.skip_loadgen {
            for &i in &order {
                let s = servers[i];
                let connections =
                    loadgen::LoadConnection::connect_many(&s.addr, args.lg_connections).await?;
                let cpu0 = s.cpu()?;
                let mut load = loadgen::pipelined_loads(
                    connections,
                    args.lg_pipeline,
                    preloaded[i].clone(),
                    c.seconds,
                )
                .await?;
                load.server_cpu = s.cpu()? - cpu0;
                let clients = loadgen::connect(&s.addr, args.lg_commit_connections).await?;
                let cpu0 = s.cpu()?;
                let mut commit = loadgen::commits(&clients, c.seconds).await?;
                commit.server_cpu = s.cpu()? - cpu0;
                loadgen::close(clients);
                eprintln!(
                    "round {round} {:>7} load generator: {:>7.0} loads/s, {:>6.0} commits/s",
                    s.label,
                    load.rate(),
                    commit.rate()
                );
                lg.add(
                    &format!(
                        "Rust loadgen, {}×{} loadBefore",
                        args.lg_connections, args.lg_pipeline
                    ),
                    &s.label,
                    load,
                );
                lg.add(
                    &format!("Rust loadgen, {} committers", args.lg_commit_connections),
                    &s.label,
                    commit,
                );
            }
        }
    }
    z.stop().await;
    r.stop().await;

    let metrics = [
        Metric::Rate("ops/s"),
        Metric::P50,
        Metric::P99,
        Metric::CpuPerOp,
        Metric::ClientCpuShare,
    ];
    println!(
        "\n## server: zeoraid serve vs runzeo (medians of {} rounds × {} s)\n",
        c.rounds, c.seconds
    );
    if !args.skip_python {
        println!("### Python ZODB clients\n\n{}", py.table(Z, R, &metrics));
    }
    if !args.skip_loadgen {
        println!("### Rust load generator\n\n{}", lg.table(Z, R, &metrics));
    }

    println!("### Targets\n");
    let rate = Metric::Rate("");
    if !args.skip_python {
        if let Some(&n) = args.clients.iter().max() {
            let s = format!("{n} py clients: commit");
            let ratio = py.median(&s, Z, rate) / py.median(&s, R, rate);
            println!(
                "- commits/s with {n} Python clients ≥ 3× runzeo: {ratio:.2}× — {}",
                verdict(ratio >= 3.0)
            );
        }
    }
    if !args.skip_loadgen {
        if let Some(s) = lg.scenarios().iter().find(|s| s.contains("loadBefore")) {
            let ratio = lg.median(s, Z, rate) / lg.median(s, R, rate);
            println!(
                "- loads/s under the Rust load generator ≥ 5× runzeo: {ratio:.2}× — {}",
                verdict(ratio >= 5.0)
            );
        }
    }
    let mut worse = Vec::new();
    for results in [&py, &lg] {
        for s in results.scenarios() {
            let (a, b) = (
                results.median(s, Z, Metric::P99),
                results.median(s, R, Metric::P99),
            );
            if a >= b {
                worse.push(format!("{s} ({a:.3} vs {b:.3} ms)"));
            }
        }
    }
    println!(
        "- lower p99 than runzeo everywhere: {}{}",
        verdict(worse.is_empty()),
        if worse.is_empty() {
            String::new()
        } else {
            format!(" — not lower in: {}", worse.join("; "))
        }
    );
    if !c.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

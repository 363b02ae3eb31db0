//! `zeoraid-bench raid`: what mirroring costs and what it buys, with the Rust load
//! generator (pipelined loads on random preloaded oids, small commits).
//!
//! * embedded: `zeoraid serve` with a `<raidstorage>` over 2 embedded FileStorages
//!   vs `zeoraid serve` with 1 FileStorage (targets: commits/s ≥ 0.9×, loads/s ≥ 1×);
//! * remote: `zeoraid serve` with a `<raidstorage>` over 2 `runzeo` backends
//!   (`client-conflict-resolution true`) vs the load generator talking to one such
//!   `runzeo` directly (targets: commits/s ≥ 0.85×, loads/s ≥ 1.5×). The loads
//!   revisit preloaded objects, so with the backends' object caches (`cache-size`,
//!   `--zeoclient-cache-size`) zeoraid answers them itself; with `0` every load
//!   reaches a runzeo.
//!
//! Server CPU per operation counts every process of the system under test (zeoraid
//! and its runzeo backends).
//!
//! The RAID's two runzeo backends are each kept on a CPU of their own (`taskset`;
//! `--unpinned-backends` leaves them to the kernel), the closest this one machine
//! comes to backends on machines of their own, which is what a RAID is for: left to
//! the kernel, both are often run on the same CPU, taking turns, while the other
//! CPU idles (docs/benchmarks.md). The directly addressed runzeo is left to the
//! kernel, where it measured faster than kept to one CPU.

use std::sync::Arc;

use clap::Args;

use crate::loadgen;
use crate::procs::{self, Server};
use crate::stats::{verdict, Metric, Results, Sample};

#[derive(Debug, Args)]
pub struct RaidArgs {
    #[command(flatten)]
    pub common: crate::Common,
    /// Objects preloaded for the load phases.
    #[arg(long, default_value_t = 10_000)]
    pub preload: usize,
    /// Connections for loads.
    #[arg(long, default_value_t = 16)]
    pub lg_connections: usize,
    /// Concurrent loadBefore calls per connection.
    #[arg(long, default_value_t = 4)]
    pub lg_pipeline: usize,
    /// Connections committing concurrently.
    #[arg(long, default_value_t = 8)]
    pub lg_commit_connections: usize,
    /// `cache-size` of the RAID's `<zeoclient>` backends (ZEO's default `20MB`;
    /// `0`: every load reaches a runzeo, spread over both).
    #[arg(long, default_value = "20MB")]
    pub zeoclient_cache_size: String,
    /// Only the embedded comparison.
    #[arg(long)]
    pub skip_remote: bool,
    /// Measure commits only (no load phase; for profiling the commit path).
    #[arg(long)]
    pub skip_loads: bool,
    /// Only the remote (runzeo backends) comparison.
    #[arg(long)]
    pub skip_embedded: bool,
    /// Leave the RAID's runzeo backends to the kernel's placement instead of
    /// keeping each on a CPU of its own (see the module doc).
    #[arg(long)]
    pub unpinned_backends: bool,
    /// `worker-threads` of every `zeoraid serve` measured (default: zeoraid's
    /// own, one per CPU).
    #[arg(long)]
    pub worker_threads: Option<usize>,
}

/// A system under test: the server clients talk to plus its backend processes.
struct System {
    label: String,
    front: Server,
    backends: Vec<Server>,
    oids: Arc<Vec<zeoraid_storage::Oid>>,
}

impl System {
    fn cpu(&self) -> anyhow::Result<f64> {
        let mut total = self.front.cpu()?;
        for b in &self.backends {
            total += b.cpu()?;
        }
        Ok(total)
    }

    async fn stop(self) {
        self.front.stop().await;
        for b in self.backends {
            b.stop().await;
        }
    }
}

/// One phase's samples: all processes of the system, and the front process alone
/// (zeoraid without its runzeo backends; for a direct runzeo the same).
struct Measured {
    load: Sample,
    commit: Sample,
    load_front_cpu: f64,
    commit_front_cpu: f64,
}

async fn measure(args: &RaidArgs, sys: &System) -> anyhow::Result<Measured> {
    let c = &args.common;
    let connections =
        loadgen::LoadConnection::connect_many(&sys.front.addr, args.lg_connections).await?;
    let (cpu0, front0) = (sys.cpu()?, sys.front.cpu()?);
    let load_seconds = if args.skip_loads { 0.0 } else { c.seconds };
    let mut load = loadgen::pipelined_loads(
        connections,
        args.lg_pipeline,
        sys.oids.clone(),
        load_seconds,
    )
    .await?;
    load.server_cpu = sys.cpu()? - cpu0;
    let load_front_cpu = sys.front.cpu()? - front0;
    let clients = loadgen::connect(&sys.front.addr, args.lg_commit_connections).await?;
    let (cpu0, front0) = (sys.cpu()?, sys.front.cpu()?);
    let mut commit = loadgen::commits(&clients, c.seconds).await?;
    commit.server_cpu = sys.cpu()? - cpu0;
    let commit_front_cpu = sys.front.cpu()? - front0;
    loadgen::close(clients);
    Ok(Measured {
        load,
        commit,
        load_front_cpu,
        commit_front_cpu,
    })
}

/// `sample` with only the front process's CPU as its server CPU.
fn front_only(sample: &Sample, front_cpu: f64) -> Sample {
    Sample {
        server_cpu: front_cpu,
        ..sample.clone()
    }
}

/// Rounds of `a` vs `b`, alternating which goes first; returns the results, and
/// the same with the front process's CPU only.
async fn compare(args: &RaidArgs, a: &System, b: &System) -> anyhow::Result<(Results, Results)> {
    let mut results = Results::default();
    let mut front = Results::default();
    let load_label = format!("{}×{} loadBefore", args.lg_connections, args.lg_pipeline);
    let commit_label = format!("{} committers", args.lg_commit_connections);
    for round in 0..args.common.rounds {
        let order = if round % 2 == 0 { [a, b] } else { [b, a] };
        for sys in order {
            let m = measure(args, sys).await?;
            eprintln!(
                "round {round} {:>22}: {:>7.0} loads/s, {:>6.0} commits/s",
                sys.label,
                m.load.rate(),
                m.commit.rate()
            );
            front.add(
                &load_label,
                &sys.label,
                front_only(&m.load, m.load_front_cpu),
            );
            front.add(
                &commit_label,
                &sys.label,
                front_only(&m.commit, m.commit_front_cpu),
            );
            results.add(&load_label, &sys.label, m.load);
            results.add(&commit_label, &sys.label, m.commit);
        }
    }
    Ok((results, front))
}

async fn preload(
    args: &RaidArgs,
    label: &str,
    front: Server,
    backends: Vec<Server>,
) -> anyhow::Result<System> {
    let oids = loadgen::preload(&front.addr, args.preload, 200).await?;
    Ok(System {
        label: label.to_owned(),
        front,
        backends,
        oids: Arc::new(oids),
    })
}

fn targets(results: &Results, a: &str, b: &str, commits_min: f64, loads_min: f64) {
    let rate = Metric::Rate("");
    for s in results.scenarios() {
        let ratio = results.median(s, a, rate) / results.median(s, b, rate);
        let (what, min) = if s.contains("loadBefore") {
            ("loads/s", loads_min)
        } else {
            ("commits/s", commits_min)
        };
        println!(
            "- {what}: {a} / {b} = {ratio:.2}× (target ≥ {min}×) — {}",
            verdict(ratio >= min)
        );
    }
}

pub async fn run(args: RaidArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let python = procs::find_python(c.python.as_deref())?;
    let zeoraid_bin = procs::find_zeoraid(c.zeoraid.as_deref())?;
    let dir = procs::workdir(&c.workdir, "raid")?;
    eprintln!("work directory {}", dir.display());
    let zeo_options = args
        .worker_threads
        .map(|n| format!("  worker-threads {n}\n"))
        .unwrap_or_default();
    let metrics = [
        Metric::Rate("ops/s"),
        Metric::P50,
        Metric::P99,
        Metric::CpuPerOp,
        Metric::ClientCpuShare,
    ];
    println!(
        "\n## raid (Rust load generator, medians of {} rounds × {} s{})\n",
        c.rounds,
        c.seconds,
        args.worker_threads
            .map(|n| format!("; zeoraid with `worker-threads {n}`"))
            .unwrap_or_default()
    );

    if !args.skip_embedded {
        const A: &str = "RAID of 2 embedded";
        const B: &str = "1 embedded";
        let d = dir.join("raid2");
        let conf = format!(
            "<raidstorage 1>\n{}{}</raidstorage>\n",
            procs::filestorage_section("a", &d.join("a")),
            procs::filestorage_section("b", &d.join("b"))
        );
        let raid = Server::zeoraid(A, &zeoraid_bin, &d, &zeo_options, &conf).await?;
        let raid = preload(&args, A, raid, vec![]).await?;
        let d = dir.join("single");
        let single = Server::zeoraid(
            B,
            &zeoraid_bin,
            &d,
            &zeo_options,
            &procs::filestorage_section("1", &d),
        )
        .await?;
        let single = preload(&args, B, single, vec![]).await?;
        let (results, _) = compare(&args, &raid, &single).await?;
        raid.stop().await;
        single.stop().await;
        println!("### embedded backends\n\n{}", results.table(A, B, &metrics));
        targets(&results, A, B, 0.9, 1.0);
        println!();
    }

    if !args.skip_remote {
        const A: &str = "RAID of 2 runzeo";
        const B: &str = "1 runzeo direct";
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let pin = |i: usize| (!args.unpinned_backends && cpus > 1).then_some(i % cpus);
        let ba = Server::runzeo_on("runzeo a", &python, &dir.join("rz-a"), true, pin(0)).await?;
        let bb = Server::runzeo_on("runzeo b", &python, &dir.join("rz-b"), true, pin(1)).await?;
        let conf = format!(
            "<raidstorage 1>\n{}{}</raidstorage>\n",
            procs::zeoclient_section("a", &ba.addr, &args.zeoclient_cache_size),
            procs::zeoclient_section("b", &bb.addr, &args.zeoclient_cache_size)
        );
        let raid = Server::zeoraid(
            A,
            &zeoraid_bin,
            &dir.join("raid-remote"),
            &zeo_options,
            &conf,
        )
        .await?;
        let raid = preload(&args, A, raid, vec![ba, bb]).await?;
        let direct = Server::runzeo(B, &python, &dir.join("rz-direct"), true).await?;
        let direct = preload(&args, B, direct, vec![]).await?;
        let (results, front) = compare(&args, &raid, &direct).await?;
        raid.stop().await;
        direct.stop().await;
        let placement = if pin(0).is_some() {
            "the RAID's backends kept one per CPU"
        } else {
            "every process placed by the kernel"
        };
        println!(
            "### runzeo backends (`cache-size {}`; {placement})\n\n{}",
            args.zeoclient_cache_size,
            results.table(A, B, &metrics)
        );
        println!(
            "CPU of the front process alone (zeoraid without its backends; runzeo):\n\n{}",
            front.table(A, B, &[Metric::CpuPerOp])
        );
        targets(&results, A, B, 0.85, 1.5);
        println!();
    }
    if !c.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

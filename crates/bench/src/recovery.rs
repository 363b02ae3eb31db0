//! `zeoraid-bench recovery`: how fast a RAID rebuilds an empty backend, and how
//! long a rate-limited recovery takes under a steady commit load.
//!
//! The RAID runs in-process (`RaidStorage` over an embedded FileStorage and/or
//! `ZeoClient`s to `runzeo` processes), so what is timed is `recover()` itself:
//! the common-prefix check, the copy, the catch-up and the switch-over.
//!
//! * *copy rate*: a source preloaded with `--transactions` transactions of
//!   `--records` records of `--record-size` bytes, an empty target, no rate limit:
//!   transactions/s and MB/s (data bytes, 10⁶) copied, for embedded → embedded,
//!   embedded → runzeo and runzeo → runzeo. Beside it, *target alone*: the same
//!   transactions written straight into a fresh target (no RAID, no source) — the
//!   ceiling the copy can reach when the target, not zeoraid, is the limit. The
//!   embedded pair runs twice: targets with the engine's default (fsync at vote
//!   and at finish) and with `vote-fsync off` (at finish only, like Python's).
//! * *under load*: embedded → embedded with `recovery-rate` `--load-rate` MB/s while
//!   a task commits transactions of the same shape through the RAID at half that
//!   rate; the time until the target is optimal against the ideal
//!   `history / (rate − load)` (each catch-up pass copies what was committed
//!   during the one before).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use zeoraid_filestorage::{AsyncFileStorage, Options as FsOptions};
use zeoraid_raid::{RaidOptions, RaidStatus, RaidStorage, RecoveryReport};
use zeoraid_storage::{
    Oid, Operation, Storage, Tid, Transaction, TransactionMeta, TxnId, VoteOutcome,
};
use zeoraid_zeo_client::{ServerAddress, ZeoClient, ZeoClientOptions};

use crate::procs::{self, Server};
use crate::stats::{median, verdict};

#[derive(Debug, Args)]
pub struct RecoveryArgs {
    #[command(flatten)]
    pub common: crate::Common,
    /// Transactions in the source's history.
    #[arg(long, default_value_t = 500)]
    pub transactions: usize,
    /// Records per transaction.
    #[arg(long, default_value_t = 100)]
    pub records: usize,
    /// Bytes per record.
    #[arg(long, default_value_t = 2000)]
    pub record_size: usize,
    /// recovery-rate (MB/s) of the under-load scenario; the load is half of it.
    #[arg(long, default_value_t = 20.0)]
    pub load_rate: f64,
    /// Skip the scenarios with runzeo backends.
    #[arg(long)]
    pub skip_runzeo: bool,
    /// Skip the under-load scenario.
    #[arg(long)]
    pub skip_load: bool,
}

/// The transactions of the history: `records` objects rewritten per transaction.
struct Shape {
    transactions: usize,
    records: usize,
    record_size: usize,
}

impl Shape {
    fn bytes(&self) -> u64 {
        (self.transactions * self.records * self.record_size) as u64
    }

    /// Transaction `i` as restores with explicit tid `tid`.
    fn transaction(&self, id: u64, i: usize, tid: Option<Tid>) -> Transaction {
        let mut t = Transaction::new(TxnId(id), meta(i));
        t.tid = tid;
        let fill = Bytes::from(vec![b'a' + (i % 26) as u8; self.record_size]);
        for r in 0..self.records {
            t.ops.push(Operation::Restore {
                oid: Oid::from_u64((r + 1) as u64),
                data: Some(fill.clone()),
                prev_txn: None,
                blob: None,
            });
        }
        t
    }
}

fn meta(i: usize) -> TransactionMeta {
    TransactionMeta {
        user: Bytes::from_static(b"bench"),
        description: Bytes::from(format!("history {i}")),
        extension: Bytes::new(),
    }
}

async fn commit(storage: &dyn Storage, t: Transaction) -> anyhow::Result<Tid> {
    let id = t.id;
    match storage.vote(t).await? {
        VoteOutcome::Voted { .. } => {}
        VoteOutcome::Conflicts(c) => bail!("{} conflicts", c.len()),
    }
    Ok(storage.finish(id).await?)
}

/// Writes the history into `storage` (explicit, increasing tids); returns the
/// seconds it took.
async fn write_history(storage: &dyn Storage, shape: &Shape) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tid = storage.last_transaction().await?;
    for i in 0..shape.transactions {
        tid = Tid::now_later_than(tid);
        commit(storage, shape.transaction(i as u64 + 1, i, Some(tid))).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn open_fs(path: &Path) -> anyhow::Result<Arc<dyn Storage>> {
    open_fs_with(path, true).await
}

/// `vote_fsync`: the engine's default `true` syncs at vote and at finish; `false`
/// (`vote-fsync off`) only at finish, as Python's FileStorage does.
async fn open_fs_with(path: &Path, vote_fsync: bool) -> anyhow::Result<Arc<dyn Storage>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let options = FsOptions {
        vote_fsync,
        ..FsOptions::default()
    };
    let fs = AsyncFileStorage::open(path, options)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Arc::new(fs))
}

async fn open_zeo(server: &Server) -> anyhow::Result<Arc<dyn Storage>> {
    let options = ZeoClientOptions::new(ServerAddress::parse(&server.addr)?)
        .timeout(Duration::from_secs(120));
    let client = ZeoClient::connect(options)
        .await
        .with_context(|| format!("cannot connect to {}", server.addr))?;
    Ok(Arc::new(client))
}

/// `runzeo` on a copy of the Data.fs at `from` (or an empty one).
async fn runzeo_on(
    python: &Path,
    dir: &Path,
    label: &str,
    from: Option<&Path>,
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    if let Some(from) = from {
        std::fs::copy(from, dir.join("Data.fs"))?;
    }
    Server::runzeo(label, python, dir, true).await
}

fn options(rate: Option<u64>) -> RaidOptions {
    RaidOptions {
        backend_timeout: Duration::from_secs(300),
        recovery_rate: rate,
        ..RaidOptions::default()
    }
}

/// Recovers `b` of a RAID of (`a` source, `b` empty target).
async fn recover(
    source: Arc<dyn Storage>,
    target: Arc<dyn Storage>,
) -> anyhow::Result<RecoveryReport> {
    let raid = RaidStorage::open(
        vec![("a".into(), source, None), ("b".into(), target, None)],
        options(None),
    )
    .await?;
    let report = raid.recover("b").await;
    raid.close().await?;
    Ok(report?)
}

/// One line of the copy-rate table, over rounds.
#[derive(Default)]
struct Rates {
    txns: Vec<f64>,
    mbs: Vec<f64>,
}

impl Rates {
    fn add(&mut self, transactions: u64, bytes: u64, seconds: f64) {
        self.txns.push(transactions as f64 / seconds);
        self.mbs.push(bytes as f64 / seconds / 1e6);
    }

    fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {:.0} | {:.1} |",
            median(&self.txns),
            median(&self.mbs)
        )
    }
}

fn log_report(label: &str, r: &RecoveryReport) {
    eprintln!(
        "{label}: {} transactions, {} bytes in {:.2}s ({:.0} txn/s, {:.1} MB/s, {} passes)",
        r.copied,
        r.bytes,
        r.elapsed.as_secs_f64(),
        r.copied as f64 / r.elapsed.as_secs_f64(),
        r.bytes as f64 / r.elapsed.as_secs_f64() / 1e6,
        r.passes
    );
}

/// Commits transactions of `shape` through the RAID at `rate` bytes/s until
/// stopped; returns (commits, latencies in seconds).
async fn steady_load(
    raid: Arc<RaidStorage>,
    shape: Arc<Shape>,
    rate: f64,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
) -> Vec<f64> {
    let per_txn = (shape.records * shape.record_size) as f64;
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut oids: Vec<Oid> = Vec::new();
    let mut serials: Vec<Tid> = Vec::new();
    let fill = Bytes::from(vec![b'l'; shape.record_size]);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = started + Duration::from_secs_f64(n as f64 * per_txn / rate);
        tokio::time::sleep_until(due.into()).await;
        if oids.is_empty() {
            match raid.new_oids(shape.records as u32).await {
                Ok(o) => {
                    serials = vec![Tid::ZERO; o.len()];
                    oids = o;
                }
                Err(_) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let mut t = Transaction::new(TxnId(1 << 40 | n), meta(n as usize));
        for (oid, serial) in oids.iter().zip(&serials) {
            t.ops.push(Operation::Store {
                oid: *oid,
                serial: *serial,
                data: fill.clone(),
            });
        }
        let begun = Instant::now();
        match commit(raid.as_ref(), t).await {
            Ok(tid) => {
                latencies.push(begun.elapsed().as_secs_f64());
                serials.iter_mut().for_each(|s| *s = tid);
            }
            Err(_) => {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        n += 1;
    }
    latencies
}

pub async fn run(args: RecoveryArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let dir = procs::workdir(&c.workdir, "recovery")?;
    eprintln!("work directory {}", dir.display());
    let shape = Arc::new(Shape {
        transactions: args.transactions,
        records: args.records,
        record_size: args.record_size,
    });
    let mb = shape.bytes() as f64 / 1e6;
    println!(
        "\n## recovery (in-process RAID, medians of {} rounds)\n\nhistory: {} transactions × {} records × {} bytes = {:.0} MB of data\n",
        c.rounds, shape.transactions, shape.records, shape.record_size, mb
    );

    // The source: written once, copied for the runzeo source.
    let source_path = dir.join("source").join("Data.fs");
    let source = open_fs(&source_path).await?;
    let secs = write_history(source.as_ref(), &shape).await?;
    source.close().await?;
    eprintln!("source written in {secs:.1}s");

    let mut rows = Vec::new();
    let mut e2e_mbs = 0.0;
    let mut e2e_limit = 0.0;
    for vote_fsync in [true, false] {
        let mut alone = Rates::default();
        let mut e2e = Rates::default();
        let variant = if vote_fsync {
            "default target"
        } else {
            "target vote-fsync off"
        };
        for round in 0..c.rounds {
            let rd = dir.join(format!("e2e-{round}"));
            let target = open_fs_with(&rd.join("alone").join("Data.fs"), vote_fsync).await?;
            let secs = write_history(target.as_ref(), &shape).await?;
            target.close().await?;
            alone.add(shape.transactions as u64, shape.bytes(), secs);
            let source = open_fs(&source_path).await?;
            let target = open_fs_with(&rd.join("b").join("Data.fs"), vote_fsync).await?;
            let report = recover(source, target).await?;
            log_report(
                &format!("round {round} embedded → embedded ({variant})"),
                &report,
            );
            e2e.add(report.copied, report.bytes, report.elapsed.as_secs_f64());
            let _ = std::fs::remove_dir_all(&rd);
        }
        rows.push(alone.row(&format!("embedded target alone, no RAID ({variant})")));
        rows.push(e2e.row(&format!("embedded → embedded ({variant})")));
        if vote_fsync {
            e2e_mbs = median(&e2e.mbs);
            e2e_limit = median(&alone.mbs);
        }
    }

    if !args.skip_runzeo {
        let python = procs::find_python(c.python.as_deref())?;
        let mut r_alone = Rates::default();
        let mut e2r = Rates::default();
        let mut r2r = Rates::default();
        for round in 0..c.rounds {
            let rd = dir.join(format!("runzeo-{round}"));
            let server = runzeo_on(&python, &rd.join("alone"), "runzeo alone", None).await?;
            let target = open_zeo(&server).await?;
            let secs = write_history(target.as_ref(), &shape).await?;
            target.close().await?;
            server.stop().await;
            r_alone.add(shape.transactions as u64, shape.bytes(), secs);

            let server = runzeo_on(&python, &rd.join("b"), "runzeo target", None).await?;
            let source = open_fs(&source_path).await?;
            let report = recover(source, open_zeo(&server).await?).await?;
            server.stop().await;
            log_report(&format!("round {round} embedded → runzeo"), &report);
            e2r.add(report.copied, report.bytes, report.elapsed.as_secs_f64());

            let src =
                runzeo_on(&python, &rd.join("a"), "runzeo source", Some(&source_path)).await?;
            let tgt = runzeo_on(&python, &rd.join("c"), "runzeo target", None).await?;
            let report = recover(open_zeo(&src).await?, open_zeo(&tgt).await?).await?;
            src.stop().await;
            tgt.stop().await;
            log_report(&format!("round {round} runzeo → runzeo"), &report);
            r2r.add(report.copied, report.bytes, report.elapsed.as_secs_f64());
            let _ = std::fs::remove_dir_all(&rd);
        }
        rows.push(r_alone.row("runzeo target alone (no RAID, via ZeoClient)"));
        rows.push(e2r.row("embedded → runzeo"));
        rows.push(r2r.row("runzeo → runzeo"));
    }
    println!("### copy rate of an empty backend (no rate limit)\n");
    println!("| copy | transactions/s | MB/s |\n|---|--:|--:|");
    for row in &rows {
        println!("{row}");
    }
    println!();

    if !args.skip_load {
        under_load(&args, &dir, &source_path, shape.clone()).await?;
    }

    println!(
        "- embedded → embedded copy ≥ 50 MB/s: {e2e_mbs:.1} MB/s (target alone: {e2e_limit:.1} MB/s) — {}",
        verdict(e2e_mbs >= 50.0)
    );
    if !c.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

async fn under_load(
    args: &RecoveryArgs,
    dir: &Path,
    source_path: &PathBuf,
    shape: Arc<Shape>,
) -> anyhow::Result<()> {
    let rate = args.load_rate * 1e6;
    let load = rate / 2.0;
    println!(
        "### under a steady commit load (embedded → embedded, recovery-rate {:.0} MB/s, load {:.0} MB/s)\n",
        args.load_rate,
        load / 1e6
    );
    println!("| round | took (s) | ideal (s) | passes | copied transactions | commits during | commit p50 / p99 (ms) | failed commits |\n|--:|--:|--:|--:|--:|--:|--:|--:|");
    let ideal = shape.bytes() as f64 / (rate - load);
    for round in 0..args.common.rounds {
        let rd = dir.join(format!("load-{round}"));
        std::fs::create_dir_all(&rd)?;
        std::fs::copy(source_path, rd.join("a.fs"))?;
        let source = open_fs(&rd.join("a.fs")).await?;
        let target = open_fs(&rd.join("b.fs")).await?;
        let raid = Arc::new(
            RaidStorage::open(
                vec![("a".into(), source, None), ("b".into(), target, None)],
                options(Some(rate as u64)),
            )
            .await?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let load_task = tokio::spawn(steady_load(
            raid.clone(),
            shape.clone(),
            load,
            stop.clone(),
            failures.clone(),
        ));
        // Let the load settle before the recovery starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let report = raid.recover("b").await;
        stop.store(true, Ordering::Relaxed);
        let mut latencies = load_task.await?;
        let report = report?;
        if raid.status() != RaidStatus::Optimal {
            bail!("the RAID is {:?} after the recovery", raid.status());
        }
        let verified = raid.verify().await?;
        eprintln!("round {round}: {verified}");
        raid.close().await?;
        log_report(&format!("round {round} under load"), &report);
        latencies.sort_by(f64::total_cmp);
        println!(
            "| {round} | {:.1} | {ideal:.1} | {} | {} | {} | {:.1} / {:.1} | {} |",
            report.elapsed.as_secs_f64(),
            report.passes,
            report.copied,
            latencies.len(),
            crate::stats::percentile(&latencies, 50.0) * 1e3,
            crate::stats::percentile(&latencies, 99.0) * 1e3,
            failures.load(Ordering::Relaxed)
        );
        let _ = std::fs::remove_dir_all(&rd);
    }
    println!();
    Ok(())
}

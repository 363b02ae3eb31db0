//! One conformance suite for every [`Storage`](zeoraid_storage::Storage) implementation: the in-memory
//! storage, the embedded FileStorage, the ZEO client and the RAID.
//!
//! The suite is written against the trait only and modelled on ZODB's own storage
//! tests (`BasicStorage`, `RevisionStorage`, `HistoryStorage`,
//! `TransactionalUndoStorage`, `IteratorStorage`, `PackableStorage`,
//! `Synchronization`, `MTStorage`). A crate runs it from a test:
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn conformance() {
//!     let caps = Capabilities { undo: true, pack: true, ..Capabilities::default() };
//!     zeoraid_conformance::run_all(FnHarness::new(caps, || async { Ok(MyStorage::new()) })).await;
//! }
//! ```
//!
//! Every case creates its own fresh, empty storage through the [`Harness`], is run
//! with a time limit and with panics caught, and is reported by name. `run_all`
//! panics at the end listing every failed case; [`run_cases`] returns the
//! [`Report`] instead, [`run_selected`] runs the cases whose names a predicate
//! accepts, and the environment variable `ZEORAID_CONFORMANCE_ONLY` narrows
//! `run_all`. The individual cases are public (`cases::…`, listed by
//! [`cases::all`]) so that a failing one can also be run on its own.

pub mod cases;
pub mod check;
pub mod data;
pub mod harness;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;

pub use check::{CaseResult, Failure};
pub use harness::{Capabilities, FnHarness, Harness};

/// How long one case may take before it counts as hung (a vote that never returns,
/// a lock never released).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// What happened to one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// The storage's capabilities say the case does not apply.
    Skipped(&'static str),
    Failed(String),
}

/// The outcome of every case that was run, in order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub results: Vec<(&'static str, Outcome, Duration)>,
}

impl Report {
    pub fn failures(&self) -> Vec<(&'static str, &str)> {
        self.results
            .iter()
            .filter_map(|(name, outcome, _)| match outcome {
                Outcome::Failed(message) => Some((*name, message.as_str())),
                _ => None,
            })
            .collect()
    }

    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|(_, o, _)| *o == Outcome::Passed)
            .count()
    }

    pub fn skipped(&self) -> usize {
        self.results
            .iter()
            .filter(|(_, o, _)| matches!(o, Outcome::Skipped(_)))
            .count()
    }

    /// One line per case, then a summary line.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (name, outcome, took) in &self.results {
            let line = match outcome {
                Outcome::Passed => format!("ok       {name} ({took:.2?})\n"),
                Outcome::Skipped(why) => format!("skipped  {name}: {why}\n"),
                Outcome::Failed(message) => format!("FAILED   {name}: {message}\n"),
            };
            out.push_str(&line);
        }
        out.push_str(&format!(
            "conformance: {} passed, {} skipped, {} failed\n",
            self.passed(),
            self.skipped(),
            self.failures().len()
        ));
        out
    }
}

/// Runs every case and panics, naming each failed case, if any failed. The
/// environment variable `ZEORAID_CONFORMANCE_ONLY` (a comma-separated list of
/// substrings of case names) restricts the run.
pub async fn run_all<H: Harness>(harness: H) {
    let only: Option<Vec<String>> = std::env::var("ZEORAID_CONFORMANCE_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let report = run_selected(&harness, |name| match &only {
        Some(list) => list.iter().any(|part| name.contains(part.as_str())),
        None => true,
    })
    .await;
    println!("{}", report.summary());
    let failures = report.failures();
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(name, message)| format!("  {name}: {message}"))
            .collect();
        panic!(
            "{} conformance case(s) failed:\n{}",
            failures.len(),
            list.join("\n")
        );
    }
}

/// Runs every case and returns the report.
pub async fn run_cases<H: Harness>(harness: &H) -> Report {
    run_selected(harness, |_| true).await
}

/// Runs the cases whose names `select` accepts, one after the other.
pub async fn run_selected<H: Harness>(harness: &H, select: impl Fn(&str) -> bool) -> Report {
    let caps = harness.capabilities();
    let mut report = Report::default();
    for case in cases::all::<H>() {
        if !select(case.name) {
            continue;
        }
        let started = Instant::now();
        let outcome = if let Some(why) = (case.skip)(&caps) {
            Outcome::Skipped(why)
        } else {
            let run = AssertUnwindSafe((case.run)(harness)).catch_unwind();
            match tokio::time::timeout(CASE_TIMEOUT, run).await {
                Err(_) => Outcome::Failed(format!("timed out after {CASE_TIMEOUT:?} (hung?)")),
                Ok(Err(panic)) => Outcome::Failed(format!("panicked: {}", panic_message(&panic))),
                Ok(Ok(Err(failure))) => Outcome::Failed(failure.0),
                Ok(Ok(Ok(()))) => Outcome::Passed,
            }
        };
        report.results.push((case.name, outcome, started.elapsed()));
    }
    report
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

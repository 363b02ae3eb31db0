//! One backend of the RAID: its name, storage, call timeout, the last tid it is
//! known to hold and its counters. Every call to a backend goes through
//! [`Backend::call`], which applies the timeout, counts the call as in flight (for
//! the least-outstanding read policy) and sorts the outcome into an answer about the
//! data or a failure of this backend.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeoraid_storage::{CacheStats, Storage, StorageError, Tid};

use crate::lock;

/// Why a call to a backend did not give a usable answer: the backend is at fault.
#[derive(Debug)]
pub(crate) enum Fault {
    /// A failure of this backend (I/O, disconnect, …), not an answer about the data.
    Error(StorageError),
    /// No answer within the backend's timeout.
    TimedOut(Duration),
}

impl Fault {
    /// The degrade reason for a fault during `op`.
    pub(crate) fn reason(&self, op: &str) -> String {
        match self {
            Fault::Error(e) => format!("{op} failed: {e}"),
            Fault::TimedOut(d) => format!("{op} timed out after {}", format_duration(*d)),
        }
    }
}

/// The outcome of one call to one backend.
#[derive(Debug)]
pub(crate) enum CallError {
    /// An answer about the data (`StorageError::is_answer`): every healthy replica
    /// gives the same.
    Answer(StorageError),
    /// The backend is at fault. A *refusal* ([`StorageError::is_refusal`]: read-only,
    /// unsupported, already packing, …) is a fault too, except when every backend
    /// refuses alike (`commit::settle_refusals`): a RAID of backends without blob
    /// directories refuses blobs, it does not fail.
    Fault(Fault),
}

/// `30s` for whole seconds, `1.5s`/`250ms` otherwise.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// What kind of call is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
    /// A question about the backend rather than the data (`last_transaction` at
    /// startup, `info` after every commit): counted only if it fails, so that
    /// `reads` counts what clients read.
    Probe,
}

/// Counters of one backend, for the admin API and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub reads: AtomicU64,
    pub errors: AtomicU64,
    pub read_latency_us: AtomicU64,
    pub write_latency_us: AtomicU64,
    pub in_flight: AtomicUsize,
}

/// A snapshot of a backend's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendCounters {
    /// Commits this backend finished.
    pub commits: u64,
    /// Reads this backend answered (answers about the data included).
    pub reads: u64,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Total time spent in reads.
    pub read_latency_sum: Duration,
    /// Total time spent in writes (new_oids, vote, finish, abort, pack).
    pub write_latency_sum: Duration,
    /// Calls in flight now.
    pub in_flight: usize,
    /// The backend's object cache (a `<zeoclient>`'s `cache-size`), if it keeps one.
    pub cache: Option<CacheStats>,
}

pub(crate) struct Backend {
    pub name: String,
    pub storage: Arc<dyn Storage>,
    pub timeout: Duration,
    pub counters: Counters,
    /// The last tid this backend is known to hold (startup, commits, invalidations).
    pub last_tid: Mutex<Tid>,
}

/// Decrements the in-flight counter when the call ends (or is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Backend {
    pub(crate) fn new(name: String, storage: Arc<dyn Storage>, timeout: Duration) -> Self {
        Backend {
            name,
            storage,
            timeout,
            counters: Counters::default(),
            last_tid: Mutex::new(Tid::ZERO),
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.counters.in_flight.load(Ordering::SeqCst)
    }

    /// Runs one call with this backend's timeout.
    pub(crate) async fn call<T, F>(&self, kind: Kind, fut: F) -> Result<T, CallError>
    where
        F: Future<Output = Result<T, StorageError>>,
    {
        self.call_within(kind, Some(self.timeout), fut).await
    }

    /// Runs one call with the given timeout (`None`: wait as long as it takes).
    pub(crate) async fn call_within<T, F>(
        &self,
        kind: Kind,
        timeout: Option<Duration>,
        fut: F,
    ) -> Result<T, CallError>
    where
        F: Future<Output = Result<T, StorageError>>,
    {
        self.counters.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.counters.in_flight);
        let started = Instant::now();
        let result = match timeout {
            Some(limit) => match tokio::time::timeout(limit, fut).await {
                Ok(r) => r.map_err(classify),
                Err(_) => Err(CallError::Fault(Fault::TimedOut(limit))),
            },
            None => fut.await.map_err(classify),
        };
        self.account(kind, started, &result);
        result
    }

    /// Runs a read that answers at once on this thread (a backend's
    /// `load_before_inline`): counted, but not timed (it takes about a
    /// microsecond, and two clock reads would be a good part of that); no timeout
    /// applies to what cannot wait. `None`: the backend cannot answer this way.
    pub(crate) fn read_inline<T>(
        &self,
        call: impl FnOnce() -> Option<Result<T, StorageError>>,
    ) -> Option<Result<T, CallError>> {
        let result = call()?.map_err(classify);
        let counter = match result {
            Err(CallError::Fault(_)) => &self.counters.errors,
            _ => &self.counters.reads,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(result)
    }

    /// Counts a finished call: latency, reads, errors.
    fn account<T>(&self, kind: Kind, started: Instant, result: &Result<T, CallError>) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let faulted = matches!(result, Err(CallError::Fault(_)));
        match kind {
            Kind::Read => {
                self.counters
                    .read_latency_us
                    .fetch_add(micros, Ordering::Relaxed);
                if !faulted {
                    self.counters.reads.fetch_add(1, Ordering::Relaxed);
                }
            }
            Kind::Write => {
                self.counters
                    .write_latency_us
                    .fetch_add(micros, Ordering::Relaxed);
            }
            Kind::Probe => {}
        }
        if faulted {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn note_tid(&self, tid: Tid) {
        let mut last = lock(&self.last_tid);
        if tid > *last {
            *last = tid;
        }
    }

    pub(crate) fn last_tid(&self) -> Tid {
        *lock(&self.last_tid)
    }

    pub(crate) fn snapshot(&self) -> BackendCounters {
        let c = &self.counters;
        BackendCounters {
            commits: c.commits.load(Ordering::Relaxed),
            reads: c.reads.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            read_latency_sum: Duration::from_micros(c.read_latency_us.load(Ordering::Relaxed)),
            write_latency_sum: Duration::from_micros(c.write_latency_us.load(Ordering::Relaxed)),
            in_flight: c.in_flight.load(Ordering::SeqCst),
            cache: self.storage.cache_stats(),
        }
    }
}

fn classify(e: StorageError) -> CallError {
    if e.is_answer() {
        CallError::Answer(e)
    } else {
        CallError::Fault(Fault::Error(e))
    }
}

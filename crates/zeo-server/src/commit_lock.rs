//! The per-storage commit lock (ZEO's `LockManager`): one transaction at a time is
//! between `vote` and the storage's commit point in `tpc_finish` (the lock is
//! released before the commit's fsync: group commit, `publication.rs`) or
//! `tpc_abort`. A vote that finds the lock held
//! waits in FIFO order — its reply is delayed while the connection keeps answering
//! other requests. The lock is handed directly to the next live waiter on release.
//! With a transaction timeout, a holder that keeps the lock too long has its
//! connection closed; the connection's cleanup aborts the transaction and releases
//! the lock (as it does for any disconnect).
//!
//! Like ZEO, a queue of more than 3 waiting votes is reported as a warning and
//! of more than 9 as an error. ZEO logs one such line per lock, unlock and
//! queued vote, i.e. two or three per commit for as long as the load lasts;
//! here the warnings come at most every [`QUEUE_REPORT_INTERVAL`] (an error
//! after a warning at once), each saying how many it stands for and the
//! longest queue since the last one ([`QueueReports`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use crate::connection::{ConnHandle, ConnId};
use crate::error::{CloseReason, ZeoError};

/// The least time between two reports of a long lock queue at the same level.
pub const QUEUE_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// How loudly a queue of `n` waiting votes is reported (ZEO's levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum QueueLevel {
    Debug,
    Warn,
    Error,
}

impl QueueLevel {
    fn of(n: usize) -> Self {
        if n > 9 {
            QueueLevel::Error
        } else if n > 3 {
            QueueLevel::Warn
        } else {
            QueueLevel::Debug
        }
    }
}

/// A report of a long queue that is due: its level, the longest queue since
/// the previous report, and how many reports it stands for (itself included).
#[derive(Debug, PartialEq, Eq)]
struct QueueReport {
    level: QueueLevel,
    peak: usize,
    events: u64,
}

/// Thins out the reports of a long lock queue (see the module doc).
#[derive(Debug, Default)]
struct QueueReports {
    /// When the last report was logged, and at which level.
    last: Option<(Instant, QueueLevel)>,
    /// Long-queue events since the last report, and the longest queue among them.
    events: u64,
    peak: usize,
}

impl QueueReports {
    /// Notes a queue of `n` at `now` at `level` (warn or error); `Some` if it
    /// is to be logged.
    fn note(&mut self, now: Instant, n: usize, level: QueueLevel) -> Option<QueueReport> {
        self.events += 1;
        self.peak = self.peak.max(n);
        if let Some((at, last_level)) = self.last {
            if level <= last_level && now.saturating_duration_since(at) < QUEUE_REPORT_INTERVAL {
                return None;
            }
        }
        self.last = Some((now, level));
        let report = QueueReport {
            level,
            peak: self.peak,
            events: self.events,
        };
        self.events = 0;
        self.peak = 0;
        Some(report)
    }
}

struct Holder {
    conn: Arc<ConnHandle>,
    generation: u64,
    since: Instant,
    since_unix: f64,
}

struct Waiter {
    conn: Arc<ConnHandle>,
    grant: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    holder: Option<Holder>,
    waiting: VecDeque<Waiter>,
    generation: u64,
}

/// The commit lock of one storage.
pub struct CommitLock {
    storage: String,
    timeout: Option<Duration>,
    state: Mutex<State>,
    queue_reports: Mutex<QueueReports>,
}

/// The outcome of trying to take the lock.
pub enum Acquire {
    /// The caller holds the lock now.
    Acquired,
    /// The caller is queued; the receiver fires when the lock is handed to it.
    Wait(oneshot::Receiver<()>),
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl CommitLock {
    pub fn new(storage: impl Into<String>, timeout: Option<Duration>) -> Arc<Self> {
        Arc::new(CommitLock {
            storage: storage.into(),
            timeout,
            state: Mutex::new(State::default()),
            queue_reports: Mutex::new(QueueReports::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding it; the
        // state itself is always consistent between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take the lock for `conn`, or queue it.
    pub fn acquire(self: &Arc<Self>, conn: &Arc<ConnHandle>) -> Result<Acquire, ZeoError> {
        let mut st = self.state();
        if let Some(h) = &st.holder {
            if h.conn.id == conn.id {
                return Err(ZeoError::storage_transaction_msg("Already voting (locked)"));
            }
            if st.waiting.iter().any(|w| w.conn.id == conn.id) {
                return Err(ZeoError::storage_transaction_msg(
                    "Already voting (waiting)",
                ));
            }
            let (tx, rx) = oneshot::channel();
            st.waiting.push_back(Waiter {
                conn: conn.clone(),
                grant: tx,
            });
            let n = st.waiting.len();
            self.log_waiting(conn, "queue lock", n);
            return Ok(Acquire::Wait(rx));
        }
        self.grant_locked(&mut st, conn.clone());
        Ok(Acquire::Acquired)
    }

    fn grant_locked(self: &Arc<Self>, st: &mut State, conn: Arc<ConnHandle>) {
        st.generation += 1;
        let generation = st.generation;
        let n = st.waiting.len();
        self.log_waiting(&conn, "lock", n);
        st.holder = Some(Holder {
            conn,
            generation,
            since: Instant::now(),
            since_unix: unix_now(),
        });
        if let Some(timeout) = self.timeout {
            let lock = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(lock) = lock.upgrade() {
                    lock.check_timeout(generation, timeout);
                }
            });
        }
    }

    fn check_timeout(&self, generation: u64, timeout: Duration) {
        let st = self.state();
        if let Some(h) = &st.holder {
            if h.generation == generation {
                error!(
                    conn = %h.conn.label(),
                    storage = %self.storage,
                    "Transaction timeout after {} seconds; closing the connection",
                    timeout.as_secs_f64()
                );
                h.conn
                    .close(CloseReason::Server("transaction timeout".into()));
            }
        }
    }

    /// Release whatever `conn` has: the lock (handing it to the next live waiter)
    /// or its place in the queue.
    pub fn release(self: &Arc<Self>, conn: ConnId) {
        let mut st = self.state();
        if st.holder.as_ref().map(|h| h.conn.id) == Some(conn) {
            if let Some(h) = st.holder.take() {
                let held = h.since.elapsed();
                if held > Duration::from_secs(10) {
                    warn!(conn = %h.conn.label(), storage = %self.storage,
                        "commit lock held for {:.1}s", held.as_secs_f64());
                }
                let n = st.waiting.len();
                self.log_waiting(&h.conn, "unlock", n);
            }
            while let Some(w) = st.waiting.pop_front() {
                if w.conn.is_closing() {
                    continue;
                }
                if w.grant.send(()).is_ok() {
                    self.grant_locked(&mut st, w.conn);
                    break;
                }
            }
        } else {
            let before = st.waiting.len();
            st.waiting.retain(|w| w.conn.id != conn);
            if st.waiting.len() != before {
                debug!(storage = %self.storage, "dequeued a waiting vote");
            }
        }
    }

    /// Whether `conn` holds the lock.
    pub fn is_held_by(&self, conn: ConnId) -> bool {
        self.state().holder.as_ref().map(|h| h.conn.id) == Some(conn)
    }

    /// Whether a transaction timeout is configured.
    pub fn has_timeout(&self) -> bool {
        self.timeout.is_some()
    }

    /// Number of votes waiting for the lock.
    pub fn waiting(&self) -> usize {
        self.state().waiting.len()
    }

    /// When the current holder took the lock (Unix time), for `server_status`.
    pub fn lock_time(&self) -> Option<f64> {
        self.state().holder.as_ref().map(|h| h.since_unix)
    }

    fn log_waiting(&self, conn: &ConnHandle, what: &str, n: usize) {
        let level = QueueLevel::of(n);
        if level == QueueLevel::Debug {
            debug!(conn = %conn.label(), "({:?}) {what}: transactions waiting: {n}", self.storage);
            return;
        }
        let report = self
            .queue_reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(Instant::now(), n, level);
        let Some(report) = report else {
            return;
        };
        let mut line = format!("({:?}) {what}: transactions waiting: {n}", self.storage);
        if report.events > 1 {
            line += &format!(
                " ({} such reports since the last one, longest queue {})",
                report.events - 1,
                report.peak
            );
        }
        match report.level {
            QueueLevel::Error => error!(conn = %conn.label(), "{line}"),
            _ => warn!(conn = %conn.label(), "{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_queue_is_reported_once_per_interval_with_what_it_stands_for() {
        let mut reports = QueueReports::default();
        let start = Instant::now();
        let first = reports.note(start, 5, QueueLevel::of(5));
        assert_eq!(
            first,
            Some(QueueReport {
                level: QueueLevel::Warn,
                peak: 5,
                events: 1
            })
        );
        for (i, n) in [4, 7, 6].into_iter().enumerate() {
            let at = start + Duration::from_secs(i as u64 + 1);
            assert_eq!(
                reports.note(at, n, QueueLevel::of(n)),
                None,
                "within the interval"
            );
        }
        let due = reports.note(start + QUEUE_REPORT_INTERVAL, 4, QueueLevel::of(4));
        assert_eq!(
            due,
            Some(QueueReport {
                level: QueueLevel::Warn,
                peak: 7,
                events: 4
            }),
            "the suppressed events and their longest queue are summed up"
        );
    }

    #[test]
    fn an_error_level_queue_after_a_warning_is_reported_at_once() {
        let mut reports = QueueReports::default();
        let start = Instant::now();
        assert!(reports.note(start, 4, QueueLevel::of(4)).is_some());
        let error = reports.note(start + Duration::from_millis(1), 10, QueueLevel::of(10));
        assert_eq!(
            error,
            Some(QueueReport {
                level: QueueLevel::Error,
                peak: 10,
                events: 1
            })
        );
        assert_eq!(
            reports.note(start + Duration::from_millis(2), 5, QueueLevel::of(5)),
            None,
            "a warning right after an error waits for the interval"
        );
        assert_eq!(
            reports.note(start + Duration::from_millis(3), 11, QueueLevel::of(11)),
            None,
            "so does another error"
        );
    }

    #[test]
    fn zeo_levels_for_the_queue_length() {
        assert_eq!(QueueLevel::of(3), QueueLevel::Debug);
        assert_eq!(QueueLevel::of(4), QueueLevel::Warn);
        assert_eq!(QueueLevel::of(9), QueueLevel::Warn);
        assert_eq!(QueueLevel::of(10), QueueLevel::Error);
    }
}

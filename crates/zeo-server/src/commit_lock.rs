//! The per-storage commit lock (ZEO's `LockManager`): one transaction at a time is
//! between `vote` and the storage's commit point in `tpc_finish` (the lock is
//! released before the commit's fsync: group commit, `publication.rs`) or
//! `tpc_abort`. A vote that finds the lock held
//! waits in FIFO order — its reply is delayed while the connection keeps answering
//! other requests. The lock is handed directly to the next live waiter on release.
//! With a transaction timeout, a holder that keeps the lock too long has its
//! connection closed; the connection's cleanup aborts the transaction and releases
//! the lock (as it does for any disconnect).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use crate::connection::{ConnHandle, ConnId};
use crate::error::{CloseReason, ZeoError};

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
        let msg = format!("({:?}) {what}: transactions waiting: {n}", self.storage);
        if n > 9 {
            error!(conn = %conn.label(), "{msg}");
        } else if n > 3 {
            warn!(conn = %conn.label(), "{msg}");
        } else {
            debug!(conn = %conn.label(), "{msg}");
        }
    }
}

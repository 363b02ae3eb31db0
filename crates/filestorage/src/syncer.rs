//! The storage's fsync thread, for the async adapter: it runs the votes'
//! fsyncs, writes the queued status bytes once their data is durable
//! (`flips.rs`) and makes them durable, then wakes the finishes waiting for
//! that. A commit so costs no hand-off to a blocking thread (two per commit
//! otherwise: the vote's fsync and the finish's durability wait), and the
//! finishes waiting together wake once per fsync, not once per vote.
//!
//! Finishes are numbered at their commit point (`FileStorage::finish_deferred`),
//! and status bytes are written in that order. After each fsync the thread
//! publishes the number of the last finish whose status byte — and so every
//! earlier one — it covered ([`Syncer::wait_finished`] waits for that).
//!
//! When finishes wait and no vote is posted, the thread gives a vote that is
//! running or, back to back, about to begin [`VOTE_START_WAIT`] to post its
//! fsync, which then covers them too: under load, one fsync per commit. A lone
//! committer never waits (its votes begin after its finishes are durable).
//!
//! Blocking callers (close, pack, the synchronous engine) keep using the group
//! sync directly; fsyncs stay one at a time under its lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::Notify;

use crate::commit::VoteSync;
use crate::error::FsResult;
use crate::flips::FlipWait;
use crate::group_sync::{WriteSeq, VOTE_START_WAIT};
use crate::storage::FileStorage;

/// What the thread is asked to do.
#[derive(Default)]
struct Requests {
    /// The fsync of the last vote, still to run.
    vote: Option<VoteSync>,
    /// The highest finish number a waiter wants durable.
    wanted: u64,
    /// Stop after the current pass.
    stop: bool,
}

/// The fsync thread's shared state (the thread itself holds the storage only
/// weakly, so dropping the adapter ends it).
#[derive(Default)]
pub(crate) struct Syncer {
    requests: Mutex<Requests>,
    /// Signalled when a request arrives.
    requested: Condvar,
    /// Every finish up to this number is durable.
    durable_through: AtomicU64,
    /// Notified after every pass.
    passed: Notify,
    /// The thread ended: waiters wait on a blocking thread instead.
    stopped: AtomicBool,
    /// The thread, joined by [`Syncer::stop_and_join`].
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Syncer {
    /// Start the fsync thread of `engine`; `None` if the thread could not be
    /// started (the adapter then waits on blocking threads, as without it).
    pub(crate) fn start(engine: &Arc<FileStorage>) -> Option<Arc<Syncer>> {
        let syncer = Arc::new(Syncer::default());
        let weak = Arc::downgrade(engine);
        let shared = syncer.clone();
        let started = std::thread::Builder::new()
            .name("zeoraid-fsync".into())
            .spawn(move || shared.run(weak));
        match started {
            Ok(thread) => {
                *syncer.thread.lock() = Some(thread);
                Some(syncer)
            }
            Err(e) => {
                tracing::warn!(
                    "{}: could not start the fsync thread ({e}); fsyncs run on the \
                     blocking pool",
                    engine.path().display()
                );
                None
            }
        }
    }

    fn requests(&self) -> MutexGuard<'_, Requests> {
        self.requests.lock()
    }

    /// Have the fsync of a vote run (a later vote's covers an earlier one's).
    /// Handed back when the thread has ended: run it on a blocking thread.
    pub(crate) fn post_vote(&self, sync: VoteSync) -> Result<(), VoteSync> {
        let mut requests = self.requests();
        // Checked under the lock the thread takes before it marks itself
        // stopped: a vote posted here is taken by its last pass.
        if self.is_stopped() {
            return Err(sync);
        }
        let replaced = requests.vote.replace(sync);
        drop(requests);
        self.requested.notify_one();
        drop(replaced);
        Ok(())
    }

    /// End the thread after its current pass.
    pub(crate) fn stop(&self) {
        self.requests().stop = true;
        self.requested.notify_one();
    }

    /// End the thread and wait for it (at most its current pass): a pass
    /// holds the storage, so until it ends the file and its lock stay open,
    /// and whoever dropped the storage may want to reopen it at once.
    pub(crate) fn stop_and_join(&self) {
        self.stop();
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Wait until the finished transaction waiting on `wait` is durable.
    /// `None` when the thread has ended: wait on a blocking thread then.
    pub(crate) async fn wait_finished(
        &self,
        engine: &FileStorage,
        wait: FlipWait,
    ) -> Option<FsResult<()>> {
        loop {
            let passed = self.passed.notified();
            tokio::pin!(passed);
            passed.as_mut().enable();
            if self.durable_through.load(Ordering::SeqCst) >= wait.finish()
                || engine.finished_durable(wait)
            {
                return Some(Ok(()));
            }
            if let Some(failure) = engine.group_sync.failure() {
                return Some(Err(engine.sync_error(failure)));
            }
            if self.is_stopped() {
                return None;
            }
            {
                let mut requests = self.requests();
                requests.wanted = requests.wanted.max(wait.finish());
            }
            self.requested.notify_one();
            passed.await;
        }
    }

    fn run(self: Arc<Self>, engine: Weak<FileStorage>) {
        // Marks the syncer stopped however the loop ends, a panic included:
        // waiters then fall back to blocking threads instead of hanging.
        let _stopped = MarkStopped(&self);
        while let Some(posted) = self.next_request() {
            let Some(engine) = engine.upgrade() else {
                break;
            };
            let vote = match posted {
                Some(vote) => Some(vote),
                None if engine.group_sync.vote_expected() => self.await_posted_vote(),
                None => None,
            };
            self.pass(&engine, vote);
            drop(engine);
            self.passed.notify_waiters();
        }
    }

    /// Sleep until there is work: `Some` with the posted vote's fsync, if any;
    /// `None` when asked to stop.
    fn next_request(&self) -> Option<Option<VoteSync>> {
        let mut requests = self.requests();
        loop {
            if requests.stop {
                return None;
            }
            if requests.vote.is_some()
                || requests.wanted > self.durable_through.load(Ordering::SeqCst)
            {
                return Some(requests.vote.take());
            }
            self.requested.wait(&mut requests);
        }
    }

    /// Finishes wait and no vote is posted, but one runs or is about to begin:
    /// give it [`VOTE_START_WAIT`] to post its fsync (module doc).
    fn await_posted_vote(&self) -> Option<VoteSync> {
        let until = Instant::now() + VOTE_START_WAIT;
        let mut requests = self.requests();
        loop {
            if requests.vote.is_some() || requests.stop {
                return requests.vote.take();
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            self.requested.wait_until(&mut requests, until);
        }
    }

    /// One round: the posted vote's fsync, then the status bytes it made
    /// writable, then an fsync covering them; publish what is durable after
    /// each fsync.
    fn pass(&self, engine: &FileStorage, vote: Option<VoteSync>) {
        if let Some(vote) = vote {
            // Status bytes written before the vote's fsync starts are usually
            // covered by it: their finishes need not wait for the one below.
            let written = Written::now(engine);
            // A failure is logged there and refuses writes; waiters see it.
            let _ = vote.run(engine);
            self.publish(engine, written);
        }
        if engine.group_sync.failure().is_some() {
            return;
        }
        if engine.write_ready_flips().is_err() {
            return;
        }
        let written = Written::now(engine);
        match engine.sync_now(written.count) {
            Ok(()) => self.publish(engine, written),
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// Wake the finishes whose status bytes were `written`, if an fsync has
    /// covered those writes.
    fn publish(&self, engine: &FileStorage, written: Written) {
        if engine.group_sync.is_durable(written.count) {
            self.durable_through
                .fetch_max(written.finishes, Ordering::SeqCst);
            self.passed.notify_waiters();
        }
    }
}

/// What was written at one moment: the status bytes of every finish up to
/// `finishes`, among the first `count` writes.
#[derive(Clone, Copy)]
struct Written {
    finishes: u64,
    count: WriteSeq,
}

impl Written {
    fn now(engine: &FileStorage) -> Written {
        // In this order: a status byte's write is counted before its finish
        // is noted, so `count` includes every write behind `finishes`.
        let finishes = engine.flips.written_through();
        Written {
            finishes,
            count: engine.group_sync.last_written(),
        }
    }
}

/// Marks the syncer stopped when the thread's loop ends.
struct MarkStopped<'a>(&'a Syncer);

impl Drop for MarkStopped<'_> {
    fn drop(&mut self) {
        let mut requests = self.0.requests();
        self.0.stopped.store(true, Ordering::SeqCst);
        // A vote posted after the last pass is not run here: its finish waits
        // on a blocking thread, whose fsync covers it. Dropped so that it no
        // longer counts as running.
        let unrun = requests.vote.take();
        drop(requests);
        drop(unrun);
        self.0.passed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::Duration;

    use bytes::Bytes;
    use zeoraid_storage::{Oid, Operation, Tid, Transaction, TransactionMeta, TxnId};

    use super::*;
    use crate::Options;

    fn engine(dir: &tempfile::TempDir) -> Arc<FileStorage> {
        Arc::new(FileStorage::open(dir.path().join("Data.fs"), Options::default()).unwrap())
    }

    /// Vote (without its fsync) and pass the commit point of one store.
    fn vote_and_finish(engine: &FileStorage, n: u64) -> (Option<VoteSync>, FlipWait) {
        let mut t = Transaction::new(
            TxnId(n),
            TransactionMeta {
                user: Bytes::new(),
                description: Bytes::new(),
                extension: Bytes::new(),
            },
        );
        t.ops = vec![Operation::Store {
            oid: Oid::from_u64(n),
            serial: Tid::ZERO,
            data: Bytes::from_static(b"data"),
        }];
        let (_, sync) = engine.vote_unsynced(&t).unwrap();
        let (_, wait) = engine.finish_deferred(t.id).unwrap();
        (sync, wait)
    }

    fn wait_stopped(syncer: &Syncer) {
        let until = Instant::now() + Duration::from_secs(10);
        while !syncer.is_stopped() {
            assert!(Instant::now() < until, "the fsync thread did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test]
    async fn a_finish_is_acknowledged_once_its_queued_status_byte_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir);
        let syncer = Syncer::start(&engine).unwrap();
        let (sync, wait) = vote_and_finish(&engine, 1);
        assert!(
            matches!(wait, FlipWait::Queued { .. }),
            "its data is not durable yet: the status byte waits"
        );
        assert!(syncer.post_vote(sync.expect("vote-fsync is on")).is_ok());
        syncer.wait_finished(&engine, wait).await.unwrap().unwrap();
        assert!(engine.flips.is_empty(), "the status byte was written");
        let group = &engine.group_sync;
        assert!(group.is_durable(group.last_written()), "and made durable");
        assert_eq!(
            group.fsyncs(),
            2,
            "the vote's fsync, then the status byte's"
        );
        syncer.stop();
        wait_stopped(&syncer);
    }

    #[tokio::test]
    async fn finishes_without_a_posted_vote_are_made_durable_too() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir);
        let syncer = Syncer::start(&engine).unwrap();
        let (sync, first) = vote_and_finish(&engine, 1);
        // Its fsync run elsewhere, as the blocking fallback does.
        sync.unwrap().run(&engine).unwrap();
        let (sync, second) = vote_and_finish(&engine, 2);
        sync.unwrap().run(&engine).unwrap();
        let both = async {
            syncer.wait_finished(&engine, first).await.unwrap().unwrap();
            syncer
                .wait_finished(&engine, second)
                .await
                .unwrap()
                .unwrap();
        };
        tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .expect("the thread works for waiters alone");
        assert!(engine.flips.is_empty());
        syncer.stop();
        wait_stopped(&syncer);
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_every_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir);
        let syncer = Syncer::start(&engine).unwrap();
        let (first_sync, first) = vote_and_finish(&engine, 1);
        let (second_sync, second) = vote_and_finish(&engine, 2);
        engine.group_sync.fail_next_fsync();
        assert!(syncer.post_vote(second_sync.unwrap()).is_ok());
        drop(first_sync);
        let first = syncer.wait_finished(&engine, first).await.unwrap();
        let second = syncer.wait_finished(&engine, second).await.unwrap();
        assert!(first.is_err(), "{first:?}");
        assert!(second.is_err(), "{second:?}");
        assert!(
            !engine.flips.is_empty(),
            "no status byte is written after a failed fsync"
        );
        syncer.stop();
        wait_stopped(&syncer);
    }

    #[tokio::test]
    async fn a_stopped_thread_hands_votes_and_waiters_back() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir);
        let syncer = Syncer::start(&engine).unwrap();
        syncer.stop();
        wait_stopped(&syncer);
        let (sync, wait) = vote_and_finish(&engine, 1);
        let sync = sync.unwrap();
        let handed_back = syncer.post_vote(sync).expect_err("nobody would run it");
        assert!(syncer.wait_finished(&engine, wait).await.is_none());
        handed_back.run(&engine).unwrap();
        engine.wait_finished(wait).unwrap();
        assert!(engine.flips.is_empty());
    }

    #[test]
    fn dropping_the_storage_ends_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir);
        let syncer = Syncer::start(&engine).unwrap();
        drop(engine);
        // Woken by a request, the thread finds the storage gone.
        syncer.requests().wanted = 1;
        syncer.requested.notify_one();
        wait_stopped(&syncer);
    }
}

//! Group fsync of `Data.fs`: commits write (or queue) their status byte and go on; the
//! durability of what was written is established by `fdatasync`s that each cover
//! every write counted before they started, so one fsync acknowledges many
//! finishes (and the vote's own fsync covers the status bytes written before it).
//!
//! Writes that need an fsync are counted *after* they completed (`written`).
//! `synced` is the count the last successful fsync covered. Fsyncs run one at a
//! time under `sync_lock`: a waiter takes the lock, and finds its write either
//! covered by the fsync it waited for, or runs one covering everything written
//! so far. Serialising them also keeps Linux's error reporting meaningful: a
//! write-back error is reported once per open file, to the next fsync that
//! checks, so two concurrent fsyncs of one handle could see it only in one of
//! them; one at a time, the fsync that reports it is the one that covered it.
//!
//! A vote with `vote-fsync` ends with an fsync that covers the finishes before
//! it, so a finish waiting for durability while a vote runs lets that vote's
//! fsync cover it (for at most [`VOTE_WAIT`]) rather than start one of its own
//! that the vote would then have to wait for: under load, one fsync per commit,
//! not two. Under load the next vote typically starts a few microseconds
//! *after* the finish's wait does (the ZEO server hands its commit lock to the
//! next session, which then builds its transaction), so when the last vote
//! began while a finish still waited (commits back to back), a wait that finds
//! no vote running waits up to [`VOTE_START_WAIT`] for one to begin. A lone
//! committer never waits: its votes begin after its finishes are durable.
//! The async adapter's fsync thread (`syncer.rs`) applies the same rule.
//!
//! An fsync failure is final (like PostgreSQL since 2018): the kernel may have
//! dropped the dirty pages it could not write and marked them clean, so a later
//! fsync would succeed without the data ever reaching the disk. The storage
//! then refuses every further write until it is reopened, which rereads the
//! file from the disk (see docs/filestorage.md, "Group commit").

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a durability wait lets a running vote's fsync cover it before it
/// runs an fsync itself (a vote that copies large blobs can take long).
pub const VOTE_WAIT: Duration = Duration::from_millis(20);

/// How long a durability wait waits for the next vote to begin, when commits
/// come back to back (module doc).
pub const VOTE_START_WAIT: Duration = Duration::from_micros(500);

/// The write position in fsync order of one counted write.
pub type WriteSeq = u64;

/// The group-fsync state of one storage file.
#[derive(Debug, Default)]
pub struct GroupSync {
    /// Writes counted so far (each after it completed).
    written: AtomicU64,
    /// Every write counted up to this is durable.
    synced: AtomicU64,
    /// Held while an fsync runs: one at a time (module doc).
    sync_lock: Mutex<()>,
    /// Why the storage refuses writes after a failed fsync.
    failure: OnceLock<String>,
    /// Fsyncs run so far (for tests and the operator).
    fsyncs: AtomicU64,
    /// Make the next fsync fail, for tests of the failure path.
    fail_next: AtomicBool,
    /// The votes that will fsync and have not yet (shared with their guards).
    votes: Arc<Votes>,
    /// Whether the last vote began while a finish waited for durability.
    back_to_back: AtomicBool,
}

/// The votes whose fsync is still to come.
#[derive(Debug, Default)]
struct Votes {
    /// How many (the next vote may begin while the last one's guard is being
    /// dropped).
    running: Mutex<usize>,
    /// Signalled when one begins or ends.
    changed: Condvar,
}

/// A vote that ends with an fsync is running (or its fsync is) while this
/// lives. It owns its share of the state, so it can move to the thread that
/// runs the fsync.
pub struct VoteInProgress(Arc<Votes>);

impl Drop for VoteInProgress {
    fn drop(&mut self) {
        let mut running = self.0.running.lock();
        *running = running.saturating_sub(1);
        drop(running);
        self.0.changed.notify_all();
    }
}

impl GroupSync {
    /// Count a completed write that needs an fsync; returns its number.
    pub fn note_write(&self) -> WriteSeq {
        self.written.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The number of the last counted write.
    pub fn last_written(&self) -> WriteSeq {
        self.written.load(Ordering::SeqCst)
    }

    /// Whether write `seq` is known durable.
    pub fn is_durable(&self, seq: WriteSeq) -> bool {
        self.synced.load(Ordering::SeqCst) >= seq
    }

    /// Why writes are refused, after an fsync failed.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Refuse writes from now on, as after a failed fsync (a status byte that
    /// could not be written).
    pub(crate) fn fail(&self, failure: String) {
        let _ = self.failure.set(failure);
    }

    /// Fsyncs run so far.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::SeqCst)
    }

    /// Make the next fsync fail with an I/O error (tests of the failure path).
    #[doc(hidden)]
    pub fn fail_next_fsync(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    /// Note that a vote that ends with an fsync runs (one at a time).
    pub fn vote_begins(&self) -> VoteInProgress {
        let finish_waiting = !self.is_durable(self.last_written());
        self.back_to_back.store(finish_waiting, Ordering::SeqCst);
        *self.votes.running.lock() += 1;
        self.votes.changed.notify_all();
        VoteInProgress(Arc::clone(&self.votes))
    }

    /// Whether a vote that will fsync is running, or — back to back — about
    /// to begin.
    pub fn vote_expected(&self) -> bool {
        self.back_to_back.load(Ordering::SeqCst) || *self.votes.running.lock() > 0
    }

    /// Let a running — or, back to back, an imminent — vote's fsync cover
    /// write `seq` (module doc).
    fn wait_for_running_vote(&self, seq: WriteSeq) {
        let start = Instant::now();
        let begin_by = if self.back_to_back.load(Ordering::SeqCst) {
            start + VOTE_START_WAIT
        } else {
            start
        };
        let end_by = start + VOTE_WAIT;
        let mut voting = self.votes.running.lock();
        while !self.is_durable(seq) {
            let now = Instant::now();
            let until = if *voting > 0 { end_by } else { begin_by };
            if now >= until {
                return;
            }
            self.votes.changed.wait_until(&mut voting, until);
        }
    }

    /// Return once write `seq` is durable: at once when an fsync already
    /// covered it, else after the fsync of a running vote or the fsync running
    /// now (if they cover it), or after one started here, which covers every
    /// write counted before it starts.
    /// `file` gives the handle to fsync (read when the fsync starts: pack may
    /// have swapped files). Blocks: call it on a blocking thread.
    pub fn wait_durable(
        &self,
        seq: WriteSeq,
        file: impl FnOnce() -> std::sync::Arc<File>,
    ) -> Result<(), String> {
        if self.is_durable(seq) {
            return Ok(());
        }
        self.wait_for_running_vote(seq);
        self.sync_covering(seq, file)
    }

    /// The vote's own fsync: like [`GroupSync::wait_durable`] but without
    /// waiting for a running vote (it is that vote).
    pub fn sync_covering(
        &self,
        seq: WriteSeq,
        file: impl FnOnce() -> std::sync::Arc<File>,
    ) -> Result<(), String> {
        if self.is_durable(seq) {
            return Ok(());
        }
        let _one_at_a_time = self.sync_lock.lock();
        if self.is_durable(seq) {
            return Ok(());
        }
        if let Some(failure) = self.failure() {
            return Err(failure.to_string());
        }
        let target = self.last_written();
        let file = file();
        self.fsyncs.fetch_add(1, Ordering::SeqCst);
        let synced = if self.fail_next.swap(false, Ordering::SeqCst) {
            Err(std::io::Error::other("simulated fsync failure"))
        } else {
            file.sync_data()
        };
        match synced {
            Ok(()) => {
                self.synced.fetch_max(target, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                let failure = format!(
                    "fdatasync failed ({e}): what was written since the last successful \
                     fsync may not be on disk; the storage refuses writes until it is \
                     reopened"
                );
                // Set while still holding the lock: no later fsync may count.
                let _ = self.failure.set(failure);
                Err(self.failure().unwrap_or("fdatasync failed").to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_file() -> (tempfile::TempDir, Arc<File>) {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        (dir, Arc::new(f))
    }

    #[test]
    fn one_fsync_covers_every_write_counted_before_it() {
        let (_d, f) = temp_file();
        let g = GroupSync::default();
        let a = g.note_write();
        let b = g.note_write();
        g.wait_durable(b, || f.clone()).unwrap();
        assert_eq!(g.fsyncs(), 1);
        g.wait_durable(a, || f.clone()).unwrap();
        assert_eq!(
            g.fsyncs(),
            1,
            "a write covered by an earlier fsync waits for none"
        );
        let c = g.note_write();
        assert!(!g.is_durable(c));
        g.wait_durable(c, || f.clone()).unwrap();
        assert_eq!(g.fsyncs(), 2);
    }

    #[test]
    fn concurrent_waiters_share_fsyncs() {
        let (_d, f) = temp_file();
        let g = Arc::new(GroupSync::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (g, f) = (g.clone(), f.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let seq = g.note_write();
                        g.wait_durable(seq, || f.clone()).unwrap();
                        assert!(g.is_durable(seq));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(g.fsyncs() <= 320);
        assert!(g.is_durable(320));
    }

    #[test]
    fn a_waiter_lets_a_running_vote_fsync_cover_it() {
        let (_d, f) = temp_file();
        let g = Arc::new(GroupSync::default());
        let finished = g.note_write();
        let vote = g.vote_begins();
        let waiter = {
            let (g, f) = (g.clone(), f.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                g.wait_durable(finished, || f).unwrap();
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(2));
        let voted = g.note_write();
        g.sync_covering(voted, || f.clone()).unwrap();
        drop(vote);
        let waited = waiter.join().unwrap();
        assert!(g.is_durable(finished));
        // Covered by the vote's fsync, unless this machine stalled the vote
        // past the waiter's patience (then the waiter ran its own).
        assert!(
            g.fsyncs() == 1 || waited >= VOTE_WAIT,
            "{} fsyncs after {waited:?}",
            g.fsyncs()
        );
    }

    #[test]
    fn a_failed_fsync_fails_its_waiters_and_every_later_one() {
        let (_d, f) = temp_file();
        let g = GroupSync::default();
        let a = g.note_write();
        g.wait_durable(a, || f.clone()).unwrap();
        let b = g.note_write();
        g.fail_next_fsync();
        let err = g.wait_durable(b, || f.clone()).unwrap_err();
        assert!(err.contains("simulated fsync failure"), "{err}");
        assert!(g.failure().is_some());
        // What an earlier fsync covered stays durable; nothing later counts.
        g.wait_durable(a, || f.clone()).unwrap();
        let c = g.note_write();
        assert!(g.wait_durable(c, || f.clone()).is_err());
        assert!(g.wait_durable(b, || f.clone()).is_err());
        assert_eq!(g.fsyncs(), 2, "no fsync runs after a failure");
    }
}

//! Status bytes written after the commit point: with `vote-fsync`, a finish
//! whose vote's fsync has not yet completed publishes its transaction at once
//! (the next vote may run) and leaves the status byte `c` on disk; the byte is
//! flipped here once an fsync covered the transaction's data. So the commit
//! lock is never held for an fsync, and a torn transaction still can never pass
//! for a committed one: its status byte reaches the disk only after its data.
//!
//! Flips are written in file order, under the queue's lock, and a finish is
//! acknowledged only after an fsync that covered its own flip — and so every
//! earlier one. After a crash the open cuts at the first transaction still
//! marked `c`, as Python's `read_index` does; whatever it cuts was never
//! acknowledged.
//!
//! Readers that look at status bytes (iterator, undo log, undo, pack) first
//! have the flips up to their end written ([`FileStorage::write_flips_before`]).

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::FsResult;
use crate::format::TXN_STATUS_OFFSET;
use crate::group_sync::WriteSeq;
use crate::storage::FileStorage;

/// A published transaction whose status byte is still `c` on disk.
#[derive(Debug, Clone, Copy)]
struct Unflipped {
    tpos: u64,
    /// The status byte to write (`' '`, or `'p'` for a copied packed one).
    status: u8,
    /// The write of its data: durable before the flip.
    data: WriteSeq,
    /// Its finish number.
    finish: u64,
}

/// The queue of status bytes to write, in file order.
#[derive(Debug, Default)]
pub(crate) struct Flips {
    queue: Mutex<VecDeque<Unflipped>>,
    /// The last finish number handed out (finishes are numbered at their
    /// commit point, in commit order).
    numbered: AtomicU64,
    /// The status bytes of every finish up to this number are written.
    written_through: AtomicU64,
}

impl Flips {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Unflipped>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue().is_empty()
    }

    /// The number of the next finish (called at its commit point).
    pub(crate) fn number_finish(&self) -> u64 {
        self.numbered.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Note that finish `finish`'s status byte — the last one outstanding —
    /// was written (after its write was counted).
    pub(crate) fn note_written(&self, finish: u64) {
        self.written_through.fetch_max(finish, Ordering::SeqCst);
    }

    /// The status bytes of every finish up to this number are written (and
    /// their writes counted).
    pub(crate) fn written_through(&self) -> u64 {
        self.written_through.load(Ordering::SeqCst)
    }
}

/// Flip the status byte of the transaction at `tpos` to `status`.
pub(crate) fn write_status_byte(file: &File, tpos: u64, status: u8) -> std::io::Result<()> {
    file.write_all_at(&[status], tpos + TXN_STATUS_OFFSET)
}

/// What a finished transaction's durability waits for.
#[derive(Debug, Clone, Copy)]
pub enum FlipWait {
    /// The status byte was written at the commit point, as write `seq`.
    Written { seq: WriteSeq, finish: u64 },
    /// The status byte is queued until the data write `data` is durable.
    Queued { data: WriteSeq, finish: u64 },
}

impl FlipWait {
    /// The finish number of the transaction.
    pub fn finish(&self) -> u64 {
        match self {
            FlipWait::Written { finish, .. } | FlipWait::Queued { finish, .. } => *finish,
        }
    }
}

impl FileStorage {
    /// Queue the status byte of the transaction at `tpos`, published now,
    /// until its data (write `data`) is durable.
    pub(crate) fn queue_flip(&self, tpos: u64, status: u8, data: WriteSeq, finish: u64) {
        self.flips.queue().push_back(Unflipped {
            tpos,
            status,
            data,
            finish,
        });
    }

    /// Write the queued status bytes whose data is durable, in file order. A
    /// failure is final like a failed fsync: the storage refuses writes.
    pub(crate) fn write_ready_flips(&self) -> FsResult<()> {
        let mut queue = self.flips.queue();
        let Some(first) = queue.front() else {
            return Ok(());
        };
        if !self.group_sync.is_durable(first.data) {
            return Ok(());
        }
        let file = self.st().file.clone();
        while let Some(next) = queue.front().copied() {
            if !self.group_sync.is_durable(next.data) {
                break;
            }
            if let Err(e) = write_status_byte(&file, next.tpos, next.status) {
                let failure = format!(
                    "writing the status byte at {} failed ({e}); the storage refuses \
                     writes until it is reopened",
                    next.tpos
                );
                tracing::error!("{}: {failure}", self.path.display());
                self.group_sync.fail(failure.clone());
                return Err(self.sync_error(&failure));
            }
            self.group_sync.note_write();
            self.flips.note_written(next.finish);
            // Dequeued only once written: a reader that no longer finds it
            // queued reads the new byte.
            queue.pop_front();
        }
        Ok(())
    }

    /// Have every status byte of a transaction before `end` written (not yet
    /// durable): for readers that look at status bytes. May wait for the fsync
    /// of the last transactions' data.
    pub(crate) fn write_flips_before(&self, end: u64) -> FsResult<()> {
        let needed = self
            .flips
            .queue()
            .iter()
            .filter(|f| f.tpos < end)
            .map(|f| f.data)
            .max();
        if let Some(data) = needed {
            self.wait_durable(data)?;
            self.write_ready_flips()?;
        }
        Ok(())
    }

    /// Block until the finished transaction waiting on `wait` is durable.
    pub fn wait_finished(&self, wait: FlipWait) -> FsResult<()> {
        match wait {
            FlipWait::Written { seq, .. } => self.wait_durable(seq),
            FlipWait::Queued { data, .. } => {
                self.wait_durable(data)?;
                // Ours and every earlier one are written now (here or by
                // another waiter, which counted the write before dequeuing).
                self.write_ready_flips()?;
                self.wait_durable(self.group_sync.last_written())
            }
        }
    }

    /// Whether the finished transaction waiting on `wait` is durable already.
    pub fn finished_durable(&self, wait: FlipWait) -> bool {
        match wait {
            FlipWait::Written { seq, .. } => self.group_sync.is_durable(seq),
            FlipWait::Queued { .. } => false,
        }
    }
}

//! Two-phase commit: `vote` checks the whole transaction and appends it with
//! status `c` (checkpoint), fsynced by default; `finish` publishes the new
//! records in the index — the commit point — and flips the status byte to
//! `' '` (or `p`) once the data is durable (at once, or later: `flips.rs`); its
//! durability is a group fsync (`group_sync.rs`) shared with the finishes and
//! votes around it; `abort` truncates the appended bytes so no trace is left.
//!
//! One transaction at a time may be voted; a second `vote` on the synchronous
//! engine is refused (the async adapter makes it wait instead).

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use zeoraid_storage::{
    Conflict, Oid, Operation, StorageError, Tid, Transaction, TxnId, VoteOutcome,
};

use crate::error::{FsError, FsResult};
use crate::flips::{write_status_byte, FlipWait};
use crate::format::{
    encode_data_record, DataHeader, Reader, TxnHeader, STATUS_CHECKPOINT, STATUS_NORMAL,
    STATUS_PACKED, TXN_HEADER_LEN,
};
use crate::group_sync::{VoteInProgress, WriteSeq};
use crate::storage::{FileStorage, State};

/// A voted transaction, between `vote` and `finish`/`abort`.
#[derive(Debug)]
pub struct Pending {
    pub id: TxnId,
    pub tid: Tid,
    /// Position of its transaction header (= the committed end before it).
    pub tpos: u64,
    /// Position after its redundant length.
    pub end: u64,
    pub status: u8,
    /// New index entries, in write order.
    pub tindex: Vec<(Oid, u64)>,
    /// Blob files put in place for it (removed on abort).
    pub blob_files: Vec<PathBuf>,
    /// With `vote-fsync`, the write of its data, which must be durable before
    /// the status byte is touched.
    pub vote_seq: Option<WriteSeq>,
}

/// The fsync a vote still owes (`vote-fsync`). [`FileStorage::vote_unsynced`]
/// hands it out so that the vote can be answered first: the fsync then runs
/// while the client decides to finish, and the status byte is written only
/// after it (`flips.rs`; a durability wait runs an fsync itself if nobody ran
/// this one).
#[must_use = "the voted transaction's status byte waits for this fsync"]
pub struct VoteSync {
    seq: WriteSeq,
    /// Finishes waiting for durability let this fsync cover them.
    _voting: VoteInProgress,
}

impl VoteSync {
    /// Fsync the voted transaction (and every write before it) of `engine`,
    /// the storage that voted it. A failure is final: the storage then refuses
    /// writes, the finish of this transaction included.
    pub fn run(self, engine: &FileStorage) -> FsResult<()> {
        engine
            .sync_now(self.seq)
            .inspect_err(|e| tracing::error!("voting: {e}"))
    }
}

/// A record of the transaction being built (FileStorage's `_tindex` plus what
/// `_undoDataInfo` needs to read back from the temp file).
#[derive(Clone, Debug)]
pub(crate) struct TRec {
    pub pos: u64,
    pub data: Option<Bytes>,
    pub back: u64,
}

/// Where a blob for the new transaction comes from.
enum BlobSource {
    File(PathBuf),
    Revision(Tid),
}

/// Builds the data records of one transaction in memory.
pub(crate) struct TxnBuilder<'a> {
    pub st: &'a State,
    pub reader: Reader<'a>,
    pub tid: Tid,
    /// Position of the transaction header.
    pub tpos: u64,
    /// Length of the header with user/description/extension.
    pub hlen: u64,
    pub recs: Vec<u8>,
    pub tindex: HashMap<Oid, TRec>,
    pub order: Vec<(Oid, u64)>,
    pub conflicts: Vec<Conflict>,
    pub undone: Vec<Oid>,
    pub max_oid: Oid,
    blobs: Vec<(Oid, BlobSource)>,
    has_blob_dir: bool,
}

impl<'a> TxnBuilder<'a> {
    /// Absolute position the next record gets.
    pub fn here(&self) -> u64 {
        self.tpos + self.hlen + self.recs.len() as u64
    }

    /// Append a record: `data` `Some` writes a pickle, `None` the back-pointer.
    pub fn push(&mut self, oid: Oid, prev: u64, data: Option<Bytes>, back: u64) {
        let here = self.here();
        let h = DataHeader {
            oid,
            tid: self.tid,
            prev,
            tloc: self.tpos,
            plen: 0,
            back,
        };
        let data = data.filter(|d| !d.is_empty());
        encode_data_record(&mut self.recs, &h, data.as_deref());
        self.tindex.insert(
            oid,
            TRec {
                pos: here,
                data,
                back,
            },
        );
        self.order.push((oid, here));
    }

    /// Committed position of `oid` (0 when none), FileStorage `_index_get(oid, 0)`.
    pub fn committed_pos(&self, oid: Oid) -> u64 {
        self.st.index.get(&oid).copied().unwrap_or(0)
    }

    fn note_oid(&mut self, oid: Oid) {
        if oid > self.max_oid {
            self.max_oid = oid;
        }
    }

    fn store(&mut self, oid: Oid, serial: Tid, data: Bytes) -> FsResult<()> {
        self.note_oid(oid);
        let old = self.committed_pos(oid);
        if old != 0 {
            let committed = self.reader.data_header(old, Some(oid))?.tid;
            if committed != serial {
                self.conflicts.push(Conflict {
                    oid,
                    committed,
                    read: serial,
                    data,
                });
                return Ok(());
            }
        }
        self.push(oid, old, Some(data), 0);
        Ok(())
    }

    fn check_current(&self, oid: Oid, serial: Tid) -> FsResult<()> {
        // BaseStorage.checkCurrentSerialInTransaction via lastTid/getTid: a
        // missing object or an undone creation counts as "no serial".
        let committed = match self.st.index.get(&oid) {
            Some(pos) => {
                let h = self.reader.data_header(*pos, Some(oid))?;
                if h.plen == 0 && h.back == 0 {
                    None
                } else {
                    Some(h.tid)
                }
            }
            None => None,
        };
        if committed != Some(serial) {
            return Err(FsError::read_conflict(
                oid,
                committed.unwrap_or(Tid::ZERO),
                serial,
            ));
        }
        Ok(())
    }

    fn delete(&mut self, oid: Oid, serial: Tid) -> FsResult<()> {
        let old = self.committed_pos(oid);
        if old == 0 {
            return Err(FsError::pos_key(oid));
        }
        let committed = self.reader.data_header(old, Some(oid))?.tid;
        if committed != serial {
            return Err(FsError::Storage(StorageError::Conflict {
                oid,
                committed,
                read: serial,
            }));
        }
        self.push(oid, old, None, 0);
        Ok(())
    }

    /// FileStorage `restore`: no checks; a back-pointer to `prev_txn`'s record
    /// of `oid` when that transaction is here (and its data matches `data`, if
    /// given), else the data, else a zero back-pointer (undone creation).
    fn restore(
        &mut self,
        oid: Oid,
        data: Option<Bytes>,
        prev_txn: Option<Tid>,
        blob: Option<PathBuf>,
    ) -> FsResult<()> {
        self.note_oid(oid);
        let mut prev_pos = 0;
        if let Some(prev_txn) = prev_txn {
            let start = self.committed_pos(oid);
            if let Some(pos) = self.reader.find_in_chain(start, oid, prev_txn) {
                prev_pos = self.reader.matching_record(pos, data.as_deref())?;
            } else if let Some(tpos) =
                FileStorage::txn_find(self.reader.file, self.st.pos, prev_txn)?
            {
                prev_pos = self.data_find(tpos, oid, data.as_deref())?;
            }
            if prev_pos == 0 && data.is_none() {
                return Err(FsError::transaction(format!(
                    "restore of {oid}: no record of it in transaction {prev_txn:?} to point back to"
                )));
            }
        }
        let old = self.committed_pos(oid);
        if prev_pos != 0 {
            self.push(oid, old, None, prev_pos);
        } else {
            self.push(oid, old, data, 0);
        }
        if let Some(blob) = blob {
            self.add_blob(oid, BlobSource::File(blob))?;
        }
        Ok(())
    }

    /// FileStorage `_data_find`: the last record of `oid` in the transaction at
    /// `tpos`; 0 when absent or when its data differs from `data`.
    pub fn data_find(&self, tpos: u64, oid: Oid, data: Option<&[u8]>) -> FsResult<u64> {
        let h = self.reader.txn_header(tpos)?;
        let tend = tpos + h.tlen;
        let mut pos = tpos + h.header_len();
        let mut found: Option<(u64, DataHeader)> = None;
        while pos < tend {
            let dh = self.reader.data_header(pos, None)?;
            let len = dh.record_len();
            if dh.oid == oid {
                found = Some((pos, dh));
            }
            pos += len;
        }
        let Some((pos, dh)) = found else {
            return Ok(0);
        };
        if dh.plen == 0 {
            return Ok(pos);
        }
        match data {
            None => Ok(pos),
            Some(d) => {
                if dh.plen != d.len() as u64 {
                    tracing::error!("mismatch between data and backpointer at {pos}");
                    return Ok(0);
                }
                if self.reader.data(pos, &dh)? == d {
                    Ok(pos)
                } else {
                    Ok(0)
                }
            }
        }
    }

    fn add_blob(&mut self, oid: Oid, src: BlobSource) -> FsResult<()> {
        if !self.has_blob_dir {
            return Err(FsError::Storage(StorageError::Unsupported(
                "blobs need a blob directory".into(),
            )));
        }
        self.blobs.push((oid, src));
        Ok(())
    }

    /// Undo of a blob change copies the blob of the revision undone back to.
    pub(crate) fn add_blob_copy(&mut self, oid: Oid, from: Tid) {
        if self.has_blob_dir {
            self.blobs.push((oid, BlobSource::Revision(from)));
        }
    }
}

impl FileStorage {
    /// First phase of commit, its fsync included. See the module doc.
    pub fn vote(&self, txn: &Transaction) -> FsResult<VoteOutcome> {
        let (outcome, sync) = self.vote_unsynced(txn)?;
        if let Some(sync) = sync {
            if let Err(e) = sync.run(self) {
                // As if the vote had failed: nothing of it stays.
                self.abort(txn.id)?;
                return Err(e);
            }
        }
        Ok(outcome)
    }

    /// First phase of commit up to its fsync, which the caller runs with the
    /// returned [`VoteSync`] (with `vote-fsync`; `None` without, or when
    /// nothing was voted).
    pub fn vote_unsynced(&self, txn: &Transaction) -> FsResult<(VoteOutcome, Option<VoteSync>)> {
        self.check_writable()?;
        if txn
            .ops
            .iter()
            .any(|op| matches!(op, Operation::Undo { .. }))
        {
            // Undo checks the status byte of the transaction it undoes.
            self.write_flips_before(u64::MAX)?;
        }
        let mut slot = self.pending_slot();
        if let Some(p) = slot.as_ref() {
            return Err(FsError::refused(format!(
                "transaction {:?} is already voted; finish or abort it first",
                p.id
            )));
        }
        // Finishes waiting for durability now let this vote's fsync cover them.
        let voting = self.opts.vote_fsync.then(|| self.group_sync.vote_begins());
        if txn.status != STATUS_NORMAL && txn.status != STATUS_PACKED {
            return Err(FsError::transaction(format!(
                "invalid transaction status {:?}",
                char::from(txn.status)
            )));
        }
        let meta = &txn.meta;
        for (what, len) in [
            ("user name", meta.user.len()),
            ("description", meta.description.len()),
            ("extension data", meta.extension.len()),
        ] {
            if len > usize::from(u16::MAX) {
                return Err(FsError::transaction(format!("{what} too long")));
            }
        }
        let st = self.st();
        let tid = match txn.tid {
            Some(t) if t > st.last_tid => t,
            Some(t) => {
                return Err(FsError::transaction(format!(
                    "explicit tid {t:?} is not later than the last transaction {:?}",
                    st.last_tid
                )))
            }
            None => Tid::now_later_than(st.last_tid),
        };
        let hlen = TXN_HEADER_LEN
            + meta.user.len() as u64
            + meta.description.len() as u64
            + meta.extension.len() as u64;
        let mut b = TxnBuilder {
            st: &st,
            reader: Reader::new(&st.file),
            tid,
            tpos: st.pos,
            hlen,
            recs: Vec::new(),
            tindex: HashMap::new(),
            order: Vec::new(),
            conflicts: Vec::new(),
            undone: Vec::new(),
            max_oid: Oid::ZERO,
            blobs: Vec::new(),
            has_blob_dir: self.blobs.is_some(),
        };
        for op in &txn.ops {
            match op {
                Operation::Store { oid, serial, data } => b.store(*oid, *serial, data.clone())?,
                Operation::StoreBlob {
                    oid,
                    serial,
                    data,
                    blob,
                } => {
                    let before = b.conflicts.len();
                    b.store(*oid, *serial, data.clone())?;
                    if b.conflicts.len() == before {
                        b.add_blob(*oid, BlobSource::File(blob.clone()))?;
                    }
                }
                Operation::Restore {
                    oid,
                    data,
                    prev_txn,
                    blob,
                } => b.restore(*oid, data.clone(), *prev_txn, blob.clone())?,
                Operation::CheckCurrentSerial { oid, serial } => b.check_current(*oid, *serial)?,
                Operation::Delete { oid, serial } => b.delete(*oid, *serial)?,
                Operation::Undo { undo_id } => b.undo(undo_id)?,
            }
        }
        if !b.conflicts.is_empty() {
            return Ok((VoteOutcome::Conflicts(b.conflicts), None));
        }
        let tlen = hlen + b.recs.len() as u64;
        let end = b.tpos + tlen + 8;
        if let Some(quota) = self.opts.quota {
            if end > quota {
                // A full storage, not an answer about the transaction (Python's
                // FileStorageQuotaError is a StorageSystemError): a RAID must
                // degrade this backend rather than fail the commit everywhere.
                return Err(FsError::Io(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "the storage quota has been exceeded",
                )));
            }
        }
        // Blobs first: a vote that fails later removes them again.
        let mut blob_files = Vec::new();
        let blob_result = (|| -> FsResult<()> {
            if let Some(dir) = &self.blobs {
                for (oid, src) in &b.blobs {
                    match src {
                        BlobSource::File(path) => blob_files.push(dir.store(*oid, tid, path)?),
                        BlobSource::Revision(from) => {
                            if let Some(p) = dir.copy_revision(*oid, *from, tid)? {
                                blob_files.push(p);
                            }
                        }
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = blob_result {
            remove_files(&blob_files);
            return Err(e);
        }
        let header = TxnHeader {
            tid,
            tlen,
            status: STATUS_CHECKPOINT,
            ulen: meta.user.len() as u16,
            dlen: meta.description.len() as u16,
            elen: meta.extension.len() as u16,
        };
        let mut out = Vec::with_capacity((tlen + 8) as usize);
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(&meta.user);
        out.extend_from_slice(&meta.description);
        out.extend_from_slice(&meta.extension);
        out.extend_from_slice(&b.recs);
        out.extend_from_slice(&tlen.to_be_bytes());
        let tpos = b.tpos;
        if let Err(e) = st.file.write_all_at(&out, tpos) {
            tracing::error!(
                "{}: writing the voted transaction failed: {e}",
                self.path.display()
            );
            let _ = st.file.set_len(tpos);
            remove_files(&blob_files);
            return Err(e.into());
        }
        // Through the group sync, so that the vote's fsync also covers the
        // status bytes of the finishes before it (and they need none of their own).
        let sync = voting.map(|voting| VoteSync {
            seq: self.group_sync.note_write(),
            _voting: voting,
        });
        let max_oid = b.max_oid;
        let undone = std::mem::take(&mut b.undone);
        let tindex = std::mem::take(&mut b.order);
        drop(b);
        drop(st);
        self.bump_max_oid(max_oid);
        *slot = Some(Pending {
            id: txn.id,
            tid,
            tpos,
            end,
            status: txn.status,
            tindex,
            blob_files,
            vote_seq: sync.as_ref().map(|s| s.seq),
        });
        Ok((VoteOutcome::Voted { undone }, sync))
    }

    /// Second phase: [`FileStorage::finish_deferred`], then wait until it is
    /// durable. Acknowledged ⇒ durable.
    pub fn finish(&self, id: TxnId) -> FsResult<Tid> {
        let (tid, wait) = self.finish_deferred(id)?;
        self.wait_finished(wait)?;
        Ok(tid)
    }

    /// Second phase up to the commit point: publish the transaction (index,
    /// end, last tid), so the next vote checks against it, and flip its status
    /// byte — at once when its data is known durable (or without
    /// `vote-fsync`), else once it is (`flips.rs`): never before. Returns its
    /// tid and what to wait for with [`FileStorage::wait_finished`] before
    /// acknowledging it.
    pub fn finish_deferred(&self, id: TxnId) -> FsResult<(Tid, FlipWait)> {
        self.check_writable()?;
        let mut slot = self.pending_slot();
        let p = match slot.take() {
            Some(p) if p.id == id => p,
            other => {
                *slot = other;
                return Err(FsError::transaction(format!(
                    "finish of transaction {id:?}, which is not voted"
                )));
            }
        };
        let finish = self.flips.number_finish();
        let data_durable = p.vote_seq.is_none_or(|seq| self.group_sync.is_durable(seq));
        let wait = if data_durable && self.flips.is_empty() {
            let file = self.st().file.clone();
            if let Err(e) = write_status_byte(&file, p.tpos, p.status) {
                tracing::error!(
                    "{}: finishing transaction {:?} failed: {e}; dropping it",
                    self.path.display(),
                    p.tid
                );
                self.undo_pending_write(&p);
                return Err(e.into());
            }
            let seq = self.group_sync.note_write();
            self.flips.note_written(finish);
            FlipWait::Written { seq, finish }
        } else {
            // Queued before it is published: a reader that sees the new end
            // finds its status byte queued or written.
            let data = p.vote_seq.unwrap_or(0);
            self.queue_flip(p.tpos, p.status, data, finish);
            FlipWait::Queued { data, finish }
        };
        let mut st = self.st_mut();
        for (oid, pos) in &p.tindex {
            st.index.insert(*oid, *pos);
        }
        st.pos = p.end;
        st.last_tid = p.tid;
        Ok((p.tid, wait))
    }

    /// Block until write `seq` (a finish's status byte) is durable: at once if
    /// an fsync already covered it, else through a group fsync. Fails — and the
    /// storage refuses writes from then on — when an fsync fails.
    pub fn wait_durable(&self, seq: WriteSeq) -> FsResult<()> {
        self.group_sync
            .wait_durable(seq, || self.st().file.clone())
            .map_err(|e| self.sync_error(&e))
    }

    /// Run an fsync covering write `seq` now unless one already did (a vote's
    /// own fsync; the fsync thread, which has no running vote to wait for).
    pub(crate) fn sync_now(&self, seq: WriteSeq) -> FsResult<()> {
        self.group_sync
            .sync_covering(seq, || self.st().file.clone())
            .map_err(|e| self.sync_error(&e))
    }

    /// Write every queued status byte and make everything written so far
    /// durable (close, pack).
    pub(crate) fn sync_written(&self) -> FsResult<()> {
        self.write_flips_before(u64::MAX)?;
        self.wait_durable(self.group_sync.last_written())
    }

    /// The group-fsync state (tests, the operator).
    pub fn group_sync(&self) -> &crate::group_sync::GroupSync {
        &self.group_sync
    }

    /// Refuse writes after a failed fsync (see `group_sync.rs` for why).
    pub(crate) fn check_sync_failure(&self) -> FsResult<()> {
        match self.group_sync.failure() {
            Some(failure) => Err(self.sync_error(failure)),
            None => Ok(()),
        }
    }

    pub(crate) fn sync_error(&self, failure: &str) -> FsError {
        FsError::Io(std::io::Error::other(format!(
            "{}: {failure}",
            self.path.display()
        )))
    }

    /// Drop the voted transaction `id` (nothing if it is not voted).
    pub fn abort(&self, id: TxnId) -> FsResult<()> {
        let mut slot = self.pending_slot();
        match slot.take() {
            Some(p) if p.id == id => {
                self.undo_pending_write(&p);
                Ok(())
            }
            other => {
                *slot = other;
                Ok(())
            }
        }
    }

    /// Truncate a voted transaction away and remove its blob files.
    pub(crate) fn undo_pending_write(&self, p: &Pending) {
        let file = self.st().file.clone();
        match file.set_len(p.tpos) {
            Ok(()) => {
                let seq = self.group_sync.note_write();
                if let Err(e) = self.wait_durable(seq) {
                    tracing::error!("truncating the aborted transaction: {e}");
                }
            }
            Err(e) => tracing::error!(
                "{}: truncating the aborted transaction failed: {e}",
                self.path.display()
            ),
        }
        remove_files(&p.blob_files);
        if let Some(dir) = &self.blobs {
            for (oid, _) in &p.tindex {
                dir.remove_empty_dirs(*oid);
            }
        }
    }

    /// The tid of the voted transaction, if one is voted.
    pub fn voted_tid(&self) -> Option<Tid> {
        self.pending_slot().as_ref().map(|p| p.tid)
    }

    /// The id of the voted transaction, if one is voted.
    pub fn voted_id(&self) -> Option<TxnId> {
        self.pending_slot().as_ref().map(|p| p.id)
    }
}

fn remove_files(files: &[PathBuf]) {
    for f in files {
        if let Err(e) = std::fs::remove_file(f) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("could not remove {}: {e}", f.display());
            }
        }
    }
}

//! The synchronous engine: opening (lock, header, index or scan, recovery),
//! reads (`load_before`, `load_serial`, `history`, `record_iternext`, the
//! transaction iterator), oid allocation and facts. Commit lives in
//! `commit.rs`, undo in `undo.rs`, pack in `pack.rs`.
//!
//! Concurrency: the committed state (file handle, index, end position, last
//! tid) sits behind an `RwLock`; readers copy out what they need (an
//! `Arc<File>` and a position) and read with positioned reads (`pread`) without
//! holding it, so reads never wait for each other or for a commit's I/O. Bytes
//! past the committed end (a voted transaction) are never read by readers.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use zeoraid_storage::{
    CurrentRecord, DataRecord, HistoryEntry, LoadedRecord, Oid, StorageError, StorageInfo, Tid,
    TransactionMeta, TransactionRecord,
};

use crate::blobs::BlobDir;
use crate::commit::Pending;
use crate::error::{FsError, FsResult};
use crate::format::{
    DataHeader, Reader, RecordBuf, FILE_HEADER_LEN, STATUS_CHECKPOINT, STATUS_UNCERTAIN,
};
use crate::index::{self, OidIndex, SavedIndex};
use crate::lock::LockFile;

/// How to open a FileStorage (FileStorage's constructor arguments).
#[derive(Clone, Debug)]
pub struct Options {
    /// Open without writing anything (no lock taken, no recovery truncation).
    pub read_only: bool,
    /// Start a new, empty storage, removing an existing file (and blob dir).
    pub create: bool,
    /// Blob directory (bushy layout); blobs are supported only with one.
    pub blob_dir: Option<PathBuf>,
    /// Garbage-collect unreachable objects when packing.
    pub pack_gc: bool,
    /// Keep the pre-pack file as `<path>.old`.
    pub pack_keep_old: bool,
    /// Refuse votes that would grow the file beyond this many bytes.
    pub quota: Option<u64>,
    /// `fsync` the voted transaction at vote time too (a finish is acknowledged
    /// only after a group fsync covered its status byte). Makes a torn finish
    /// impossible to mistake for a committed transaction; costs one more fsync
    /// per commit, which then also covers the previous finish.
    pub vote_fsync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            read_only: false,
            create: false,
            blob_dir: None,
            pack_gc: true,
            pack_keep_old: true,
            quota: None,
            vote_fsync: true,
        }
    }
}

/// The committed state readers see.
pub(crate) struct State {
    pub file: Arc<File>,
    pub index: OidIndex,
    /// End of the last committed transaction.
    pub pos: u64,
    pub last_tid: Tid,
}

/// The synchronous FileStorage engine. Thread-safe; see the module doc.
pub struct FileStorage {
    pub(crate) path: PathBuf,
    pub(crate) opts: Options,
    pub(crate) state: RwLock<State>,
    pub(crate) pending: Mutex<Option<Pending>>,
    pub(crate) max_oid: Mutex<Oid>,
    pub(crate) lock: Mutex<Option<LockFile>>,
    pub(crate) blobs: Option<BlobDir>,
    pub(crate) closed: AtomicBool,
    pub(crate) packing: AtomicBool,
    /// Group fsync of the data file (`group_sync.rs`).
    pub(crate) group_sync: crate::group_sync::GroupSync,
    /// Status bytes written after the commit point (`flips.rs`).
    pub(crate) flips: crate::flips::Flips,
}

fn remove_if_exists(path: &Path) -> FsResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The data of a record read by [`Reader::data_record`]: its pickle, or the one
/// its back-pointer chain leads to; a chain ending in "no data" is `PosKey`.
fn record_data(r: &Reader<'_>, oid: Oid, buf: &RecordBuf, h: &DataHeader) -> FsResult<Bytes> {
    if h.plen > 0 {
        return r.record_data(buf, h);
    }
    match r.load_back(oid, h.back)? {
        Some((data, _, _)) => Ok(Bytes::from(data)),
        None => Err(FsError::pos_key(oid)),
    }
}

impl FileStorage {
    /// Open (or create) the storage at `path`.
    pub fn open(path: impl AsRef<Path>, opts: Options) -> FsResult<FileStorage> {
        let path = std::path::absolute(path.as_ref())?;
        if opts.read_only && opts.create {
            return Err(FsError::transaction("can't create a read-only file"));
        }
        let lock = if opts.read_only {
            None
        } else {
            Some(LockFile::acquire(&path)?)
        };
        if opts.create {
            remove_if_exists(&path)?;
            remove_if_exists(&index::index_path(&path))?;
            remove_if_exists(&index::sibling(&path, ".index"))?;
            if let Some(dir) = &opts.blob_dir {
                BlobDir::remove_all(dir)?;
            }
        }
        let file = if opts.read_only {
            File::open(&path)?
        } else {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?
        };
        index::check_header(&file, opts.read_only).map_err(|e| e.in_file(&path))?;

        let saved = index::load_index(&path);
        let mut max_oid = Oid::ZERO;
        let (idx, outcome, rebuilt) = match saved {
            Some(saved) if index::index_matches(&file, &saved)? => {
                let SavedIndex {
                    pos,
                    last_tid,
                    max_oid: saved_max,
                    index: mut idx,
                    ..
                } = saved;
                max_oid = saved_max;
                let outcome = index::scan(&file, &path, &mut idx, pos, last_tid, opts.read_only)
                    .map_err(|e| e.in_file(&path))?;
                tracing::debug!(
                    "{}: used saved index up to {pos}, scanned to {}",
                    path.display(),
                    outcome.pos
                );
                (idx, outcome, false)
            }
            other => {
                if other.is_some() {
                    tracing::warn!(
                        "{}: saved index does not match the data file; rebuilding",
                        path.display()
                    );
                }
                let mut idx = OidIndex::new();
                let outcome = index::scan(
                    &file,
                    &path,
                    &mut idx,
                    FILE_HEADER_LEN,
                    Tid::ZERO,
                    opts.read_only,
                )
                .map_err(|e| e.in_file(&path))?;
                (idx, outcome, true)
            }
        };
        if outcome.truncated > 0 {
            tracing::warn!(
                "{}: recovered: cut {} bytes of an unfinished transaction at {}",
                path.display(),
                outcome.truncated,
                outcome.pos
            );
        }
        if let Some(last) = idx.max_oid() {
            max_oid = max_oid.max(last);
        }
        let now = Tid::now_later_than(Tid::ZERO);
        if outcome.last_tid > now {
            tracing::warn!(
                "{}: database records {:.0} seconds in the future",
                path.display(),
                outcome.last_tid.unix_time() - now.unix_time()
            );
        }
        let blobs = match &opts.blob_dir {
            Some(dir) => Some(BlobDir::open(dir, opts.read_only)?),
            None => None,
        };
        let fs = FileStorage {
            path,
            opts,
            state: RwLock::new(State {
                file: Arc::new(file),
                index: idx,
                pos: outcome.pos,
                last_tid: outcome.last_tid,
            }),
            pending: Mutex::new(None),
            max_oid: Mutex::new(max_oid),
            lock: Mutex::new(lock),
            blobs,
            closed: AtomicBool::new(false),
            packing: AtomicBool::new(false),
            group_sync: Default::default(),
            flips: Default::default(),
        };
        if rebuilt && !fs.opts.read_only {
            if let Err(e) = fs.save_index() {
                tracing::warn!("{}: could not save the index: {e}", fs.path.display());
            }
        }
        Ok(fs)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn blob_dir(&self) -> Option<&BlobDir> {
        self.blobs.as_ref()
    }

    pub(crate) fn st(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn st_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pending_slot(&self) -> MutexGuard<'_, Option<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn check_open(&self) -> FsResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(FsError::Storage(StorageError::Disconnected(format!(
                "{} is closed",
                self.path.display()
            ))));
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self) -> FsResult<()> {
        self.check_open()?;
        if self.opts.read_only {
            return Err(FsError::Storage(StorageError::ReadOnly));
        }
        self.check_sync_failure()
    }

    /// Persist our index file (`<path>.zeoraid-index`).
    pub fn save_index(&self) -> FsResult<()> {
        if self.opts.read_only {
            return Ok(());
        }
        let max_oid = *self.max_oid.lock().unwrap_or_else(|e| e.into_inner());
        let saved = {
            let st = self.st();
            use std::os::unix::fs::MetadataExt;
            SavedIndex {
                inode: st.file.metadata()?.ino(),
                pos: st.pos,
                last_tid: st.last_tid,
                max_oid,
                index: st.index.clone(),
            }
        };
        index::save_index(&self.path, &saved)
    }

    /// Save the index and release the lock. Later calls fail as disconnected.
    pub fn close(&self) -> FsResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // An unfinished vote is dropped without a trace.
        if let Some(p) = self.pending_slot().take() {
            self.undo_pending_write(&p);
        }
        // Finished transactions nobody waited for become durable now.
        if let Err(e) = self.sync_written() {
            tracing::error!("{}: {e}", self.path.display());
        }
        // After a failed fsync the index may describe what never reached the
        // disk: the next open scans the file instead.
        let saved = if self.opts.read_only || self.group_sync.failure().is_some() {
            Ok(())
        } else {
            self.save_index()
        };
        if let Some(lock) = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take() {
            lock.release();
        }
        saved
    }

    // -----------------------------------------------------------------------
    // Facts

    pub fn last_transaction(&self) -> Tid {
        self.st().last_tid
    }

    /// Position just after the last committed transaction (FileStorage `getSize`).
    pub fn size(&self) -> u64 {
        self.st().pos
    }

    pub fn len(&self) -> usize {
        self.st().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.st().index.is_empty()
    }

    pub fn info(&self) -> StorageInfo {
        let st = self.st();
        StorageInfo {
            name: self.path.display().to_string(),
            length: st.index.len() as u64,
            size: st.pos,
            supports_undo: true,
            supports_blobs: self.blobs.is_some(),
            read_only: self.opts.read_only,
        }
    }

    /// `count` fresh oids, never handed out before (also not across restarts as
    /// long as they were stored, or the index was saved on close).
    pub fn new_oids(&self, count: u32) -> FsResult<Vec<Oid>> {
        self.check_writable()?;
        let count = count.clamp(1, zeoraid_storage::MAX_NEW_OIDS);
        let mut max = self.max_oid.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let next = max
                .next()
                .ok_or_else(|| FsError::refused("oid space exhausted"))?;
            *max = next;
            out.push(next);
        }
        Ok(out)
    }

    pub(crate) fn bump_max_oid(&self, oid: Oid) {
        let mut max = self.max_oid.lock().unwrap_or_else(|e| e.into_inner());
        if oid > *max {
            *max = oid;
        }
    }

    // -----------------------------------------------------------------------
    // Reads

    fn snapshot(&self, oid: Oid) -> FsResult<(Arc<File>, u64)> {
        self.check_open()?;
        let st = self.st();
        match st.index.get(&oid) {
            Some(pos) => Ok((st.file.clone(), *pos)),
            None => Err(FsError::pos_key(oid)),
        }
    }

    /// The current revision: (data, tid). A deletion is `PosKey`.
    pub fn load(&self, oid: Oid) -> FsResult<(Bytes, Tid)> {
        let (file, pos) = self.snapshot(oid)?;
        let r = Reader::new(&file);
        let mut buf = RecordBuf::new();
        let h = r.data_record(pos, Some(oid), &mut buf)?;
        Ok((record_data(&r, oid, &buf, &h)?, h.tid))
    }

    /// FileStorage `loadBefore`.
    pub fn load_before(&self, oid: Oid, before: Tid) -> FsResult<Option<LoadedRecord>> {
        let (file, mut pos) = self.snapshot(oid)?;
        let r = Reader::new(&file);
        let mut buf = RecordBuf::new();
        let mut end = None;
        let h = loop {
            // Header and (usually) the whole pickle in one read: the newest
            // revision is the one asked for in almost every load.
            let h = r.data_record(pos, Some(oid), &mut buf)?;
            if h.tid < before {
                break h;
            }
            if h.prev >= pos {
                return Err(FsError::corrupt(
                    pos,
                    "previous pointer does not point backwards",
                ));
            }
            end = Some(h.tid);
            pos = h.prev;
            if pos == 0 {
                return Ok(None);
            }
        };
        Ok(Some(LoadedRecord {
            data: record_data(&r, oid, &buf, &h)?,
            start: h.tid,
            end,
        }))
    }

    /// FileStorage `loadSerial`.
    pub fn load_serial(&self, oid: Oid, serial: Tid) -> FsResult<Bytes> {
        let (file, mut pos) = self.snapshot(oid)?;
        let r = Reader::new(&file);
        let mut buf = RecordBuf::new();
        let h = loop {
            let h = r.data_record(pos, Some(oid), &mut buf)?;
            if h.tid == serial {
                break h;
            }
            if h.tid < serial || h.prev == 0 || h.prev >= pos {
                return Err(FsError::pos_key(oid));
            }
            pos = h.prev;
        };
        record_data(&r, oid, &buf, &h)
    }

    /// FileStorage `history`: up to `size` revisions, newest first; `size` is
    /// the record's pickle length (0 for back-pointers and deletions).
    pub fn history(&self, oid: Oid, size: usize) -> FsResult<Vec<HistoryEntry>> {
        let (file, mut pos) = self.snapshot(oid)?;
        let r = Reader::new(&file);
        let mut out = Vec::new();
        while out.len() < size {
            let h = r.data_header(pos, Some(oid))?;
            let (_, user, desc, ext) = r.txn_header_full(h.tloc)?;
            out.push(HistoryEntry {
                tid: h.tid,
                meta: TransactionMeta {
                    user: Bytes::from(user),
                    description: Bytes::from(desc),
                    extension: Bytes::from(ext),
                },
                size: h.plen,
            });
            if h.prev == 0 {
                break;
            }
            if h.prev >= pos {
                return Err(FsError::corrupt(
                    pos,
                    "previous pointer does not point backwards",
                ));
            }
            pos = h.prev;
        }
        Ok(out)
    }

    /// The current record of the first object at or after `start` (oid order).
    /// Objects whose current revision is a deletion are skipped (Python raises
    /// POSKeyError there, which ends its iteration).
    pub fn record_iternext(&self, start: Option<Oid>) -> FsResult<Option<CurrentRecord>> {
        self.check_open()?;
        let mut from = start.unwrap_or(Oid::ZERO);
        loop {
            let (oid, next) = {
                let st = self.st();
                let mut oids = st.index.oids_from(from);
                let Some(oid) = oids.next() else {
                    return Ok(None);
                };
                (oid, oids.next())
            };
            match self.load(oid) {
                Ok((data, tid)) => {
                    return Ok(Some(CurrentRecord {
                        oid,
                        tid,
                        data,
                        next,
                    }))
                }
                Err(FsError::Storage(StorageError::PosKey { .. })) => match next {
                    Some(n) => from = n,
                    None => return Ok(None),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Transactions with `start <= tid <= stop`, in tid order, up to the
    /// committed end at the time of the call.
    pub fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> FsResult<TxnIter> {
        self.check_open()?;
        let (file, end) = {
            let st = self.st();
            (st.file.clone(), st.pos)
        };
        self.write_flips_before(end)?;
        let pos = match start {
            Some(start) => find_start(&file, end, start)?,
            None => FILE_HEADER_LEN,
        };
        Ok(TxnIter {
            file,
            pos,
            end,
            stop,
            blobs: self.blobs.clone(),
            done: false,
        })
    }

    /// Position of the transaction with this tid (searching backwards from the
    /// end, like FileStorage `_txn_find`), or `None`.
    pub(crate) fn txn_find(file: &File, end: u64, tid: Tid) -> FsResult<Option<u64>> {
        let r = Reader::new(file);
        let mut pos = end;
        while pos > FILE_HEADER_LEN {
            let tl = r.read_u64(
                pos.checked_sub(8)
                    .ok_or_else(|| FsError::corrupt(pos, "position before the file header"))?,
            )?;
            pos = pos
                .checked_sub(8)
                .and_then(|p| p.checked_sub(tl))
                .filter(|p| *p >= FILE_HEADER_LEN)
                .ok_or_else(|| FsError::corrupt(pos, "bad redundant transaction length"))?;
            let h = r.txn_header(pos)?;
            if h.tid == tid {
                return Ok(Some(pos));
            }
            if h.tid < tid {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

/// Where the iterator starts for `start`: scans from whichever end is closer in
/// time (FileStorage `_skip_to_start` does the same).
fn find_start(file: &File, end: u64, start: Tid) -> FsResult<u64> {
    let r = Reader::new(file);
    if end <= FILE_HEADER_LEN {
        return Ok(FILE_HEADER_LEN);
    }
    let first = r.txn_header(FILE_HEADER_LEN)?.tid;
    if start <= first {
        return Ok(FILE_HEADER_LEN);
    }
    let tl = r.read_u64(
        end.checked_sub(8)
            .ok_or_else(|| FsError::corrupt(end, "position before the file header"))?,
    )?;
    let last_pos = end
        .checked_sub(8 + tl)
        .ok_or_else(|| FsError::corrupt(end, "bad redundant transaction length"))?;
    let last = r.txn_header(last_pos)?.tid;
    if start > last {
        return Ok(end);
    }
    let forward = start.as_u64().saturating_sub(first.as_u64())
        <= last.as_u64().saturating_sub(start.as_u64());
    if forward {
        let mut pos = FILE_HEADER_LEN;
        while pos < end {
            let h = r.txn_header(pos)?;
            if h.tid >= start {
                return Ok(pos);
            }
            pos = pos
                .checked_add(h.tlen + 8)
                .ok_or_else(|| FsError::corrupt(pos, "bad transaction length"))?;
        }
        Ok(end)
    } else {
        let mut pos = last_pos;
        loop {
            if pos <= FILE_HEADER_LEN {
                return Ok(FILE_HEADER_LEN);
            }
            let tl = r.read_u64(
                pos.checked_sub(8)
                    .ok_or_else(|| FsError::corrupt(pos, "position before the file header"))?,
            )?;
            let prev = pos
                .checked_sub(8 + tl)
                .filter(|p| *p >= FILE_HEADER_LEN)
                .ok_or_else(|| FsError::corrupt(pos, "bad redundant transaction length"))?;
            if r.txn_header(prev)?.tid < start {
                return Ok(pos);
            }
            pos = prev;
        }
    }
}

/// The transaction iterator (FileStorage `FileIterator`): records with their
/// data resolved through back-pointers, and `data_txn` set for back-pointer
/// records (the tid of the record pointed to, one link back, like FileStorage).
pub struct TxnIter {
    file: Arc<File>,
    pos: u64,
    end: u64,
    stop: Option<Tid>,
    blobs: Option<BlobDir>,
    done: bool,
}

impl TxnIter {
    fn next_txn(&mut self) -> FsResult<Option<TransactionRecord>> {
        let r = Reader::new(&self.file);
        while self.pos < self.end {
            let tpos = self.pos;
            let (h, user, desc, ext) = r.txn_header_full(tpos)?;
            if let Some(stop) = self.stop {
                if h.tid > stop {
                    return Ok(None);
                }
            }
            if h.status == STATUS_CHECKPOINT {
                return Ok(None);
            }
            if h.tlen < h.header_len() {
                return Err(FsError::corrupt(tpos, "invalid transaction header"));
            }
            let tend = tpos + h.tlen;
            if tend + 8 > self.end {
                return Err(FsError::corrupt(tpos, "transaction runs past the end"));
            }
            self.pos = tend + 8;
            if h.status == STATUS_UNCERTAIN {
                continue;
            }
            let mut records = Vec::new();
            let mut rpos = tpos + h.header_len();
            while rpos < tend {
                let dh = r.data_header(rpos, None)?;
                let dlen = dh.record_len();
                if rpos + dlen > tend || dh.tloc != tpos {
                    return Err(FsError::corrupt(
                        rpos,
                        "data record exceeds transaction record",
                    ));
                }
                let (data, data_txn) = if dh.plen > 0 {
                    (Some(Bytes::from(r.data(rpos, &dh)?)), None)
                } else if dh.back == 0 {
                    (None, None)
                } else {
                    let data = r
                        .load_back(dh.oid, dh.back)?
                        .map(|(d, _, _)| Bytes::from(d));
                    let back_tid = r.data_header(dh.back, Some(dh.oid))?.tid;
                    (data, Some(back_tid))
                };
                let has_blob = self
                    .blobs
                    .as_ref()
                    .is_some_and(|b| b.exists(dh.oid, dh.tid));
                records.push(DataRecord {
                    oid: dh.oid,
                    tid: dh.tid,
                    data,
                    data_txn,
                    has_blob,
                });
                rpos += dlen;
            }
            return Ok(Some(TransactionRecord {
                tid: h.tid,
                status: h.status,
                meta: TransactionMeta {
                    user: Bytes::from(user),
                    description: Bytes::from(desc),
                    extension: Bytes::from(ext),
                },
                records,
            }));
        }
        Ok(None)
    }
}

impl Iterator for TxnIter {
    type Item = FsResult<TransactionRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_txn() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

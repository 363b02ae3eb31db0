//! Pack (a port of ZODB's `fspack.py`), in three steps so that neither readers
//! nor commits wait for the long part:
//!
//! 1. [`FileStorage::pack_prepare`] (no lock): find what is reachable at the pack
//!    time (from the root oid z64 through persistent references, plus revisions
//!    that later back-pointers still need; without GC: every object's current
//!    revision), and copy those revisions into `<path>.pack` as `p`
//!    transactions (data inlined, `prev` 0).
//! 2. [`FileStorage::pack_copy_rest`] (no lock): copy the transactions after the
//!    pack time, up to the current end, with back-pointers re-resolved in the new
//!    file (FileStorage `copyRest`/`PackCopier`).
//! 3. [`FileStorage::pack_commit`] (under the commit lock, no voted
//!    transaction): copy what was committed meanwhile, fsync, keep the old file
//!    as `<path>.old` (hard link) when `pack_keep_old`, atomically rename the
//!    packed file over `<path>`, swap the handle and index, delete Python's stale
//!    `<path>.index`, save ours, then remove the blob files of removed revisions.
//!
//! Readers that took a snapshot before the swap keep reading the old file
//! through their own handle.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use zeoraid_storage::{Oid, StorageError, Tid};

use crate::blobs::BlobDir;
use crate::error::{FsError, FsResult};
use crate::format::{
    encode_data_record, DataHeader, Reader, TxnHeader, FILE_HEADER_LEN, STATUS_PACKED,
    STATUS_UNCERTAIN,
};
use crate::index::{self, OidIndex};
pub use crate::refs::ReferencesFn;
use crate::storage::FileStorage;

/// What pack does.
#[derive(Clone)]
pub struct PackOptions {
    /// Remove objects unreachable from the root at the pack time.
    pub gc: bool,
    /// Persistent references of a record (for GC).
    pub references: ReferencesFn,
}

/// A pack in progress (between `pack_prepare` and `pack_commit`/`pack_discard`).
pub struct PackJob {
    input: Arc<File>,
    output: File,
    out_path: PathBuf,
    /// New oid → position index (positions in the output).
    index: OidIndex,
    /// Next input position to copy.
    ipos: u64,
    /// Output end.
    opos: u64,
    /// (oid, tid) of removed records whose blob files may go.
    blob_candidates: Vec<(Oid, Tid)>,
    /// (oid, tid) of records kept (only tracked with a blob directory).
    kept: HashSet<(Oid, Tid)>,
    track_blobs: bool,
    finished: bool,
}

/// Which revisions survive (fspack `GC`).
struct Reachability {
    /// oid → its kept revision at the pack time.
    reachable: HashMap<Oid, u64>,
    /// Extra revisions that later back-pointers need.
    reach_ex: HashMap<Oid, Vec<u64>>,
}

impl Reachability {
    fn is_reachable(&self, oid: Oid, pos: u64) -> bool {
        match self.reachable.get(&oid) {
            None => false,
            Some(p) if *p == pos => true,
            Some(_) => self.reach_ex.get(&oid).is_some_and(|v| v.contains(&pos)),
        }
    }
}

fn refs_of(reader: &Reader<'_>, pos: u64, opts: &PackOptions) -> FsResult<Vec<Oid>> {
    let mut h = reader.data_header(pos, None)?;
    let mut at = pos;
    let mut hops = 0u32;
    while h.plen == 0 && h.back != 0 {
        if h.back >= at || hops > 1_000_000 {
            return Err(FsError::corrupt(at, "bad back-pointer"));
        }
        at = h.back;
        h = reader.data_header(at, Some(h.oid))?;
        hops += 1;
    }
    if h.plen == 0 {
        return Ok(Vec::new());
    }
    let data = reader.data(at, &h)?;
    (opts.references)(&data).map_err(|e| {
        FsError::corrupt(
            at,
            format!("pack: cannot read the references of oid {}: {e}", h.oid),
        )
    })
}

fn mark_reachable(
    reader: &Reader<'_>,
    reach: &mut Reachability,
    oid2curpos: &HashMap<Oid, u64>,
    roots: Vec<Oid>,
    opts: &PackOptions,
) -> FsResult<()> {
    let mut todo = roots;
    while let Some(oid) = todo.pop() {
        if reach.reachable.contains_key(&oid) {
            continue;
        }
        let Some(pos) = oid2curpos.get(&oid).copied() else {
            if !(oid == Oid::ZERO && oid2curpos.is_empty()) {
                // Python raises KeyError here; a dangling reference loses
                // nothing by being skipped.
                tracing::warn!(
                    "pack: object {oid} is referenced but does not exist at the pack time"
                );
            }
            continue;
        };
        reach.reachable.insert(oid, pos);
        for r in refs_of(reader, pos, opts)? {
            if !reach.reachable.contains_key(&r) {
                todo.push(r);
            }
        }
    }
    Ok(())
}

/// A transaction header plus its user/description/extension.
struct TxnMeta {
    h: TxnHeader,
    user: Vec<u8>,
    desc: Vec<u8>,
    ext: Vec<u8>,
}

fn read_txn(reader: &Reader<'_>, pos: u64) -> FsResult<TxnMeta> {
    let (h, user, desc, ext) = reader.txn_header_full(pos)?;
    if h.tlen < h.header_len() {
        return Err(FsError::corrupt(pos, "invalid transaction header"));
    }
    let tlen = reader.read_u64(pos + h.tlen)?;
    if tlen != h.tlen {
        return Err(FsError::corrupt(
            pos + h.tlen,
            "redundant transaction length does not match",
        ));
    }
    Ok(TxnMeta { h, user, desc, ext })
}

/// Encode a whole transaction (header with the right length, records, trailer).
fn encode_txn(meta: &TxnMeta, status: u8, recs: &[u8]) -> Vec<u8> {
    let hlen = meta.h.header_len();
    let tlen = hlen + recs.len() as u64;
    let h = TxnHeader {
        tlen,
        status,
        ..meta.h.clone()
    };
    let mut out = Vec::with_capacity((tlen + 8) as usize);
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(&meta.user);
    out.extend_from_slice(&meta.desc);
    out.extend_from_slice(&meta.ext);
    out.extend_from_slice(recs);
    out.extend_from_slice(&tlen.to_be_bytes());
    out
}

impl FileStorage {
    /// Pack to the Unix time `t` (all three steps; the sync convenience). Fails
    /// with a transaction error if a transaction is voted at the final step.
    pub fn pack(&self, t: f64, opts: PackOptions) -> FsResult<()> {
        let Some(mut job) = self.pack_prepare(t, opts)? else {
            return Ok(());
        };
        let result = self
            .pack_copy_rest(&mut job)
            .and_then(|()| self.pack_commit(&mut job));
        if result.is_err() {
            self.pack_discard(&mut job);
        }
        result
    }

    /// Step 1 (see the module doc). `None` when there is nothing to pack.
    pub fn pack_prepare(&self, t: f64, opts: PackOptions) -> FsResult<Option<PackJob>> {
        self.check_writable()?;
        let packtime = Tid::from_unix_time(t);
        if packtime == Tid::ZERO {
            return Err(FsError::transaction("Invalid pack time"));
        }
        if self.packing.swap(true, Ordering::AcqRel) {
            return Err(FsError::refused("Already packing"));
        }
        match self.pack_prepare_inner(packtime, &opts) {
            Ok(Some(job)) => Ok(Some(job)),
            Ok(None) => {
                self.packing.store(false, Ordering::Release);
                Ok(None)
            }
            Err(e) => {
                self.packing.store(false, Ordering::Release);
                let _ = std::fs::remove_file(index::sibling(&self.path, ".pack"));
                Err(e)
            }
        }
    }

    fn pack_prepare_inner(&self, packtime: Tid, opts: &PackOptions) -> FsResult<Option<PackJob>> {
        let (input, end, empty) = {
            let st = self.st();
            (st.file.clone(), st.pos, st.index.is_empty())
        };
        if empty {
            return Ok(None);
        }
        self.write_flips_before(end)?;
        let reader = Reader::new(&input);

        // buildPackIndex: current revisions at the pack time.
        let mut oid2curpos: HashMap<Oid, u64> = HashMap::new();
        let mut pos = FILE_HEADER_LEN;
        let mut unpacked = false;
        let mut ltid = Tid::ZERO;
        let mut last_tpos = None;
        while pos < end {
            let th = read_txn(&reader, pos)?;
            if th.h.tid > packtime {
                break;
            }
            if th.h.tid <= ltid {
                return Err(FsError::corrupt(pos, "time-stamp reduction"));
            }
            ltid = th.h.tid;
            if th.h.status != STATUS_PACKED {
                unpacked = true;
            }
            let tpos = pos;
            let tend = pos + th.h.tlen;
            pos += th.h.header_len();
            while pos < tend {
                let dh = reader.data_header(pos, None)?;
                if dh.tloc != tpos || pos + dh.record_len() > tend {
                    return Err(FsError::corrupt(pos, "data record exceeds its transaction"));
                }
                if dh.plen > 0 || dh.back != 0 {
                    oid2curpos.insert(dh.oid, pos);
                } else {
                    oid2curpos.remove(&dh.oid);
                }
                pos += dh.record_len();
            }
            last_tpos = Some(tpos);
            pos = tend + 8;
        }
        let packpos = pos;
        if !unpacked {
            let next_packed = if packpos < end {
                reader.txn_header(packpos)?.status == STATUS_PACKED
            } else {
                true
            };
            if next_packed {
                tracing::info!(
                    "{}: the database has already been packed to a later time or no changes \
                     have been made since the last pack",
                    self.path.display()
                );
                return Ok(None);
            }
        }

        // findReachable
        let mut reach = Reachability {
            reachable: HashMap::new(),
            reach_ex: HashMap::new(),
        };
        if opts.gc {
            mark_reachable(&reader, &mut reach, &oid2curpos, vec![Oid::ZERO], opts)?;
        } else {
            reach.reachable = oid2curpos.clone();
        }
        // findReachableFromFuture: revisions before the pack time that later
        // back-pointers point to stay, so those stay back-pointers.
        let mut extra_roots = Vec::new();
        let mut pos = packpos;
        while pos < end {
            let th = read_txn(&reader, pos)?;
            let tend = pos + th.h.tlen;
            let mut rpos = pos + th.h.header_len();
            while rpos < tend {
                let dh = reader.data_header(rpos, None)?;
                if dh.back != 0 && dh.back < packpos {
                    match reach.reachable.entry(dh.oid) {
                        std::collections::hash_map::Entry::Occupied(_) => {
                            let list = reach.reach_ex.entry(dh.oid).or_default();
                            if !list.contains(&dh.back) {
                                list.push(dh.back);
                                extra_roots.push(dh.back);
                            }
                        }
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(dh.back);
                        }
                    }
                }
                rpos += dh.record_len();
            }
            pos = tend + 8;
        }
        if opts.gc {
            for p in extra_roots {
                let refs = refs_of(&reader, p, opts)?;
                mark_reachable(&reader, &mut reach, &oid2curpos, refs, opts)?;
            }
        }
        drop(oid2curpos);

        // copyToPacktime
        let out_path = index::sibling(&self.path, ".pack");
        let output = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&out_path)?;
        // Keep the input's header (FS30, or FS21 for a Python 2 file).
        let head = reader.read_exact(0, FILE_HEADER_LEN)?;
        output.write_all_at(&head, 0)?;
        let track_blobs = self.blobs.is_some();
        let mut job = PackJob {
            input: input.clone(),
            output,
            out_path,
            index: OidIndex::new(),
            ipos: FILE_HEADER_LEN,
            opos: FILE_HEADER_LEN,
            blob_candidates: Vec::new(),
            kept: HashSet::new(),
            track_blobs,
            finished: false,
        };
        let mut pos = FILE_HEADER_LEN;
        while pos < packpos {
            let th = read_txn(&reader, pos)?;
            let tpos = pos;
            let tend = pos + th.h.tlen;
            let out_tpos = job.opos;
            let hlen = th.h.header_len();
            let mut recs = Vec::new();
            let mut new_index = Vec::new();
            let mut rpos = pos + hlen;
            while rpos < tend {
                let dh = reader.data_header(rpos, None)?;
                let here = rpos;
                rpos += dh.record_len();
                if !reach.is_reachable(dh.oid, here) {
                    if track_blobs {
                        job.blob_candidates.push((dh.oid, dh.tid));
                    }
                    continue;
                }
                let data = if dh.plen > 0 {
                    Some(reader.data(here, &dh)?)
                } else {
                    reader.load_back(dh.oid, dh.back)?.map(|(d, _, _)| d)
                };
                let out_pos = out_tpos + hlen + recs.len() as u64;
                let nh = DataHeader {
                    prev: 0,
                    tloc: out_tpos,
                    back: 0,
                    ..dh.clone()
                };
                encode_data_record(&mut recs, &nh, data.as_deref());
                new_index.push((dh.oid, out_pos));
                if track_blobs {
                    job.kept.insert((dh.oid, dh.tid));
                }
            }
            // Keep the transaction ending at the pack position even when empty,
            // so the last tid of a fully packed file does not go back in time.
            if !recs.is_empty() || Some(tpos) == last_tpos && packpos == end {
                let out = encode_txn(&th, STATUS_PACKED, &recs);
                job.output.write_all_at(&out, out_tpos)?;
                job.opos += out.len() as u64;
                job.index.extend(new_index);
            }
            pos = tend + 8;
        }
        job.ipos = packpos;
        if job.opos == packpos && packpos == end {
            tracing::info!("{}: pack found nothing to remove", self.path.display());
            let _ = std::fs::remove_file(&job.out_path);
            return Ok(None);
        }
        Ok(Some(job))
    }

    /// Step 2: copy transactions committed after the pack time up to the current
    /// end (callable without the commit lock, any number of times).
    pub fn pack_copy_rest(&self, job: &mut PackJob) -> FsResult<()> {
        let end = {
            let st = self.st();
            if !Arc::ptr_eq(&st.file, &job.input) {
                return Err(FsError::refused("the file was replaced during pack"));
            }
            st.pos
        };
        self.write_flips_before(end)?;
        let input = job.input.clone();
        let reader = Reader::new(&input);
        while job.ipos < end {
            self.copy_one(job, &reader)?;
        }
        Ok(())
    }

    /// FileStorage `copyOne` + `PackCopier.copy`.
    fn copy_one(&self, job: &mut PackJob, reader: &Reader<'_>) -> FsResult<()> {
        let th = read_txn(reader, job.ipos)?;
        let tend = job.ipos + th.h.tlen;
        let out_tpos = job.opos;
        let hlen = th.h.header_len();
        let out_reader_file = &job.output;
        let out_reader = Reader::new(out_reader_file);
        let mut recs = Vec::new();
        let mut tindex = Vec::new();
        let mut rpos = job.ipos + hlen;
        if th.h.status == STATUS_UNCERTAIN {
            job.ipos = tend + 8;
            return Ok(());
        }
        while rpos < tend {
            let dh = reader.data_header(rpos, None)?;
            let here = rpos;
            rpos += dh.record_len();
            let (data, prev_txn) = if dh.plen > 0 {
                (Some(reader.data(here, &dh)?), None)
            } else if dh.back == 0 {
                (None, None)
            } else {
                let data = reader.load_back(dh.oid, dh.back)?.map(|(d, _, _)| d);
                let prev_txn = reader.data_header(dh.back, Some(dh.oid))?.tid;
                (data, Some(prev_txn))
            };
            // _resolve_backpointer in the output file.
            let mut prev_pos = 0;
            if let Some(prev_txn) = prev_txn {
                let start = job.index.get(&dh.oid).copied().unwrap_or(0);
                if let Some(pos) = out_reader.find_in_chain(start, dh.oid, prev_txn) {
                    prev_pos = out_reader.matching_record(pos, data.as_deref())?;
                } else if let Some(tpos) =
                    FileStorage::txn_find(out_reader_file, out_tpos, prev_txn)?
                {
                    prev_pos = data_find_in(&out_reader, tpos, dh.oid, data.as_deref())?;
                }
            }
            let out_pos = out_tpos + hlen + recs.len() as u64;
            let nh = DataHeader {
                prev: job.index.get(&dh.oid).copied().unwrap_or(0),
                tloc: out_tpos,
                back: prev_pos,
                ..dh.clone()
            };
            if prev_pos != 0 {
                encode_data_record(&mut recs, &nh, None);
            } else {
                encode_data_record(&mut recs, &nh, data.as_deref());
            }
            tindex.push((dh.oid, out_pos));
            if job.track_blobs {
                job.kept.insert((dh.oid, dh.tid));
            }
        }
        let out = encode_txn(&th, th.h.status, &recs);
        job.output.write_all_at(&out, out_tpos)?;
        job.opos += out.len() as u64;
        job.index.extend(tindex);
        job.ipos = tend + 8;
        Ok(())
    }

    /// Step 3 (see the module doc). Must not run while a transaction is voted.
    pub fn pack_commit(&self, job: &mut PackJob) -> FsResult<()> {
        self.check_writable()?;
        let slot = self.pending_slot();
        if slot.is_some() {
            return Err(FsError::refused(
                "pack cannot finish while a transaction is voted",
            ));
        }
        // Finished transactions whose group fsync is still pending are made
        // durable in the old file first: their waiters may fsync the new file
        // after the swap, before the rename is durable.
        self.sync_written()?;
        self.pack_copy_rest(job)?;
        job.output.sync_all()?;
        let old_path = index::sibling(&self.path, ".old");
        if self.opts.pack_keep_old {
            match std::fs::remove_file(&old_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            std::fs::hard_link(&self.path, &old_path)?;
        }
        std::fs::rename(&job.out_path, &self.path)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        // Past the point of no return: the packed file is the storage now.
        let new_file = match OpenOptions::new().read(true).write(true).open(&self.path) {
            Ok(f) => f,
            Err(e) => {
                // Commits must not go on into the old (renamed) file.
                tracing::error!(
                    "{}: cannot open the packed file: {e}; closing the storage",
                    self.path.display()
                );
                self.closed.store(true, Ordering::Release);
                return Err(e.into());
            }
        };
        let index = std::mem::take(&mut job.index);
        let length = index.len();
        {
            let mut st = self.st_mut();
            st.file = Arc::new(new_file);
            st.index = index;
            st.pos = job.opos;
        }
        drop(slot);
        job.finished = true;
        self.packing.store(false, Ordering::Release);
        // Python's Data.fs.index now describes another file.
        let _ = std::fs::remove_file(index::sibling(&self.path, ".index"));
        if let Err(e) = self.save_index() {
            tracing::warn!(
                "{}: could not save the index after pack: {e}",
                self.path.display()
            );
        }
        let mut removed = 0usize;
        if let Some(dir) = &self.blobs {
            // As Python: with pack_keep_old the removed blob files move to
            // `<blobs>.old` and the kept ones are linked there too, so the old
            // Data.fs and the old blob tree stay a usable pair.
            let old_tree = if self.opts.pack_keep_old {
                Some(dir.begin_old_tree()?)
            } else {
                BlobDir::remove_all(&dir.old_tree())?;
                None
            };
            for (oid, tid) in &job.blob_candidates {
                if job.kept.contains(&(*oid, *tid)) {
                    continue;
                }
                match &old_tree {
                    Some(old) => {
                        if dir.move_revision_to(old, *oid, *tid)? {
                            removed += 1;
                        }
                    }
                    None => {
                        if dir.exists(*oid, *tid) {
                            dir.remove(*oid, *tid)?;
                            removed += 1;
                        }
                    }
                }
            }
            if let Some(old) = &old_tree {
                dir.link_all_into(old)?;
            }
        }
        tracing::info!(
            "{}: packed to {} bytes, {length} objects, {removed} blob files removed",
            self.path.display(),
            job.opos
        );
        Ok(())
    }

    /// Give up a pack: remove `<path>.pack`.
    pub fn pack_discard(&self, job: &mut PackJob) {
        if job.finished {
            return;
        }
        job.finished = true;
        let _ = std::fs::remove_file(&job.out_path);
        self.packing.store(false, Ordering::Release);
    }

    /// A readable file holding the blob of `oid` revision `serial`.
    pub fn load_blob(&self, oid: Oid, serial: Tid) -> FsResult<PathBuf> {
        self.check_open()?;
        let Some(dir) = &self.blobs else {
            return Err(FsError::Storage(StorageError::Unsupported(
                "no blob directory configured".into(),
            )));
        };
        let path = dir.blob_path(oid, serial);
        if path.is_file() {
            Ok(path)
        } else {
            Err(FsError::pos_key(oid))
        }
    }
}

/// `_data_find` on another file (the pack output).
fn data_find_in(reader: &Reader<'_>, tpos: u64, oid: Oid, data: Option<&[u8]>) -> FsResult<u64> {
    let h = reader.txn_header(tpos)?;
    let tend = tpos + h.tlen;
    let mut pos = tpos + h.header_len();
    while pos < tend {
        let dh = reader.data_header(pos, None)?;
        if dh.oid == oid {
            if dh.plen == 0 {
                return Ok(pos);
            }
            return match data {
                Some(d) if dh.plen == d.len() as u64 && reader.data(pos, &dh)? == d => Ok(pos),
                _ => Ok(0),
            };
        }
        pos += dh.record_len();
    }
    Ok(0)
}

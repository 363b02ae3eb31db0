//! The oid → position index: built by scanning the file (a port of FileStorage's
//! `read_index`, including its crash-recovery rules), and persisted in our own
//! `<path>.zeoraid-index` file for fast reopening.
//!
//! Recovery rules while scanning (same as Python's FileStorage):
//! - a short trailing transaction header, a trailing transaction whose length
//!   runs past the end of the file, or a trailing checkpoint (`c`) transaction
//!   is cut off; the cut bytes are kept in `<path>.trN` (Python's `_truncate`);
//! - damage that is followed by valid transactions (a corrupt middle), a data
//!   record that leaves its transaction, records that do not add up, or a wrong
//!   redundant length are [`FsError::Corrupt`] — never silent data loss.
//!
//! Python's own `Data.fs.index` (a pickle) is never written here; Python
//! re-scans from its saved position on open, so our appends never break it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use zeoraid_storage::{Oid, Tid};

use crate::error::{FsError, FsResult};
use crate::format::{
    be_u64, DataHeader, Reader, DATA_HEADER_LEN, FILE_HEADER_LEN, MAGIC, STATUS_CHECKPOINT,
    STATUS_NORMAL, STATUS_PACKED, STATUS_UNCERTAIN, TXN_HEADER_LEN,
};

/// Below this oid the dense table may always grow (512 KiB of slots), however
/// few oids are stored yet.
const DENSE_FREE_SLOTS: u64 = 1 << 16;

/// oid → position of its current data record.
///
/// ZODB hands out oids counting up from 0, so a storage's oids are almost
/// always dense: they are kept in a table indexed by the oid (`dense[oid]` =
/// position, 0 = no such oid; a data record is never at position 0, where the
/// file header is). A load's look-up is then one memory access — a B-tree of
/// 350 000 oids costs a cache miss per level, a hash map two — and the table
/// takes 8 bytes per slot, up to 1.5 slots per oid as it grows by half at a
/// time: less than either (~17 bytes per oid in a `BTreeMap`, ~20–35 in a
/// hash map). Oids that would make the table more than half empty (a storage
/// with oids scattered over the 64-bit space) go to an ordered map instead;
/// every oid there is ≥ `dense.len()`, so walking the table and then the map
/// gives all oids in order (`record_iternext`, the saved index file).
#[derive(Clone, Default)]
pub struct OidIndex {
    /// Positions of oids `0..dense.len()`; 0 where the oid is absent.
    dense: Vec<u64>,
    /// How many slots of `dense` are non-zero.
    dense_count: usize,
    /// Oids ≥ `dense.len()`.
    sparse: BTreeMap<Oid, u64>,
}

impl OidIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// `oid`'s slot in the dense table, if the table covers it.
    fn slot(&self, oid: Oid) -> Option<usize> {
        usize::try_from(oid.as_u64())
            .ok()
            .filter(|i| *i < self.dense.len())
    }

    /// Position of `oid`'s current record.
    #[inline]
    pub fn get(&self, oid: &Oid) -> Option<&u64> {
        match self.slot(*oid) {
            Some(i) => self.dense.get(i).filter(|pos| **pos != 0),
            None => self.sparse.get(oid),
        }
    }

    /// Set `oid`'s current record (`pos` is never 0, see the type's doc);
    /// returns the position it replaces.
    pub fn insert(&mut self, oid: Oid, pos: u64) -> Option<u64> {
        if self.slot(oid).is_none() && !self.grow_dense_to(oid) {
            return self.sparse.insert(oid, pos);
        }
        let old = self
            .slot(oid)
            .and_then(|i| self.dense.get_mut(i))
            .map(|slot| std::mem::replace(slot, pos))
            .unwrap_or(0);
        if old == 0 {
            self.dense_count += 1;
            None
        } else {
            Some(old)
        }
    }

    /// Grow the dense table to cover `oid` if it stays at least half full
    /// (counting `oid`); the sparse oids it then covers move into it.
    fn grow_dense_to(&mut self, oid: Oid) -> bool {
        let wanted = oid.as_u64().saturating_add(1);
        let limit = DENSE_FREE_SLOTS.max((self.len() as u64 + 1).saturating_mul(2));
        if wanted > limit {
            return false;
        }
        // Grown by half at a time (within the limit), so that inserting oids in
        // increasing order, as a scan mostly does, grows it rarely.
        let current = self.dense.len() as u64;
        let new_len = (current + current / 2).clamp(wanted, limit);
        let Ok(new_len) = usize::try_from(new_len) else {
            return false;
        };
        // Capacity by half at a time too, also when the limit allows only a
        // few slots more (each insert of a half-full table), so growing stays
        // amortised O(1) per oid — but not doubled, as `resize` alone would.
        if new_len > self.dense.capacity() {
            let target = new_len.max(self.dense.len().saturating_add(self.dense.len() / 2));
            self.dense
                .reserve_exact(target.saturating_sub(self.dense.len()));
        }
        self.dense.resize(new_len, 0);
        let covers_sparse = self
            .sparse
            .first_key_value()
            .is_some_and(|(first, _)| first.as_u64() < new_len as u64);
        if covers_sparse {
            let above = self.sparse.split_off(&Oid::from_u64(new_len as u64));
            for (moved, pos) in std::mem::replace(&mut self.sparse, above) {
                if let Some(slot) = usize::try_from(moved.as_u64())
                    .ok()
                    .and_then(|i| self.dense.get_mut(i))
                {
                    *slot = pos;
                    self.dense_count += 1;
                }
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.dense_count + self.sparse.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The (oid, position) entries with oid ≥ `from`, in oid order.
    pub fn range_from(&self, from: Oid) -> impl Iterator<Item = (Oid, u64)> + '_ {
        let start = usize::try_from(from.as_u64()).unwrap_or(usize::MAX);
        let dense = self
            .dense
            .iter()
            .enumerate()
            .skip(start)
            .filter(|(_, pos)| **pos != 0)
            .map(|(i, pos)| (Oid::from_u64(i as u64), *pos));
        let sparse = self.sparse.range(from..).map(|(oid, pos)| (*oid, *pos));
        dense.chain(sparse)
    }

    /// The oids at or after `from`, in order.
    pub fn oids_from(&self, from: Oid) -> impl Iterator<Item = Oid> + '_ {
        self.range_from(from).map(|(oid, _)| oid)
    }

    /// All (oid, position) entries, in oid order.
    pub fn iter(&self) -> impl Iterator<Item = (Oid, u64)> + '_ {
        self.range_from(Oid::ZERO)
    }

    /// The highest oid in the index.
    pub fn max_oid(&self) -> Option<Oid> {
        if let Some((oid, _)) = self.sparse.last_key_value() {
            return Some(*oid);
        }
        let last = self.dense.iter().rposition(|pos| *pos != 0)?;
        Some(Oid::from_u64(last as u64))
    }
}

impl Extend<(Oid, u64)> for OidIndex {
    fn extend<I: IntoIterator<Item = (Oid, u64)>>(&mut self, entries: I) {
        for (oid, pos) in entries {
            self.insert(oid, pos);
        }
    }
}

impl FromIterator<(Oid, u64)> for OidIndex {
    fn from_iter<I: IntoIterator<Item = (Oid, u64)>>(entries: I) -> Self {
        let mut index = OidIndex::new();
        index.extend(entries);
        index
    }
}

impl PartialEq for OidIndex {
    /// Same entries, however they are laid out.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for OidIndex {}

impl std::fmt::Debug for OidIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Position just after the last complete transaction.
    pub pos: u64,
    /// Tid of the last complete transaction (or the `ltid` passed in).
    pub last_tid: Tid,
    /// Bytes cut off the end of the file (0 when nothing was truncated).
    pub truncated: u64,
}

/// Path of a sibling file: `<data path><suffix>`.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Check the file header. An empty file gets one written (unless read-only).
pub fn check_header(file: &File, read_only: bool) -> FsResult<u64> {
    let size = file.metadata()?.len();
    if size == 0 {
        if read_only {
            return Err(FsError::corrupt(0, "empty file opened read-only"));
        }
        file.write_all_at(MAGIC, 0)?;
        file.sync_all()?;
        return Ok(FILE_HEADER_LEN);
    }
    let mut head = [0u8; 4];
    let n = Reader::new(file).read_upto(0, &mut head)?;
    if n < 4 || !crate::format::is_magic(&head) {
        return Err(FsError::corrupt(
            0,
            format!(
                "not a FileStorage file (header b\"{}\", expected b\"FS30\" or b\"FS21\")",
                head.get(..n).unwrap_or_default().escape_ascii()
            ),
        ));
    }
    Ok(size)
}

/// Does the end of the file look like the end of a valid transaction that starts
/// after `pos`? Then damage at `pos` is in the middle of the file, not a torn end.
fn valid_transactions_follow(reader: &Reader<'_>, file_size: u64, pos: u64) -> bool {
    if file_size < FILE_HEADER_LEN + TXN_HEADER_LEN + 8 {
        return false;
    }
    let Ok(rtl) = reader.read_u64(file_size - 8) else {
        return false;
    };
    let Some(start) = file_size.checked_sub(8).and_then(|p| p.checked_sub(rtl)) else {
        return false;
    };
    if start <= pos || rtl < TXN_HEADER_LEN {
        return false;
    }
    match reader.txn_header(start) {
        Ok(h) => {
            h.tlen == rtl
                && (h.status == STATUS_NORMAL || h.status == STATUS_PACKED)
                && h.header_len() <= h.tlen
        }
        Err(_) => false,
    }
}

/// Whether the file from `pos` to its end is a chain of complete transactions:
/// each header's length fits the file and matches its redundant length.
fn complete_transactions_to_end(reader: &Reader<'_>, file_size: u64, mut pos: u64) -> bool {
    while pos < file_size {
        let Ok(h) = reader.txn_header(pos) else {
            return false;
        };
        let Some(end) = pos.checked_add(h.tlen) else {
            return false;
        };
        if h.tlen < h.header_len()
            || end.checked_add(8).is_none_or(|e| e > file_size)
            || reader.read_u64(end).ok() != Some(h.tlen)
        {
            return false;
        }
        pos = end + 8;
    }
    pos == file_size
}

/// Cut the file at `pos`, keeping the cut bytes in `<path>.trN` like Python.
pub fn truncate_saving(file: &File, path: &Path, pos: u64) -> FsResult<u64> {
    let size = file.metadata()?.len();
    if size <= pos {
        return Ok(0);
    }
    let cut = size - pos;
    let mut i = 0u32;
    let saved = loop {
        let candidate = sibling(path, &format!(".tr{i}"));
        if !candidate.exists() {
            break candidate;
        }
        i += 1;
    };
    tracing::warn!(
        "{}: writing {cut} truncated bytes from position {pos} to {}",
        path.display(),
        saved.display()
    );
    let tail = Reader::new(file).read_exact(pos, cut)?;
    let mut out = File::create(&saved)?;
    out.write_all(&tail)?;
    out.sync_all()?;
    file.set_len(pos)?;
    file.sync_all()?;
    Ok(cut)
}

/// How much of the file one read of the scan brings in.
const SCAN_CHUNK: usize = 1 << 20;

/// Sequential reads for the scan: the file is read in [`SCAN_CHUNK`]-byte
/// chunks and headers are parsed from memory, so a scan costs one `pread` per
/// chunk instead of two or three per record.
struct ScanWindow<'a> {
    reader: Reader<'a>,
    /// File position of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
    /// How many bytes of `buf` hold file content (less than its length only at
    /// the end of the file).
    valid: usize,
}

impl<'a> ScanWindow<'a> {
    fn new(reader: Reader<'a>) -> Self {
        ScanWindow {
            reader,
            start: 0,
            buf: vec![0u8; SCAN_CHUNK],
            valid: 0,
        }
    }

    /// Up to `len` bytes at `pos`: fewer only where the file ends.
    fn bytes(&mut self, pos: u64, len: usize) -> FsResult<&[u8]> {
        let offset = pos
            .checked_sub(self.start)
            .and_then(|o| usize::try_from(o).ok());
        let cached = offset.filter(|o| o.checked_add(len).is_some_and(|e| e <= self.valid));
        let offset = match cached {
            Some(o) => o,
            None => {
                if self.buf.len() < len {
                    self.buf.resize(len, 0);
                }
                self.valid = self.reader.read_upto(pos, &mut self.buf)?;
                self.start = pos;
                0
            }
        };
        let end = offset.saturating_add(len).min(self.valid);
        Ok(self.buf.get(offset..end).unwrap_or_default())
    }

    /// The big-endian u64 at `pos`, or `Corrupt` if the file ends first.
    fn u64_at(&mut self, pos: u64) -> FsResult<u64> {
        let b = self.bytes(pos, 8)?;
        if b.len() < 8 {
            return Err(FsError::corrupt(
                pos,
                format!("file ends after {} of 8 bytes", b.len()),
            ));
        }
        Ok(be_u64(b))
    }
}

/// A data record seen in the transaction being scanned.
#[derive(Clone, Copy)]
struct ScannedRecord {
    oid: Oid,
    pos: u64,
    prev: u64,
}

/// Enter a verified transaction's records (transaction at `tpos`) into
/// `index`, and check their `prev` pointers as Python's `read_index` does: a
/// mismatch is only logged. `prev` must be the oid's position before this
/// transaction, or (tolerated) its earlier record in this transaction.
fn publish_transaction(
    index: &mut OidIndex,
    records: &[ScannedRecord],
    tpos: u64,
    name: &std::path::Display<'_>,
) {
    // The position each record replaced, to find an oid's position before this
    // transaction when it has several records here (rare).
    let mut replaced: Vec<u64> = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        let old = index.insert(rec.oid, rec.pos).unwrap_or(0);
        replaced.push(old);
        if old == rec.prev {
            continue;
        }
        let before_txn = if old >= tpos {
            // `old` is an earlier record of this transaction; the first one
            // replaced the position before it.
            records
                .iter()
                .zip(&replaced)
                .take(i)
                .find(|(r, _)| r.oid == rec.oid)
                .map_or(0, |(_, p)| *p)
        } else {
            old
        };
        if before_txn != rec.prev {
            if rec.prev != 0 {
                tracing::error!("{name} incorrect previous pointer at {}", rec.pos);
            } else {
                tracing::warn!("{name} incorrect previous pointer at {}", rec.pos);
            }
        }
    }
}

/// Scan transactions from `start`, adding their records to `index` (FileStorage
/// `read_index`). Returns where the committed data ends.
pub fn scan(
    file: &File,
    path: &Path,
    index: &mut OidIndex,
    start: u64,
    mut ltid: Tid,
    read_only: bool,
) -> FsResult<ScanOutcome> {
    let file_size = check_header(file, read_only)?;
    if file_size < start {
        return Err(FsError::corrupt(
            start,
            format!("file is shorter ({file_size}) than the scan start"),
        ));
    }
    let reader = Reader::new(file);
    let mut window = ScanWindow::new(Reader::new(file));
    let name = path.display();
    let mut pos = start;
    let mut truncated = 0u64;
    let mut tindex: Vec<ScannedRecord> = Vec::new();
    loop {
        let head = window.bytes(pos, TXN_HEADER_LEN as usize)?;
        if head.is_empty() {
            break;
        }
        let Ok(hb) = <&[u8; TXN_HEADER_LEN as usize]>::try_from(head) else {
            tracing::warn!("{name} truncated at {pos} (partial transaction header)");
            if !read_only {
                truncated = truncate_saving(file, path, pos)?;
            }
            break;
        };
        let h = crate::format::TxnHeader::parse(hb);
        if h.tid <= ltid {
            tracing::warn!("{name} time-stamp reduction at {pos}");
        }
        let tend = pos.checked_add(h.tlen);
        let past_end = tend
            .and_then(|t| t.checked_add(8))
            .is_none_or(|t| t > file_size);
        if past_end || h.status == STATUS_CHECKPOINT {
            // Transactions finished while earlier ones still waited for their
            // status byte (`flips.rs`) leave complete transactions after the
            // first `c` one: none of them was acknowledged, and Python cuts
            // there too. Damage in the middle breaks that chain.
            let unflipped_tail = !past_end && complete_transactions_to_end(&reader, file_size, pos);
            if !unflipped_tail && valid_transactions_follow(&reader, file_size, pos) {
                return Err(FsError::corrupt(
                    pos,
                    format!(
                        "damaged transaction header (status {:?}, length {}) followed by \
                         valid transactions",
                        char::from(h.status),
                        h.tlen
                    ),
                ));
            }
            tracing::warn!(
                "{name} truncated, possibly due to damaged records at {pos} \
                 (an unfinished or half-written last transaction)"
            );
            if !read_only {
                truncated = truncate_saving(file, path, pos)?;
            }
            break;
        }
        let tend = pos + h.tlen;
        if ![STATUS_NORMAL, STATUS_PACKED, STATUS_UNCERTAIN].contains(&h.status) {
            tracing::warn!(
                "{name} has invalid status {:?} at {pos}",
                char::from(h.status)
            );
        }
        if h.tlen < h.header_len() {
            // Python: bad data in the middle, or a turd at the end after a crash?
            let rtl = reader.read_u64(file_size - 8)?;
            if file_size.saturating_sub(rtl) < pos || rtl < TXN_HEADER_LEN {
                tracing::error!("{name} has invalid transaction header at {pos}");
                tracing::warn!(
                    "it appears that there is invalid data at the end of {name}, possibly \
                     due to a system crash; truncating to recover from bad data at end"
                );
                if !read_only {
                    truncated = truncate_saving(file, path, pos)?;
                }
                break;
            }
            return Err(FsError::corrupt(pos, "invalid transaction header"));
        }
        let tpos = pos;
        if h.status == STATUS_UNCERTAIN {
            if window.u64_at(tend)? != h.tlen {
                return Err(FsError::corrupt(pos, "inconsistent transaction length"));
            }
            pos = tend + 8;
            continue;
        }
        let mut rpos = tpos + h.header_len();
        tindex.clear();
        while rpos < tend {
            let dh = DataHeader::parse_read(
                window.bytes(rpos, DATA_HEADER_LEN as usize + 8)?,
                rpos,
                None,
            )?;
            let dlen = dh.record_len();
            if rpos + dlen > tend || dh.tloc != tpos {
                return Err(FsError::corrupt(
                    rpos,
                    "data record exceeds transaction record",
                ));
            }
            tindex.push(ScannedRecord {
                oid: dh.oid,
                pos: rpos,
                prev: dh.prev,
            });
            rpos += dlen;
        }
        if rpos != tend {
            return Err(FsError::corrupt(tpos, "data records don't add up"));
        }
        if window.u64_at(tend)? != h.tlen {
            return Err(FsError::corrupt(
                tend,
                "redundant transaction length check failed",
            ));
        }
        pos = tend + 8;
        // Entered only once the whole transaction checked out; on an error
        // the caller drops `index`.
        publish_transaction(index, &tindex, tpos, &name);
        ltid = h.tid;
    }
    Ok(ScanOutcome {
        pos,
        last_tid: ltid,
        truncated,
    })
}

// ---------------------------------------------------------------------------
// Our persisted index file.

const INDEX_MAGIC: &[u8; 8] = b"ZRFSIDX1";
/// magic 8, inode 8, pos 8, last tid 8, max oid 8, count 8.
const INDEX_HEADER_LEN: usize = 48;

/// The content of a persisted index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedIndex {
    pub inode: u64,
    pub pos: u64,
    pub last_tid: Tid,
    pub max_oid: Oid,
    pub index: OidIndex,
}

/// IEEE CRC-32 (the zlib one), eight bytes per step ("slicing-by-8": eight
/// tables, each folding one byte's effect further ahead), so that checking a
/// 6 MB index file costs milliseconds at open.
pub fn crc32(data: &[u8]) -> u32 {
    let t = crc_tables();
    let mut crc = 0xffff_ffffu32;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = crc ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        crc = t[7][usize::from(lo as u8)]
            ^ t[6][usize::from((lo >> 8) as u8)]
            ^ t[5][usize::from((lo >> 16) as u8)]
            ^ t[4][usize::from((lo >> 24) as u8)]
            ^ t[3][usize::from(hi as u8)]
            ^ t[2][usize::from((hi >> 8) as u8)]
            ^ t[1][usize::from((hi >> 16) as u8)]
            ^ t[0][usize::from((hi >> 24) as u8)];
    }
    for &b in words.remainder() {
        crc = (crc >> 8) ^ t[0][usize::from((crc as u8) ^ b)];
    }
    !crc
}

/// `t[0]` is the byte-at-a-time table; `t[k][b]` is the CRC state change of
/// byte `b` followed by `k` zero bytes.
fn crc_tables() -> &'static [[u32; 256]; 8] {
    static TABLES: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for (i, slot) in t[0].iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        for k in 1..8 {
            let (done, rest) = t.split_at_mut(k);
            let (first, prev) = (&done[0], &done[k - 1]);
            for (slot, p) in rest[0].iter_mut().zip(prev) {
                *slot = (p >> 8) ^ first[usize::from(*p as u8)];
            }
        }
        t
    })
}

/// Path of our index file: `<path>.zeoraid-index`.
pub fn index_path(path: &Path) -> PathBuf {
    sibling(path, ".zeoraid-index")
}

/// Write the index atomically (temp file, fsync, rename).
pub fn save_index(path: &Path, saved: &SavedIndex) -> FsResult<()> {
    let mut buf = Vec::with_capacity(INDEX_HEADER_LEN + saved.index.len() * 16 + 4);
    buf.extend_from_slice(INDEX_MAGIC);
    buf.extend_from_slice(&saved.inode.to_be_bytes());
    buf.extend_from_slice(&saved.pos.to_be_bytes());
    buf.extend_from_slice(&saved.last_tid.0);
    buf.extend_from_slice(&saved.max_oid.0);
    buf.extend_from_slice(&(saved.index.len() as u64).to_be_bytes());
    for (oid, pos) in saved.index.iter() {
        buf.extend_from_slice(&oid.0);
        buf.extend_from_slice(&pos.to_be_bytes());
    }
    let crc = crc32(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());
    let target = index_path(path);
    let tmp = sibling(path, ".zeoraid-index.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&buf)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &target)?;
    Ok(())
}

/// Read and checksum our index file; `None` (with a log line) when it is
/// missing, unreadable or corrupt.
pub fn load_index(path: &Path) -> Option<SavedIndex> {
    let target = index_path(path);
    let buf = match std::fs::read(&target) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(
                "cannot read {}: {e}; rebuilding the index",
                target.display()
            );
            return None;
        }
    };
    let parsed = parse_index(&buf);
    if parsed.is_none() {
        tracing::warn!("{} is corrupt; rebuilding the index", target.display());
    }
    parsed
}

fn parse_index(buf: &[u8]) -> Option<SavedIndex> {
    if buf.len() < INDEX_HEADER_LEN + 4 || buf.get(..8)? != INDEX_MAGIC {
        return None;
    }
    let body_len = buf.len() - 4;
    let crc = u32::from_be_bytes(buf.get(body_len..)?.try_into().ok()?);
    if crc32(buf.get(..body_len)?) != crc {
        return None;
    }
    let inode = be_u64(buf.get(8..16)?);
    let pos = be_u64(buf.get(16..24)?);
    let last_tid = Tid::from_slice(buf.get(24..32)?)?;
    let max_oid = Oid::from_slice(buf.get(32..40)?)?;
    let count = usize::try_from(be_u64(buf.get(40..48)?)).ok()?;
    if count.checked_mul(16)?.checked_add(INDEX_HEADER_LEN)? != body_len {
        return None;
    }
    let mut index = OidIndex::new();
    for entry in buf.get(INDEX_HEADER_LEN..body_len)?.chunks_exact(16) {
        let (oid, pos) = entry.split_at(8);
        let pos = be_u64(pos);
        // No record lives in the file header, and an oid has one entry.
        if pos < FILE_HEADER_LEN || index.insert(Oid::from_slice(oid)?, pos).is_some() {
            return None;
        }
    }
    Some(SavedIndex {
        inode,
        pos,
        last_tid,
        max_oid,
        index,
    })
}

/// Is a saved index consistent with the data file? (Like Python's
/// `_check_sanity`: the transaction ending at the saved position must be the
/// saved last transaction, and its records must be where the index says.)
pub fn index_matches(file: &File, saved: &SavedIndex) -> FsResult<bool> {
    let meta = file.metadata()?;
    if meta.ino() != saved.inode || meta.len() < saved.pos || saved.pos < FILE_HEADER_LEN {
        return Ok(false);
    }
    if saved.pos == FILE_HEADER_LEN {
        return Ok(saved.index.is_empty() && saved.last_tid == Tid::ZERO);
    }
    let reader = Reader::new(file);
    let Some(tail) = saved.pos.checked_sub(8) else {
        return Ok(false);
    };
    let Ok(tl) = reader.read_u64(tail) else {
        return Ok(false);
    };
    let Some(tpos) = saved.pos.checked_sub(8).and_then(|p| p.checked_sub(tl)) else {
        return Ok(false);
    };
    if tpos < FILE_HEADER_LEN {
        return Ok(false);
    }
    let Ok(h) = reader.txn_header(tpos) else {
        return Ok(false);
    };
    if h.tlen != tl || h.tid != saved.last_tid || h.header_len() > h.tlen {
        return Ok(false);
    }
    if h.status != STATUS_NORMAL && h.status != STATUS_PACKED {
        return Ok(false);
    }
    let tend = tpos + h.tlen;
    let mut rpos = tpos + h.header_len();
    let mut checked = 0;
    while rpos < tend && checked < 5 {
        let Ok(dh) = reader.data_header(rpos, None) else {
            return Ok(false);
        };
        if rpos + dh.record_len() > tend || dh.tloc != tpos {
            return Ok(false);
        }
        match saved.index.get(&dh.oid) {
            Some(p) if *p >= rpos && *p < tend => {}
            _ => return Ok(false),
        }
        checked += 1;
        rpos += dh.record_len();
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    fn oid(n: u64) -> Oid {
        Oid::from_u64(n)
    }

    #[test]
    fn crc32_matches_zlib() {
        // The CRC-32 check value, and lengths around the 8-byte steps.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xe8b7_be43);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
    }

    #[test]
    fn dense_and_scattered_oids_are_found_and_walked_in_order() {
        let mut index = OidIndex::new();
        // Dense oids out of order, then oids far beyond any dense table.
        let scattered = [u64::MAX - 200, 1 << 40, (1 << 40) + 1, 1 << 63];
        for n in (0..3000u64).rev().step_by(2).chain(scattered) {
            assert_eq!(index.insert(oid(n), n + 100), None);
        }
        assert_eq!(index.len(), 1500 + scattered.len());
        assert_eq!(index.get(&oid(2999)), Some(&3099));
        assert_eq!(index.get(&oid(2998)), None);
        assert_eq!(index.get(&oid(1 << 40)), Some(&((1 << 40) + 100)));
        assert_eq!(index.get(&oid(7)), Some(&107));
        // Updating an entry replaces it and does not add one.
        assert_eq!(index.insert(oid(7), 5000), Some(107));
        assert_eq!(index.insert(oid(1 << 63), 6000), Some((1 << 63) + 100));
        assert_eq!(index.len(), 1500 + scattered.len());
        let all: Vec<u64> = index.iter().map(|(o, _)| o.as_u64()).collect();
        let mut expected: Vec<u64> = (1..3000).step_by(2).chain(scattered).collect();
        expected.sort_unstable();
        assert_eq!(all, expected);
        let from: Vec<u64> = index.oids_from(oid(2990)).map(Oid::as_u64).collect();
        assert_eq!(
            from,
            [
                2991,
                2993,
                2995,
                2997,
                2999,
                1 << 40,
                (1 << 40) + 1,
                1 << 63,
                u64::MAX - 200
            ]
        );
        assert_eq!(index.max_oid(), Some(oid(u64::MAX - 200)));
    }

    #[test]
    fn a_half_full_table_grows_in_amortised_steps() {
        // Every other oid: each insert is at the table's density limit.
        let mut index = OidIndex::new();
        let mut reallocations = 0;
        let mut capacity = 0;
        for n in (0..2_000_000u64).step_by(2) {
            index.insert(oid(n), n + 4);
            if index.dense.capacity() != capacity {
                capacity = index.dense.capacity();
                reallocations += 1;
            }
        }
        assert!(reallocations < 100, "{reallocations} reallocations");
        assert!(index.sparse.is_empty());
        assert_eq!(index.len(), 1_000_000);
        assert!(index.dense.capacity() <= 3_000_000 + 2);
    }

    #[test]
    fn sparse_oids_move_into_the_dense_table_when_it_grows() {
        let mut index = OidIndex::new();
        // Beyond the free slots and more than twice the count: kept sparse.
        let far = DENSE_FREE_SLOTS * 3;
        index.insert(oid(far), 10);
        assert_eq!(index.sparse.len(), 1);
        for n in 0..far {
            index.insert(oid(n), n + 4);
        }
        // The table covered `far` on the way and took it in.
        assert!(index.sparse.is_empty());
        assert_eq!(index.len() as u64, far + 1);
        assert_eq!(index.get(&oid(far)), Some(&10));
        assert_eq!(index.max_oid(), Some(oid(far)));
        assert_eq!(index.iter().count() as u64, far + 1);
    }

    #[test]
    fn saved_index_round_trips_and_rejects_damage() {
        let index: OidIndex = [(oid(3), 40u64), (oid(1), 27), (oid(1 << 50), 90)]
            .into_iter()
            .collect();
        let saved = SavedIndex {
            inode: 7,
            pos: 100,
            last_tid: Tid::from_u64(5),
            max_oid: oid(1 << 50),
            index,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("Data.fs");
        save_index(&path, &saved).expect("save");
        assert_eq!(load_index(&path), Some(saved.clone()));
        let bytes = std::fs::read(index_path(&path)).expect("read");
        // Entries are written in oid order.
        let first = bytes
            .get(INDEX_HEADER_LEN..INDEX_HEADER_LEN + 8)
            .expect("entry");
        assert_eq!(first, oid(1).as_bytes());
        let mut damaged = bytes.clone();
        if let Some(b) = damaged.get_mut(INDEX_HEADER_LEN + 3) {
            *b ^= 1;
        }
        assert_eq!(parse_index(&damaged), None);
        // A duplicated oid (with a correct checksum) is rejected too.
        let mut dup = bytes.get(..bytes.len() - 4).expect("body").to_vec();
        let entry = dup
            .get(INDEX_HEADER_LEN..INDEX_HEADER_LEN + 16)
            .expect("entry")
            .to_vec();
        dup.get_mut(INDEX_HEADER_LEN + 16..INDEX_HEADER_LEN + 32)
            .expect("second entry")
            .copy_from_slice(&entry);
        let crc = crc32(&dup);
        dup.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(parse_index(&dup), None);
    }
}

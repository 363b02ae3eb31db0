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

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use zeoraid_storage::{Oid, Tid};

use crate::error::{FsError, FsResult};
use crate::format::{
    be_u64, DataHeader, Reader, DATA_HEADER_LEN, FILE_HEADER_LEN, MAGIC, STATUS_CHECKPOINT,
    STATUS_NORMAL, STATUS_PACKED, STATUS_UNCERTAIN, TXN_HEADER_LEN,
};

/// oid → position of its current data record.
pub type OidIndex = BTreeMap<Oid, u64>;

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

/// Hashes an oid for the scan's hash map: a SplitMix64 finaliser over its 8
/// bytes, cheaper than SipHash. (Oids come from the data file, which the
/// storage trusts anyway; there is no attacker to choose colliding keys.)
#[derive(Default)]
struct OidHasher(u64);

impl Hasher for OidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            self.0 = self.0.rotate_left(8) ^ be_u64(chunk);
        }
    }

    /// The length prefix of the oid's byte array: always 8, nothing to mix in.
    fn write_usize(&mut self, _len: usize) {}

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// oid → position of its newest record found by the scan so far.
type ScanFound = HashMap<Oid, u64, BuildHasherDefault<OidHasher>>;

/// A data record seen in the transaction being scanned.
#[derive(Clone, Copy)]
struct ScannedRecord {
    oid: Oid,
    pos: u64,
    prev: u64,
}

/// Enter a verified transaction's records (transaction at `tpos`) into
/// `found`, and check their `prev` pointers as Python's `read_index` does: a
/// mismatch is only logged. `prev` must be the oid's position before this
/// transaction, or (tolerated) its earlier record in this transaction.
fn publish_transaction(
    found: &mut ScanFound,
    index: &OidIndex,
    records: &[ScannedRecord],
    tpos: u64,
    name: &std::path::Display<'_>,
) {
    // The position each record replaced, to find an oid's position before this
    // transaction when it has several records here (rare).
    let mut replaced: Vec<u64> = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        let old = found
            .insert(rec.oid, rec.pos)
            .or_else(|| index.get(&rec.oid).copied())
            .unwrap_or(0);
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
    // What the scan found, over `index`: a hash map while scanning (one hash
    // look-up per record; B-tree look-ups in a large index cost more than the
    // reading), merged into `index` at the end.
    let mut found: ScanFound = HashMap::default();
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
            if valid_transactions_follow(&reader, file_size, pos) {
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
        publish_transaction(&mut found, index, &tindex, tpos, &name);
        ltid = h.tid;
    }
    if index.is_empty() {
        // A full scan: build the ordered index in one go from sorted entries.
        let mut entries: Vec<(Oid, u64)> = found.into_iter().collect();
        entries.sort_unstable_by_key(|(oid, _)| *oid);
        *index = entries.into_iter().collect();
    } else {
        index.extend(found);
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

/// IEEE CRC-32 (the zlib one), bitwise; fast enough for an index written on close.
pub fn crc32(data: &[u8]) -> u32 {
    let table = crc_table();
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        let i = usize::from((crc as u8) ^ b);
        crc = (crc >> 8) ^ table.get(i).copied().unwrap_or(0);
    }
    !crc
}

fn crc_table() -> &'static [u32; 256] {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
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
    for (oid, pos) in &saved.index {
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
    let entries = buf
        .get(INDEX_HEADER_LEN..body_len)?
        .chunks_exact(16)
        .map(|chunk| Some((Oid::from_slice(chunk.get(..8)?)?, be_u64(chunk.get(8..)?))))
        .collect::<Option<Vec<_>>>()?;
    // Collected from (already sorted) entries, the B-tree is built with full
    // nodes: ~30 % faster look-ups than one grown by inserting one by one.
    let index: OidIndex = entries.into_iter().collect();
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

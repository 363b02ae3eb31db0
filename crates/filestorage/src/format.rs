//! The Data.fs format (FS21/FS30), byte by byte, as ZODB's `FileStorage/format.py`
//! defines it: the file header, transaction headers, data record headers, and
//! positioned reads of them from a shared file.
//!
//! All numbers are big-endian. Every read checks lengths and bounds and answers
//! [`FsError::Corrupt`] for anything that is not what the format says — never a
//! panic. See `docs/filestorage.md` for the tables.

use std::fs::File;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use zeoraid_storage::{Oid, Tid};

use crate::error::{FsError, FsResult};

/// The 4-byte file header ZODB 5/6 on Python 3 writes ("packed_version" =
/// `ZODB._compat.FILESTORAGE_MAGIC`); new files get it. The record format is the
/// same as FS21's; only the pickles inside are Python 3 ones.
pub const MAGIC: &[u8; 4] = b"FS30";
/// The header of files written by ZODB on Python 2 (same record format); read,
/// and kept when such a file is appended to or packed.
pub const MAGIC_FS21: &[u8; 4] = b"FS21";

/// Is this a FileStorage file header we understand?
pub fn is_magic(head: &[u8]) -> bool {
    head == MAGIC || head == MAGIC_FS21
}
/// Size of the file header; the first transaction starts here.
pub const FILE_HEADER_LEN: u64 = 4;
/// Fixed part of a transaction header: tid 8, tlen 8, status 1, ulen 2, dlen 2, elen 2.
pub const TXN_HEADER_LEN: u64 = 23;
/// Where the status byte sits in a transaction header (after tid and tlen).
pub const TXN_STATUS_OFFSET: u64 = 16;
/// Fixed part of a data record header: oid 8, tid 8, prev 8, tloc 8, vlen 2, plen 8.
pub const DATA_HEADER_LEN: u64 = 42;

/// Transaction status: committed, not packed.
pub const STATUS_NORMAL: u8 = b' ';
/// Transaction status: written by pack (its older records were removed).
pub const STATUS_PACKED: u8 = b'p';
/// Transaction status: checkpoint, voted but not finished — or finished, its
/// status byte queued until its data is durable (`flips.rs`); only at the end.
pub const STATUS_CHECKPOINT: u8 = b'c';
/// Transaction status: "uncertain", no longer written; skipped when read.
pub const STATUS_UNCERTAIN: u8 = b'u';

/// Largest position or length accepted from the file (2^56 bytes, 64 PiB); with
/// it, sums of two positions/lengths read from the file cannot overflow.
pub const MAX_POS: u64 = 1 << 56;
/// Largest pickle length accepted (1 TiB).
pub const MAX_PLEN: u64 = 1 << 40;

/// Read a big-endian u64 from the first 8 bytes of `b` (callers pass exact slices).
pub fn be_u64(b: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    for (dst, src) in raw.iter_mut().zip(b.iter()) {
        *dst = *src;
    }
    u64::from_be_bytes(raw)
}

fn be_u16(b: &[u8]) -> u16 {
    let mut raw = [0u8; 2];
    for (dst, src) in raw.iter_mut().zip(b.iter()) {
        *dst = *src;
    }
    u16::from_be_bytes(raw)
}

fn id8(b: &[u8]) -> [u8; 8] {
    let mut raw = [0u8; 8];
    for (dst, src) in raw.iter_mut().zip(b.iter()) {
        *dst = *src;
    }
    raw
}

/// The fixed 23-byte part of a transaction record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnHeader {
    pub tid: Tid,
    /// Length of the transaction record without the trailing 8-byte redundant length.
    pub tlen: u64,
    pub status: u8,
    pub ulen: u16,
    pub dlen: u16,
    pub elen: u16,
}

impl TxnHeader {
    pub fn parse(b: &[u8; TXN_HEADER_LEN as usize]) -> TxnHeader {
        TxnHeader {
            tid: Tid(id8(&b[0..8])),
            tlen: be_u64(&b[8..16]),
            status: b[16],
            ulen: be_u16(&b[17..19]),
            dlen: be_u16(&b[19..21]),
            elen: be_u16(&b[21..23]),
        }
    }

    pub fn encode(&self) -> [u8; TXN_HEADER_LEN as usize] {
        let mut b = [0u8; TXN_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&self.tid.0);
        b[8..16].copy_from_slice(&self.tlen.to_be_bytes());
        b[16] = self.status;
        b[17..19].copy_from_slice(&self.ulen.to_be_bytes());
        b[19..21].copy_from_slice(&self.dlen.to_be_bytes());
        b[21..23].copy_from_slice(&self.elen.to_be_bytes());
        b
    }

    /// Header length including user, description and extension.
    pub fn header_len(&self) -> u64 {
        TXN_HEADER_LEN + u64::from(self.ulen) + u64::from(self.dlen) + u64::from(self.elen)
    }
}

/// The fixed 42-byte part of a data record, plus the back-pointer that follows
/// it when `plen == 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataHeader {
    pub oid: Oid,
    pub tid: Tid,
    /// Position of the previous record of this oid, 0 if none.
    pub prev: u64,
    /// Position of the transaction header of this record.
    pub tloc: u64,
    /// Length of the pickle; 0 means an 8-byte back-pointer follows instead.
    pub plen: u64,
    /// The back-pointer (only meaningful when `plen == 0`; 0 = no data, i.e. a
    /// deletion or an undone creation).
    pub back: u64,
}

impl DataHeader {
    /// Parse the 42 fixed bytes (the back-pointer is read separately).
    pub fn parse(b: &[u8; DATA_HEADER_LEN as usize], pos: u64) -> FsResult<DataHeader> {
        let vlen = be_u16(&b[32..34]);
        if vlen != 0 {
            return Err(FsError::corrupt(
                pos,
                format!("data record with version length {vlen} (versions are not supported)"),
            ));
        }
        let h = DataHeader {
            oid: Oid(id8(&b[0..8])),
            tid: Tid(id8(&b[8..16])),
            prev: be_u64(&b[16..24]),
            tloc: be_u64(&b[24..32]),
            plen: be_u64(&b[34..42]),
            back: 0,
        };
        if h.prev > MAX_POS || h.tloc > MAX_POS || h.plen > MAX_PLEN {
            return Err(FsError::corrupt(pos, "implausible data record header"));
        }
        Ok(h)
    }

    /// Parse a data record header from the bytes read at `pos`: the 42 fixed
    /// bytes, then the back-pointer when `plen == 0`. `b` may be shorter (the
    /// file ended) or longer (bytes after the header). `expect` checks the oid
    /// (FileStorage's `CorruptedDataError` on mismatch).
    pub fn parse_read(b: &[u8], pos: u64, expect: Option<Oid>) -> FsResult<DataHeader> {
        let Some(fixed) = b
            .get(..DATA_HEADER_LEN as usize)
            .and_then(|f| <&[u8; DATA_HEADER_LEN as usize]>::try_from(f).ok())
        else {
            return Err(FsError::corrupt(
                pos,
                "file ends inside a data record header",
            ));
        };
        let mut h = DataHeader::parse(fixed, pos)?;
        if let Some(oid) = expect {
            if h.oid != oid {
                return Err(FsError::corrupt(
                    pos,
                    format!("expected a record of oid {oid}, found oid {}", h.oid),
                ));
            }
        }
        if h.plen == 0 {
            let Some(back) = b.get(DATA_HEADER_LEN as usize..DATA_HEADER_LEN as usize + 8) else {
                return Err(FsError::corrupt(pos, "file ends inside a back-pointer"));
            };
            h.back = be_u64(back);
            if h.back > MAX_POS {
                return Err(FsError::corrupt(pos, "implausible back-pointer"));
            }
        }
        Ok(h)
    }

    /// The 42 fixed bytes (vlen always 0).
    pub fn encode(&self) -> [u8; DATA_HEADER_LEN as usize] {
        let mut b = [0u8; DATA_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&self.oid.0);
        b[8..16].copy_from_slice(&self.tid.0);
        b[16..24].copy_from_slice(&self.prev.to_be_bytes());
        b[24..32].copy_from_slice(&self.tloc.to_be_bytes());
        b[34..42].copy_from_slice(&self.plen.to_be_bytes());
        b
    }

    /// Whole record length: header plus pickle, or header plus back-pointer.
    pub fn record_len(&self) -> u64 {
        DATA_HEADER_LEN + if self.plen == 0 { 8 } else { self.plen }
    }
}

/// Append a complete data record (header and pickle or back-pointer) to `out`.
pub fn encode_data_record(out: &mut Vec<u8>, h: &DataHeader, data: Option<&[u8]>) {
    let mut h = h.clone();
    match data {
        Some(d) if !d.is_empty() => {
            h.plen = d.len() as u64;
            out.extend_from_slice(&h.encode());
            out.extend_from_slice(d);
        }
        _ => {
            h.plen = 0;
            out.extend_from_slice(&h.encode());
            out.extend_from_slice(&h.back.to_be_bytes());
        }
    }
}

/// A transaction header with its user, description and extension bytes.
pub type TxnHeaderFull = (TxnHeader, Vec<u8>, Vec<u8>, Vec<u8>);

/// How many bytes [`Reader::data_record`] reads at a record's position in one
/// `pread`: the 42-byte header and a pickle of up to 982 bytes, which covers
/// most ZODB objects; longer pickles take a second read. Bigger reads cost more
/// in copying than the second `pread` they save (measured: 4 KiB reads made
/// random loads slower than two small reads).
pub const RECORD_READ: usize = 1024;

/// A data record's first [`RECORD_READ`] bytes (fewer at the end of the file),
/// filled by [`Reader::data_record`]; lives on the caller's stack.
pub struct RecordBuf {
    bytes: [u8; RECORD_READ],
    /// How many bytes of `bytes` were read.
    valid: usize,
    /// Where they were read.
    pos: u64,
}

impl RecordBuf {
    pub fn new() -> Self {
        RecordBuf {
            bytes: [0u8; RECORD_READ],
            valid: 0,
            pos: 0,
        }
    }
}

impl Default for RecordBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// Positioned reads of Data.fs structures from a shared file (`pread`, no seek,
/// so many readers can use one handle at once).
pub struct Reader<'a> {
    pub file: &'a File,
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a File) -> Self {
        Reader { file }
    }

    /// Read exactly `len` bytes at `pos`, or `Corrupt` if the file ends first.
    pub fn read_exact(&self, pos: u64, len: u64) -> FsResult<Vec<u8>> {
        let len_usize = usize::try_from(len)
            .map_err(|_| FsError::corrupt(pos, format!("length {len} too large")))?;
        if len > (1u64 << 40) {
            return Err(FsError::corrupt(pos, format!("implausible length {len}")));
        }
        let mut buf = vec![0u8; len_usize];
        let n = self.read_upto(pos, &mut buf)?;
        if n != len_usize {
            return Err(FsError::corrupt(
                pos,
                format!("file ends after {n} of {len} bytes"),
            ));
        }
        Ok(buf)
    }

    /// Read up to `buf.len()` bytes at `pos`; returns how many were read (less
    /// only at end of file).
    pub fn read_upto(&self, pos: u64, buf: &mut [u8]) -> FsResult<usize> {
        if pos > MAX_POS {
            return Err(FsError::corrupt(pos, "position beyond any plausible file"));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = pos
                .checked_add(done as u64)
                .ok_or_else(|| FsError::corrupt(pos, "position overflow"))?;
            let slice = buf.get_mut(done..).unwrap_or_default();
            match self.file.read_at(slice, at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FsError::Io(e)),
            }
        }
        Ok(done)
    }

    pub fn read_u64(&self, pos: u64) -> FsResult<u64> {
        Ok(be_u64(&self.read_exact(pos, 8)?))
    }

    /// The 23-byte transaction header at `pos`.
    pub fn txn_header(&self, pos: u64) -> FsResult<TxnHeader> {
        let mut b = [0u8; TXN_HEADER_LEN as usize];
        let n = self.read_upto(pos, &mut b)?;
        if n != b.len() {
            return Err(FsError::corrupt(
                pos,
                "file ends inside a transaction header",
            ));
        }
        let h = TxnHeader::parse(&b);
        if h.tlen > MAX_POS {
            return Err(FsError::corrupt(pos, "implausible transaction length"));
        }
        Ok(h)
    }

    /// The transaction header at `pos` with user, description and extension.
    pub fn txn_header_full(&self, pos: u64) -> FsResult<TxnHeaderFull> {
        let h = self.txn_header(pos)?;
        let rest = self.read_exact(pos + TXN_HEADER_LEN, h.header_len() - TXN_HEADER_LEN)?;
        let u = usize::from(h.ulen);
        let d = usize::from(h.dlen);
        let user = rest.get(..u).unwrap_or_default().to_vec();
        let desc = rest.get(u..u + d).unwrap_or_default().to_vec();
        let ext = rest.get(u + d..).unwrap_or_default().to_vec();
        Ok((h, user, desc, ext))
    }

    /// The data record header at `pos`, with its back-pointer when `plen == 0`.
    /// `expect` checks the oid (FileStorage's `CorruptedDataError` on mismatch).
    pub fn data_header(&self, pos: u64, expect: Option<Oid>) -> FsResult<DataHeader> {
        let mut b = [0u8; DATA_HEADER_LEN as usize + 8];
        let n = self.read_upto(pos, &mut b)?;
        DataHeader::parse_read(b.get(..n).unwrap_or_default(), pos, expect)
    }

    /// The data record header at `pos` (checked like [`Reader::data_header`]),
    /// read with up to [`RECORD_READ`] bytes of the record into `buf` in one
    /// `pread`, so [`Reader::record_data`] needs no second read for a small
    /// pickle.
    pub fn data_record(
        &self,
        pos: u64,
        expect: Option<Oid>,
        buf: &mut RecordBuf,
    ) -> FsResult<DataHeader> {
        buf.valid = self.read_upto(pos, &mut buf.bytes)?;
        buf.pos = pos;
        DataHeader::parse_read(buf.bytes.get(..buf.valid).unwrap_or_default(), pos, expect)
    }

    /// The pickle (`plen > 0`) of the record whose header `h` was read into
    /// `buf` by [`Reader::data_record`]: copied from `buf` when it holds all of
    /// it, else read whole.
    pub fn record_data(&self, buf: &RecordBuf, h: &DataHeader) -> FsResult<Bytes> {
        let start = DATA_HEADER_LEN as usize;
        let in_buf = usize::try_from(h.plen)
            .ok()
            .and_then(|plen| start.checked_add(plen))
            .filter(|end| *end <= buf.valid)
            .and_then(|end| buf.bytes.get(start..end));
        match in_buf {
            Some(pickle) => Ok(Bytes::copy_from_slice(pickle)),
            None => Ok(Bytes::from(self.data(buf.pos, h)?)),
        }
    }

    /// The pickle of the record at `pos` whose header is `h` (`plen > 0`).
    pub fn data(&self, pos: u64, h: &DataHeader) -> FsResult<Vec<u8>> {
        self.read_exact(pos + DATA_HEADER_LEN, h.plen)
    }

    /// Follow back-pointers from `back` to the record holding the data.
    /// Returns (data, tid of the record holding it, its position); `None` data
    /// when the chain ends in a zero back-pointer (FileStorage `_loadBack_impl`
    /// with `fail=False`). A zero `back` itself gives `Ok(None)`.
    pub fn load_back(&self, oid: Oid, mut back: u64) -> FsResult<Option<(Vec<u8>, Tid, u64)>> {
        let mut hops = 0u32;
        loop {
            if back == 0 {
                return Ok(None);
            }
            let h = self.data_header(back, Some(oid))?;
            if h.plen > 0 {
                return Ok(Some((self.data(back, &h)?, h.tid, back)));
            }
            if h.back >= back {
                return Err(FsError::corrupt(
                    back,
                    "back-pointer does not point backwards",
                ));
            }
            back = h.back;
            hops += 1;
            if hops > 1_000_000 {
                return Err(FsError::corrupt(back, "back-pointer loop"));
            }
        }
    }

    /// The record of `oid` written by transaction `tid`, found by walking the
    /// oid's `prev` chain back from `start` — the fast path of FileStorage's
    /// `_txn_find` + `_data_find` (the last record of an oid in a transaction is
    /// the one the chain passes through). `None` when the chain does not lead
    /// there (missing, packed `prev` pointers, damage): callers fall back to the
    /// search by transaction.
    pub fn find_in_chain(&self, start: u64, oid: Oid, tid: Tid) -> Option<u64> {
        let mut pos = start;
        for _ in 0..100_000 {
            if pos == 0 {
                return None;
            }
            let h = self.data_header(pos, Some(oid)).ok()?;
            if h.tid == tid {
                return Some(pos);
            }
            if h.tid < tid || h.prev >= pos {
                return None;
            }
            pos = h.prev;
        }
        None
    }

    /// `_data_find`'s verdict on a found record: it is the back-pointer target
    /// when it is itself a back-pointer, when no data is given, or when its data
    /// equals `data`; else 0.
    pub fn matching_record(&self, pos: u64, data: Option<&[u8]>) -> FsResult<u64> {
        let h = self.data_header(pos, None)?;
        if h.plen == 0 {
            return Ok(pos);
        }
        match data {
            None => Ok(pos),
            Some(d) if h.plen == d.len() as u64 && self.data(pos, &h)? == d => Ok(pos),
            Some(_) => {
                tracing::error!("mismatch between data and backpointer at {pos}");
                Ok(0)
            }
        }
    }
}

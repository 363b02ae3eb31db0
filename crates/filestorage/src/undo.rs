//! Transactional undo (FileStorage `undo`, `_txn_undo_write`,
//! `_transactionalUndoRecord`) and the undo log (`undoLog`, `UndoSearch`).
//!
//! Undo writes back-pointer records: to the undone record's previous revision,
//! or a zero back-pointer when the undone record created the object. When a
//! later transaction changed the object to something else, FileStorage would try
//! application conflict resolution; zeoraid runs no application code, so that
//! case is an `UndoError` ("Some data were modified by a later transaction").

use bytes::Bytes;
use zeoraid_storage::{Oid, StorageError, Tid, TransactionMeta, UndoEntry, UndoFilter};

use crate::commit::TxnBuilder;
use crate::error::{FsError, FsResult};
use crate::format::{Reader, FILE_HEADER_LEN, STATUS_NORMAL, STATUS_PACKED};
use crate::storage::FileStorage;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (Python's `encodebytes(tid).rstrip()`).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        let sym = |shift: u32| char::from(B64[((n >> shift) & 63) as usize]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(0) } else { '=' });
    }
    out
}

/// Decode standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0u32;
    let mut out = Vec::new();
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    Some(out)
}

/// The undo-log id of a transaction.
pub fn undo_id(tid: Tid) -> Bytes {
    Bytes::from(base64_encode(&tid.0))
}

impl TxnBuilder<'_> {
    /// `_undoDataInfo`: (tid, data pointer, data) of the current record of `oid`,
    /// from this transaction when it already wrote one, else from the file.
    fn undo_data_info(&self, oid: Oid, ipos: u64) -> FsResult<(Tid, u64, Option<Vec<u8>>)> {
        if let Some(t) = self.tindex.get(&oid) {
            return Ok(match &t.data {
                Some(d) => (self.tid, t.pos, Some(d.to_vec())),
                None => (self.tid, t.back, None),
            });
        }
        if ipos == 0 {
            return Err(FsError::undo("Invalid undo transaction id", Some(oid)));
        }
        let h = self.reader.data_header(ipos, None)?;
        if h.oid != oid {
            return Err(FsError::undo("Invalid undo transaction id", Some(oid)));
        }
        if h.plen > 0 {
            Ok((h.tid, ipos, Some(self.reader.data(ipos, &h)?)))
        } else {
            Ok((h.tid, h.back, None))
        }
    }

    /// `_loadBack_impl(oid, pos)` with `fail=True`: data at or behind `pos`,
    /// looking into this transaction's records too.
    fn load_back_strict(&self, oid: Oid, pos: u64) -> FsResult<Vec<u8>> {
        if pos >= self.tpos {
            if let Some(t) = self.tindex.values().find(|t| t.pos == pos) {
                return match &t.data {
                    Some(d) => Ok(d.to_vec()),
                    None => self.load_back_strict(oid, t.back),
                };
            }
        }
        match self.reader.load_back(oid, pos) {
            Ok(Some((data, _, _))) => Ok(data),
            Ok(None) => Err(FsError::undo("_loadBack() failed", Some(oid))),
            Err(FsError::Corrupt { .. }) => Err(FsError::undo("_loadBack() failed", Some(oid))),
            Err(e) => Err(e),
        }
    }

    /// `_transactionalUndoRecord`: the back-pointer to write for undoing the
    /// record of `oid` at `pos` whose previous record is `pre`, and the prev
    /// position for the new record.
    fn undo_record(&self, oid: Oid, pos: u64, pre: u64) -> FsResult<(u64, u64)> {
        let tpos = self.tindex.get(&oid).map(|t| t.pos).unwrap_or(0);
        let ipos = self.committed_pos(oid);
        let tipos = if tpos != 0 { tpos } else { ipos };
        let mut copy = true;
        if tipos != pos {
            let (_ctid, cdataptr, current) = self.undo_data_info(oid, ipos)?;
            if cdataptr != pos {
                let to_undo = self.load_back_strict(oid, pos)?;
                let current = match current {
                    Some(d) if !d.is_empty() => d,
                    _ => self.load_back_strict(oid, cdataptr)?,
                };
                if to_undo != current {
                    copy = false;
                    if pre == 0 {
                        return Err(FsError::undo(
                            "Can't undo an add transaction followed by conflicting transactions.",
                            Some(oid),
                        ));
                    }
                }
            }
        }
        if pre == 0 {
            return Ok((0, ipos));
        }
        if copy {
            return Ok((pre, ipos));
        }
        // FileStorage would try application conflict resolution here.
        self.load_back_strict(oid, pre)?;
        Err(FsError::undo(
            "Some data were modified by a later transaction",
            Some(oid),
        ))
    }

    /// `undo(transaction_id)` + `_txn_undo_write`.
    pub(crate) fn undo(&mut self, id: &[u8]) -> FsResult<()> {
        let tid = base64_decode(id)
            .and_then(|raw| Tid::from_slice(&raw))
            .ok_or_else(|| FsError::undo("Invalid transaction id", None))?;
        let tpos = FileStorage::txn_find(self.reader.file, self.st.pos, tid)?
            .ok_or_else(|| FsError::undo("Invalid transaction id", None))?;
        let th = self.reader.txn_header(tpos)?;
        if th.status != STATUS_NORMAL {
            return Err(FsError::undo("non-undoable transaction", None));
        }
        let tend = tpos + th.tlen;
        let mut pos = tpos + th.header_len();
        let mut failures: Vec<(Oid, FsError)> = Vec::new();
        while pos < tend {
            let h = self.reader.data_header(pos, None)?;
            failures.retain(|(o, _)| *o != h.oid);
            match self.undo_record(h.oid, pos, h.prev) {
                Ok((back, ipos)) => {
                    if back != 0 {
                        if let Ok(Some((_, userial, _))) = self.reader.load_back(h.oid, back) {
                            self.add_blob_copy(h.oid, userial);
                        }
                    }
                    self.push(h.oid, ipos, None, back);
                    if !self.undone.contains(&h.oid) {
                        self.undone.push(h.oid);
                    }
                }
                Err(e @ FsError::Storage(StorageError::Undo { .. })) => failures.push((h.oid, e)),
                Err(e) => return Err(e),
            }
            pos += h.record_len();
            if pos > tend {
                return Err(FsError::undo("non-undoable transaction", None));
            }
        }
        if !failures.is_empty() {
            let list = failures
                .into_iter()
                .map(|(oid, e)| match e {
                    FsError::Storage(StorageError::Undo { reason, oid }) => (reason, oid),
                    other => (other.to_string(), Some(oid)),
                })
                .collect();
            return Err(FsError::Storage(StorageError::MultipleUndo(list)));
        }
        Ok(())
    }
}

impl FileStorage {
    /// FileStorage `undoLog(first, last, filter)` with `last` already an index
    /// (exclusive): entries newest first; only `' '` transactions, stopping at
    /// the first packed one.
    pub fn undo_log(
        &self,
        first: u64,
        last: u64,
        filter: Option<&UndoFilter>,
    ) -> FsResult<Vec<UndoEntry>> {
        self.check_open()?;
        let (file, mut pos) = {
            let st = self.st();
            (st.file.clone(), st.pos)
        };
        self.write_flips_before(pos)?;
        let r = Reader::new(&file);
        let mut i = 0u64;
        let mut out = Vec::new();
        while i < last && pos > FILE_HEADER_LEN {
            let tl = r.read_u64(
                pos.checked_sub(8)
                    .ok_or_else(|| FsError::corrupt(pos, "position before the file header"))?,
            )?;
            pos = pos
                .checked_sub(8)
                .and_then(|p| p.checked_sub(tl))
                .filter(|p| *p >= FILE_HEADER_LEN)
                .ok_or_else(|| FsError::corrupt(pos, "bad redundant transaction length"))?;
            let (h, user, desc, ext) = r.txn_header_full(pos)?;
            if h.status == STATUS_PACKED {
                break;
            }
            if h.status != STATUS_NORMAL {
                continue;
            }
            let entry = UndoEntry {
                id: undo_id(h.tid),
                tid: h.tid,
                meta: TransactionMeta {
                    user: Bytes::from(user),
                    description: Bytes::from(desc),
                    extension: Bytes::from(ext),
                },
                size: tl,
            };
            if filter.is_none_or(|f| f(&entry)) {
                if i >= first {
                    out.push(entry);
                }
                i += 1;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_python() {
        // base64.encodebytes(p64(1)).rstrip()
        assert_eq!(base64_encode(&[0, 0, 0, 0, 0, 0, 0, 1]), "AAAAAAAAAAE=");
        assert_eq!(
            base64_encode(b"\x03\xea\x5b\xc5\x3c\xc6\xce\x11"),
            "A+pbxTzGzhE="
        );
        for raw in [[0u8; 8], [255; 8], [1, 2, 3, 4, 5, 6, 7, 8]] {
            assert_eq!(
                base64_decode(base64_encode(&raw).as_bytes()).as_deref(),
                Some(&raw[..])
            );
        }
        assert!(base64_decode(b"AA*A").is_none());
    }
}

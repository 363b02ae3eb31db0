//! Undo-log ids as FileStorage makes them: the tid in standard base64 without the
//! trailing newline (`base64.encodebytes(tid).rstrip()`), so that ids look alike
//! whichever storage hands them out.

use zeoraid_storage::Tid;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The undo id of a transaction.
pub fn encode(tid: Tid) -> Vec<u8> {
    let bytes = tid.as_bytes();
    let mut out = Vec::with_capacity(12);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

/// The tid of an undo id, `None` when it is not one.
pub fn decode(id: &[u8]) -> Option<Tid> {
    let id = id.strip_suffix(b"\n").unwrap_or(id);
    if id.len() != 12 || id[11] != b'=' || id[10] == b'=' {
        return None;
    }
    let mut bits: u64 = 0;
    let mut acc: u128 = 0;
    for &c in &id[..11] {
        let v = ALPHABET.iter().position(|&a| a == c)? as u128;
        acc = (acc << 6) | v;
        bits += 6;
    }
    // 66 bits: 64 of tid and two padding zero bits.
    if bits != 66 || acc & 0b11 != 0 {
        return None;
    }
    Some(Tid::from_u64((acc >> 2) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python() {
        // base64.encodebytes(p64(1)).rstrip() == b'AAAAAAAAAAE='
        assert_eq!(encode(Tid::from_u64(1)), b"AAAAAAAAAAE=".to_vec());
        // base64.encodebytes(bytes.fromhex('040d36e91e8a0466')).rstrip()
        assert_eq!(
            encode(Tid::from_u64(0x040d_36e9_1e8a_0466)),
            b"BA026R6KBGY=".to_vec()
        );
    }

    #[test]
    fn round_trips() {
        for v in [0u64, 1, 0x040d_36e9_1e8a_0466, u64::MAX] {
            let t = Tid::from_u64(v);
            assert_eq!(decode(&encode(t)), Some(t));
        }
        assert_eq!(decode(b"not an id"), None);
    }
}

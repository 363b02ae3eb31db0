//! Framing: every ZEO message, the handshake included, is a u32 big-endian length
//! followed by that many payload bytes.
//!
//! [`FrameDecoder`] works on a `BytesMut` read buffer and has the same shape as
//! `tokio_util::codec::Decoder` (`Ok(None)` = need more bytes), so a tokio codec is a
//! two-line wrapper around it; this crate stays free of I/O dependencies.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Result, WireError};

/// Size of the length prefix.
pub const LENGTH_PREFIX_SIZE: usize = 4;

/// Largest payload accepted by default (ZEO itself has no limit besides u32).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 64 * 1024 * 1024;

/// Incremental frame decoder with a maximum payload size.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameDecoder {
    /// A decoder refusing payloads larger than `max_frame_size` bytes.
    pub fn new(max_frame_size: usize) -> Self {
        FrameDecoder { max_frame_size }
    }

    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Take one whole frame's payload off the front of `buf`.
    ///
    /// Returns `Ok(None)` (leaving `buf` untouched apart from reserving room for the
    /// rest of the frame) until the frame is complete. An oversized length prefix is
    /// an error before anything is reserved, so a hostile peer cannot make us
    /// allocate by announcing a huge frame.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>> {
        let Some(prefix) = buf.get(..LENGTH_PREFIX_SIZE) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; LENGTH_PREFIX_SIZE];
        len_bytes.copy_from_slice(prefix);
        let len = u32::from_be_bytes(len_bytes);
        let len = usize::try_from(len).map_err(|_| WireError::FrameTooLarge {
            len: u64::from(len),
            max: self.max_frame_size,
        })?;
        if len > self.max_frame_size {
            return Err(WireError::FrameTooLarge {
                len: len as u64,
                max: self.max_frame_size,
            });
        }
        let total = LENGTH_PREFIX_SIZE + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(LENGTH_PREFIX_SIZE);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// Append one frame (length prefix + payload) to `dst`.
///
/// Fails only if the payload does not fit a u32 length.
pub fn encode_frame(payload: &[u8], dst: &mut impl BufMut) -> Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| WireError::FrameTooLarge {
        len: payload.len() as u64,
        max: u32::MAX as usize,
    })?;
    dst.put_u32(len);
    dst.put_slice(payload);
    Ok(())
}

/// One frame as a fresh buffer.
pub fn frame_to_vec(payload: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(LENGTH_PREFIX_SIZE + payload.len());
    encode_frame(payload, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_partial_input() {
        let mut wire = frame_to_vec(b"Z5").unwrap();
        encode_frame(b"", &mut wire).unwrap();
        encode_frame(b"hello", &mut wire).unwrap();
        assert_eq!(&wire[..6], b"\x00\x00\x00\x02Z5");

        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        // Feed one byte at a time: frames appear exactly when complete.
        for b in wire {
            buf.put_u8(b);
            while let Some(frame) = dec.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![
                Bytes::from_static(b"Z5"),
                Bytes::new(),
                Bytes::from_static(b"hello")
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_prefix_is_rejected_before_reserving() {
        let mut dec = FrameDecoder::new(10);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 11][..]);
        let cap = buf.capacity();
        assert_eq!(
            dec.decode(&mut buf),
            Err(WireError::FrameTooLarge { len: 11, max: 10 })
        );
        assert_eq!(buf.capacity(), cap);

        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff, 1][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn exact_max_is_accepted() {
        let mut dec = FrameDecoder::new(3);
        let mut buf = BytesMut::from(&frame_to_vec(b"abc").unwrap()[..]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(Bytes::from_static(b"abc"))
        );
    }

    #[test]
    fn short_prefix_waits() {
        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 2);
    }
}

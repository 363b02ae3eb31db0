//! Any byte stream, fed in two pieces, through the frame decoder.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use zeoraid_wire::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(split);
    let mut dec = FrameDecoder::new(4096);
    let mut buf = BytesMut::new();
    for chunk in [a, b] {
        buf.extend_from_slice(chunk);
        while let Ok(Some(frame)) = dec.decode(&mut buf) {
            assert!(frame.len() <= 4096);
        }
    }
});

//! Any bytes through the msgpack decoder and the message decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeoraid_wire::{decode_message, msgpack, Encoding};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = msgpack::decode(data) {
        // Whatever decodes must re-encode (msgpack values are all encodable).
        let _ = msgpack::encode(&value);
    }
    let _ = decode_message(data, Encoding::Msgpack);
});

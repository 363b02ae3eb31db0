//! Any bytes through the pickle decoder, the reference scanner and the message
//! decoder: errors are fine, panics, hangs and memory blow-ups are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeoraid_wire::{decode_message, pickle, Encoding};

fuzz_target!(|data: &[u8]| {
    let _ = pickle::decode(data);
    let _ = pickle::persistent_references(data);
    let _ = decode_message(data, Encoding::Pickle);
});

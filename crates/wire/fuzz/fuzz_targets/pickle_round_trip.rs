//! Whatever the pickle decoder accepts and the encoder can encode must decode back
//! to the same value (the encoder's output is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeoraid_wire::pickle;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = pickle::decode(data) else { return };
    let Ok(bytes) = pickle::encode(&value) else { return };
    let back = pickle::decode(&bytes).expect("own output decodes");
    // NaN breaks equality; compare the canonical bytes instead.
    assert_eq!(pickle::encode(&back).ok(), Some(bytes));
});

//! The pickle codec: an encoder byte-identical to ZEO's message encoder (protocol 3,
//! fast mode) and a tolerant, bounded decoder for protocols 0–5 that also reads
//! ZODB object records (see [`references`] for the pack/GC use).

pub mod decode;
pub mod encode;
pub mod opcodes;
pub mod references;

pub use crate::value::{ObjectKind, PickledObject, Value};
pub use decode::{
    decode, decode_prefix, decode_with_limits, unpickle_prefix, DecodeLimits, Unpickled, Unpickler,
};
pub use encode::{encode, encode_into, encode_value_into};
pub use references::{persistent_references, persistent_references_with_limits, reference_oid};

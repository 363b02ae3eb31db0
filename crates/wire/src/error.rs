//! `WireError`: everything that can go wrong turning bytes into frames, values and
//! messages (and back). Decoding untrusted input never panics; it returns one of these.

use thiserror::Error;

/// A decoding or encoding failure in the wire layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// A frame's length prefix announces more than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge { len: u64, max: usize },

    /// The input ended in the middle of an opcode, a length or a payload.
    #[error("truncated input: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },

    /// A pickle opcode byte this decoder does not know.
    #[error("unknown pickle opcode 0x{opcode:02x} at offset {offset}")]
    UnknownOpcode { opcode: u8, offset: usize },

    /// A pickle opcode we recognise but refuse (out-of-band buffers).
    #[error("unsupported pickle opcode {name} at offset {offset}")]
    UnsupportedOpcode { name: &'static str, offset: usize },

    /// PROTO announced a protocol newer than 5.
    #[error("unsupported pickle protocol {0}")]
    UnsupportedProtocol(u8),

    /// An opcode needed more stack items than there were (above the current mark).
    #[error("pickle stack underflow at offset {offset}")]
    StackUnderflow { offset: usize },

    /// An opcode needing a MARK found none.
    #[error("pickle opcode at offset {offset} needs a MARK but none is set")]
    MissingMark { offset: usize },

    /// The pickle's structure is wrong (e.g. APPEND onto a non-list, odd SETITEMS count).
    #[error("malformed pickle at offset {offset}: {reason}")]
    Malformed { offset: usize, reason: String },

    /// GET/BINGET of a memo slot never stored.
    #[error("pickle memo key {key} not found (offset {offset})")]
    MemoMissing { key: u64, offset: usize },

    /// The pickle ended without STOP.
    #[error("pickle has no STOP opcode")]
    MissingStop,

    /// Bytes after the end of a value where the whole input should be one value.
    #[error("{count} trailing bytes after the encoded value")]
    TrailingBytes { count: usize },

    /// A text or str payload is not valid UTF-8 (Python would raise UnicodeDecodeError).
    #[error("invalid UTF-8 in string at offset {offset}")]
    InvalidUtf8 { offset: usize },

    /// A decoder limit (depth, value count, bytes, memo size, digits) was exceeded.
    #[error("decoder limit exceeded: {what} (limit {limit})")]
    LimitExceeded { what: &'static str, limit: u64 },

    /// msgpack input rmpv could not parse.
    #[error("invalid msgpack: {0}")]
    Msgpack(String),

    /// A value kind that cannot be represented in the target encoding
    /// (opaque pickle objects, sets, ints beyond 64 bits in msgpack, …).
    #[error("cannot encode {what}")]
    Unencodable { what: String },

    /// The decoded value is not a ZEO message `(msgid, flag, name, args)`.
    #[error("not a ZEO message: {0}")]
    BadMessage(String),

    /// An error reply payload does not have the shape ZEO sends.
    #[error("malformed error payload for {class_name}: {reason}")]
    BadErrorPayload { class_name: String, reason: String },

    /// A persistent reference in an object record has a shape `referencesf` rejects.
    #[error("unexpected persistent reference: {0}")]
    BadReference(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = WireError> = std::result::Result<T, E>;

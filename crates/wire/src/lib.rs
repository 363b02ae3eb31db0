//! The wire layer: how ZEO 5 messages look on the socket.
//!
//! Frames, the pickle codec (protocol 3 fast mode, byte-identical to ZEO's encoder;
//! tolerant decoder), msgpack, the message model and error payloads. No I/O here:
//! everything works on byte slices so it can be fuzzed and tested in isolation.
//!
//! * [`frame`] — u32 big-endian length prefix, incremental [`FrameDecoder`].
//! * [`handshake`] — `Z5` / `M5` / `ruok`.
//! * [`value`] — [`Value`], the one data model for both encodings.
//! * [`pickle`] — encoder (byte-identical to ZEO) and bounded tolerant decoder;
//!   [`pickle::persistent_references`] for pack GC.
//! * [`msgpack`] — the `M5` codec on the same model.
//! * [`message`] — [`Message`] ⇄ `(msgid, flag, name, args)`, [`Encoding`].
//! * [`exception`] — [`ErrorPayload`]: error replies as ZEO 6 sends them.
//! * [`extension`] — transaction extension dicts: stored bytes ⇄ wire dict.
//! * [`error`] — [`WireError`].

pub mod error;
pub mod exception;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod msgpack;
pub mod pickle;
mod repr;
pub mod value;

pub use error::WireError;
pub use exception::{ConflictDetails, ErrorPayload};
pub use extension::ExtensionError;
pub use frame::{encode_frame, FrameDecoder, DEFAULT_MAX_FRAME_SIZE};
pub use handshake::ClientHandshake;
pub use message::{decode_message, encode_message, Encoding, Message, MessageKind};
pub use pickle::DecodeLimits;
pub use repr::float_repr;
pub use value::{ObjectKind, PickledObject, Value};

//! The wire layer: how ZEO 5 messages look on the socket.
//!
//! Frames, the pickle codec (protocol 3 fast mode, byte-identical to ZEO's encoder;
//! tolerant decoder), msgpack, the message model and error payloads. No I/O here:
//! everything works on byte slices so it can be fuzzed and tested in isolation.

//! The handshake: the server announces `Z5` (pickle) or `M5` (msgpack) in the first
//! frame; the client answers with a protocol string of its own, or `ruok` to ask
//! for a JSON status and have the connection closed.
//!
//! The server follows the *client's* letter (a `Z5` answer to an `M5` server gets
//! pickle), and rejects any version other than `5` by closing silently.

use crate::message::Encoding;

/// The only protocol version ZEO 5/6 speak.
pub const PROTOCOL_VERSION: &[u8] = b"5";

/// The status-probe handshake payload.
pub const RUOK: &[u8] = b"ruok";

/// Pickle protocol string.
pub const Z5: &[u8] = b"Z5";

/// msgpack protocol string.
pub const M5: &[u8] = b"M5";

/// The protocol string a server sends first.
pub fn server_announcement(encoding: Encoding) -> &'static [u8] {
    match encoding {
        Encoding::Pickle => Z5,
        Encoding::Msgpack => M5,
    }
}

/// What a client's first frame asks the server for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHandshake {
    /// Speak protocol 5 with this encoding.
    Protocol(Encoding),
    /// `ruok`: send the JSON status and close.
    Ruok,
    /// Anything else (e.g. `Z4`, `Z3101`): ZEO logs "bad handshake" and closes.
    Unsupported(Vec<u8>),
}

/// Interpret the client's handshake frame, as `ServerProtocol.finish_connection` does.
pub fn parse_client_handshake(payload: &[u8]) -> ClientHandshake {
    if payload == RUOK {
        return ClientHandshake::Ruok;
    }
    match payload.split_first() {
        Some((&letter, version)) if version == PROTOCOL_VERSION => {
            match Encoding::from_letter(letter) {
                Some(encoding) => ClientHandshake::Protocol(encoding),
                None => ClientHandshake::Unsupported(payload.to_vec()),
            }
        }
        _ => ClientHandshake::Unsupported(payload.to_vec()),
    }
}

/// The client's side: given the server's announcement, the protocol string to
/// answer with and the encoding to use, or `None` if ZEO's client would give up.
///
/// Mirrors ZEO: `version = min(server_version, b'5')` as a *bytes* comparison, so
/// `Z6` is answered with `Z5` but `Z10` (`b'10' < b'5'`) or `Z4` are rejected.
pub fn client_reply(announcement: &[u8]) -> Option<(Vec<u8>, Encoding)> {
    let (&letter, server_version) = announcement.split_first()?;
    let encoding = Encoding::from_letter(letter)?;
    let version = server_version.min(PROTOCOL_VERSION);
    if version != PROTOCOL_VERSION {
        return None;
    }
    let mut reply = vec![letter];
    reply.extend_from_slice(version);
    Some((reply, encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side() {
        assert_eq!(
            parse_client_handshake(b"Z5"),
            ClientHandshake::Protocol(Encoding::Pickle)
        );
        assert_eq!(
            parse_client_handshake(b"M5"),
            ClientHandshake::Protocol(Encoding::Msgpack)
        );
        assert_eq!(parse_client_handshake(b"ruok"), ClientHandshake::Ruok);
        assert_eq!(
            parse_client_handshake(b"Z4"),
            ClientHandshake::Unsupported(b"Z4".to_vec())
        );
        assert_eq!(
            parse_client_handshake(b"Z3101"),
            ClientHandshake::Unsupported(b"Z3101".to_vec())
        );
        assert_eq!(
            parse_client_handshake(b""),
            ClientHandshake::Unsupported(vec![])
        );
        assert_eq!(
            parse_client_handshake(b"X5"),
            ClientHandshake::Unsupported(b"X5".to_vec())
        );
        assert_eq!(server_announcement(Encoding::Msgpack), b"M5");
    }

    #[test]
    fn client_side() {
        assert_eq!(
            client_reply(b"Z5"),
            Some((b"Z5".to_vec(), Encoding::Pickle))
        );
        assert_eq!(
            client_reply(b"M5"),
            Some((b"M5".to_vec(), Encoding::Msgpack))
        );
        assert_eq!(
            client_reply(b"Z6"),
            Some((b"Z5".to_vec(), Encoding::Pickle))
        );
        assert_eq!(client_reply(b"Z10"), None);
        assert_eq!(client_reply(b"Z4"), None);
        assert_eq!(client_reply(b""), None);
    }
}

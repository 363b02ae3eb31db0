//! ZConfig's stock datatypes (`boolean`, `integer`, `float`, `byte-size`,
//! `time-interval`, `socket-*-address`), with the same accepted spellings as
//! `ZConfig.datatypes`. Each converter returns the reason as a plain string; the
//! caller adds file and line.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `boolean`: yes/true/on and no/false/off, in any case.
pub fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!(
            "not a valid boolean value: '{value}' (use true/false, yes/no, on/off)"
        )),
    }
}

/// `integer`: a signed decimal integer (surrounding blanks allowed).
pub fn integer(value: &str) -> Result<i64, String> {
    let digits = value.trim();
    digits
        .strip_prefix('+')
        .unwrap_or(digits)
        .parse::<i64>()
        .map_err(|_| format!("not a valid integer: '{value}'"))
}

/// `float`: a decimal number.
pub fn float(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("not a valid number: '{value}'"))
}

/// A non-negative integer followed by one of `suffixes` (case-insensitive), or
/// by nothing (then the multiplier is 1). This is ZConfig's `SuffixMultiplier`.
fn suffix_multiplier(value: &str, suffixes: &[(&str, u64)], what: &str) -> Result<u64, String> {
    let bad = || format!("not a valid {what}: '{value}'");
    let lower = value.trim().to_ascii_lowercase();
    let (number, multiplier) = suffixes
        .iter()
        .find_map(|(suffix, m)| lower.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((lower.as_str(), 1));
    let number = number.trim();
    let number = number.strip_prefix('+').unwrap_or(number);
    let n: u64 = number.parse().map_err(|_| bad())?;
    n.checked_mul(multiplier).ok_or_else(bad)
}

/// `byte-size`: bytes, or a number with a `KB`, `MB` or `GB` suffix (powers of 1024).
pub fn byte_size(value: &str) -> Result<u64, String> {
    const SUFFIXES: &[(&str, u64)] = &[("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30)];
    suffix_multiplier(value, SUFFIXES, "byte size (e.g. 4096, 512KB, 20MB, 1GB)")
}

/// `time-interval`: seconds, or a number with an `s`, `m`, `h` or `d` suffix.
pub fn time_interval(value: &str) -> Result<Duration, String> {
    const SUFFIXES: &[(&str, u64)] = &[("s", 1), ("m", 60), ("h", 3600), ("d", 86400)];
    suffix_multiplier(value, SUFFIXES, "time interval (e.g. 30, 30s, 5m, 2h, 1d)")
        .map(Duration::from_secs)
}

/// Where to listen or connect: TCP host and port, or a Unix domain socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    /// `host` is lowercased; it is empty for "all interfaces" (a binding
    /// address given as `:port` or just `port`). IPv6 hosts have no brackets.
    Inet { host: String, port: u16 },
    /// Any value containing a `/` is a Unix socket path.
    Unix(PathBuf),
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Inet { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            SocketAddress::Inet { host, port } => write!(f, "{host}:{port}"),
            SocketAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Default host of `socket-binding-address` (all interfaces).
pub const BIND_ANY: &str = "";
/// Default host of `socket-connection-address`.
pub const CONNECT_DEFAULT_HOST: &str = "127.0.0.1";

/// `socket-binding-address` / `socket-connection-address`: `host:port`,
/// `[ipv6]:port`, `:port`, `port`, or a path (anything with a `/`). The host
/// defaults to `default_host`. Unlike ZConfig, a port is required for TCP
/// (ZConfig accepts a bare host name and only fails when binding).
pub fn socket_address(value: &str, default_host: &str) -> Result<SocketAddress, String> {
    if value.contains('/') {
        return Ok(SocketAddress::Unix(PathBuf::from(value)));
    }
    let port_number = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("not a valid port number in address '{value}'"))
    };
    let no_port =
        || format!("address '{value}' has no port (use host:port, :port or a socket path)");
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) => {
            if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                (inner, port_number(port)?)
            } else if host.contains(':') {
                // An unbracketed IPv6 address: the last part is not a port.
                return Err(no_port());
            } else if port.is_empty() {
                return Err(no_port());
            } else {
                (host, port_number(port)?)
            }
        }
        None => match port_number(value) {
            Ok(port) => ("", port),
            Err(_) if value.split_whitespace().count() == 1 => return Err(no_port()),
            Err(_) => return Err(format!("not a valid host name: '{value}'")),
        },
    };
    let host = if host.is_empty() { default_host } else { host };
    Ok(SocketAddress::Inet {
        host: host.to_ascii_lowercase(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_like_zconfig() {
        for v in ["yes", "TRUE", "On"] {
            assert_eq!(boolean(v), Ok(true));
        }
        for v in ["no", "False", "OFF"] {
            assert_eq!(boolean(v), Ok(false));
        }
        for v in ["1", "0", "y", "", "maybe"] {
            assert!(boolean(v).is_err(), "{v}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(byte_size("4096"), Ok(4096));
        assert_eq!(byte_size("20MB"), Ok(20 << 20));
        assert_eq!(byte_size("20mb"), Ok(20 << 20));
        assert_eq!(byte_size("512KB"), Ok(512 << 10));
        assert_eq!(byte_size("2GB"), Ok(2 << 30));
        assert_eq!(byte_size("20 MB"), Ok(20 << 20)); // int(" 20 ") in Python
        for v in ["20M", "1.5MB", "-1", "MB", "", "20TB", "20 B"] {
            assert!(byte_size(v).is_err(), "{v}");
        }
    }

    #[test]
    fn time_intervals() {
        assert_eq!(time_interval("30"), Ok(Duration::from_secs(30)));
        assert_eq!(time_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(time_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(time_interval("2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(time_interval("1d"), Ok(Duration::from_secs(86400)));
        for v in ["5 min", "1.5s", "s", "-3", "1w"] {
            assert!(time_interval(v).is_err(), "{v}");
        }
    }

    #[test]
    fn integers_and_floats() {
        assert_eq!(integer("100"), Ok(100));
        assert_eq!(integer("-5"), Ok(-5));
        assert!(integer("1e3").is_err());
        assert_eq!(float("0.5"), Ok(0.5));
        assert!(float("half").is_err());
    }

    fn inet(host: &str, port: u16) -> SocketAddress {
        SocketAddress::Inet {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn socket_addresses() {
        let c = CONNECT_DEFAULT_HOST;
        assert_eq!(socket_address("8100", c), Ok(inet("127.0.0.1", 8100)));
        assert_eq!(socket_address(":8100", BIND_ANY), Ok(inet("", 8100)));
        assert_eq!(
            socket_address("Host.Example:1", c),
            Ok(inet("host.example", 1))
        );
        assert_eq!(socket_address("[::1]:8100", c), Ok(inet("::1", 8100)));
        assert_eq!(
            socket_address("/var/run/zeo.sock", c),
            Ok(SocketAddress::Unix("/var/run/zeo.sock".into()))
        );
        assert_eq!(
            socket_address("./zeo.sock", c),
            Ok(SocketAddress::Unix("./zeo.sock".into()))
        );
        for v in ["host", "::1", "host:", "host:99999", "host:http", "a b", ""] {
            assert!(socket_address(v, c).is_err(), "{v}");
        }
        assert_eq!(inet("::1", 8100).to_string(), "[::1]:8100");
        assert_eq!(inet("", 8100).to_string(), ":8100");
    }
}

//! Table-driven checking of one section's keys: each section type declares its
//! keys once (name, datatype, single or multi, honoured or ignored) and
//! [`Keys::read`] rejects unknown and repeated keys, converts every value (so a
//! bad value is an error even for a key zeoraid ignores), and records a warning
//! for each ignored key that is present. Typed getters then read the values.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::datatypes::{self, SocketAddress};
use super::error::{ConfigError, Position};
use super::zconfig::{KeyValue, Section};

/// The datatype of a key's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Any text.
    Str,
    /// A file system path (`~` is expanded; an empty value counts as not set).
    Path,
    Bool,
    Int,
    /// A non-negative integer.
    Count,
    Float,
    /// `byte-size`.
    Size,
    /// `time-interval`.
    Interval,
    /// `socket-binding-address` (host defaults to all interfaces).
    BindAddr,
    /// `socket-connection-address` (host defaults to 127.0.0.1).
    ConnectAddr,
    /// One of a fixed set of words (case-insensitive), stored lowercased.
    Choice(&'static [&'static str]),
}

/// One key a section type accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeySpec {
    pub name: &'static str,
    pub kind: Kind,
    /// May appear more than once (ZConfig `<multikey>`).
    pub multi: bool,
    /// Accepted for compatibility but not honoured (yet): warn when present.
    pub ignored: bool,
}

/// A key zeoraid honours.
pub(crate) const fn key(name: &'static str, kind: Kind) -> KeySpec {
    KeySpec {
        name,
        kind,
        multi: false,
        ignored: false,
    }
}

/// A key that may be repeated.
pub(crate) const fn multikey(name: &'static str, kind: Kind) -> KeySpec {
    KeySpec {
        name,
        kind,
        multi: true,
        ignored: false,
    }
}

/// A key accepted (and type-checked) for compatibility, but not supported yet.
pub(crate) const fn ignored(name: &'static str, kind: Kind) -> KeySpec {
    KeySpec {
        name,
        kind,
        multi: false,
        ignored: true,
    }
}

/// A converted value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Path(Option<PathBuf>),
    Bool(bool),
    Int(i64),
    Count(u64),
    Float(f64),
    Size(u64),
    Interval(Duration),
    Addr(SocketAddress),
}

impl Kind {
    fn convert(self, value: &str) -> Result<Value, String> {
        Ok(match self {
            Kind::Str => Value::Str(value.to_string()),
            Kind::Path => Value::Path((!value.is_empty()).then(|| expand_user(value))),
            Kind::Bool => Value::Bool(datatypes::boolean(value)?),
            Kind::Int => Value::Int(datatypes::integer(value)?),
            Kind::Count => {
                let n = datatypes::integer(value)?;
                Value::Count(
                    u64::try_from(n).map_err(|_| format!("must not be negative: '{value}'"))?,
                )
            }
            Kind::Float => Value::Float(datatypes::float(value)?),
            Kind::Size => Value::Size(datatypes::byte_size(value)?),
            Kind::Interval => Value::Interval(datatypes::time_interval(value)?),
            Kind::BindAddr => Value::Addr(datatypes::socket_address(value, datatypes::BIND_ANY)?),
            Kind::ConnectAddr => Value::Addr(datatypes::socket_address(
                value,
                datatypes::CONNECT_DEFAULT_HOST,
            )?),
            Kind::Choice(words) => {
                let lower = value.to_ascii_lowercase();
                match words.iter().find(|w| **w == lower) {
                    Some(w) => Value::Str((*w).to_string()),
                    None => return Err(format!("'{value}' is not one of: {}", words.join(", "))),
                }
            }
        })
    }
}

/// `~` and `~/…` become the home directory, like Python's `os.path.expanduser`.
fn expand_user(value: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    match value.strip_prefix('~') {
        Some("") => home().unwrap_or_else(|| PathBuf::from(value)),
        Some(rest) if rest.starts_with('/') => match home() {
            Some(h) => h.join(rest.trim_start_matches('/')),
            None => PathBuf::from(value),
        },
        _ => PathBuf::from(value),
    }
}

/// A setting that was accepted but is not honoured: reported at startup.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub pos: Position,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// The checked keys of one section.
pub(crate) struct Keys<'a> {
    section: &'a Section,
    values: HashMap<&'static str, Vec<(Value, &'a KeyValue)>>,
}

impl<'a> Keys<'a> {
    /// Check `section`'s keys against `specs`; ignored keys that are present add
    /// a warning to `warnings`.
    pub fn read(
        section: &'a Section,
        specs: &[KeySpec],
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, ConfigError> {
        let mut values: HashMap<&'static str, Vec<(Value, &'a KeyValue)>> = HashMap::new();
        for kv in section.keys() {
            let Some(spec) = specs.iter().find(|s| s.name == kv.key) else {
                return Err(kv.pos.error(format!(
                    "unknown key '{}' in {}",
                    kv.key,
                    section.header()
                )));
            };
            let seen = values.entry(spec.name).or_default();
            if let (false, Some((_, first))) = (spec.multi, seen.first()) {
                return Err(kv.pos.error(format!(
                    "'{}' given twice in {} (first at line {}); it takes one value",
                    kv.key,
                    section.header(),
                    first.pos.line
                )));
            }
            let value = spec
                .kind
                .convert(&kv.value)
                .map_err(|reason| kv.pos.error(format!("{}: {reason}", kv.key)))?;
            if spec.ignored {
                warnings.push(Warning {
                    pos: kv.pos.clone(),
                    message: format!(
                        "'{}' in {} is not supported yet, ignored",
                        kv.key,
                        section.header()
                    ),
                });
            }
            seen.push((value, kv));
        }
        Ok(Keys { section, values })
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(|(value, _)| value)
    }

    /// All values of a (multi) key, in file order.
    fn all(&self, name: &str) -> impl Iterator<Item = &Value> {
        self.values
            .get(name)
            .into_iter()
            .flatten()
            .map(|(value, _)| value)
    }

    /// The error for a missing required key, at the section's start.
    pub fn missing(&self, name: &str) -> ConfigError {
        self.section.pos.error(format!(
            "{} needs '{name}' (missing required key)",
            self.section.header()
        ))
    }

    pub fn string(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn path(&self, name: &str) -> Option<PathBuf> {
        match self.get(name)? {
            Value::Path(p) => p.clone(),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn float(&self, name: &str) -> Option<f64> {
        match self.get(name)? {
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn count(&self, name: &str) -> Option<u64> {
        match self.get(name)? {
            Value::Count(n) => Some(*n),
            _ => None,
        }
    }

    /// A count that must lie in `range` (an error at its line otherwise).
    pub fn count_in(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        match self.values.get(name).and_then(|v| v.first()) {
            Some((Value::Count(n), kv)) if !range.contains(n) => Err(kv.pos.error(format!(
                "{name}: {n} is not between {} and {}",
                range.start(),
                range.end()
            ))),
            _ => Ok(self.count(name)),
        }
    }

    pub fn size(&self, name: &str) -> Option<u64> {
        match self.get(name)? {
            Value::Size(n) => Some(*n),
            _ => None,
        }
    }

    pub fn interval(&self, name: &str) -> Option<Duration> {
        match self.get(name)? {
            Value::Interval(d) => Some(*d),
            _ => None,
        }
    }

    pub fn addr(&self, name: &str) -> Option<SocketAddress> {
        match self.get(name)? {
            Value::Addr(a) => Some(a.clone()),
            _ => None,
        }
    }

    pub fn addrs(&self, name: &str) -> Vec<SocketAddress> {
        self.all(name)
            .filter_map(|v| match v {
                Value::Addr(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every value present, by key name, for keys the model keeps verbatim
    /// (the ignored ones): `(key, raw value)` in file order.
    pub fn raw_ignored(&self, specs: &[KeySpec]) -> Vec<(String, String)> {
        self.section
            .keys()
            .filter(|kv| specs.iter().any(|s| s.ignored && s.name == kv.key))
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::zconfig::parse_str;
    use std::path::Path;

    const SPECS: &[KeySpec] = &[
        key("flag", Kind::Bool),
        multikey("server", Kind::ConnectAddr),
        ignored("old", Kind::Size),
        key("mode", Kind::Choice(&["a", "b"])),
    ];

    fn with_keys<T>(
        body: &str,
        f: impl FnOnce(Result<Keys<'_>, ConfigError>, Vec<Warning>) -> T,
    ) -> T {
        let doc = parse_str(&format!("<s x>\n{body}</s>\n"), Path::new("t.conf")).unwrap();
        let section = doc.root.sections().next().unwrap();
        let mut warnings = Vec::new();
        let keys = Keys::read(section, SPECS, &mut warnings);
        f(keys, warnings)
    }

    #[test]
    fn values_and_warnings() {
        with_keys(
            "flag ON\nserver 1\nserver h:2\nold 1KB\nmode B\n",
            |keys, warnings| {
                let keys = keys.unwrap();
                assert_eq!(keys.bool("flag"), Some(true));
                assert_eq!(keys.addrs("server").len(), 2);
                assert_eq!(keys.string("mode").as_deref(), Some("b"));
                assert_eq!(
                    keys.raw_ignored(SPECS),
                    [("old".to_string(), "1KB".to_string())]
                );
                assert_eq!(warnings.len(), 1);
                assert_eq!(
                    warnings[0].to_string(),
                    "t.conf:5: 'old' in <s x> is not supported yet, ignored"
                );
            },
        );
    }

    #[test]
    fn errors() {
        let err = |body: &str| with_keys(body, |k, _| k.err().unwrap().to_string());
        assert_eq!(
            err("flag yes\nnope 1\n"),
            "t.conf:3: unknown key 'nope' in <s x>"
        );
        assert_eq!(
            err("flag yes\nflag no\n"),
            "t.conf:3: 'flag' given twice in <s x> (first at line 2); it takes one value"
        );
        assert!(
            err("flag maybe\n").starts_with("t.conf:2: flag: not a valid boolean value: 'maybe'")
        );
        assert!(err("old 20XB\n").starts_with("t.conf:2: old: not a valid byte size"));
        assert_eq!(err("mode c\n"), "t.conf:2: mode: 'c' is not one of: a, b");
    }
}

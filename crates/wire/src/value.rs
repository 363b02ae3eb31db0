//! `Value`: the one data model for everything on the wire, whichever encoding
//! (pickle or msgpack) carried it. It mirrors the Python objects ZEO exchanges
//! (None/bool/int/float/bytes/str/tuple/list/dict) plus opaque forms the tolerant
//! pickle decoder needs for object records (globals, reduced objects, persistent ids).

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::{ToPrimitive, Zero};

/// A Python value as seen on the wire.
///
/// `Int` holds every integer that fits `i64`; `BigInt` is used only for the rest, so
/// two equal Python ints always compare equal here. `Dict` keeps insertion order
/// (the encoders emit it in that order, like CPython).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside the `i64` range (never constructed for values that fit).
    BigInt(BigInt),
    Float(f64),
    Bytes(Bytes),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    FrozenSet(Vec<Value>),
    ByteArray(Bytes),
    /// A GLOBAL / STACK_GLOBAL / INST class reference, kept by name (never imported).
    Global {
        module: String,
        name: String,
    },
    /// The opaque result of REDUCE/NEWOBJ/NEWOBJ_EX/INST/OBJ (and BUILD on it).
    Object(Box<PickledObject>),
    /// A persistent reference (PERSID/BINPERSID): in ZODB records, the oid forms.
    PersistentId(Box<Value>),
    /// An EXT1/EXT2/EXT4 extension-registry code (copyreg), not resolved.
    Extension(u32),
}

/// How an opaque pickled object was constructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `callable(*args)` (REDUCE).
    Reduce,
    /// `cls.__new__(cls, *args)` (NEWOBJ).
    NewObj,
    /// `cls.__new__(cls, *args, **kwargs)` (NEWOBJ_EX).
    NewObjEx,
    /// Protocol 0 INST: class by name plus args from the mark.
    Inst,
    /// Protocol 1 OBJ: class and args from the mark.
    Obj,
    /// BUILD applied to a value that was not itself an opaque object.
    Build,
}

/// An object the decoder did not (and must not) instantiate.
#[derive(Debug, Clone, PartialEq)]
pub struct PickledObject {
    pub kind: ObjectKind,
    /// The class or callable, usually a `Value::Global`.
    pub callable: Value,
    /// Positional arguments (a tuple).
    pub args: Value,
    /// Keyword arguments (NEWOBJ_EX only).
    pub kwargs: Option<Value>,
    /// The state given by BUILD (`__setstate__` argument), if any.
    pub state: Option<Value>,
    /// Items added by APPEND(S)/ADDITEMS after construction (list subclasses).
    pub listitems: Vec<Value>,
    /// Pairs added by SETITEM(S) after construction (dict subclasses).
    pub dictitems: Vec<(Value, Value)>,
}

impl Value {
    /// An integer value, normalised: `Int` when it fits `i64`, else `BigInt`.
    pub fn from_bigint(n: BigInt) -> Value {
        match n.to_i64() {
            Some(small) => Value::Int(small),
            None => Value::BigInt(n),
        }
    }

    /// Python truthiness (`bool(value)`), used for the message flag.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            Value::BigInt(n) => !n.is_zero(),
            Value::Float(f) => *f != 0.0,
            Value::Bytes(b) | Value::ByteArray(b) => !b.is_empty(),
            Value::Str(s) => !s.is_empty(),
            Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v) => !v.is_empty(),
            Value::Dict(d) => !d.is_empty(),
            Value::Global { .. }
            | Value::Object(_)
            | Value::PersistentId(_)
            | Value::Extension(_) => true,
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// The bytes of a `Bytes` value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A cheap clone of the bytes of a `Bytes` value.
    pub fn as_shared_bytes(&self) -> Option<Bytes> {
        match self {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }

    /// An 8-byte `Bytes` value (an oid or a tid).
    pub fn as_bytes8(&self) -> Option<[u8; 8]> {
        self.as_bytes().and_then(|b| <[u8; 8]>::try_from(b).ok())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer that fits `i64`. Python bools are ints, so `True`/`False` give 1/0.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Any integer as a `BigInt` (bools included, as in Python).
    pub fn as_bigint(&self) -> Option<BigInt> {
        match self {
            Value::BigInt(n) => Some(n.clone()),
            other => other.as_int().map(BigInt::from),
        }
    }

    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The items of a tuple or a list: the two are interchangeable for ZEO
    /// (msgpack turns every list into a tuple).
    pub fn as_tuple_or_list(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// Consuming form of [`Value::as_tuple_or_list`].
    pub fn into_tuple_or_list(self) -> Result<Vec<Value>, Value> {
        match self {
            Value::Tuple(v) | Value::List(v) => Ok(v),
            other => Err(other),
        }
    }

    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// `dict[key]` for a str key (the first match, as dict keys are unique in Python).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Build a dict from `(str key, value)` pairs, keeping their order.
    pub fn dict_from_pairs<K, V, I>(pairs: I) -> Value
    where
        K: Into<String>,
        V: Into<Value>,
        I: IntoIterator<Item = (K, V)>,
    {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v.into()))
                .collect(),
        )
    }

    /// A list from anything convertible.
    pub fn list<T: Into<Value>>(items: impl IntoIterator<Item = T>) -> Value {
        Value::List(items.into_iter().map(Into::into).collect())
    }

    /// A tuple from anything convertible.
    pub fn tuple<T: Into<Value>>(items: impl IntoIterator<Item = T>) -> Value {
        Value::Tuple(items.into_iter().map(Into::into).collect())
    }

    /// Python's type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::ByteArray(_) => "bytearray",
            Value::Global { .. } => "global",
            Value::Object(_) => "object",
            Value::PersistentId(_) => "persistent id",
            Value::Extension(_) => "extension",
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

macro_rules! int_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::Int(i64::from(n))
            }
        }
    )*};
}
int_from!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        match i64::try_from(n) {
            Ok(small) => Value::Int(small),
            Err(_) => Value::BigInt(BigInt::from(n)),
        }
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Value::from(n as u64)
    }
}

impl From<BigInt> for Value {
    fn from(n: BigInt) -> Self {
        Value::from_bigint(n)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Bytes(b)
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::Bytes(Bytes::copy_from_slice(b))
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(Bytes::from(b))
    }
}

impl<const N: usize> From<[u8; N]> for Value {
    fn from(b: [u8; N]) -> Self {
        Value::Bytes(Bytes::copy_from_slice(&b))
    }
}

impl<const N: usize> From<&[u8; N]> for Value {
    fn from(b: &[u8; N]) -> Self {
        Value::Bytes(Bytes::copy_from_slice(b))
    }
}

/// `Some(v)` is `v`, `None` is Python's `None`.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        match o {
            Some(v) => v.into(),
            None => Value::None,
        }
    }
}

/// A `Vec<Value>` becomes a Python list (`Vec<u8>` becomes bytes; see
/// [`Value::list`] and [`Value::tuple`] for other item types).
impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::List(items)
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Self {
        Value::Tuple(Vec::new())
    }
}

macro_rules! tuple_from {
    ($($name:ident),+) => {
        impl<$($name: Into<Value>),+> From<($($name,)+)> for Value {
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> Self {
                Value::Tuple(vec![$($name.into()),+])
            }
        }
    };
}
tuple_from!(A);
tuple_from!(A, B);
tuple_from!(A, B, C);
tuple_from!(A, B, C, D);
tuple_from!(A, B, C, D, E);
tuple_from!(A, B, C, D, E, F);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_impls_build_python_shapes() {
        assert_eq!(Value::from(()), Value::Tuple(vec![]));
        assert_eq!(
            Value::from(("1", false)),
            Value::Tuple(vec![Value::Str("1".into()), Value::Bool(false)])
        );
        assert_eq!(
            Value::list([1u8, 2]),
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(Value::from(vec![1u8]), Value::from(&b"\x01"[..]));
        assert_eq!(Value::from(None::<i64>), Value::None);
        assert_eq!(Value::from(u64::MAX), Value::BigInt(BigInt::from(u64::MAX)));
        assert_eq!(Value::from(7u64), Value::Int(7));
        assert_eq!(Value::from([0u8; 8]).as_bytes8(), Some([0u8; 8]));
    }

    #[test]
    fn bigint_is_normalised() {
        assert_eq!(Value::from_bigint(BigInt::from(5)), Value::Int(5));
        let big = BigInt::from(i64::MAX) + 1i64;
        assert_eq!(Value::from_bigint(big.clone()), Value::BigInt(big));
    }

    #[test]
    fn truthiness_follows_python() {
        assert!(!Value::Bool(false).is_truthy());
        assert!(!Value::Int(0).is_truthy());
        assert!(Value::Int(2).is_truthy());
        assert!(Value::Bool(true).is_truthy());
        assert!(!Value::None.is_truthy());
        assert!(!Value::Tuple(vec![]).is_truthy());
        assert!(!Value::Str(String::new()).is_truthy());
    }

    #[test]
    fn dict_get_by_str_key() {
        let d = Value::dict_from_pairs([("a", 1), ("b", 2)]);
        assert_eq!(d.get("b"), Some(&Value::Int(2)));
        assert_eq!(d.get("c"), None);
        assert_eq!(Value::Int(1).get("a"), None);
    }

    #[test]
    fn accessors() {
        assert_eq!(Value::Bool(true).as_int(), Some(1));
        assert_eq!(Value::from("x").as_str(), Some("x"));
        assert_eq!(Value::from(&b"ab"[..]).as_bytes(), Some(&b"ab"[..]));
        assert_eq!(
            Value::from((1, 2)).as_tuple_or_list().map(<[Value]>::len),
            Some(2)
        );
        assert_eq!(
            Value::list([1]).as_tuple_or_list().map(<[Value]>::len),
            Some(1)
        );
        assert_eq!(Value::from(1.5).as_float(), Some(1.5));
    }
}

//! `Value::python_repr`: CPython's `repr()` of a decoded value, so tests (and the
//! `zeoraid debug decode` tool) can compare our decoder with Python's text for text.
//!
//! Exact for None/bool/int/float/bytes/str/tuple/list/dict/set/frozenset/bytearray.
//! One approximation: str repr escapes the non-printable code points we can name
//! without Unicode tables (controls, separators, format chars, private use);
//! unassigned code points are shown literally where CPython would escape them.
//! Opaque pickle values (globals, objects, persistent ids) get a descriptive
//! `<...>` form that Python would not print.

use std::fmt::Write;

use crate::value::{PickledObject, Value};

impl Value {
    /// The text Python's `repr()` gives for this value.
    pub fn python_repr(&self) -> String {
        let mut out = String::new();
        write_repr(&mut out, self);
        out
    }
}

fn write_repr(out: &mut String, value: &Value) {
    match value {
        Value::None => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::BigInt(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => out.push_str(&float_repr(*f)),
        Value::Bytes(b) => bytes_repr(out, b),
        Value::ByteArray(b) => {
            out.push_str("bytearray(");
            bytes_repr(out, b);
            out.push(')');
        }
        Value::Str(s) => str_repr(out, s),
        Value::Tuple(items) => {
            out.push('(');
            write_items(out, items);
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        Value::List(items) => {
            out.push('[');
            write_items(out, items);
            out.push(']');
        }
        Value::Dict(pairs) => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, k);
                out.push_str(": ");
                write_repr(out, v);
            }
            out.push('}');
        }
        Value::Set(items) => {
            if items.is_empty() {
                out.push_str("set()");
            } else {
                out.push('{');
                write_items(out, items);
                out.push('}');
            }
        }
        Value::FrozenSet(items) => {
            if items.is_empty() {
                out.push_str("frozenset()");
            } else {
                out.push_str("frozenset({");
                write_items(out, items);
                out.push_str("})");
            }
        }
        Value::Global { module, name } => {
            let _ = write!(out, "<global {module}.{name}>");
        }
        Value::Object(obj) => object_repr(out, obj),
        Value::PersistentId(pid) => {
            out.push_str("<persistent id ");
            write_repr(out, pid);
            out.push('>');
        }
        Value::Extension(code) => {
            let _ = write!(out, "<extension {code}>");
        }
    }
}

fn write_items(out: &mut String, items: &[Value]) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_repr(out, item);
    }
}

fn object_repr(out: &mut String, obj: &PickledObject) {
    let _ = write!(out, "<object {:?} ", obj.kind);
    write_repr(out, &obj.callable);
    out.push(' ');
    write_repr(out, &obj.args);
    if let Some(kwargs) = &obj.kwargs {
        out.push_str(" kwargs=");
        write_repr(out, kwargs);
    }
    if let Some(state) = &obj.state {
        out.push_str(" state=");
        write_repr(out, state);
    }
    if !obj.listitems.is_empty() {
        out.push_str(" listitems=[");
        write_items(out, &obj.listitems);
        out.push(']');
    }
    if !obj.dictitems.is_empty() {
        out.push_str(" dictitems=");
        write_repr(out, &Value::Dict(obj.dictitems.clone()));
    }
    out.push('>');
}

/// Python's `float.__repr__`: the shortest digits that round-trip (Rust's `{:e}`
/// gives the same digits), in fixed notation when the decimal exponent is in
/// -4..16, otherwise in exponent notation with a sign and at least two digits.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..16).contains(&exp) {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let mut text = String::from(sign);
    if point <= 0 {
        text.push_str("0.");
        for _ in 0..(-point) {
            text.push('0');
        }
        text.push_str(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            text.push_str(&digits);
            for _ in digits.len()..point {
                text.push('0');
            }
            text.push_str(".0");
        } else {
            text.push_str(&digits[..point]);
            text.push('.');
            text.push_str(&digits[point..]);
        }
    }
    text
}

fn bytes_repr(out: &mut String, bytes: &[u8]) {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    out.push('b');
    out.push(quote);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if char::from(b) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push(quote);
}

fn str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ if c == quote => {
                out.push('\\');
                out.push(quote);
            }
            _ if is_printable(c) => out.push(c),
            _ => {
                let code = u32::from(c);
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
        }
    }
    out.push(quote);
}

/// CPython's `str.isprintable()` per character, minus the unassigned (Cn) check.
fn is_printable(c: char) -> bool {
    let code = u32::from(c);
    if c == ' ' {
        return true;
    }
    !matches!(code,
        0x00..=0x1f | 0x7f..=0xa0 | 0xad
        // Zs space separators other than ' '
        | 0x1680 | 0x2000..=0x200a | 0x202f | 0x205f | 0x3000
        // Zl, Zp
        | 0x2028 | 0x2029
        // Cf format characters (the common ones)
        | 0x0600..=0x0605 | 0x061c | 0x06dd | 0x070f | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f
        | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x1d173..=0x1d17a
        | 0xe0001 | 0xe0020..=0xe007f
        // Co private use
        | 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd
        // noncharacters are unassigned (Cn)
        | 0xfdd0..=0xfdef | 0xfffe | 0xffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        assert_eq!(float_repr(1795459110.9912295), "1795459110.9912295");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1e15), "1000000000000000.0");
        assert_eq!(float_repr(9999999999999998.0), "9999999999999998.0");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(0.00001), "1e-05");
        assert_eq!(float_repr(1.5e-7), "1.5e-07");
        assert_eq!(float_repr(0.0), "0.0");
        assert_eq!(float_repr(-0.0), "-0.0");
        assert_eq!(float_repr(-2.5), "-2.5");
        assert_eq!(float_repr(0.1), "0.1");
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(123.456), "123.456");
        assert_eq!(float_repr(f64::INFINITY), "inf");
        assert_eq!(float_repr(f64::NEG_INFINITY), "-inf");
        assert_eq!(float_repr(f64::NAN), "nan");
        assert_eq!(
            float_repr(1.7976931348623157e308),
            "1.7976931348623157e+308"
        );
        assert_eq!(float_repr(5e-324), "5e-324");
        assert_eq!(float_repr(-1.25e100), "-1.25e+100");
    }

    #[test]
    fn bytes_and_str_quotes_and_escapes() {
        assert_eq!(Value::from(&b"ab'c"[..]).python_repr(), "b\"ab'c\"");
        assert_eq!(Value::from(&b"a'\""[..]).python_repr(), "b'a\\'\"'");
        assert_eq!(
            Value::from(&b"\x00\t\n\r\\\x7f\xff"[..]).python_repr(),
            "b'\\x00\\t\\n\\r\\\\\\x7f\\xff'"
        );
        assert_eq!(Value::from("héllo").python_repr(), "'héllo'");
        assert_eq!(Value::from("it's").python_repr(), "\"it's\"");
        assert_eq!(
            Value::from("\u{7}\u{a0}\u{2028}\u{1F600}").python_repr(),
            "'\\x07\\xa0\\u2028\u{1F600}'"
        );
    }

    #[test]
    fn containers() {
        assert_eq!(Value::from((1,)).python_repr(), "(1,)");
        assert_eq!(Value::from(()).python_repr(), "()");
        assert_eq!(
            Value::from((1, "a", Value::None)).python_repr(),
            "(1, 'a', None)"
        );
        assert_eq!(Value::list([true, false]).python_repr(), "[True, False]");
        assert_eq!(Value::dict_from_pairs([("a", 1)]).python_repr(), "{'a': 1}");
        assert_eq!(Value::Set(vec![]).python_repr(), "set()");
        assert_eq!(
            Value::FrozenSet(vec![Value::Int(1)]).python_repr(),
            "frozenset({1})"
        );
        assert_eq!(
            Value::ByteArray(bytes::Bytes::from_static(b"x")).python_repr(),
            "bytearray(b'x')"
        );
    }
}

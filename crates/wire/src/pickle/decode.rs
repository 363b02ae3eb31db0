//! The tolerant pickle decoder: protocols 0–5, as an iterative stack machine with
//! limits, so any byte string — a ZEO message or a ZODB object record — decodes to
//! a [`Value`] or a [`WireError`], never a panic, unbounded allocation or deep
//! recursion.
//!
//! Choices that differ from Python's `Unpickler`, on purpose:
//! * Nothing is imported or called: GLOBAL/STACK_GLOBAL give [`Value::Global`];
//!   REDUCE/NEWOBJ/NEWOBJ_EX/INST/OBJ/BUILD give opaque [`Value::Object`]s;
//!   EXT1/2/4 give [`Value::Extension`]; PERSID/BINPERSID give
//!   [`Value::PersistentId`] (and are collected in order of appearance).
//! * STRING/BINSTRING/SHORT_BINSTRING (Python 2 `str`) decode as `Bytes`: in ZODB
//!   records written by Python 2 (protocol 1/2, still found in old Data.fs files)
//!   they hold oids and binary data, which zodbpickle also loads as bytes
//!   (`encoding='bytes'`). Python 3's default would be an ASCII `str`.
//! * The memo stores a snapshot: a value changed in place after PUT/MEMOIZE (e.g.
//!   `EMPTY_LIST BINPUT … APPENDS`) is seen by a later GET as it was when memoized.
//!   ZEO messages never use the memo; reference scanning collects persistent ids as
//!   they are read, so neither depends on sharing.
//! * Dict keys are not hashed: duplicate keys are kept as separate entries.
//! * Out-of-band buffers (NEXT_BUFFER/READONLY_BUFFER) are refused.

use std::collections::HashMap;

use bytes::Bytes;
use num_bigint::BigInt;

use super::opcodes::*;
use crate::error::{Result, WireError};
use crate::value::{ObjectKind, PickledObject, Value};

/// Bounds on what one decode may build. Counts include memo copies (GET/DUP/PUT
/// clone values), which is what stops "billion laughs" style amplification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Deepest container nesting (also bounds recursion in Drop, repr, encoders).
    pub max_depth: usize,
    /// Most values (nodes) materialised, memo copies and MARKs included.
    pub max_values: u64,
    /// Most str/bytes/int payload bytes materialised, memo copies included.
    pub max_bytes: u64,
    /// Most memo entries.
    pub max_memo: usize,
    /// Most decimal digits in a text-protocol INT/LONG (CPython's default
    /// `int_max_str_digits` is 4300; also keeps parsing linear-ish).
    pub max_int_digits: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_depth: 256,
            max_values: 8 << 20,
            max_bytes: 256 << 20,
            max_memo: 1 << 20,
            max_int_digits: 4300,
        }
    }
}

/// The result of reading one pickle off the front of a buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Unpickled {
    pub value: Value,
    /// Bytes consumed, STOP included: where a following pickle starts.
    pub consumed: usize,
    /// Every PERSID/BINPERSID argument, in the order the opcodes appear
    /// (what ZODB's `PersistentUnpickler.noload` hands to `persistent_load`).
    pub persistent_ids: Vec<Value>,
}

/// Decode a whole buffer holding exactly one pickle (trailing bytes are an error).
pub fn decode(data: &[u8]) -> Result<Value> {
    decode_with_limits(data, &DecodeLimits::default())
}

/// [`decode`] with explicit limits.
pub fn decode_with_limits(data: &[u8], limits: &DecodeLimits) -> Result<Value> {
    let unpickled = unpickle_prefix(data, limits)?;
    if unpickled.consumed != data.len() {
        return Err(WireError::TrailingBytes {
            count: data.len() - unpickled.consumed,
        });
    }
    Ok(unpickled.value)
}

/// Decode the first pickle in `data`, returning it and the number of bytes it used
/// (a ZODB record is two pickles back to back: class metadata, then state).
pub fn decode_prefix(data: &[u8]) -> Result<(Value, usize)> {
    let unpickled = unpickle_prefix(data, &DecodeLimits::default())?;
    Ok((unpickled.value, unpickled.consumed))
}

/// Decode the first pickle in `data`, with its persistent ids.
pub fn unpickle_prefix(data: &[u8], limits: &DecodeLimits) -> Result<Unpickled> {
    let mut unpickler = Unpickler::new(data, limits.clone());
    let value = unpickler.load()?;
    Ok(Unpickled {
        value,
        consumed: unpickler.position(),
        persistent_ids: unpickler.take_persistent_ids(),
    })
}

/// Reads consecutive pickles from one buffer, like calling Python's
/// `Unpickler.load()` repeatedly: the memo (and the limits' budget) carry over from
/// one pickle to the next. ZODB relies on that — a record's state pickle may `GET`
/// the class global memoized by its class-metadata pickle.
pub struct Unpickler<'a> {
    machine: Machine<'a>,
}

impl<'a> Unpickler<'a> {
    pub fn new(data: &'a [u8], limits: DecodeLimits) -> Self {
        Unpickler {
            machine: Machine {
                data,
                pos: 0,
                op_pos: 0,
                limits,
                stack: Vec::new(),
                marks: Vec::new(),
                memo: HashMap::new(),
                values: 0,
                bytes: 0,
                persistent_ids: Vec::new(),
            },
        }
    }

    /// The next pickle's value.
    pub fn load(&mut self) -> Result<Value> {
        self.machine.stack.clear();
        self.machine.marks.clear();
        self.machine.run()
    }

    /// Offset just past the last pickle loaded.
    pub fn position(&self) -> usize {
        self.machine.pos
    }

    /// Persistent ids seen since the last call, in order of appearance.
    pub fn take_persistent_ids(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.machine.persistent_ids)
    }
}

/// A stack entry: the value plus what it cost, so copies can be charged and
/// containers know their depth without walking their children.
#[derive(Debug, Clone)]
struct Item {
    value: Value,
    nodes: u64,
    bytes: u64,
    depth: usize,
}

impl Item {
    fn leaf(value: Value, bytes: usize) -> Item {
        Item {
            value,
            nodes: 1,
            bytes: bytes as u64,
            depth: 0,
        }
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed, for error messages.
    op_pos: usize,
    limits: DecodeLimits,
    stack: Vec<Item>,
    /// Stack lengths at each MARK; the last one is the fence below which plain
    /// pops may not reach (as in CPython 3).
    marks: Vec<usize>,
    memo: HashMap<u64, Item>,
    values: u64,
    bytes: u64,
    persistent_ids: Vec<Value>,
}

impl<'a> Machine<'a> {
    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_pos = self.pos;
            let op = self.read_u8().map_err(|_| WireError::MissingStop)?;
            match op {
                STOP => return Ok(self.pop()?.value),
                PROTO => {
                    let proto = self.read_u8()?;
                    if proto > HIGHEST_PROTOCOL {
                        return Err(WireError::UnsupportedProtocol(proto));
                    }
                }
                FRAME => {
                    // Frames only help buffering; check the length is plausible.
                    let len = self.read_u64_le()?;
                    if len > (self.data.len() - self.pos) as u64 {
                        return Err(self.truncated(len));
                    }
                }
                MARK => {
                    self.charge(1, 0)?;
                    self.marks.push(self.stack.len());
                }
                POP => {
                    if self.stack.len() > self.fence() {
                        self.stack.pop();
                    } else if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        return Err(self.underflow());
                    }
                }
                POP_MARK => {
                    self.pop_mark()?;
                }
                DUP => {
                    let top = self.top()?.clone();
                    self.charge(top.nodes, top.bytes)?;
                    self.stack.push(top);
                }

                NONE => self.push_leaf(Value::None, 0)?,
                NEWTRUE => self.push_leaf(Value::Bool(true), 0)?,
                NEWFALSE => self.push_leaf(Value::Bool(false), 0)?,
                BININT => {
                    let n = i32::from_le_bytes(self.read_array()?);
                    self.push_leaf(Value::Int(i64::from(n)), 0)?;
                }
                BININT1 => {
                    let n = self.read_u8()?;
                    self.push_leaf(Value::Int(i64::from(n)), 0)?;
                }
                BININT2 => {
                    let n = u16::from_le_bytes(self.read_array()?);
                    self.push_leaf(Value::Int(i64::from(n)), 0)?;
                }
                LONG1 => {
                    let len = usize::from(self.read_u8()?);
                    let raw = self.read_exact(len)?;
                    let n = BigInt::from_signed_bytes_le(raw);
                    self.push_leaf(Value::from_bigint(n), len)?;
                }
                LONG4 => {
                    let len = i32::from_le_bytes(self.read_array()?);
                    let len = usize::try_from(len)
                        .map_err(|_| self.malformed("negative LONG4 length"))?;
                    let raw = self.read_exact(len)?;
                    let n = BigInt::from_signed_bytes_le(raw);
                    self.push_leaf(Value::from_bigint(n), len)?;
                }
                INT => {
                    let line = self.read_line()?;
                    let value = match line {
                        b"00" => Value::Bool(false),
                        b"01" => Value::Bool(true),
                        _ => self.parse_text_int(line)?,
                    };
                    self.push_leaf(value, line.len())?;
                }
                LONG => {
                    let line = self.read_line()?;
                    let digits = line.strip_suffix(b"L").unwrap_or(line);
                    let value = self.parse_text_int(digits)?;
                    self.push_leaf(value, line.len())?;
                }
                FLOAT => {
                    let line = self.read_line()?;
                    let f = std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .ok_or_else(|| self.malformed("FLOAT argument is not a float"))?;
                    self.push_leaf(Value::Float(f), 0)?;
                }
                BINFLOAT => {
                    let f = f64::from_be_bytes(self.read_array()?);
                    self.push_leaf(Value::Float(f), 0)?;
                }

                SHORT_BINBYTES | SHORT_BINSTRING => {
                    let len = usize::from(self.read_u8()?);
                    self.push_bytes(len)?;
                }
                BINBYTES => {
                    let len = u32::from_le_bytes(self.read_array()?);
                    self.push_bytes(len as usize)?;
                }
                BINSTRING => {
                    let len = i32::from_le_bytes(self.read_array()?);
                    let len = usize::try_from(len)
                        .map_err(|_| self.malformed("negative BINSTRING length"))?;
                    self.push_bytes(len)?;
                }
                BINBYTES8 => {
                    let len = self.read_len_u64()?;
                    self.push_bytes(len)?;
                }
                BYTEARRAY8 => {
                    let len = self.read_len_u64()?;
                    let raw = Bytes::copy_from_slice(self.read_exact(len)?);
                    self.push_leaf(Value::ByteArray(raw), len)?;
                }
                STRING => {
                    let line = self.read_line()?;
                    let raw = self.unquote_string(line)?;
                    let len = raw.len();
                    self.push_leaf(Value::Bytes(Bytes::from(raw)), len)?;
                }
                SHORT_BINUNICODE => {
                    let len = usize::from(self.read_u8()?);
                    self.push_str(len)?;
                }
                BINUNICODE => {
                    let len = u32::from_le_bytes(self.read_array()?);
                    self.push_str(len as usize)?;
                }
                BINUNICODE8 => {
                    let len = self.read_len_u64()?;
                    self.push_str(len)?;
                }
                UNICODE => {
                    let line = self.read_line()?;
                    let s = raw_unicode_escape(line)
                        .ok_or_else(|| self.malformed("bad \\u escape in UNICODE"))?;
                    let len = s.len();
                    self.push_leaf(Value::Str(s), len)?;
                }

                EMPTY_TUPLE => self.push_leaf(Value::Tuple(Vec::new()), 0)?,
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = usize::from(op - TUPLE1 + 1);
                    let fence = self.fence();
                    if self.stack.len() < fence + n {
                        return Err(self.underflow());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_container(items, Value::Tuple)?;
                }
                TUPLE => {
                    let items = self.pop_mark()?;
                    self.push_container(items, Value::Tuple)?;
                }
                EMPTY_LIST => self.push_leaf(Value::List(Vec::new()), 0)?,
                LIST => {
                    let items = self.pop_mark()?;
                    self.push_container(items, Value::List)?;
                }
                APPEND => {
                    let item = self.pop()?;
                    self.extend_top(vec![item])?;
                }
                APPENDS => {
                    let items = self.pop_mark()?;
                    self.extend_top(items)?;
                }
                EMPTY_DICT => self.push_leaf(Value::Dict(Vec::new()), 0)?,
                DICT => {
                    let items = self.pop_mark()?;
                    let item = self.build_dict(items)?;
                    self.push_item(item)?;
                }
                SETITEM => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items_on_top(vec![key, value])?;
                }
                SETITEMS => {
                    let items = self.pop_mark()?;
                    self.set_items_on_top(items)?;
                }
                EMPTY_SET => self.push_leaf(Value::Set(Vec::new()), 0)?,
                ADDITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_top(items)?;
                }
                FROZENSET => {
                    let items = self.pop_mark()?;
                    self.push_container(items, Value::FrozenSet)?;
                }

                PUT => {
                    let line = self.read_line()?;
                    let key = parse_decimal_u64(line)
                        .ok_or_else(|| self.malformed("PUT argument is not an index"))?;
                    self.memoize(key)?;
                }
                BINPUT => {
                    let key = self.read_u8()?;
                    self.memoize(u64::from(key))?;
                }
                LONG_BINPUT => {
                    let key = u32::from_le_bytes(self.read_array()?);
                    self.memoize(u64::from(key))?;
                }
                MEMOIZE => {
                    let key = self.memo.len() as u64;
                    self.memoize(key)?;
                }
                GET => {
                    let line = self.read_line()?;
                    let key = parse_decimal_u64(line)
                        .ok_or_else(|| self.malformed("GET argument is not an index"))?;
                    self.recall(key)?;
                }
                BINGET => {
                    let key = self.read_u8()?;
                    self.recall(u64::from(key))?;
                }
                LONG_BINGET => {
                    let key = u32::from_le_bytes(self.read_array()?);
                    self.recall(u64::from(key))?;
                }

                GLOBAL => {
                    let module = self.read_text_line()?;
                    let name = self.read_text_line()?;
                    let len = module.len() + name.len();
                    self.push_leaf(Value::Global { module, name }, len)?;
                }
                STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.value, name.value) {
                        (Value::Str(module), Value::Str(name)) => {
                            let len = module.len() + name.len();
                            self.push_leaf(Value::Global { module, name }, len)?;
                        }
                        _ => return Err(self.malformed("STACK_GLOBAL needs two str")),
                    }
                }
                INST => {
                    let module = self.read_text_line()?;
                    let name = self.read_text_line()?;
                    let args = self.pop_mark()?;
                    let args = self.container(args, Value::Tuple)?;
                    let len = module.len() + name.len();
                    let callable = Item::leaf(Value::Global { module, name }, len);
                    self.charge(1, len as u64)?;
                    self.push_object(ObjectKind::Inst, callable, args, None)?;
                }
                OBJ => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.underflow());
                    }
                    let callable = items.remove(0);
                    let args = self.container(items, Value::Tuple)?;
                    self.push_object(ObjectKind::Obj, callable, args, None)?;
                }
                REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push_object(ObjectKind::Reduce, callable, args, None)?;
                }
                NEWOBJ => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.push_object(ObjectKind::NewObj, cls, args, None)?;
                }
                NEWOBJ_EX => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.push_object(ObjectKind::NewObjEx, cls, args, Some(kwargs))?;
                }
                BUILD => {
                    let state = self.pop()?;
                    self.build_top(state)?;
                }
                EXT1 => {
                    let code = self.read_u8()?;
                    self.push_leaf(Value::Extension(u32::from(code)), 0)?;
                }
                EXT2 => {
                    let code = u16::from_le_bytes(self.read_array()?);
                    self.push_leaf(Value::Extension(u32::from(code)), 0)?;
                }
                EXT4 => {
                    let code = i32::from_le_bytes(self.read_array()?);
                    let code =
                        u32::try_from(code).map_err(|_| self.malformed("negative EXT4 code"))?;
                    self.push_leaf(Value::Extension(code), 0)?;
                }
                PERSID => {
                    let line = self.read_line()?;
                    if !line.is_ascii() {
                        return Err(WireError::InvalidUtf8 {
                            offset: self.op_pos,
                        });
                    }
                    let pid = Value::Str(String::from_utf8_lossy(line).into_owned());
                    let len = line.len();
                    self.push_persistent_id(Item::leaf(pid, len))?;
                }
                BINPERSID => {
                    let pid = self.pop()?;
                    self.push_persistent_id(pid)?;
                }
                NEXT_BUFFER => {
                    return Err(WireError::UnsupportedOpcode {
                        name: "NEXT_BUFFER",
                        offset: self.op_pos,
                    })
                }
                READONLY_BUFFER => {
                    return Err(WireError::UnsupportedOpcode {
                        name: "READONLY_BUFFER",
                        offset: self.op_pos,
                    })
                }
                other => {
                    return Err(WireError::UnknownOpcode {
                        opcode: other,
                        offset: self.op_pos,
                    })
                }
            }
        }
    }

    // ---- input ----

    fn truncated(&self, wanted: u64) -> WireError {
        let available = (self.data.len() - self.pos) as u64;
        WireError::Truncated {
            offset: self.pos,
            needed: usize::try_from(wanted.saturating_sub(available)).unwrap_or(usize::MAX),
        }
    }

    fn read_exact(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.data.len());
        let Some(end) = end else {
            return Err(self.truncated(len as u64));
        };
        let data: &'a [u8] = self.data;
        let slice = data
            .get(self.pos..end)
            .ok_or_else(|| self.truncated(len as u64))?;
        self.pos = end;
        Ok(slice)
    }

    fn read_u8(&mut self) -> Result<u8> {
        let [b] = self.read_array::<1>()?;
        Ok(b)
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.read_exact(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn read_u64_le(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.read_array()?))
    }

    /// An 8-byte length, checked against the remaining input before any use.
    fn read_len_u64(&mut self) -> Result<usize> {
        let len = self.read_u64_le()?;
        if len > (self.data.len() - self.pos) as u64 {
            return Err(self.truncated(len));
        }
        usize::try_from(len).map_err(|_| self.truncated(len))
    }

    /// A protocol-0 argument line, without its `\n`.
    fn read_line(&mut self) -> Result<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(WireError::Truncated {
                offset: self.data.len(),
                needed: 1,
            });
        };
        let line = rest.get(..nl).unwrap_or_default();
        self.pos += nl + 1;
        Ok(line)
    }

    fn read_text_line(&mut self) -> Result<String> {
        let offset = self.pos;
        let line = self.read_line()?;
        std::str::from_utf8(line)
            .map(str::to_owned)
            .map_err(|_| WireError::InvalidUtf8 { offset })
    }

    // ---- errors ----

    fn malformed(&self, reason: &str) -> WireError {
        WireError::Malformed {
            offset: self.op_pos,
            reason: reason.to_owned(),
        }
    }

    fn underflow(&self) -> WireError {
        WireError::StackUnderflow {
            offset: self.op_pos,
        }
    }

    // ---- budget ----

    fn charge(&mut self, nodes: u64, bytes: u64) -> Result<()> {
        self.values = self.values.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.values > self.limits.max_values {
            return Err(WireError::LimitExceeded {
                what: "number of values",
                limit: self.limits.max_values,
            });
        }
        if self.bytes > self.limits.max_bytes {
            return Err(WireError::LimitExceeded {
                what: "bytes of str/bytes/int data",
                limit: self.limits.max_bytes,
            });
        }
        Ok(())
    }

    fn check_depth(&self, depth: usize) -> Result<()> {
        if depth > self.limits.max_depth {
            return Err(WireError::LimitExceeded {
                what: "nesting depth",
                limit: self.limits.max_depth as u64,
            });
        }
        Ok(())
    }

    // ---- stack ----

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Item> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        self.stack.pop().ok_or_else(|| self.underflow())
    }

    fn top(&self) -> Result<&Item> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        self.stack.last().ok_or_else(|| self.underflow())
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>> {
        let mark = self.marks.pop().ok_or(WireError::MissingMark {
            offset: self.op_pos,
        })?;
        if mark > self.stack.len() {
            return Err(self.underflow());
        }
        Ok(self.stack.split_off(mark))
    }

    fn push_item(&mut self, item: Item) -> Result<()> {
        self.stack.push(item);
        Ok(())
    }

    fn push_leaf(&mut self, value: Value, bytes: usize) -> Result<()> {
        self.charge(1, bytes as u64)?;
        self.stack.push(Item::leaf(value, bytes));
        Ok(())
    }

    fn push_bytes(&mut self, len: usize) -> Result<()> {
        let raw = Bytes::copy_from_slice(self.read_exact(len)?);
        self.push_leaf(Value::Bytes(raw), len)
    }

    fn push_str(&mut self, len: usize) -> Result<()> {
        let offset = self.pos;
        let raw = self.read_exact(len)?;
        let s = std::str::from_utf8(raw)
            .map_err(|_| WireError::InvalidUtf8 { offset })?
            .to_owned();
        self.push_leaf(Value::Str(s), len)
    }

    /// Wrap items into one container value, accounting depth and cost.
    fn container(&mut self, items: Vec<Item>, make: fn(Vec<Value>) -> Value) -> Result<Item> {
        let mut nodes = 1u64;
        let mut bytes = 0u64;
        let mut depth = 0usize;
        let mut values = Vec::with_capacity(items.len());
        for item in items {
            nodes = nodes.saturating_add(item.nodes);
            bytes = bytes.saturating_add(item.bytes);
            depth = depth.max(item.depth + 1);
            values.push(item.value);
        }
        self.check_depth(depth)?;
        self.charge(1, 0)?;
        Ok(Item {
            value: make(values),
            nodes,
            bytes,
            depth,
        })
    }

    fn push_container(&mut self, items: Vec<Item>, make: fn(Vec<Value>) -> Value) -> Result<()> {
        let item = self.container(items, make)?;
        self.push_item(item)
    }

    fn build_dict(&mut self, items: Vec<Item>) -> Result<Item> {
        if items.len() & 1 == 1 {
            return Err(self.malformed("odd number of items for a dict"));
        }
        let mut dict = Item::leaf(Value::Dict(Vec::new()), 0);
        self.charge(1, 0)?;
        self.absorb_pairs(&mut dict, items)?;
        Ok(dict)
    }

    /// Add cost and depth of `child` to `parent`.
    fn absorb(&self, parent: &mut Item, child: &Item) -> Result<()> {
        parent.nodes = parent.nodes.saturating_add(child.nodes);
        parent.bytes = parent.bytes.saturating_add(child.bytes);
        parent.depth = parent.depth.max(child.depth + 1);
        self.check_depth(parent.depth)
    }

    fn absorb_pairs(&self, target: &mut Item, items: Vec<Item>) -> Result<()> {
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut iter = items.into_iter();
        while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
            self.absorb(target, &k)?;
            self.absorb(target, &v)?;
            pairs.push((k.value, v.value));
        }
        match &mut target.value {
            Value::Dict(d) => d.extend(pairs),
            Value::Object(obj) => obj.dictitems.extend(pairs),
            _ => return Err(self.malformed("SETITEM(S) target is not a dict")),
        }
        Ok(())
    }

    /// APPEND/APPENDS/ADDITEMS: onto a list, a set, or an opaque object's list items.
    fn extend_top(&mut self, items: Vec<Item>) -> Result<()> {
        let fence = self.fence();
        if self.stack.len() <= fence {
            return Err(self.underflow());
        }
        let mut target = self.stack.pop().ok_or_else(|| self.underflow())?;
        for item in &items {
            self.absorb(&mut target, item)?;
        }
        let values = items.into_iter().map(|i| i.value);
        match &mut target.value {
            Value::List(v) | Value::Set(v) => v.extend(values),
            Value::Object(obj) => obj.listitems.extend(values),
            _ => return Err(self.malformed("APPEND(S)/ADDITEMS target is not a list or set")),
        }
        self.stack.push(target);
        Ok(())
    }

    fn set_items_on_top(&mut self, items: Vec<Item>) -> Result<()> {
        if items.len() & 1 == 1 {
            return Err(self.malformed("odd number of items for SETITEMS"));
        }
        let fence = self.fence();
        if self.stack.len() <= fence {
            return Err(self.underflow());
        }
        let mut target = self.stack.pop().ok_or_else(|| self.underflow())?;
        self.absorb_pairs(&mut target, items)?;
        self.stack.push(target);
        Ok(())
    }

    fn push_object(
        &mut self,
        kind: ObjectKind,
        callable: Item,
        args: Item,
        kwargs: Option<Item>,
    ) -> Result<()> {
        let mut item = Item::leaf(Value::None, 0);
        self.charge(1, 0)?;
        self.absorb(&mut item, &callable)?;
        self.absorb(&mut item, &args)?;
        if let Some(kw) = &kwargs {
            self.absorb(&mut item, kw)?;
        }
        item.value = Value::Object(Box::new(PickledObject {
            kind,
            callable: callable.value,
            args: args.value,
            kwargs: kwargs.map(|kw| kw.value),
            state: None,
            listitems: Vec::new(),
            dictitems: Vec::new(),
        }));
        self.push_item(item)
    }

    fn build_top(&mut self, state: Item) -> Result<()> {
        let mut target = self.pop()?;
        self.absorb(&mut target, &state)?;
        match &mut target.value {
            Value::Object(obj) if obj.state.is_none() => {
                obj.state = Some(state.value);
                self.push_item(target)
            }
            _ => {
                let args = Item::leaf(Value::Tuple(Vec::new()), 0);
                self.charge(2, 0)?;
                let mut item = Item::leaf(Value::None, 0);
                self.absorb(&mut item, &target)?;
                self.absorb(&mut item, &state)?;
                item.value = Value::Object(Box::new(PickledObject {
                    kind: ObjectKind::Build,
                    callable: target.value,
                    args: args.value,
                    kwargs: None,
                    state: Some(state.value),
                    listitems: Vec::new(),
                    dictitems: Vec::new(),
                }));
                self.push_item(item)
            }
        }
    }

    fn push_persistent_id(&mut self, pid: Item) -> Result<()> {
        self.persistent_ids.push(pid.value.clone());
        self.charge(pid.nodes.saturating_add(1), pid.bytes)?;
        let depth = pid.depth + 1;
        self.check_depth(depth)?;
        self.push_item(Item {
            nodes: pid.nodes + 1,
            bytes: pid.bytes,
            depth,
            value: Value::PersistentId(Box::new(pid.value)),
        })
    }

    // ---- memo ----

    fn memoize(&mut self, key: u64) -> Result<()> {
        let top = self.top()?.clone();
        if !self.memo.contains_key(&key) && self.memo.len() >= self.limits.max_memo {
            return Err(WireError::LimitExceeded {
                what: "memo entries",
                limit: self.limits.max_memo as u64,
            });
        }
        self.charge(top.nodes, top.bytes)?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn recall(&mut self, key: u64) -> Result<()> {
        let item = self.memo.get(&key).cloned().ok_or(WireError::MemoMissing {
            key,
            offset: self.op_pos,
        })?;
        self.charge(item.nodes, item.bytes)?;
        self.push_item(item)
    }

    // ---- text protocol ----

    fn parse_text_int(&self, text: &[u8]) -> Result<Value> {
        let text = std::str::from_utf8(text)
            .map_err(|_| self.malformed("INT/LONG argument is not ASCII"))?
            .trim();
        let digits = text.trim_start_matches(['+', '-']).len();
        if digits > self.limits.max_int_digits {
            return Err(WireError::LimitExceeded {
                what: "digits in a text integer",
                limit: self.limits.max_int_digits as u64,
            });
        }
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::Int(n));
        }
        let n: BigInt = text
            .replace('_', "")
            .parse()
            .map_err(|_| self.malformed("INT/LONG argument is not an integer"))?;
        Ok(Value::from_bigint(n))
    }

    /// STRING's argument: a quoted Python 2 `repr` of a str, escapes decoded.
    fn unquote_string(&self, line: &[u8]) -> Result<Vec<u8>> {
        let quoted = match line {
            [first, inner @ .., last] if first == last && (*first == b'\'' || *first == b'"') => {
                inner
            }
            _ => return Err(self.malformed("STRING argument must be quoted")),
        };
        escape_decode(quoted).ok_or_else(|| self.malformed("bad escape in STRING"))
    }
}

fn parse_decimal_u64(line: &[u8]) -> Option<u64> {
    std::str::from_utf8(line).ok()?.trim().parse().ok()
}

/// Python's `codecs.escape_decode` (used by STRING).
fn escape_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&esc) = input.get(i) else {
            return None; // trailing backslash: "\\ at end of string"
        };
        i += 1;
        match esc {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(esc),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut n = u32::from(esc - b'0');
                for _ in 0..2 {
                    match input.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            n = n * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((n & 0xff) as u8);
            }
            b'x' => {
                let hex = input.get(i..i + 2)?;
                let s = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(s, 16).ok()?);
                i += 2;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Python's `raw-unicode-escape` decoding (used by UNICODE): bytes are Latin-1
/// except `\uXXXX` / `\UXXXXXXXX` after an odd run of backslashes.
fn raw_unicode_escape(input: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut backslashes = 0usize;
    while let Some(&b) = input.get(i) {
        if b == b'\\' {
            backslashes += 1;
            out.push('\\');
            i += 1;
            continue;
        }
        let odd = backslashes % 2 == 1;
        backslashes = 0;
        if odd && (b == b'u' || b == b'U') {
            let width = if b == b'u' { 4 } else { 8 };
            let hex = input.get(i + 1..i + 1 + width)?;
            let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.pop(); // the backslash that started the escape
            out.push(char::from_u32(code)?);
            i += 1 + width;
            continue;
        }
        out.push(char::from(b));
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dec(bytes: &[u8]) -> Value {
        decode(bytes).unwrap()
    }

    #[test]
    fn protocol3_message() {
        let raw = hex_literal("8003284b0189580800000072656769737465725801000000314b0086742e");
        assert_eq!(dec(&raw), Value::from((1, false, "register", ("1", 0))));
    }

    #[test]
    fn text_protocol_opcodes() {
        assert_eq!(dec(b"I42\n."), Value::Int(42));
        assert_eq!(dec(b"I01\n."), Value::Bool(true));
        assert_eq!(dec(b"I00\n."), Value::Bool(false));
        assert_eq!(
            dec(b"L123456789012345678901234567890L\n.").python_repr(),
            "123456789012345678901234567890"
        );
        assert_eq!(dec(b"F1.5\n."), Value::Float(1.5));
        assert_eq!(dec(b"S'a\\nb\\x41\\''\n."), Value::from(&b"a\nbA'"[..]));
        assert_eq!(dec(b"Vh\\u00e9llo\n."), Value::from("héllo"));
        assert_eq!(dec(b"(I1\nI2\nl."), Value::list([1, 2]));
        assert_eq!(
            dec(b"(S'k'\nI1\nd."),
            Value::Dict(vec![(Value::from(&b"k"[..]), Value::Int(1))])
        );
        assert_eq!(dec(b"(I1\nI2\nt."), Value::from((1, 2)));
        assert_eq!(dec(b"(lp0\nI1\nag0\n."), Value::List(vec![])); // memo snapshot
    }

    #[test]
    fn binary_strings_and_protocol4() {
        assert_eq!(dec(b"U\x03abc."), Value::from(&b"abc"[..]));
        assert_eq!(dec(b"T\x02\x00\x00\x00ab."), Value::from(&b"ab"[..]));
        let p4 = b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x8c\x03abc\x94\x8f(K\x01\x90.";
        assert_eq!(dec(p4), Value::Set(vec![Value::Int(1)]));
        assert_eq!(
            dec(b"\x80\x04\x8c\x01a\x94h\x00\x86."),
            Value::from(("a", "a"))
        );
        assert_eq!(
            dec(b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00hi."),
            Value::ByteArray(Bytes::from_static(b"hi"))
        );
        assert_eq!(dec(b"\x80\x02\x8a\x00."), Value::Int(0));
        assert_eq!(dec(b"\x80\x02\x8a\x01\xff."), Value::Int(-1));
    }

    #[test]
    fn objects_stay_opaque() {
        // copy_reg._reconstructor style: GLOBAL, args, REDUCE, BUILD
        let v = dec(b"\x80\x02cfoo\nBar\nq\x00)\x81q\x01}q\x02U\x01xK\x01sb.");
        let Value::Object(obj) = v else {
            panic!("not an object")
        };
        assert_eq!(obj.kind, ObjectKind::NewObj);
        assert_eq!(
            obj.callable,
            Value::Global {
                module: "foo".into(),
                name: "Bar".into()
            }
        );
        assert_eq!(
            obj.state,
            Some(Value::Dict(vec![(Value::from(&b"x"[..]), Value::Int(1))]))
        );
        let pid = dec(b"\x80\x02U\x08\x00\x00\x00\x00\x00\x00\x00\x01Q.");
        assert_eq!(
            pid,
            Value::PersistentId(Box::new(Value::from([0, 0, 0, 0, 0, 0, 0, 1u8])))
        );
        assert_eq!(dec(b"\x80\x02\x82\x05."), Value::Extension(5));
        assert!(matches!(dec(b"c__main__\nX\n)\x81}b."), Value::Object(_)));
        assert!(matches!(dec(b"(c__main__\nX\no."), Value::Object(_)));
        assert!(matches!(dec(b"(i__main__\nX\n."), Value::Object(_)));
    }

    #[test]
    fn prefix_reads_two_pickles() {
        let mut two = encode_simple(&Value::from(("a", "b")));
        let first_len = two.len();
        two.extend(encode_simple(&Value::Int(5)));
        let (first, used) = decode_prefix(&two).unwrap();
        assert_eq!(first, Value::from(("a", "b")));
        assert_eq!(used, first_len);
        assert_eq!(
            decode_prefix(&two[used..]).unwrap(),
            (Value::Int(5), two.len() - used)
        );
        assert_eq!(
            decode(&two),
            Err(WireError::TrailingBytes {
                count: two.len() - used
            })
        );
    }

    #[test]
    fn hostile_inputs_error_cleanly() {
        assert_eq!(decode(b""), Err(WireError::MissingStop));
        assert_eq!(decode(b"N"), Err(WireError::MissingStop));
        assert!(matches!(
            decode(b"."),
            Err(WireError::StackUnderflow { .. })
        ));
        assert!(matches!(
            decode(b"(."),
            Err(WireError::StackUnderflow { .. })
        ));
        assert!(matches!(decode(b"N(0."), Ok(Value::None))); // POP of an empty mark pops the mark
        assert!(matches!(
            decode(b"B\xff\xff\xff\xff."),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            decode(b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff."),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            decode(b"\x95\xff\xff\xff\xff\xff\xff\xff\xffN."),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            decode(b"h\x01."),
            Err(WireError::MemoMissing { .. })
        ));
        assert!(matches!(
            decode(b"\x80\x06N."),
            Err(WireError::UnsupportedProtocol(6))
        ));
        assert!(matches!(
            decode(b"\x97."),
            Err(WireError::UnsupportedOpcode { .. })
        ));
        assert!(matches!(
            decode(b"\xff"),
            Err(WireError::UnknownOpcode { .. })
        ));
        assert!(matches!(decode(b"t."), Err(WireError::MissingMark { .. })));
        assert!(matches!(
            decode(b"X\x02\x00\x00\x00\xff\xfe."),
            Err(WireError::InvalidUtf8 { .. })
        ));
        assert!(matches!(
            decode(b"NK\x01a."),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            decode(b"N(\x85."),
            Err(WireError::StackUnderflow { .. })
        ));
    }

    #[test]
    fn depth_limit() {
        let mut deep = vec![b']'; 300];
        deep.extend(std::iter::repeat_n(b'a', 299));
        deep.push(b'.');
        assert!(matches!(
            decode(&deep),
            Err(WireError::LimitExceeded {
                what: "nesting depth",
                ..
            })
        ));
        let limits = DecodeLimits {
            max_depth: 400,
            ..DecodeLimits::default()
        };
        assert!(decode_with_limits(&deep, &limits).is_ok());
    }

    #[test]
    fn memo_amplification_is_bounded() {
        // A 1000-item list memoized, then fetched and wrapped many times.
        let mut p = b"\x80\x02](".to_vec();
        p.extend(std::iter::repeat_n(b'N', 1000));
        p.extend(b"eq\x00(");
        p.extend(std::iter::repeat_n(b"h\x00", 20_000).flatten());
        p.extend(b"t.");
        let limits = DecodeLimits {
            max_values: 1_000_000,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            decode_with_limits(&p, &limits),
            Err(WireError::LimitExceeded {
                what: "number of values",
                ..
            })
        ));
    }

    #[test]
    fn memo_size_limit() {
        let limits = DecodeLimits {
            max_memo: 2,
            ..DecodeLimits::default()
        };
        assert!(decode_with_limits(b"N\x94\x94.", &limits).is_ok());
        assert!(decode_with_limits(b"N\x94\x94\x94.", &limits).is_err());
    }

    #[test]
    fn text_int_digit_limit() {
        let mut p = b"L".to_vec();
        p.extend(std::iter::repeat_n(b'9', 5000));
        p.extend(b"L\n.");
        assert!(matches!(decode(&p), Err(WireError::LimitExceeded { .. })));
    }

    fn encode_simple(v: &Value) -> Vec<u8> {
        super::super::encode(v).unwrap()
    }

    fn hex_literal(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}

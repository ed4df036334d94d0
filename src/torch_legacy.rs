//! Reader for PyTorch's *legacy* (pre-1.6, non-zip) `torch.save` format, enough for a state dict.
//!
//! Layout: five pickles in a row — magic number, protocol version, sys info, the object (tensors
//! point at storages through persistent ids), the list of storage keys — then every storage in key
//! order as a little-endian `u64` element count followed by its raw bytes.
//!
//! The pickle machine here is a small, safe subset: it builds plain values and only knows three kinds
//! of global (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch.*Storage`). Any
//! other global is refused by name; nothing is ever executed.

use std::collections::HashMap;

use crate::error::{invalid, Result};

const LEGACY_MAGIC: &[u8] = b"\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"; // 0x1950a86a20f9469cfc6c, LE
const PROTOCOL_VERSION: i64 = 1001;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    F64,
    F16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDtype {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A tensor as the checkpoint describes it: a strided view into one storage.
#[derive(Debug, Clone)]
pub struct TensorView {
    pub storage_key: String,
    pub dtype: StorageDtype,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Value {
    None,
    /// A value read but never inspected (booleans, floats).
    Other,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    LegacyMagic,
    Storage {
        key: String,
        dtype: StorageDtype,
    },
    Tensor(TensorView),
    Mark,
}

#[derive(Debug, Clone, Copy)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    Storage(StorageDtype),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Result<Self> {
        match (module, name) {
            ("collections", "OrderedDict") => Ok(Self::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Ok(Self::RebuildTensorV2),
            ("torch", _) if StorageDtype::from_name(name).is_some() => {
                Ok(Self::Storage(StorageDtype::from_name(name).unwrap()))
            }
            _ => Err(invalid!("refusing pickle global `{module}.{name}`: only state dicts of tensors are loaded")),
        }
    }
}

/// A state dict read from a legacy checkpoint, with its storages.
pub struct StateDict {
    pub tensors: Vec<(String, TensorView)>,
    storages: HashMap<String, (StorageDtype, Vec<u8>)>,
}

impl StateDict {
    pub fn get(&self, name: &str) -> Option<&TensorView> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Reads a float tensor into a contiguous row-major `Vec<f32>`, honouring its size, stride and
    /// storage offset (the weights of interest are stored in TensorFlow order, not contiguously).
    pub fn f32_contiguous(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let view = self.get(name).ok_or_else(|| invalid!("checkpoint has no tensor `{name}`"))?;
        if view.dtype != StorageDtype::F32 {
            return Err(invalid!("tensor `{name}` is {:?}, expected float32", view.dtype));
        }
        let (_, bytes) = &self.storages[&view.storage_key];
        let storage_numel = bytes.len() / 4;
        let numel: usize = view.size.iter().product();
        if numel > 0 {
            let last = view.offset + view.size.iter().zip(&view.stride).map(|(&n, &s)| (n - 1) * s).sum::<usize>();
            if last >= storage_numel {
                return Err(invalid!("tensor `{name}` reaches element {last} of a storage of {storage_numel}"));
            }
        }
        let read = |i: usize| f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
        let mut out = Vec::with_capacity(numel);
        let mut index = vec![0usize; view.size.len()];
        for _ in 0..numel {
            let at = view.offset + index.iter().zip(&view.stride).map(|(i, s)| i * s).sum::<usize>();
            out.push(read(at));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < view.size[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok((view.size.clone(), out))
    }
}

/// Parses a whole legacy checkpoint. Truncated input and trailing bytes are errors.
pub fn read_state_dict(bytes: &[u8]) -> Result<StateDict> {
    let mut r = Reader { bytes, pos: 0, storages: Vec::new() };
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(invalid!("this is a zip-format torch checkpoint (torch >= 1.6); only the legacy format is read"));
    }
    if !bytes.starts_with(&[0x80]) || !matches!(r.pickle()?, Value::LegacyMagic) {
        return Err(invalid!("not a legacy torch checkpoint (no magic number)"));
    }
    match r.pickle()? {
        Value::Int(PROTOCOL_VERSION) => {}
        v => return Err(invalid!("unsupported torch protocol version {v:?}")),
    }
    let _sys_info = r.pickle()?;
    let object = r.pickle()?;
    let keys = match r.pickle()? {
        Value::List(keys) => keys,
        _ => return Err(invalid!("storage key list is not a list")),
    };

    let mut storage_types: HashMap<String, (StorageDtype, usize)> = HashMap::new();
    let entries = match object {
        Value::Dict(entries) => entries,
        _ => return Err(invalid!("checkpoint does not hold a state dict")),
    };
    let mut tensors = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            return Err(invalid!("state dict entry is not a (name, tensor) pair"));
        };
        tensors.push((name, t));
    }
    // Storages declared by persistent ids, in the order the reader met them.
    for (key, dtype, numel) in r.storages.drain(..) {
        storage_types.insert(key, (dtype, numel));
    }

    let mut storages = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(invalid!("storage key is not a string"));
        };
        let &(dtype, numel) =
            storage_types.get(&key).ok_or_else(|| invalid!("storage `{key}` is listed but no tensor uses it"))?;
        let count = u64::from_le_bytes(r.take(8)?.try_into().unwrap()) as usize;
        if count != numel {
            return Err(invalid!("storage `{key}` holds {count} elements, expected {numel}"));
        }
        let len = count.checked_mul(dtype.size_in_bytes()).ok_or_else(|| invalid!("storage `{key}` is too large"))?;
        storages.insert(key, (dtype, r.take(len)?.to_vec()));
    }
    if r.pos != bytes.len() {
        return Err(invalid!("{} trailing bytes after the last storage", bytes.len() - r.pos));
    }
    for (name, t) in &tensors {
        if !storages.contains_key(&t.storage_key) {
            return Err(invalid!("tensor `{name}` uses storage `{}` which is missing", t.storage_key));
        }
    }
    Ok(StateDict { tensors, storages })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    #[allow(clippy::type_complexity)]
    storages: Vec<(String, StorageDtype, usize)>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| invalid!("file is truncated (at byte {})", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| invalid!("file is truncated (unterminated pickle line)"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| invalid!("pickle line is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| invalid!("pickle string is not UTF-8"))
    }

    /// Runs one pickle up to its STOP and returns the value it built.
    fn pickle(&mut self) -> Result<Value> {
        let mut stack: Vec<Value> = Vec::new();
        let mut memo: HashMap<u32, Value> = HashMap::new();
        let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| invalid!("pickle stack underflow"));
        let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>> {
            let at =
                stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or_else(|| invalid!("pickle MARK missing"))?;
            let items = stack.split_off(at + 1);
            stack.pop();
            Ok(items)
        };
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(invalid!("unsupported pickle protocol {p}"));
                    }
                }
                b'.' => return pop(&mut stack), // STOP
                b'(' => stack.push(Value::Mark),
                b'N' => stack.push(Value::None),
                0x88 | 0x89 => stack.push(Value::Other),
                b'K' => stack.push(Value::Int(self.u8()? as i64)),
                b'M' => stack.push(Value::Int(self.u16()? as i64)),
                b'J' => stack.push(Value::Int(self.u32()? as i32 as i64)),
                0x8a => {
                    // LONG1: only the legacy magic number is this long.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n <= 8 {
                        let mut buf = [if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 }; 8];
                        buf[..n].copy_from_slice(b);
                        stack.push(Value::Int(i64::from_le_bytes(buf)));
                    } else if b == LEGACY_MAGIC {
                        stack.push(Value::LegacyMagic);
                    } else {
                        return Err(invalid!("not a legacy torch checkpoint (bad magic number)"));
                    }
                }
                b'G' => {
                    self.take(8)?;
                    stack.push(Value::Other)
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    stack.push(Value::Str(self.utf8(n)?))
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    stack.push(Value::Str(self.utf8(n)?))
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    stack.push(Value::Str(self.utf8(n)?))
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    stack.push(Value::Str(self.utf8(n)?))
                }
                b'}' => stack.push(Value::Dict(Vec::new())),
                b']' => stack.push(Value::List(Vec::new())),
                b')' => stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n {
                        return Err(invalid!("pickle stack underflow"));
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(items))
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    memo.insert(k, stack.last().cloned().ok_or_else(|| invalid!("empty stack"))?);
                }
                b'r' => {
                    let k = self.u32()?;
                    memo.insert(k, stack.last().cloned().ok_or_else(|| invalid!("empty stack"))?);
                }
                b'h' | b'j' => {
                    let k = if op == b'h' { self.u8()? as u32 } else { self.u32()? };
                    stack.push(memo.get(&k).cloned().ok_or_else(|| invalid!("bad memo {k}"))?)
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?;
                    stack.push(Value::Global(Global::resolve(&module, name)?))
                }
                b's' => {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    match stack.last_mut() {
                        Some(Value::Dict(d)) => d.push((k, v)),
                        _ => return Err(invalid!("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = pop_mark(&mut stack)?;
                    let Some(Value::Dict(d)) = stack.last_mut() else {
                        return Err(invalid!("SETITEMS on a non-dict"));
                    };
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                b'a' | b'e' => {
                    let items = if op == b'a' { vec![pop(&mut stack)?] } else { pop_mark(&mut stack)? };
                    match stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return Err(invalid!("APPEND on a non-list")),
                    }
                }
                b'Q' => {
                    // BINPERSID: ('storage', StorageType, key, location, numel, view_metadata)
                    let pid = pop(&mut stack)?;
                    let Value::Tuple(items) = pid else {
                        return Err(invalid!("persistent id is not a tuple"));
                    };
                    match items.as_slice() {
                        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), _, Value::Int(numel), Value::None]
                            if tag == "storage" && *numel >= 0 =>
                        {
                            self.storages.push((key.clone(), *dtype, *numel as usize));
                            stack.push(Value::Storage { key: key.clone(), dtype: *dtype })
                        }
                        _ => return Err(invalid!("unsupported persistent id {items:?}")),
                    }
                }
                b'R' => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    stack.push(reduce(callable, args)?)
                }
                b'b' => {
                    // BUILD: the OrderedDict's `_metadata` attribute; not needed.
                    pop(&mut stack)?;
                }
                _ => return Err(invalid!("unsupported pickle opcode 0x{op:02x} at byte {}", self.pos - 1)),
            }
        }
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Tuple(args) = args else {
        return Err(invalid!("REDUCE arguments are not a tuple"));
    };
    match callable {
        Value::Global(Global::OrderedDict) if args.is_empty() => Ok(Value::Dict(Vec::new())),
        Value::Global(Global::RebuildTensorV2) => match args.as_slice() {
            [Value::Storage { key, dtype }, Value::Int(offset), Value::Tuple(size), Value::Tuple(stride), ..] => {
                let dims = |v: &[Value]| -> Result<Vec<usize>> {
                    v.iter()
                        .map(|d| match d {
                            Value::Int(i) if *i >= 0 => Ok(*i as usize),
                            _ => Err(invalid!("bad tensor dimension {d:?}")),
                        })
                        .collect()
                };
                let (size, stride) = (dims(size)?, dims(stride)?);
                if size.len() != stride.len() || *offset < 0 {
                    return Err(invalid!("tensor size {size:?} and stride {stride:?} disagree"));
                }
                Ok(Value::Tensor(TensorView {
                    storage_key: key.clone(),
                    dtype: *dtype,
                    offset: *offset as usize,
                    size,
                    stride,
                }))
            }
            _ => Err(invalid!("unexpected _rebuild_tensor_v2 arguments")),
        },
        other => Err(invalid!("cannot call {other:?}")),
    }
}

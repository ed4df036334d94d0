//! The pickle machine both `torch.save` containers use, a small safe subset: it builds plain values
//! in an arena and only knows three kinds of global (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`, `torch.*Storage`). Any other global is refused by name;
//! nothing is ever executed. Every opcode reads at least one byte and adds at most one value or one
//! reference, so memory grows with the input's length, and no value is walked recursively.

use std::collections::HashMap;

use super::{StorageDtype, TensorView};
use crate::error::{invalid, Result};

/// The legacy container's magic number, a pickled long: 0x1950a86a20f9469cfc6c, little-endian.
pub(crate) const LEGACY_MAGIC: &[u8] = b"\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

/// A pickled value. Containers hold [`Id`]s into the reader's arena: a value fetched from the memo is
/// shared, not copied (a 427-byte pickle that copied its memo on every fetch grew without bound), and
/// nothing walks a value recursively, so deep nesting costs no stack and every value is dropped flat.
#[derive(Debug)]
pub(crate) enum Value {
    None,
    /// A value read but never inspected (booleans, floats).
    Other,
    Int(i64),
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    LegacyMagic,
    Storage {
        key: String,
        dtype: StorageDtype,
    },
    Tensor(TensorView),
}

/// A value's place in the arena.
pub(crate) type Id = usize;

impl Value {
    /// What kind of value this is, for messages (never the value itself: it may be huge).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Other => "a number or boolean",
            Self::Int(_) => "an integer",
            Self::Str(_) => "a string",
            Self::Tuple(_) => "a tuple",
            Self::List(_) => "a list",
            Self::Dict(_) => "a dict",
            Self::Global(_) => "a class",
            Self::LegacyMagic => "the magic number",
            Self::Storage { .. } => "a storage",
            Self::Tensor(_) => "a tensor",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Global {
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

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pub(crate) pos: usize,
    /// Every value the pickles built; containers refer into it by index.
    pub(crate) arena: Vec<Value>,
    #[allow(clippy::type_complexity)]
    /// Storages declared by persistent ids, in the order the reader met them.
    pub(crate) storages: Vec<(String, StorageDtype, usize)>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0, arena: Vec::new(), storages: Vec::new() }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
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
    fn new_value(&mut self, value: Value) -> Id {
        self.arena.push(value);
        self.arena.len() - 1
    }

    /// Runs one pickle up to its STOP and returns the value it built. Every opcode reads at least
    /// one byte and adds at most one value or one reference, so memory grows with the file's length.
    pub(crate) fn pickle(&mut self) -> Result<Id> {
        let mut stack: Vec<Id> = Vec::new();
        // Where each open MARK starts on the stack (pickle's "metastack").
        let mut marks: Vec<usize> = Vec::new();
        let mut memo: HashMap<u32, Id> = HashMap::new();
        let pop = |stack: &mut Vec<Id>| stack.pop().ok_or_else(|| invalid!("pickle stack underflow"));
        let pop_mark = |stack: &mut Vec<Id>, marks: &mut Vec<usize>| -> Result<Vec<Id>> {
            let at = marks.pop().ok_or_else(|| invalid!("pickle MARK missing"))?;
            if at > stack.len() {
                return Err(invalid!("pickle stack underflow"));
            }
            Ok(stack.split_off(at))
        };
        loop {
            let op = self.u8()?;
            let pushed = match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(invalid!("unsupported pickle protocol {p}"));
                    }
                    None
                }
                b'.' => {
                    // STOP
                    if !marks.is_empty() {
                        return Err(invalid!("pickle ends inside a MARK"));
                    }
                    return pop(&mut stack);
                }
                b'(' => {
                    marks.push(stack.len());
                    None
                }
                b'N' => Some(Value::None),
                0x88 | 0x89 => Some(Value::Other),
                b'K' => Some(Value::Int(self.u8()? as i64)),
                b'M' => Some(Value::Int(self.u16()? as i64)),
                b'J' => Some(Value::Int(self.u32()? as i32 as i64)),
                0x8a => {
                    // LONG1: only the legacy magic number is this long.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n <= 8 {
                        let mut buf = [if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 }; 8];
                        buf[..n].copy_from_slice(b);
                        Some(Value::Int(i64::from_le_bytes(buf)))
                    } else if b == LEGACY_MAGIC {
                        Some(Value::LegacyMagic)
                    } else {
                        return Err(invalid!("not a legacy torch checkpoint (bad magic number)"));
                    }
                }
                b'G' => {
                    self.take(8)?;
                    Some(Value::Other)
                }
                b'X' | b'T' => {
                    let n = self.u32()? as usize;
                    Some(Value::Str(self.utf8(n)?))
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    Some(Value::Str(self.utf8(n)?))
                }
                b'}' => Some(Value::Dict(Vec::new())),
                b']' => Some(Value::List(Vec::new())),
                b')' => Some(Value::Tuple(Vec::new())),
                b't' => Some(Value::Tuple(pop_mark(&mut stack, &mut marks)?)),
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n + marks.last().copied().unwrap_or(0) {
                        return Err(invalid!("pickle stack underflow"));
                    }
                    Some(Value::Tuple(stack.split_off(stack.len() - n)))
                }
                b'q' | b'r' => {
                    // BINPUT / LONG_BINPUT: the memo shares the value on the stack.
                    let k = if op == b'q' { self.u8()? as u32 } else { self.u32()? };
                    memo.insert(k, *stack.last().ok_or_else(|| invalid!("pickle stack underflow"))?);
                    None
                }
                b'h' | b'j' => {
                    // BINGET / LONG_BINGET
                    let k = if op == b'h' { self.u8()? as u32 } else { self.u32()? };
                    stack.push(*memo.get(&k).ok_or_else(|| invalid!("bad memo {k}"))?);
                    None
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?;
                    Some(Value::Global(Global::resolve(&module, name)?))
                }
                b's' | b'u' => {
                    // SETITEM / SETITEMS
                    let items = if op == b's' {
                        let v = pop(&mut stack)?;
                        vec![pop(&mut stack)?, v]
                    } else {
                        pop_mark(&mut stack, &mut marks)?
                    };
                    if items.len() % 2 != 0 {
                        return Err(invalid!("SETITEMS with an odd number of items"));
                    }
                    let target = *stack.last().ok_or_else(|| invalid!("SETITEM on an empty stack"))?;
                    let Value::Dict(d) = &mut self.arena[target] else {
                        return Err(invalid!("SETITEM on a non-dict"));
                    };
                    d.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                    None
                }
                b'a' | b'e' => {
                    // APPEND / APPENDS
                    let items = if op == b'a' { vec![pop(&mut stack)?] } else { pop_mark(&mut stack, &mut marks)? };
                    let target = *stack.last().ok_or_else(|| invalid!("APPEND on an empty stack"))?;
                    let Value::List(l) = &mut self.arena[target] else {
                        return Err(invalid!("APPEND on a non-list"));
                    };
                    l.extend(items);
                    None
                }
                b'Q' => {
                    // BINPERSID: ('storage', StorageType, key, location, numel, view_metadata)
                    let pid = pop(&mut stack)?;
                    Some(self.persistent_storage(pid)?)
                }
                b'R' => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    Some(self.reduce(callable, args)?)
                }
                b'b' => {
                    // BUILD: the OrderedDict's `_metadata` attribute; not needed.
                    pop(&mut stack)?;
                    None
                }
                _ => return Err(invalid!("unsupported pickle opcode 0x{op:02x} at byte {}", self.pos - 1)),
            };
            if let Some(value) = pushed {
                let id = self.new_value(value);
                stack.push(id);
            }
        }
    }

    /// A persistent id naming a storage: `('storage', StorageType, key, location, numel)` in the zip
    /// container, with a sixth item (view metadata, always None) in the legacy one.
    fn persistent_storage(&mut self, pid: Id) -> Result<Value> {
        let unsupported = |why: &str| invalid!("unsupported persistent id: {why}");
        let Value::Tuple(items) = &self.arena[pid] else {
            return Err(unsupported(self.arena[pid].kind()));
        };
        let items: Vec<&Value> = items.iter().map(|&i| &self.arena[i]).collect();
        match items.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), _, Value::Int(numel), rest @ ..]
                if tag == "storage" && matches!(rest, [] | [Value::None]) =>
            {
                let numel = usize::try_from(*numel).map_err(|_| unsupported("a negative or huge element count"))?;
                let (key, dtype) = (key.clone(), *dtype);
                self.storages.push((key.clone(), dtype, numel));
                Ok(Value::Storage { key, dtype })
            }
            _ => Err(unsupported("expected ('storage', type, key, location, numel)")),
        }
    }

    fn reduce(&self, callable: Id, args: Id) -> Result<Value> {
        let Value::Tuple(args) = &self.arena[args] else {
            return Err(invalid!("REDUCE arguments are {}, not a tuple", self.arena[args].kind()));
        };
        let args: Vec<&Value> = args.iter().map(|&i| &self.arena[i]).collect();
        match &self.arena[callable] {
            Value::Global(Global::OrderedDict) if args.is_empty() => Ok(Value::Dict(Vec::new())),
            Value::Global(Global::RebuildTensorV2) => match args.as_slice() {
                [Value::Storage { key, dtype }, Value::Int(offset), Value::Tuple(size), Value::Tuple(stride), ..] => {
                    let dims = |v: &[Id]| -> Result<Vec<usize>> {
                        v.iter()
                            .map(|&d| match self.arena[d] {
                                Value::Int(i) => usize::try_from(i).map_err(|_| invalid!("bad tensor dimension {i}")),
                                ref other => Err(invalid!("a tensor dimension is {}", other.kind())),
                            })
                            .collect()
                    };
                    let (size, stride) = (dims(size)?, dims(stride)?);
                    let offset = usize::try_from(*offset).map_err(|_| invalid!("bad tensor offset {offset}"))?;
                    if size.len() != stride.len() {
                        return Err(invalid!("tensor size {size:?} and stride {stride:?} disagree"));
                    }
                    Ok(Value::Tensor(TensorView { storage_key: key.clone(), dtype: *dtype, offset, size, stride }))
                }
                _ => Err(invalid!("unexpected _rebuild_tensor_v2 arguments")),
            },
            other => Err(invalid!("cannot call {}", other.kind())),
        }
    }
}

impl Reader<'_> {
    /// The (name, tensor) entries of the state dict at `object`.
    pub(crate) fn state_dict_entries(&self, object: Id) -> Result<Vec<(String, TensorView)>> {
        let Value::Dict(entries) = &self.arena[object] else {
            return Err(invalid!("checkpoint does not hold a state dict (it holds {})", self.arena[object].kind()));
        };
        entries
            .iter()
            .map(|&(k, v)| match (&self.arena[k], &self.arena[v]) {
                (Value::Str(name), Value::Tensor(t)) => Ok((name.clone(), t.clone())),
                _ => Err(invalid!("state dict entry is not a (name, tensor) pair")),
            })
            .collect()
    }
}

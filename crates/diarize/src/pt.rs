//! Reading PyTorch checkpoints (zip + pickle) into named tensors, without torch.
//!
//! `torch.save` writes a zip archive (entries stored, not compressed): `<archive>/data.pkl`
//! is a pickle of the saved object in which every tensor is a call of
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and every storage a
//! persistent id `('storage', torch.FloatStorage, key, location, numel)` whose bytes are the
//! member `<archive>/data/<key>` (little-endian). This module runs a small pickle machine over
//! `data.pkl`, keeps everything it does not know (Lightning hyper-parameters, version objects,
//! ...) as opaque values, and gathers every tensor reachable from the root under its path of
//! dict keys joined with `.` (`state_dict.sincnet.conv1d.1.weight`).
//!
//! Every size read from the file is checked against what the archive actually holds before
//! anything is allocated, so a truncated or corrupt file gives [`Error::Format`], never a panic
//! or an unbounded allocation.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use crate::{Error, Result, Tensor};

/// The tensors of a checkpoint, by name.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// Reads every tensor of the checkpoint at `path` (converted to f32, made contiguous).
    pub fn load(path: &Path) -> Result<Weights> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Weights::from_bytes(&bytes, path)
    }

    /// As [`Weights::load`], from the checkpoint's bytes (`path` only names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Weights> {
        let fail = |reason: String| Error::Format {
            path: path.to_path_buf(),
            reason,
        };
        let tensors = read_checkpoint(bytes).map_err(fail)?;
        Ok(Weights { tensors })
    }

    /// The tensor called `name`; [`Error::Weights`] naming it when there is none.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Weights(format!("no tensor named {name:?} in the checkpoint")))
    }

    /// The names of all tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensors whose names start with `prefix.`, with that part stripped
    /// (`with_prefix("state_dict")` turns a Lightning checkpoint into its model's state dict).
    pub fn with_prefix(&self, prefix: &str) -> Weights {
        let prefix = prefix.trim_end_matches('.');
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(name, t)| {
                let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
                Some((rest.to_string(), t.clone()))
            })
            .collect();
        Weights { tensors }
    }
}

type Fallible<T> = std::result::Result<T, String>;

fn read_checkpoint(bytes: &[u8]) -> Fallible<BTreeMap<String, Tensor>> {
    let zip = Zip::parse(bytes)?;
    let pkl_name = zip
        .entries
        .keys()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .ok_or("no data.pkl in the archive (not a torch.save checkpoint)")?
        .clone();
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    let pickle = zip.read(&pkl_name)?;
    let root = Unpickler::new(pickle).run()?;

    let mut found = Vec::new();
    let mut seen = HashSet::new();
    collect(&root, String::new(), 0, &mut seen, &mut found);
    let mut tensors = BTreeMap::new();
    for (name, t) in found {
        let storage_name = format!("{prefix}data/{}", t.storage.key);
        let data = zip
            .read(&storage_name)
            .map_err(|e| format!("tensor {name:?}: {e}"))?;
        let tensor = materialize(&t, data).map_err(|e| format!("tensor {name:?}: {e}"))?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

// ---------------------------------------------------------------------------------------------
// Zip (stored entries, zip64 sizes and offsets understood).

struct Zip<'a> {
    bytes: &'a [u8],
    entries: HashMap<String, ZipEntry>,
}

#[derive(Clone, Copy)]
struct ZipEntry {
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_offset: u64,
}

fn u16_at(b: &[u8], at: usize) -> Fallible<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| "zip structure runs past the end of the file".to_string())
}

fn u32_at(b: &[u8], at: usize) -> Fallible<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
        .ok_or_else(|| "zip structure runs past the end of the file".to_string())
}

fn u64_at(b: &[u8], at: usize) -> Fallible<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
        .ok_or_else(|| "zip structure runs past the end of the file".to_string())
}

impl<'a> Zip<'a> {
    fn parse(bytes: &'a [u8]) -> Fallible<Zip<'a>> {
        const EOCD: u32 = 0x0605_4b50;
        if bytes.len() < 22 || u32_at(bytes, 0)? != 0x0403_4b50 {
            return Err("not a zip archive (torch.save's legacy format is not supported)".into());
        }
        let lowest = bytes.len().saturating_sub(22 + 0xFFFF);
        let eocd = (lowest..=bytes.len() - 22)
            .rev()
            .find(|&i| u32_at(bytes, i) == Ok(EOCD))
            .ok_or("no end of central directory: the archive is truncated")?;
        let mut count = u64::from(u16_at(bytes, eocd + 10)?);
        let mut cd_size = u64::from(u32_at(bytes, eocd + 12)?);
        let mut cd_offset = u64::from(u32_at(bytes, eocd + 16)?);
        if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
            // Zip64: the locator sits just before the end record.
            let loc = eocd
                .checked_sub(20)
                .ok_or("zip64 locator missing: the archive is corrupt")?;
            if u32_at(bytes, loc)? != 0x0706_4b50 {
                return Err("zip64 locator missing: the archive is corrupt".into());
            }
            let rec = to_usize(u64_at(bytes, loc + 8)?)?;
            if u32_at(bytes, rec)? != 0x0606_4b50 {
                return Err("zip64 end record missing: the archive is corrupt".into());
            }
            count = u64_at(bytes, rec + 32)?;
            cd_size = u64_at(bytes, rec + 40)?;
            cd_offset = u64_at(bytes, rec + 48)?;
        }
        let cd_start = to_usize(cd_offset)?;
        let cd_end = cd_start
            .checked_add(to_usize(cd_size)?)
            .filter(|&e| e <= bytes.len())
            .ok_or("central directory runs past the end of the file: the archive is truncated")?;
        if count > cd_size / 46 {
            return Err(format!(
                "central directory claims {count} entries in {cd_size} bytes: corrupt"
            ));
        }
        let mut entries = HashMap::with_capacity(count as usize);
        let mut at = cd_start;
        for _ in 0..count {
            if at + 46 > cd_end || u32_at(bytes, at)? != 0x0201_4b50 {
                return Err("corrupt central directory entry".into());
            }
            let method = u16_at(bytes, at + 10)?;
            let crc = u32_at(bytes, at + 16)?;
            let mut compressed = u64::from(u32_at(bytes, at + 20)?);
            let mut size = u64::from(u32_at(bytes, at + 24)?);
            let name_len = usize::from(u16_at(bytes, at + 28)?);
            let extra_len = usize::from(u16_at(bytes, at + 30)?);
            let comment_len = usize::from(u16_at(bytes, at + 32)?);
            let mut local_offset = u64::from(u32_at(bytes, at + 42)?);
            let name_end = at + 46 + name_len;
            let extra_end = name_end + extra_len;
            if extra_end + comment_len > cd_end {
                return Err("corrupt central directory entry".into());
            }
            let name = String::from_utf8_lossy(&bytes[at + 46..name_end]).into_owned();
            // Zip64 extended information: the 64-bit values of the fields saturated above.
            let mut e = name_end;
            while e + 4 <= extra_end {
                let id = u16_at(bytes, e)?;
                let len = usize::from(u16_at(bytes, e + 2)?);
                let body = e + 4;
                if body + len > extra_end {
                    break;
                }
                if id == 0x0001 {
                    let mut p = body;
                    for field in [&mut size, &mut compressed, &mut local_offset] {
                        if *field == 0xFFFF_FFFF && p + 8 <= body + len {
                            *field = u64_at(bytes, p)?;
                            p += 8;
                        }
                    }
                }
                e = body + len;
            }
            entries.insert(
                name,
                ZipEntry {
                    method,
                    crc,
                    compressed,
                    size,
                    local_offset,
                },
            );
            at = extra_end + comment_len;
        }
        Ok(Zip { bytes, entries })
    }

    /// The bytes of member `name`, checked against its CRC.
    fn read(&self, name: &str) -> Fallible<&'a [u8]> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| format!("archive member {name} is missing"))?;
        if e.method != 0 {
            return Err(format!(
                "archive member {name} is compressed (method {}); only stored members are supported",
                e.method
            ));
        }
        if e.compressed != e.size {
            return Err(format!("archive member {name}: inconsistent sizes"));
        }
        let local = to_usize(e.local_offset)?;
        if u32_at(self.bytes, local)? != 0x0403_4b50 {
            return Err(format!("archive member {name}: bad local header"));
        }
        let start = local
            + 30
            + usize::from(u16_at(self.bytes, local + 26)?)
            + usize::from(u16_at(self.bytes, local + 28)?);
        let data = start
            .checked_add(to_usize(e.size)?)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or_else(|| {
                format!("archive member {name} runs past the end of the file: truncated")
            })?;
        if crc32(data) != e.crc {
            return Err(format!(
                "archive member {name} fails its CRC check: the file is corrupt"
            ));
        }
        Ok(data)
    }
}

fn to_usize(v: u64) -> Fallible<usize> {
    usize::try_from(v).map_err(|_| format!("size {v} does not fit in memory"))
}

fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for i in 0..256u32 {
            let mut c = i;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            t[0][i as usize] = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                let prev = t[k - 1][i];
                t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            }
        }
        t
    });
    // Slicing by 8.
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xFF) as usize];
    }
    !crc
}

// ---------------------------------------------------------------------------------------------
// Pickle.

#[derive(Debug, Clone, Copy, PartialEq)]
enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// From a storage class name (`FloatStorage`) or a dtype name (`float32`).
    fn from_name(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" | "float32" | "float" => DType::F32,
            "DoubleStorage" | "float64" | "double" => DType::F64,
            "HalfStorage" | "float16" | "half" => DType::F16,
            "BFloat16Storage" | "bfloat16" => DType::BF16,
            "LongStorage" | "int64" | "long" => DType::I64,
            "IntStorage" | "int32" | "int" => DType::I32,
            "ShortStorage" | "int16" | "short" => DType::I16,
            "CharStorage" | "int8" => DType::I8,
            "ByteStorage" | "uint8" | "UntypedStorage" => DType::U8,
            "BoolStorage" | "bool" => DType::Bool,
            _ => return None,
        })
    }

    fn get(self, b: &[u8]) -> f32 {
        match self {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F64 => f64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
            DType::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            DType::BF16 => f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16),
            DType::I64 => i64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
            DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            DType::I16 => f32::from(i16::from_le_bytes([b[0], b[1]])),
            DType::I8 => f32::from(b[0] as i8),
            DType::U8 => f32::from(b[0]),
            DType::Bool => f32::from(u8::from(b[0] != 0)),
        }
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1F);
    let man = u32::from(h & 0x3FF);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man * 2^-24.
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1F, 0) => sign | 0x7F80_0000,
        (0x1F, _) => sign | 0x7FC0_0000,
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

#[derive(Debug)]
struct StorageRef {
    dtype: DType,
    key: String,
}

#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

type List = Rc<RefCell<Vec<Value>>>;
type Dict = Rc<RefCell<Vec<(Value, Value)>>>;

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float,
    Str(Rc<str>),
    Bytes,
    Tuple(Rc<Vec<Value>>),
    List(List),
    /// A dict, an OrderedDict, or an object of a class this reader does not know: its
    /// `SETITEMS` and a dict `BUILD` state land here, so tensors inside stay reachable.
    Dict(Dict),
    Global(Rc<(String, String)>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// Anything else (sets, results of unknown calls on non-class callables, ...).
    Opaque,
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Opaque => "object",
        }
    }

    fn new_dict() -> Value {
        Value::Dict(Rc::new(RefCell::new(Vec::new())))
    }

    fn items(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(t) => Some(t),
            _ => None,
        }
    }
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Unpickler<'a> {
        Unpickler {
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Fallible<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("pickle truncated at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Fallible<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Fallible<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64_len(&mut self) -> Fallible<usize> {
        let v = u64::from_le_bytes(self.take(8)?.try_into().unwrap());
        to_usize(v)
    }

    fn line(&mut self) -> Fallible<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle truncated inside a GLOBAL")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "GLOBAL name is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Fallible<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(format!("pickle stack underflow at byte {}", self.pos));
        }
        Ok(self.stack.pop().unwrap())
    }

    fn top(&mut self) -> Fallible<&mut Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(format!("pickle stack underflow at byte {}", self.pos));
        }
        Ok(self.stack.last_mut().unwrap())
    }

    fn pop_mark(&mut self) -> Fallible<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| format!("pickle MARK missing at byte {}", self.pos))?;
        Ok(self.stack.split_off(mark))
    }

    fn string(&mut self, n: usize) -> Fallible<Value> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| "pickle string is not UTF-8".to_string())?;
        Ok(Value::Str(Rc::from(s)))
    }

    fn memo_put(&mut self, key: u32) -> Fallible<()> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Fallible<()> {
        let v = self
            .memo
            .get(&key)
            .ok_or_else(|| format!("pickle memo key {key} missing"))?
            .clone();
        self.stack.push(v);
        Ok(())
    }

    fn run(mut self) -> Fallible<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME: framing is transparent here
                }
                b'}' => self.stack.push(Value::new_dict()),
                b']' => self
                    .stack
                    .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                0x8f => self.stack.push(Value::Opaque), // EMPTY_SET
                b'(' => self.marks.push(self.stack.len()),
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.u64_len()?;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'B' | b'T' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'C' | b'U' => {
                    let n = usize::from(self.u8()?);
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                0x8e | 0x96 => {
                    let n = self.u64_len()?;
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.stack
                        .push(Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        usize::from(self.u8()?)
                    } else {
                        self.u32()? as usize
                    };
                    let b = self.take(n)?;
                    let v = if n == 0 {
                        Value::Int(0)
                    } else if n <= 8 {
                        // Little-endian two's complement, sign-extended.
                        let fill = if b[n - 1] & 0x80 != 0 { 0xFF } else { 0 };
                        let mut buf = [fill; 8];
                        buf[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(buf))
                    } else {
                        Value::Opaque
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    self.take(8)?; // the value itself is never needed
                    self.stack.push(Value::Float);
                }
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'N' => self.stack.push(Value::None),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.stack.push(Value::Global(Rc::new((module, name))));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self
                            .stack
                            .push(Value::Global(Rc::new((m.to_string(), n.to_string())))),
                        _ => return Err(format!("STACK_GLOBAL needs two strings (byte {at})")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = call(&callable, &args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let _args = self.pop()?;
                    let class = self.pop()?;
                    self.stack.push(instantiate(&class));
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let _args = self.pop()?;
                    let class = self.pop()?;
                    self.stack.push(instantiate(&class));
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    // An unknown object's dict state becomes its items; anything else is
                    // dropped (an OrderedDict's `_metadata`, a parameter's hooks).
                    if let (Value::Dict(d), Value::Dict(s)) = (&*obj, &state) {
                        if d.borrow().is_empty() && !Rc::ptr_eq(d, s) {
                            let items = s.borrow().clone();
                            d.borrow_mut().extend(items);
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent_load(&pid)?);
                }
                b'h' => {
                    let k = u32::from(self.u8()?);
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?;
                }
                b'q' => {
                    let k = u32::from(self.u8()?);
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    set_items(self.top()?, vec![k, v], at)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    set_items(self.top()?, items, at)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    append(self.top()?, vec![v], at)?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    append(self.top()?, items, at)?;
                }
                0x90 => {
                    let _ = self.pop_mark()?; // ADDITEMS (sets stay opaque)
                    self.top()?;
                }
                0x91 => {
                    let _ = self.pop_mark()?; // FROZENSET
                    self.stack.push(Value::Opaque);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                _ => {
                    return Err(format!(
                        "unsupported or corrupt pickle opcode 0x{op:02x} at byte {at}"
                    ))
                }
            }
        }
    }
}

fn set_items(target: &mut Value, items: Vec<Value>, at: usize) -> Fallible<()> {
    if !items.len().is_multiple_of(2) {
        return Err(format!("SETITEMS with an odd number of values (byte {at})"));
    }
    match target {
        Value::Dict(d) => {
            let mut d = d.borrow_mut();
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                d.push((k, v));
            }
            Ok(())
        }
        Value::Opaque => Ok(()),
        other => Err(format!("SETITEMS on a {} (byte {at})", other.kind())),
    }
}

fn append(target: &mut Value, items: Vec<Value>, at: usize) -> Fallible<()> {
    match target {
        Value::List(l) => {
            l.borrow_mut().extend(items);
            Ok(())
        }
        // An unknown list-like object: its items stay opaque.
        Value::Dict(_) | Value::Opaque => Ok(()),
        other => Err(format!("APPENDS on a {} (byte {at})", other.kind())),
    }
}

/// An object of an unknown class: a dict-like container that takes items and state.
fn instantiate(class: &Value) -> Value {
    match class {
        Value::Global(_) => Value::new_dict(),
        _ => Value::Opaque,
    }
}

fn int_of(v: &Value, what: &str) -> Fallible<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).map_err(|_| format!("negative {what} {i}")),
        other => Err(format!("{what} is a {}, not an int", other.kind())),
    }
}

fn ints_of(v: &Value, what: &str) -> Fallible<Vec<usize>> {
    let items = v
        .items()
        .ok_or_else(|| format!("{what} is a {}, not a tuple", v.kind()))?;
    if items.len() > 16 {
        return Err(format!("{what} has {} dimensions", items.len()));
    }
    items.iter().map(|x| int_of(x, what)).collect()
}

fn call(callable: &Value, args: &Value) -> Fallible<Value> {
    let Value::Global(g) = callable else {
        return Ok(Value::Opaque);
    };
    let (module, name) = (g.0.as_str(), g.1.as_str());
    let args_list = args.items().unwrap_or(&[]);
    match (module, name) {
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2" | "_rebuild_tensor_v3") => {
            if args_list.len() < 4 {
                return Err(format!("{name} with {} arguments", args_list.len()));
            }
            let Value::Storage(storage) = &args_list[0] else {
                return Err(format!(
                    "{name} of a {}, not a storage",
                    args_list[0].kind()
                ));
            };
            let mut storage = storage.clone();
            // v3 carries the dtype of an untyped storage as its 7th argument.
            if name == "_rebuild_tensor_v3" {
                if let Some(Value::Global(d)) = args_list.get(6) {
                    if let Some(dtype) = DType::from_name(&d.1) {
                        storage = Rc::new(StorageRef {
                            dtype,
                            key: storage.key.clone(),
                        });
                    }
                }
            }
            let offset = int_of(&args_list[1], "storage offset")?;
            let size = ints_of(&args_list[2], "tensor size")?;
            let stride = ints_of(&args_list[3], "tensor stride")?;
            if size.len() != stride.len() {
                return Err(format!(
                    "tensor size {size:?} and stride {stride:?} differ in rank"
                ));
            }
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage,
                offset,
                size,
                stride,
            })))
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state")
        | ("torch.nn.parameter", "Parameter") => match args_list.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Ok(Value::Opaque),
        },
        ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => {
            Ok(Value::new_dict())
        }
        // `copyreg._reconstructor(cls, base, state)`: an instance of `cls`.
        ("copyreg" | "copy_reg", "_reconstructor") => Ok(Value::new_dict()),
        _ => {
            // Calling an unknown class most often builds an object (hyper-parameter
            // containers, version objects): keep it as a dict-like opaque container.
            if name.chars().next().is_some_and(char::is_uppercase) {
                Ok(Value::new_dict())
            } else {
                Ok(Value::Opaque)
            }
        }
    }
}

fn persistent_load(pid: &Value) -> Fallible<Value> {
    let items = pid
        .items()
        .ok_or_else(|| format!("persistent id is a {}, not a tuple", pid.kind()))?;
    match items {
        [Value::Str(tag), ty, key, _location, _numel, ..] if &**tag == "storage" => {
            let dtype = match ty {
                Value::Global(g) => DType::from_name(&g.1)
                    .ok_or_else(|| format!("unsupported storage type {}.{}", g.0, g.1))?,
                other => return Err(format!("storage type is a {}", other.kind())),
            };
            let key = match key {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                other => return Err(format!("storage key is a {}", other.kind())),
            };
            if key.contains('/') || key.contains("..") {
                return Err(format!("invalid storage key {key:?}"));
            }
            Ok(Value::Storage(Rc::new(StorageRef { dtype, key })))
        }
        _ => Err("unknown persistent id (expected ('storage', type, key, location, numel))".into()),
    }
}

/// Walks the unpickled object, naming every tensor by its path of keys.
fn collect(
    v: &Value,
    path: String,
    depth: usize,
    seen: &mut HashSet<usize>,
    out: &mut Vec<(String, Rc<TensorRef>)>,
) {
    if depth > 64 {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Tensor(t) => out.push((path, t.clone())),
        Value::Dict(d) => {
            if !seen.insert(Rc::as_ptr(d) as *const u8 as usize) {
                return;
            }
            for (k, v) in d.borrow().iter() {
                let key = match k {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                collect(v, join(&key), depth + 1, seen, out);
            }
        }
        Value::List(l) => {
            if !seen.insert(Rc::as_ptr(l) as *const u8 as usize) {
                return;
            }
            for (i, v) in l.borrow().iter().enumerate() {
                collect(v, join(&i.to_string()), depth + 1, seen, out);
            }
        }
        Value::Tuple(t) => {
            for (i, v) in t.iter().enumerate() {
                collect(v, join(&i.to_string()), depth + 1, seen, out);
            }
        }
        _ => {}
    }
}

/// Copies a (possibly strided) view of a storage into a contiguous f32 tensor.
fn materialize(t: &TensorRef, bytes: &[u8]) -> Fallible<Tensor> {
    let es = t.storage.dtype.size();
    let avail = bytes.len() / es;
    let numel = t
        .size
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("tensor size overflows")?;
    if numel == 0 {
        return Ok(Tensor::zeros(t.size.clone()));
    }
    // The last element the view touches must lie inside the storage.
    let mut last = t.offset;
    for (&d, &s) in t.size.iter().zip(&t.stride) {
        last = (d - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or("tensor extent overflows")?;
    }
    if last >= avail {
        return Err(format!(
            "storage {} holds {avail} elements, the tensor (size {:?}, stride {:?}, offset {}) needs {}",
            t.storage.key,
            t.size,
            t.stride,
            t.offset,
            last + 1
        ));
    }
    // Broadcast views (stride 0) may be larger than their storage, but not absurdly so.
    if numel > avail.max(1 << 20) {
        return Err(format!(
            "tensor of {numel} elements from a storage of {avail}"
        ));
    }
    let dtype = t.storage.dtype;
    let mut data = Vec::with_capacity(numel);
    let contiguous = {
        let mut expect = 1;
        let mut ok = true;
        for (&d, &s) in t.size.iter().zip(&t.stride).rev() {
            if d != 1 && s != expect {
                ok = false;
            }
            expect *= d;
        }
        ok
    };
    if contiguous {
        let src = &bytes[t.offset * es..(t.offset + numel) * es];
        if dtype == DType::F32 {
            data.extend(
                src.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        } else {
            data.extend(src.chunks_exact(es).map(|b| dtype.get(b)));
        }
    } else {
        let rank = t.size.len();
        let mut idx = vec![0usize; rank];
        for _ in 0..numel {
            let at = t.offset
                + idx
                    .iter()
                    .zip(&t.stride)
                    .map(|(&i, &s)| i * s)
                    .sum::<usize>();
            data.push(dtype.get(&bytes[at * es..(at + 1) * es]));
            for d in (0..rank).rev() {
                idx[d] += 1;
                if idx[d] < t.size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    Ok(Tensor {
        shape: t.size.clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal zip writer (stored members) to build checkpoints by hand.
    fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in members {
            let offset = out.len() as u32;
            let crc = crc32(data);
            let mut local = Vec::new();
            local.extend(0x0403_4b50u32.to_le_bytes());
            local.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            local.extend(crc.to_le_bytes());
            local.extend((data.len() as u32).to_le_bytes());
            local.extend((data.len() as u32).to_le_bytes());
            local.extend((name.len() as u16).to_le_bytes());
            local.extend(0u16.to_le_bytes());
            local.extend(name.as_bytes());
            out.extend(local);
            out.extend(*data);
            central.extend(0x0201_4b50u32.to_le_bytes());
            central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend(crc.to_le_bytes());
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            central.extend([0u8; 12]);
            central.extend(offset.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        let cd_size = central.len() as u32;
        out.extend(&central);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend((members.len() as u16).to_le_bytes());
        out.extend((members.len() as u16).to_le_bytes());
        out.extend(cd_size.to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    fn unicode(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    }

    /// `{name: _rebuild_tensor_v2(storage(ty, key), offset, size, stride, False, OrderedDict())}`
    /// for each tensor, inside `{"outer": {...}, "hp": Unknown(...)}`.
    #[allow(clippy::type_complexity)]
    fn pickle(tensors: &[(&str, &str, &str, u8, &[u8], &[u8])]) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'(' /* mark for outer SETITEMS */];
        unicode(&mut p, "outer");
        p.extend([b'}', b'(']);
        for (name, ty, key, offset, size, stride) in tensors {
            unicode(&mut p, name);
            p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
            p.push(b'(');
            unicode(&mut p, "storage");
            p.extend(format!("ctorch\n{ty}\n").as_bytes());
            unicode(&mut p, key);
            unicode(&mut p, "cpu");
            p.extend([b'K', 9, b't', b'Q', b'K', *offset, b'(']);
            for s in *size {
                p.extend([b'K', *s]);
            }
            p.extend([b't', b'(']);
            for s in *stride {
                p.extend([b'K', *s]);
            }
            p.extend([b't', 0x89]);
            p.extend(b"ccollections\nOrderedDict\n)R");
            p.extend([b't', b'R']);
        }
        p.push(b'u');
        unicode(&mut p, "hp");
        p.extend(b"clightning.fabric\nAttributeDict\n)\x81");
        p.extend([b'(']);
        unicode(&mut p, "lr");
        p.extend([b'G', 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]);
        p.extend([b'u', b'u', b'.']);
        p
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn reads_offsets_strides_and_other_dtypes() {
        let storage = f32s(&[0., 1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let halves: Vec<u8> = [0x3C00u16, 0xC000, 0x3555, 0x0001]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let longs: Vec<u8> = [7i64, -3].iter().flat_map(|x| x.to_le_bytes()).collect();
        let pkl = pickle(&[
            ("a", "FloatStorage", "0", 1, &[2, 3], &[3, 1]),
            ("t", "FloatStorage", "0", 0, &[3, 2], &[1, 3]),
            ("h", "HalfStorage", "1", 0, &[4], &[1]),
            ("n", "LongStorage", "2", 1, &[], &[]),
        ]);
        let file = zip(&[
            ("ckpt/data.pkl", &pkl),
            ("ckpt/data/0", &storage),
            ("ckpt/data/1", &halves),
            ("ckpt/data/2", &longs),
            ("ckpt/version", b"3\n"),
        ]);
        let w = Weights::from_bytes(&file, Path::new("x.pt")).unwrap();
        let names: Vec<&str> = w.names().collect();
        assert_eq!(names, ["outer.a", "outer.h", "outer.n", "outer.t"]);
        let a = w.get("outer.a").unwrap();
        assert_eq!(a.shape, [2, 3]);
        assert_eq!(a.data, [1., 2., 3., 4., 5., 6.]);
        let t = w.get("outer.t").unwrap();
        assert_eq!(t.shape, [3, 2]);
        assert_eq!(t.data, [0., 3., 1., 4., 2., 5.]);
        let h = w.get("outer.h").unwrap();
        assert_eq!(h.data[..2], [1.0, -2.0]);
        assert!((h.data[2] - 0.333_251_95).abs() < 1e-7);
        assert!((h.data[3] - 5.960_464_5e-8).abs() < 1e-12);
        let n = w.get("outer.n").unwrap();
        assert_eq!((n.shape.len(), n.data.as_slice()), (0, &[-3.0][..]));
        let inner = w.with_prefix("outer");
        assert_eq!(inner.len(), 4);
        assert!(inner.get("a").is_ok());
        match inner.get("missing") {
            Err(Error::Weights(m)) => assert!(m.contains("missing"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    fn format_error(bytes: &[u8]) -> String {
        match Weights::from_bytes(bytes, Path::new("bad.pt")) {
            Err(Error::Format { path, reason }) => {
                assert_eq!(path, Path::new("bad.pt"));
                reason
            }
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_archives_and_pickles_cleanly() {
        let storage = f32s(&[0., 1., 2., 3.]);
        let good = pickle(&[("a", "FloatStorage", "0", 0, &[2, 2], &[2, 1])]);
        // Storage shorter than the view.
        let pkl = pickle(&[("a", "FloatStorage", "0", 1, &[2, 2], &[2, 1])]);
        let r = format_error(&zip(&[("c/data.pkl", &pkl), ("c/data/0", &storage)]));
        assert!(r.contains("holds 4 elements"), "{r}");
        // Absurd sizes.
        let pkl = pickle(&[(
            "a",
            "FloatStorage",
            "0",
            0,
            &[255, 255, 255, 255],
            &[0, 0, 0, 0],
        )]);
        let r = format_error(&zip(&[("c/data.pkl", &pkl), ("c/data/0", &storage)]));
        assert!(r.contains("elements from a storage"), "{r}");
        // Missing storage member.
        let r = format_error(&zip(&[("c/data.pkl", &good)]));
        assert!(r.contains("missing"), "{r}");
        // Unknown storage type.
        let pkl = pickle(&[("a", "ComplexStorage", "0", 0, &[1], &[1])]);
        let r = format_error(&zip(&[("c/data.pkl", &pkl), ("c/data/0", &storage)]));
        assert!(r.contains("unsupported storage type"), "{r}");
        // Every truncation of the pickle fails cleanly.
        for n in 0..good.len() {
            let file = zip(&[("c/data.pkl", &good[..n]), ("c/data/0", &storage)]);
            format_error(&file);
        }
        // Garbage pickles: every single-byte corruption either loads or fails cleanly.
        for i in 0..good.len() {
            for b in [0x00, 0x28, 0x2e, 0x74, 0x75, 0x85, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let file = zip(&[("c/data.pkl", &bad), ("c/data/0", &storage)]);
                let _ = Weights::from_bytes(&file, Path::new("bad.pt"));
            }
        }
        // Every truncation of the archive fails cleanly.
        let file = zip(&[("c/data.pkl", &good), ("c/data/0", &storage)]);
        assert!(Weights::from_bytes(&file, Path::new("ok.pt")).is_ok());
        for n in 0..file.len() {
            format_error(&file[..n]);
        }
        // A flipped byte inside a member fails its CRC.
        let mut bad = file.clone();
        let at = bad
            .windows(storage.len())
            .position(|w| w == storage)
            .unwrap();
        bad[at + 5] ^= 0x55;
        format_error(&bad);
        // Not a zip at all.
        let r = format_error(b"\x80\x02}q\x00.");
        assert!(r.contains("not a zip"), "{r}");
    }
}

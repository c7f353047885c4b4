//! Reader for CTranslate2's `model.bin` (binary version 6), as written by
//! `ModelSpec._serialize` in CTranslate2's `python/ctranslate2/specs/model_spec.py` and read
//! by `Model::load` in `src/models/model.cc`. Little-endian:
//!
//! ```text
//! u32 binary version (6)
//! str spec name ("WhisperSpec"), u32 spec revision
//! u32 variable count, then per variable (sorted by name):
//!     str name, u8 rank, u32 × rank shape, u8 dtype id, u32 byte count, bytes
//! u32 alias count, then per alias: str alias, str target
//! ```
//!
//! where `str` is a u16 length (counting a trailing NUL) followed by that many bytes.
//! The reader borrows the variables' bytes from the caller's buffer (no copies), checks
//! every size against what is left in the buffer and never panics, whatever the input.

use std::collections::HashMap;
use std::fmt;

/// The only binary version this reader accepts (CTranslate2 3.x and 4.x write it).
pub const BINARY_VERSION: u32 = 6;

/// Data type of a variable (`DataType` in CTranslate2's `include/ctranslate2/types.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// float32 (id 0).
    F32,
    /// int8 (id 1).
    I8,
    /// int16 (id 2).
    I16,
    /// int32 (id 3).
    I32,
    /// float16 (id 4).
    F16,
    /// bfloat16 (id 5).
    BF16,
}

impl DType {
    /// The dtype with CTranslate2's numeric id.
    pub fn from_id(id: u8) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }

    /// CTranslate2's name for it ("float16", "int8", ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        }
    }

    /// Whether it is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One stored variable; `data` borrows from the buffer given to [`Model::parse`].
#[derive(Debug, Clone)]
pub struct Variable<'a> {
    /// Scoped name, e.g. `encoder/layer_0/self_attention/linear_0/weight`.
    pub name: String,
    /// Shape, outermost first (empty for scalars).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Raw little-endian bytes (`shape` product × `dtype` size of them).
    pub data: &'a [u8],
    /// Offset of `data` in the file.
    pub offset: usize,
    /// Offset of this variable's header (its name) in the file.
    pub header_offset: usize,
}

impl Variable<'_> {
    /// Number of elements (1 for scalars).
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The value of an integer or boolean scalar.
    pub fn scalar_int(&self) -> Option<i64> {
        if !self.shape.is_empty() {
            return None;
        }
        let d = self.data;
        Some(match self.dtype {
            DType::I8 => i64::from(*d.first()? as i8),
            DType::I16 => i64::from(i16::from_le_bytes([*d.first()?, *d.get(1)?])),
            DType::I32 => i64::from(i32::from_le_bytes(d.get(..4)?.try_into().ok()?)),
            _ => return None,
        })
    }

    /// The value of a float scalar (float32 only; that is what CTranslate2 writes).
    pub fn scalar_f32(&self) -> Option<f32> {
        if !self.shape.is_empty() || self.dtype != DType::F32 {
            return None;
        }
        Some(f32::from_le_bytes(self.data.get(..4)?.try_into().ok()?))
    }
}

/// A parsed `model.bin`.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    /// Binary version (always [`BINARY_VERSION`] once parsed).
    pub version: u32,
    /// Spec name, e.g. `WhisperSpec`.
    pub spec: String,
    /// Spec revision (3 for current Whisper models).
    pub revision: u32,
    /// Variables in file order.
    pub variables: Vec<Variable<'a>>,
    /// `(alias, target)` pairs, e.g. the decoder projection tied to the embeddings.
    pub aliases: Vec<(String, String)>,
    index: HashMap<String, usize>,
    alias_index: HashMap<String, String>,
}

impl<'a> Model<'a> {
    /// Parses a whole `model.bin`. The reason is one line, saying which byte or variable
    /// was wrong.
    pub fn parse(bytes: &'a [u8]) -> Result<Model<'a>, String> {
        let mut c = Cursor { buf: bytes, pos: 0 };
        let version = c.u32("the binary version")?;
        if version != BINARY_VERSION {
            if bytes.get(..4) == Some(b"lmgg".as_slice()) {
                return Err("this is a whisper.cpp ggml model, not a CTranslate2 model".into());
            }
            return Err(format!(
                "binary version {version} is not supported (expected {BINARY_VERSION})"
            ));
        }
        let spec = c.string("the spec name")?;
        let revision = c.u32("the spec revision")?;
        let count = c.u32("the variable count")?;
        let mut variables: Vec<Variable<'a>> = Vec::new();
        let mut index = HashMap::new();
        for i in 0..count {
            let header_offset = c.pos;
            let name = c.string(&format!("the name of variable {i} of {count}"))?;
            let what = |part: &str| format!("the {part} of variable '{name}'");
            let rank = c.u8(&what("rank"))?;
            let mut shape = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                shape.push(c.u32(&what("shape"))? as usize);
            }
            let dtype_at = c.pos;
            let id = c.u8(&what("dtype"))?;
            let dtype = DType::from_id(id).ok_or_else(|| {
                format!("variable '{name}' has unknown dtype id {id} at byte {dtype_at}")
            })?;
            let nbytes = c.u32(&what("byte count"))? as usize;
            let expected = shape
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
            if expected != Some(nbytes) {
                let expected = expected.map_or("more than fits in memory".into(), |n| {
                    format!("{n} for {dtype} {shape:?}")
                });
                return Err(format!(
                    "variable '{name}' says it has {nbytes} bytes, expected {expected}"
                ));
            }
            let offset = c.pos;
            let data = c.take(nbytes, &what("data"))?;
            if index.insert(name.clone(), variables.len()).is_some() {
                return Err(format!("variable '{name}' appears twice"));
            }
            variables.push(Variable {
                name,
                shape,
                dtype,
                data,
                offset,
                header_offset,
            });
        }
        let n_aliases = c.u32("the alias count")?;
        let mut aliases = Vec::new();
        let mut alias_index = HashMap::new();
        for i in 0..n_aliases {
            let alias = c.string(&format!("alias {i} of {n_aliases}"))?;
            let target = c.string(&format!("the target of alias '{alias}'"))?;
            alias_index.insert(alias.clone(), target.clone());
            aliases.push((alias, target));
        }
        // Bytes after the aliases are ignored, as CTranslate2 itself does.
        Ok(Model {
            version,
            spec,
            revision,
            variables,
            aliases,
            index,
            alias_index,
        })
    }

    /// The variable called `name`, following an alias if that is what the name is (and, like
    /// CTranslate2, `X_scale` of an alias `X` to the target's scale).
    pub fn get(&self, name: &str) -> Option<&Variable<'a>> {
        if let Some(&i) = self.index.get(name) {
            return self.variables.get(i);
        }
        if let Some(target) = self.alias_index.get(name) {
            return self.index.get(target).and_then(|&i| self.variables.get(i));
        }
        let base = name.strip_suffix("_scale")?;
        let target = self.alias_index.get(base)?;
        let i = *self.index.get(&format!("{target}_scale"))?;
        self.variables.get(i)
    }

    /// Whether `name` is stored under that name (not through an alias).
    pub fn is_stored(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}

/// A position in the buffer with bounds-checked reads.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "truncated at byte {} while reading {what} ({n} bytes at offset {})",
                self.buf.len(),
                self.pos
            )),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let b = self.take(2, what)?;
        let n = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let at = self.pos;
        let raw = self.take(n, what)?;
        // Stored with a trailing NUL; CTranslate2 reads it as a C string, so stop at the
        // first NUL.
        let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
        if raw.is_empty() {
            return Err(format!("{what} at offset {at} is empty"));
        }
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} at offset {at} is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        string(&mut b, "a/num_heads");
        b.push(0);
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&6i16.to_le_bytes());
        string(&mut b, "a/weight");
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.push(4);
        b.extend_from_slice(&12u32.to_le_bytes());
        b.extend_from_slice(&[7u8; 12]);
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "b/weight");
        string(&mut b, "a/weight");
        b
    }

    #[test]
    fn parses_variables_and_aliases() {
        let bytes = sample();
        let m = Model::parse(&bytes).unwrap();
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.revision, 3);
        assert_eq!(m.variables.len(), 2);
        assert_eq!(m.get("a/num_heads").unwrap().scalar_int(), Some(6));
        let w = m.get("b/weight").unwrap();
        assert_eq!(w.name, "a/weight");
        assert_eq!(w.shape, vec![2, 3]);
        assert_eq!(w.dtype, DType::F16);
        assert_eq!(w.len(), 6);
        assert!(!m.is_stored("b/weight"));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let err = Model::parse(&bytes[..cut]).unwrap_err();
            assert!(err.contains("truncated"), "cut {cut}: {err}");
        }
    }

    #[test]
    fn wrong_byte_count_is_refused() {
        let mut bytes = sample();
        // The byte count of a/weight (12) sits right before its 12 data bytes.
        let at = bytes
            .windows(4)
            .position(|w| w == 12u32.to_le_bytes())
            .unwrap();
        bytes[at] = 13;
        let err = Model::parse(&bytes).unwrap_err();
        assert!(err.contains("13 bytes, expected 12"), "{err}");
    }
}

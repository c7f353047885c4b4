//! whisper.cpp's legacy ggml model file: a reader (header, mel filters, vocabulary and a
//! tensor directory with file offsets, no tensor data loaded) and the pieces a writer needs.
//!
//! Layout, little-endian, as `whisper_model_load` in whisper.cpp reads it:
//!
//! ```text
//! u32 magic 0x67676d6c ("ggml")
//! i32 × 11 hparams: n_vocab n_audio_ctx n_audio_state n_audio_head n_audio_layer
//!                    n_text_ctx n_text_state n_text_head n_text_layer n_mels ftype
//! i32 n_mel, i32 n_fft, f32 × n_mel·n_fft          mel filterbank
//! i32 n_tokens, then per token: u32 len, len bytes  vocabulary (BPE tokens only)
//! until EOF, per tensor: i32 n_dims, i32 name_len, i32 ttype, i32 × n_dims (ne0 first),
//!                        name bytes, data
//! ```

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::Error;

/// "ggml" as whisper.cpp reads it (a little-endian u32).
pub const MAGIC: u32 = 0x6767_6d6c;

/// `ggml_ftype` values this crate writes.
pub mod ftype {
    /// Everything f32.
    pub const ALL_F32: i32 = 0;
    /// Big matrices f16, small tensors f32.
    pub const MOSTLY_F16: i32 = 1;
    /// Big matrices q8_0, convolutions f16, small tensors f32.
    pub const MOSTLY_Q8_0: i32 = 7;
}

/// A ggml tensor type (`enum ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// 32-bit float.
    pub const F32: GgmlType = GgmlType(0);
    /// IEEE half.
    pub const F16: GgmlType = GgmlType(1);
    /// Blocks of 32 int8 with one f16 scale.
    pub const Q8_0: GgmlType = GgmlType(8);

    /// `(block size in elements, bytes per block)`, for the types a Whisper file can hold.
    pub fn layout(self) -> Option<(usize, usize)> {
        Some(match self.0 {
            0 => (1, 4),      // f32
            1 => (1, 2),      // f16
            2 => (32, 18),    // q4_0
            3 => (32, 20),    // q4_1
            6 => (32, 22),    // q5_0
            7 => (32, 24),    // q5_1
            8 => (32, 34),    // q8_0
            9 => (32, 36),    // q8_1
            10 => (256, 84),  // q2_K
            11 => (256, 110), // q3_K
            12 => (256, 144), // q4_K
            13 => (256, 176), // q5_K
            14 => (256, 210), // q6_K
            15 => (256, 292), // q8_K
            24 => (1, 1),     // i8
            25 => (1, 2),     // i16
            26 => (1, 4),     // i32
            30 => (1, 2),     // bf16
            _ => return None,
        })
    }

    /// A short name ("f16", "q8_0", ...), or the number for types this module does not know.
    pub fn name(self) -> String {
        let known = match self.0 {
            0 => "f32",
            1 => "f16",
            2 => "q4_0",
            3 => "q4_1",
            6 => "q5_0",
            7 => "q5_1",
            8 => "q8_0",
            9 => "q8_1",
            10 => "q2_K",
            11 => "q3_K",
            12 => "q4_K",
            13 => "q5_K",
            14 => "q6_K",
            15 => "q8_K",
            24 => "i8",
            25 => "i16",
            26 => "i32",
            30 => "bf16",
            _ => return format!("type {}", self.0),
        };
        known.to_string()
    }

    /// Bytes of a tensor with these dims (ne0 first), or `None` when ne0 is not a whole
    /// number of blocks, the type is unknown or the size overflows.
    pub fn nbytes(self, dims: &[usize]) -> Option<u64> {
        let (block, size) = self.layout()?;
        let ne0 = *dims.first()?;
        if !ne0.is_multiple_of(block) {
            return None;
        }
        let row = (ne0 / block).checked_mul(size)? as u64;
        dims[1..]
            .iter()
            .try_fold(row, |acc, &d| acc.checked_mul(d as u64))
    }
}

/// The eleven hyper-parameters at the start of a Whisper ggml file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    /// Rows of the token embedding (51864 English-only, 51865/51866 multilingual).
    pub n_vocab: i32,
    /// Encoder positions (1500).
    pub n_audio_ctx: i32,
    /// Encoder width.
    pub n_audio_state: i32,
    /// Encoder attention heads.
    pub n_audio_head: i32,
    /// Encoder blocks.
    pub n_audio_layer: i32,
    /// Decoder positions (448).
    pub n_text_ctx: i32,
    /// Decoder width.
    pub n_text_state: i32,
    /// Decoder attention heads.
    pub n_text_head: i32,
    /// Decoder blocks.
    pub n_text_layer: i32,
    /// Mel bands of the input (80, or 128 for large-v3).
    pub n_mels: i32,
    /// `ggml_ftype` (plus 1000 × quantization version for quantized files).
    pub ftype: i32,
}

impl Hparams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_array(a: [i32; 11]) -> Self {
        Hparams {
            n_vocab: a[0],
            n_audio_ctx: a[1],
            n_audio_state: a[2],
            n_audio_head: a[3],
            n_audio_layer: a[4],
            n_text_ctx: a[5],
            n_text_state: a[6],
            n_text_head: a[7],
            n_text_layer: a[8],
            n_mels: a[9],
            ftype: a[10],
        }
    }
}

/// The mel filterbank stored in the file (`n_mel` rows of `n_fft` weights, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilters {
    /// Rows (mel bands).
    pub n_mel: usize,
    /// Columns (FFT bins, 201 for Whisper's 400-point FFT).
    pub n_fft: usize,
    /// `n_mel * n_fft` weights.
    pub data: Vec<f32>,
}

/// One tensor of the directory: where its data starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// whisper.cpp's name, e.g. `encoder.blocks.0.attn.query.weight`.
    pub name: String,
    /// Storage type.
    pub ttype: GgmlType,
    /// Dimensions in ggml order (ne0, the contiguous one, first).
    pub dims: Vec<usize>,
    /// Byte offset of the data in the file.
    pub offset: u64,
    /// Byte length of the data.
    pub nbytes: u64,
}

/// A parsed Whisper ggml file, without tensor data.
#[derive(Debug, Clone)]
pub struct GgmlModel {
    /// Hyper-parameters.
    pub hparams: Hparams,
    /// Mel filterbank.
    pub filters: MelFilters,
    /// Token bytes, by id (only the BPE tokens; whisper.cpp names the special ones).
    pub vocab: Vec<Vec<u8>>,
    /// Tensors in file order.
    pub tensors: Vec<TensorInfo>,
    /// File length in bytes.
    pub file_len: u64,
}

impl GgmlModel {
    /// Reads the header and tensor directory of `path`.
    pub fn open(path: &Path) -> Result<GgmlModel, Error> {
        let file = File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| Error::input(path, format!("cannot read: {e}")))?
            .len();
        let mut reader = BufReader::with_capacity(1 << 16, file);
        parse(&mut reader, len, path)
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Reads one tensor's bytes from `path` (the file this directory came from).
    pub fn read_tensor(path: &Path, tensor: &TensorInfo) -> Result<Vec<u8>, Error> {
        let io_err =
            |e: io::Error| Error::input(path, format!("cannot read '{}': {e}", tensor.name));
        let mut file = File::open(path).map_err(io_err)?;
        file.seek(SeekFrom::Start(tensor.offset)).map_err(io_err)?;
        let len = usize::try_from(tensor.nbytes)
            .map_err(|_| Error::input(path, format!("tensor '{}' is too large", tensor.name)))?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf).map_err(io_err)?;
        Ok(buf)
    }
}

/// Bounds-checked reads that remember the position, so every error can say where the
/// file ended or went wrong.
struct Reader<'r, R> {
    inner: &'r mut R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Reader<'_, R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated at byte {} while reading {what} ({n} bytes at offset {})",
                self.len, self.pos
            ));
        }
        // n is bounded by the file's actual remaining length, so this allocation is too.
        let mut buf = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| format!("cannot read {what} at offset {}: {e}", self.pos))?;
        self.pos += n;
        Ok(buf)
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self, what: &str) -> Result<usize, String> {
        let at = self.pos;
        let v = self.i32(what)?;
        usize::try_from(v).map_err(|_| format!("{what} is {v} at offset {at}"))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated at byte {} while reading {what} ({n} bytes at offset {})",
                self.len, self.pos
            ));
        }
        let delta = i64::try_from(n).map_err(|_| format!("{what} is too large"))?;
        self.inner
            .seek_relative(delta)
            .map_err(|e| format!("cannot read {what} at offset {}: {e}", self.pos))?;
        self.pos += n;
        Ok(())
    }
}

/// Parses a Whisper ggml file of `len` bytes from `r` (positioned at its start); `source`
/// names it in errors. Tensor data is skipped, not read.
pub fn parse<R: Read + Seek>(r: &mut R, len: u64, source: &Path) -> Result<GgmlModel, Error> {
    parse_header(r, len).map_err(|reason| Error::input(source, reason))
}

fn parse_header<R: Read + Seek>(r: &mut R, len: u64) -> Result<GgmlModel, String> {
    let mut rd = Reader {
        inner: r,
        pos: 0,
        len,
    };
    let magic = rd.bytes(4, "the magic number")?;
    let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
    if magic != MAGIC {
        return Err(format!(
            "not a whisper.cpp ggml model (magic 0x{magic:08x}, expected 0x{MAGIC:08x})"
        ));
    }
    let mut hp = [0i32; 11];
    for v in hp.iter_mut() {
        *v = rd.i32("the hyper-parameters")?;
    }
    let hparams = Hparams::from_array(hp);

    let n_mel = rd.count("the mel filter count")?;
    let n_fft = rd.count("the mel filter width")?;
    let n = (n_mel as u64)
        .checked_mul(n_fft as u64)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| format!("mel filters {n_mel}x{n_fft} are too large"))?;
    let raw = rd.bytes(n, "the mel filters")?;
    let data = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let filters = MelFilters { n_mel, n_fft, data };

    let n_tokens = rd.count("the vocabulary size")?;
    // Each token takes at least its 4-byte length, so the file bounds the count.
    let mut vocab = Vec::with_capacity(n_tokens.min((rd.remaining() / 4) as usize));
    for i in 0..n_tokens {
        // The token number is added only on error: formatting it for each of 50k tokens
        // would dominate the parse.
        let b = rd
            .bytes(4, "the length of a token")
            .map_err(|e| format!("{e}, token {i} of {n_tokens}"))?;
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let token = rd
            .bytes(u64::from(n), "a token")
            .map_err(|e| format!("{e}, token {i} of {n_tokens}"))?;
        vocab.push(token);
    }

    let mut tensors = Vec::new();
    while rd.remaining() > 0 {
        let start = rd.pos;
        let n_dims = rd.i32("a tensor header")?;
        let name_len = rd.i32("a tensor header")?;
        let ttype = rd.i32("a tensor header")?;
        if !(1..=4).contains(&n_dims) {
            return Err(format!(
                "tensor at offset {start} has {n_dims} dimensions (expected 1 to 4)"
            ));
        }
        let name_len = u64::try_from(name_len)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("tensor at offset {start} has name length {name_len}"))?;
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = rd.i32("a tensor shape")?;
            let d = usize::try_from(d)
                .ok()
                .filter(|&d| d > 0)
                .ok_or_else(|| format!("tensor at offset {start} has dimension {d}"))?;
            dims.push(d);
        }
        let name = rd.bytes(name_len, "a tensor name")?;
        let name = String::from_utf8(name)
            .map_err(|_| format!("tensor name at offset {start} is not UTF-8"))?;
        let ttype = GgmlType(
            u32::try_from(ttype).map_err(|_| format!("tensor '{name}' has type {ttype}"))?,
        );
        let nbytes = ttype.nbytes(&dims).ok_or_else(|| {
            format!(
                "tensor '{name}' has type {} and shape {dims:?}, which this reader cannot size",
                ttype.name()
            )
        })?;
        let offset = rd.pos;
        rd.skip(nbytes, &format!("the data of tensor '{name}'"))?;
        tensors.push(TensorInfo {
            name,
            ttype,
            dims,
            offset,
            nbytes,
        });
    }
    Ok(GgmlModel {
        hparams,
        filters,
        vocab,
        tensors,
        file_len: len,
    })
}

/// Writes the magic, hyper-parameters, mel filters and vocabulary.
pub fn write_header<W: Write>(
    w: &mut W,
    hparams: &Hparams,
    filters: &MelFilters,
    vocab: &[Vec<u8>],
) -> io::Result<()> {
    w.write_all(&MAGIC.to_le_bytes())?;
    for v in hparams.to_array() {
        w.write_all(&v.to_le_bytes())?;
    }
    w.write_all(&i32_len(filters.n_mel)?.to_le_bytes())?;
    w.write_all(&i32_len(filters.n_fft)?.to_le_bytes())?;
    for v in &filters.data {
        w.write_all(&v.to_le_bytes())?;
    }
    w.write_all(&i32_len(vocab.len())?.to_le_bytes())?;
    for token in vocab {
        let n = u32::try_from(token.len()).map_err(|_| too_large("token"))?;
        w.write_all(&n.to_le_bytes())?;
        w.write_all(token)?;
    }
    Ok(())
}

/// Writes one tensor header (`dims` in ggml order, ne0 first); the caller writes the data.
pub fn write_tensor_header<W: Write>(
    w: &mut W,
    name: &str,
    ttype: GgmlType,
    dims: &[usize],
) -> io::Result<()> {
    w.write_all(&i32_len(dims.len())?.to_le_bytes())?;
    w.write_all(&i32_len(name.len())?.to_le_bytes())?;
    w.write_all(&(ttype.0 as i32).to_le_bytes())?;
    for &d in dims {
        w.write_all(&i32_len(d)?.to_le_bytes())?;
    }
    w.write_all(name.as_bytes())
}

fn i32_len(n: usize) -> io::Result<i32> {
    i32::try_from(n).map_err(|_| too_large("size"))
}

fn too_large(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} too large for a ggml file"),
    )
}

/// IEEE half (bits) to f32; exact. A thin wrapper over [`half::f16`] so the importer and its
/// tests can keep working on the raw bits that ggml files store.
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// f32 to IEEE half (bits), rounding to nearest even as numpy and ggml do; overflow gives
/// infinity, NaN stays a quiet NaN of the same sign (through [`half::f16`]).
pub fn f32_to_f16(f: f32) -> u16 {
    half::f16::from_f32(f).to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trips_every_value() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f32_to_f16(f) & 0x7c00 == 0x7c00 && f32_to_f16(f) & 0x3ff != 0);
            } else {
                assert_eq!(f32_to_f16(f), h, "half {h:#06x} -> {f}");
            }
        }
    }

    #[test]
    fn f16_known_values_and_rounding() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f32_to_f16(65520.0), 0x7c00); // rounds up to infinity
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: even wins.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0); // tie with zero: even
        assert_eq!(f32_to_f16(1.5 * 2f32.powi(-25)), 1);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        assert_eq!(f32_to_f16(1e-9), 0);
    }

    #[test]
    fn header_round_trips() {
        let hp = Hparams {
            n_vocab: 51864,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
            n_mels: 80,
            ftype: 1,
        };
        let filters = MelFilters {
            n_mel: 2,
            n_fft: 3,
            data: vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5],
        };
        let vocab = vec![b"a".to_vec(), b" the".to_vec(), Vec::new()];
        let mut buf = Vec::new();
        write_header(&mut buf, &hp, &filters, &vocab).unwrap();
        write_tensor_header(&mut buf, "x.weight", GgmlType::F16, &[32, 2]).unwrap();
        buf.extend_from_slice(&[0u8; 128]);
        write_tensor_header(&mut buf, "x.bias", GgmlType::Q8_0, &[64]).unwrap();
        buf.extend_from_slice(&[0u8; 68]);
        let len = buf.len() as u64;
        let m = parse_header(&mut io::Cursor::new(buf), len).unwrap();
        assert_eq!(m.hparams, hp);
        assert_eq!(m.filters, filters);
        assert_eq!(m.vocab, vocab);
        assert_eq!(m.tensors.len(), 2);
        assert_eq!(m.tensors[0].dims, vec![32, 2]);
        assert_eq!(m.tensors[0].nbytes, 128);
        assert_eq!(m.tensors[1].nbytes, 68);
        assert_eq!(m.tensors[1].offset + 68, len);
    }
}

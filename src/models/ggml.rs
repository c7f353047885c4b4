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

use std::collections::{HashMap, HashSet};
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
/// names it in errors. Tensor data is skipped, not read. Lenient: the shapes and names are
/// not checked against whisper.cpp's expectations (see [`check_whisper`] for that).
pub fn parse<R: Read + Seek>(r: &mut R, len: u64, source: &Path) -> Result<GgmlModel, Error> {
    parse_header(r, len, false).map_err(|reason| Error::input(source, reason))
}

/// Bounds of the Whisper family this reader accepts (tiny to large-v3 and turbo, English-only
/// and multilingual, distilled decoders included), each wider than any published model
/// where whisper.cpp allows it, exact where whisper.cpp hard-codes the value.
pub mod bounds {
    /// `n_vocab`: 51864 (English-only), 51865 (multilingual), 51866 (large-v3, turbo).
    /// whisper.cpp hard-codes the special token ids and the language list from these.
    pub const N_VOCAB: std::ops::RangeInclusive<i32> = 51864..=51866;
    /// `n_audio_ctx`: the encoder's 1500 positions (a 30 s window of 3000 mel frames / 2).
    pub const N_AUDIO_CTX: i32 = 1500;
    /// `n_text_ctx`: the decoder's 448 positions, the same in every Whisper model.
    pub const N_TEXT_CTX: i32 = 448;
    /// `n_audio_state` = `n_text_state` (384 tiny ... 1280 large): 64 to 4096.
    pub const STATE: std::ops::RangeInclusive<i32> = 64..=4096;
    /// Attention heads (6 tiny ... 20 large): 1 to 64, dividing the state.
    pub const HEADS: std::ops::RangeInclusive<i32> = 1..=64;
    /// Width of one attention head, state / heads (64 in every Whisper model): 32 to 256.
    pub const HEAD_SIZE: std::ops::RangeInclusive<i32> = 32..=256;
    /// Blocks (encoder 4 ... 32; decoder 2 for distil, 4 for turbo ... 32): 1 to 64.
    pub const LAYERS: std::ops::RangeInclusive<i32> = 1..=64;
    /// Mel bands: 80, or 128 for large-v3 and turbo.
    pub const N_MELS: [i32; 2] = [80, 128];
    /// Columns of the mel filterbank: the 201 bins of whisper.cpp's 400-point FFT.
    pub const N_FFT: usize = 201;
    /// Longest vocabulary token in bytes (real ones are at most 128).
    pub const MAX_TOKEN_LEN: u32 = 1024;
    /// Longest tensor name in bytes (real ones are under 64).
    pub const MAX_NAME_LEN: u64 = 256;
}

/// The tensor type that `ftype` (modulo 1000, the quantization version) gives the big
/// matrices, as `ggml_ftype_to_ggml_type` maps it; `None` for values whisper.cpp rejects
/// or this reader cannot size.
pub fn weight_type(ftype: i32) -> Option<GgmlType> {
    if ftype < 0 {
        return None;
    }
    Some(GgmlType(match ftype % 1000 {
        0 => 0,   // all f32
        1 => 1,   // f16
        2 => 2,   // q4_0
        3 => 3,   // q4_1
        7 => 8,   // q8_0
        8 => 6,   // q5_0
        9 => 7,   // q5_1
        10 => 10, // q2_K
        11 => 11, // q3_K
        12 => 12, // q4_K
        13 => 13, // q5_K
        14 => 14, // q6_K
        24 => 30, // bf16
        _ => return None,
    }))
}

/// Checks the eleven hyper-parameters against the Whisper family ([`bounds`]) and what
/// whisper.cpp's graph needs (equal encoder and decoder widths, heads dividing them, the
/// weight type's block dividing every matrix row).
pub fn check_hparams(hp: &Hparams) -> Result<(), String> {
    let range = |name: &str, v: i32, r: std::ops::RangeInclusive<i32>| {
        if r.contains(&v) {
            Ok(())
        } else {
            Err(format!(
                "{name} is {v} (expected {} to {})",
                r.start(),
                r.end()
            ))
        }
    };
    let exact = |name: &str, v: i32, want: i32| {
        if v == want {
            Ok(())
        } else {
            Err(format!("{name} is {v} (expected {want})"))
        }
    };
    range("n_vocab", hp.n_vocab, bounds::N_VOCAB)?;
    exact("n_audio_ctx", hp.n_audio_ctx, bounds::N_AUDIO_CTX)?;
    range("n_audio_state", hp.n_audio_state, bounds::STATE)?;
    range("n_audio_head", hp.n_audio_head, bounds::HEADS)?;
    range("n_audio_layer", hp.n_audio_layer, bounds::LAYERS)?;
    exact("n_text_ctx", hp.n_text_ctx, bounds::N_TEXT_CTX)?;
    range("n_text_state", hp.n_text_state, bounds::STATE)?;
    range("n_text_head", hp.n_text_head, bounds::HEADS)?;
    range("n_text_layer", hp.n_text_layer, bounds::LAYERS)?;
    if !bounds::N_MELS.contains(&hp.n_mels) {
        return Err(format!("n_mels is {} (expected 80 or 128)", hp.n_mels));
    }
    if hp.n_text_state != hp.n_audio_state {
        return Err(format!(
            "n_text_state {} differs from n_audio_state {}",
            hp.n_text_state, hp.n_audio_state
        ));
    }
    if hp.n_audio_state % hp.n_audio_head != 0 {
        return Err(format!(
            "n_audio_state {} is not a multiple of n_audio_head {}",
            hp.n_audio_state, hp.n_audio_head
        ));
    }
    if hp.n_text_state % hp.n_text_head != 0 {
        return Err(format!(
            "n_text_state {} is not a multiple of n_text_head {}",
            hp.n_text_state, hp.n_text_head
        ));
    }
    for (side, state, heads) in [
        ("audio", hp.n_audio_state, hp.n_audio_head),
        ("text", hp.n_text_state, hp.n_text_head),
    ] {
        if !bounds::HEAD_SIZE.contains(&(state / heads)) {
            return Err(format!(
                "n_{side}_head {heads} gives heads of {} (expected {} to {})",
                state / heads,
                bounds::HEAD_SIZE.start(),
                bounds::HEAD_SIZE.end()
            ));
        }
    }
    let wtype = weight_type(hp.ftype)
        .ok_or_else(|| format!("ftype {} is not a known weight type", hp.ftype))?;
    let (block, _) = wtype.layout().expect("weight_type gives known types");
    if !(hp.n_audio_state as usize).is_multiple_of(block) {
        return Err(format!(
            "n_audio_state {} is not a multiple of the {} block size {block}",
            hp.n_audio_state,
            wtype.name()
        ));
    }
    Ok(())
}

/// The tensors whisper.cpp's loader creates for `hp`, with the type and shape (ggml order,
/// padded to 4 with 1s) it expects in the file.
fn expected_tensors(hp: &Hparams) -> Expected {
    let wtype = weight_type(hp.ftype).unwrap_or(GgmlType::F32);
    let vtype = if wtype == GgmlType::F32 {
        GgmlType::F32
    } else {
        GgmlType::F16
    };
    let f32 = GgmlType::F32;
    let s = hp.n_audio_state as usize;
    let mut m = HashMap::new();
    let mut add = |name: String, t: GgmlType, d: &[usize]| {
        let mut dims = [1usize; 4];
        dims[..d.len()].copy_from_slice(d);
        m.insert(name, (t, dims));
    };
    add(
        "encoder.positional_embedding".into(),
        f32,
        &[s, hp.n_audio_ctx as usize],
    );
    add(
        "encoder.conv1.weight".into(),
        vtype,
        &[3, hp.n_mels as usize, s],
    );
    add("encoder.conv1.bias".into(), f32, &[1, s]);
    add("encoder.conv2.weight".into(), vtype, &[3, s, s]);
    add("encoder.conv2.bias".into(), f32, &[1, s]);
    add("encoder.ln_post.weight".into(), f32, &[s]);
    add("encoder.ln_post.bias".into(), f32, &[s]);
    let block = |add: &mut dyn FnMut(String, GgmlType, &[usize]), p: &str, cross: bool| {
        let mut attn = |a: &str| {
            add(format!("{p}.{a}_ln.weight"), f32, &[s]);
            add(format!("{p}.{a}_ln.bias"), f32, &[s]);
            for w in ["query", "key", "value", "out"] {
                add(format!("{p}.{a}.{w}.weight"), wtype, &[s, s]);
                if w != "key" {
                    add(format!("{p}.{a}.{w}.bias"), f32, &[s]);
                }
            }
        };
        attn("attn");
        if cross {
            attn("cross_attn");
        }
        add(format!("{p}.mlp_ln.weight"), f32, &[s]);
        add(format!("{p}.mlp_ln.bias"), f32, &[s]);
        add(format!("{p}.mlp.0.weight"), wtype, &[s, 4 * s]);
        add(format!("{p}.mlp.0.bias"), f32, &[4 * s]);
        add(format!("{p}.mlp.2.weight"), wtype, &[4 * s, s]);
        add(format!("{p}.mlp.2.bias"), f32, &[s]);
    };
    for i in 0..hp.n_audio_layer {
        block(&mut add, &format!("encoder.blocks.{i}"), false);
    }
    add(
        "decoder.positional_embedding".into(),
        f32,
        &[s, hp.n_text_ctx as usize],
    );
    add(
        "decoder.token_embedding.weight".into(),
        wtype,
        &[s, hp.n_vocab as usize],
    );
    add("decoder.ln.weight".into(), f32, &[s]);
    add("decoder.ln.bias".into(), f32, &[s]);
    for i in 0..hp.n_text_layer {
        block(&mut add, &format!("decoder.blocks.{i}"), true);
    }
    m
}

/// Validates a Whisper ggml model as whisper.cpp's `whisper_model_load` will read it: the
/// hyper-parameters ([`check_hparams`]), the mel filterbank's size, the vocabulary (count at
/// most `n_vocab`, each token within the file and [`bounds::MAX_TOKEN_LEN`]), and the tensor
/// table (every tensor known, once, with the shape and size whisper.cpp expects, its data
/// inside the file, none missing). Nothing is allocated in proportion to a size the file
/// claims. The error is the reason, without the path.
pub fn check_whisper<R: Read + Seek>(r: &mut R, len: u64) -> Result<GgmlModel, String> {
    parse_header(r, len, true)
}

/// [`check_whisper`] on a file, as an [`Error::Model`] naming it ("not a Whisper ggml model
/// (reason)"). A Silero VAD model is recognised and named as such.
pub fn validate_whisper(path: &Path) -> Result<GgmlModel, Error> {
    let (mut reader, len) = open_model(path, "Whisper")?;
    check_whisper(&mut reader, len).map_err(|reason| model_error(path, "Whisper", reason))
}

/// [`check_vad`] on a file, as an [`Error::Model`] naming it ("not a Silero VAD ggml model
/// (reason)"). A Whisper model is recognised and named as such.
pub fn validate_vad(path: &Path) -> Result<(), Error> {
    let (mut reader, len) = open_model(path, "Silero VAD")?;
    check_vad(&mut reader, len).map_err(|reason| model_error(path, "Silero VAD", reason))
}

fn model_error(path: &Path, what: &str, reason: String) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        reason: if reason.starts_with("this is") {
            format!("not a {what} ggml model: {reason}")
        } else {
            format!("not a {what} ggml model ({reason})")
        },
        source: None,
    }
}

fn open_model(path: &Path, what: &str) -> Result<(BufReader<File>, u64), Error> {
    let err = |reason: String, e: io::Error| Error::Model {
        path: path.to_path_buf(),
        reason,
        source: Some(Box::new(e)),
    };
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => err(format!("{what} model file not found"), e),
        _ => err(format!("cannot read {what} model file ({e})"), e),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| err(format!("cannot read {what} model file ({e})"), e))?;
    if !meta.is_file() {
        return Err(Error::Model {
            path: path.to_path_buf(),
            reason: format!("{what} model path is not a regular file"),
            source: None,
        });
    }
    Ok((BufReader::with_capacity(1 << 16, file), meta.len()))
}

/// Whether the bytes after the magic look like a Silero VAD header (a short model type
/// string starting "silero").
fn looks_like_vad<R: Read + Seek>(rd: &mut Reader<'_, R>) -> bool {
    let at = rd.pos;
    let ok = (|| {
        rd.inner.seek(SeekFrom::Start(4)).ok()?;
        let mut b = [0u8; 10];
        rd.inner.read_exact(&mut b).ok()?;
        let n = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        ((6..=64).contains(&n) && &b[4..10] == b"silero").then_some(())
    })()
    .is_some();
    let _ = rd.inner.seek(SeekFrom::Start(at));
    ok
}

fn parse_header<R: Read + Seek>(r: &mut R, len: u64, strict: bool) -> Result<GgmlModel, String> {
    let mut rd = Reader {
        inner: r,
        pos: 0,
        len,
    };
    let magic = rd.bytes(4, "the magic number")?;
    let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
    if magic != MAGIC && strict {
        return Err(format!("bad magic 0x{magic:08x}, expected 0x{MAGIC:08x}"));
    }
    if magic != MAGIC {
        return Err(format!(
            "not a whisper.cpp ggml model (magic 0x{magic:08x}, expected 0x{MAGIC:08x})"
        ));
    }
    if strict && looks_like_vad(&mut rd) {
        return Err("this is a Silero VAD model; pass it as --vad-model".into());
    }
    let mut hp = [0i32; 11];
    for v in hp.iter_mut() {
        *v = rd.i32("the hyper-parameters")?;
    }
    let hparams = Hparams::from_array(hp);
    let expected = if strict {
        check_hparams(&hparams)?;
        Some(expected_tensors(&hparams))
    } else {
        None
    };

    let n_mel = rd.count("the mel filter count")?;
    let n_fft = rd.count("the mel filter width")?;
    if strict && (n_mel != hparams.n_mels as usize || n_fft != bounds::N_FFT) {
        return Err(format!(
            "mel filterbank is {n_mel}x{n_fft} (expected {}x{})",
            hparams.n_mels,
            bounds::N_FFT
        ));
    }
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
    if strict && n_tokens > hparams.n_vocab as usize {
        return Err(format!(
            "the vocabulary has {n_tokens} tokens, more than n_vocab {}",
            hparams.n_vocab
        ));
    }
    // Each token takes at least its 4-byte length, so the file bounds the count.
    let mut vocab = Vec::with_capacity(n_tokens.min((rd.remaining() / 4) as usize));
    for i in 0..n_tokens {
        // The token number is added only on error: formatting it for each of 50k tokens
        // would dominate the parse.
        let b = rd
            .bytes(4, "the length of a token")
            .map_err(|e| format!("{e}, token {i} of {n_tokens}"))?;
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if strict && n > bounds::MAX_TOKEN_LEN {
            return Err(format!(
                "token {i} is {n} bytes long (at most {} expected)",
                bounds::MAX_TOKEN_LEN
            ));
        }
        let token = rd
            .bytes(u64::from(n), "a token")
            .map_err(|e| format!("{e}, token {i} of {n_tokens}"))?;
        vocab.push(token);
    }

    let mut tensors = Vec::new();
    let mut seen = HashSet::new();
    while rd.remaining() > 0 {
        let check = expected.as_ref().map(|e| (e, &mut seen));
        tensors.push(read_tensor(&mut rd, 1, strict, check)?);
    }
    if let Some(expected) = &expected {
        if let Some(missing) = first_missing(expected, &seen) {
            return Err(format!(
                "tensor '{missing}' is missing ({} of {} tensors in {len} bytes; truncated?)",
                seen.len(),
                expected.len()
            ));
        }
    }
    Ok(GgmlModel {
        hparams,
        filters,
        vocab,
        tensors,
        file_len: len,
    })
}

/// "f16", or "99 (unknown)" for a type number this reader does not know.
fn type_label(t: GgmlType) -> String {
    match t.layout() {
        Some(_) => t.name(),
        None => format!("{} (unknown)", t.0),
    }
}

/// The missing tensor that comes first by name, so the message is deterministic.
fn first_missing<'e, T>(
    expected: &'e HashMap<String, T>,
    seen: &HashSet<String>,
) -> Option<&'e str> {
    expected
        .keys()
        .filter(|k| !seen.contains(*k))
        .min()
        .map(String::as_str)
}

/// The tensors a file must hold, by name: type and shape (ne0 first, padded with ones).
type Expected = HashMap<String, (GgmlType, [usize; 4])>;

/// Reads one tensor record (header, name, shape) and skips its data. `min_dims` is 1 for
/// Whisper models and 0 for Silero's, which stores scalars; `strict` bounds the name length.
/// With `expected`, the tensor must be one of them, as expected, and not `seen` before.
fn read_tensor<R: Read + Seek>(
    rd: &mut Reader<R>,
    min_dims: i32,
    strict: bool,
    expected: Option<(&Expected, &mut HashSet<String>)>,
) -> Result<TensorInfo, String> {
    let start = rd.pos;
    let n_dims = rd.i32("a tensor header")?;
    let name_len = rd.i32("a tensor header")?;
    let ttype = rd.i32("a tensor header")?;
    if !(min_dims..=4).contains(&n_dims) {
        return Err(format!(
            "tensor at offset {start} has {n_dims} dimensions (expected {min_dims} to 4)"
        ));
    }
    let name_len = u64::try_from(name_len)
        .ok()
        .filter(|&n| n > 0 && (!strict || n <= bounds::MAX_NAME_LEN))
        .ok_or_else(|| format!("tensor at offset {start} has name length {name_len}"))?;
    let mut dims = Vec::with_capacity(n_dims.max(1) as usize);
    for _ in 0..n_dims {
        let d = rd.i32("a tensor shape")?;
        let d = usize::try_from(d)
            .ok()
            .filter(|&d| d > 0)
            .ok_or_else(|| format!("tensor at offset {start} has dimension {d}"))?;
        dims.push(d);
    }
    if dims.is_empty() {
        // A scalar: one element.
        dims.push(1);
    }
    let name = rd.bytes(name_len, "a tensor name")?;
    let name = String::from_utf8(name)
        .map_err(|_| format!("tensor name at offset {start} is not UTF-8"))?;
    let ttype =
        GgmlType(u32::try_from(ttype).map_err(|_| format!("tensor '{name}' has type {ttype}"))?);
    let nbytes = ttype.nbytes(&dims).ok_or_else(|| {
        format!(
            "tensor '{name}' has type {} and shape {dims:?}, which this reader cannot size",
            type_label(ttype)
        )
    })?;
    let tensor = TensorInfo {
        name,
        ttype,
        dims,
        offset: rd.pos,
        nbytes,
    };
    if let Some((expected, seen)) = expected {
        check_tensor(expected, &tensor)?;
        if !seen.insert(tensor.name.clone()) {
            return Err(format!("tensor '{}' appears twice", tensor.name));
        }
    }
    rd.skip(nbytes, &format!("the data of tensor '{}'", tensor.name))?;
    Ok(tensor)
}

/// One tensor of the file against what the loader expects: a known name, the same shape
/// (whisper.cpp compares the first three dims and the element count) and the same byte
/// size for its type (whisper.cpp reads the expected size whatever the file's type says).
fn check_tensor(expected: &Expected, tensor: &TensorInfo) -> Result<(), String> {
    let TensorInfo {
        name,
        ttype,
        dims,
        nbytes,
        ..
    } = tensor;
    let (want_type, want_dims) = expected
        .get(name)
        .ok_or_else(|| format!("unknown tensor '{name}'"))?;
    let mut got = [1usize; 4];
    got[..dims.len()].copy_from_slice(dims);
    if got != *want_dims {
        return Err(format!(
            "tensor '{name}' has shape {dims:?} (expected {want_dims:?})"
        ));
    }
    if want_type.nbytes(want_dims) != Some(*nbytes) {
        return Err(format!(
            "tensor '{name}' has type {} (expected {})",
            ttype.name(),
            want_type.name()
        ));
    }
    Ok(())
}

/// The Silero VAD layout whisper.cpp's `whisper_vad_init_with_params` reads and its graph
/// hard-codes (Silero v5/v6 at 16 kHz, as converted by whisper.cpp).
pub mod vad_bounds {
    /// Samples per window.
    pub const N_WINDOW: i32 = 512;
    /// Context samples carried between windows.
    pub const N_CONTEXT: i32 = 64;
    /// (in channels, out channels, kernel size) of the four encoder convolutions.
    pub const ENCODER: [(i32, i32, i32); 4] =
        [(129, 128, 3), (128, 64, 3), (64, 64, 3), (64, 128, 3)];
    /// LSTM input and hidden size.
    pub const LSTM: (i32, i32) = (128, 128);
    /// Final convolution in and out channels.
    pub const FINAL_CONV: (i32, i32) = (128, 1);
    /// Longest model type string ("silero-16k").
    pub const MAX_TYPE_LEN: i32 = 64;
}

/// Validates a Silero VAD ggml model as whisper.cpp's `whisper_vad_init_with_params` reads
/// it: the model type ("silero..."), the window, the layer table ([`vad_bounds`]) and the
/// tensor table (every tensor known, once, with the expected type and shape, inside the
/// file, none missing). A Whisper model is recognised and named as such.
pub fn check_vad<R: Read + Seek>(r: &mut R, len: u64) -> Result<(), String> {
    use vad_bounds as vb;
    let mut rd = Reader {
        inner: r,
        pos: 0,
        len,
    };
    let magic = rd.bytes(4, "the magic number")?;
    let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
    if magic != MAGIC {
        return Err(format!("bad magic 0x{magic:08x}, expected 0x{MAGIC:08x}"));
    }
    let type_len = rd.i32("the model type")?;
    if bounds::N_VOCAB.contains(&type_len) {
        return Err("this is a Whisper model; pass it as --model".into());
    }
    if !(1..=vb::MAX_TYPE_LEN).contains(&type_len) {
        return Err(format!("model type length is {type_len}"));
    }
    let model_type = rd.bytes(type_len as u64, "the model type")?;
    if !model_type.starts_with(b"silero") {
        return Err(format!(
            "model type is '{}' (expected silero)",
            String::from_utf8_lossy(&model_type).escape_debug()
        ));
    }
    for _ in 0..3 {
        rd.i32("the version")?;
    }
    let exact = |name: &str, v: i32, want: i32| {
        if v == want {
            Ok(())
        } else {
            Err(format!("{name} is {v} (expected {want})"))
        }
    };
    exact("n_window", rd.i32("n_window")?, vb::N_WINDOW)?;
    exact("n_context", rd.i32("n_context")?, vb::N_CONTEXT)?;
    exact(
        "n_encoder_layers",
        rd.i32("n_encoder_layers")?,
        vb::ENCODER.len() as i32,
    )?;
    for (i, &(cin, cout, k)) in vb::ENCODER.iter().enumerate() {
        exact(
            &format!("encoder {i} in channels"),
            rd.i32("the encoder")?,
            cin,
        )?;
        exact(
            &format!("encoder {i} out channels"),
            rd.i32("the encoder")?,
            cout,
        )?;
        exact(
            &format!("encoder {i} kernel size"),
            rd.i32("the encoder")?,
            k,
        )?;
    }
    exact("lstm_input_size", rd.i32("the LSTM")?, vb::LSTM.0)?;
    exact("lstm_hidden_size", rd.i32("the LSTM")?, vb::LSTM.1)?;
    exact(
        "final_conv_in",
        rd.i32("the final convolution")?,
        vb::FINAL_CONV.0,
    )?;
    exact(
        "final_conv_out",
        rd.i32("the final convolution")?,
        vb::FINAL_CONV.1,
    )?;

    let expected = expected_vad_tensors();
    let mut seen = HashSet::new();
    while rd.remaining() > 0 {
        read_tensor(&mut rd, 0, true, Some((&expected, &mut seen)))?;
    }
    if let Some(missing) = first_missing(&expected, &seen) {
        return Err(format!(
            "tensor '{missing}' is missing ({} of {} tensors in {len} bytes; truncated?)",
            seen.len(),
            expected.len()
        ));
    }
    Ok(())
}

fn expected_vad_tensors() -> Expected {
    use vad_bounds as vb;
    let mut m = HashMap::new();
    let mut add = |name: String, t: GgmlType, d: &[i32]| {
        let mut dims = [1usize; 4];
        for (o, &v) in dims.iter_mut().zip(d) {
            *o = v as usize;
        }
        m.insert(name, (t, dims));
    };
    for (i, &(cin, cout, k)) in vb::ENCODER.iter().enumerate() {
        add(
            format!("_model.encoder.{i}.reparam_conv.weight"),
            GgmlType::F16,
            &[k, cin, cout],
        );
        add(
            format!("_model.encoder.{i}.reparam_conv.bias"),
            GgmlType::F32,
            &[cout],
        );
    }
    let (_, hidden) = vb::LSTM;
    for w in ["ih", "hh"] {
        add(
            format!("_model.decoder.rnn.weight_{w}"),
            GgmlType::F32,
            &[hidden, 4 * hidden],
        );
        add(
            format!("_model.decoder.rnn.bias_{w}"),
            GgmlType::F32,
            &[4 * hidden],
        );
    }
    add(
        "_model.decoder.decoder.2.weight".into(),
        GgmlType::F16,
        &[vb::FINAL_CONV.0, 1],
    );
    add("_model.decoder.decoder.2.bias".into(), GgmlType::F32, &[1]);
    add(
        "_model.stft.forward_basis_buffer".into(),
        GgmlType::F16,
        &[256, 1, 258],
    );
    m
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
        let m = parse_header(&mut io::Cursor::new(buf), len, false).unwrap();
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

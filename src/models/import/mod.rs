//! `verbatim models import`: a CTranslate2 (faster-whisper) Whisper directory to a
//! whisper.cpp ggml file, in pure Rust.
//!
//! CTranslate2 keeps the weights of openai-whisper under its own names with the attention
//! projections fused (self-attention QKV in `linear_0`, cross-attention KV in `linear_1`);
//! whisper.cpp wants openai-whisper's names and layout, plus the mel filterbank and the BPE
//! vocabulary in the same file. This module checks every shape against a Whisper model
//! before writing anything, then writes the tensors in the order and with the types that
//! whisper.cpp's own converter (`convert-pt-to-ggml.py`) uses: big matrices f16 (or q8_0 from
//! an int8 source), convolution kernels f16, everything else f32.
//!
//! The work is split by job: `plan` checks the model and maps its variables to tensors,
//! `vocab` reads and checks the vocabulary, `convert` converts the data and writes the file.

mod convert;
mod plan;
mod vocab;

use std::path::Path;

use super::ct2;
use super::ggml::MelFilters;
use super::mel;
use crate::error::Error;
pub use vocab::gpt2_token_bytes;

/// What an import produced (for the CLI to print).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows of the token embedding (51864 English-only, 51865/51866 multilingual).
    pub n_vocab: usize,
    /// Encoder blocks.
    pub n_audio_layer: usize,
    /// Decoder blocks.
    pub n_text_layer: usize,
    /// Mel bands (80, or 128 for large-v3).
    pub n_mels: usize,
    /// Whether whisper.cpp will treat it as multilingual (n_vocab ≥ 51865).
    pub multilingual: bool,
    /// The CTranslate2 weight type, e.g. "float16", "float32", "int8_float16".
    pub source_dtype: String,
    /// Type of the big matrices in the output: "f16" or "q8_0".
    pub ftype: String,
    /// Tensors written.
    pub tensors: usize,
    /// Size of the output file.
    pub bytes: u64,
}

/// What to make of int8 weights (CTranslate2 `int8`, `int8_float16`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Int8Output {
    /// Keep them 8-bit as ggml q8_0 (the int8 values are copied, one f16 scale per row):
    /// a smaller file and faster CPU inference.
    #[default]
    Q8_0,
    /// Dequantize to f16.
    F16,
}

/// Options of [`import_ct2_with`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// What int8 weights become.
    pub int8: Int8Output,
}

/// Converts the CTranslate2 Whisper model in `dir` to a whisper.cpp ggml file at `out`,
/// written atomically (a temporary file next to it, then a rename). Nothing is written
/// unless the whole model checks out.
pub fn import_ct2(dir: &Path, out: &Path) -> Result<ImportSummary, Error> {
    import_ct2_with(dir, out, &ImportOptions::default())
}

/// [`import_ct2`] with options.
pub fn import_ct2_with(
    dir: &Path,
    out: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary, Error> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::input(dir, "not a directory")),
        Err(e) => return Err(Error::input(dir, format!("cannot open: {e}"))),
    }
    let bin = dir.join("model.bin");
    if !bin.is_file() {
        return Err(Error::input(
            dir,
            "model.bin missing: not a CTranslate2 model directory",
        ));
    }
    let vocab_path = vocab::find_vocabulary(dir)?;

    let bytes = std::fs::read(&bin).map_err(|e| Error::input(&bin, format!("cannot read: {e}")))?;
    let model = ct2::Model::parse(&bytes).map_err(|r| Error::input(&bin, r))?;
    let plan = plan::plan_whisper(&model, opts).map_err(|r| Error::input(&bin, r))?;

    let tokens = vocab::read_vocabulary(&vocab_path)?;
    let vocab = vocab::whisper_vocabulary(&tokens, &plan.hparams, &vocab_path)
        .map_err(|r| Error::input(&vocab_path, r))?;

    let n_mels = plan.hparams.n_mels as usize;
    let filters = MelFilters {
        n_mel: n_mels,
        n_fft: mel::N_BINS,
        data: mel::mel_filters(n_mels),
    };

    let bytes_written = convert::write_ggml(out, &plan, &filters, &vocab)?;
    let hp = &plan.hparams;
    Ok(ImportSummary {
        n_vocab: hp.n_vocab as usize,
        n_audio_layer: hp.n_audio_layer as usize,
        n_text_layer: hp.n_text_layer as usize,
        n_mels,
        multilingual: hp.n_vocab >= MULTILINGUAL_N_VOCAB,
        source_dtype: plan.source_dtype.clone(),
        ftype: plan.wtype.name(),
        tensors: plan.tensors.len(),
        bytes: bytes_written,
    })
}

/// whisper.cpp's test for a multilingual model (`n_vocab >= 51865`).
const MULTILINGUAL_N_VOCAB: i32 = 51865;

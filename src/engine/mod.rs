//! The engine: the only module that touches whisper-rs.
//!
//! [`Engine::transcribe`] takes 16 kHz mono samples, finds speech with Silero VAD, packs the
//! speech spans into one buffer (so whisper's 30 s windows are full of speech, not silence),
//! decodes it with beam search and maps every segment and word back to the original timeline.
//! Segments are checked by the hallucination guard ([`guard`]) and handed to a callback as
//! soon as whisper finalises them.
//!
//! This file holds the whisper FFI (loading, decoding parameters, the C callbacks, language
//! detection and tables); `segments` turns what the callbacks read from whisper, as plain Rust
//! data, into final segments and words.

pub mod cores;
pub mod device;
pub mod guard;
mod segments;
pub mod vad;

use std::ffi::{c_void, CStr};
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use whisper_rs::whisper_rs_sys as sys;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperError,
    WhisperState, WhisperVadContext, WhisperVadContextParams, WhisperVadParams,
};

use crate::error::{Error, Result};
use crate::transcript::{Segment, Transcript};
use segments::{RawSegment, RawToken, SegmentCollector};
pub use vad::{Span, TimeMap, VadOptions};

/// Samples per second of the audio the engine takes.
pub const SAMPLES_PER_SECOND: usize = crate::audio::WHISPER_SAMPLE_RATE as usize;
/// Samples per frame of whisper's encoder (20 ms).
const FRAME_SAMPLES: usize = SAMPLES_PER_SECOND / 50;

/// The whisper.cpp version verbatim is built with.
pub fn whisper_cpp_version() -> &'static str {
    whisper_rs::WHISPER_CPP_VERSION
}

/// How the linked whisper.cpp was built (crates/whisper-rs-sys, docs/engine.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineBuild {
    /// `1.8.3+verbatim.N.HASH`: the upstream release, the number of verbatim's patches applied
    /// and a digest of their bytes.
    pub patch_level: &'static str,
    pub patches: Vec<&'static str>,
    /// The GGML_*/WHISPER_* CMake settings of the build.
    pub settings: Vec<(&'static str, &'static str)>,
    /// ggml's own report of its CPU backend (`whisper_print_system_info`).
    pub system_info: String,
}

/// The linked engine's build: read from the engine crate and from ggml itself.
pub fn engine_build() -> EngineBuild {
    use sys::engine_build as build;
    // SAFETY: returns a pointer to a static NUL-terminated string owned by whisper.cpp.
    let system_info = unsafe {
        std::ffi::CStr::from_ptr(sys::whisper_print_system_info())
            .to_string_lossy()
            .trim()
            .to_string()
    };
    EngineBuild {
        patch_level: build::PATCH_LEVEL,
        patches: build::PATCHES.to_vec(),
        settings: build::SETTINGS.to_vec(),
        system_info,
    }
}

/// Text the audio begins with and where it ends (see [`TranscribeOptions::decoder_prefix`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderPrefix {
    pub text: String,
    /// Seconds from `offset` (the start of what is transcribed) to the end of that text's
    /// speech: the words decoded after it are dated from there, within whisper's 30 s window.
    pub end: f64,
}

/// Options fixed when the model is loaded.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Silero VAD model (ggml). `None` disables VAD.
    pub vad_model: Option<PathBuf>,
    /// Use flash attention (whisper.cpp's default): turning it off saves little time and
    /// costs much more memory (docs/benchmarks.md, "Figures behind code defaults").
    pub flash_attn: bool,
    /// Run whisper on a GPU when the binary has a GPU backend. whisper.cpp falls back to the
    /// CPU by itself when it finds no GPU, but a broken driver can abort the process: callers
    /// that must not die decide with [`device`]'s probe first (the CLI does).
    pub use_gpu: bool,
    /// Which GPU (`gpu:N`), counted as [`device::list_devices`] numbers them.
    pub gpu_device: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            vad_model: None,
            flash_attn: true,
            use_gpu: true,
            gpu_device: 0,
        }
    }
}

/// Per-transcription options.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TranscribeOptions {
    /// Language code (`en`, `de`, ...) or `None` to detect it (multilingual models only).
    pub language: Option<String>,
    /// Translate to English.
    pub translate: bool,
    /// CPU threads for whisper: the most it uses (see `adapt_threads`).
    pub threads: usize,
    /// Use fewer threads than `threads` while other processes keep cores busy (throughout the
    /// last second, [`cores`]): a thread without a core stalls the others at every barrier.
    /// Off when the user set the count.
    #[serde(skip)]
    pub adapt_threads: bool,
    /// Beam size; 1 means greedy decoding.
    pub beam_size: usize,
    /// Candidates sampled at non-zero temperature (whisper's best-of).
    pub best_of: usize,
    /// First decoding temperature.
    #[serde(serialize_with = "serialize_rounded")]
    pub temperature: f32,
    /// Temperature step for the fallback when a decode looks wrong; 0 disables the fallback.
    #[serde(serialize_with = "serialize_rounded")]
    pub temperature_increment: f32,
    /// Text that primes the decoder (names, spelling, style).
    pub initial_prompt: Option<String>,
    /// Text the audio is known to begin with (dictation: what was committed for it). The
    /// decoder is forced to start with it and continues after it, so the transcript holds only
    /// the words that follow, read with that text and its audio as context. Needs `vad` off.
    #[serde(skip)]
    pub decoder_prefix: Option<DecoderPrefix>,
    /// The first this-many seconds of the audio (dictation: earlier speech read as context)
    /// are encoded on their own, and their encoding is kept for the next call that starts with
    /// the same audio; the rest is encoded each call, attending to the kept part too (the kept
    /// part does not attend to the rest). Flash attention only (otherwise encoded whole).
    /// Dictation re-reads the same context at every step, and encoding it once per change
    /// instead of once per step makes a step cost about what the rest alone costs. Needs
    /// `vad` off and reused states to pay off. 0 = the audio encoded whole.
    #[serde(skip)]
    pub cached_context_seconds: f64,
    /// Keep per-word timings in the transcript.
    pub word_timestamps: bool,
    /// Run VAD and transcribe only speech (needs a VAD model on the engine).
    pub vad: bool,
    /// VAD tuning.
    #[serde(skip)]
    pub vad_options: VadOptions,
    /// Drop or flag hallucinations (phantom phrases, loops, no-speech segments).
    pub hallucination_guard: bool,
    /// Probability above which whisper's no-speech token marks a window as silent.
    #[serde(serialize_with = "serialize_rounded")]
    pub no_speech_threshold: f32,
    /// Average log-probability below which a decode is retried at a higher temperature.
    #[serde(serialize_with = "serialize_rounded")]
    pub logprob_threshold: f32,
    /// Skip this many seconds at the start.
    pub offset: f64,
    /// Transcribe at most this many seconds (after `offset`).
    pub duration: Option<f64>,
    /// Encode at least this many seconds of context even for shorter audio. Shrinking the
    /// encoder to the clip saves time, but on clips of a second or two tiny models lose words
    /// and loop; dictation keeps a floor.
    pub min_context_seconds: f64,
    /// Reuse a pooled whisper state instead of creating one. Faster for many short calls, but
    /// temperature fallback then draws from a state's running random generator, so results can
    /// depend on earlier calls; file transcription keeps a fresh state per call.
    pub reuse_state: bool,
    /// Stop decoding a window after this many tokens (0: no limit). Dictation bounds each
    /// re-transcription by the audio's length, so a hallucination loop on a short clip cannot
    /// stall the live text.
    pub max_tokens: usize,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            language: None,
            translate: false,
            threads: default_threads(),
            adapt_threads: true,
            beam_size: 5,
            best_of: 5,
            temperature: 0.0,
            temperature_increment: 0.2,
            initial_prompt: None,
            decoder_prefix: None,
            cached_context_seconds: 0.0,
            word_timestamps: false,
            vad: true,
            vad_options: VadOptions::default(),
            hallucination_guard: true,
            no_speech_threshold: 0.6,
            logprob_threshold: -1.0,
            offset: 0.0,
            duration: None,
            min_context_seconds: 0.0,
            reuse_state: false,
            max_tokens: 0,
        }
    }
}

/// Writes an f32 option as a short decimal: `0.6`, not `0.6000000238418579`.
fn serialize_rounded<S: serde::Serializer>(
    value: &f32,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_f64((f64::from(*value) * 10_000.0).round() / 10_000.0)
}

/// Threads to use by default: every core the process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get())
}

/// The most threads one transcription uses (4 per core, at least 8): beyond the cores ggml's
/// workers only spin, and whisper.cpp aborts when the system refuses to create a thread.
/// [`TranscribeOptions::threads`] above it is lowered to it.
pub fn max_threads() -> usize {
    (default_threads() * 4).max(8)
}

/// The longest prompt handed to whisper, in characters. Whisper reads at most 224 prompt
/// tokens (about 1,000 characters of English); whisper.cpp's tokenizer recurses once per
/// character of a word, so a long prompt without spaces overflows the stack.
pub const MAX_PROMPT_CHARS: usize = 1_200;
/// The most tokens of a decoder prefix whisper is given (see `TranscribeOptions::decoder_prefix`).
const MAX_PREFIX_TOKENS: usize = 200;

/// The longest run without whitespace handed to whisper: whisper.cpp's tokenizer is
/// quadratic or worse in a word's length (1,200 characters without a space took minutes).
const MAX_PROMPT_WORD: usize = 40;

/// The end of `prompt` whisper can use: at most [`MAX_PROMPT_CHARS`] characters, starting
/// after a space where one is near the cut (the end of a prompt is what primes the text), with
/// runs longer than any word broken by spaces.
pub fn usable_prompt(prompt: &str) -> std::borrow::Cow<'_, str> {
    let count = prompt.chars().count();
    let mut tail = prompt;
    if count > MAX_PROMPT_CHARS {
        let (cut, _) = prompt
            .char_indices()
            .nth(count - MAX_PROMPT_CHARS)
            .unwrap_or((0, ' '));
        tail = &prompt[cut..];
        if let Some((i, _)) = tail
            .char_indices()
            .take(64)
            .find(|(_, c)| c.is_whitespace())
        {
            tail = tail[i..].trim_start();
        }
    }
    let too_long = tail
        .split(char::is_whitespace)
        .any(|w| w.chars().nth(MAX_PROMPT_WORD).is_some());
    if !too_long {
        return std::borrow::Cow::Borrowed(tail);
    }
    let mut out = String::with_capacity(tail.len() + tail.len() / MAX_PROMPT_WORD);
    let mut run = 0;
    for c in tail.chars() {
        if c.is_whitespace() {
            run = 0;
        } else if run == MAX_PROMPT_WORD {
            out.push(' ');
            run = 1;
        } else {
            run += 1;
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

/// Callbacks for one transcription.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Called with each segment as soon as it is final (already on the original timeline).
    pub on_segment: Option<&'a mut dyn FnMut(&Segment)>,
    /// Called with the fraction done, 0.0 to 1.0.
    pub on_progress: Option<&'a mut dyn FnMut(f32)>,
    /// Set it to stop whisper as soon as possible; the call then returns [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

/// What is known about a loaded model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// Path of the model file.
    pub path: PathBuf,
    /// Size class (`tiny`, `base`, ...).
    pub kind: String,
    /// Whether the model knows many languages (else English only).
    pub multilingual: bool,
}

/// A loaded Whisper model (and the VAD model), shareable between threads.
pub struct Engine {
    ctx: WhisperContext,
    /// Whisper states kept for reuse: creating one allocates the KV caches and compute buffers,
    /// which dominated short repeated calls (dictation re-transcribes every half second).
    states: Mutex<Vec<WhisperState>>,
    vad: Option<Mutex<WhisperVadContext>>,
    info: ModelInfo,
}

/// Validates a model file before whisper.cpp sees it (whisper.cpp aborts, divides by zero or
/// allocates without limit on headers it does not expect): the ggml magic, then the whole
/// header and tensor table through [`crate::models::ggml::validate_whisper`] or
/// [`crate::models::ggml::validate_vad`] (`what` is "Whisper" or "Silero VAD").
fn check_ggml_magic(path: &Path, what: &str) -> Result<()> {
    let model_err = |reason: String| Error::Model {
        path: path.to_path_buf(),
        reason,
        source: None,
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        model_err(match e.kind() {
            std::io::ErrorKind::NotFound => format!("{what} model file not found"),
            _ => format!("cannot read {what} file ({e})"),
        })
    })?;
    if meta.is_dir() {
        return Err(model_err(format!("{what} path is a directory")));
    }
    if what == "Whisper" {
        crate::models::ggml::validate_whisper(path).map(|_| ())
    } else {
        crate::models::ggml::validate_vad(path)
    }
}

impl Engine {
    /// Loads a Whisper ggml model and, if configured, the Silero VAD model.
    pub fn load(model: &Path, options: &EngineOptions) -> Result<Self> {
        whisper_rs::install_logging_hooks();
        check_ggml_magic(model, "Whisper")?;
        // The VAD model too, before the (slow) Whisper load: a bad one fails fast.
        if let Some(vad_path) = &options.vad_model {
            check_ggml_magic(vad_path, "Silero VAD")?;
        }
        let mut params = WhisperContextParameters::default();
        params.flash_attn(options.flash_attn);
        params.use_gpu(options.use_gpu);
        params.gpu_device(options.gpu_device.min(c_int::MAX as usize) as c_int);
        let path_str = model.to_str().ok_or_else(|| Error::Model {
            path: model.to_path_buf(),
            reason: "model path is not valid UTF-8".into(),
            source: None,
        })?;
        let ctx = WhisperContext::new_with_params(path_str, params).map_err(|e| Error::Model {
            path: model.to_path_buf(),
            reason: "not a Whisper ggml model (or the file is truncated)".into(),
            source: Some(Box::new(e)),
        })?;
        let vad = match &options.vad_model {
            Some(vad_path) => Some(Mutex::new(load_vad(vad_path)?)),
            None => None,
        };
        let kind = ctx
            .model_type_readable_str_lossy()
            .map(|s| s.into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let info = ModelInfo {
            path: model.to_path_buf(),
            multilingual: ctx.is_multilingual(),
            kind,
        };
        // The first transcription's thread count needs a view of the machine already.
        cores::start();
        Ok(Engine {
            ctx,
            states: Mutex::new(Vec::new()),
            vad,
            info,
        })
    }

    /// The threads for a call with `opts`.
    fn threads_for(&self, opts: &TranscribeOptions) -> usize {
        let wanted = opts.threads.clamp(1, max_threads());
        if opts.adapt_threads {
            cores::threads(wanted)
        } else {
            wanted
        }
    }

    /// Facts about the loaded model.
    pub fn model_info(&self) -> &ModelInfo {
        &self.info
    }

    /// The token ids of `text` in the model's vocabulary, as whisper's tokenizer splits it
    /// (empty if the text cannot be tokenized). Used where an API reports tokens per segment.
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        if text.contains('\0') {
            return Vec::new();
        }
        // No text token is shorter than one byte, so the byte length bounds the token count.
        self.ctx.tokenize(text, text.len() + 16).unwrap_or_default()
    }

    /// True when a VAD model is loaded.
    pub fn has_vad(&self) -> bool {
        self.vad.is_some()
    }

    /// Finds speech in `audio` (16 kHz mono). Returns raw (unpadded) spans in samples.
    pub fn detect_speech(&self, audio: &[f32], opts: &VadOptions) -> Result<Vec<Span>> {
        let Some(vad) = &self.vad else {
            return Ok(vec![Span {
                start: 0,
                end: audio.len(),
            }]);
        };
        let mut vad = vad.lock().unwrap_or_else(|e| e.into_inner());
        let mut params = WhisperVadParams::new();
        params.set_threshold(opts.threshold);
        params.set_min_speech_duration(opts.min_speech_ms as c_int);
        params.set_min_silence_duration(opts.min_silence_ms as c_int);
        // Padding is applied by verbatim (pad_and_merge) so raw spans stay exact.
        params.set_speech_pad(0);
        params.set_samples_overlap(0.0);
        let segments = vad
            .segments_from_samples(params, audio)
            .map_err(|e| Error::Engine {
                path: PathBuf::from("VAD"),
                reason: format!("voice activity detection failed: {e}"),
                source: Some(Box::new(e)),
            })?;
        let cs_to_samples =
            |cs: f32| ((cs.max(0.0) as f64) * SAMPLES_PER_SECOND as f64 / 100.0) as usize;
        Ok(segments
            .map(|s| Span {
                start: cs_to_samples(s.start).min(audio.len()),
                end: cs_to_samples(s.end).min(audio.len()),
            })
            .filter(|s| s.end > s.start)
            .collect())
    }

    /// Transcribes 16 kHz mono `audio`. `source` names the input in errors; `channel` labels
    /// the segments when channels are transcribed separately.
    pub fn transcribe(
        &self,
        source: &Path,
        audio: &[f32],
        channel: Option<usize>,
        opts: &TranscribeOptions,
        hooks: &mut Hooks<'_>,
    ) -> Result<Transcript> {
        let engine_err = |reason: String| Error::Engine {
            path: source.to_path_buf(),
            reason,
            source: None,
        };
        let sr = SAMPLES_PER_SECOND as f64;
        let offset = ((opts.offset.max(0.0) * sr) as usize).min(audio.len());
        let end = match opts.duration {
            Some(d) => (offset + (d.max(0.0) * sr) as usize).min(audio.len()),
            None => audio.len(),
        };
        let window = &audio[offset..end];
        let mut transcript = Transcript {
            speakers: Vec::new(),
            turns: Vec::new(),
            language: String::new(),
            language_probability: None,
            duration: audio.len() as f64 / sr,
            segments: Vec::new(),
        };

        // 1. Speech spans (raw for the guard, padded for whisper).
        let use_vad = opts.vad && self.vad.is_some();
        let raw_spans = if use_vad {
            self.detect_speech(window, &opts.vad_options)?
        } else {
            vec![Span {
                start: 0,
                end: window.len(),
            }]
        };
        let pad = opts.vad_options.pad_ms as usize * SAMPLES_PER_SECOND / 1000;
        let spans = if use_vad {
            vad::pad_and_merge(&raw_spans, pad, window.len())
        } else {
            raw_spans.clone()
        };
        let (packed, map) = if use_vad {
            TimeMap::pack(window, &spans)
        } else {
            (Vec::new(), TimeMap::identity(window.len()))
        };
        let samples: &[f32] = if use_vad { &packed } else { window };
        if samples.len() < SAMPLES_PER_SECOND / 10 {
            // No speech at all: nothing to decode, and nothing to hallucinate.
            transcript.language = opts.language.clone().unwrap_or_else(|| "en".into());
            if let Some(p) = hooks.on_progress.as_mut() {
                p(1.0);
            }
            return Ok(transcript);
        }

        let pooled = if opts.reuse_state {
            self.states.lock().unwrap_or_else(|e| e.into_inner()).pop()
        } else {
            None
        };
        let state = match pooled {
            Some(s) => s,
            None => self
                .ctx
                .create_state()
                .map_err(|e| engine_err(format!("cannot create whisper state: {e}")))?,
        };
        let mut state = PooledState {
            pool: opts.reuse_state.then_some(&self.states),
            state: Some(state),
        };

        let threads = self.threads_for(opts);
        // Set on every call: a pooled state keeps the prefix of its last one.
        let (prefix, prefix_end) = match &opts.decoder_prefix {
            Some(p) if !p.text.trim().is_empty() => {
                if use_vad {
                    return Err(engine_err(
                        "a decoder prefix needs VAD off (its end is a time in the audio as given)"
                            .into(),
                    ));
                }
                // A token is at least one byte, so this bound always suffices.
                let text = format!(" {}", p.text.trim());
                let mut tokens = self
                    .ctx
                    .tokenize(&text, text.len() + 16)
                    .map_err(|e| engine_err(format!("cannot tokenize the decoder prefix: {e}")))?;
                // The decoder's text context holds 448 tokens, half of them for what it
                // generates; the end of the prefix is what the audio continues from.
                let excess = tokens.len().saturating_sub(MAX_PREFIX_TOKENS);
                tokens.drain(..excess);
                // Whisper's window is 30 s; an end outside it (or not a number) is clamped
                // into it.
                let end = (p.end * 100.0).round().clamp(0.0, 3000.0) as i64;
                (tokens, Some(end))
            }
            _ => (Vec::new(), None),
        };
        state
            .set_prefix_tokens(&prefix, prefix_end)
            .map_err(|e| engine_err(format!("cannot set the decoder prefix: {e}")))?;
        // Also set on every call. Whole encoder frames only (20 ms), and never the whole
        // window: the rest must be encoded for the decoder to continue from.
        let split_frames = if opts.cached_context_seconds > 0.0 {
            if use_vad {
                return Err(engine_err(
                    "a cached context needs VAD off (it is the audio's start as given)".into(),
                ));
            }
            let seconds = opts.cached_context_seconds.min(29.0);
            ((seconds * sr) as usize).min(samples.len()) / FRAME_SAMPLES
        } else {
            0
        };
        let split_key = {
            use std::hash::Hasher;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for x in &samples[..split_frames * FRAME_SAMPLES] {
                h.write_u32(x.to_bits());
            }
            h.finish()
        };
        state
            .set_encoder_split(split_frames, split_key)
            .map_err(|e| engine_err(format!("cannot set the encoder split: {e}")))?;

        // 2. Language.
        let language = if !self.info.multilingual {
            "en".to_string()
        } else {
            match opts.language.as_deref() {
                Some(code) if code != "auto" => code.to_string(),
                _ => {
                    let (code, p) = detect_on(&mut state, samples, threads)
                        .map_err(|e| engine_err(format!("language detection failed: {e}")))?;
                    transcript.language_probability = p;
                    code
                }
            }
        };
        transcript.language = language.clone();

        // 3. Decode.
        let strategy = if opts.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: opts.beam_size as c_int,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy {
                best_of: opts.best_of.max(1) as c_int,
            }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(threads as c_int);
        params.set_language(Some(&language));
        params.set_translate(opts.translate && self.info.multilingual);
        params.set_temperature(opts.temperature);
        params.set_temperature_inc(opts.temperature_increment);
        params.set_no_speech_thold(opts.no_speech_threshold);
        params.set_logprob_thold(opts.logprob_threshold);
        params.set_token_timestamps(true);
        params.set_max_tokens(opts.max_tokens.min(c_int::MAX as usize) as c_int);
        params.set_suppress_nst(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        // A clip shorter than whisper's 30 s window would be padded with silence and the
        // encoder would still pay for 30 s; shrink the encoder context to the clip instead
        // (about half the time on short clips for a small loss of accuracy; docs/benchmarks.md).
        // With a cached context, the floor is for the part encoded each call: that part is
        // encoded on its own, and reads as a clip of its length would.
        let split = split_frames * FRAME_SAMPLES;
        let context = split
            + (samples.len() - split).max(
                (opts.min_context_seconds.clamp(0.0, 30.0) * SAMPLES_PER_SECOND as f64) as usize,
            );
        if context < 30 * SAMPLES_PER_SECOND {
            let frames = context.div_ceil(FRAME_SAMPLES);
            params.set_audio_ctx(((frames + 64).div_ceil(64) * 64).min(1500) as c_int);
        }
        if let Some(prompt) = &opts.initial_prompt {
            params.set_initial_prompt(&usable_prompt(prompt));
        }

        let cjk = matches!(
            language.as_str(),
            "zh" | "ja" | "th" | "lo" | "km" | "my" | "yue"
        );
        let mut collector = SegmentCollector {
            map: &map,
            offset,
            raw_spans: &raw_spans,
            channel,
            opts,
            cjk,
            used_vad: use_vad,
            segments: Vec::new(),
            on_segment: hooks.on_segment.take(),
            recent_texts: Vec::new(),
        };
        let never = AtomicBool::new(false);
        let panicked = CaughtPanic::default();
        let mut segment_sink = Callback {
            sink: &mut |raw| collector.accept(raw),
            panicked: &panicked,
        };
        let mut progress_sink = Callback {
            sink: match hooks.on_progress.as_mut() {
                Some(p) => *p,
                None => &mut |_| {},
            },
            panicked: &panicked,
        };
        let abort = Abort {
            cancel: hooks.cancel.unwrap_or(&never),
            panicked: &panicked,
        };
        let cancel = abort.cancel;
        // SAFETY: the callbacks only run inside `state.full` below, while the pointed-to
        // sinks and flags are alive on this stack frame.
        unsafe {
            params.set_new_segment_callback(Some(new_segment_trampoline));
            params.set_new_segment_callback_user_data(
                &mut segment_sink as *mut Callback<RawSegment> as *mut c_void,
            );
            params.set_progress_callback(Some(progress_trampoline));
            params.set_progress_callback_user_data(
                &mut progress_sink as *mut Callback<f32> as *mut c_void,
            );
            params.set_abort_callback(Some(abort_trampoline));
            params.set_abort_callback_user_data(&abort as *const Abort as *mut c_void);
        }
        let result = state.full(params, samples);
        // A panic in a caller's hook could not unwind through whisper.cpp; whisper was told to
        // stop, and the panic resumes here, as if the hook had been called directly.
        if let Some(payload) = panicked.take() {
            std::panic::resume_unwind(payload);
        }
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        match result {
            Ok(()) => {}
            Err(WhisperError::GenericError(-6)) => return Err(Error::Cancelled),
            Err(e) => return Err(engine_err(format!("whisper failed: {e}"))),
        }
        transcript.segments = std::mem::take(&mut collector.segments);
        if let Some(p) = hooks.on_progress.as_mut() {
            p(1.0);
        }
        hooks.on_segment = collector.on_segment.take();
        Ok(transcript)
    }
}

/// Whisper's language guess on the first 30 s of `samples`, with its probability.
fn detect_on(
    state: &mut WhisperState,
    samples: &[f32],
    threads: usize,
) -> std::result::Result<(String, Option<f32>), WhisperError> {
    let first = &samples[..samples.len().min(30 * SAMPLES_PER_SECOND)];
    state.pcm_to_mel(first, threads.max(1))?;
    let (id, probs) = state.lang_detect(0, threads.max(1))?;
    let code = whisper_rs::get_lang_str(id).unwrap_or("en").to_string();
    Ok((code, probs.get(id as usize).copied()))
}

impl Engine {
    /// The language spoken in `audio` (16 kHz mono; its first 30 s of speech are used): the
    /// given language when `opts` names one, `en` for English-only models.
    pub fn detect_language(
        &self,
        source: &Path,
        audio: &[f32],
        opts: &TranscribeOptions,
    ) -> Result<String> {
        if !self.info.multilingual {
            return Ok("en".into());
        }
        if let Some(code) = opts.language.as_deref().filter(|c| *c != "auto") {
            return Ok(code.to_string());
        }
        let spans = if opts.vad && self.vad.is_some() {
            self.detect_speech(audio, &opts.vad_options)?
        } else {
            vec![Span {
                start: 0,
                end: audio.len(),
            }]
        };
        let (speech, _) = TimeMap::pack(audio, &spans);
        if speech.len() < SAMPLES_PER_SECOND / 2 {
            return Ok(opts.language.clone().unwrap_or_else(|| "en".into()));
        }
        let mut state = self.ctx.create_state().map_err(|e| Error::Engine {
            path: source.to_path_buf(),
            reason: format!("cannot create whisper state: {e}"),
            source: Some(Box::new(e)),
        })?;
        detect_on(&mut state, &speech, self.threads_for(opts))
            .map(|(code, _)| code)
            .map_err(|e| Error::Engine {
                path: source.to_path_buf(),
                reason: format!("language detection failed: {e}"),
                source: Some(Box::new(e)),
            })
    }
}

/// A whisper state that goes back to the engine's pool when dropped (when pooling is on).
/// `whisper_full` resets the state (no_context is on), so no text leaks between calls.
struct PooledState<'a> {
    pool: Option<&'a Mutex<Vec<WhisperState>>>,
    state: Option<WhisperState>,
}

impl std::ops::Deref for PooledState<'_> {
    type Target = WhisperState;
    fn deref(&self) -> &WhisperState {
        self.state.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for PooledState<'_> {
    fn deref_mut(&mut self) -> &mut WhisperState {
        self.state.as_mut().expect("present until drop")
    }
}

impl Drop for PooledState<'_> {
    fn drop(&mut self) {
        if let (Some(state), Some(pool)) = (self.state.take(), self.pool) {
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(state);
        }
    }
}

fn load_vad(path: &Path) -> Result<WhisperVadContext> {
    check_ggml_magic(path, "Silero VAD")?;
    let mut params = WhisperVadContextParams::new();
    params.set_n_threads(1);
    params.set_use_gpu(false);
    let path_str = path.to_str().ok_or_else(|| Error::Model {
        path: path.to_path_buf(),
        reason: "VAD model path is not valid UTF-8".into(),
        source: None,
    })?;
    WhisperVadContext::new(path_str, params).map_err(|_| Error::Model {
        path: path.to_path_buf(),
        reason: "not a Silero VAD ggml model".into(),
        source: None,
    })
}

/// The first panic raised inside a callback, kept until whisper returns: unwinding through
/// whisper.cpp's C++ frames is undefined behaviour.
#[derive(Default)]
struct CaughtPanic {
    hit: AtomicBool,
    payload: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl CaughtPanic {
    fn run(&self, f: impl FnOnce()) {
        if self.hit.load(Ordering::Relaxed) {
            return; // whisper is stopping; call nothing more of the caller's
        }
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let mut slot = self.payload.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(payload);
            self.hit.store(true, Ordering::SeqCst);
        }
    }

    fn take(&self) -> Option<Box<dyn std::any::Any + Send>> {
        self.payload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// What a callback's user data points at.
struct Callback<'a, T> {
    sink: &'a mut dyn FnMut(T),
    panicked: &'a CaughtPanic,
}

/// The abort callback's user data: the caller's cancel flag, and a panic to stop for.
struct Abort<'a> {
    cancel: &'a AtomicBool,
    panicked: &'a CaughtPanic,
}

unsafe extern "C" fn abort_trampoline(user_data: *mut c_void) -> bool {
    // SAFETY: user_data is the `Abort` set in `transcribe`.
    let abort = unsafe { &*(user_data as *const Abort) };
    abort.cancel.load(Ordering::Relaxed) || abort.panicked.hit.load(Ordering::Relaxed)
}

unsafe extern "C" fn progress_trampoline(
    _ctx: *mut sys::whisper_context,
    _state: *mut sys::whisper_state,
    progress: c_int,
    user_data: *mut c_void,
) {
    // SAFETY: user_data points at the `Callback<f32>` set in `transcribe`.
    let cb = unsafe { &mut *(user_data as *mut Callback<f32>) };
    let sink = &mut cb.sink;
    cb.panicked
        .run(|| sink((progress as f32 / 100.0).clamp(0.0, 1.0)));
}

unsafe extern "C" fn new_segment_trampoline(
    ctx: *mut sys::whisper_context,
    state: *mut sys::whisper_state,
    n_new: c_int,
    user_data: *mut c_void,
) {
    // SAFETY: called by whisper_full with a valid ctx/state; user_data is the
    // `Callback<RawSegment>` set in `transcribe`.
    let cb = unsafe { &mut *(user_data as *mut Callback<RawSegment>) };
    let total = unsafe { sys::whisper_full_n_segments_from_state(state) };
    let eot = unsafe { sys::whisper_token_eot(ctx) };
    for i in (total - n_new).max(0)..total {
        let seg = unsafe { read_segment(ctx, state, i, eot) };
        let sink = &mut cb.sink;
        cb.panicked.run(|| sink(seg));
    }
}

/// Reads segment `i` and its text tokens from a whisper state.
unsafe fn read_segment(
    ctx: *mut sys::whisper_context,
    state: *mut sys::whisper_state,
    i: c_int,
    eot: sys::whisper_token,
) -> RawSegment {
    unsafe {
        let n_tokens = sys::whisper_full_n_tokens_from_state(state, i);
        let mut tokens = Vec::with_capacity(n_tokens.max(0) as usize);
        for j in 0..n_tokens {
            let data = sys::whisper_full_get_token_data_from_state(state, i, j);
            if data.id >= eot {
                continue; // timestamps, language and task tokens
            }
            let text_ptr = sys::whisper_full_get_token_text_from_state(ctx, state, i, j);
            let bytes = if text_ptr.is_null() {
                Vec::new()
            } else {
                CStr::from_ptr(text_ptr).to_bytes().to_vec()
            };
            tokens.push(RawToken {
                starts_word: bytes.first() == Some(&b' '),
                bytes,
                t0: data.t0,
                t1: data.t1,
                p: data.p,
                plog: data.plog,
            });
        }
        RawSegment {
            t0: sys::whisper_full_get_segment_t0_from_state(state, i),
            t1: sys::whisper_full_get_segment_t1_from_state(state, i),
            no_speech_prob: sys::whisper_full_get_segment_no_speech_prob_from_state(state, i),
            tokens,
        }
    }
}

/// Whisper's id for a language code (`en`, `de`, ...), or `None` if whisper does not know it.
pub fn language_id(code: &str) -> Option<i32> {
    if code.is_empty() || code.contains('\0') {
        return None;
    }
    whisper_rs::get_lang_id(code)
}

/// Whisper's English name of a language code in lower case (`en` -> `english`, `de` ->
/// `german`), as OpenAI's API reports languages; `None` if whisper does not know the code.
pub fn language_name(code: &str) -> Option<&'static str> {
    language_id(code).and_then(whisper_rs::get_lang_str_full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_prompts_keep_their_end() {
        assert_eq!(usable_prompt("Kubernetes, etcd"), "Kubernetes, etcd");
        let solid = "é".repeat(50_000);
        let kept = usable_prompt(&solid);
        assert!(kept
            .split(' ')
            .all(|w| w.chars().count() <= MAX_PROMPT_WORD));
        assert_eq!(kept.chars().filter(|&c| c == 'é').count(), MAX_PROMPT_CHARS);
        let words = "word ".repeat(10_000) + "last";
        let kept = usable_prompt(&words);
        assert!(kept.ends_with("last") && kept.starts_with("word"), "{kept}");
        assert!(kept.chars().count() <= MAX_PROMPT_CHARS);
    }
}

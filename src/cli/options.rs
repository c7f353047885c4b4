//! The options of every command that runs whisper, each declared once, with one meaning, one
//! help heading and one default: the models ([`ModelArgs`]), voice activity detection
//! ([`VadArgs`], [`VadTuningArgs`]) and decoding ([`DecodeArgs`] and the groups below it); the
//! compute device is `super::device::DeviceArgs`. Commands flatten the groups they can honour
//! and declare nothing they would ignore:
//!
//! | group | transcribe | subtitle | listen | serve |
//! | --- | --- | --- | --- | --- |
//! | [`ModelArgs`]: `--model`, `--vad-model`, `--offline` | x | x | x | x |
//! | [`VadArgs`]: `--no-vad` | x | x | | x |
//! | [`VadTuningArgs`]: `--vad-threshold` | x | x | x | x |
//! | [`DecodeArgs`]: `--threads`, `--beam-size`, `--no-guard` | x | x | x | x |
//! | [`LanguageArgs`]: `--language`, `--prompt` | x | x | x | |
//! | [`SamplingArgs`]: `--best-of`, `--temperature-increment`, `--no-fallback` | x | x | | x |
//! | [`FileDecodeArgs`]: `--translate`, `--temperature`, and the three above | x | x | | |
//! | [`DiarizeArgs`]: `--diarize`, `--speakers`, `--min-speakers`, `--max-speakers` | x | x | | |
//!
//! `listen` cannot do without the VAD (it finds utterances with it), never retries a step at a
//! higher temperature (a bad step is followed by another half a second later; retries stall the
//! live text) and has been measured only transcribing; `serve` takes language, prompt,
//! temperature and translation from each request, as OpenAI's API does.
//!
//! Values are checked as clap parses them (the value parsers here), so a bad value from the
//! command line, the environment or the config file is the same usage error in every command;
//! the groups are turned into the library's option types only here.

use clap::Args;

use verbatim::engine::{self, TranscribeOptions, VadOptions};
use verbatim::listen::dictation::DictationOptions;

use super::fetch::Vad;

const MODEL: &str = "Model";
const VAD: &str = "Voice activity detection";
const DECODING: &str = "Decoding";
const SPEAKERS: &str = "Speakers";

/// whisper.cpp decodes with at most this many decoders (its `WHISPER_MAX_DECODERS`): the limit
/// of `--beam-size` and `--best-of`.
const MAX_DECODERS: usize = 8;

/// The Whisper model, the VAD model and whether models may be downloaded.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Whisper model: a registry name (tiny.en, base, large-v3-turbo-q5_0...), an imported
    /// model's name, or a ggml file. Registry models are downloaded and verified on first use.
    #[arg(
        short,
        long,
        env = "VERBATIM_MODEL",
        value_name = "NAME|PATH",
        default_value = verbatim::models::DEFAULT_MODEL,
        help_heading = MODEL
    )]
    pub model: String,

    /// Silero VAD model, a registry name or a ggml file [default: a Silero model next to the
    /// Whisper model, else silero-v6.2.0 from the store, downloaded on first use].
    #[arg(
        long,
        env = "VERBATIM_VAD_MODEL",
        value_name = "NAME|PATH",
        help_heading = MODEL
    )]
    pub vad_model: Option<String>,

    /// Never touch the network: fail with instructions when a model is not installed
    /// (also VERBATIM_OFFLINE=1).
    #[arg(long, help_heading = MODEL)]
    pub offline: bool,
}

impl ModelArgs {
    /// `--offline` or `VERBATIM_OFFLINE=1`.
    pub fn offline(&self) -> bool {
        self.offline || verbatim::models::offline_from_env()
    }
}

/// Who spoke when: speaker diarization and its speaker count.
#[derive(Debug, Clone, Args)]
pub struct DiarizeArgs {
    /// Find who speaks when and label every segment and word with its speaker (S1, S2, ...
    /// in order of first appearance): txt paragraphs, WebVTT voice spans, speakers in JSON,
    /// and the rttm format. The outputs are written when the whole file is done.
    #[arg(long, help_heading = SPEAKERS)]
    pub diarize: bool,

    /// The number of speakers, when it is known (more accurate than letting it be guessed).
    #[arg(long, value_name = "N", value_parser = parse_speakers, requires = "diarize",
          conflicts_with_all = ["min_speakers", "max_speakers"], help_heading = SPEAKERS)]
    pub speakers: Option<usize>,

    /// At least this many speakers.
    #[arg(long, value_name = "N", value_parser = parse_speakers, requires = "diarize", help_heading = SPEAKERS)]
    pub min_speakers: Option<usize>,

    /// At most this many speakers.
    #[arg(long, value_name = "N", value_parser = parse_speakers, requires = "diarize", help_heading = SPEAKERS)]
    pub max_speakers: Option<usize>,
}

impl DiarizeArgs {
    /// The diarizer to run, with its models loaded (downloaded first when missing, unless
    /// `offline`); `None` without `--diarize`.
    pub fn load(
        &self,
        offline: bool,
        quiet: bool,
    ) -> Result<Option<verbatim::diarization::Diarizer>, verbatim::Error> {
        if !self.diarize {
            return Ok(None);
        }
        if let (Some(min), Some(max)) = (self.min_speakers, self.max_speakers) {
            if min > max {
                return Err(verbatim::Error::Usage(format!(
                    "--min-speakers {min} is more than --max-speakers {max}"
                )));
            }
        }
        let models = super::fetch::ensure_diarization_models(offline, quiet)?;
        let options = verbatim::diarization::DiarizeOptions {
            num_speakers: self.speakers,
            min_speakers: self.min_speakers,
            max_speakers: self.max_speakers,
            ..Default::default()
        };
        verbatim::diarization::Diarizer::load(&models, options).map(Some)
    }
}

fn parse_speakers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=100).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a number of speakers (1 to 100)")),
    }
}

/// `--no-vad` and the VAD's tuning (every command that can run without the VAD).
#[derive(Debug, Clone, Args)]
pub struct VadArgs {
    /// Disable voice activity detection (transcribe silence and noise too).
    #[arg(long, help_heading = VAD)]
    pub no_vad: bool,

    #[command(flatten)]
    pub tuning: VadTuningArgs,
}

/// The VAD's tuning.
#[derive(Debug, Clone, Args)]
pub struct VadTuningArgs {
    /// Speech probability threshold for VAD (0-1).
    #[arg(
        long,
        default_value_t = VadOptions::default().threshold,
        value_name = "P",
        value_parser = parse_probability,
        help_heading = VAD
    )]
    pub vad_threshold: f32,
}

impl VadTuningArgs {
    /// The library's VAD options.
    pub fn options(&self) -> VadOptions {
        VadOptions {
            // Silero's probabilities never quite reach 0 or 1.
            threshold: self.vad_threshold.clamp(0.01, 0.99),
            ..VadOptions::default()
        }
    }
}

/// Threads, beam and the hallucination guard (every command).
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// CPU threads per transcription [default: the cores, shared out among the transcriptions
    /// that run at once (subtitle --jobs, serve --concurrency), less the cores other processes
    /// keep busy (throughout the last second)].
    #[arg(short, long, value_name = "N", value_parser = parse_threads, help_heading = DECODING)]
    pub threads: Option<usize>,

    /// Beam size of beam-search decoding, 1 to 8; 1 decodes greedily (faster, less accurate)
    /// [default: 5; listen: 1, as each re-transcription must keep pace with the speech].
    #[arg(long, value_name = "N", value_parser = parse_decoders, help_heading = DECODING)]
    pub beam_size: Option<usize>,

    /// Keep whisper's output even where the hallucination guard would drop or cut it.
    #[arg(long, help_heading = DECODING)]
    pub no_guard: bool,
}

impl DecodeArgs {
    /// Threads per transcription when `concurrent` transcriptions share the cores.
    pub fn threads_for(&self, concurrent: usize) -> usize {
        self.threads
            .unwrap_or_else(|| (engine::default_threads() / concurrent.max(1)).max(1))
    }

    /// Sets threads, beam size (the base's default unless given) and the guard.
    fn apply(&self, options: &mut TranscribeOptions, concurrent: usize) {
        options.threads = self.threads_for(concurrent);
        // A count the user gave is used as given.
        options.adapt_threads = self.threads.is_none();
        if let Some(beam) = self.beam_size {
            options.beam_size = beam;
        }
        options.hallucination_guard = !self.no_guard;
    }
}

/// What is spoken: the language and the prompt (every command but `serve`, whose requests
/// carry them).
#[derive(Debug, Clone, Args)]
pub struct LanguageArgs {
    /// Spoken language: `auto` to detect it, or a code such as en, de, fr, ja (English-only
    /// .en models always read English).
    #[arg(
        short,
        long,
        default_value = "auto",
        value_name = "LANG",
        value_parser = parse_language,
        help_heading = DECODING
    )]
    pub language: String,

    /// Text that primes the decoder: names, jargon, spelling, punctuation style.
    #[arg(long, value_name = "TEXT", help_heading = DECODING)]
    pub prompt: Option<String>,
}

impl LanguageArgs {
    /// The language code, `None` for `auto`.
    pub fn code(&self) -> Option<&str> {
        (self.language != "auto").then_some(self.language.as_str())
    }

    fn apply(&self, options: &mut TranscribeOptions) {
        options.language = self.code().map(str::to_string);
        options.initial_prompt = self.prompt.clone().filter(|p| !p.trim().is_empty());
        if let Some(p) = &options.initial_prompt {
            let chars = p.chars().count();
            if chars > engine::MAX_PROMPT_CHARS {
                super::print_warning(format!(
                    "--prompt is {chars} characters; whisper reads about 224 tokens, so only its last {} characters are used",
                    engine::MAX_PROMPT_CHARS
                ));
            }
        }
    }
}

/// Best-of and the temperature fallback (every command but `listen`, which never retries).
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Candidates compared when sampling with temperature > 0, 1 to 8.
    #[arg(
        long,
        default_value_t = TranscribeOptions::default().best_of,
        value_name = "N",
        value_parser = parse_decoders,
        help_heading = DECODING
    )]
    pub best_of: usize,

    /// Temperature step, 0 to 1, used to retry a window whose decode looks wrong (repetitive
    /// or improbable).
    #[arg(
        long,
        default_value_t = TranscribeOptions::default().temperature_increment,
        value_name = "T",
        value_parser = parse_temperature,
        help_heading = DECODING
    )]
    pub temperature_increment: f32,

    /// Never retry at a higher temperature.
    #[arg(long, help_heading = DECODING)]
    pub no_fallback: bool,
}

impl SamplingArgs {
    fn apply(&self, options: &mut TranscribeOptions) {
        options.best_of = self.best_of;
        options.temperature_increment = if self.no_fallback {
            0.0
        } else {
            self.temperature_increment
        };
    }
}

/// Every decoding option: the commands that transcribe files (`transcribe`, `subtitle`).
#[derive(Debug, Clone, Args)]
pub struct FileDecodeArgs {
    #[command(flatten)]
    pub language: LanguageArgs,

    /// Translate the speech to English.
    #[arg(long, help_heading = DECODING)]
    pub translate: bool,

    /// Initial sampling temperature, 0 to 1 (0 is deterministic).
    #[arg(
        long,
        default_value_t = TranscribeOptions::default().temperature,
        value_name = "T",
        value_parser = parse_temperature,
        help_heading = DECODING
    )]
    pub temperature: f32,

    #[command(flatten)]
    pub sampling: SamplingArgs,

    #[command(flatten)]
    pub decode: DecodeArgs,
}

impl FileDecodeArgs {
    /// Warns (unless `quiet`) about the options an English-only model ignores.
    pub fn warn_english_only(&self, info: &engine::ModelInfo, quiet: bool) {
        if info.multilingual || quiet {
            return;
        }
        if let Some(code) = self.language.code().filter(|c| *c != "en") {
            super::print_warning(format!(
                "{} is English-only; ignoring --language {code}",
                info.path.display()
            ));
        }
        if self.translate {
            super::print_warning(format!(
                "{} is English-only; --translate has no effect",
                info.path.display()
            ));
        }
    }

    /// The library's options for a file, with `concurrent` transcriptions sharing the cores.
    pub fn transcribe_options(&self, vad: &VadArgs, concurrent: usize) -> TranscribeOptions {
        let mut options = TranscribeOptions {
            translate: self.translate,
            temperature: self.temperature,
            ..TranscribeOptions::default()
        };
        self.language.apply(&mut options);
        self.sampling.apply(&mut options);
        self.decode.apply(&mut options, concurrent);
        vad.apply(&mut options);
        options
    }
}

impl VadArgs {
    /// Whether the engine loads the VAD model.
    pub fn engine_vad(&self) -> Vad {
        if self.no_vad {
            Vad::Off
        } else {
            Vad::On
        }
    }

    fn apply(&self, options: &mut TranscribeOptions) {
        options.vad = !self.no_vad;
        options.vad_options = self.tuning.options();
    }
}

/// The base options of `serve`'s requests (each request sets language, prompt, temperature
/// and translation), with `concurrent` requests sharing the cores.
pub fn server_options(
    sampling: &SamplingArgs,
    decode: &DecodeArgs,
    vad: &VadArgs,
    concurrent: usize,
) -> TranscribeOptions {
    let mut options = TranscribeOptions::default();
    sampling.apply(&mut options);
    decode.apply(&mut options, concurrent);
    vad.apply(&mut options);
    options
}

/// `listen`'s options applied to the dictation's defaults (greedy steps, no fallback...).
pub fn dictation_options(
    language: &LanguageArgs,
    decode: &DecodeArgs,
    vad: &VadTuningArgs,
) -> DictationOptions {
    let mut options = DictationOptions::default();
    language.apply(&mut options.transcribe);
    decode.apply(&mut options.transcribe, 1);
    options.vad = vad.options();
    options
}

/// `--language`: `auto` or a code whisper knows, lower-cased.
fn parse_language(s: &str) -> Result<String, String> {
    let code = s.trim().to_ascii_lowercase();
    if code == "auto" || engine::language_id(&code).is_some() {
        Ok(code)
    } else {
        Err("unknown language code (use auto or a code such as en, de, fr, ja)".into())
    }
}

/// A count that must be positive (`serve`'s limits).
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number, at least 1".into()),
    }
}

/// A count of workers, 1 to 256: `subtitle --jobs`, `serve --concurrency` (each holds a
/// whisper state of tens to hundreds of MB and its threads).
pub fn parse_workers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 1 to 256".into()),
    }
}

/// `--threads`: 1 to [`engine::max_threads`] (4 per core).
fn parse_threads(s: &str) -> Result<usize, String> {
    let max = engine::max_threads();
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {max} (4 per core on this machine)"
        )),
    }
}

/// `--beam-size`, `--best-of`: 1 to whisper.cpp's decoder limit.
fn parse_decoders(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_DECODERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number from 1 to {MAX_DECODERS} (whisper.cpp's limit)"
        )),
    }
}

/// A number from 0 to 1.
fn parse_unit(s: &str, what: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a {what} from 0 to 1")),
    }
}

/// `--vad-threshold`.
fn parse_probability(s: &str) -> Result<f32, String> {
    parse_unit(s, "probability")
}

/// `--temperature`, `--temperature-increment`.
fn parse_temperature(s: &str) -> Result<f32, String> {
    parse_unit(s, "temperature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_once_here() {
        assert_eq!(parse_language(" DE ").unwrap(), "de");
        assert_eq!(parse_language("auto").unwrap(), "auto");
        assert!(parse_language("xx").is_err());
        assert!(parse_count("0").is_err());
        assert!(parse_threads("0").is_err());
        assert!(parse_threads("100000").is_err());
        assert_eq!(parse_threads("2").unwrap(), 2);
        assert_eq!(parse_count("3").unwrap(), 3);
        assert!(parse_workers("100000").is_err());
        assert_eq!(parse_workers("4").unwrap(), 4);
        assert!(parse_decoders("9").is_err());
        assert_eq!(parse_decoders("8").unwrap(), 8);
        assert!(parse_temperature("1.5").is_err());
        assert!(parse_temperature("NaN").is_err());
        assert!(parse_probability("-0.1").is_err());
        assert_eq!(parse_probability("0.3").unwrap(), 0.3);
    }
}

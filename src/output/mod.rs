//! Output formats, one file each behind the [`OutputFormat`] trait, and atomic writing.
//!
//! Adding a format means one new file and one arm in [`Format::writer`].

mod ass;
mod json;
mod lrc;
mod rttm;
mod srt;
mod tsv;
mod txt;
mod vtt;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::transcript::Transcript;

pub use json::{JsonMeta, JsonOutput};

/// Turns a transcript into the bytes of one file format, either whole ([`Format::render`]) or
/// piece by piece as windows of a long recording are finished (see [`crate::pipeline`]):
/// `begin`, then `chunk` per window, then `end`, `aside` and `close`. Rendering whole is the
/// same calls on one piece, so both ways give the same bytes.
pub trait OutputFormat {
    /// What comes before the first segment. `head` carries the language (known after the
    /// first window) and no segments.
    fn begin(&self, _head: &Transcript, _meta: &JsonMeta) -> String {
        String::new()
    }
    /// The segments of one finished window. `state` carries counters (cue numbers) across
    /// windows and is saved in checkpoints.
    fn chunk(&self, part: &Transcript, meta: &JsonMeta, state: &mut WriterState) -> String;
    /// What follows the last segment; `summary` has the language and duration, no segments.
    fn end(&self, _summary: &Transcript, _meta: &JsonMeta, _state: &WriterState) -> String {
        String::new()
    }
    /// Text kept aside while streaming and written after `end` (JSON's `text` field, which
    /// repeats every segment and so cannot be written before the segments are done).
    fn aside(&self, _part: &Transcript, _state: &mut WriterState) -> String {
        String::new()
    }
    /// What follows the aside text.
    fn close(&self) -> String {
        String::new()
    }
}

/// Counters a writer keeps across the windows of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriterState {
    /// Items (cues, segments) written so far.
    pub items: usize,
    /// Characters written to the aside text so far.
    pub aside_items: usize,
    /// The speaker of the last segment written (plain text starts a paragraph on a change).
    #[serde(default)]
    pub last_speaker: Option<String>,
}

/// The formats verbatim writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Plain text, one segment per line.
    Txt,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// Everything, machine-readable (schema in the README).
    Json,
    /// Tab-separated start, end (milliseconds) and text, as whisper's Python CLI writes it.
    Tsv,
    /// LRC lyrics with `[mm:ss.xx]` line times.
    Lrc,
    /// Advanced SubStation Alpha subtitles (styled; players such as mpv and VLC, editors
    /// such as Aegisub).
    Ass,
    /// RTTM, the standard who-spoke-when format of diarization tools and scorers.
    Rttm,
}

impl Format {
    /// All formats, in the order `--help` lists them.
    pub const ALL: [Format; 8] = [
        Format::Txt,
        Format::Srt,
        Format::Vtt,
        Format::Json,
        Format::Tsv,
        Format::Lrc,
        Format::Ass,
        Format::Rttm,
    ];

    /// File extension (without dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Srt => "srt",
            Format::Vtt => "vtt",
            Format::Json => "json",
            Format::Tsv => "tsv",
            Format::Lrc => "lrc",
            Format::Ass => "ass",
            Format::Rttm => "rttm",
        }
    }

    /// Whether this is a subtitle format laid out by [`crate::subtitle`] (these need word
    /// timestamps).
    pub fn is_subtitle(self) -> bool {
        matches!(self, Format::Srt | Format::Vtt | Format::Ass)
    }

    /// Parses a format name (`srt`, `VTT`, ...).
    pub fn parse(name: &str) -> Option<Format> {
        let name = name.trim().to_ascii_lowercase();
        Format::ALL.into_iter().find(|f| f.extension() == name)
    }

    /// The writer for this format.
    pub fn writer(self) -> Box<dyn OutputFormat> {
        match self {
            Format::Txt => Box::new(txt::Txt),
            Format::Srt => Box::new(srt::Srt),
            Format::Vtt => Box::new(vtt::Vtt),
            Format::Json => Box::new(JsonOutput),
            Format::Tsv => Box::new(tsv::Tsv),
            Format::Lrc => Box::new(lrc::Lrc),
            Format::Ass => Box::new(ass::Ass),
            Format::Rttm => Box::new(rttm::Rttm),
        }
    }

    /// Renders `transcript` in this format.
    pub fn render(self, transcript: &Transcript, meta: &JsonMeta) -> String {
        let writer = self.writer();
        let mut state = WriterState::default();
        let summary = Transcript {
            segments: Vec::new(),
            ..transcript.clone()
        };
        let mut out = writer.begin(&summary, meta);
        out.push_str(&writer.chunk(transcript, meta, &mut state));
        out.push_str(&writer.end(&summary, meta, &state));
        out.push_str(&writer.aside(transcript, &mut state));
        out.push_str(&writer.close());
        out
    }
}

/// `dir/stem.ext` for an input path: `talk.mp3` -> `talk.srt`, never `talk.mp3.srt`.
/// Standard input (`-`) is named `stdin`.
pub fn output_path(input: &Path, dir: Option<&Path>, format: Format) -> PathBuf {
    let mut name = match input.file_stem() {
        Some(stem) if input.as_os_str() != "-" => stem.to_os_string(),
        _ => "stdin".into(),
    };
    name.push(".");
    name.push(format.extension());
    match dir {
        Some(d) => d.join(name),
        None => input.with_file_name(name),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, then a
/// rename, so a reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".verbatim-")
        .suffix(".partial")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Segment text with a channel label when channels were split.
pub(crate) fn labelled_text(seg: &crate::Segment) -> String {
    match seg.speaker_label() {
        Some(label) => format!("[{label}] {}", seg.text),
        None => seg.text.clone(),
    }
}

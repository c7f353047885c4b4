//! The subtitle engine: turns a [`Transcript`](crate::Transcript) into subtitle cues that
//! follow professional timing and layout rules, checks cue lists against those rules, and
//! reads SRT / WebVTT files back.
//!
//! Everything is built on word timestamps: cues start with their first spoken word, break at
//! sentence ends, clauses and pauses, never cover a long silence and are kept readable
//! (characters per line, lines per cue, reading speed). A rule that the input makes
//! impossible to meet (a 60-character word, ten words spoken in half a second) is broken as
//! little as possible and reported as a [`Violation`], never silently.

mod check;
mod layout;
mod parse;
mod text;

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::transcript::Word;

pub use check::check;
pub use layout::layout;
pub use parse::parse_subtitles;

/// The timing and layout rules cues must follow. All durations are seconds.
///
/// `Default` is the Netflix-like preset ([`Preset::Netflix`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rules {
    /// Maximum characters on one line (Netflix: 42 for Latin scripts).
    pub max_chars_per_line: usize,
    /// Maximum lines in one cue.
    pub max_lines: usize,
    /// Minimum time a cue stays on screen (Netflix: 20 frames at 24 fps, 0.833 s), so even a
    /// one-word cue can be noticed and read.
    pub min_duration: f64,
    /// Maximum time a cue stays on screen; longer cues get re-read or ignored.
    pub max_duration: f64,
    /// Minimum gap between two cues (2 frames at 24 fps, 0.083 s), so the viewer sees a cue
    /// change even when the text looks similar.
    pub min_gap: f64,
    /// Maximum reading speed in characters per second (spaces count in Latin text; CJK text
    /// counts characters without spaces).
    pub max_cps: f64,
    /// Longest silence (between words, or after the last word) a cue may stay on screen for:
    /// a subtitle over a long silence no longer follows the speech.
    pub max_silence: f64,
    /// How long a cue stays up after its last word ends when nothing else asks for more
    /// (never into the next cue, never beyond `max_silence`).
    pub linger: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules::from(Preset::Netflix)
    }
}

/// Named rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Netflix's English timed-text guide: 42 characters x 2 lines, 17 characters/second
    /// (adult programmes), 0.833 s to 7 s per cue, 2-frame gaps.
    Netflix,
    /// Online video: the same 42 x 2 layout but a faster 21 characters/second (viewers of
    /// online talks read faster and can pause), a shorter 0.5 s minimum duration and a
    /// shorter 0.3 s linger, because online speech is dense and cues should change with it.
    Youtube,
    /// Chinese and Japanese: 16 characters x 2 lines and 9 characters/second (Netflix's
    /// Simplified Chinese guide); words are joined without spaces and spaces are not counted.
    Cjk,
}

impl Preset {
    /// Every preset, in the order `--help` lists them.
    pub const ALL: [Preset; 3] = [Preset::Netflix, Preset::Youtube, Preset::Cjk];

    /// The preset's name as the CLI spells it (`netflix`, `youtube`, `cjk`).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Netflix => "netflix",
            Preset::Youtube => "youtube",
            Preset::Cjk => "cjk",
        }
    }

    /// Parses a preset name, case-insensitively.
    pub fn parse(name: &str) -> Option<Preset> {
        let name = name.trim().to_ascii_lowercase();
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Preset> for Rules {
    fn from(preset: Preset) -> Self {
        let netflix = Rules {
            max_chars_per_line: 42,
            max_lines: 2,
            min_duration: 0.833,
            max_duration: 7.0,
            min_gap: 0.083,
            max_cps: 17.0,
            max_silence: 1.5,
            linger: 0.5,
        };
        match preset {
            Preset::Netflix => netflix,
            Preset::Youtube => Rules {
                max_cps: 21.0,
                min_duration: 0.5,
                linger: 0.3,
                ..netflix
            },
            Preset::Cjk => Rules {
                max_chars_per_line: 16,
                max_cps: 9.0,
                ..netflix
            },
        }
    }
}

impl Rules {
    /// Checks that the rules can be followed at all (positive limits, linger within the
    /// silence a cue may cover); the message names the offending value.
    pub fn validate(&self) -> Result<(), crate::Error> {
        self.check().map_err(crate::Error::Usage)
    }

    fn check(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a positive number (got {v})"))
            }
        };
        if self.max_chars_per_line == 0 {
            return Err("max characters per line must be at least 1".into());
        }
        if self.max_lines == 0 {
            return Err("max lines per cue must be at least 1".into());
        }
        positive("min duration", self.min_duration)?;
        positive("max duration", self.max_duration)?;
        positive("max reading speed", self.max_cps)?;
        positive("max silence", self.max_silence)?;
        for (name, v) in [("min gap", self.min_gap), ("linger", self.linger)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} must be zero or more seconds (got {v})"));
            }
        }
        if self.min_duration > self.max_duration {
            return Err(format!(
                "min duration {} s is longer than max duration {} s",
                self.min_duration, self.max_duration
            ));
        }
        if self.linger > self.max_silence {
            return Err(format!(
                "linger {} s is longer than max silence {} s",
                self.linger, self.max_silence
            ));
        }
        Ok(())
    }
}

/// One subtitle cue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cue {
    /// Start in seconds (millisecond precision).
    pub start: f64,
    /// End in seconds (millisecond precision).
    pub end: f64,
    /// The text lines, without line-break characters.
    pub lines: Vec<String>,
    /// Speaker label: the diarized speaker (`S1`, `S2`, ...), or the channel (`ch1`, ...)
    /// when channels were transcribed separately; the writers show it as `[S1] ` (SRT,
    /// counted in the first line's length), a voice span (WebVTT) or the Name field (ASS).
    pub speaker: Option<String>,
    /// The words shown, with their spoken times; empty for cues parsed from a file (then
    /// the silence rule cannot be checked).
    pub words: Vec<Word>,
}

impl Cue {
    /// The lines joined by `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// The result of [`layout`]: the cues, and every rule they break.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// Cues in time order, never overlapping.
    pub cues: Vec<Cue>,
    /// Rules the input made impossible to follow (equal to `check(&cues, rules)`).
    pub violations: Vec<Violation>,
}

/// A rule a cue can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A line is longer than `max_chars_per_line`.
    LineLength,
    /// More lines than `max_lines`.
    LinesPerCue,
    /// Shorter than `min_duration`.
    MinDuration,
    /// Longer than `max_duration`.
    MaxDuration,
    /// Less than `min_gap` before the next cue.
    MinGap,
    /// The next cue starts before this one ends.
    Overlap,
    /// Faster than `max_cps`.
    ReadingSpeed,
    /// Stays on screen over a silence longer than `max_silence` (needs word times).
    Silence,
}

impl Rule {
    /// The rule's snake_case name (`reading_speed`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Rule::LineLength => "line_length",
            Rule::LinesPerCue => "lines_per_cue",
            Rule::MinDuration => "min_duration",
            Rule::MaxDuration => "max_duration",
            Rule::MinGap => "min_gap",
            Rule::Overlap => "overlap",
            Rule::ReadingSpeed => "reading_speed",
            Rule::Silence => "silence",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule of one cue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The cue's number, 1-based as in SRT.
    pub cue: usize,
    /// The cue's start in seconds.
    pub start: f64,
    /// The rule broken.
    pub rule: Rule,
    /// What exactly, e.g. `reading speed 23.4 chars/s > 17`.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cue {} at {}: {}",
            self.cue,
            crate::timecode::clock(self.start, ','),
            self.detail
        )
    }
}

/// Reads an SRT or WebVTT file and checks it against `rules` (every rule but silence, which
/// needs word times). Unreadable or unparseable files are an [`crate::Error::Input`] whose
/// reason names the line.
pub fn check_file(path: &Path, rules: &Rules) -> crate::Result<Vec<Violation>> {
    let bytes = std::fs::read(path)
        .map_err(|e| crate::Error::input(path, format!("cannot read subtitles: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| crate::Error::input(path, "subtitles are not UTF-8 text"))?;
    let cues = parse_subtitles(&text).map_err(|reason| crate::Error::input(path, reason))?;
    Ok(check(&cues, rules))
}

#[cfg(test)]
mod tests;

//! SubRip (`.srt`): numbered cues with `HH:MM:SS,mmm` times, laid out by the subtitle
//! engine ([`crate::subtitle::layout`]) under the context's rules.

use super::{JsonMeta, OutputFormat, WriterState};
use crate::subtitle;
use crate::timecode;
use crate::transcript::Transcript;

/// SRT writer.
pub struct Srt;

impl OutputFormat for Srt {
    fn chunk(&self, transcript: &Transcript, meta: &JsonMeta, state: &mut WriterState) -> String {
        let layout = subtitle::layout(transcript, &meta.subtitle_rules);
        let mut out = String::new();
        let first = state.items;
        state.items += layout.cues.len();
        for (i, cue) in layout.cues.iter().enumerate() {
            let i = first + i;
            let mut lines = cue.lines.clone();
            if let (Some(label), Some(first)) = (&cue.speaker, lines.first_mut()) {
                *first = format!("[{label}] {first}");
            }
            out.push_str(&format!(
                "{}\n{} --> {}\n{}\n\n",
                i + 1,
                timecode::clock(cue.start, ','),
                timecode::clock(cue.end, ','),
                lines.join("\n")
            ));
        }
        out
    }
}

//! SubRip (`.srt`): numbered cues with `HH:MM:SS,mmm` times.

use super::{clock, cue_times, labelled_text, JsonMeta, OutputFormat};
use crate::transcript::Transcript;

/// SRT writer.
pub struct Srt;

impl OutputFormat for Srt {
    fn render(&self, transcript: &Transcript, _meta: &JsonMeta) -> String {
        let mut out = String::new();
        for (i, (seg, (start, end))) in transcript
            .segments
            .iter()
            .zip(cue_times(transcript))
            .enumerate()
        {
            out.push_str(&format!(
                "{}\n{} --> {}\n{}\n\n",
                i + 1,
                clock(start, ','),
                clock(end, ','),
                labelled_text(seg)
            ));
        }
        out
    }
}

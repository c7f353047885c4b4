//! WebVTT (`.vtt`): a `WEBVTT` header and cues with `HH:MM:SS.mmm` times, laid out by the
//! subtitle engine; split channels become voice spans (`<v ch1>`).

use super::{JsonMeta, OutputFormat, WriterState};
use crate::subtitle;
use crate::timecode;
use crate::transcript::Transcript;

/// WebVTT writer.
pub struct Vtt;

/// Escapes the characters WebVTT cue text reserves (`&`, `<`, `>`), so a transcript that
/// contains them is shown as written and never read as a tag or ends a cue early (`-->`).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl OutputFormat for Vtt {
    fn begin(&self, _head: &Transcript, _meta: &JsonMeta) -> String {
        "WEBVTT\n\n".to_string()
    }

    fn chunk(&self, transcript: &Transcript, meta: &JsonMeta, state: &mut WriterState) -> String {
        let layout = subtitle::layout(transcript, &meta.subtitle_rules);
        state.items += layout.cues.len();
        let mut out = String::new();
        for cue in &layout.cues {
            let mut lines: Vec<String> = cue.lines.iter().map(|l| escape(l)).collect();
            if let (Some(label), Some(first)) = (&cue.speaker, lines.first_mut()) {
                *first = format!("<v {label}>{first}");
            }
            out.push_str(&format!(
                "{} --> {}\n{}\n\n",
                timecode::clock(cue.start, '.'),
                timecode::clock(cue.end, '.'),
                lines.join("\n")
            ));
        }
        out
    }
}

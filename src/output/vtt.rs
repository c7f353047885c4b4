//! WebVTT (`.vtt`): a `WEBVTT` header and cues with `HH:MM:SS.mmm` times; split channels
//! become voice spans (`<v ch1>`).

use super::{clock, cue_times, JsonMeta, OutputFormat};
use crate::transcript::Transcript;

/// WebVTT writer.
pub struct Vtt;

impl OutputFormat for Vtt {
    fn render(&self, transcript: &Transcript, _meta: &JsonMeta) -> String {
        let mut out = String::from("WEBVTT\n\n");
        for (seg, (start, end)) in transcript.segments.iter().zip(cue_times(transcript)) {
            // "-->" would end the cue timing line early in a strict parser.
            let text = seg.text.replace("-->", "->");
            let text = match seg.channel_label() {
                Some(label) => format!("<v {label}>{text}"),
                None => text,
            };
            out.push_str(&format!(
                "{} --> {}\n{}\n\n",
                clock(start, '.'),
                clock(end, '.'),
                text
            ));
        }
        out
    }
}

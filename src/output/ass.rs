//! Advanced SubStation Alpha (`.ass`): a script header for a 1920x1080 canvas, one readable
//! default style and one `Dialogue` event per cue laid out by the subtitle engine.

use super::{JsonMeta, OutputFormat, WriterState};
use crate::subtitle;
use crate::timecode;
use crate::transcript::Transcript;

/// ASS writer.
pub struct Ass;

/// The script header. `WrapStyle: 2` turns off the renderer's own wrapping: the engine has
/// already broken the lines (`\N`) under the line-length rule. The style is white sans-serif
/// text with a black outline and a soft shadow, bottom centre (alignment 2), with margins
/// that keep two lines inside the title-safe area; `ScaledBorderAndShadow` keeps the
/// outline proportional when the video is not 1080p.
const HEADER: &str = "\
[Script Info]
; Written by verbatim
ScriptType: v4.00+
PlayResX: 1920
PlayResY: 1080
WrapStyle: 2
ScaledBorderAndShadow: yes
YCbCr Matrix: None

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,64,&H00FFFFFF,&H000000FF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,3,1,2,120,120,60,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
";

/// Escapes text for an ASS event: braces would open an override block and a backslash
/// would start a tag (`\N`, `\h`), so braces are escaped and a backslash becomes the
/// full-width reverse solidus, which looks the same and is inert.
fn escape(text: &str) -> String {
    text.replace('\\', "\u{FF3C}")
        .replace('{', "\\{")
        .replace('}', "\\}")
        .replace(['\n', '\r'], " ")
}

impl OutputFormat for Ass {
    fn begin(&self, _head: &Transcript, _meta: &JsonMeta) -> String {
        HEADER.to_string()
    }

    fn chunk(&self, transcript: &Transcript, meta: &JsonMeta, state: &mut WriterState) -> String {
        let layout = subtitle::layout(transcript, &meta.subtitle_rules);
        state.items += layout.cues.len();
        let mut out = String::new();
        for cue in &layout.cues {
            let text: Vec<String> = cue.lines.iter().map(|l| escape(l)).collect();
            out.push_str(&format!(
                "Dialogue: 0,{},{},Default,{},0,0,0,,{}\n",
                timecode::ass(cue.start),
                timecode::ass(cue.end),
                cue.speaker.as_deref().unwrap_or(""),
                text.join("\\N")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape("a {b} \\N c"), "a \\{b\\} \u{FF3C}N c");
    }
}

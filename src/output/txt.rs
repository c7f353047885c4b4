//! Plain text: one segment per line; a diarized transcript is one paragraph per speaker turn,
//! opened with the speaker's label (`S1: `).

use super::{labelled_text, JsonMeta, OutputFormat, WriterState};
use crate::transcript::Transcript;

/// Plain text writer.
pub struct Txt;

impl OutputFormat for Txt {
    fn chunk(&self, transcript: &Transcript, _meta: &JsonMeta, state: &mut WriterState) -> String {
        let mut out = String::new();
        for seg in &transcript.segments {
            match &seg.speaker {
                Some(speaker) if state.last_speaker.as_ref() == Some(speaker) => {
                    // The same speaker goes on: the segment joins the paragraph.
                    out.push(' ');
                    out.push_str(&seg.text);
                }
                Some(speaker) => {
                    if state.items > 0 {
                        out.push_str("\n\n");
                    }
                    out.push_str(&format!("{speaker}: {}", seg.text));
                    state.last_speaker = Some(speaker.clone());
                }
                None => {
                    out.push_str(&labelled_text(seg));
                    out.push('\n');
                }
            }
            state.items += 1;
        }
        out
    }

    fn end(&self, _summary: &Transcript, _meta: &JsonMeta, state: &WriterState) -> String {
        // A diarized text's last paragraph is still open.
        if state.last_speaker.is_some() {
            "\n".to_string()
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;
    use crate::transcript::Segment;

    fn seg(text: &str, speaker: Option<&str>) -> Segment {
        Segment {
            text: text.into(),
            speaker: speaker.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_paragraph_with_the_label_whenever_the_speaker_changes() {
        let t = Transcript {
            segments: vec![
                seg("Hello there.", Some("S1")),
                seg("How are you?", Some("S1")),
                seg("Fine.", Some("S2")),
                seg("Good.", Some("S1")),
            ],
            ..Default::default()
        };
        let text = Format::Txt.render(&t, &JsonMeta::default());
        assert_eq!(
            text,
            "S1: Hello there. How are you?\n\nS2: Fine.\n\nS1: Good.\n"
        );
    }

    #[test]
    fn without_speakers_one_segment_per_line() {
        let t = Transcript {
            segments: vec![seg("One.", None), seg("Two.", None)],
            ..Default::default()
        };
        assert_eq!(Format::Txt.render(&t, &JsonMeta::default()), "One.\nTwo.\n");
    }
}

//! RTTM (Rich Transcription Time Marked), the who-spoke-when format diarization tools and
//! scorers (md-eval, dscore, pyannote.metrics) read: one `SPEAKER` line per speaker turn.

use super::{JsonMeta, OutputFormat, WriterState};
use crate::transcript::{SpeakerTurn, Transcript};

/// RTTM writer.
pub struct Rttm;

/// The recording's name in the file-id field: the source's file stem, without spaces (the
/// format is space-separated).
fn file_id(source: &str) -> String {
    let stem = std::path::Path::new(source)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && source != "-")
        .unwrap_or_else(|| "stdin".into());
    stem.chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

impl OutputFormat for Rttm {
    fn chunk(&self, transcript: &Transcript, meta: &JsonMeta, state: &mut WriterState) -> String {
        // Diarized turns; a transcript split by channel has its segments as turns instead.
        let from_segments: Vec<SpeakerTurn>;
        let turns = if transcript.turns.is_empty() {
            from_segments = transcript
                .segments
                .iter()
                .filter_map(|s| {
                    s.speaker_label().map(|speaker| SpeakerTurn {
                        start: s.start,
                        end: s.end,
                        speaker,
                    })
                })
                .collect();
            &from_segments
        } else {
            &transcript.turns
        };
        let id = file_id(&meta.source);
        let mut out = String::new();
        for turn in turns {
            let duration = (turn.end - turn.start).max(0.0);
            out.push_str(&format!(
                "SPEAKER {id} 1 {:.3} {duration:.3} <NA> <NA> {} <NA> <NA>\n",
                turn.start, turn.speaker
            ));
            state.items += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;

    #[test]
    fn one_speaker_line_per_turn_named_after_the_source() {
        let t = Transcript {
            turns: vec![
                SpeakerTurn {
                    start: 0.5,
                    end: 2.25,
                    speaker: "S1".into(),
                },
                SpeakerTurn {
                    start: 2.0,
                    end: 4.0,
                    speaker: "S2".into(),
                },
            ],
            ..Default::default()
        };
        let meta = JsonMeta {
            source: "/rec/my talk.wav".into(),
            ..Default::default()
        };
        assert_eq!(
            Format::Rttm.render(&t, &meta),
            "SPEAKER my_talk 1 0.500 1.750 <NA> <NA> S1 <NA> <NA>\n\
             SPEAKER my_talk 1 2.000 2.000 <NA> <NA> S2 <NA> <NA>\n"
        );
    }
}

//! Plain text: one segment per line.

use super::{labelled_text, JsonMeta, OutputFormat, WriterState};
use crate::transcript::Transcript;

/// Plain text writer.
pub struct Txt;

impl OutputFormat for Txt {
    fn chunk(&self, transcript: &Transcript, _meta: &JsonMeta, state: &mut WriterState) -> String {
        state.items += transcript.segments.len();
        let mut out = String::new();
        for seg in &transcript.segments {
            out.push_str(&labelled_text(seg));
            out.push('\n');
        }
        out
    }
}

//! Plain text: one segment per line.

use super::{labelled_text, JsonMeta, OutputFormat};
use crate::transcript::Transcript;

/// Plain text writer.
pub struct Txt;

impl OutputFormat for Txt {
    fn render(&self, transcript: &Transcript, _meta: &JsonMeta) -> String {
        let mut out = String::new();
        for seg in &transcript.segments {
            out.push_str(&labelled_text(seg));
            out.push('\n');
        }
        out
    }
}

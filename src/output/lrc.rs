//! LRC (synchronised lyrics): `[mm:ss.xx]text` lines, one per segment.

use super::{labelled_text, JsonMeta, OutputFormat, WriterState};
use crate::transcript::Transcript;

/// LRC writer.
pub struct Lrc;

impl OutputFormat for Lrc {
    fn begin(&self, head: &Transcript, meta: &JsonMeta) -> String {
        let mut out = format!("[by:verbatim {}]\n", meta.tool_version);
        if !head.language.is_empty() {
            out.push_str(&format!("[la:{}]\n", head.language));
        }
        out
    }

    fn chunk(&self, transcript: &Transcript, _meta: &JsonMeta, state: &mut WriterState) -> String {
        state.items += transcript.segments.len();
        let mut out = String::new();
        for seg in &transcript.segments {
            let text = labelled_text(seg).replace('\n', " ");
            out.push_str(&format!("[{}]{}\n", crate::timecode::lrc(seg.start), text));
        }
        out
    }
}

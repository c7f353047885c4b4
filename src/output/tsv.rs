//! Tab-separated values: `start`, `end` (integer milliseconds) and `text`, with a header,
//! the layout of OpenAI whisper's own `--output_format tsv`.

use super::{labelled_text, JsonMeta, OutputFormat, WriterState};
use crate::transcript::Transcript;

/// TSV writer.
pub struct Tsv;

impl OutputFormat for Tsv {
    fn begin(&self, _head: &Transcript, _meta: &JsonMeta) -> String {
        "start\tend\ttext\n".to_string()
    }

    fn chunk(&self, transcript: &Transcript, _meta: &JsonMeta, state: &mut WriterState) -> String {
        state.items += transcript.segments.len();
        let mut out = String::new();
        for seg in &transcript.segments {
            let text = labelled_text(seg).replace(['\t', '\n'], " ");
            out.push_str(&format!(
                "{}\t{}\t{}\n",
                (seg.start * 1000.0).round() as u64,
                (seg.end * 1000.0).round() as u64,
                text
            ));
        }
        out
    }
}

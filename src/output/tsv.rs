//! Tab-separated values: `start`, `end` (integer milliseconds) and `text`, with a header,
//! the layout of OpenAI whisper's own `--output_format tsv`.

use super::{labelled_text, JsonMeta, OutputFormat};
use crate::transcript::Transcript;

/// TSV writer.
pub struct Tsv;

impl OutputFormat for Tsv {
    fn render(&self, transcript: &Transcript, _meta: &JsonMeta) -> String {
        let mut out = String::from("start\tend\ttext\n");
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

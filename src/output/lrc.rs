//! LRC (synchronised lyrics): `[mm:ss.xx]text` lines, one per segment.

use super::{labelled_text, JsonMeta, OutputFormat};
use crate::transcript::Transcript;

/// LRC writer.
pub struct Lrc;

fn lrc_time(seconds: f64) -> String {
    let cs = (seconds.max(0.0) * 100.0).round() as u64;
    format!("{:02}:{:02}.{:02}", cs / 6000, (cs / 100) % 60, cs % 100)
}

impl OutputFormat for Lrc {
    fn render(&self, transcript: &Transcript, meta: &JsonMeta) -> String {
        let mut out = String::new();
        out.push_str(&format!("[by:verbatim {}]\n", meta.tool_version));
        if !transcript.language.is_empty() {
            out.push_str(&format!("[la:{}]\n", transcript.language));
        }
        for seg in &transcript.segments {
            let text = labelled_text(seg).replace('\n', " ");
            out.push_str(&format!("[{}]{}\n", lrc_time(seg.start), text));
        }
        out
    }
}

//! Decoding a stream that can be read only once (standard input, a FIFO) as it arrives, so an
//! endless stream costs neither memory nor disk.
//!
//! The stream's first bytes are kept: a decoder that gives up while still inside them (an
//! unknown container, a codec symphonia lacks) hands the stream to ffmpeg from its start.
//! Containers that keep their index at the end (MP4, MOV) cannot be read this way: callers
//! copy those to a file first ([`needs_a_file`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use symphonia::core::io::ReadOnlySource;

use super::decode::{decode_symphonia, ffmpeg_fallback, DecodeInfo, FfmpegInput, PcmSink};
use super::decode::{is_wav, SymphoniaFailure};
use crate::{Error, Result};

/// A stream read once: its first bytes (already read) and the rest.
pub struct PipeInput {
    name: PathBuf,
    head: Vec<u8>,
    rest: Box<dyn Read + Send + Sync>,
}

impl PipeInput {
    /// A stream named `name` in messages, whose first bytes `head` were already read from
    /// `rest`.
    pub fn new(name: impl Into<PathBuf>, head: Vec<u8>, rest: Box<dyn Read + Send + Sync>) -> Self {
        PipeInput {
            name: name.into(),
            head,
            rest,
        }
    }

    /// The name used in messages.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// The stream from its start: the kept head, then the rest. `past_head` is set once a
    /// read goes beyond the head, after which the stream cannot be started over.
    fn replay<'a>(&'a mut self, past_head: &'a AtomicBool) -> HeadThenRest<'a> {
        HeadThenRest {
            head: &self.head,
            pos: 0,
            rest: &mut *self.rest,
            past_head,
        }
    }
}

/// Whether a stream starting with `head` must be copied to a file before it can be decoded:
/// ISO-BMFF (MP4, M4A, MOV, 3GP) keeps its index anywhere, often at the end.
pub fn needs_a_file(head: &[u8]) -> bool {
    head.get(4..8) == Some(b"ftyp")
}

struct HeadThenRest<'a> {
    head: &'a [u8],
    pos: usize,
    rest: &'a mut (dyn Read + Send + Sync),
    past_head: &'a AtomicBool,
}

impl Read for HeadThenRest<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.past_head.store(true, Ordering::Relaxed);
        self.rest.read(buf)
    }
}

/// Decodes `input` block by block into `sink`, as [`super::decode::stream_path`] does a file:
/// symphonia over the stream, else ffmpeg fed from it (when symphonia gave up inside the
/// kept head). Nothing is buffered beyond the head.
pub fn stream_pipe(input: &mut PipeInput, sink: &mut dyn PcmSink) -> Result<DecodeInfo> {
    let name = input.name.clone();
    if input.head.is_empty() {
        return Err(Error::input(&name, "empty input (0 bytes)"));
    }
    let hint = is_wav(&input.head).then_some("wav");
    let past_head = AtomicBool::new(false);
    let source = ReadOnlySource::new(input.replay(&past_head));
    let failure = match decode_symphonia(Box::new(source), hint, sink) {
        Ok(info) => return Ok(info),
        Err(failure) => failure,
    };
    if past_head.load(Ordering::Relaxed) {
        // symphonia read beyond what was kept: the stream cannot be started over.
        let reason = match failure {
            SymphoniaFailure::UnknownFormat => "not a recognised audio format".to_string(),
            SymphoniaFailure::UnsupportedCodec(codec) => {
                format!("{codec} audio is not supported by the built-in decoders")
            }
            SymphoniaFailure::Corrupt(reason) | SymphoniaFailure::Invalid(reason) => {
                format!("corrupt or unreadable audio: {reason}")
            }
        };
        return Err(Error::input(&name, reason));
    }
    let past_head = AtomicBool::new(false);
    let mut again = input.replay(&past_head);
    ffmpeg_fallback(&name, FfmpegInput::Pipe(&mut again), failure, false, sink)
}

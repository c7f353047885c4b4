//! verbatim: speech to text on Whisper.
//!
//! The pipeline: [`audio`] decodes and resamples, [`engine`] runs VAD and whisper on
//! windows of 16 kHz mono audio and returns a [`Transcript`], and [`output`] writes it in
//! every common format. See `examples/transcribe_file.rs` for the library in use.

pub mod audio;
pub mod batch;
pub mod diarization;
pub mod engine;
pub mod error;
pub mod listen;
pub mod models;
pub mod output;
pub mod pipeline;
#[cfg(feature = "serve")]
pub mod server;
pub mod subtitle;
pub mod textfile;
pub mod timecode;
pub mod transcript;
pub mod xdg;

pub use error::{Error, Result};
pub use transcript::{Flag, Segment, Transcript, Word};

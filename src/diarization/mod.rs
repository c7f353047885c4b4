//! Who spoke when (`--diarize`): the speaker turns the diarization crate finds, put onto the
//! transcript word by word.

mod assign;

pub use assign::{assign_speakers, RawTurn};

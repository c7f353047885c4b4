//! Transcribes one file with the library API (no CLI code) and prints timed segments.
//!
//! `cargo run --release --example transcribe_file -- MODEL FILE [VAD_MODEL]`

use std::path::PathBuf;

use verbatim::audio::{self, InputSource};
use verbatim::engine::{Engine, EngineOptions, Hooks, TranscribeOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(model), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: transcribe_file MODEL FILE [VAD_MODEL]");
        std::process::exit(2);
    };
    let vad_model = args.next();
    let engine = Engine::load(
        &model,
        &EngineOptions {
            vad_model: vad_model.clone(),
            ..EngineOptions::default()
        },
    )?;
    let prepared = audio::load(&InputSource::Path(file.clone()), false)?;
    let options = TranscribeOptions {
        vad: vad_model.is_some(),
        ..TranscribeOptions::default()
    };
    let mut print =
        |seg: &verbatim::Segment| println!("[{:8.2} -> {:8.2}] {}", seg.start, seg.end, seg.text);
    let mut hooks = Hooks {
        on_segment: Some(&mut print),
        ..Hooks::default()
    };
    let transcript = engine.transcribe(&file, &prepared.streams[0], None, &options, &mut hooks)?;
    eprintln!(
        "{} segments, {} words, language {}, {:.1} s of audio",
        transcript.segments.len(),
        transcript.word_count(),
        transcript.language,
        transcript.duration
    );
    Ok(())
}

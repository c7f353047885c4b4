//! The encoder split (engine patch 0010): the start of the audio, earlier speech the dictation
//! reads as context, is encoded on its own once and kept; each later call that starts with the
//! same audio encodes only the rest, which attends to the kept part. A kept encoding must read
//! exactly as one made afresh, and other audio must never reuse it. The real tiny.en model on
//! JFK's speech.

mod common;

use std::path::Path;

use common::*;
use verbatim::audio::{self, InputSource};
use verbatim::engine::{DecoderPrefix, Engine, EngineOptions, Hooks, TranscribeOptions};

const SAID: &str = "And so, my fellow Americans, ask not what your country can do for you,";

fn options(split: f64, prefix_end: f64, reuse_state: bool) -> TranscribeOptions {
    TranscribeOptions {
        decoder_prefix: Some(DecoderPrefix {
            text: SAID.to_string(),
            end: prefix_end,
        }),
        cached_context_seconds: split,
        reuse_state,
        vad: false,
        word_timestamps: true,
        beam_size: 1,
        best_of: 1,
        temperature_increment: 0.0,
        min_context_seconds: 10.0,
        ..TranscribeOptions::default()
    }
}

#[test]
fn a_kept_context_encoding_reads_as_a_fresh_one_and_only_for_its_audio() {
    let engine = Engine::load(&tiny_en(), &EngineOptions::default()).unwrap();
    let jfk = audio::load(&InputSource::Path(audio("jfk.flac")), false)
        .unwrap()
        .streams
        .remove(0);
    let transcribe = |samples: &[f32], opts: &TranscribeOptions| {
        engine
            .transcribe(Path::new("jfk"), samples, None, opts, &mut Hooks::default())
            .unwrap()
    };
    // Where "... can do for you," ends, read whole.
    let plain = TranscribeOptions {
        decoder_prefix: None,
        cached_context_seconds: 0.0,
        ..options(0.0, 0.0, false)
    };
    let whole = transcribe(&jfk, &plain);
    let you = whole
        .segments
        .iter()
        .flat_map(|s| s.words.iter().flatten())
        .find(|w| normalize_words(&w.text) == ["you"])
        .expect("\"you\" in the transcript")
        .clone();

    // Split where the prefix's speech ends: the continuation is read from the rest alone,
    // with the kept encoding of what was said before it.
    let fresh = transcribe(&jfk, &options(you.end, you.end, false));
    assert!(
        normalize_words(&fresh.text())
            .join(" ")
            .ends_with("what you can do for your country"),
        "{}",
        fresh.text()
    );
    let first = transcribe(&jfk, &options(you.end, you.end, true));
    let kept = transcribe(&jfk, &options(you.end, you.end, true));
    assert_eq!(word_timings(&fresh), word_timings(&first));
    assert_eq!(word_timings(&fresh), word_timings(&kept));

    // Other audio of the same length on the same pooled state: its own encoding, not the
    // kept one (which would read JFK's words into it), as a fresh state reads it.
    let quieter: Vec<f32> = jfk.iter().map(|x| x * 0.5).collect();
    let other_fresh = transcribe(&quieter, &options(you.end, you.end, false));
    let other_pooled = transcribe(&quieter, &options(you.end, you.end, true));
    assert_eq!(word_timings(&other_fresh), word_timings(&other_pooled));
    // And back: JFK's again, not the quieter copy's.
    let back = transcribe(&jfk, &options(you.end, you.end, true));
    assert_eq!(word_timings(&fresh), word_timings(&back));

    // The split is not the whole encoding (the kept part does not attend to the rest): the
    // words' probabilities differ from reading the window whole.
    let joint = transcribe(&jfk, &options(0.0, you.end, false));
    assert_ne!(word_timings(&joint), word_timings(&fresh));

    // A split past the end of the audio leaves the padding as the rest: no failure, and the
    // continuation still dated within the audio.
    let past = transcribe(&jfk, &options(60.0, you.end, true));
    let end = jfk.len() as f64 / 16_000.0;
    assert!(
        past.segments
            .iter()
            .flat_map(|s| s.words.iter().flatten())
            .all(|w| w.end <= end + 0.01),
        "{past:?}"
    );
}

#[test]
fn a_cached_context_needs_vad_off() {
    let engine = tiny_en_with_vad();
    let jfk = audio::load(&InputSource::Path(audio("jfk.flac")), false)
        .unwrap()
        .streams
        .remove(0);
    let opts = TranscribeOptions {
        vad: true,
        decoder_prefix: None,
        ..options(5.0, 0.0, true)
    };
    let err = engine
        .transcribe(Path::new("jfk"), &jfk, None, &opts, &mut Hooks::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cached context needs VAD off"), "{err}");
}

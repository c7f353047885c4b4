//! A pooled whisper state must decode exactly as a fresh one. Dictation and the server reuse
//! states across calls whose encoder contexts differ; whisper.cpp 1.8.3's flash attention
//! attends to K/V rows padded up to a multiple of 256 that only calls with another context
//! wrote, so before patch 0007 a reused state read differently (dictation's last pass: JFK's
//! "my" as "am I"). Library-level: the real tiny.en model on real speech.

mod common;

use std::path::Path;

use common::*;
use verbatim::audio::{self, InputSource};
use verbatim::engine::{Engine, EngineOptions, Hooks, TranscribeOptions};

fn options(min_context_seconds: f64, reuse_state: bool) -> TranscribeOptions {
    TranscribeOptions {
        min_context_seconds,
        reuse_state,
        vad: false,
        word_timestamps: true,
        ..TranscribeOptions::default()
    }
}

#[test]
fn a_reused_state_decodes_exactly_as_a_fresh_one() {
    let engine = Engine::load(&tiny_en(), &EngineOptions::default()).unwrap();
    let source = audio("jfk.flac");
    let jfk = audio::load(&InputSource::Path(source.clone()), false)
        .unwrap()
        .streams
        .remove(0);
    // 4.3 s: an encoder context of 320 rows, padded to 512 (192 rows of padding).
    let opening = &jfk[..(4.3 * 16_000.0) as usize];
    let path = Path::new("jfk-opening");
    let transcribe = |audio: &[f32], opts: &TranscribeOptions| {
        engine
            .transcribe(path, audio, None, opts, &mut Hooks::default())
            .unwrap()
    };

    let fresh = transcribe(opening, &options(0.0, false));
    assert!(
        normalize_words(&fresh.text()).starts_with(&normalize_words("and so my fellow americans")),
        "{}",
        fresh.text()
    );
    // Fill the pooled state's padding rows: calls with larger contexts write K/V where the
    // short clip's padding lies, and the full window's cross-attention layers are laid out
    // with another stride.
    for context in [30.0, 10.0, 20.0, 6.0] {
        transcribe(&jfk, &options(context, true));
    }
    let reused = transcribe(opening, &options(0.0, true));
    assert_eq!(word_timings(&fresh), word_timings(&reused));
    // And again after the opening itself on the pooled state (the same context).
    let again = transcribe(opening, &options(0.0, true));
    assert_eq!(word_timings(&fresh), word_timings(&again));
}

//! A panic inside a caller's hook (on_segment, on_progress) cannot unwind through whisper.cpp;
//! the engine stops whisper and re-raises it once whisper has returned, never dropping the
//! segment silently and returning Ok. The engine stays usable afterwards. Real tiny.en, JFK.

mod common;

use std::path::Path;

use common::*;
use verbatim::audio::{self, InputSource};
use verbatim::engine::{Engine, EngineOptions, Hooks, TranscribeOptions};

fn jfk() -> Vec<f32> {
    audio::load(&InputSource::Path(audio("jfk.flac")), false)
        .unwrap()
        .streams
        .remove(0)
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_panicking_hook_panics_the_call_and_the_engine_stays_usable() {
    let engine = Engine::load(&tiny_en(), &EngineOptions::default()).unwrap();
    let samples = jfk();
    let opts = TranscribeOptions {
        vad: false,
        ..TranscribeOptions::default()
    };
    let path = Path::new("jfk");

    let mut segments_seen = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut on_segment = |_: &verbatim::Segment| {
            segments_seen += 1;
            panic!("hook failed on purpose");
        };
        let mut hooks = Hooks {
            on_segment: Some(&mut on_segment),
            ..Hooks::default()
        };
        engine.transcribe(path, &samples, None, &opts, &mut hooks)
    }));
    let payload = result.expect_err("transcribe returned although its hook panicked");
    assert_eq!(panic_text(payload), "hook failed on purpose");
    assert_eq!(
        segments_seen, 1,
        "the hook was called again after it panicked"
    );

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut on_progress = |p: f32| {
            if p > 0.0 {
                panic!("progress hook failed at {p}");
            }
        };
        let mut hooks = Hooks {
            on_progress: Some(&mut on_progress),
            ..Hooks::default()
        };
        engine.transcribe(path, &samples, None, &opts, &mut hooks)
    }));
    assert!(panic_text(result.expect_err("progress panic lost")).starts_with("progress hook"));

    // The same engine, no hooks: the whole speech, as usual.
    let transcript = engine
        .transcribe(path, &samples, None, &opts, &mut Hooks::default())
        .unwrap();
    assert!(
        wer(&reference("jfk.flac"), &transcript.text()) < 0.1,
        "{}",
        transcript.text()
    );
}

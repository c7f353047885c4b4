//! DTW word times (EngineOptions::dtw) on real speech: tiny.en with its alignment heads, JFK.
//! JFK's speech (Silero VAD, raw) ends at 10.51 s; whisper's heuristic times end the last
//! word at 10.99 s without clipping (docs/word-timestamps.md).

mod common;

use std::path::Path;

use common::*;
use verbatim::audio::{self, InputSource};
use verbatim::engine::{Engine, EngineOptions, Hooks, TranscribeOptions};

#[test]
fn dtw_word_times_end_at_the_end_of_speech() {
    let options = EngineOptions {
        vad_model: Some(vad_model()),
        dtw: true,
        ..EngineOptions::default()
    };
    let engine = Engine::load(&tiny_en(), &options).unwrap();
    assert!(engine.uses_dtw(), "tiny.en has an alignment-head preset");
    let samples = audio::load(&InputSource::Path(audio("jfk.flac")), false)
        .unwrap()
        .streams
        .remove(0);
    let opts = TranscribeOptions {
        word_timestamps: true,
        threads: 2,
        ..TranscribeOptions::default()
    };
    let mut streamed = 0;
    let mut on_segment = |_: &verbatim::Segment| streamed += 1;
    let mut hooks = Hooks {
        on_segment: Some(&mut on_segment),
        ..Hooks::default()
    };
    let t = engine
        .transcribe(Path::new("jfk"), &samples, None, &opts, &mut hooks)
        .unwrap();
    assert_eq!(
        streamed,
        t.segments.len(),
        "every segment reaches the hook once"
    );
    let words: Vec<_> = t
        .segments
        .iter()
        .flat_map(|s| s.words.clone().unwrap_or_default())
        .collect();
    let text: String = words
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        wer(&reference("jfk.flac"), &text) < 0.15,
        "DTW changes times, not words: {text}"
    );
    for pair in words.windows(2) {
        assert!(
            pair[0].start <= pair[0].end && pair[0].end <= pair[1].start + 1e-6,
            "{pair:?}"
        );
    }
    let last = words.last().unwrap();
    assert!(
        (last.end - 10.51).abs() < 0.3,
        "last word ends at {:.2} s",
        last.end
    );
    let first = &words[0];
    assert!(
        first.start < 0.6,
        "first word starts at {:.2} s",
        first.start
    );
}

//! The decoder prefix (engine patch 0009): whisper continues after text forced as the start of
//! its output, reading only what follows, and a pooled state forgets the prefix when the next
//! call sets none. Dictation relies on both. The real tiny.en model on JFK's speech.

mod common;

use std::path::Path;

use common::*;
use verbatim::audio::{self, InputSource};
use verbatim::engine::{DecoderPrefix, Engine, EngineOptions, Hooks, TranscribeOptions};

fn options(prefix: Option<(&str, f64)>) -> TranscribeOptions {
    TranscribeOptions {
        decoder_prefix: prefix.map(|(text, end)| DecoderPrefix {
            text: text.to_string(),
            end,
        }),
        reuse_state: true,
        vad: false,
        word_timestamps: true,
        beam_size: 1,
        best_of: 1,
        temperature_increment: 0.0,
        ..TranscribeOptions::default()
    }
}

#[test]
fn whisper_continues_after_the_prefix_and_a_pooled_state_forgets_it() {
    let engine = Engine::load(&tiny_en(), &EngineOptions::default()).unwrap();
    let jfk = audio::load(&InputSource::Path(audio("jfk.flac")), false)
        .unwrap()
        .streams
        .remove(0);
    let transcribe = |opts: &TranscribeOptions| {
        engine
            .transcribe(Path::new("jfk"), &jfk, None, opts, &mut Hooks::default())
            .unwrap()
    };

    let words = |t: &verbatim::Transcript| -> Vec<verbatim::Word> {
        t.segments
            .iter()
            .flat_map(|s| s.words.iter().flatten().cloned())
            .collect()
    };
    // Where "... can do for you," ends, read without a prefix.
    let whole = transcribe(&options(None));
    assert!(
        normalize_words(&whole.text()).starts_with(&normalize_words("and so my fellow americans")),
        "{}",
        whole.text()
    );
    let you = words(&whole)
        .into_iter()
        .find(|w| normalize_words(&w.text) == ["you"])
        .expect("\"you\" in the transcript");

    let said = "And so, my fellow Americans, ask not what your country can do for you,";
    let rest = transcribe(&options(Some((said, you.end))));
    assert_eq!(
        normalize_words(&rest.text()),
        normalize_words("ask what you can do for your country"),
        "{}",
        rest.text()
    );
    // The continuation's words are dated where they are said: after the prefix's speech,
    // within the audio.
    let read = words(&rest);
    let (first, last) = (read.first().unwrap(), read.last().unwrap());
    assert!(first.start >= you.end - 0.01, "{first:?} before {you:?}");
    assert!(first.start < you.end + 1.5, "{first:?} long after {you:?}");
    assert!(last.end <= jfk.len() as f64 / 16000.0 + 0.01, "{last:?}");

    // The same pooled state, no prefix: the whole speech again.
    let again = transcribe(&options(None));
    assert_eq!(again.text(), whole.text());

    // A prefix longer than whisper's text context keeps its end, never fails.
    let long = format!("{} {said}", "word ".repeat(400));
    let rest = transcribe(&options(Some((&long, you.end))));
    assert!(
        normalize_words(&rest.text())
            .join(" ")
            .contains("what you can do for your country"),
        "{}",
        rest.text()
    );
}

/// The committed text of a fast replay of `name` through the dictation with `context` seconds
/// of earlier speech read before each utterance.
fn dictate(engine: &Engine, name: &str, context: f64) -> String {
    use verbatim::listen::dictation::{Dictation, DictationOptions, Event};
    let samples = audio::load(&InputSource::Path(audio(name)), false)
        .unwrap()
        .streams
        .remove(0);
    let mut dictation = Dictation::new(
        engine,
        DictationOptions {
            pace: false,
            context_seconds: context,
            ..DictationOptions::default()
        },
    )
    .unwrap();
    let mut events = Vec::new();
    for chunk in samples.chunks(1600) {
        events.extend(dictation.push(chunk, std::time::Instant::now()).unwrap());
    }
    events.extend(dictation.finish().unwrap());
    events
        .iter()
        .filter_map(|e| match e {
            Event::Commit { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn dictation_with_context_reads_on_after_the_committed_words() {
    let engine = tiny_en_with_vad();
    // Whisper's guess at where the continuation of the prefix starts fell seconds past the
    // audio, and every word after the first ("I") was dropped as read into the padding.
    let name = "1688-142285-0003.flac";
    let heard = normalize_words(&dictate(&engine, name, 20.0));
    let errors = word_errors(&normalize_words(&reference(name)), &heard);
    assert!(errors <= 3, "{errors} words wrong: {heard:?}");
    // JFK's opening is an utterance of its own: words read into the silence after it were
    // committed ("Americans. And so"), then said again by the next utterance, while the words
    // after a prefix had no times of their own.
    let name = "jfk.flac";
    let heard = normalize_words(&dictate(&engine, name, 20.0));
    let errors = word_errors(&normalize_words(&reference(name)), &heard);
    assert!(errors <= 1, "{errors} words wrong: {heard:?}");
    // Off, the dictation reads each utterance alone, as by default.
    let alone = normalize_words(&dictate(&engine, name, 0.0));
    let errors = word_errors(&normalize_words(&reference(name)), &alone);
    assert!(errors <= 3, "{errors} words wrong: {alone:?}");
}

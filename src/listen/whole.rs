//! A dictation read whole when it ends (`verbatim listen --whole`): while the speaker talks the
//! live steps only show what they hear, and when the dictation ends (the daemon's stop, the
//! push-to-talk key's release, Ctrl-C, `--once`'s utterance end) its audio is read once, as
//! `verbatim transcribe` reads a file. Live commits read one utterance at a time with greedy
//! steps; the whole reading has the speech on both sides of every word and beam search, and is
//! as accurate as the file transcript, delivered after the stop instead of as the words are said.

use std::path::Path;
use std::time::Instant;

use crate::engine::{Engine, Hooks, TranscribeOptions};
use crate::error::Error;
use crate::listen::dictation::{DictationOptions, Event, Stats};
use crate::listen::spoken::separator;

/// The most audio one dictation read whole keeps (seconds): 30 minutes of 16 kHz samples are
/// 115 MB. The session ends there, as at `--duration`, and what was said is read.
pub const MAX_SECONDS: f64 = 1800.0;

/// The audio of a dictation and what its live steps have shown of the utterance in progress.
#[derive(Debug, Default)]
pub struct Whole {
    audio: Vec<f32>,
    last_arrival: Option<Instant>,
    shown: String,
    shown_start: f64,
    /// A live guess was shown, which the end must replace or withdraw.
    shown_any: bool,
}

impl Whole {
    /// An empty dictation.
    pub fn new() -> Whole {
        Whole::default()
    }

    /// Keeps 16 kHz mono samples that arrived (were captured) at `arrival`.
    pub fn keep(&mut self, samples: &[f32], arrival: Instant) {
        self.audio.extend_from_slice(samples);
        self.last_arrival = Some(arrival);
    }

    /// Seconds of audio kept.
    pub fn seconds(&self) -> f64 {
        self.audio.len() as f64 / crate::audio::WHISPER_SAMPLE_RATE as f64
    }

    /// Keeps only the first `seconds` of the audio: `--once`'s utterance, not the start of the
    /// next one that the step which heard its end may have held.
    pub fn cut_at(&mut self, seconds: f64) {
        let keep = (seconds.max(0.0) * crate::audio::WHISPER_SAMPLE_RATE as f64) as usize;
        self.audio.truncate(keep);
    }

    /// The live steps' events as what is shown while the speaker talks: their committed and
    /// uncommitted words of the utterance in progress become one partial, and nothing is
    /// committed, since the whole reading may read those words otherwise.
    pub fn shown(&mut self, events: Vec<Event>) -> Vec<Event> {
        let mut out = Vec::new();
        self.shown_any |= !events.is_empty();
        for event in events {
            let (text, start, end, latency, committed) = match event {
                Event::Partial {
                    text,
                    start,
                    end,
                    latency,
                } => (text, start, end, latency, false),
                Event::Commit {
                    text,
                    start,
                    end,
                    latency,
                } => (text, start, end, latency, true),
                Event::UtteranceEnd { .. } => {
                    self.shown.clear();
                    continue;
                }
            };
            if self.shown.is_empty() {
                self.shown_start = start;
            }
            let mut guess = self.shown.clone();
            guess.push_str(separator(&guess, &text));
            guess.push_str(&text);
            if committed {
                self.shown.clone_from(&guess);
            }
            out.push(Event::Partial {
                text: guess,
                start: self.shown_start,
                end,
                latency,
            });
        }
        out
    }

    /// Reads the kept audio whole with `engine`, as `verbatim transcribe` reads a file (VAD,
    /// beam search, temperature fallback) in the language, prompt, threads, VAD tuning and
    /// hallucination guard of the dictation's options, and returns the dictation's commit and
    /// end. When no words were heard, the live guess shown is withdrawn (an empty partial).
    /// `stats` then tell what was delivered, not what the live steps committed.
    pub fn finish(
        self,
        engine: &Engine,
        source: &Path,
        live: &DictationOptions,
        stats: &mut Stats,
    ) -> Result<Vec<Event>, Error> {
        stats.commit_latencies.clear();
        stats.commit_positions.clear();
        stats.words = 0;
        stats.utterances = 0;
        if self.audio.is_empty() {
            return Ok(self.nothing_heard());
        }
        let started = Instant::now();
        let steps = &live.transcribe;
        let opts = TranscribeOptions {
            language: steps.language.clone(),
            initial_prompt: steps.initial_prompt.clone(),
            threads: steps.threads,
            adapt_threads: steps.adapt_threads,
            vad_options: live.vad.clone(),
            hallucination_guard: steps.hallucination_guard,
            ..TranscribeOptions::default()
        };
        // Not cancellable: once the dictation has ended, what was said is read and delivered.
        let transcript =
            engine.transcribe(source, &self.audio, None, &opts, &mut Hooks::default())?;
        stats.compute_seconds += started.elapsed().as_secs_f64();
        let text = transcript.text();
        let (Some(first), Some(last)) = (transcript.segments.first(), transcript.segments.last())
        else {
            return Ok(self.nothing_heard());
        };
        if text.trim().is_empty() {
            return Ok(self.nothing_heard());
        }
        let latency = self.last_arrival.map_or(0.0, |a| {
            Instant::now().saturating_duration_since(a).as_secs_f64()
        });
        stats.commit_latencies.push(latency);
        stats.commit_positions.push(self.seconds());
        stats.words = transcript.word_count();
        stats.utterances = 1;
        let (start, end) = (first.start, last.end);
        Ok(vec![
            Event::Commit {
                text: text.clone(),
                start,
                end,
                latency,
            },
            Event::UtteranceEnd { text, start, end },
        ])
    }

    /// No words: the live guess shown, if any, is withdrawn (an empty partial).
    fn nothing_heard(&self) -> Vec<Event> {
        if !self.shown_any {
            return Vec::new();
        }
        vec![Event::Partial {
            text: String::new(),
            start: 0.0,
            end: 0.0,
            latency: 0.0,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(text: &str, start: f64) -> Event {
        Event::Partial {
            text: text.into(),
            start,
            end: start + 1.0,
            latency: 0.1,
        }
    }

    fn commit(text: &str, start: f64) -> Event {
        Event::Commit {
            text: text.into(),
            start,
            end: start + 1.0,
            latency: 0.1,
        }
    }

    #[test]
    fn live_commits_are_shown_as_the_partial_and_nothing_is_committed() {
        let mut whole = Whole::new();
        let out = whole.shown(vec![commit("Then Moses", 0.5), partial("was", 1.5)]);
        assert_eq!(
            out,
            vec![
                Event::Partial {
                    text: "Then Moses".into(),
                    start: 0.5,
                    end: 1.5,
                    latency: 0.1
                },
                Event::Partial {
                    text: "Then Moses was".into(),
                    start: 0.5,
                    end: 2.5,
                    latency: 0.1
                },
            ]
        );
        let end = Event::UtteranceEnd {
            text: "Then Moses was afraid".into(),
            start: 0.5,
            end: 3.0,
        };
        assert_eq!(whole.shown(vec![commit("was afraid", 1.5), end]).len(), 1);
        // The next utterance's partial starts afresh.
        assert_eq!(
            whole.shown(vec![partial("and said", 5.0)]),
            vec![partial("and said", 5.0)]
        );
    }

    #[test]
    fn audio_is_kept_and_measured() {
        let mut whole = Whole::new();
        whole.keep(&vec![0.0; 8_000], Instant::now());
        whole.keep(&vec![0.0; 24_000], Instant::now());
        assert_eq!(whole.seconds(), 2.0);
        whole.cut_at(1.5);
        assert_eq!(whole.seconds(), 1.5);
        whole.cut_at(3.0);
        assert_eq!(whole.seconds(), 1.5);
    }
}

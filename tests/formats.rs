//! Output formats: every format parses back and carries the same segments (text formats) or
//! words (subtitle formats) as the JSON.

mod common;

use common::*;
use serde_json::Value;

#[derive(Debug, Clone)]
struct Cue {
    start: f64,
    end: f64,
    text: String,
}

fn parse_clock(s: &str) -> f64 {
    let s = s.trim().replace(',', ".");
    let parts: Vec<&str> = s.split(':').collect();
    assert_eq!(parts.len(), 3, "bad time {s}");
    parts[0].parse::<f64>().unwrap() * 3600.0
        + parts[1].parse::<f64>().unwrap() * 60.0
        + parts[2].parse::<f64>().unwrap()
}

fn parse_srt(text: &str) -> Vec<Cue> {
    let mut cues = Vec::new();
    for (i, block) in text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .enumerate()
    {
        let mut lines = block.lines();
        assert_eq!(
            lines.next().unwrap().trim(),
            (i + 1).to_string(),
            "SRT numbering"
        );
        let times = lines.next().unwrap();
        let (a, b) = times.split_once(" --> ").expect("SRT time line");
        assert!(
            a.contains(',') && b.contains(','),
            "SRT uses commas: {times}"
        );
        cues.push(Cue {
            start: parse_clock(a),
            end: parse_clock(b),
            text: lines.collect::<Vec<_>>().join("\n"),
        });
    }
    cues
}

fn parse_vtt(text: &str) -> Vec<Cue> {
    assert!(text.starts_with("WEBVTT\n"), "VTT header");
    text.split("\n\n")
        .skip(1)
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let times = lines.next().unwrap();
            let (a, b) = times.split_once(" --> ").expect("VTT time line");
            assert!(a.contains('.') && b.contains('.'), "VTT uses dots: {times}");
            Cue {
                start: parse_clock(a),
                end: parse_clock(b),
                text: lines.collect::<Vec<_>>().join("\n"),
            }
        })
        .collect()
}

fn check_monotonic(cues: &[Cue], what: &str) {
    for pair in cues.windows(2) {
        assert!(pair[0].start <= pair[1].start, "{what}: times go backwards");
        assert!(
            pair[0].end <= pair[1].start + 1e-9,
            "{what}: cues overlap {pair:?}"
        );
    }
    for c in cues {
        assert!(c.end > c.start, "{what}: empty cue {c:?}");
    }
}

#[test]
fn every_format_round_trips_the_same_segments() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(transcribe()
        .args(["-w", "-f", "txt,srt,vtt,ass,json,tsv,lrc", "-o"])
        .arg(dir.path())
        .arg(audio("long_ls_2609_3080_concat.flac"))
        .args(["--duration", "60"]));
    assert!(out.status.success());
    let read = |ext: &str| {
        std::fs::read_to_string(dir.path().join(format!("long_ls_2609_3080_concat.{ext}"))).unwrap()
    };

    // JSON schema.
    let doc: Value = serde_json::from_str(&read("json")).unwrap();
    assert_eq!(doc["tool"]["name"], "verbatim");
    assert!(doc["tool"]["version"].is_string() && doc["tool"]["whisper_cpp"].is_string());
    assert!(doc["model"]["path"]
        .as_str()
        .unwrap()
        .ends_with("ggml-tiny.en.bin"));
    assert_eq!(doc["model"]["multilingual"], false);
    assert_eq!(doc["options"]["beam_size"], 5);
    assert_eq!(doc["language"], "en");
    assert!(doc["duration"].as_f64().unwrap() > 200.0);
    let segs = doc["segments"].as_array().unwrap();
    assert!(segs.len() >= 5, "expected several segments in 60 s");
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s["id"].as_u64(), Some(i as u64));
        for key in ["start", "end", "avg_logprob", "no_speech_prob"] {
            assert!(
                s[key].is_f64() || s[key].is_u64(),
                "segment {i} lacks numeric {key}"
            );
        }
        let start = s["start"].as_f64().unwrap();
        assert_eq!(
            (start * 1000.0).round() / 1000.0,
            start,
            "millisecond precision"
        );
        assert!(s["text"].is_string() && s["flags"].is_array());
        let words = s["words"].as_array().expect("words with -w");
        assert!(!words.is_empty());
        for w in words {
            let p = w["probability"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p));
            assert!(w["end"].as_f64().unwrap() >= w["start"].as_f64().unwrap());
            assert!(w["start"].as_f64().unwrap() >= start - 0.01);
        }
    }
    let json_cues: Vec<Cue> = segs
        .iter()
        .map(|s| Cue {
            start: s["start"].as_f64().unwrap(),
            end: s["end"].as_f64().unwrap(),
            text: s["text"].as_str().unwrap().to_string(),
        })
        .collect();
    assert!(
        json_cues.iter().all(|c| c.end <= 61.0),
        "--duration 60 respected"
    );

    let srt = parse_srt(&read("srt"));
    let vtt = parse_vtt(&read("vtt"));
    check_monotonic(&srt, "srt");
    check_monotonic(&vtt, "vtt");
    let tsv: Vec<Cue> = read("tsv")
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            Cue {
                start: f.next().unwrap().parse::<f64>().unwrap() / 1000.0,
                end: f.next().unwrap().parse::<f64>().unwrap() / 1000.0,
                text: f.next().unwrap().to_string(),
            }
        })
        .collect();
    assert_eq!(read("tsv").lines().next(), Some("start\tend\ttext"));
    let lrc: Vec<Cue> = read("lrc")
        .lines()
        .filter(|l| l.len() > 10 && l.as_bytes()[1].is_ascii_digit())
        .map(|l| {
            let (time, text) = l[1..].split_once(']').unwrap();
            let (m, s) = time.split_once(':').unwrap();
            let start = m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap();
            Cue {
                start,
                end: start,
                text: text.to_string(),
            }
        })
        .collect();
    let txt: Vec<String> = read("txt").lines().map(str::to_string).collect();

    // Subtitles are laid out word by word (tests/subtitle_rules.rs checks the rules): they
    // carry the same words as the segments, within the segments' time span.
    let words = |cues: &[Cue]| -> Vec<String> {
        cues.iter()
            .flat_map(|c| c.text.split_whitespace().map(str::to_string))
            .collect()
    };
    let json_words = words(&json_cues);
    assert_eq!(words(&srt), json_words, "srt words");
    assert_eq!(words(&vtt), json_words, "vtt words");
    assert_eq!(srt.len(), vtt.len());
    let ass_events = read("ass")
        .lines()
        .filter(|l| l.starts_with("Dialogue: "))
        .count();
    assert_eq!(ass_events, srt.len(), "ass cue count");
    for (s, v) in srt.iter().zip(&vtt) {
        assert_eq!(s.text, v.text);
        assert!((s.start - v.start).abs() < 1e-6 && (s.end - v.end).abs() < 1e-6);
    }
    assert!(srt[0].start >= json_cues[0].start - 0.0011);
    assert!(srt.last().unwrap().end <= json_cues.last().unwrap().end + 1.5 + 0.0011);

    for (name, cues, tolerance) in [("tsv", &tsv, 0.0011), ("lrc", &lrc, 0.0051)] {
        assert_eq!(cues.len(), json_cues.len(), "{name} cue count");
        for (c, j) in cues.iter().zip(&json_cues) {
            assert_eq!(c.text, j.text, "{name} text");
            assert!(
                (c.start - j.start).abs() <= tolerance,
                "{name} start {} vs {}",
                c.start,
                j.start
            );
            if name != "lrc" {
                // Subtitle ends may be pulled in to avoid overlap, never pushed out.
                assert!(
                    c.end <= j.end + tolerance,
                    "{name} end {} vs {}",
                    c.end,
                    j.end
                );
            }
        }
    }
    assert_eq!(
        txt,
        json_cues.iter().map(|c| c.text.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn outputs_are_written_atomically_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(transcribe()
        .args(["-f", "srt,txt", "-o"])
        .arg(dir.path())
        .arg(audio("jfk.flac")));
    assert!(out.status.success());
    // Only the finished files: no temporary or partial file remains.
    assert_eq!(files_in(dir.path()), vec!["jfk.srt", "jfk.txt"]);
}

//! Unit tests of the engine: layout, parsing and checking.

use super::*;
use crate::transcript::{Segment, Transcript, Word};

/// A transcript of one segment whose words are spoken back to back at `secs_per_char`.
fn spoken(text: &str, start: f64, secs_per_char: f64) -> Transcript {
    let mut t = start;
    let words: Vec<Word> = text
        .split_whitespace()
        .map(|w| {
            let d = w.chars().count() as f64 * secs_per_char + 0.05;
            let word = Word {
                speaker: None,
                text: w.to_string(),
                start: t,
                end: t + d,
                probability: 0.9,
            };
            t += d + 0.05;
            word
        })
        .collect();
    transcript(vec![segment(words)])
}

fn segment(words: Vec<Word>) -> Segment {
    Segment {
        start: words.first().map_or(0.0, |w| w.start),
        end: words.last().map_or(0.0, |w| w.end),
        text: words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        words: Some(words),
        ..Segment::default()
    }
}

fn transcript(segments: Vec<Segment>) -> Transcript {
    Transcript {
        language: "en".into(),
        duration: segments.last().map_or(0.0, |s| s.end + 5.0),
        segments,
        ..Transcript::default()
    }
}

fn all_words(cues: &[Cue]) -> Vec<String> {
    cues.iter()
        .flat_map(|c| c.lines.iter().flat_map(|l| l.split_whitespace()))
        .map(str::to_string)
        .collect()
}

#[test]
fn presets_parse_and_differ() {
    assert_eq!(Preset::parse("Netflix"), Some(Preset::Netflix));
    assert_eq!(Preset::parse("youtube"), Some(Preset::Youtube));
    assert_eq!(Preset::parse(" cjk "), Some(Preset::Cjk));
    assert_eq!(Preset::parse("bbc"), None);
    assert_eq!(Rules::default(), Rules::from(Preset::Netflix));
    let n = Rules::default();
    assert_eq!(
        (n.max_chars_per_line, n.max_lines, n.max_cps),
        (42, 2, 17.0)
    );
    assert!(Rules::from(Preset::Youtube).max_cps > n.max_cps);
    assert_eq!(Rules::from(Preset::Cjk).max_chars_per_line, 16);
    for p in Preset::ALL {
        Rules::from(p).validate().unwrap();
    }
}

#[test]
fn a_long_sentence_becomes_balanced_two_line_cues_without_violations() {
    let text = "When the committee finally met on Tuesday, nobody expected the chairman \
                to resign. He did, however, and the whole building went quiet for a \
                moment before anyone dared to speak again about the budget.";
    let t = spoken(text, 1.0, 0.065);
    let rules = Rules::default();
    let out = layout(&t, &rules);
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    assert_eq!(
        all_words(&out.cues).join(" "),
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    for cue in &out.cues {
        assert!(cue.lines.len() <= 2);
        for l in &cue.lines {
            assert!(l.chars().count() <= 42, "{l}");
        }
        let last = cue.lines.last().unwrap().split(' ').next_back().unwrap();
        assert!(
            !text::is_weak(last),
            "cue ends on weak word: {:?}",
            cue.lines
        );
        if cue.lines.len() == 2 {
            let (a, b) = (cue.lines[0].len() as i64, cue.lines[1].len() as i64);
            assert!((a - b).abs() <= 20, "unbalanced {:?}", cue.lines);
        }
    }
    // A sentence end is preferred as a cue end: "resign." ends a cue.
    assert!(
        out.cues
            .iter()
            .any(|c| c.lines.last().unwrap().ends_with("resign.")),
        "{:#?}",
        out.cues.iter().map(|c| &c.lines).collect::<Vec<_>>()
    );
}

#[test]
fn long_pauses_split_cues_and_cues_end_shortly_after_speech() {
    let mut a = spoken("Hello there.", 0.0, 0.07).segments.remove(0);
    let b = spoken("Are you still here", 5.0, 0.07).segments.remove(0);
    a.words.as_mut().unwrap().extend(b.words.unwrap());
    let t = transcript(vec![a]);
    let rules = Rules::default();
    let out = layout(&t, &rules);
    assert_eq!(out.cues.len(), 2, "{:?}", out.cues);
    let first_end = out.cues[0].words.last().unwrap().end;
    assert!(out.cues[0].end <= first_end + rules.max_silence + 1e-9);
    assert!(out.cues[0].end >= first_end);
    assert!(out.cues[1].start >= 5.0);
}

#[test]
fn too_fast_cues_borrow_silence_then_split_and_report_what_is_left() {
    // 30 characters in 1 s, then silence: the cue borrows time after the speech.
    let t = spoken("quick words spoken rapidly now", 0.0, 0.02);
    let rules = Rules::default();
    let out = layout(&t, &rules);
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    let cue = &out.cues[0];
    let chars = cue.text().chars().count() as f64;
    assert!(chars / (cue.end - cue.start) <= rules.max_cps + 1e-9);

    // Speech far too fast, then more speech right away: cannot be read in time.
    let mut words = Vec::new();
    for k in 0..40 {
        let t0 = k as f64 * 0.15;
        words.push(Word {
            speaker: None,
            text: format!("word{k}"),
            start: t0,
            end: t0 + 0.14,
            probability: 1.0,
        });
    }
    let t = transcript(vec![segment(words)]);
    let out = layout(&t, &rules);
    assert!(!out.violations.is_empty());
    assert_eq!(out.violations, check(&out.cues, &rules));
    assert!(
        out.violations.iter().all(|v| v.rule == Rule::ReadingSpeed),
        "{:?}",
        out.violations
    );
    assert_eq!(all_words(&out.cues).len(), 40);
}

#[test]
fn a_word_longer_than_a_line_is_reported() {
    let long = "x".repeat(50);
    let t = spoken(&format!("a {long} b"), 0.0, 0.02);
    let out = layout(&t, &Rules::default());
    assert!(out
        .violations
        .iter()
        .any(|v| v.rule == Rule::LineLength && v.to_string().contains("50 chars")));
}

#[test]
fn numbers_stay_with_their_units_and_titles_with_names() {
    let text =
        "the trail climbs for exactly 12 km and then Dr. Watson waits with 40 % of the supplies";
    for max in 14..42 {
        let rules = Rules {
            max_chars_per_line: max,
            ..Rules::default()
        };
        let out = layout(&spoken(text, 0.0, 0.06), &rules);
        for cue in &out.cues {
            for l in &cue.lines {
                assert!(
                    !l.ends_with(" 12") && !l.ends_with(" 40") && !l.ends_with("Dr."),
                    "max {max}: {:?}",
                    cue.lines
                );
            }
        }
    }
}

#[test]
fn cjk_words_join_without_spaces() {
    let rules = Rules::from(Preset::Cjk);
    // No word times: the segment text is spread over its time, character by character.
    let seg = Segment {
        start: 0.0,
        end: 8.0,
        text: "今天天气很好，我们一起去公园散步吧。然后我们去吃晚饭，好不好？".into(),
        ..Segment::default()
    };
    let out = layout(&transcript(vec![seg.clone()]), &rules);
    let joined: String = out.cues.iter().map(|c| c.lines.concat()).collect();
    assert_eq!(joined, seg.text);
    for c in &out.cues {
        for l in &c.lines {
            assert!(!l.contains(' '));
            assert!(l.chars().count() <= 16, "{l}");
        }
    }
    assert!(out.violations.is_empty(), "{:?}", out.violations);
}

#[test]
fn segments_without_words_are_wrapped_and_spread() {
    let seg = Segment {
        start: 2.0,
        end: 12.0,
        text: "This segment has no word times but it is long enough to need more than one line of text in total.".into(),
        ..Segment::default()
    };
    let out = layout(&transcript(vec![seg.clone()]), &Rules::default());
    assert_eq!(all_words(&out.cues).join(" "), seg.text);
    assert!(out
        .cues
        .iter()
        .all(|c| c.lines.iter().all(|l| l.len() <= 42)));
    assert!((out.cues[0].start - 2.0).abs() < 1e-9);
    assert!(out.cues.last().unwrap().end <= 12.0 + 1.5);
}

#[test]
fn channels_are_labelled_and_never_share_a_cue() {
    let mut a = spoken("Hi, how are you doing today?", 0.0, 0.06)
        .segments
        .remove(0);
    a.channel = Some(0);
    let mut b = spoken("Fine, thanks.", 2.2, 0.06).segments.remove(0);
    b.channel = Some(1);
    let out = layout(&transcript(vec![a, b]), &Rules::default());
    assert_eq!(out.cues.len(), 2);
    assert_eq!(out.cues[0].speaker.as_deref(), Some("ch1"));
    assert_eq!(out.cues[1].speaker.as_deref(), Some("ch2"));
    assert!(out.cues[0].end <= out.cues[1].start);
}

#[test]
fn diarized_speakers_never_share_a_cue_and_each_format_names_them() {
    // Two speakers trading short lines with no pause: without speakers these would share
    // one cue.
    let mut a = spoken("Are you coming?", 0.0, 0.06).segments.remove(0);
    a.speaker = Some("S1".into());
    let mut b = spoken("Yes, right now.", a.end + 0.05, 0.06)
        .segments
        .remove(0);
    b.speaker = Some("S2".into());
    let t = transcript(vec![a, b]);
    let out = layout(&t, &Rules::default());
    assert_eq!(out.cues.len(), 2, "{:?}", out.cues);
    assert_eq!(out.cues[0].speaker.as_deref(), Some("S1"));
    assert_eq!(out.cues[1].speaker.as_deref(), Some("S2"));
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    let meta = crate::output::JsonMeta::default();
    let vtt = crate::output::Format::Vtt.render(&t, &meta);
    assert!(vtt.contains("<v S1>Are you coming?"), "{vtt}");
    assert!(vtt.contains("<v S2>Yes, right now."), "{vtt}");
    let srt = crate::output::Format::Srt.render(&t, &meta);
    assert!(srt.contains("[S1] Are you coming?"), "{srt}");
    let ass = crate::output::Format::Ass.render(&t, &meta);
    assert!(ass.contains(",S2,"), "{ass}");
}

#[test]
fn check_finds_every_rule() {
    let rules = Rules::default();
    let cue = |start: f64, end: f64, lines: &[&str]| Cue {
        start,
        end,
        lines: lines.iter().map(|s| s.to_string()).collect(),
        ..Cue::default()
    };
    let cues = vec![
        cue(0.0, 0.5, &["short"]),        // min duration
        cue(0.52, 9.0, &["a", "b", "c"]), // gap, max duration, lines
        cue(
            8.5,
            9.5,
            &["<i>this line is far too long for any viewer to read</i>"],
        ), // overlap, length, cps
        cue(20.0, 22.0, &["{\\an8}fine"]),
    ];
    let v = check(&cues, &rules);
    let got: Vec<(usize, Rule)> = v.iter().map(|v| (v.cue, v.rule)).collect();
    assert_eq!(
        got,
        vec![
            (1, Rule::MinDuration),
            (1, Rule::MinGap),
            (2, Rule::LinesPerCue),
            (2, Rule::MaxDuration),
            (2, Rule::Overlap),
            (3, Rule::LineLength),
            (3, Rule::ReadingSpeed),
        ]
    );
    assert_eq!(
        v[6].to_string(),
        "cue 3 at 00:00:08,500: reading speed 48.0 chars/s > 17"
    );
    // Silence is checked only when the words are known.
    let mut c = cue(0.0, 5.0, &["one two"]);
    c.words = vec![
        Word {
            speaker: None,
            text: "one".into(),
            start: 0.0,
            end: 0.4,
            probability: 1.0,
        },
        Word {
            speaker: None,
            text: "two".into(),
            start: 2.4,
            end: 2.8,
            probability: 1.0,
        },
    ];
    let v = check(&[c], &rules);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule, Rule::Silence);
}

#[test]
fn parses_srt_variants() {
    let srt = "\u{feff}1\r\n00:00:01,000 --> 00:00:02,500\r\nHello <i>there</i>\r\nsecond line\r\n\r\n\
               00:00:03,000 --> 00:00:04,000\r\n{\\an8}No number\r\n\r\n\r\n3\r\n00:00:05.000 --> 00:00:06.000\r\nDot times\r\n";
    let cues = parse_subtitles(srt).unwrap();
    assert_eq!(cues.len(), 3);
    assert_eq!(cues[0].start, 1.0);
    assert_eq!(cues[0].end, 2.5);
    assert_eq!(cues[0].lines, vec!["Hello <i>there</i>", "second line"]);
    assert_eq!(cues[1].lines, vec!["{\\an8}No number"]);
    assert_eq!(cues[2].start, 5.0);
    // Tags do not count towards line length.
    let rules = Rules {
        max_chars_per_line: 11,
        ..Rules::default()
    };
    assert!(check(&cues[1..2], &rules)
        .iter()
        .all(|v| v.rule != Rule::LineLength));
}

#[test]
fn parses_vtt_variants() {
    let vtt = "WEBVTT - a title\nKind: captions\n\nNOTE this is\na comment\n\nSTYLE\n::cue { color: red }\n\n\
               intro\n00:01.000 --> 00:02.000 align:start line:0\n<v Roger>Hi &amp; bye\n\n\
               01:00:00.000 --> 01:00:01.500\nLater\n";
    let cues = parse_subtitles(vtt).unwrap();
    assert_eq!(cues.len(), 2);
    assert_eq!((cues[0].start, cues[0].end), (1.0, 2.0));
    assert_eq!(cues[0].lines, vec!["<v Roger>Hi &amp; bye"]);
    assert_eq!(cues[1].start, 3600.0);
    assert_eq!(check::strip_tags(&cues[0].lines[0]), "Hi & bye");
    assert!(parse_subtitles("WEBVTT\n").unwrap().is_empty());
}

#[test]
fn parse_errors_name_the_line() {
    let e = parse_subtitles(
        "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03,000 -> 00:00:04,000\nbad\n",
    )
    .unwrap_err();
    assert!(e.starts_with("line 6:"), "{e}");
    let e = parse_subtitles("1\n00:00:01,000 --> 00:0x:02,000\nok\n").unwrap_err();
    assert!(e.starts_with("line 2:") && e.contains("end time"), "{e}");
    assert!(parse_subtitles("").is_err());
    assert!(parse_subtitles("just some text\n").is_err());
}

#[test]
fn check_file_reports_unreadable_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.srt");
    let err = check_file(&missing, &Rules::default()).unwrap_err();
    assert!(matches!(err, crate::Error::Input { .. }));
    assert!(err.to_string().contains("missing.srt"));
    let bad = dir.path().join("bad.srt");
    std::fs::write(&bad, "1\nnot a time\nx\n").unwrap();
    let err = check_file(&bad, &Rules::default()).unwrap_err().to_string();
    assert!(err.contains("bad.srt") && err.contains("line 2"), "{err}");
    let good = dir.path().join("good.srt");
    std::fs::write(&good, "1\n00:00:01,000 --> 00:00:03,000\nHello there.\n").unwrap();
    assert!(check_file(&good, &Rules::default()).unwrap().is_empty());
}

#[test]
fn written_srt_parses_back_to_the_same_cues() {
    let t = spoken(
        "This is a test of the writer and the parser together, with a few more words.",
        3.0,
        0.06,
    );
    let rules = Rules::default();
    let meta = crate::output::JsonMeta::default();
    let srt = crate::output::Format::Srt.render(&t, &meta);
    let vtt = crate::output::Format::Vtt.render(&t, &meta);
    let cues = layout(&t, &rules).cues;
    for parsed in [
        parse_subtitles(&srt).unwrap(),
        parse_subtitles(&vtt).unwrap(),
    ] {
        assert_eq!(parsed.len(), cues.len());
        for (p, c) in parsed.iter().zip(&cues) {
            assert_eq!(p.lines, c.lines);
            assert!((p.start - c.start).abs() < 1e-9 && (p.end - c.end).abs() < 1e-9);
        }
    }
}

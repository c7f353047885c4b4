//! `verbatim listen`: the dictation policy on replayed speech, and real capture through cpal
//! from a PulseAudio virtual microphone.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pulse::{playable_jfk, Pulse};
use common::*;
use serde_json::Value;

/// `verbatim listen` with tiny.en and the shared VAD model.
fn listen() -> Command {
    let mut cmd = verbatim();
    cmd.arg("listen")
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model());
    cmd
}

/// The JSON Lines events of a run.
fn events(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event {l:?}: {e}")))
        .collect()
}

/// The committed text of an event stream, after checking that committed text is never revised:
/// each `utterance_end` repeats exactly the commits since the previous one. (Commit times are
/// whisper's word-time estimates, which can step back by seconds on greedy decodes, so their
/// order is not checked.)
fn committed_text(events: &[Value]) -> String {
    let mut all = Vec::new();
    let mut since_end: Vec<String> = Vec::new();
    for e in events {
        match e["type"].as_str().unwrap() {
            "commit" => {
                let text = e["text"].as_str().unwrap().to_string();
                assert!(!text.trim().is_empty(), "empty commit: {e}");
                assert!(e["end"].as_f64().unwrap() >= e["start"].as_f64().unwrap());
                since_end.push(text.clone());
                all.push(text);
            }
            "utterance_end" => {
                assert_eq!(
                    e["text"].as_str().unwrap(),
                    since_end.join(" "),
                    "utterance_end must repeat its commits unchanged"
                );
                since_end.clear();
            }
            "partial" => {}
            other => panic!("unknown event type {other}"),
        }
    }
    assert!(since_end.is_empty(), "commits after the last utterance_end");
    all.join(" ")
}

fn offline(file: &Path) -> String {
    let out = run(transcribe().arg(file));
    assert!(out.status.success());
    stdout(&out)
}

#[test]
fn replayed_speech_is_committed_within_2_points_of_offline() {
    let mut files: Vec<String> = files_in(&shared("audio"))
        .into_iter()
        .filter(|n| {
            ((n.starts_with("1688-") || n.starts_with("367-")) && n.ends_with(".flac"))
                || n == "1089-134686-0002.wav"
                || n == "1221-135766-0002.wav"
        })
        .collect();
    files.push("long_ls_2609_3080_concat.flac".into());
    assert_eq!(
        files.len(),
        23,
        "the 22 LibriSpeech utterances and the long file"
    );
    let (mut ref_words, mut listen_errors, mut offline_errors) = (0usize, 0usize, 0usize);
    let pct = |errors: usize, words: usize| 100.0 * errors as f64 / words as f64;
    for name in &files {
        let file = audio(name);
        let out = run(listen().args(["--json", "-q", "--input"]).arg(&file));
        assert!(out.status.success(), "{name}");
        let heard = committed_text(&events(&out));
        let reference = normalize_words(&reference(name));
        let (live, offline) = (
            word_errors(&reference, &normalize_words(&heard)),
            word_errors(&reference, &normalize_words(&offline(&file))),
        );
        if name.starts_with("long_") {
            // Continuous speech, where streaming's seams and cuts show: 204 s of it read
            // 5.2 points behind offline before a hypothesis had to keep the committed seam.
            let (live, offline) = (pct(live, reference.len()), pct(offline, reference.len()));
            eprintln!("{name}: WER listen {live:.2} %, offline {offline:.2} %");
            assert!(
                live <= offline + 5.0,
                "dictation WER {live:.2} % on {name} is more than 5 points above offline {offline:.2} %"
            );
        }
        ref_words += reference.len();
        listen_errors += live;
        offline_errors += offline;
    }
    let (listen_wer, offline_wer) = (
        pct(listen_errors, ref_words),
        pct(offline_errors, ref_words),
    );
    eprintln!("WER listen {listen_wer:.2} %, offline {offline_wer:.2} %, {ref_words} words");
    assert!(
        listen_wer <= offline_wer + 2.0,
        "dictation WER {listen_wer:.2} % is more than 2 points above offline {offline_wer:.2} %"
    );
}

#[test]
fn seconds_of_speech_read_as_one_word_are_read_again() {
    // With 0.28 s of silence before the long file the steps fall elsewhere in its speech, and
    // tiny.en, prompted with the committed text, read 3.4 s of "but I am hugely pleased that
    // you have seen my lady" as "the" in one segment; the last pass committed that.
    let audio_in = verbatim::audio::load(
        &verbatim::audio::InputSource::Path(audio("long_ls_2609_3080_concat.flac")),
        false,
    )
    .unwrap();
    assert_eq!(audio_in.source_rate, 16000);
    let samples = &audio_in.streams[0];
    let dir = tempfile::tempdir().unwrap();
    let shifted = dir.path().join("shifted.wav");
    write_wav_16k(
        &shifted,
        std::iter::repeat_n(0.0, 4480).chain(samples.iter().copied()),
    );
    let out = run(listen().args(["--json", "-q", "--input"]).arg(&shifted));
    assert!(out.status.success());
    let heard = normalize_words(&committed_text(&events(&out))).join(" ");
    let sentence = normalize_words("but I am hugely pleased that you have seen my lady").join(" ");
    assert!(
        heard.contains(&sentence),
        "{sentence:?} not committed: {heard}"
    );
}

#[test]
fn context_reads_on_after_the_committed_words() {
    // `--context`: each step reads the speech before the utterance with it, its committed text
    // forced as whisper's prefix. After a prefix whisper also reads the window again from its
    // start at the end of the audio ("Americans." then "And so my fellow Americans."); that
    // was committed while the words after a prefix had no times of their own.
    // 1688-142285-0003 lost every word after its first ("I") while whisper's guess dated
    // them past the audio. Words allowed beyond offline's errors, per file:
    for (name, more) in [("jfk.flac", 0), ("1688-142285-0003.flac", 2)] {
        let file = audio(name);
        let out = run(listen()
            .args(["--json", "-q", "--context", "20", "--input"])
            .arg(&file));
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let heard = normalize_words(&committed_text(&events(&out)));
        let reference = normalize_words(&reference(name));
        let errors = word_errors(&reference, &heard);
        let offline = word_errors(&reference, &normalize_words(&offline(&file)));
        assert!(
            errors <= offline + more,
            "{name}: {errors} words wrong (offline {offline}): {heard:?}"
        );
    }
}

#[test]
fn whole_delivers_what_transcribe_reads() {
    // JFK is two utterances live ("And so my fellow Americans", a pause, "ask not ..."); read
    // whole, the live steps are only partials and the one commit is `transcribe`'s reading.
    let file = audio("jfk.flac");
    let out = run(listen()
        .args(["--json", "-q", "--whole", "--input"])
        .arg(&file));
    assert!(out.status.success(), "{}", stderr(&out));
    let evs = events(&out);
    let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let first = kinds.iter().position(|k| *k == "commit").expect("a commit");
    assert_eq!(&kinds[first..], ["commit", "utterance_end"], "{kinds:?}");
    let shown: Vec<Vec<String>> = evs[..first]
        .iter()
        .map(|e| normalize_words(e["text"].as_str().unwrap()))
        .collect();
    assert!(
        shown.iter().any(|w| w.contains(&"americans".to_string()))
            && shown.iter().any(|w| w.contains(&"country".to_string())),
        "the live reading is shown as it grows: {shown:?}"
    );
    let heard = committed_text(&evs);
    assert_eq!(normalize_words(&heard), normalize_words(&offline(&file)));

    // With --once the first utterance ends the dictation, and it is read whole.
    let out = run(listen()
        .args(["--json", "-q", "--whole", "--once", "--input"])
        .arg(&file));
    assert!(out.status.success(), "{}", stderr(&out));
    let heard = normalize_words(&committed_text(&events(&out)));
    assert!(heard.starts_with(&normalize_words("and so")), "{heard:?}");
    assert!(!heard.contains(&"country".to_string()), "{heard:?}");

    // The kept audio ends where --duration ends the dictation (as at the 30-minute cap).
    let out = run(listen()
        .args(["--json", "--whole", "--duration", "4", "--input"])
        .arg(&file));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("duration reached"),
        "{}",
        stderr(&out)
    );
    let evs = events(&out);
    let commit = evs
        .iter()
        .find(|e| e["type"] == "commit")
        .expect("a commit");
    assert!(commit["end"].as_f64().unwrap() <= 4.0, "{commit}");
    let heard = normalize_words(&committed_text(&evs));
    assert!(heard.starts_with(&normalize_words("and so")), "{heard:?}");
}

#[test]
fn silence_and_noise_give_no_words() {
    let out = run(listen()
        .args(["--json", "-q", "--input"])
        .arg(audio("picovoice_noise_only.wav")));
    assert!(out.status.success());
    let ev = events(&out);
    assert!(
        ev.iter().all(|e| e["type"] != "commit"),
        "noise produced words: {ev:?}"
    );

    // 45 s of silence between two utterances (about 12.1 s to 57.1 s).
    let out = run(listen()
        .args(["--json", "-q", "--input"])
        .arg(audio("librivox_0870_gap45s_0890.wav")));
    assert!(out.status.success());
    let ev = events(&out);
    committed_text(&ev);
    for e in ev
        .iter()
        .filter(|e| e["type"] == "commit" || e["type"] == "partial")
    {
        let (s, t) = (e["start"].as_f64().unwrap(), e["end"].as_f64().unwrap());
        assert!(t <= 13.0 || s >= 56.5, "words inside the silence: {e}");
    }
    assert!(ev
        .iter()
        .any(|e| e["type"] == "commit" && e["start"].as_f64().unwrap() >= 56.5));
}

#[test]
fn output_file_gets_one_line_per_utterance_and_summary_goes_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "earlier line\n").unwrap();
    let out = run(listen()
        .arg("--output")
        .arg(&notes)
        .arg("--input")
        .arg(audio("jfk.flac")));
    assert!(out.status.success());
    let text = std::fs::read_to_string(&notes).unwrap();
    assert!(text.starts_with("earlier line\n"), "appends: {text}");
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert!(!lines.is_empty(), "one line per utterance: {text}");
    assert!(
        wer(&reference("jfk.flac"), &lines.join(" ")) <= 0.12,
        "{text}"
    );
    // Not a terminal: stdout gets the same utterances, one per line.
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), lines);
    let err = stderr(&out);
    assert!(err.contains("commit latency p50"), "{err}");
    assert!(err.contains("end of input"));
}

#[test]
fn bad_options_and_devices_give_clear_errors() {
    // The microphone is --mic, or -D as it always was.
    for flag in ["--mic", "-D"] {
        let out = run(listen().args([flag, "no-such-microphone-xyz"]));
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("no input device matches 'no-such-microphone-xyz'"),
            "{err}"
        );
        assert_eq!(
            err.lines().filter(|l| l.contains("error")).count(),
            1,
            "{err}"
        );
    }

    let out = run(listen().args(["--step", "0"]));
    assert_eq!(out.status.code(), Some(2));
    for context in ["-1", "26", "nan"] {
        let out = run(listen().arg(format!("--context={context}")));
        assert_eq!(out.status.code(), Some(2), "--context {context}");
        assert!(stderr(&out).contains("--context"), "{}", stderr(&out));
    }
    let out = run(listen().arg("--realtime"));
    assert_eq!(out.status.code(), Some(2), "--realtime needs --input");
    let out = run(listen().args(["--input", "/no/such/file.wav"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/no/such/file.wav"));
}

#[test]
fn no_input_device_at_all_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("asound.conf");
    std::fs::write(&empty, "").unwrap();
    let out = run(listen()
        .env("ALSA_CONFIG_PATH", &empty)
        .env_remove("PULSE_SERVER")
        .env_remove("XDG_RUNTIME_DIR"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no audio input device found"), "{err}");
}

/// Waits for `child` up to `limit`, killing it after.
fn wait_output(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "verbatim listen did not stop within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `listen` on the virtual microphone and waits until it captures (its stderr says so
/// only through the model load; give it a moment).
fn spawn_listen(pulse: &Pulse, args: &[&str]) -> Child {
    let mut cmd = listen();
    pulse.env(&mut cmd);
    let child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Model load and stream start.
    std::thread::sleep(Duration::from_millis(2500));
    child
}

#[test]
fn microphone_capture_transcribes_jfk() {
    let pulse = Pulse::start();
    let dir = tempfile::tempdir().unwrap();
    let jfk = playable_jfk(dir.path());
    let child = spawn_listen(&pulse, &["--json", "--duration", "16"]);
    let mut player = pulse.play(&jfk);
    let out = wait_output(child, Duration::from_secs(90));
    let _ = player.wait();
    eprintln!("{}", stderr(&out));
    assert!(out.status.success());
    let heard = committed_text(&events(&out));
    let reference = normalize_words(&reference("jfk.flac"));
    let errors = word_errors(&reference, &normalize_words(&heard));
    // Two: tiny.en reads the opening "my" as "am I" in some alignments of live audio
    // (docs/listen.md); three of today's CI runs hit it. Accuracy is the replay test's job.
    assert!(errors <= 2, "{errors} words wrong: {heard:?}");
    assert!(stderr(&out).contains("dropped audio 0.00 s"));
}

#[test]
fn once_stops_after_the_first_utterance() {
    let pulse = Pulse::start();
    let dir = tempfile::tempdir().unwrap();
    let jfk = playable_jfk(dir.path());
    let child = spawn_listen(&pulse, &["--once", "-q", "--endpoint", "0.5"]);
    let mut player = pulse.play(&jfk);
    let out = wait_output(child, Duration::from_secs(60));
    let _ = player.kill();
    let _ = player.wait();
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    // The first utterance and nothing after it. tiny.en reads its "my" as "am I" in some
    // alignments of live audio (docs/listen.md); that is accuracy, measured by the replay
    // test, not what `--once` is about.
    let words = normalize_words(&text);
    assert!(words.starts_with(&normalize_words("and so")), "{text}");
    let fellow = normalize_words("fellow americans");
    assert!(words.windows(2).any(|w| w == fellow.as_slice()), "{text}");
}

#[test]
fn vanishing_device_keeps_committed_text() {
    let pulse = Pulse::start();
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    let mut cmd = listen();
    pulse.env(&mut cmd);
    let mut child = cmd
        .arg("--output")
        .arg(&notes)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let mut player = pulse.play(&playable_jfk(dir.path()));
    // "And so my fellow Americans" has been said and followed by a pause after ~4 s.
    std::thread::sleep(Duration::from_secs(6));
    pulse.kill();
    let _ = player.kill();
    let _ = player.wait();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "listen hangs after its device vanished"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    eprintln!("{err}");
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("stopped"), "{err}");
    assert!(err.contains("committed text was kept"), "{err}");
    let kept = std::fs::read_to_string(&notes).unwrap();
    assert!(
        normalize_words(&kept).contains(&"americans".to_string()),
        "committed text lost: {kept:?}"
    );
}

/// A dictated letter with spoken punctuation and no pauses for written punctuation (espeak-ng's
/// voice: no recording here says "question mark" out loud), as a WAV for the virtual microphone.
fn spoken_letter(dir: &Path) -> Option<std::path::PathBuf> {
    let wav = dir.join("letter.wav");
    let made = Command::new("espeak-ng")
        // 120 words a minute, and "full stop" to close: live tiny.en heard a closing
        // "exclamation mark" as "next, clamation mark" and "next mark" (CI, 2026-12-04).
        .args(["-v", "en-us", "-s", "120", "-g", "4", "-w"])
        .arg(&wav)
        .arg(
            "Dear Anna thank you for the letter full stop new paragraph are you coming on Sunday \
             question mark new line see you soon full stop",
        )
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        prerequisite_missing("espeak-ng (apt-get install espeak-ng)");
        return None;
    }
    Some(wav)
}

#[test]
fn spoken_punctuation_and_replacements_from_the_microphone() {
    let dir = tempfile::tempdir().unwrap();
    let Some(letter) = spoken_letter(dir.path()) else {
        return;
    };
    let rules = dir.path().join("replacements.txt");
    std::fs::write(&rules, "# days\nsunday => Sonntag\n").unwrap();
    let notes = dir.path().join("notes.txt");
    let pulse = Pulse::start();
    let rules_arg = rules.to_str().unwrap();
    let notes_arg = notes.to_str().unwrap();
    let child = spawn_listen(
        &pulse,
        &[
            "--json",
            "--duration",
            "20",
            "--spoken-punctuation",
            "--replacements",
            rules_arg,
            "--output",
            notes_arg,
        ],
    );
    let mut player = pulse.play(&letter);
    let out = wait_output(child, Duration::from_secs(120));
    let _ = player.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    let events = events(&out);
    let utterances: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "utterance_end")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    let text = utterances.join(" ");
    // The commands became punctuation and line breaks, the replacement applied, and none of the
    // spoken command words is left. What whisper reads between the commands is not checked:
    // its reading of the synthetic voice varies ("Fear and a thank you for the leather." for
    // "Dear Anna thank you for the letter", 1 run in 15 on 2026-12-05), and so do its own
    // capitals ("See you Soon!"); the capitals the commands make are checked.
    let lower = text.to_lowercase();
    let (first, rest) = lower.split_once("\n\n").unwrap_or(("", ""));
    // "full stop" and "new paragraph"
    assert!(
        first.split_whitespace().count() >= 3 && first.ends_with('.'),
        "{text:?}"
    );
    // the replacement, "question mark" and "new line", then "full stop" at the end. Whisper
    // may read a word of its own after the replacement: "Sunday question mark" was read "Sunday?
    // A question mark." (3 runs in 12 on a slow host, 2026-12-06), typed "Sonntag? A?".
    let (question, last) = rest.split_once("?\n").unwrap_or(("", ""));
    assert!(
        question.split_whitespace().count() >= 3
            && question.contains("sonntag")
            && last.trim_end().ends_with('.'),
        "{text:?}"
    );
    let capital_after = |sep: &str| {
        text.split_once(sep)
            .and_then(|(_, after)| after.chars().next())
            .is_some_and(char::is_uppercase)
    };
    assert!(capital_after("\n\n") && capital_after("?\n"), "{text:?}");
    for word in [
        "period",
        "paragraph",
        "question",
        "mark",
        "line",
        "full",
        "stop",
    ] {
        assert!(
            !normalize_words(&text).contains(&word.to_string()),
            "{text:?}"
        );
    }
    // The commits, joined as the typing does, are the utterances; the file has each of them.
    let mut typed = String::new();
    for e in events.iter().filter(|e| e["type"] == "commit") {
        let piece = e["text"].as_str().unwrap();
        typed.push_str(verbatim::listen::spoken::separator(&typed, piece));
        typed.push_str(piece);
    }
    assert_eq!(typed, text);
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        format!("{text}\n")
    );
}

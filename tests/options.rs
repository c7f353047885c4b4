//! The options that transcribe, subtitle, listen and serve share are declared once: each has the
//! same help text, heading and default in every command that has it, bad values are the same
//! usage error everywhere, and the same flags give transcribe and subtitle the same decoding
//! settings. A command that cannot honour an option does not list it.

mod common;

use std::collections::BTreeMap;

use common::*;

const COMMANDS: [&str; 4] = ["transcribe", "subtitle", "listen", "serve"];

/// Which commands have each shared option (the rest must not list it).
const SHARED: [(&str, &[&str]); 17] = [
    ("--model", &COMMANDS),
    ("--vad-model", &COMMANDS),
    ("--offline", &COMMANDS),
    ("--vad-threshold", &COMMANDS),
    ("--threads", &COMMANDS),
    ("--beam-size", &COMMANDS),
    ("--no-guard", &COMMANDS),
    ("--device", &COMMANDS),
    ("--strict", &COMMANDS),
    // listen cannot run without the VAD: it finds utterances with it.
    ("--no-vad", &["transcribe", "subtitle", "serve"]),
    // serve takes these from each request, as OpenAI's API does.
    ("--language", &["transcribe", "subtitle", "listen"]),
    ("--prompt", &["transcribe", "subtitle", "listen"]),
    ("--translate", &["transcribe", "subtitle"]),
    ("--temperature", &["transcribe", "subtitle"]),
    // listen never retries a step at a higher temperature.
    ("--best-of", &["transcribe", "subtitle", "serve"]),
    (
        "--temperature-increment",
        &["transcribe", "subtitle", "serve"],
    ),
    ("--no-fallback", &["transcribe", "subtitle", "serve"]),
];

/// Each option's help entry in `verbatim COMMAND --help`, keyed by its long name: the heading
/// it is under, then its lines (flag line, description, default).
fn help_entries(command: &str) -> BTreeMap<String, String> {
    let out = run(verbatim().args([command, "--help"]));
    assert!(out.status.success(), "{command} --help");
    let help = stdout(&out);
    let mut entries = BTreeMap::new();
    let mut heading = String::new();
    let mut current: Option<(String, String)> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        // clap indents an option's first line by 2 (`  -t, --threads`) or 6 (`      --prompt`).
        let starts_option = trimmed.starts_with('-') && (indent == 2 || indent == 6);
        let is_heading = !line.starts_with(' ') && line.ends_with(':');
        if starts_option || is_heading {
            if let Some((name, text)) = current.take() {
                entries.insert(name, text.trim_end().to_string());
            }
        }
        if is_heading {
            heading = line.to_string();
        } else if starts_option {
            let name = trimmed
                .split([',', ' ', '='])
                .map(str::trim)
                .find(|w| w.starts_with("--"))
                .unwrap_or(trimmed)
                .to_string();
            current = Some((name, format!("{heading}\n{line}\n")));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((name, text)) = current {
        entries.insert(name, text.trim_end().to_string());
    }
    entries
}

#[test]
fn shared_options_have_one_help_text_heading_and_default_everywhere() {
    let helps: BTreeMap<&str, BTreeMap<String, String>> =
        COMMANDS.iter().map(|c| (*c, help_entries(c))).collect();
    for (option, commands) in SHARED {
        let mut first: Option<(&str, &String)> = None;
        for command in COMMANDS {
            let entry = helps[command].get(option);
            if !commands.contains(&command) {
                assert!(
                    entry.is_none(),
                    "`verbatim {command}` cannot honour {option} and must not list it:\n{}",
                    entry.unwrap()
                );
                continue;
            }
            let entry =
                entry.unwrap_or_else(|| panic!("`verbatim {command} --help` lacks {option}"));
            match first {
                None => first = Some((command, entry)),
                Some((other, text)) => assert_eq!(
                    entry, text,
                    "{option} reads differently in `{command} --help` and `{other} --help`"
                ),
            }
        }
    }
    // Each option says what it is for where the default needs a reason.
    let threads = &helps["listen"]["--threads"];
    assert!(
        threads.contains("CPU threads per transcription"),
        "{threads}"
    );
    let language = &helps["listen"]["--language"];
    assert!(language.contains("[default: auto]"), "{language}");
    // listen's microphone is --mic (-D); --device is where whisper runs, as everywhere.
    let mic = &helps["listen"]["--mic"];
    assert!(mic.contains("-D, --mic <NAME|INDEX>"), "{mic}");
    assert!(!helps["listen"].contains_key("--compute-device"));
}

#[test]
fn bad_values_of_shared_options_are_the_same_usage_error_in_every_command() {
    let cases: [(&[&str], &str); 6] = [
        (&["--threads", "0"], "--threads <N>"),
        (&["--beam-size", "9"], "--beam-size <N>"),
        (&["--vad-threshold", "1.5"], "--vad-threshold <P>"),
        (&["--device", "tpu"], "--device <auto|cpu|gpu|gpu:N>"),
        (&["--language", "xx"], "--language <LANG>"),
        (&["--temperature", "1.5"], "--temperature <T>"),
    ];
    for (args, flag) in cases {
        let mut first: Option<String> = None;
        for (option, commands) in SHARED {
            if option != args[0] {
                continue;
            }
            for command in commands.iter() {
                let mut cmd = verbatim();
                cmd.arg(command).args(args);
                if *command != "serve" && *command != "listen" {
                    cmd.arg(audio("jfk.flac"));
                }
                let out = run(&mut cmd);
                assert_eq!(out.status.code(), Some(2), "{command} {args:?}");
                let err = stderr(&out);
                let line = err
                    .lines()
                    .find(|l| l.starts_with("error:"))
                    .unwrap_or_default()
                    .to_string();
                assert!(line.contains(flag), "{command} {args:?}: {err}");
                match &first {
                    None => first = Some(line),
                    Some(f) => assert_eq!(&line, f, "{command} {args:?}"),
                }
            }
        }
        assert!(first.is_some(), "no command takes {args:?}");
    }
}

/// The `options` object of a JSON transcript.
fn options_of(json: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(json).unwrap_or_else(|e| panic!("{}: {e}", json.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["options"].clone()
}

#[test]
fn transcribe_and_subtitle_turn_the_same_flags_into_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    // (No --prompt or --temperature here: on clips this short either sends tiny.en into
    // minutes of repetition and fallback; their help text is checked above.)
    let flags = [
        "-l",
        "en",
        "-t",
        "2",
        "--beam-size",
        "2",
        "--best-of",
        "3",
        "--temperature-increment",
        "0.3",
        "--no-guard",
        "--vad-threshold",
        "0.4",
    ];
    let files = [
        audio("367-130732-0000.flac"),
        audio("1688-142285-0002.flac"),
    ];

    let out = run(transcribe()
        .args(flags)
        .args(["-w", "-f", "json", "-o"])
        .arg(dir.path().join("t"))
        .args(&files));
    assert!(out.status.success(), "{}", stderr(&out));

    // subtitle: -t is whisper threads per worker, as per transcription everywhere, and
    // without -j the cores are shared out: cores / 2 workers, at most one per file.
    let out = run(verbatim()
        .arg("subtitle")
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model())
        .args(flags)
        .args(["--json", "-o"])
        .arg(dir.path().join("s"))
        .args(&files));
    assert!(out.status.success(), "{}", stderr(&out));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = (cores / 2).clamp(1, files.len());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{workers} worker(s) x 2 thread(s)")),
        "{err}"
    );

    for stem in ["367-130732-0000", "1688-142285-0002"] {
        let t = options_of(&dir.path().join(format!("t/{stem}.json")));
        let s = options_of(&dir.path().join(format!("s/{stem}.json")));
        assert_eq!(t, s, "{stem}: transcribe and subtitle differ");
        assert_eq!(t["threads"], 2, "{t}");
        assert_eq!(t["beam_size"], 2, "{t}");
        assert_eq!(t["best_of"], 3, "{t}");
        assert_eq!(t["language"], "en", "{t}");
        assert_eq!(t["temperature_increment"], 0.3, "{t}");
        assert_eq!(t["hallucination_guard"], false, "{t}");
    }

    // subtitle now translates like transcribe; its language suffix would then lie.
    let out = run(verbatim()
        .args(["subtitle", "--translate", "--lang-suffix"])
        .arg(&files[0]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--translate"), "{}", stderr(&out));
}

//! Typing dictated text into a real X server: non-ASCII text through xdotool under two keyboard
//! layouts, and through the clipboard fallback, read back from the window and the clipboard.

mod common;

use std::process::Command;

use common::xvfb::Xvfb;
use common::*;
use serde_json::Value;

/// jfk's "country" and "Americans" become non-ASCII text, so the typed text carries it.
const REPLACEMENTS: &str =
    "country => país, 東京 – Grüße aus Zürich\namericans => Américains (ça va?)\n";

fn tools_present() -> bool {
    let missing: Vec<&str> = ["Xvfb", "xev", "xdotool", "xclip", "setxkbmap"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    prerequisite_missing(&format!(
        "{} (apt-get install xvfb x11-utils x11-xkb-utils xdotool xclip)",
        missing.join(", ")
    ));
    false
}

/// `verbatim listen` replaying jfk with the replacements, typing into `x`'s display with the
/// detected backend or the one named.
fn dictate(
    x: &Xvfb,
    dir: &std::path::Path,
    backend: Option<&str>,
    extra: &[&str],
) -> std::process::Output {
    let rules = dir.join("replacements.txt");
    std::fs::write(&rules, REPLACEMENTS).unwrap();
    let mut cmd = verbatim();
    x.env(&mut cmd)
        .args(["listen", "--type", "--input"])
        .arg(audio("jfk.flac"))
        .arg("--model")
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model())
        .arg("--replacements")
        .arg(&rules)
        .args(extra);
    match backend {
        Some(b) => cmd.env("VERBATIM_TYPE_BACKEND", b),
        None => cmd.env_remove("VERBATIM_TYPE_BACKEND"),
    };
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

#[test]
fn non_ascii_text_is_typed_exactly_under_two_keyboard_layouts() {
    if !tools_present() {
        return;
    }
    let x = Xvfb::start().expect("Xvfb");
    let dir = tempfile::tempdir().unwrap();
    for layout in ["us", "de"] {
        x.layout(layout);
        let keys = x.recorder();
        let out = dictate(&x, dir.path(), None, &[]);
        let typed = keys.text();
        let err = stderr(&out);
        assert!(err.contains("typing with xdotool"), "{err}");
        // What was typed is what was printed: the utterances, joined by spaces.
        let printed = stdout(&out).lines().collect::<Vec<_>>().join(" ");
        assert_eq!(typed, printed, "layout {layout}; stderr:\n{err}");
        assert!(typed.contains("Américains (ça va?)"), "{layout}: {typed:?}");
        assert!(
            typed.contains("país, 東京 – Grüße aus Zürich"),
            "{layout}: {typed:?}"
        );
    }
}

#[test]
fn the_clipboard_fallback_holds_the_last_non_ascii_commit() {
    if !tools_present() {
        return;
    }
    let x = Xvfb::start().expect("Xvfb");
    let dir = tempfile::tempdir().unwrap();
    let out = dictate(&x, dir.path(), Some("xclip"), &["--json"]);
    let last = stdout(&out)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["type"] == "commit")
        .expect("a commit")["text"]
        .as_str()
        .unwrap()
        .to_string();
    let clip = x.clipboard();
    assert_eq!(clip.trim_start(), last);
    assert!(clip.contains("東京 – Grüße aus Zürich"), "{clip:?}");
}

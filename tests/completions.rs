//! Shell completions and man pages come from the same clap definitions as `--help`.

mod common;

use common::{run, stderr, stdout, verbatim};

const SUBCOMMANDS: [&str; 6] = ["transcribe", "listen", "subtitle", "models", "serve", "man"];

#[test]
fn completions_for_every_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = run(verbatim().args(["completions", shell]));
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.len() > 1000, "{shell}: completions too short");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completions lack `{sub}`");
        }
        // Flags of subcommands too.
        assert!(script.contains("max-upload-mb"), "{shell}: no serve flags");
        assert!(
            script.contains("word-timestamps"),
            "{shell}: no transcribe flags"
        );
    }
    let out = run(verbatim().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2), "unknown shell is a usage error");
}

#[test]
fn man_page_is_roff_and_matches_help() {
    let out = run(verbatim().arg("man"));
    assert!(out.status.success());
    let page = stdout(&out);
    assert!(
        page.contains(".TH verbatim 1"),
        "no .TH: {}",
        &page[..page.len().min(300)]
    );
    assert!(page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"));
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "man page lacks `{sub}`");
    }
    // The same about text as --help.
    let help = stdout(&run(verbatim().arg("--help")));
    let about = help.lines().next().unwrap();
    assert!(page.contains(&about.replace('-', "\\-")), "{about}");

    let dir = tempfile::tempdir().unwrap();
    let out = run(verbatim().arg("man").arg("--dir").arg(dir.path()));
    assert!(out.status.success());
    for name in [
        "verbatim.1",
        "verbatim-transcribe.1",
        "verbatim-serve.1",
        "verbatim-models.1",
    ] {
        let p = dir.path().join(name);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("no {name}"));
        assert!(text.contains(".TH"), "{name}");
    }
    let serve = std::fs::read_to_string(dir.path().join("verbatim-serve.1")).unwrap();
    assert!(serve.contains("api\\-key"), "serve page lacks --api-key");
}

#[test]
fn color_flag_and_no_color() {
    // A bad value is a usage error naming the choices.
    let out = run(verbatim().args(["--color", "sometimes", "models", "list"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("always"));
    // Forced colours colour clap's errors even into a pipe; never and NO_COLOR do not.
    let out = run(verbatim().args(["--color", "always", "transcribe"]));
    assert!(
        stderr(&out).contains("\x1b["),
        "no colour with --color always"
    );
    let out = run(verbatim().args(["--color=never", "transcribe"]));
    assert!(!stderr(&out).contains("\x1b["));
    let out = run(verbatim().env("NO_COLOR", "1").args(["transcribe"]));
    assert!(!stderr(&out).contains("\x1b["));
    // Global: accepted after the subcommand too.
    let out = run(verbatim().args(["completions", "bash", "--color", "never"]));
    assert!(out.status.success(), "{}", stderr(&out));
}

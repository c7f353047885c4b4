//! Score a hypothesis RTTM against a reference RTTM.
//!
//! ```text
//! cargo run -p verbatim-diarize --release --example der -- REF.rttm HYP.rttm [--collar 0.25] [--skip-overlap]
//! ```
//!
//! `--collar` is the forgiveness collar on each side of every reference boundary (md-eval's
//! `-c`; pyannote.metrics' `collar` is twice this). Files with several file ids are scored
//! per file id and summed. Prints one JSON line: the DER (a fraction), its components in
//! seconds and the speaker mapping as `[file, hypothesis, reference]` triples.

use diarize::der::{score, DerOptions, DerReport};
use diarize::rttm;
use std::collections::BTreeSet;
use std::process::ExitCode;

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn run() -> Result<String, String> {
    let mut paths = Vec::new();
    let mut opts = DerOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--collar" => {
                let v = args.next().ok_or("--collar needs a value")?;
                opts.collar = v
                    .parse()
                    .ok()
                    .filter(|c: &f64| c.is_finite() && *c >= 0.0)
                    .ok_or(format!("bad --collar {v:?}"))?;
            }
            "--skip-overlap" => opts.skip_overlap = true,
            "-h" | "--help" => {
                return Err(
                    "usage: der REF.rttm HYP.rttm [--collar SECONDS] [--skip-overlap]".into(),
                )
            }
            _ => paths.push(a),
        }
    }
    if paths.len() != 2 {
        return Err("usage: der REF.rttm HYP.rttm [--collar SECONDS] [--skip-overlap]".into());
    }
    let read = |p: &str| -> Result<_, String> {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?;
        rttm::parse_by_file(&text).map_err(|e| format!("{p}: {e}"))
    };
    let reference = read(&paths[0])?;
    let hypothesis = read(&paths[1])?;
    let files: BTreeSet<&String> = reference.keys().chain(hypothesis.keys()).collect();
    let mut total = DerReport::default();
    let mut mapping = Vec::new();
    for f in &files {
        let r = reference.get(*f).map_or(&[][..], |v| v.as_slice());
        let h = hypothesis.get(*f).map_or(&[][..], |v| v.as_slice());
        let rep = score(r, h, &opts);
        for (hyp, refr) in &rep.mapping {
            mapping.push(format!(
                "[{},{},{}]",
                json_str(f),
                json_str(hyp),
                json_str(refr)
            ));
        }
        total.add(&rep);
    }
    Ok(format!(
        "{{\"der\":{},\"missed\":{},\"false_alarm\":{},\"confusion\":{},\"correct\":{},\"total\":{},\"collar\":{},\"skip_overlap\":{},\"files\":{},\"mapping\":[{}]}}",
        total.der(),
        total.missed,
        total.false_alarm,
        total.confusion,
        total.correct,
        total.total,
        opts.collar,
        opts.skip_overlap,
        files.len(),
        mapping.join(",")
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

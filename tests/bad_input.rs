//! The bad-input corpus: every broken input fails with exit code 1, exactly one
//! `verbatim: error: <path>: <reason>` line on stderr, no panic, and no output file; inputs
//! that are merely unusual (NaN samples, odd WAV encodings, many channels, other rates, Opus
//! through ffmpeg) transcribe. The bad files are generated in temporary directories.
//!
//! Needs `sox` and `ffmpeg` on PATH (CI installs both); a missing tool fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use tempfile::TempDir;
use verbatim::audio::{self, InputSource};

/// The speech file every variant is made from, and its reference transcript.
const SPEECH: &str = "1221-135766-0002.wav";

fn tempdir() -> TempDir {
    tempfile::tempdir().expect("cannot create temp dir")
}

/// Runs an external tool (sox, ffmpeg) and fails loudly if it is missing or fails.
fn tool(program: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("MISSING TOOL: cannot run `{program}` ({e}); install it (CI installs sox and ffmpeg)"));
    assert!(
        out.status.success(),
        "`{program} {:?}` failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sox <speech> <output options> <out> <effects>`.
fn sox_with(out: &Path, options: &[&str], effects: &[&str]) {
    let speech = audio(SPEECH);
    let mut args: Vec<&std::ffi::OsStr> = vec![speech.as_os_str()];
    args.extend(options.iter().map(std::ffi::OsStr::new));
    args.push(out.as_os_str());
    args.extend(effects.iter().map(std::ffi::OsStr::new));
    tool("sox", &args);
}

/// `sox <speech> <output options> <out>`.
fn sox(out: &Path, options: &[&str]) {
    sox_with(out, options, &[]);
}

/// `ffmpeg -i <input> <extra args> <out>`.
fn ffmpeg(input: &Path, extra: &[&str], out: &Path) {
    let mut args: Vec<&std::ffi::OsStr> =
        ["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"]
            .iter()
            .map(std::ffi::OsStr::new)
            .collect();
    args.push(input.as_os_str());
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.push(out.as_os_str());
    tool("ffmpeg", &args);
}

/// A WAV file as `ffmpeg ... -f wav -` writes it to a pipe: RIFF and data lengths 2^32-1.
fn streamed_wav(out: &Path) {
    let piped = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(audio(SPEECH))
        .args(["-c:a", "pcm_s16le", "-f", "wav", "-"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("MISSING TOOL: cannot run `ffmpeg` ({e})"));
    assert!(piped.status.success());
    let data = piped.stdout;
    assert_eq!(
        &data[4..8],
        &[0xff; 4],
        "ffmpeg no longer writes an unknown RIFF length to pipes"
    );
    std::fs::write(out, data).unwrap();
}

/// A canonical 44-byte-header WAV with the given fields and payload.
fn wav_bytes(
    format_tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    data_len: u32,
    payload: &[u8],
) -> Vec<u8> {
    let block_align = channels * bits.div_ceil(8);
    let mut v = Vec::with_capacity(44 + payload.len());
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&format_tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    v.extend_from_slice(&block_align.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// The reference speech as f32 samples in [-1, 1) (16 kHz mono).
fn speech_samples() -> Vec<f32> {
    let mut reader = hound::WavReader::open(audio(SPEECH)).unwrap();
    assert_eq!(reader.spec().bits_per_sample, 16);
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect()
}

/// `verbatim transcribe` (tiny.en, VAD, --quiet) writing txt, srt and json to `out`.
fn transcribe_to(out: &Path, inputs: &[&Path]) -> Output {
    let mut cmd = transcribe();
    cmd.args(["-f", "txt,srt,json", "-o"]).arg(out).args(inputs);
    run(&mut cmd)
}

/// Asserts the common contract of a failed run: exit `code`, exactly one error line on
/// stderr that names `path` and contains every one of `reason_words` (case-insensitive),
/// no panic, nothing written to `out`.
fn assert_one_error(
    out_dir: &Path,
    output: &Output,
    code: i32,
    path: &Path,
    reason_words: &[&str],
) -> String {
    let err = stderr(output);
    assert!(!err.contains("panicked"), "verbatim panicked:\n{err}");
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit code; stderr:\n{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stderr must be exactly one line, got:\n{err}"
    );
    let line = lines[0];
    assert!(
        line.starts_with("verbatim: error: "),
        "not an error line: {line}"
    );
    let shown = path.display().to_string();
    assert!(line.contains(&shown), "error does not name {shown}: {line}");
    let lower = line.to_lowercase();
    for word in reason_words {
        assert!(
            lower.contains(&word.to_lowercase()),
            "error lacks `{word}`: {line}"
        );
    }
    assert_eq!(
        files_in(out_dir),
        Vec::<String>::new(),
        "output files were left behind"
    );
    line.to_string()
}

/// Runs one bad input through the CLI and checks the contract.
fn check_bad_input(input: &Path, reason_words: &[&str]) -> String {
    let out_tmp = tempdir();
    let out_dir = out_tmp.path().join("out");
    let output = transcribe_to(&out_dir, &[input]);
    assert_one_error(&out_dir, &output, 1, input, reason_words)
}

#[test]
fn missing_input_file() {
    let dir = tempdir();
    check_bad_input(&dir.path().join("does-not-exist.wav"), &["no such file"]);
}

#[test]
fn missing_input_leaves_no_output_directory() {
    let dir = tempdir();
    let out_dir = dir.path().join("out");
    let input = dir.path().join("does-not-exist.wav");
    let output = transcribe_to(&out_dir, &[&input]);
    assert_one_error(&out_dir, &output, 1, &input, &["no such file"]);
    assert!(
        !out_dir.exists(),
        "-o directory created for a missing input"
    );
}

#[test]
fn dash_as_output_directory_is_a_usage_error() {
    let dir = tempdir();
    let input = audio(SPEECH);
    let mut cmd = transcribe();
    cmd.current_dir(dir.path())
        .args(["-f", "txt", "-o", "-"])
        .arg(&input);
    let output = run(&mut cmd);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "exit code; stderr:\n{err}");
    assert!(
        err.starts_with("verbatim: error: ") && err.contains("directory") && err.contains("stdout"),
        "unclear error: {err}"
    );
    assert!(
        !dir.path().join("-").exists(),
        "a directory named - was made"
    );
}

#[test]
fn directory_as_input() {
    let dir = tempdir();
    let sub = dir.path().join("a-directory.wav");
    std::fs::create_dir(&sub).unwrap();
    check_bad_input(&sub, &["directory"]);
}

#[test]
fn zero_length_file() {
    let dir = tempdir();
    let path = dir.path().join("empty.wav");
    std::fs::write(&path, b"").unwrap();
    check_bad_input(&path, &["empty", "0 bytes"]);
}

#[test]
fn truncated_wav_header() {
    let dir = tempdir();
    let path = dir.path().join("truncated.wav");
    let real = std::fs::read(audio(SPEECH)).unwrap();
    std::fs::write(&path, &real[..20]).unwrap();
    check_bad_input(&path, &["truncated", "header"]);
}

#[test]
fn random_bytes_named_wav_and_mp3() {
    let dir = tempdir();
    for (ext, seed) in [("wav", 1u64), ("mp3", 2)] {
        let path = dir.path().join(format!("noise.{ext}"));
        std::fs::write(&path, Rng::new(seed).bytes(64 * 1024)).unwrap();
        let line = check_bad_input(&path, &[]);
        let lower = line.to_lowercase();
        assert!(
            lower.contains("corrupt") || lower.contains("not a recognised"),
            "random bytes ({ext}) should be reported as corrupt or unrecognised: {line}"
        );
    }
}

#[test]
fn wav_header_claiming_4_gb() {
    let dir = tempdir();
    let path = dir.path().join("huge-claim.wav");
    let one_second = vec![0u8; 16_000 * 2];
    std::fs::write(&path, wav_bytes(1, 1, 16_000, 16, 0xFFFF_FFF0, &one_second)).unwrap();
    check_bad_input(&path, &["claims", "truncated or corrupt"]);
}

#[test]
fn wav_with_zero_channels() {
    let dir = tempdir();
    let path = dir.path().join("zero-channels.wav");
    let payload = vec![0u8; 16_000 * 2];
    let mut bytes = wav_bytes(1, 1, 16_000, 16, payload.len() as u32, &payload);
    bytes[22..24].copy_from_slice(&0u16.to_le_bytes()); // channels
    bytes[32..34].copy_from_slice(&0u16.to_le_bytes()); // block align
    bytes[28..32].copy_from_slice(&0u32.to_le_bytes()); // byte rate
    std::fs::write(&path, bytes).unwrap();
    check_bad_input(&path, &["zero channels"]);
}

/// A WAVE_FORMAT_EXTENSIBLE header declaring 102 channels, behind one junk byte (so it is
/// not taken for a WAV and goes to the probing decoder, symphonia), made symphonia 0.5 panic
/// ("attempt to shift left with overflow" in `fix_channel_mask`, in debug builds), which
/// aborted the whole run with exit code 101 and a backtrace.
#[test]
fn header_that_crashed_the_decoder_is_a_clean_error() {
    let dir = tempdir();
    let ext = dir.path().join("ext.wav");
    sox(&ext, &["-b", "24", "-c", "3"]);
    let mut bytes = std::fs::read(&ext).unwrap();
    assert_eq!(
        &bytes[20..22],
        &0xFFFEu16.to_le_bytes(),
        "sox no longer writes WAVE_FORMAT_EXTENSIBLE"
    );
    bytes[22..24].copy_from_slice(&102u16.to_le_bytes());
    bytes.insert(0, 0);
    let path = dir.path().join("crafted.mp3");
    std::fs::write(&path, &bytes).unwrap();
    check_bad_input(&path, &["corrupt"]);
    // And as a WAV (hound rejects the header, then the fallback decoders are tried).
    let path = dir.path().join("crafted.wav");
    std::fs::write(&path, &bytes[1..]).unwrap();
    check_bad_input(&path, &["invalid WAV header"]);
}

#[test]
fn float_wav_with_nan_and_infinity_transcribes_with_a_warning() {
    let dir = tempdir();
    let path = dir.path().join("nan-speech.wav");
    let mut samples = speech_samples();
    let mut poisoned = 0;
    for i in (0..samples.len()).step_by(997) {
        samples[i] = f32::NAN;
        poisoned += 1;
    }
    for (k, i) in (500..samples.len()).step_by(1999).enumerate() {
        samples[i] = if k % 2 == 0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        };
        poisoned += 1;
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for s in &samples {
        writer.write_sample(*s).unwrap();
    }
    writer.finalize().unwrap();

    let out_dir = dir.path().join("out");
    // Not --quiet: the warning is what is being tested.
    let mut cmd = transcribe_verbose();
    cmd.args(["-f", "txt,srt,json", "-o"])
        .arg(&out_dir)
        .arg(&path);
    let output = run(&mut cmd);
    let err = stderr(&output);
    assert!(!err.contains("panicked"), "verbatim panicked:\n{err}");
    assert_eq!(output.status.code(), Some(0), "stderr:\n{err}");
    assert!(
        !err.contains("verbatim: error:"),
        "unexpected error:\n{err}"
    );
    let warning = err
        .lines()
        .find(|l| l.starts_with("verbatim: warning: ") && l.contains("NaN"))
        .unwrap_or_else(|| panic!("no warning about NaN samples on stderr:\n{err}"));
    assert!(
        warning.contains(&path.display().to_string()),
        "warning does not name the file: {warning}"
    );
    assert!(
        warning.contains(&poisoned.to_string()),
        "warning does not count {poisoned} samples: {warning}"
    );
    assert_eq!(
        files_in(&out_dir),
        ["nan-speech.json", "nan-speech.srt", "nan-speech.txt"]
    );
    let text = std::fs::read_to_string(out_dir.join("nan-speech.txt")).unwrap();
    let w = wer(&reference(SPEECH), &text);
    assert!(w < 0.3, "WER {w:.2} on NaN-poisoned speech: {text}");
}

#[test]
fn opus_without_ffmpeg_fails_and_with_ffmpeg_transcribes() {
    let dir = tempdir();
    let opus = dir.path().join("jfk.opus");
    ffmpeg(&audio("jfk.flac"), &["-c:a", "libopus"], &opus);

    // VERBATIM_FFMPEG= (empty) disables the ffmpeg fallback.
    let out_dir = dir.path().join("out-no-ffmpeg");
    let mut cmd = transcribe();
    cmd.env("VERBATIM_FFMPEG", "")
        .args(["-f", "txt,srt,json", "-o"])
        .arg(&out_dir)
        .arg(&opus);
    let output = run(&mut cmd);
    assert_one_error(
        &out_dir,
        &output,
        1,
        &opus,
        &["opus", "not supported", "install ffmpeg"],
    );

    // With ffmpeg on PATH it decodes.
    let out_dir = dir.path().join("out");
    let output = transcribe_to(&out_dir, &[&opus]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr:\n{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).trim().is_empty(),
        "unexpected stderr:\n{}",
        stderr(&output)
    );
    assert_eq!(files_in(&out_dir), ["jfk.json", "jfk.srt", "jfk.txt"]);
    let text = std::fs::read_to_string(out_dir.join("jfk.txt")).unwrap();
    let words = normalize_words(&text).join(" ");
    assert!(
        words.contains("ask not what your country can do for you"),
        "JFK transcript: {text}"
    );
    let w = wer(&reference("jfk.flac"), &text);
    assert!(w < 0.3, "WER {w:.2}: {text}");
}

/// Runs the CLI with `model` and a good input; checks the one-line model error.
fn check_bad_model(model: &Path, reason_words: &[&str]) {
    let dir = tempdir();
    let out_dir = dir.path().join("out");
    let mut cmd = verbatim();
    cmd.arg("transcribe")
        .arg("--model")
        .arg(model)
        .arg("--vad-model")
        .arg(vad_model())
        .arg("--quiet")
        .args(["-f", "txt,srt,json", "-o"])
        .arg(&out_dir)
        .arg(audio(SPEECH));
    let output = run(&mut cmd);
    assert_one_error(&out_dir, &output, 1, model, reason_words);
}

#[test]
fn missing_model_file() {
    let dir = tempdir();
    check_bad_model(&dir.path().join("ggml-missing.bin"), &["not found"]);
}

#[test]
fn corrupt_model_files() {
    let dir = tempdir();
    let random = dir.path().join("ggml-random.bin");
    std::fs::write(&random, Rng::new(7).bytes(1 << 20)).unwrap();
    check_bad_model(&random, &["not a Whisper ggml model"]);

    // The first megabyte of a real model: right magic, truncated tensors.
    let truncated = dir.path().join("ggml-truncated.bin");
    let mut head = vec![0u8; 1 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open(tiny_en()).unwrap(), &mut head).unwrap();
    std::fs::write(&truncated, head).unwrap();
    check_bad_model(&truncated, &["not a Whisper ggml model"]);
}

#[test]
fn one_bad_input_among_good_ones_is_a_partial_failure() {
    let dir = tempdir();
    let good = dir.path().join("good.wav");
    std::fs::copy(audio(SPEECH), &good).unwrap();
    let bad = dir.path().join("bad.mp3");
    std::fs::write(&bad, Rng::new(3).bytes(32 * 1024)).unwrap();
    let out_dir = dir.path().join("out");

    let output = transcribe_to(&out_dir, &[&good, &bad]);
    let err = stderr(&output);
    assert!(!err.contains("panicked"), "verbatim panicked:\n{err}");
    assert_eq!(
        output.status.code(),
        Some(3),
        "a partial failure exits 3; stderr:\n{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    assert!(
        lines[0].starts_with("verbatim: error: ") && lines[0].contains(&bad.display().to_string())
    );
    assert!(!lines[0].contains("good.wav"), "{}", lines[0]);
    assert_eq!(files_in(&out_dir), ["good.json", "good.srt", "good.txt"]);
    let text = std::fs::read_to_string(out_dir.join("good.txt")).unwrap();
    assert!(wer(&reference(SPEECH), &text) < 0.3, "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("good.json")).unwrap()).unwrap();
    assert!(json.is_object());

    // The bad input first: same outcome.
    let out_dir = dir.path().join("out2");
    let output = transcribe_to(&out_dir, &[&bad, &good]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "stderr:\n{}",
        stderr(&output)
    );
    assert_eq!(files_in(&out_dir), ["good.json", "good.srt", "good.txt"]);
}

/// WAV variants made from the speech file: (name, how to make it).
fn wav_variants(dir: &Path) -> Vec<PathBuf> {
    let variants: &[(&str, &[&str])] = &[
        ("u8.wav", &["-b", "8"]),
        ("s24.wav", &["-b", "24"]),
        ("s32.wav", &["-e", "signed-integer", "-b", "32"]),
        ("f32.wav", &["-e", "floating-point", "-b", "32"]),
        ("ch3.wav", &["-c", "3"]),
        ("ch8.wav", &["-c", "8"]),
        ("r22050.wav", &["-r", "22050"]),
    ];
    let mut paths: Vec<PathBuf> = variants
        .iter()
        .map(|(name, args)| {
            let p = dir.join(name);
            sox(&p, args);
            p
        })
        .collect();
    let streamed = dir.join("streamed.wav");
    streamed_wav(&streamed);
    paths.push(streamed);
    paths
}

/// One run over every WAV variant (one model load): each must transcribe.
#[test]
fn wav_variants_transcribe() {
    let dir = tempdir();
    let mut inputs = wav_variants(dir.path());
    // RF64 (the 64-bit WAV header) is decoded through ffmpeg.
    let rf64 = dir.path().join("rf64.wav");
    ffmpeg(&audio(SPEECH), &["-rf64", "always"], &rf64);
    inputs.push(rf64);
    let out_dir = dir.path().join("out");
    let mut cmd = transcribe();
    cmd.args(["-f", "txt", "-o"]).arg(&out_dir).args(&inputs);
    let output = run(&mut cmd);
    let err = stderr(&output);
    assert!(!err.contains("panicked"), "verbatim panicked:\n{err}");
    assert!(err.trim().is_empty(), "unexpected stderr:\n{err}");
    assert_eq!(output.status.code(), Some(0), "stderr:\n{err}");
    let reference = reference(SPEECH);
    let mut failures = Vec::new();
    for input in &inputs {
        let txt = out_dir.join(input.with_extension("txt").file_name().unwrap());
        match std::fs::read_to_string(&txt) {
            Ok(text) => {
                let w = wer(&reference, &text);
                if w >= 0.3 {
                    failures.push(format!("{}: WER {w:.2}: {}", input.display(), text.trim()));
                }
            }
            Err(e) => failures.push(format!("{}: no transcript ({e})", txt.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "variants that failed:\n{}",
        failures.join("\n")
    );
}

/// Signal-to-noise ratio (dB) of `x` against `reference`, over the common length.
fn snr_db(reference: &[f32], x: &[f32]) -> f64 {
    let n = reference.len().min(x.len());
    let signal: f64 = reference[..n].iter().map(|&r| f64::from(r).powi(2)).sum();
    let noise: f64 = reference[..n]
        .iter()
        .zip(&x[..n])
        .map(|(&r, &s)| (f64::from(r) - f64::from(s)).powi(2))
        .sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}

/// The decoder gives the same 16 kHz mono audio for every encoding of the same speech,
/// without ffmpeg: PCM of all widths, float, many channels, another rate, a streamed header,
/// and the WAV codecs symphonia decodes (A-law, u-law, ADPCM, 64-bit float). Fast (no model).
#[test]
fn wav_variants_decode_to_the_same_audio_without_ffmpeg() {
    let dir = tempdir();
    let mut inputs = wav_variants(dir.path());
    for (name, args) in [
        ("f64.wav", &["-e", "floating-point", "-b", "64"][..]),
        ("ulaw.wav", &["-e", "u-law"][..]),
        ("alaw.wav", &["-e", "a-law"][..]),
        ("ima-adpcm.wav", &["-e", "ima-adpcm"][..]),
        ("ms-adpcm.wav", &["-e", "ms-adpcm"][..]),
    ] {
        let p = dir.path().join(name);
        sox(&p, args);
        inputs.push(p);
    }
    let reference = speech_samples();
    // The library reads VERBATIM_FFMPEG itself; CLI tests in this binary clear it for their
    // child processes, so this does not leak into them.
    std::env::set_var("VERBATIM_FFMPEG", "");
    let mut failures = Vec::new();
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        // Minimum SNR against the 16-bit original, and how many samples longer than it the
        // decoded audio may be (ADPCM pads its last block).
        let (min_snr, max_extra) = match name.as_str() {
            // 8-bit with sox's dither: about 18 dB on this quiet recording.
            "u8.wav" => (15.0, 0),
            "ulaw.wav" | "alaw.wav" => (25.0, 0),
            "ima-adpcm.wav" | "ms-adpcm.wav" => (12.0, 2048),
            // Resampled twice (sox up to 22.05 kHz, verbatim back down). The resampler delays
            // 44.1 kHz-family input by half an input sample (see tests/resample.rs), which
            // alone costs this comparison ~7 dB of SNR; a wrong rate or garbage is below 0.
            "r22050.wav" => (5.0, 0),
            _ => (60.0, 0), // lossless
        };
        let from_file = audio::load(&InputSource::Path(input.clone()), false);
        let from_stdin = audio::load(
            &InputSource::Bytes {
                name: "-".into(),
                data: std::fs::read(input).unwrap(),
            },
            false,
        );
        for (how, loaded) in [("file", from_file), ("bytes", from_stdin)] {
            match loaded {
                Ok(prepared) => {
                    assert_eq!(prepared.streams.len(), 1);
                    let got = &prepared.streams[0];
                    let snr = snr_db(&reference, got);
                    eprintln!(
                        "{name} ({how}): {} samples, codec {}, SNR {snr:.1} dB",
                        got.len(),
                        prepared.codec
                    );
                    if got.len() + 64 < reference.len()
                        || got.len() > reference.len() + 64 + max_extra
                    {
                        failures.push(format!(
                            "{name} ({how}): {} samples, expected {}",
                            got.len(),
                            reference.len()
                        ));
                    }
                    if snr < min_snr {
                        failures.push(format!("{name} ({how}): SNR {snr:.1} dB < {min_snr} dB"));
                    }
                }
                Err(e) => failures.push(format!("{name} ({how}): {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "variants that did not decode correctly:\n{}",
        failures.join("\n")
    );

    // Without ffmpeg, RF64 is a one-line error that says what to install.
    let rf64 = dir.path().join("rf64.wav");
    ffmpeg(&audio(SPEECH), &["-rf64", "always"], &rf64);
    assert_eq!(&std::fs::read(&rf64).unwrap()[..4], b"RF64");
    let err = audio::decode_path(&rf64, false)
        .expect_err("RF64 decoded without ffmpeg")
        .to_string();
    assert!(!err.contains('\n'), "{err:?}");
    assert!(
        err.contains("RF64") && err.contains("install ffmpeg"),
        "{err}"
    );
}

/// Corrupted headers of several WAV encodings, decoded in-process: the decoder returns a
/// one-line error or audio, and never panics or hangs.
#[test]
fn mutated_wav_headers_never_panic() {
    let dir = tempdir();
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, args) in [
        ("pcm16.wav", &["-b", "16"][..]),
        ("f32.wav", &["-e", "floating-point", "-b", "32"][..]),
        ("s24-3ch.wav", &["-b", "24", "-c", "3"][..]),
        ("ulaw.wav", &["-e", "u-law"][..]),
        ("ima-adpcm.wav", &["-e", "ima-adpcm"][..]),
        ("ms-adpcm.wav", &["-e", "ms-adpcm"][..]),
    ] {
        // 0.2 s is plenty for header fuzzing.
        let p = dir.path().join(name);
        sox_with(&p, args, &["trim", "0", "0.2"]);
        seeds.push((name.to_string(), std::fs::read(&p).unwrap()));
    }
    std::env::set_var("VERBATIM_FFMPEG", "");
    let mut rng = Rng::new(0xbad_f00d);
    let (mut errors, mut decoded_ok) = (0, 0);
    for (name, seed) in &seeds {
        let header_len = seed.len().min(96);
        for round in 0..400 {
            let mut data = seed.clone();
            for _ in 0..1 + rng.below(4) {
                let pos = rng.below(header_len);
                data[pos] = match rng.below(4) {
                    0 => 0,
                    1 => 0xff,
                    2 => data[pos] ^ (1 << rng.below(8)),
                    _ => rng.next_u64() as u8,
                };
            }
            if rng.below(8) == 0 {
                data.truncate(rng.below(data.len()) + 1);
            }
            let result = std::panic::catch_unwind(|| audio::decode_bytes("-", &data, false));
            match result {
                Err(_) => panic!(
                    "decode_bytes panicked on {name}, round {round}; header: {:02x?}",
                    &data[..data.len().min(header_len)]
                ),
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    errors += 1;
                    assert!(
                        !msg.contains('\n'),
                        "multi-line error for {name}, round {round}: {msg:?}"
                    );
                    assert!(
                        msg.starts_with("-: "),
                        "error does not name the input: {msg}"
                    );
                }
                Ok(Ok(decoded)) => {
                    decoded_ok += 1;
                    assert!(!decoded.channels.is_empty() && decoded.sample_rate > 0);
                    assert!(decoded.channels.iter().flatten().all(|s| s.is_finite()));
                }
            }
        }
    }
    eprintln!("mutated headers: {decoded_ok} decoded, {errors} rejected");
}

/// The library's errors keep their cause: a program can tell a missing file from a
/// permission problem by the `std::io::Error` underneath, not by parsing the message.
#[test]
fn errors_keep_their_source() {
    use std::error::Error as _;
    let dir = tempdir();
    let missing = dir.path().join("gone.flac");
    let err = audio::decode::decode_path(&missing, false).unwrap_err();
    assert!(
        matches!(err, verbatim::Error::Input { .. }),
        "not an input error: {err}"
    );
    let io = err
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("no io::Error under `{err}`"));
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("gone.flac"), "{err}");
}

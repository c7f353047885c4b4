//! Issue 23's hostile audio and option rows, against the binary this test run built (run
//! `cargo test --release --test hostile_input` for the build users install; CI does): forged
//! sample rates (S3, S4), RIFF pad bytes (A1), truncated compressed files (A2), float files
//! at integer scale (A4), out-of-range options (O2, O4), endless config and registry files
//! (O5), FIFOs, non-UTF-8 list lines, NFD subtitle text and escape bytes in a registry (O6),
//! and a prompt of 45,000 characters without a space (S2). Containers are also mutated at
//! random for a fixed number of cases through the library's decoders.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tempfile::TempDir;

/// A 16 kHz 16-bit mono LibriSpeech utterance (10.4 s).
const SPEECH: &str = "1221-135766-0002.wav";

fn tempdir() -> TempDir {
    tempfile::tempdir().expect("cannot create temp dir")
}

/// Runs ffmpeg and fails loudly if it is missing or fails.
fn ffmpeg(args: &[&std::ffi::OsStr]) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("MISSING TOOL: cannot run `ffmpeg` ({e}); CI installs it"));
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd`, polling the child's peak memory (VmHWM) until it exits or `limit` passes
/// (then it is killed and the test fails). Returns the output, the peak in MB and the time.
fn run_measured(cmd: &mut Command, limit: Duration) -> (Output, u64, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run verbatim");
    let mut peak_kb = 0u64;
    loop {
        if let Some(kb) = vm_hwm_kb(child.id()) {
            peak_kb = peak_kb.max(kb);
        }
        if child.try_wait().expect("wait failed").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("cannot collect output");
    eprintln!("--- stderr ---\n{}", stderr(&output));
    (output, peak_kb / 1024, started.elapsed())
}

/// A process's peak resident memory so far (VmHWM), in KiB.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts `cmd` with its standard streams piped.
fn spawn_piped(cmd: &mut Command) -> std::process::Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run verbatim")
}

/// One error line naming `path` with every word of `reason`, exit `code`, no signal.
fn assert_error(output: &Output, code: i32, path: &Path, reason: &[&str]) {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status; stderr:\n{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one error line, got:\n{err}");
    assert!(lines[0].starts_with("verbatim: error: "), "{}", lines[0]);
    let name = path.display().to_string();
    assert!(
        lines[0].contains(&name),
        "does not name {name}: {}",
        lines[0]
    );
    for word in reason {
        assert!(
            lines[0].to_lowercase().contains(&word.to_lowercase()),
            "lacks `{word}`: {}",
            lines[0]
        );
    }
}

/// `SPEECH` with the WAV header's sample-rate field (and byte rate) rewritten.
fn wav_with_rate(dir: &Path, rate: u32) -> PathBuf {
    let mut bytes = std::fs::read(audio(SPEECH)).unwrap();
    assert_eq!(&bytes[12..16], b"fmt ", "{SPEECH} no longer has fmt first");
    bytes[24..28].copy_from_slice(&rate.to_le_bytes());
    bytes[28..32].copy_from_slice(&rate.wrapping_mul(2).to_le_bytes());
    let path = dir.join(format!("rate-{rate}.wav"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// What `SPEECH` itself transcribes to (the same model and settings).
fn plain_transcript() -> String {
    let output = run(transcribe().arg(audio(SPEECH)));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(wer(&reference(SPEECH), &stdout(&output)) < 0.5);
    stdout(&output)
}

/// S3, S4: a forged rate is refused from the header, in bounded time and memory, by the
/// WAV reader (hound) and by symphonia (a streamed WAV, which hound leaves to it).
#[test]
fn forged_sample_rates_are_refused_from_the_header() {
    let dir = tempdir();
    let out = dir.path().join("out");
    let mut inputs: Vec<PathBuf> = [
        1u32,
        8,
        999,
        768_001,
        100_000_007,
        2_147_483_647,
        4_294_967_295,
    ]
    .iter()
    .map(|&r| wav_with_rate(dir.path(), r))
    .collect();
    // A streamed WAV (length 2^32-1, which hound leaves to symphonia) at 1 Hz.
    let streamed = dir.path().join("streamed-rate-1.wav");
    let mut bytes = std::fs::read(wav_with_rate(dir.path(), 1)).unwrap();
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&streamed, bytes).unwrap();
    inputs.push(streamed);
    for input in &inputs {
        let mut cmd = transcribe();
        cmd.args(["-f", "txt,json", "-o"]).arg(&out).arg(input);
        let (output, peak_mb, took) = run_measured(&mut cmd, Duration::from_secs(60));
        assert_error(&output, 1, input, &["sample rate"]);
        assert!(peak_mb < 600, "{}: peak {peak_mb} MB", input.display());
        eprintln!(
            "{}: refused in {took:?}, peak {peak_mb} MB",
            input.display()
        );
        assert_eq!(files_in(&out), Vec::<String>::new(), "outputs left");
    }
}

/// A1: an odd-sized chunk followed by its pad byte, as RIFF defines, is read.
#[test]
fn riff_pad_byte_after_an_odd_chunk_is_read() {
    let dir = tempdir();
    let bytes = std::fs::read(audio(SPEECH)).unwrap();
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("no data chunk");
    let mut odd = bytes[..data].to_vec();
    odd.extend_from_slice(b"junk");
    odd.extend_from_slice(&3u32.to_le_bytes());
    odd.extend_from_slice(b"abc\0");
    odd.extend_from_slice(&bytes[data..]);
    let riff_len = (odd.len() - 8) as u32;
    odd[4..8].copy_from_slice(&riff_len.to_le_bytes());
    let path = dir.path().join("odd-chunk.wav");
    std::fs::write(&path, odd).unwrap();
    let output = run(transcribe().env("VERBATIM_FFMPEG", "").arg(&path));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), plain_transcript(), "not the same audio");
}

/// A2: compressed files cut at 60 % transcribe what is there and say the file is
/// truncated; `--reject-damaged` makes that an error with no outputs; whole files are silent.
#[test]
fn truncated_compressed_files_say_so() {
    let dir = tempdir();
    for (ext, codec) in [
        ("flac", "flac"),
        ("mp3", "libmp3lame"),
        ("ogg", "libvorbis"),
        ("opus", "libopus"),
    ] {
        let whole = dir.path().join(format!("whole.{ext}"));
        ffmpeg(&[
            "-i".as_ref(),
            audio(SPEECH).as_os_str(),
            "-c:a".as_ref(),
            codec.as_ref(),
            whole.as_os_str(),
        ]);
        let bytes = std::fs::read(&whole).unwrap();
        let cut = dir.path().join(format!("cut.{ext}"));
        std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();

        let output = run(transcribe_verbose().arg(&whole));
        assert!(output.status.success(), "{ext}: {}", stderr(&output));
        assert!(
            !stderr(&output).contains("warning"),
            "{ext}: a whole file warned: {}",
            stderr(&output)
        );

        let output = run(transcribe_verbose().arg(&cut));
        assert!(output.status.success(), "{ext}: {}", stderr(&output));
        let err = stderr(&output);
        assert!(
            err.contains(&cut.display().to_string()) && err.contains("truncated"),
            "{ext}: no truncation warning: {err}"
        );
        assert!(
            !stdout(&output).trim().is_empty(),
            "{ext}: nothing transcribed"
        );

        let out = dir.path().join(format!("out-{ext}"));
        let output = run(transcribe()
            .arg("--reject-damaged")
            .args(["-f", "txt,json", "-o"])
            .arg(&out)
            .arg(&cut));
        assert_error(&output, 1, &cut, &["damaged", "truncated"]);
        assert_eq!(files_in(&out), Vec::<String>::new(), "{ext}: outputs left");
    }
}

/// A4: float samples at integer scale are not silently an empty transcript.
#[test]
fn float_wav_at_integer_scale_warns() {
    let dir = tempdir();
    let mut reader = hound::WavReader::open(audio(SPEECH)).unwrap();
    let samples: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()))
        .collect();
    let path = dir.path().join("int-scale.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let output = run(transcribe_verbose().arg(&path));
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("full scale"), "no warning: {err}");
    let output = run(transcribe().arg("--reject-damaged").arg(&path));
    assert_error(&output, 1, &path, &["full scale"]);
}

/// O2, O4: out-of-range options are usage errors (exit 2) naming the option; an offset
/// past the end is an error naming the file, not an empty transcript.
#[test]
fn out_of_range_options_are_errors() {
    let speech = audio(SPEECH);
    for (args, words) in [
        (&["-t", "100000"][..], &["--threads", "from 1 to"][..]),
        (&["-t", "100000000000"][..], &["--threads"][..]),
        (&["--offset", "99:99:99"][..], &["--offset", "below 60"][..]),
        (&["--duration", "0"][..], &["--duration", "above zero"][..]),
    ] {
        let output = run(transcribe().args(args).arg(&speech));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        for word in words {
            assert!(
                stderr(&output).contains(word),
                "{args:?}: {}",
                stderr(&output)
            );
        }
    }
    let dir = tempdir();
    let out = dir.path().join("out");
    let output = run(transcribe()
        .args(["--offset", "1000", "-f", "txt", "-o"])
        .arg(&out)
        .arg(&speech));
    assert_error(&output, 1, &speech, &["offset", "past the end"]);
    assert_eq!(files_in(&out), Vec::<String>::new());
    // threads = 1e11 in the config file: refused, no abort.
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "threads = 1e11\n").unwrap();
    let output = run(transcribe().env("VERBATIM_CONFIG", &config).arg(&speech));
    assert!(
        matches!(output.status.code(), Some(1 | 2)),
        "{:?}: {}",
        output.status,
        stderr(&output)
    );
}

/// O5: a config or registry file that never ends is refused after a bounded read.
#[test]
fn endless_config_and_registry_files_are_refused() {
    let speech = audio(SPEECH);
    let (output, peak_mb, _) = run_measured(
        transcribe()
            .env("VERBATIM_CONFIG", "/dev/zero")
            .arg(&speech),
        Duration::from_secs(30),
    );
    assert_ne!(output.status.code(), Some(0));
    assert!(output.status.code().is_some(), "killed by a signal");
    assert!(stderr(&output).contains("/dev/zero"), "{}", stderr(&output));
    assert!(peak_mb < 200, "peak {peak_mb} MB");
    let (output, peak_mb, _) = run_measured(
        verbatim()
            .env("VERBATIM_REGISTRY", "/dev/zero")
            .args(["models", "list"]),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("/dev/zero"), "{}", stderr(&output));
    assert!(peak_mb < 200, "peak {peak_mb} MB");
}

/// O6: escape bytes in a registry row are refused, and the message shows them escaped.
#[test]
fn registry_names_with_escape_bytes_are_refused() {
    let dir = tempdir();
    let registry = dir.path().join("registry.tsv");
    std::fs::write(
        &registry,
        format!(
            "evil\x1b[2Jname\twhisper\ten\t100\tsha1:{}\tsome/repo\tfile.bin\n",
            "a".repeat(40)
        ),
    )
    .unwrap();
    let output = run(verbatim()
        .env("VERBATIM_REGISTRY", &registry)
        .args(["models", "list"]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(!err.contains('\x1b'), "raw escape printed: {err:?}");
    assert!(err.contains("control characters"), "{err}");
}

/// O6: a FIFO (as `<(cat file)` gives) is read once, like standard input.
#[test]
fn fifo_input_is_transcribed() {
    let dir = tempdir();
    let fifo = dir.path().join("speech.fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let data = std::fs::read(audio(SPEECH)).unwrap();
            let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            f.write_all(&data).unwrap();
        })
    };
    let output = run(transcribe().arg(&fifo));
    writer.join().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), plain_transcript(), "not the same audio");
}

/// O6: `subtitle --check` counts what a viewer sees: a 39-letter line in NFD is 39.
#[test]
fn subtitle_check_counts_nfd_text_as_displayed() {
    let dir = tempdir();
    // 13 x "e" + combining acute, with spaces: 39 characters on screen, 52 code points.
    let word = "e\u{301}".repeat(12);
    let line = format!("{word} {word} {}", "e\u{301}".repeat(13));
    assert_eq!(line.chars().count(), 76);
    let srt = dir.path().join("nfd.srt");
    std::fs::write(&srt, format!("1\n00:00:01,000 --> 00:00:05,000\n{line}\n")).unwrap();
    let output = run(verbatim().args(["subtitle", "--check"]).arg(&srt));
    assert!(
        !stderr(&output).contains("chars >") && !stdout(&output).contains("chars >"),
        "NFD line counted by code points:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
}

/// O6: one list line that is not UTF-8 names a file like any other (Unix names are bytes).
#[cfg(unix)]
#[test]
fn from_list_takes_non_utf8_names() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempdir();
    let odd_name = std::ffi::OsStr::from_bytes(b"caf\xe9-speech.wav");
    let odd = dir.path().join(odd_name);
    std::fs::copy(audio(SPEECH), &odd).unwrap();
    let list = dir.path().join("list.txt");
    let mut text = odd.as_os_str().as_bytes().to_vec();
    text.push(b'\n');
    std::fs::write(&list, text).unwrap();
    let out = dir.path().join("subs");
    let output = run(verbatim()
        .args(["subtitle", "--quiet", "--model"])
        .arg(tiny_en())
        .arg("--vad-model")
        .arg(vad_model())
        .arg("--from-list")
        .arg(&list)
        .arg("-o")
        .arg(&out));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(files_in(&out).len(), 1, "{:?}", files_in(&out));
}

/// S2: a 45,000-character prompt without a space is cut to what whisper reads, with a
/// warning; no stack overflow, and not minutes in the tokenizer.
#[test]
fn huge_prompt_is_cut_not_a_crash() {
    let speech = audio(SPEECH);
    let prompt = "a".repeat(45_000);
    let (output, _, took) = run_measured(
        transcribe_verbose()
            .arg("--prompt")
            .arg(&prompt)
            .arg(&speech),
        Duration::from_secs(300),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("--prompt is 45000 characters"));
    eprintln!("45,000-character prompt: {took:?}");
}

/// Mutated real files of every container verbatim reads, through the library's decoder:
/// bit flips, truncations, header rewrites and chunk shuffles. None may panic, hang or
/// decode to more audio than a bound on the file's real length allows; cases that ever
/// failed are kept in `tests/data/hostile_input/` and rerun first.
#[test]
fn mutated_containers_never_crash_or_explode() {
    let dir = tempdir();
    let mut seeds = Vec::new();
    let speech = audio(SPEECH);
    for (ext, args) in [
        ("wav", &[][..]),
        ("flac", &[][..]),
        ("mp3", &["-c:a", "libmp3lame"][..]),
        ("ogg", &["-c:a", "libvorbis"][..]),
        ("m4a", &["-c:a", "aac"][..]),
        ("mkv", &["-c:a", "libvorbis"][..]),
        ("caf", &["-c:a", "pcm_s16le"][..]),
        ("aiff", &[][..]),
    ] {
        let path = dir.path().join(format!("seed.{ext}"));
        let mut a: Vec<&std::ffi::OsStr> = vec!["-t".as_ref(), "3".as_ref(), "-i".as_ref()];
        a.push(speech.as_os_str());
        a.extend(args.iter().map(std::ffi::OsStr::new));
        a.push(path.as_os_str());
        ffmpeg(&a);
        seeds.push((ext, std::fs::read(&path).unwrap()));
    }
    // The library's decoders only: ffmpeg is another process and not ours to fuzz.
    std::env::set_var("VERBATIM_FFMPEG", "");
    let kept = kept_cases();
    let mut rng = Rng::new(0x005e_ed23);
    let (mut cases, mut decoded, mut refused) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    let mut check = |name: String, bytes: &[u8], ext: &str| {
        let path = dir.path().join(format!("case.{ext}"));
        std::fs::write(&path, bytes).unwrap();
        let started = Instant::now();
        let result =
            std::panic::catch_unwind(|| verbatim::audio::decode::decode_path(&path, false));
        let took = started.elapsed();
        cases += 1;
        match result {
            Err(_) => failures.push(format!("{name}: panicked")),
            Ok(Err(_)) => refused += 1,
            Ok(Ok(audio)) => {
                decoded += 1;
                // 3 s of speech; a forged rate may stretch it, but never past 16x (1 kHz).
                let seconds = audio.channels.iter().map(Vec::len).max().unwrap_or(0) as f64
                    / audio.sample_rate as f64;
                if seconds > 60.0 {
                    failures.push(format!("{name}: decoded {seconds:.0} s"));
                }
            }
        }
        if took > Duration::from_secs(20) {
            failures.push(format!("{name}: took {took:?}"));
        }
    };
    for (name, ext, bytes) in &kept {
        check(format!("kept {name}"), bytes, ext);
    }
    const PER_SEED: usize = 60;
    for (ext, seed) in &seeds {
        for i in 0..PER_SEED {
            let mut bytes = seed.clone();
            let how = rng.below(4);
            let desc = match how {
                0 => {
                    let n = 1 + rng.below(8);
                    for _ in 0..n {
                        let at = rng.below(bytes.len().min(4096));
                        bytes[at] ^= 1 << rng.below(8);
                    }
                    format!("{n} bit flips in the head")
                }
                1 => {
                    let len = rng.below(bytes.len());
                    bytes.truncate(len);
                    format!("cut at {len}")
                }
                2 => {
                    let at = rng.below(bytes.len().min(512).saturating_sub(4)) & !3;
                    let v = [0u32, 1, 0xFFFF_FFFF, 0x7FFF_FFFF, 8, 102][rng.below(6)];
                    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    format!("u32 {v} at {at}")
                }
                _ => {
                    let a = rng.below(bytes.len() / 2);
                    let b = bytes.len() / 2 + rng.below(bytes.len() / 2);
                    let n = (64 + rng.below(1024)).min(bytes.len() - b).min(b - a);
                    let chunk: Vec<u8> = bytes[a..a + n].to_vec();
                    bytes.copy_within(b..b + n, a);
                    bytes[b..b + n].copy_from_slice(&chunk);
                    format!("swapped {n} bytes at {a} and {b}")
                }
            };
            check(format!("{ext} #{i}: {desc}"), &bytes, ext);
        }
    }
    eprintln!(
        "mutation corpus: {cases} cases ({} kept), {decoded} decoded, {refused} refused, {} failed",
        kept.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "keep these in tests/data/hostile_input/:\n{}",
        failures.join("\n")
    );
}

/// Regression files: `tests/data/hostile_input/NAME.EXT`, each a whole small file.
fn kept_cases() -> Vec<(String, String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hostile_input");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("bin")
            .to_string();
        if ext == "md" {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.push((name, ext, std::fs::read(&path).unwrap()));
    }
    out.sort();
    out
}

/// A3: an endless stream of garbage on standard input is refused after its first block,
/// not buffered until the disk is full; zeros and random bytes alike.
#[test]
fn endless_garbage_on_stdin_is_refused_early() {
    for (what, byte_of) in [
        ("zeros", (|_| 0u8) as fn(usize) -> u8),
        ("noise", |i: usize| {
            (i.wrapping_mul(2_654_435_761) >> 13) as u8
        }),
    ] {
        let started = Instant::now();
        let mut child = spawn_piped(transcribe().arg("-"));
        let mut stdin = child.stdin.take().unwrap();
        let block: Vec<u8> = (0..65_536).map(byte_of).collect();
        let mut written = 0usize;
        // Write until verbatim closes the pipe (or far more than it may read).
        while written < 256 << 20 {
            if stdin.write_all(&block).is_err() {
                break;
            }
            written += block.len();
        }
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{what}: {err}");
        assert!(err.starts_with("verbatim: error: -: "), "{what}: {err}");
        assert!(err.contains("not a recognised"), "{what}: {err}");
        assert!(
            written < 16 << 20,
            "{what}: {} MiB read before refusing",
            written >> 20
        );
        eprintln!(
            "{what}: refused after {} KiB in {:?}",
            written >> 10,
            started.elapsed()
        );
    }
}

/// A valid stream that never ends (a WAV header of unknown length, speech, then silence for
/// ever) is decoded as it arrives: memory stays bounded, nothing is copied to disk, and
/// `--duration` ends the run after that much audio (the old spooling read to the end first).
#[test]
fn endless_valid_stdin_streams_in_bounded_memory_and_no_disk() {
    let tmp = tempdir();
    let wav = std::fs::read(audio(SPEECH)).unwrap();
    assert_eq!(&wav[36..40], b"data", "{SPEECH} no longer has data at 36");
    let mut head = wav[..44].to_vec();
    head[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    head[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let started = Instant::now();
    let mut child = spawn_piped(transcribe().env("TMPDIR", tmp.path()).args([
        "--duration",
        "120",
        "--no-timestamps",
        "-",
    ]));
    let mut stdin = child.stdin.take().unwrap();
    let speech = wav[44..].to_vec();
    let writer = std::thread::spawn(move || {
        let mut written = 0usize;
        let zeros = vec![0u8; 65_536];
        if stdin.write_all(&head).is_ok() && stdin.write_all(&speech).is_ok() {
            // Far more than 120 s (3.8 MB) of silence, unless verbatim closes the pipe.
            while written < 1 << 30 && stdin.write_all(&zeros).is_ok() {
                written += zeros.len();
            }
        }
        written
    });
    let (mut peak_kb, mut peak_disk) = (0u64, 0u64);
    while child.try_wait().unwrap().is_none() {
        if let Some(kb) = vm_hwm_kb(child.id()) {
            peak_kb = peak_kb.max(kb);
        }
        let disk: u64 = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        peak_disk = peak_disk.max(disk);
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("still running after 600 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        wer(&reference(SPEECH), &stdout(&output)) < 0.5,
        "{}",
        stdout(&output)
    );
    eprintln!(
        "{} KiB of silence written, peak {} MB, temporary files {} KiB at most, {:?}",
        written >> 10,
        peak_kb / 1024,
        peak_disk >> 10,
        started.elapsed()
    );
    assert!(written < 64 << 20, "{} MiB read", written >> 20);
    assert!(peak_kb < 400 << 10, "peak {} MB", peak_kb >> 10);
    assert!(peak_disk <= 1 << 20, "{peak_disk} bytes of temporary files");
    assert_eq!(files_in(tmp.path()), Vec::<String>::new());
}

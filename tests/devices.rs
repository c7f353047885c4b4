//! `verbatim devices` and the device library against a real virtual microphone (a private
//! PulseAudio daemon, see `common/pulse.rs`), and with no audio device at all.
//!
//! The library reads the audio environment (`XDG_RUNTIME_DIR`, `PULSE_SERVER`) of its own
//! process, so the in-process checks run in a child copy of this test binary that gets the
//! daemon's environment: this process's environment is never changed.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pulse::Pulse;
use common::{prerequisite_missing, run, stderr, stdout, verbatim};

/// Set in the child copies of this binary (see [`run_child`]).
const CHILD_VAR: &str = "VERBATIM_DEVICES_TEST_CHILD";

#[test]
fn lists_the_pulse_devices_and_marks_the_default() {
    let pulse = Pulse::start();
    let out = run(pulse.env(verbatim().arg("devices")));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    for column in ["INDEX", "NAME", "FORMAT", "RATE", "CHANNELS", "DESCRIPTION"] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    let defaults: Vec<&&str> = rows.iter().filter(|r| r.contains('*')).collect();
    assert_eq!(defaults.len(), 1, "exactly one default:\n{text}");
    let fields: Vec<&str> = defaults[0].split_whitespace().collect();
    assert_eq!(fields[0], "0*", "{text}");
    assert_eq!(fields[1], "default", "{text}");
    assert!(
        rows.iter()
            .any(|r| r.split_whitespace().nth(1) == Some("pulse")),
        "{text}"
    );
    // alsa-lib's own messages about plugins that cannot open stay out of the way.
    assert!(!stderr(&out).contains("ALSA lib"), "{}", stderr(&out));
}

#[test]
fn json_lists_every_field() {
    let pulse = Pulse::start();
    let out = run(pulse.env(verbatim().args(["devices", "--json"])));
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let list = list.as_array().expect("a JSON array");
    assert!(!list.is_empty());
    let mut previous = None;
    for d in list {
        // Ascending positions in the host's list (with gaps for devices that cannot record).
        let index = d["index"].as_u64().unwrap();
        assert!(previous < Some(index), "{list:?}");
        previous = Some(index);
        assert!(d["name"].as_str().is_some_and(|n| !n.is_empty()), "{d}");
        assert!(d["description"].is_string(), "{d}");
        assert!(d["is_default"].is_boolean(), "{d}");
        assert!(
            ["f32", "i16", "i24", "i32", "u8", "u16", "f64", "i8"]
                .contains(&d["sample_format"].as_str().unwrap()),
            "{d}"
        );
        assert!(d["sample_rate"].as_u64().unwrap() >= 8000, "{d}");
        assert!(d["channels"].as_u64().unwrap() >= 1, "{d}");
    }
    let defaults: Vec<_> = list.iter().filter(|d| d["is_default"] == true).collect();
    assert_eq!(defaults.len(), 1, "{list:?}");
    assert_eq!(defaults[0]["name"], "default");
}

/// No audio device at all: ALSA reads an empty configuration instead of the system's, so it
/// knows no PCM (not even `default`) and no card, whatever hardware or sound server the machine
/// has. The user gets one line and exit code 1.
#[test]
fn no_device_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("asound.conf");
    std::fs::write(&empty, "# no PCMs, no cards\n").unwrap();
    for json in [false, true] {
        let mut cmd = verbatim();
        no_audio(cmd.arg("devices"), &empty);
        if json {
            cmd.arg("--json");
        }
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stdout(&out), "");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one line:\n{err}");
        assert!(
            err.starts_with(
                "verbatim: error: no audio input device found (host ALSA; default input: "
            ),
            "{err}"
        );
        assert!(err.contains("is a microphone connected?"), "{err}");
    }
}

/// `cmd` with ALSA pointed at `config` and no PulseAudio to find.
fn no_audio<'a>(cmd: &'a mut Command, config: &Path) -> &'a mut Command {
    cmd.env("ALSA_CONFIG_PATH", config)
        .env_remove("PULSE_SERVER")
        .env_remove("XDG_RUNTIME_DIR")
}

/// What the device-vanishing tests rely on: after `kill` the daemon is gone, and with it the
/// only microphone.
#[test]
fn killing_pulse_removes_the_microphone() {
    let pulse = Pulse::start();
    let out = run(pulse.env(verbatim().arg("devices")));
    assert!(out.status.success(), "{}", stderr(&out));
    pulse.kill();
    assert!(!pulse.pactl(&["info"]).status.success());
    let out = run(pulse.env(verbatim().arg("devices")));
    // Without PulseAudio, ALSA's `default` is the first sound card; the test machines have
    // none. (Plugins such as JACK's may print their own complaints to stderr first.)
    let has_cards = std::fs::read_to_string("/proc/asound/cards")
        .is_ok_and(|cards| !cards.contains("no soundcards"));
    if has_cards {
        prerequisite_missing(
            "a machine without sound cards (ALSA's `default` is a real card here)",
        );
        return;
    }
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .lines()
            .any(|l| l.starts_with("verbatim: error: no audio input device found (host ALSA")),
        "{}",
        stderr(&out)
    );
}

/// Opening by default, index, name and substring, and the errors for specs that match nothing
/// or several devices.
#[test]
fn open_selects_by_index_name_and_substring() {
    let pulse = Pulse::start();
    run_child(&pulse, "child_open_specs");
}

#[test]
#[ignore = "run by open_selects_by_index_name_and_substring with a PulseAudio daemon"]
fn child_open_specs() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    use verbatim::listen::devices::{list, open};
    let all = list().unwrap();
    // Indices are positions in ALSA's device list, which also holds plugins that cannot record
    // (lavrate, jack, oss, ...): list() skips those, so its indices have gaps.
    assert_eq!(all[0].name, "default", "{all:?}");
    assert!(all[0].is_default);
    let pulse = all
        .iter()
        .find(|d| d.name == "pulse")
        .expect("ALSA's pulse device");

    let (_, info) = open(None).unwrap();
    assert_eq!(info, all[0]);
    let (_, info) = open(Some(&pulse.index.to_string())).unwrap();
    assert_eq!(&info, pulse);
    let (_, info) = open(Some("pulse")).unwrap();
    assert_eq!(&info, pulse);
    let (_, info) = open(Some(" DEFAU ")).unwrap();
    assert_eq!(info, all[0]);
    // The description decides when no name contains the spec.
    let (_, info) = open(Some("playback/RECORDING")).unwrap();
    assert_eq!(info, all[0]);

    let available = all
        .iter()
        .map(|d| format!("{}: {}", d.index, d.name))
        .collect::<Vec<_>>()
        .join(", ");
    let e = open(Some("xyz")).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("no input device matches 'xyz'; available: {available}")
    );
    let e = open(Some("99")).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("no input device with index 99; available: {available}")
    );
    // "u" is in "default" and "pulse" (and in plugins that cannot record, which do not count).
    let e = open(Some("u")).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "'u' matches several input devices: 0: default, {}: pulse; give the index or the \
             full name",
            pulse.index
        )
    );
    // A device that is listed by the host but cannot record says why.
    let e = open(Some("1")).unwrap_err().to_string();
    if all.iter().all(|d| d.index != 1) {
        assert!(
            e.starts_with("audio input 1: ") && e.contains(" cannot be opened ("),
            "{e}"
        );
        assert!(e.ends_with(&format!("; available: {available}")), "{e}");
    }
}

/// The harness the dictation tests rely on: cpal records from the device `open(None)` returns,
/// and what `paplay` plays into the null sink arrives there as sound, not silence.
#[test]
fn capture_hears_what_pulse_plays() {
    let pulse = Pulse::start();
    let mut player = pulse.play(&common::audio("jfk.flac"));
    run_child(&pulse, "child_capture");
    let _ = player.kill();
    let _ = player.wait();
}

#[test]
#[ignore = "run by capture_hears_what_pulse_plays with a PulseAudio daemon"]
fn child_capture() {
    use cpal::traits::{DeviceTrait, StreamTrait};

    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let (device, info) = verbatim::listen::devices::open(None).unwrap();
    assert!(info.is_default);
    let config = device.default_input_config().unwrap();
    assert_eq!(config.sample_format().to_string(), info.sample_format);
    let samples = Arc::new(Mutex::new(Vec::<f32>::new()));
    let sink = samples.clone();
    let error = |e| panic!("stream error: {e}");
    let stream = match config.sample_format() {
        cpal::SampleFormat::F32 => device.build_input_stream::<f32, _, _>(
            config.config(),
            move |data, _| sink.lock().unwrap().extend_from_slice(data),
            error,
            Some(Duration::from_secs(5)),
        ),
        cpal::SampleFormat::I16 => device.build_input_stream::<i16, _, _>(
            config.config(),
            move |data, _| {
                sink.lock()
                    .unwrap()
                    .extend(data.iter().map(|&s| f32::from(s) / 32768.0))
            },
            error,
            Some(Duration::from_secs(5)),
        ),
        other => panic!("unexpected sample format {other}"),
    }
    .unwrap();
    stream.play().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    drop(stream);

    let samples = samples.lock().unwrap();
    let rate = info.sample_rate as usize * info.channels as usize;
    // Audio from the start: a null sink left to its 2 s blocks would deliver only about 1 s.
    assert!(
        samples.len() * 10 >= rate * 25,
        "only {} samples in 3 s at {rate}/s",
        samples.len()
    );
    // JFK speaks within the first three seconds; the loudest 100 ms must be clearly audible.
    let loudest = samples
        .chunks(rate / 10)
        .map(|c| (c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32).sqrt())
        .fold(0.0f32, f32::max);
    eprintln!(
        "captured {} samples, loudest 100 ms RMS {loudest:.4}",
        samples.len()
    );
    assert!(loudest > 0.01, "silence: loudest 100 ms RMS {loudest}");
}

/// Runs the ignored test `name` of this binary in a child process with `pulse`'s environment,
/// and fails when it fails.
fn run_child(pulse: &Pulse, name: &str) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_VAR, "1");
    pulse.env(&mut cmd);
    let out = cmd.output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    eprintln!("--- child {name} ---\n{text}");
    assert!(out.status.success(), "child test {name} failed");
    assert!(
        text.contains("1 passed"),
        "child test {name} did not run:\n{text}"
    );
}

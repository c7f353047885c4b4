//! Inputs that are not files (standard input, an upload held in memory): copied to a private
//! temporary file in fixed-size blocks, then transcribed as a file. Memory stays bounded
//! whatever the stream's length, the decoders may seek (MP4, some WAV), and ffmpeg can read
//! it; the file is removed when done. Errors and warnings name the input, not the file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{transcribe_path, Outputs, PipelineOptions, Summary};
use crate::engine::{Engine, Hooks};
use crate::{Error, Result};

/// Transcribes what `reader` yields, naming it `name` in errors and warnings. Never
/// checkpointed: a rerun cannot read the same stream again.
pub fn transcribe_reader(
    engine: &Engine,
    name: &str,
    reader: &mut dyn Read,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    let spool = spool(name, reader)?;
    let options = PipelineOptions {
        resume: false,
        ..options.clone()
    };
    let result = transcribe_path(engine, spool.path(), outputs, &options, hooks, false);
    let tmp = spool.path().to_path_buf();
    result
        .map(|mut summary| {
            for w in &mut summary.warnings {
                *w = w.replace(&tmp.display().to_string(), name);
            }
            summary
        })
        .map_err(|e| renamed(e, &tmp, name))
}

/// Copies `reader` into a new temporary file (created exclusively, mode 0600).
fn spool(name: &str, reader: &mut dyn Read) -> Result<tempfile::NamedTempFile> {
    let fail = |e: std::io::Error| {
        let reason = format!("cannot buffer the input in a temporary file: {e}");
        Error::input_from(name, reason, e)
    };
    let mut file = tempfile::Builder::new()
        .prefix("verbatim-input-")
        .tempfile()
        .map_err(fail)?;
    let mut block = vec![0u8; BLOCK];
    let mut total = 0u64;
    let mut checked = false;
    loop {
        let n = match read_full(reader, &mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let reason = format!("cannot read the input: {e}");
                return Err(Error::input_from(name, reason, e));
            }
        };
        file.write_all(&block[..n]).map_err(fail)?;
        total += n as u64;
        if !checked {
            // Judge the stream by its first block, as a file is judged by its header,
            // before copying (possibly endless) garbage to the disk.
            checked = true;
            file.flush().map_err(fail)?;
            if !crate::audio::decode::looks_like_media(&block[..n], file.path()) {
                return Err(Error::input(
                    name,
                    format!(
                        "not a recognised audio or video format (judged from its first {n} bytes)"
                    ),
                ));
            }
        }
    }
    if total == 0 {
        return Err(Error::input(name, "empty input (0 bytes)"));
    }
    file.flush().map_err(fail)?;
    Ok(file)
}

/// Bytes copied per read, and the head a stream is judged by.
const BLOCK: usize = 1 << 20;

/// Reads until `buf` is full or the input ends (a pipe hands out a few KiB per read).
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Errors name the input, not the temporary file behind it.
fn renamed(e: Error, tmp: &Path, name: &str) -> Error {
    let fix = |path: PathBuf| {
        if path == tmp {
            PathBuf::from(name)
        } else {
            path
        }
    };
    match e {
        Error::Input {
            path,
            reason,
            source,
        } => Error::Input {
            path: fix(path),
            reason: reason.replace(&tmp.display().to_string(), name),
            source,
        },
        Error::Engine {
            path,
            reason,
            source,
        } => Error::Engine {
            path: fix(path),
            reason,
            source,
        },
        Error::TooLong { path, seconds, max } => Error::TooLong {
            path: fix(path),
            seconds,
            max,
        },
        other => other,
    }
}

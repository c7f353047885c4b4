//! Inputs that are not files. Standard input and FIFOs are decoded as they arrive
//! ([`transcribe_stream`]); an upload held in memory, MP4-like streams and `--split-channels`
//! are copied to a private temporary file in fixed-size blocks and transcribed as a file (the
//! decoders may seek, ffmpeg can read it; the file is removed when done). Either way memory
//! stays bounded, and errors and warnings name the input, not a temporary file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{transcribe_path, windowed, Mode, OutputLock, Outputs, PipelineOptions, Summary};
use crate::audio::pipe::{needs_a_file, PipeInput};
use crate::engine::{Engine, Hooks};
use crate::{Error, Result};

/// Transcribes a stream that can be read only once (standard input, a FIFO) as it arrives:
/// memory and disk stay bounded however long it runs. Judged by its first MiB, as a file is
/// by its header. MP4-like containers (their index may come last), `--split-channels` (one
/// pass per channel) and `--diarize` (a pass for the speakers) need a file: those are
/// copied to a temporary one first.
pub(super) fn transcribe_stream(
    engine: &Engine,
    name: &str,
    mut reader: Box<dyn Read + Send + Sync>,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    let head = read_head(name, &mut *reader)?;
    if options.split_channels || options.diarize.is_some() || needs_a_file(&head) {
        return transcribe_spooled(engine, name, head, &mut *reader, outputs, options, hooks);
    }
    // ffprobe, the last judge, reads a file: it gets the head alone.
    let probe = new_temp(name)?;
    let write = |mut f: &std::fs::File| f.write_all(&head).and_then(|_| f.flush());
    write(probe.as_file()).map_err(|e| spool_error(name, e))?;
    check_head(name, &head, probe.path())?;
    drop(probe);
    let _lock = OutputLock::acquire(outputs)?;
    let options = PipelineOptions {
        resume: false,
        ..options.clone()
    };
    let mode = Mode {
        channel: None,
        checkpoints: false,
    };
    let pipe = PipeInput::new(name, head, reader);
    windowed(
        engine,
        Path::new(name),
        Some(pipe),
        outputs,
        &options,
        hooks,
        mode,
    )
}

/// Transcribes what `reader` yields, naming it `name` in errors and warnings: copied to a
/// temporary file first (so any container can be read, MP4 included), judged by its first
/// MiB before the rest is copied. Never checkpointed: a rerun cannot read the same stream
/// again.
pub fn transcribe_reader(
    engine: &Engine,
    name: &str,
    reader: &mut dyn Read,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    let head = read_head(name, reader)?;
    transcribe_spooled(engine, name, head, reader, outputs, options, hooks)
}

fn transcribe_spooled(
    engine: &Engine,
    name: &str,
    head: Vec<u8>,
    rest: &mut dyn Read,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    let spool = spool(name, &head, rest)?;
    drop(head);
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

/// The stream's first [`BLOCK`] bytes (fewer if it ends sooner); an empty stream is an error.
fn read_head(name: &str, reader: &mut dyn Read) -> Result<Vec<u8>> {
    let mut head = vec![0u8; BLOCK];
    let n = read_full(reader, &mut head).map_err(|e| {
        let reason = format!("cannot read the input: {e}");
        Error::input_from(name, reason, e)
    })?;
    if n == 0 {
        return Err(Error::input(name, "empty input (0 bytes)"));
    }
    head.truncate(n);
    Ok(head)
}

/// Refuses a stream whose head is no audio or video format a decoder here reads, before
/// (possibly endless) garbage is decoded or copied anywhere. `file` holds the head.
fn check_head(name: &str, head: &[u8], file: &Path) -> Result<()> {
    if crate::audio::decode::looks_like_media(head, file) {
        return Ok(());
    }
    Err(Error::input(
        name,
        format!(
            "not a recognised audio or video format (judged from its first {} bytes)",
            head.len()
        ),
    ))
}

fn spool_error(name: &str, e: std::io::Error) -> Error {
    let reason = format!("cannot buffer the input in a temporary file: {e}");
    Error::input_from(name, reason, e)
}

/// A new temporary file (created exclusively, mode 0600).
fn new_temp(name: &str) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix("verbatim-input-")
        .tempfile()
        .map_err(|e| spool_error(name, e))
}

/// Copies `head`, then the rest of the stream, into a new temporary file; the head is judged
/// before the rest is copied.
fn spool(name: &str, head: &[u8], rest: &mut dyn Read) -> Result<tempfile::NamedTempFile> {
    let mut file = new_temp(name)?;
    let fail = |e: std::io::Error| spool_error(name, e);
    file.write_all(head).map_err(fail)?;
    file.flush().map_err(fail)?;
    check_head(name, head, file.path())?;
    let mut block = vec![0u8; BLOCK];
    loop {
        let n = match read_full(rest, &mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let reason = format!("cannot read the input: {e}");
                return Err(Error::input_from(name, reason, e));
            }
        };
        file.write_all(&block[..n]).map_err(fail)?;
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

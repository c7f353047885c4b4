//! Standard input (`-`): copied to a private temporary file in fixed-size blocks, then
//! transcribed as a file. Memory stays bounded whatever the stream's length, the decoders
//! may seek (MP4, some WAV), and ffmpeg can read it; the file is removed when done.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{transcribe_path, Outputs, PipelineOptions, Summary};
use crate::engine::{Engine, Hooks};
use crate::{Error, Result};

const NAME: &str = "-";

pub(super) fn transcribe(
    engine: &Engine,
    outputs: &Outputs,
    options: &PipelineOptions,
    hooks: &mut Hooks<'_>,
) -> Result<Summary> {
    let spool = spool(&mut std::io::stdin().lock())?;
    let options = PipelineOptions {
        resume: false,
        ..options.clone()
    };
    // Never checkpointed: a rerun cannot read the same standard input again.
    let result = transcribe_path(engine, spool.path(), outputs, &options, hooks, false);
    let tmp = spool.path().to_path_buf();
    result
        .map(|mut summary| {
            for w in &mut summary.warnings {
                *w = w.replace(&tmp.display().to_string(), NAME);
            }
            summary
        })
        .map_err(|e| renamed(e, &tmp))
}

/// Copies `reader` into a new temporary file (created exclusively, mode 0600).
pub(super) fn spool(reader: &mut dyn Read) -> Result<tempfile::NamedTempFile> {
    let fail = |e: std::io::Error| {
        Error::input(
            NAME,
            format!("cannot buffer standard input in a temporary file: {e}"),
        )
    };
    let mut file = tempfile::Builder::new()
        .prefix("verbatim-stdin-")
        .tempfile()
        .map_err(fail)?;
    let mut block = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::input(
                    NAME,
                    format!("cannot read standard input: {e}"),
                ))
            }
        };
        file.write_all(&block[..n]).map_err(fail)?;
        total += n as u64;
    }
    if total == 0 {
        return Err(Error::input(NAME, "empty input (0 bytes)"));
    }
    file.flush().map_err(fail)?;
    Ok(file)
}

/// Errors name standard input as `-`, not the temporary file behind it.
fn renamed(e: Error, tmp: &Path) -> Error {
    let fix = |path: PathBuf| {
        if path == tmp {
            PathBuf::from(NAME)
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
            reason: reason.replace(&tmp.display().to_string(), NAME),
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
        other => other,
    }
}

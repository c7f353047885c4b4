//! Errors of the library, each naming the file it concerns.

use std::path::PathBuf;

/// The error underneath one of ours (an [`std::io::Error`], whisper.cpp's error, ...).
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while transcribing. New kinds may be added: match with a
/// wildcard arm.
///
/// The message is one line meant for people and already includes the cause's text;
/// [`std::error::Error::source`] gives the cause itself (for example the
/// [`std::io::Error`] and its kind) to programs that need to tell cases apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input file could not be read or decoded.
    #[error("{}: {reason}", path.display())]
    Input {
        /// The input (`-` for standard input).
        path: PathBuf,
        /// One-line reason.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Source>,
    },
    /// A model file is missing or is not a usable Whisper/VAD model.
    #[error("{reason}: {}", path.display())]
    Model {
        /// The model path.
        path: PathBuf,
        /// One-line reason.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Source>,
    },
    /// whisper.cpp failed while transcribing.
    #[error("{}: transcription failed: {reason}", path.display())]
    Engine {
        /// The input being transcribed.
        path: PathBuf,
        /// One-line reason.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Source>,
    },
    /// An output file could not be written.
    #[error("{}: cannot write output: {reason}", path.display())]
    Output {
        /// The output path.
        path: PathBuf,
        /// One-line reason.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Source>,
    },
    /// Another run holds the lock on one of the outputs (it is writing them); this run
    /// touched none of its files.
    #[error("{}: cannot write output: another verbatim run is writing it (its lock {} is held); wait for that run to end or write elsewhere", path.display(), lock.display())]
    Busy {
        /// The output.
        path: PathBuf,
        /// The lock file held by the other run.
        lock: PathBuf,
    },
    /// The input is longer than the limit the caller set ([`crate::pipeline::PipelineOptions::max_seconds`]).
    #[error("{}: {}the limit is {max:.0} s", path.display(), seconds.map_or_else(|| "the audio runs past the limit; ".to_string(), |s| format!("the audio is {s:.1} s long; ")))]
    TooLong {
        /// The input.
        path: PathBuf,
        /// The length the header gives, when it gives one.
        seconds: Option<f64>,
        /// The limit in seconds.
        max: f64,
    },
    /// A model could not be fetched, verified or managed (the message names model and file).
    #[error("{0}")]
    Store(String),
    /// The user interrupted the run (Ctrl-C).
    #[error("interrupted")]
    Cancelled,
    /// Invalid options (e.g. an unknown language code).
    #[error("{0}")]
    Usage(String),
    /// Audio could not be processed (e.g. a sample rate the resampler cannot take).
    #[error("{0}")]
    Audio(String),
    /// A microphone, or the tool that types dictated text, is missing or failed (the message
    /// names the device or tool and what to do).
    #[error("{0}")]
    Device(String),
}

impl Error {
    /// Shorthand for an [`Error::Input`].
    pub fn input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// An [`Error::Input`] that keeps the error that caused it.
    pub fn input_from(
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
        source: impl Into<Source>,
    ) -> Self {
        Error::Input {
            path: path.into(),
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// An [`Error::Output`] for `path`, keeping the cause (its text is the reason).
    pub fn output(
        path: impl Into<PathBuf>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Output {
            path: path.into(),
            reason: cause.to_string(),
            source: Some(Box::new(cause)),
        }
    }
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

//! The crate's error type.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not the checkpoint it should be (truncated, corrupt, another model).
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// A tensor the model needs is absent or has the wrong shape.
    #[error("model weights: {0}")]
    Weights(String),
    /// Audio the models cannot take (wrong rate, non-finite samples, ...).
    #[error("{0}")]
    Input(String),
}

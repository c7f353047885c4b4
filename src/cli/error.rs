//! Why a command stopped: the one line `cli::run` prints and the exit code it returns.
//!
//! Commands return `Result<i32, CliError>`: `Ok` with the code of a run that went to its end
//! (including partial failures already reported item by item), `Err` when the command stops.
//! Only `cli::run` prints these errors and turns them into exit codes.

use std::fmt;

use super::exit_code;

/// A command that stopped, with the one-line message to print.
#[derive(Debug)]
pub enum CliError {
    /// Bad command-line usage: exit code 2.
    Usage(String),
    /// The command failed: exit code 1.
    Failure(String),
    /// Ctrl-C: exit code 130. The message says what was kept.
    Interrupted(String),
}

impl CliError {
    /// A usage error (exit code 2).
    pub fn usage(message: impl fmt::Display) -> CliError {
        CliError::Usage(message.to_string())
    }

    /// A failure (exit code 1).
    pub fn failure(message: impl fmt::Display) -> CliError {
        CliError::Failure(message.to_string())
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => exit_code::USAGE,
            CliError::Failure(_) => exit_code::FAILURE,
            CliError::Interrupted(_) => exit_code::INTERRUPTED,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failure(m) | CliError::Interrupted(m) => f.write_str(m),
        }
    }
}

/// The library's invalid options are usage errors and its cancellation is an interruption;
/// everything else (input, model, engine, output, device...) is a failure.
impl From<verbatim::Error> for CliError {
    fn from(e: verbatim::Error) -> CliError {
        match e {
            verbatim::Error::Usage(m) => CliError::Usage(m),
            verbatim::Error::Cancelled => CliError::Interrupted("interrupted".into()),
            other => CliError::Failure(other.to_string()),
        }
    }
}

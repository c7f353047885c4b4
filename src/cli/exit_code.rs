//! Process exit codes of the `verbatim` binary (also documented in `--help` and the docs).

/// Everything succeeded.
pub const OK: i32 = 0;
/// Failure: the only input failed, every input failed, or a fatal error (e.g. the model).
pub const FAILURE: i32 = 1;
/// Bad command-line usage.
pub const USAGE: i32 = 2;
/// Some inputs failed while others succeeded.
pub const PARTIAL: i32 = 3;
/// Interrupted by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: i32 = 130;

//! `verbatim devices`: list the audio input devices (microphones) with their default format.

use clap::Args;

use verbatim::listen::devices;

use super::error::CliError;
use super::exit_code;

/// `println!` that ignores a closed pipe (`verbatim devices | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub const AFTER_HELP: &str = "\
Examples:
  verbatim devices                     # table: index, default (*), name, format, rate, channels
  verbatim devices --json              # the same as a JSON array
  verbatim listen --mic 2              # dictate from the device with index 2 (or -D 2)
  verbatim listen --mic pulse          # ... or by name (exact, else a unique substring)

The default input (marked *) is what `verbatim listen` records from without --mic. On Linux
the names are ALSA devices: `default` and `pulse` go through PulseAudio or PipeWire (choose the
microphone there, e.g. `pactl set-default-source NAME`), `hw:`/`plughw:` open a card directly.
Exit code 1 when no input device is found.";

/// Options of `verbatim devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `verbatim devices`.
pub fn run(args: DevicesArgs) -> Result<i32, CliError> {
    let list = devices::list()?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(exit_code::OK);
    }
    let width = list
        .iter()
        .map(|d| d.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("NAME".len());
    outln!(
        "{:>5}  {:<width$}  {:<6}  {:>7}  {:>8}  DESCRIPTION",
        "INDEX",
        "NAME",
        "FORMAT",
        "RATE",
        "CHANNELS"
    );
    for d in &list {
        outln!(
            "{:>4}{}  {:<width$}  {:<6}  {:>7}  {:>8}  {}",
            d.index,
            if d.is_default { "*" } else { " " },
            d.name,
            d.sample_format,
            d.sample_rate,
            d.channels,
            d.description
        );
    }
    Ok(exit_code::OK)
}

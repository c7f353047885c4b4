//! `verbatim completions SHELL` and `verbatim man`: shell completions and man pages made from
//! the same clap definitions as `--help`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::error::CliError;
use super::exit_code;

pub const COMPLETIONS_AFTER_HELP: &str = "\
Install (once; new shells pick them up):
  bash        verbatim completions bash > ~/.local/share/bash-completion/completions/verbatim
  zsh         verbatim completions zsh > ~/.zfunc/_verbatim   (with fpath+=~/.zfunc in ~/.zshrc)
  fish        verbatim completions fish > ~/.config/fish/completions/verbatim.fish
  powershell  verbatim completions powershell >> $PROFILE
  elvish      verbatim completions elvish >> ~/.config/elvish/rc.elv";

pub const MAN_AFTER_HELP: &str = "\
Examples:
  verbatim man | man -l -
  verbatim man --dir ~/.local/share/man/man1   (verbatim.1, verbatim-transcribe.1, ...)";

/// Options of `verbatim completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    #[arg(value_enum, value_name = "SHELL")]
    shell: Shell,
}

/// Options of `verbatim man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (verbatim.1, verbatim-transcribe.1, ...) into this directory
    /// instead of the main page to standard output.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run_completions(args: CompletionsArgs) -> Result<i32, CliError> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "verbatim", &mut out);
    write_stdout(&out)
}

pub fn run_man(args: ManArgs) -> Result<i32, CliError> {
    let cmd = super::Cli::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(cmd, &dir))
                .map_err(|e| {
                    CliError::failure(format!("{}: cannot write man pages: {e}", dir.display()))
                })?;
            Ok(exit_code::OK)
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| CliError::failure(format!("cannot render the man page: {e}")))?;
            write_stdout(&out)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> Result<i32, CliError> {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(exit_code::OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit_code::OK),
        Err(e) => Err(CliError::failure(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

//! The `verbatim` binary: parse the command line, dispatch, map errors to exit codes.

mod cli;

fn main() {
    std::process::exit(cli::run());
}

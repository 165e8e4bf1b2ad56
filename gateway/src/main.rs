//! The `portcullis` command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    portcullis::cli::init_logging();
    portcullis::cli::run(portcullis::cli::Cli::parse())
}

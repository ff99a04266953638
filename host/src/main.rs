//! The `cascade` binary: parse, dispatch, print. See [`cascade::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cascade::cli::Cli::parse();
    let mut out = std::io::stdout().lock();
    match cascade::cli::run(cli, &mut out) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("cascade: {err:#}");
            ExitCode::from(2)
        }
    }
}

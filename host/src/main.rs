//! The `cascade` binary: parse, dispatch, print. See [`cascade::cli`].

use std::process::ExitCode;

use clap::Parser;

// Small allocations dominate the per-event path (strings of events and
// commands); mimalloc made the pipeline benchmark ~10% faster than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cascade::cli::Cli::parse();
    let mut out = std::io::stdout().lock();
    match cascade::cli::run(cli, &mut out) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("cascade: {err:#}");
            ExitCode::from(cascade::cli::exit_status(&err))
        }
    }
}

//! The `cascade` binary: parse, dispatch, print. See [`cascade::cli`].

use std::process::ExitCode;

use clap::Parser;

// Small allocations dominate the per-event path (strings of events and
// commands); mimalloc made the pipeline benchmark ~10% faster than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stdout that treats a reader gone away (`cascade events | head -1`) as
/// the end of output, not as a failure: the work is done either way.
struct Stdout {
    inner: std::io::StdoutLock<'static>,
    closed: bool,
}

impl std::io::Write for Stdout {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(data.len());
        }
        match self.inner.write(data) {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(data.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.inner.flush() {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

fn main() -> ExitCode {
    let cli = cascade::cli::Cli::parse();
    let mut out = Stdout {
        inner: std::io::stdout().lock(),
        closed: false,
    };
    match cascade::cli::run(cli, &mut out) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("cascade: {err:#}");
            ExitCode::from(cascade::cli::exit_status(&err))
        }
    }
}

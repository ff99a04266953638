//! The `cascade` binary: parse, dispatch, print. See [`cascade_cli`].

use std::process::ExitCode;

use clap::Parser;

// Small allocations dominate the per-event path (strings of events and
// commands); mimalloc made the pipeline benchmark ~10% faster than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stdout that treats a reader gone away (`cascade events | head -1`) as
/// the end of output, not as a failure: the work is done either way.
struct Stdout {
    inner: std::io::Stdout,
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

/// The last panic's message and where it happened, kept by the panic hook
/// so that `main` reports it in one line.
static PANIC: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);

fn main() -> ExitCode {
    let cli = cascade_cli::Cli::parse();
    // Panics of the main thread and, for a command, of the engine's writer
    // thread are reported by `main`, in one line; a server's other threads
    // keep the default report.
    let serving = matches!(cli.command, cascade_cli::Action::Serve(_));
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let ours = match std::thread::current().name() {
            Some("main") => true,
            Some("cascade-writer") => !serving,
            _ => false,
        };
        if !ours {
            return default_hook(info);
        }
        let message = cascade_cli::panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some((message.to_owned(), location));
    }));
    let mut out = Stdout {
        inner: std::io::stdout(),
        closed: false,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cascade_cli::run(cli, &mut out)));
    // A panic of the writer thread ends its engine: the command then fails
    // with "the engine stopped", and the panic is what to report.
    let panicked = PANIC.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (result, panicked) {
        (Ok(Ok(status)), _) => ExitCode::from(status),
        (Ok(Err(err)), None) => {
            eprintln!("cascade: {err:#}");
            ExitCode::from(cascade_cli::exit_status(&err))
        }
        (_, panicked) => {
            let (message, location) = panicked.unwrap_or_default();
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            // redb panics on pages it cannot make sense of: a damaged file.
            if location.contains("/redb-") {
                eprintln!(
                    "cascade: the data file is damaged: redb failed reading it ({message}); nothing was changed; \
                     `cascade verify` lists the problems"
                );
                return ExitCode::from(cascade_cli::EXIT_STORAGE);
            }
            eprintln!("cascade: internal error: {message} (at {location})");
            ExitCode::from(101)
        }
    }
}

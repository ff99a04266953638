//! Helpers for the end-to-end tests in `tests/all/`: a host over a fresh
//! data directory with real plugins, and the CLI driven in-process.

use std::path::Path;

use cascade::{Command, CommandError, Event, Failure, HandlerFailure, Options, Runtime, Settled};

/// Paths of the built components: `plugins::WELCOME`, `plugins::FIXTURE_FAILING`, ...
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// A runtime over a temporary data directory.
pub struct TestHost {
    /// Kept alive for the runtime's lifetime.
    pub dir: tempfile::TempDir,
    /// The runtime under test.
    pub runtime: Runtime,
}

impl TestHost {
    /// A host with `plugins` added in order.
    pub fn with(plugins: &[&str]) -> TestHost {
        Self::with_options(plugins, Options::default())
    }

    /// A host with `plugins` added in order and the given pipeline options.
    pub fn with_options(plugins: &[&str], options: Options) -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        let mut runtime = Runtime::open(dir.path(), options).unwrap();
        for plugin in plugins {
            runtime.add_plugin(Path::new(plugin)).unwrap();
        }
        TestHost { dir, runtime }
    }

    /// Drop the runtime and open the same data directory again.
    pub fn reopen(self, options: Options) -> TestHost {
        let TestHost { dir, runtime } = self;
        drop(runtime);
        let runtime = Runtime::open(dir.path(), options).unwrap();
        TestHost { dir, runtime }
    }

    /// Execute a command and wait until it settled.
    pub fn exec(&mut self, stream_type: &str, stream_id: &str, command: &str, args: &str) -> Settled {
        self.runtime
            .pipeline()
            .execute(Command::new(stream_type, stream_id, command, args))
            .unwrap()
    }

    /// The whole event log.
    pub fn log(&mut self) -> Vec<Event> {
        self.runtime.pipeline().store().read_log(1, usize::MAX).unwrap()
    }

    /// Names of the events in the log, in order.
    pub fn log_names(&mut self) -> Vec<String> {
        self.log().into_iter().map(|e| e.name).collect()
    }
}

/// Run the CLI in-process against `data`; returns the exit status and stdout,
/// or the error message the binary would print after `cascade: `.
pub fn cli(data: &Path, args: &[&str]) -> (u8, String) {
    use clap::Parser;
    let mut argv = vec!["cascade", "--data", data.to_str().unwrap()];
    argv.extend_from_slice(args);
    let parsed = cascade::cli::Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    match cascade::cli::run(parsed, &mut out) {
        Ok(status) => (status, String::from_utf8(out).unwrap()),
        Err(err) => (2, format!("{err:#}")),
    }
}

/// The one failure of a settled cascade, which must be a handler failure.
pub fn only_handler_failure(settled: &Settled) -> &HandlerFailure {
    match settled.failures.as_slice() {
        [Failure::Handler(failure)] => failure,
        other => panic!("expected one handler failure, got {other:?}"),
    }
}

/// The one failure of a settled cascade, which must be a command error.
pub fn only_command_error(settled: &Settled) -> &CommandError {
    match settled.failures.as_slice() {
        [Failure::Command(err)] => err,
        other => panic!("expected one command error, got {other:?}"),
    }
}

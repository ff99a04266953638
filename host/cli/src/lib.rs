//! The `cascade` command line and `cascade serve`, composed from the
//! [`cascade`] library: argument parsing (clap), progress bars, printing,
//! the HTTP server and the project scaffolds live here, not in the library.
//!
//! Every command runs through an [`cascade::EngineHandle`], the same handle
//! an embedding program uses: commands and operator actions on the engine's
//! writer thread, reads of the log beside it. While `cascade serve` holds a
//! data directory, every other command on it is sent to that server and run
//! there, with the same output and exit status. Exit statuses: [`exit`].

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use cascade::{DATA_FILE, Engine, Load, Options, StoreError};

pub mod api;
mod args;
mod client;
mod commands;
pub mod exit;
pub mod scaffold;

pub use args::{Action, Cli, ClockAction, ParkedAction, PluginAction, PmAction, QueueAction};
pub use commands::execute;
pub use exit::{EXIT_BUSY, EXIT_STORAGE, Exit, exit_status};

/// Run the command line `cli`, writing to `out`. Returns the exit status.
///
/// # Errors
///
/// Anything that makes the exit status 2 (or [`exit_status`]); the caller
/// prints it.
pub fn run(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<u8> {
    test_clock()?;
    if let Some(store) = &cli.store {
        check_store_url(store)?;
    }
    let options = Options {
        max_causation_depth: cli.max_causation_depth,
        cache_mib: cli.cache_mib,
        cascade_budget: cli.cascade_budget,
        store: cli.store.clone(),
        ..Options::default()
    };
    if let Action::Serve(args) = cli.command {
        let options = Options {
            trace: args.trace,
            ..options
        };
        return api::serve(&cli.data, options, lock_timeout(cli.lock_timeout)?, args).map(|()| 0);
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    if let Action::New { name, lang, kind } = &cli.command {
        let dir = scaffold::create(&cwd, name, *lang, *kind, &scaffold::Home::find()?)?;
        writeln!(
            out,
            "created {}: `cd {name} && ./build.sh` builds {name}.wasm, `./test.sh` runs it",
            dir.display()
        )?;
        return Ok(0);
    }
    let action = resolve_inputs(cli.command, &cwd)?;
    if let Some(server) = client::Server::find(&cli.data) {
        return server.run(&action, &cwd, out);
    }
    if reads_only(&action) && cli.store.is_none() && !cli.data.join(DATA_FILE).exists() {
        anyhow::bail!(
            "data directory `{}` does not exist or holds no data file; check --data, or create it with `cascade plugin add`",
            cli.data.display()
        );
    }
    let options = Options {
        load: match action {
            Action::Read { .. } => Load::Projections,
            _ if reads_only(&action) => Load::None,
            _ => Load::All,
        },
        // Reading needs no write access, and never writes by mistake.
        read_only: reads_only(&action),
        ..options
    };
    let lock_timeout = lock_timeout(cli.lock_timeout)?;
    let engine = match Engine::start_on_demand(&cli.data, options.clone(), lock_timeout) {
        // After a crash an operator's first move is to look: a reading
        // command repairs the file when it can take it, then reads.
        Err(cascade::Error::Store(StoreError::NeedsRepair { .. })) => {
            cascade::Store::repair(&cli.data.join(DATA_FILE))
                .with_context(|| format!("cannot repair data directory `{}`", cli.data.display()))?;
            eprintln!(
                "cascade: the data file was not closed cleanly (a writer was killed); repaired it, nothing committed is lost"
            );
            Engine::start_on_demand(&cli.data, options, lock_timeout)
        }
        other => other,
    }
    .with_context(|| match &cli.store {
        Some(_) => "cannot open the PostgreSQL store (--store)".to_owned(),
        None => format!("cannot open data directory `{}`", cli.data.display()),
    })?;
    // No I/O or timer driver: the handle's answers come over channels. One
    // worker of a multi-threaded runtime, not a current-thread one: a
    // PostgreSQL store blocks on its client's own runtime, which tokio
    // allows only from there.
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .context("cannot start the async runtime")?
        .block_on(execute(action, &engine.handle(), &cwd, out));
    // Stop the writer after its current batch before reporting.
    engine.shutdown();
    result
}

/// `--store` takes a PostgreSQL URL; anything else is refused in one line
/// that does not echo it (it may hold a password).
fn check_store_url(value: &str) -> anyhow::Result<()> {
    if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        return Ok(());
    }
    let what = match value.split_once("://") {
        Some((scheme, _)) => format!("a `{scheme}://` URL"),
        None => "a value that is not a URL".to_owned(),
    };
    anyhow::bail!(
        "--store takes a PostgreSQL URL (postgres://USER@HOST:PORT/DB), not {what}; \
         leave it out to use the data directory's redb file"
    )
}

/// `CASCADE_TEST_CLOCK=MS`: this process runs on a clock that stands at MS
/// (milliseconds since the Unix epoch) until `cascade clock advance` moves it.
fn test_clock() -> anyhow::Result<()> {
    let Some(value) = std::env::var_os("CASCADE_TEST_CLOCK") else {
        return Ok(());
    };
    let millis = value
        .to_str()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .ok_or_else(|| {
            anyhow::anyhow!("CASCADE_TEST_CLOCK must be milliseconds since the Unix epoch, e.g. 1700000000000")
        })?;
    cascade::clock::set_test_clock(millis);
    Ok(())
}

fn lock_timeout(seconds: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| anyhow::anyhow!("--lock-timeout `{seconds}` is not a number of seconds"))
}

pub use cascade::panic_message;

/// JSON args from a file, or stdin for `-`.
fn read_args(file: &Path, cwd: &Path) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("cannot read args from stdin")?;
        return Ok(text);
    }
    let file = cwd.join(file);
    std::fs::read_to_string(&file).with_context(|| format!("cannot read args file `{}`", file.display()))
}

/// Read what the action takes from the client's side (args files, stdin)
/// before it runs, here or on a server.
fn resolve_inputs(mut action: Action, cwd: &Path) -> anyhow::Result<Action> {
    if let Action::Exec { args, args_file, .. } = &mut action
        && args.is_none()
        && let Some(file) = args_file.take()
    {
        *args = Some(read_args(&file, cwd)?);
    }
    Ok(action)
}

/// Whether the action only reads: those never create a data directory.
fn reads_only(action: &Action) -> bool {
    matches!(
        action,
        Action::Events { .. }
            | Action::Read { .. }
            | Action::Parked { action: None, .. }
            | Action::Effects { action: None, .. }
            | Action::Queue { action: None, .. }
            | Action::Verify { .. }
            | Action::Pm(PmAction::State { .. } | PmAction::Instances { .. })
            | Action::Timers { .. }
            | Action::Graph { .. }
            | Action::Plugin(PluginAction::List { .. } | PluginAction::Versions { .. })
    )
}

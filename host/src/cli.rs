//! The `cascade` command line: parses arguments, calls the library, prints.
//!
//! # Exit status
//!
//! - 0: success (for `exec`: the cascade settled with no failure);
//! - 1: `exec` settled, but something in the cascade failed (or a refresh
//!   had failing handlers);
//! - 2: an error: bad arguments, bad input, unreadable data directory;
//! - 3: the data directory is busy: another process held it for longer than
//!   `--lock-timeout`;
//! - 4: storage failed (no space left, permission denied, read-only, a
//!   corrupt or foreign file); the message names the cause.
//!
//! While `cascade serve` holds a data directory, every other command on it is
//! sent to that server and run there, on its writer thread, with the same
//! output and exit status.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api;
use crate::error::{Error, HandlerFailure, StoreError};
use crate::event::{Command, Event};
use crate::pipeline::{Load, Options, Outcome, RefreshReport, Settled, Submission};
use crate::runtime::{Runtime, Swap, SwapState};

/// The exit status of a data directory that stayed busy.
pub const EXIT_BUSY: u8 = 3;
/// The exit status of a storage failure (disk full, permission denied,
/// read-only file system, a corrupt file).
pub const EXIT_STORAGE: u8 = 4;

/// An error with its own exit status (the default for errors is 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The process exit status.
    pub status: u8,
    /// What to print after `cascade: `.
    pub message: String,
}

/// The exit status for an error `run` returned.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        return exit.status;
    }
    let store = match err.downcast_ref::<Error>() {
        Some(Error::Store(store)) => Some(store),
        _ => err.downcast_ref::<StoreError>(),
    };
    match store {
        Some(StoreError::Busy { .. }) => EXIT_BUSY,
        Some(
            StoreError::Redb(_)
            | StoreError::Corrupt { .. }
            | StoreError::Checksum { .. }
            | StoreError::NotADataFile { .. }
            | StoreError::NotWritable { .. }
            | StoreError::ReadOnly,
        ) => EXIT_STORAGE,
        _ => 2,
    }
}

/// Run event-sourced process managers as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "cascade", version)]
pub struct Cli {
    /// The data directory (holds `cascade.redb`).
    #[arg(long, global = true, default_value = "cascade-data", env = "CASCADE_DATA")]
    pub data: PathBuf,
    /// The longest chain of commands process managers may cause one after
    /// another before the next is refused as a likely cycle.
    #[arg(long, global = true, default_value_t = Options::default().max_causation_depth)]
    pub max_causation_depth: usize,
    /// The most events and commands one cascade may count before the
    /// commands that would grow it further are dropped.
    #[arg(long, global = true, default_value_t = Options::default().cascade_budget)]
    pub cascade_budget: usize,
    /// The data file's page cache, in MiB.
    #[arg(long, global = true, default_value_t = crate::store::DEFAULT_CACHE_MIB)]
    pub cache_mib: usize,
    /// Seconds to wait for a data directory another process holds.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub lock_timeout: f64,
    /// What to do.
    #[command(subcommand)]
    pub command: Action,
}

/// The subcommands.
#[derive(Clone, Debug, Subcommand, Serialize, Deserialize)]
pub enum Action {
    /// Run a long-lived host with an HTTP API over the data directory: hot
    /// loading of plugins, live event tail, metrics. Other `cascade`
    /// commands on the directory then talk to it.
    Serve(api::ServeArgs),
    /// Make a new plugin folder NAME/ that builds with `./build.sh` into
    /// NAME.wasm (and its manifest NAME.toml) and tests itself with
    /// `./test.sh`.
    New {
        /// The plugin's name, kebab-case.
        name: String,
        /// The language it is written in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::scaffold::Lang,
        /// What it is (Python and JavaScript: process managers).
        #[arg(long, value_enum, default_value = "process-manager")]
        kind: crate::scaffold::Kind,
    },
    /// Manage plugins (aggregates, process managers, projections).
    #[command(subcommand)]
    Plugin(PluginAction),
    /// Execute a command and wait until its whole cascade has settled.
    Exec {
        /// Aggregate, e.g. `users`.
        stream_type: String,
        /// Stream id, e.g. `u1`.
        stream_id: String,
        /// Command name, e.g. `create`.
        command: String,
        /// JSON arguments (default `{}`).
        #[arg(conflicts_with = "args_file")]
        args: Option<String>,
        /// Read the JSON arguments from this file, or from stdin with `-`
        /// (for args larger than the command line allows).
        #[arg(long, value_name = "PATH|-")]
        args_file: Option<PathBuf>,
        /// Who issues the command.
        #[arg(long)]
        actor: Option<String>,
        /// Fail unless the stream is at this version (optimistic concurrency).
        #[arg(long)]
        expect_version: Option<u64>,
        /// A retried command with the same key answers with the first one's
        /// cascade and runs nothing again.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// This cascade's budget of events and commands, instead of the
        /// dispatching plugins' manifests and the host's --cascade-budget.
        #[arg(long)]
        budget: Option<usize>,
        /// Print the settled answer as JSON.
        #[arg(long)]
        json: bool,
        /// Print every handler call: plugin, handler, event, outcome, duration.
        #[arg(long)]
        trace: bool,
    },
    /// Inspect and refresh process managers.
    #[command(subcommand)]
    Pm(PmAction),
    /// Replay every projection into empty read models and refresh every
    /// stateful process manager; stateless process managers are not called.
    Rebuild {
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Query read models: one document, a find by an indexed field, or the
    /// whole collection.
    Read {
        /// The collection, e.g. `projects`.
        collection: String,
        /// One document by id.
        id: Option<String>,
        /// Only documents whose indexed FIELD equals VALUE (JSON, or a bare string).
        #[arg(long = "where", value_name = "FIELD=VALUE", conflicts_with = "id")]
        filter: Option<String>,
        /// One JSON document per line.
        #[arg(long)]
        json: bool,
    },
    /// Events parked for a listener after its handler failed every attempt.
    Parked {
        /// Retry or skip one; without it, list them.
        #[command(subcommand)]
        action: Option<ParkedAction>,
        /// List as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queued commands by cascade; `queue cancel ID` drops a cascade's.
    Queue {
        /// Cancel one cascade's queued commands.
        #[command(subcommand)]
        action: Option<QueueAction>,
        /// List as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the data file: every event's checksum and position, stream
    /// heads against their events, checkpoints, state blobs. Lists every
    /// problem; exit status 4 when there is one.
    Verify {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the event log.
    Events {
        /// Only this stream, as `TYPE:ID`.
        #[arg(long)]
        stream: Option<String>,
        /// Start at this position.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// `cascade pm ...`
#[derive(Clone, Debug, Subcommand, Serialize, Deserialize)]
pub enum PmAction {
    /// Print a stateful process manager's committed state (pretty JSON, or
    /// size and hash when the blob is not JSON).
    State {
        /// The process manager.
        name: String,
    },
    /// Rebuild a stateful process manager's state by replaying every event it
    /// handles with `refreshing = true`; commands it dispatches are dropped.
    Refresh {
        /// The process manager.
        name: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `cascade queue ...`
#[derive(Clone, Debug, Subcommand, Serialize, Deserialize)]
pub enum QueueAction {
    /// Drop every queued command of a cascade, recording who and when.
    Cancel {
        /// The cascade's correlation id, e.g. `c7`.
        correlation_id: String,
        /// Who cancels it (default: `$USER`).
        #[arg(long)]
        by: Option<String>,
    },
}

/// `cascade parked ...`
#[derive(Clone, Debug, Subcommand, Serialize, Deserialize)]
pub enum ParkedAction {
    /// Call the handler again (e.g. after deploying a fixed version) and run
    /// what it dispatches.
    Retry {
        /// The parked id.
        id: u64,
    },
    /// Drop the parked event, recording who did it and when.
    Skip {
        /// The parked id.
        id: u64,
        /// Who skips it (default: `$USER`).
        #[arg(long)]
        by: Option<String>,
    },
}

/// `cascade plugin ...`
#[derive(Clone, Debug, Subcommand, Serialize, Deserialize)]
pub enum PluginAction {
    /// Validate and register components; a plugin with the same name is
    /// replaced, as a new version (between two batches, in a running server).
    Add {
        /// `.wasm` component files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A redeployed stateful process manager's state: `carry` it over,
        /// `refresh` it by replaying history, or `reset` it.
        #[arg(long, default_value = "carry")]
        state: SwapState,
    },
    /// The versions a plugin has had, oldest first; `*` marks the active one.
    Versions {
        /// The plugin.
        name: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Go back to the version before the active one.
    Rollback {
        /// The plugin.
        name: String,
        /// The state after the rollback: carry, refresh or reset.
        #[arg(long, default_value = "carry")]
        state: SwapState,
    },
    /// Start a plugin its error policy stopped: it catches up from where it
    /// stopped, then takes part in the pipeline again.
    Start {
        /// The plugin.
        name: String,
    },
    /// Stop a process manager or projection by hand; `plugin start` resumes
    /// it from where it stopped.
    Stop {
        /// The plugin.
        name: String,
        /// Who stops it (default: `$USER`).
        #[arg(long)]
        by: Option<String>,
    },
    /// Unregister a process manager or projection, broken or not; its
    /// versions are kept.
    Remove {
        /// The plugin.
        name: String,
    },
    /// List registered plugins in registration order.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run the command line `cli`, writing to `out`. Returns the exit status.
///
/// # Errors
///
/// Anything that makes the exit status 2 (or [`exit_status`]); the caller
/// prints it.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    if let Action::Serve(args) = cli.command {
        let options = Options {
            max_causation_depth: cli.max_causation_depth,
            cache_mib: cli.cache_mib,
            cascade_budget: cli.cascade_budget,
            ..Options::default()
        };
        return api::serve(&cli.data, options, lock_timeout(cli.lock_timeout)?, args).map(|()| 0);
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    if let Action::New { name, lang, kind } = &cli.command {
        let dir = crate::scaffold::create(&cwd, name, *lang, *kind, &crate::scaffold::Home::find()?)?;
        writeln!(
            out,
            "created {}: `cd {name} && ./build.sh` builds {name}.wasm, `./test.sh` runs it",
            dir.display()
        )?;
        return Ok(0);
    }
    let action = resolve_inputs(cli.command, &cwd)?;
    if let Some(server) = api::client::Server::find(&cli.data) {
        return server.run(&action, &cwd, out);
    }
    if reads_only(&action) && !cli.data.join(crate::runtime::DATA_FILE).exists() {
        anyhow::bail!(
            "data directory `{}` does not exist or holds no data file; check --data, or create it with `cascade plugin add`",
            cli.data.display()
        );
    }
    let options = Options {
        max_causation_depth: cli.max_causation_depth,
        cache_mib: cli.cache_mib,
        cascade_budget: cli.cascade_budget,
        load: match action {
            Action::Read { .. } => Load::Projections,
            _ if reads_only(&action) => Load::None,
            _ => Load::All,
        },
        // Reading needs no write access, and never writes by mistake.
        read_only: reads_only(&action),
        ..Options::default()
    };
    let mut runtime = Runtime::open_waiting(&cli.data, options, lock_timeout(cli.lock_timeout)?)
        .with_context(|| format!("cannot open data directory `{}`", cli.data.display()))?;
    execute(action, &mut runtime, &cwd, out)
}

fn lock_timeout(seconds: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| anyhow::anyhow!("--lock-timeout `{seconds}` is not a number of seconds"))
}

/// Run one action on an open runtime, writing to `out`; relative paths are
/// taken from `cwd`. This is where a server runs the commands of CLI clients.
///
/// # Errors
///
/// As [`run`].
pub fn execute(action: Action, runtime: &mut Runtime, cwd: &Path, out: &mut dyn Write) -> anyhow::Result<u8> {
    match action {
        Action::Serve(_) => anyhow::bail!("`cascade serve` cannot run inside a server"),
        Action::New { .. } => anyhow::bail!("`cascade new` writes files where it runs, not on a server"),
        Action::Plugin(PluginAction::Add { files, state }) => {
            for file in files {
                let record = runtime.add_plugin_with(
                    &cwd.join(file),
                    &Swap {
                        state,
                        ..Swap::default()
                    },
                )?;
                writeln!(out, "added {} `{}` ({})", record.kind, record.name, &record.hash[..12])?;
            }
            Ok(0)
        }
        Action::Plugin(PluginAction::Versions { name, json }) => {
            let (versions, active) = runtime.versions(&name)?;
            if json {
                let list: Vec<Value> = versions
                    .iter()
                    .map(|v| {
                        let mut value = serde_json::to_value(v).expect("versions serialize");
                        value["active"] = json!(v.version == active);
                        value
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
                return Ok(0);
            }
            for v in &versions {
                let mark = if v.version == active { '*' } else { ' ' };
                writeln!(
                    out,
                    "{mark} v{:<4} {}  {}  by {}  {}",
                    v.version,
                    &v.hash[..12],
                    v.deployed_at,
                    escape(&v.deployed_by),
                    escape(&v.source)
                )?;
            }
            Ok(0)
        }
        Action::Plugin(PluginAction::Rollback { name, state }) => {
            let version = runtime.rollback(
                &name,
                &Swap {
                    state,
                    ..Swap::default()
                },
            )?;
            writeln!(
                out,
                "rolled `{name}` back to v{} ({})",
                version.version,
                &version.hash[..12]
            )?;
            Ok(0)
        }
        Action::Plugin(PluginAction::List { json }) => {
            let statuses = runtime.statuses()?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&statuses)?)?;
                return Ok(0);
            }
            let width = statuses.iter().map(|s| s.record.name.len()).max().unwrap_or(0).max(4);
            for s in &statuses {
                let p = &s.record;
                let mut line = format!(
                    "{:<width$} {:<15} v{:<3} {}  {}",
                    escape(&p.name),
                    p.kind,
                    s.version,
                    &p.hash[..12],
                    escape(&p.source)
                );
                if let Some(l) = &s.listener {
                    line.push_str(&format!(
                        "  checkpoint #{} (lag {}), {} call(s), {} failure(s), {} parked",
                        l.checkpoint, l.lag, l.calls, l.failures, l.parked
                    ));
                    if let Some(bytes) = l.state_bytes {
                        line.push_str(&format!(", state {bytes} B"));
                    }
                    if let Some(bytes) = l.memory_bytes {
                        line.push_str(&format!(", memory {:.1} MiB", bytes as f64 / f64::from(1 << 20)));
                    }
                    if l.stopped {
                        line.push_str(&format!("  stopped after #{}", l.checkpoint));
                    }
                }
                if let Some(reason) = &s.stopped_because {
                    line.push_str(&format!("  stopped: {}", escape(reason)));
                }
                writeln!(out, "{line}")?;
            }
            Ok(0)
        }
        Action::Plugin(PluginAction::Stop { name, by }) => {
            let by = operator(by);
            runtime.stop_plugin(&name, &by)?;
            writeln!(out, "`{name}` stopped; `cascade plugin start {name}` resumes it")?;
            Ok(0)
        }
        Action::Plugin(PluginAction::Remove { name }) => {
            let record = runtime.remove_plugin(&name)?;
            writeln!(out, "removed {} `{}`", record.kind, record.name)?;
            Ok(0)
        }
        Action::Plugin(PluginAction::Start { name }) => {
            let handled = runtime.pipeline().start_listener(&name)?;
            match runtime.pipeline_ref().stopped().iter().find(|(n, _)| *n == name) {
                Some((_, at)) => {
                    writeln!(
                        out,
                        "`{name}` caught up {handled} event(s) and stopped again after #{at}"
                    )?;
                    Ok(1)
                }
                None => {
                    writeln!(out, "`{name}` caught up {handled} event(s) and is running")?;
                    Ok(0)
                }
            }
        }
        Action::Exec {
            stream_type,
            stream_id,
            command,
            args,
            args_file,
            actor,
            expect_version,
            idempotency_key,
            budget,
            json,
            trace,
        } => {
            let args = match (args, args_file) {
                (Some(args), _) => args,
                (None, None) => "{}".to_owned(),
                (None, Some(file)) => read_args(&file, cwd)?,
            };
            let mut command = Command::new(&stream_type, &stream_id, &command, &args);
            command.actor_id = actor;
            let pipeline = runtime.pipeline();
            pipeline.set_trace(trace);
            let submission = Submission {
                command,
                expected_version: expect_version,
                idempotency_key,
                cascade_budget: budget,
            };
            let settled = pipeline.execute_submission(submission)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&settled.to_json())?)?;
            } else {
                print_settled(out, &settled, trace)?;
            }
            Ok(if settled.is_ok() { 0 } else { 1 })
        }
        Action::Pm(PmAction::State { name }) => {
            match runtime.pm_state(&name)? {
                None => writeln!(out, "`{name}` has no state yet (it has not handled an event)")?,
                Some(blob) => match serde_json::from_slice::<Value>(&blob) {
                    Ok(json) => writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?,
                    Err(_) => writeln!(
                        out,
                        "{} bytes, sha256 {}",
                        blob.len(),
                        crate::plugin::content_hash(&blob)
                    )?,
                },
            }
            Ok(0)
        }
        Action::Pm(PmAction::Refresh { name, json }) => {
            let bar = progress_bar();
            bar.set_message(name.clone());
            let report = runtime.pipeline().refresh(&name, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            print_reports(out, &[report], json)
        }
        Action::Rebuild { json } => {
            let bar = progress_bar();
            let reports = runtime.pipeline().rebuild(&mut |name, done, total| {
                bar.set_message(name.to_owned());
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            print_reports(out, &reports, json)
        }
        Action::Read {
            collection,
            id,
            filter,
            json,
        } => {
            let read_models = runtime.pipeline().read_models().clone();
            let documents = match (id, filter) {
                (Some(id), _) => match read_models.get(&collection, &id)? {
                    Some(body) => vec![(id, body)],
                    None => anyhow::bail!("collection `{collection}` has no document `{id}`"),
                },
                (None, Some(filter)) => {
                    let (field, value) = filter
                        .split_once('=')
                        .with_context(|| format!("--where `{filter}` must be FIELD=VALUE, e.g. groupId=g1"))?;
                    // A bare word is a string; anything else must be JSON.
                    let value = match serde_json::from_str::<Value>(value) {
                        Ok(_) => value.to_owned(),
                        Err(_) => Value::String(value.to_owned()).to_string(),
                    };
                    read_models.find(&collection, field, &value)?
                }
                (None, None) => {
                    let mut all = Vec::new();
                    let mut after = None;
                    loop {
                        let (page, next) = read_models.list(&collection, after.as_deref(), 1000)?;
                        all.extend(page);
                        match next {
                            Some(next) => after = Some(next),
                            None => break all,
                        }
                    }
                }
            };
            for (id, body) in documents {
                if json {
                    writeln!(out, "{body}")?;
                } else {
                    writeln!(out, "{id}  {body}")?;
                }
            }
            Ok(0)
        }
        Action::Parked { action: None, json } => {
            let parked = runtime.pipeline_ref().parked()?;
            if json {
                let list: Vec<Value> = parked.iter().map(|(id, p)| p.to_json(*id)).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for (id, p) in &parked {
                    writeln!(
                        out,
                        "#{id:<4} {} {} {} #{} ({} attempt(s)): {}",
                        p.plugin, p.handler, p.event, p.position, p.attempts, p.message
                    )?;
                }
            }
            Ok(0)
        }
        Action::Parked {
            action: Some(ParkedAction::Retry { id }),
            ..
        } => match runtime.pipeline().retry_parked(id)? {
            None => {
                writeln!(out, "parked #{id} succeeded and is no longer parked")?;
                Ok(0)
            }
            Some(again) => {
                let parked = runtime.pipeline_ref().parked()?;
                let message = parked
                    .iter()
                    .find(|(i, _)| *i == again)
                    .map_or("", |(_, p)| p.message.as_str());
                writeln!(out, "parked #{id} failed again and is parked as #{again}: {message}")?;
                Ok(1)
            }
        },
        Action::Parked {
            action: Some(ParkedAction::Skip { id, by }),
            ..
        } => {
            let by = operator(by);
            let skipped = runtime.pipeline().skip_parked(id, &by)?;
            writeln!(
                out,
                "skipped parked #{id} ({} {} #{}), recorded as skipped by {by}",
                skipped.parked.plugin, skipped.parked.event, skipped.parked.position
            )?;
            Ok(0)
        }
        Action::Queue { action: None, json } => {
            let queue = runtime.pipeline_ref().queue()?;
            if json {
                let list: Vec<Value> = queue
                    .iter()
                    .map(|(id, n, oldest)| json!({ "correlationId": id, "queued": n, "oldest": oldest }))
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for (id, n, oldest) in &queue {
                    writeln!(
                        out,
                        "{id:<8} {n} queued, oldest {} on {}",
                        escape(&oldest.name),
                        escape(&oldest.stream())
                    )?;
                }
            }
            Ok(0)
        }
        Action::Queue {
            action: Some(QueueAction::Cancel { correlation_id, by }),
            ..
        } => {
            let by = operator(by);
            let dropped = runtime.pipeline().cancel(&correlation_id, &by)?;
            writeln!(
                out,
                "cancelled cascade {correlation_id}: {dropped} queued command(s) dropped, recorded as by {by}"
            )?;
            Ok(0)
        }
        Action::Verify { json } => {
            let store = runtime.pipeline_ref().store();
            // A damaged page can make redb panic: that is a finding too.
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.verify()));
            let verification = match found {
                Ok(verification) => verification?,
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    let mut v = crate::store::Verification::default();
                    v.problems.push(format!(
                        "the file's structure is damaged: redb failed reading it: {}",
                        crate::sandbox::one_line(message)
                    ));
                    v
                }
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&verification)?)?;
            } else {
                for problem in &verification.problems {
                    writeln!(out, "{}", escape(problem))?;
                }
                if verification.unlisted > 0 {
                    writeln!(out, "... and {} more problem(s)", verification.unlisted)?;
                }
                let v = &verification;
                let summary = match v.problems.len() as u64 + v.unlisted {
                    0 => "no problem found".to_owned(),
                    n => format!("{n} problem(s)"),
                };
                writeln!(
                    out,
                    "verified {} event(s), {} stream(s), {} checkpoint(s), {} state blob(s): {summary}",
                    v.events, v.streams, v.checkpoints, v.states
                )?;
            }
            Ok(if verification.is_ok() { 0 } else { EXIT_STORAGE })
        }
        Action::Events { stream, from, json } => {
            let print = |out: &mut dyn Write, event: &Event| match json {
                true => writeln!(out, "{}", event.to_json()),
                false => writeln!(out, "{}", event_line(event)),
            };
            let log = runtime.pipeline_ref().store().reader();
            match stream {
                Some(stream) => {
                    let (stream_type, stream_id) = stream
                        .split_once(':')
                        .with_context(|| format!("--stream `{stream}` must be TYPE:ID, e.g. users:u1"))?;
                    for event in log
                        .read_stream(stream_type, stream_id)?
                        .iter()
                        .filter(|e| e.position >= from)
                    {
                        print(out, event)?;
                    }
                }
                // Page by page: memory stays flat however long the log is.
                None => {
                    let mut next = from.max(1);
                    loop {
                        let page = log.read_log(next, EVENTS_PAGE)?;
                        let Some(last) = page.last() else { break };
                        next = last.position + 1;
                        for event in &page {
                            print(out, event)?;
                        }
                    }
                }
            }
            Ok(0)
        }
    }
}

/// The message a panic carried.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("no message")
}

/// Who an operator action is recorded as: `--by`, else `$USER`.
fn operator(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

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
            | Action::Queue { action: None, .. }
            | Action::Verify { .. }
            | Action::Pm(PmAction::State { .. })
            | Action::Plugin(PluginAction::List { .. } | PluginAction::Versions { .. })
    )
}

/// Events read per read transaction by `cascade events`.
const EVENTS_PAGE: usize = 1024;

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} events {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn print_reports(out: &mut dyn Write, reports: &[RefreshReport], json: bool) -> anyhow::Result<u8> {
    if json {
        let reports: Vec<Value> = reports.iter().map(RefreshReport::to_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&reports)?)?;
    } else {
        if reports.is_empty() {
            writeln!(out, "no stateful process manager to refresh")?;
        }
        for r in reports {
            let rate = r.through as f64 / r.elapsed.as_secs_f64().max(1e-9);
            writeln!(
                out,
                "refreshed `{}` through position {}: {} event(s) replayed, {} call(s), {} skipped, \
                 {} dispatched command(s) dropped, {} failure(s), in {:.2?} ({rate:.0} events/s scanned)",
                r.listener,
                r.through,
                r.events,
                r.calls,
                r.skipped,
                r.dropped_commands,
                r.failures.len(),
                r.elapsed
            )?;
            for failure in &r.failures {
                writeln!(out, "failed: {failure}")?;
            }
        }
    }
    Ok(if reports.iter().all(|r| r.failures.is_empty()) {
        0
    } else {
        1
    })
}

fn event_line(e: &Event) -> String {
    // Names and ids come from outside: escaped, so they cannot move the
    // cursor or fake lines on a terminal.
    format!(
        "#{:<5} {:<16} {}:{} v{}  {}  (correlation {}, caused by {})",
        e.position,
        escape(&e.name),
        escape(&e.stream_type),
        escape(&e.stream_id),
        e.stream_version,
        escape(&e.payload),
        e.correlation_id,
        e.causation_id
    )
}

fn print_settled(out: &mut dyn Write, settled: &Settled, trace: bool) -> std::io::Result<()> {
    writeln!(
        out,
        "cascade {} settled: {} event(s), {} command(s), {} failure(s)",
        settled.correlation_id,
        settled.events.len(),
        settled.commands.len(),
        settled.failures.len()
    )?;
    for event in &settled.events {
        writeln!(out, "  {}", event_line(event))?;
    }
    if trace {
        writeln!(out, "trace:")?;
        // Columns as wide as their longest entry, at least the usual width.
        let plugin_width = settled.trace.iter().map(|t| t.plugin.len()).max().unwrap_or(0).max(16);
        let handler_width = settled.trace.iter().map(|t| t.handler.len()).max().unwrap_or(0).max(24);
        for t in &settled.trace {
            let outcome = match &t.outcome {
                Outcome::Ok => "ok".to_owned(),
                Outcome::Skipped => "skipped".to_owned(),
                Outcome::Failed(message) => format!("failed: {message}"),
            };
            writeln!(
                out,
                "  {:<plugin_width$} {:<handler_width$} {} #{}  {}  {:?}",
                t.plugin,
                t.handler,
                t.event,
                t.position,
                escape(&outcome),
                t.duration
            )?;
        }
    }
    for line in &settled.logs {
        writeln!(out, "  [{}] {:?}: {}", line.plugin, line.level, escape(&line.message))?;
    }
    for failure in &settled.failures {
        writeln!(out, "failed: {failure}")?;
        match failure {
            crate::error::Failure::Handler(HandlerFailure { parked: Some(id), .. }) => {
                writeln!(
                    out,
                    "  parked as #{id}: `cascade parked retry {id}` or `cascade parked skip {id}`"
                )?;
            }
            crate::error::Failure::Handler(HandlerFailure {
                stopped: true, plugin, ..
            }) => {
                writeln!(
                    out,
                    "  `{plugin}` stopped; fix it, then `cascade plugin start {plugin}`"
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Text for a terminal: control characters (newlines, escape codes) are
/// shown escaped instead of acting on the screen.
pub(crate) fn escape(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

//! The command line's arguments (clap): global options and subcommands.

use std::path::PathBuf;

use cascade::{Options, SwapState};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::api;

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
    #[arg(long, global = true, default_value_t = cascade::DEFAULT_CACHE_MIB)]
    pub cache_mib: usize,
    /// A PostgreSQL database (`postgres://USER@HOST:PORT/DB`) to keep
    /// everything in instead of the data directory's redb file; the data
    /// directory then holds only what a server writes beside it.
    #[arg(long, global = true, env = "CASCADE_STORE")]
    pub store: Option<String>,
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
    /// Inspect and refresh process managers and their instances.
    #[command(subcommand)]
    Pm(PmAction),
    /// The flow graph: which aggregate takes which command and emits which
    /// event, which listeners react to it, which commands they may
    /// dispatch, and the cycles (the loop guard would cut them at run time).
    Graph {
        /// `dot` (Graphviz) or `json`.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Pending timers of every process manager, in due order.
    Timers {
        /// Timers per page.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The test clock (tests and demos): see `CASCADE_TEST_CLOCK` in the README.
    #[command(subcommand)]
    Clock(ClockAction),
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
    /// Effects in the outbox: HTTP requests waiting to be performed, in
    /// flight, or parked after every attempt failed.
    Effects {
        /// Retry or skip a parked one; without it, list them.
        #[command(subcommand)]
        action: Option<EffectsAction>,
        /// Only those waiting or in flight.
        #[arg(long, conflicts_with = "failed")]
        pending: bool,
        /// Only parked ones (every attempt failed).
        #[arg(long)]
        failed: bool,
        /// Effects per page.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// List as JSON.
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
    /// List a per-instance process manager's instances, in id order: id,
    /// state size, pending timers, the last event that changed it.
    Instances {
        /// The process manager.
        name: String,
        /// Start after this instance id (the last one of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Instances per page.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print one instance's committed state (pretty JSON, or size and hash
    /// when it is not JSON) and its pending timers.
    State {
        /// The process manager.
        name: String,
        /// The instance (`cascade pm instances NAME` lists them); default
        /// `singleton`, the one instance of a single-instance process manager.
        #[arg(long)]
        instance: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a per-instance process manager's instances and timers by
    /// replaying every event it handles with `refreshing = true`; commands
    /// it dispatches are dropped and no timer fires.
    Refresh {
        /// The process manager.
        name: String,
        /// Only this instance: its events, up to the checkpoint.
        #[arg(long)]
        instance: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `cascade clock ...`
#[derive(Clone, Debug, Subcommand, Serialize, Deserialize)]
pub enum ClockAction {
    /// Move the test clock forward (a host started with
    /// `CASCADE_TEST_CLOCK=MS`) and fire the timers that became due.
    Advance {
        /// Milliseconds.
        millis: u64,
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

/// `cascade effects ...`
#[derive(Clone, Debug, Subcommand, Serialize, Deserialize)]
pub enum EffectsAction {
    /// Perform a parked effect again, with the same key.
    Retry {
        /// The effect's key.
        key: String,
    },
    /// Give up a parked effect: its plugin gets the failure as the outcome.
    Skip {
        /// The effect's key.
        key: String,
        /// Who skips it (default: `$USER`).
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

/// How `cascade graph` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum GraphFormat {
    /// Graphviz's DOT language: `cascade graph | dot -Tsvg > graph.svg`.
    Dot,
    /// Nodes, edges and cycles, as `GET /graph` answers.
    Json,
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
        /// A grant on top of the manifest's: `dispatch=AGGREGATE.COMMAND`
        /// (or `AGGREGATE.*`), `read=COLLECTION` (or `*`), or `http=ORIGIN`
        /// (its effects may call URLs under ORIGIN: scheme, host, port, path
        /// prefix).
        #[arg(long = "grant", value_name = "KIND=VALUE")]
        grants: Vec<String>,
        /// Allow a redeploy that gets more than the active version: events
        /// handled, commands, collections read or written, origins, limits.
        #[arg(long)]
        accept_grants: bool,
        /// Who deploys, recorded with the version and the grant change
        /// (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// A configuration value on top of the manifest's `[config]` (VALUE
        /// is JSON, or else a string), read with `config.get`.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// A secret configuration value read from FILE (its text, trailing
        /// newline dropped), read with `config.get`, never shown. Kept by
        /// later deploys that do not give it again.
        #[arg(long = "secret", value_name = "KEY=@FILE")]
        secrets: Vec<String>,
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

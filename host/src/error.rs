//! Error types, one per family of operations, all convertible into [`Error`].
//!
//! Every message says what failed and names its subject (plugin, stream,
//! event, export) in backticks, so a plugin author can act on it without
//! reading host code.

use serde::{Deserialize, Serialize};

/// Appending to a stream whose version is not the one the writer expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("concurrency conflict on stream `{stream}`: expected version {expected}, found {actual}")]
pub struct ConcurrencyError {
    /// `stream-type:stream-id`.
    pub stream: String,
    /// The version the writer based its decision on.
    pub expected: u64,
    /// The stream's version in the log.
    pub actual: u64,
}

/// A payload an aggregate produced that breaks its event's JSON Schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("event `{event}` breaks its schema at `{field}`: {message}")]
pub struct EventValidationError {
    /// The event name.
    pub event: String,
    /// JSON pointer of the failing field (`/name`), or `/` for the payload itself.
    pub field: String,
    /// What the schema expected.
    pub message: String,
}

/// A command that could not be executed; nothing of it was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("command `{command}` on `{stream}` failed: {reason}")]
pub struct CommandError {
    /// The aggregate (stream type) the command was sent to.
    pub aggregate: String,
    /// The command name.
    pub command: String,
    /// `stream-type:stream-id`.
    pub stream: String,
    /// Why.
    pub reason: CommandFailure,
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CommandFailure {
    /// No aggregate is registered under the stream type.
    #[error("no aggregate `{aggregate}` is registered (registered: {known}); add its plugin with `cascade plugin add`")]
    UnknownAggregate {
        /// The stream type asked for.
        aggregate: String,
        /// The registered aggregates, comma-separated.
        known: String,
    },
    /// The aggregate does not declare the command.
    #[error("aggregate `{aggregate}` has no command `{command}` (it accepts {known})")]
    UnknownCommand {
        /// The aggregate.
        aggregate: String,
        /// The command asked for.
        command: String,
        /// The declared commands, comma-separated.
        known: String,
    },
    /// The args are not JSON.
    #[error("args are not valid JSON: {0}")]
    InvalidArgs(String),
    /// The stream id is empty, too long, or holds control characters.
    #[error("the stream id is not valid: {0}; use up to 256 bytes of printable text")]
    InvalidStreamId(String),
    /// The aggregate refused the command against its current state.
    #[error("aggregate `{aggregate}` rejected it: {message}")]
    Rejected {
        /// The aggregate.
        aggregate: String,
        /// Its reason.
        message: String,
    },
    /// The aggregate produced an event that is undeclared or breaks its schema.
    #[error(transparent)]
    InvalidEvent(#[from] EventValidationError),
    /// The stream moved on since the command was issued.
    #[error(transparent)]
    Concurrency(#[from] ConcurrencyError),
    /// The aggregate's component trapped or misbehaved.
    #[error("aggregate `{aggregate}` failed: {message}")]
    Guest {
        /// The aggregate.
        aggregate: String,
        /// The trap or host error.
        message: String,
    },
}

/// A listener's handler that did not complete (the JS library's
/// `ProcessManagerEventHandlerExecutionError`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("process manager `{plugin}` failed in `{handler}` handling `{event}` (position {position}): {message}")]
pub struct HandlerFailure {
    /// The listener's name.
    pub plugin: String,
    /// The export, e.g. `on-user-created`.
    pub handler: String,
    /// The event name.
    pub event: String,
    /// The event's position.
    pub position: u64,
    /// What the handler or the host said.
    pub message: String,
    /// The id the event is parked under for this listener, if it was.
    pub parked: Option<u64>,
    /// Whether the listener's error policy stopped it at this event.
    #[serde(default)]
    pub stopped: bool,
}

/// A process manager dispatched a command that produced the very event it
/// was handling (same name, stream and payload); nothing of it was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error(
    "Infinite loop detected. Process Manager \"{plugin}\" listens and emits same event \"{event}\" for stream {stream}, causing a recurring event cycle"
)]
pub struct InfiniteLoopError {
    /// The process manager.
    pub plugin: String,
    /// The event name.
    pub event: String,
    /// `stream-type:stream-id`.
    pub stream: String,
}

/// A chain of commands caused by process managers grew past the limit; the
/// command at its end was not queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error(
    "causation chain longer than {max} commands, stopped as a likely cycle through process managers: {}",
    chain.join(" -> ")
)]
pub struct CausationDepthError {
    /// The configured maximum depth.
    pub max: usize,
    /// Each link as `process-manager/Event`, oldest first.
    pub chain: Vec<String>,
}

/// One failure inside a cascade, reported in its settled answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Failure {
    /// A command failed; none of its events were appended.
    #[error(transparent)]
    Command(CommandError),
    /// A handler failed; the pipeline went on with the next listener.
    #[error(transparent)]
    Handler(HandlerFailure),
    /// A command would have re-emitted the event that caused it.
    #[error(transparent)]
    InfiniteLoop(InfiniteLoopError),
    /// A chain of dispatched commands grew too long.
    #[error(transparent)]
    CausationDepth(CausationDepthError),
    /// The cascade grew past its budget; its remaining work was dropped.
    #[error(transparent)]
    CascadeBudget(CascadeBudgetError),
    /// An operator cancelled the cascade's queued commands.
    #[error("cancelled by {by} at {at} (ms since the epoch): {dropped} queued command(s) dropped")]
    Cancelled {
        /// Who cancelled it.
        by: String,
        /// When, in milliseconds since the Unix epoch.
        at: u64,
        /// Queued commands dropped.
        dropped: u64,
    },
}

/// A cascade that grew past its budget of events and commands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error(
    "cascade exceeded its budget of {max} events and commands; the {dropped} command(s) that would have grown it further were dropped, last dispatched by `{plugin}` (if the cascade is legitimate, raise its budget: `exec --budget`, `cascade-budget` in the plugin's manifest, or `--cascade-budget`)"
)]
pub struct CascadeBudgetError {
    /// The budget.
    pub max: usize,
    /// The process manager whose dispatch crossed it.
    pub plugin: String,
    /// Commands dropped when the budget was crossed.
    pub dropped: usize,
}

/// The redb file could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine (redb) failed: its message, on one line. The
    /// store converts its engine's errors into this, so no other layer
    /// names the engine.
    #[error("storage error: {message}")]
    Backend {
        /// What the engine said.
        message: String,
    },
    /// The store's server cannot be reached, or the connection to it broke
    /// (PostgreSQL). The unit of work did not commit, unless the connection
    /// broke during its commit, when its outcome is unknown: a caller
    /// retries with an idempotency key.
    #[error("store `{store}` is unavailable: {message}")]
    Unavailable {
        /// The store, as given (without a password).
        store: String,
        /// What the client said.
        message: String,
    },
    /// The file was written by a newer Cascade.
    #[error("data file `{path}` has schema version {found}, this build supports up to {supported}; upgrade cascade")]
    NewerSchema {
        /// The file.
        path: String,
        /// Its schema version.
        found: u64,
        /// This build's schema version.
        supported: u64,
    },
    /// The file is not a Cascade data file.
    #[error("`{path}` is not a Cascade data file: {reason}; move it away or point --data elsewhere")]
    NotADataFile {
        /// The file.
        path: String,
        /// Why not.
        reason: String,
    },
    /// Another process holds the data file.
    #[error("data file `{path}` is busy: {holder} holds it; stop it, or wait longer with --lock-timeout")]
    Busy {
        /// The file.
        path: String,
        /// What holds it, as far as the data directory says.
        holder: String,
    },
    /// A stored record could not be decoded.
    #[error("stored record in table `{table}` is unreadable: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The data file (or its directory) cannot be written by this user.
    #[error(
        "data file `{path}` is not writable (permission denied): commands that only read \
         (events, read, plugin list, pm state, parked, queue, verify) still work"
    )]
    NotWritable {
        /// The file.
        path: String,
    },
    /// The file was not closed cleanly (a crash) and needs the repair that
    /// only a writable open makes ([`crate::Store::repair`]).
    #[error(
        "data file `{path}` was not closed cleanly (the process writing it was killed) and needs a repair, \
         which a command that only reads cannot make here: run `cascade verify` where the data directory is writable"
    )]
    NeedsRepair {
        /// The file.
        path: String,
    },
    /// A write on a data file opened read-only (by a command that only reads).
    #[error("the data file is open read-only (for a command that only reads) and this would write to it")]
    ReadOnly,
    /// A stored record does not match its checksum: it was changed on disk.
    #[error(
        "{record} in table `{table}` fails its checksum ({detail}): the data file is damaged; \
         it is not served; `cascade verify` lists every problem"
    )]
    Checksum {
        /// The table.
        table: &'static str,
        /// Which record, e.g. `event #12`.
        record: String,
        /// Stored and computed checksums.
        detail: String,
    },
}

/// A component that cannot be registered. Nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The bytes are not a WebAssembly component.
    #[error("`{file}` is not a WebAssembly component: {message}; build it with `cargo build --target wasm32-wasip2`")]
    NotAComponent {
        /// Where the bytes came from.
        file: String,
        /// wasmtime's reason.
        message: String,
    },
    /// A handler export names an event no registered aggregate declares.
    #[error(
        "plugin `{plugin}` exports `{export}` for event `{event}`, which no registered aggregate declares (declared: {known}); register the aggregate first or fix the export name"
    )]
    UnknownEvent {
        /// The plugin.
        plugin: String,
        /// The export, e.g. `on-planet-exploded`.
        export: String,
        /// The event name derived from it.
        event: String,
        /// Every declared event, comma-separated.
        known: String,
    },
    /// A handler export has the wrong function type.
    #[error("plugin `{plugin}` export `{export}` has the wrong signature: expected `{expected}`, found `{found}`")]
    WrongSignature {
        /// The plugin.
        plugin: String,
        /// The export.
        export: String,
        /// The signature handlers must have.
        expected: &'static str,
        /// What the component declares.
        found: String,
    },
    /// The component is neither an aggregate nor a process manager.
    #[error(
        "plugin `{plugin}` exports neither `cascade:runtime/aggregate` nor any `on-<event>`/`after-<event>` handler"
    )]
    NoHandlers {
        /// The plugin.
        plugin: String,
    },
    /// Two aggregates claim the same event name.
    #[error("aggregate `{plugin}` declares event `{event}`, which aggregate `{owner}` already declares")]
    DuplicateEvent {
        /// The new aggregate.
        plugin: String,
        /// The event.
        event: String,
        /// The aggregate that declared it first.
        owner: String,
    },
    /// An aggregate's declaration is unusable (bad schema, bad name).
    #[error("aggregate `{plugin}` is invalid: {message}")]
    InvalidAggregate {
        /// The aggregate.
        plugin: String,
        /// What is wrong.
        message: String,
    },
    /// The plugin's manifest does not parse.
    #[error("manifest `{file}` is invalid: {message}")]
    InvalidManifest {
        /// The manifest file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The component imports interfaces the host does not grant.
    #[error("plugin `{plugin}` imports {imports}: {reason}")]
    ForbiddenImport {
        /// The plugin.
        plugin: String,
        /// Every refused interface, quoted and comma-separated.
        imports: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The component was built against another version of `cascade:runtime`.
    #[error(
        "plugin `{plugin}` was built for `{interface}`, but this host speaks cascade:runtime@{expected}; \
         rebuild it with the matching cascade-sdk"
    )]
    ContractVersion {
        /// The plugin.
        plugin: String,
        /// The imported or exported interface, with its version.
        interface: String,
        /// The version this host speaks.
        expected: &'static str,
    },
    /// No effect in the outbox has this key.
    #[error("no effect `{key}` in the outbox; list them with `cascade effects`")]
    UnknownEffect {
        /// The key asked for.
        key: String,
    },
    /// The effect is still being tried: only a parked one can be retried or skipped.
    #[error("effect `{key}` is not parked: it is still being tried (`cascade effects --failed` lists parked ones)")]
    EffectNotParked {
        /// The key asked for.
        key: String,
    },
    /// No parked event has this id.
    #[error("no parked event #{id}; list them with `cascade parked`")]
    UnknownParked {
        /// The id asked for.
        id: u64,
    },
    /// A parked event's handler is not in the deployed version any more.
    #[error("parked #{id}: `{plugin}` no longer has the handler `{handler}`; drop it with `cascade parked skip {id}`")]
    HandlerGone {
        /// The parked id.
        id: u64,
        /// The plugin.
        plugin: String,
        /// The export that failed.
        handler: String,
    },
    /// No plugin is registered under this name.
    #[error("no process manager `{name}` is registered (registered: {known})")]
    UnknownListener {
        /// The name asked for.
        name: String,
        /// The registered process managers, comma-separated.
        known: String,
    },
    /// No plugin of any kind has this name.
    #[error("no plugin `{name}` is registered; `cascade plugin list` shows the registered ones")]
    UnknownPlugin {
        /// The name asked for.
        name: String,
    },
    /// A rollback of a plugin whose active version is its oldest.
    #[error("plugin `{name}` has no version older than the active version {active} to roll back to")]
    NoOlderVersion {
        /// The plugin.
        name: String,
        /// Its active version.
        active: u64,
    },
    /// A redeploy asks for more than the active version was granted, and the
    /// operator did not accept it.
    #[error(
        "`{name}` would get more than its active version: {}; deploy again with `--accept-grants` \
         (`acceptGrants=true` over HTTP) to allow it",
        widened.join(", ")
    )]
    GrantsWidened {
        /// The plugin.
        name: String,
        /// What it would get, one item each.
        widened: Vec<String>,
    },
    /// One instance cannot be refreshed while the process manager is between
    /// the two phases of an event (its `after-` handler waits for a retry):
    /// that event's `on-` effect is committed, its `after-` one not yet.
    #[error(
        "cannot refresh one instance of `{plugin}` while its `after-` handler of event #{position} waits for a retry; refresh it whole, or after the retry (`cascade parked`)"
    )]
    BetweenPhases {
        /// The process manager.
        plugin: String,
        /// The event whose `after-` handler waits.
        position: u64,
    },
    /// The process manager keeps no state, so it cannot be refreshed.
    #[error("process manager `{name}` is stateless: it has no state to show or refresh")]
    Stateless {
        /// The process manager.
        name: String,
    },
    /// A plugin added under a name a plugin of another kind has.
    #[error(
        "cannot add {new} `{name}`: a {existing} has that name; give the plugin another name (`name = \"...\"` in its manifest, or rename the file)"
    )]
    KindConflict {
        /// The name.
        name: String,
        /// What is registered under it.
        existing: String,
        /// What was added.
        new: String,
    },
    /// wasmtime refused to instantiate or call the component.
    #[error("plugin `{plugin}` could not be loaded: {message}")]
    Instantiate {
        /// The plugin.
        plugin: String,
        /// wasmtime's reason, with its context chain.
        message: String,
    },
}

/// Every error the runtime returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// See [`PluginError`].
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// See [`CommandError`] (boxed: it is large and this is the cold path).
    #[error(transparent)]
    Command(Box<CommandError>),
    /// See [`ConcurrencyError`].
    #[error(transparent)]
    Concurrency(#[from] ConcurrencyError),
    /// No cascade has this correlation id.
    #[error("no cascade with correlation id `{correlation_id}`; ids are those `exec` prints, e.g. `c1`")]
    UnknownCascade {
        /// The id asked for.
        correlation_id: String,
    },
    /// The engine's writer thread has stopped (the host is shutting down).
    #[error("the engine has stopped; the host is shutting down or could not open its data directory")]
    EngineStopped,
    /// The writer's batch this request was part of failed and rolled back:
    /// every caller in it gets the same error (shared, so its kind, e.g. a
    /// storage failure, is kept).
    #[error("the pipeline failed and rolled back its batch: {0}")]
    Batch(std::sync::Arc<Error>),
    /// An operation run on the writer ([`crate::EngineHandle::with_runtime`])
    /// panicked; the writer returned to the last commit and goes on.
    #[error("the operation panicked on the writer thread ({message}); nothing of it was committed")]
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// The test clock was asked to move while the host runs on the wall clock.
    #[error("the clock can only be moved when the host was started with the test clock (CASCADE_TEST_CLOCK=MS)")]
    NoTestClock,
    /// Reading a plugin file or the data directory failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// The error itself, through any [`Error::Batch`] that shares it.
    pub fn root(&self) -> &Error {
        match self {
            Error::Batch(inner) => inner.root(),
            other => other,
        }
    }
}

impl From<CommandError> for Error {
    fn from(err: CommandError) -> Self {
        Error::Command(Box::new(err))
    }
}

impl From<Box<CommandError>> for Error {
    fn from(err: Box<CommandError>) -> Self {
        Error::Command(err)
    }
}

/// Why a read-model query failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// No projection declares the collection.
    #[error("no collection `{collection}` (declared: {known})")]
    UnknownCollection {
        /// The collection asked for.
        collection: String,
        /// The declared collections, comma-separated.
        known: String,
    },
    /// `find` on a field that is not indexed.
    #[error(
        "collection `{collection}` has no index on `{field}` (indexed: {indexes}); index it in the projection or page through the collection with `list`"
    )]
    NotIndexed {
        /// The collection.
        collection: String,
        /// The field asked for.
        field: String,
        /// The indexed fields, comma-separated.
        indexes: String,
    },
    /// The query is malformed.
    #[error("{0}")]
    Invalid(String),
    /// redb failed.
    #[error("{0}")]
    Store(String),
}

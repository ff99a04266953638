//! The records the store keeps and the engine works with: cascades, queued
//! commands, parked and skipped events, the plugin registry. Shared types:
//! they depend on nothing above them (events, failures, manifests), so the
//! store can hold them without knowing the pipeline or the plugins.

use serde::{Deserialize, Serialize};

use crate::error::Failure;
use crate::event::Command;
use crate::manifest::Manifest;

/// An event parked for one listener after its handler failed every attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parked {
    /// The listener.
    pub plugin: String,
    /// The export that failed, e.g. `on-user-created`.
    pub handler: String,
    /// The event name.
    pub event: String,
    /// The event position.
    pub position: u64,
    /// The event's cascade.
    pub correlation_id: String,
    /// The last failure.
    pub message: String,
    /// Calls made before parking.
    pub attempts: u32,
    /// Milliseconds since the Unix epoch.
    pub parked_at: u64,
}

impl Parked {
    /// The record as JSON with its id: what `parked --json` and `GET
    /// /parked` list.
    pub fn to_json(&self, id: u64) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("parked records serialize");
        value["id"] = serde_json::Value::from(id);
        value
    }
}

/// A parked event that was dropped on purpose, and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// What was parked.
    pub parked: Parked,
    /// Who skipped it.
    pub skipped_by: String,
    /// Milliseconds since the Unix epoch.
    pub skipped_at: u64,
}

/// A command waiting in the queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueuedCommand {
    /// `c<sequence>`; the causation id of the events it appends.
    pub id: String,
    /// The command.
    pub command: Command,
    /// The cascade it belongs to.
    pub correlation_id: String,
    /// The event whose handler dispatched it (`e<position>`), none for a
    /// command from outside.
    pub causation_id: Option<String>,
    /// What a process manager was handling when it dispatched it; none for a
    /// command from outside.
    pub cause: Option<Cause>,
    /// Run only if the stream is at this version.
    pub expected_version: Option<u64>,
}

/// A command from outside, as submitted: the first command of a new cascade.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The command.
    pub command: Command,
    /// Run only if the stream is at this version.
    pub expected_version: Option<u64>,
    /// A retried submission with the same key queues nothing and answers with
    /// the first one's cascade.
    pub idempotency_key: Option<String>,
    /// This cascade's budget of events and commands, instead of the
    /// dispatching plugin's manifest or [`Options::cascade_budget`].
    pub cascade_budget: Option<usize>,
    /// Record every handler call of this cascade for its settled answer
    /// (`Settled::trace`), whatever the pipeline's `Options::trace`.
    pub trace: bool,
}

impl From<(Command, Option<u64>)> for Submission {
    fn from((command, expected_version): (Command, Option<u64>)) -> Self {
        Submission {
            command,
            expected_version,
            idempotency_key: None,
            cascade_budget: None,
            trace: false,
        }
    }
}

impl From<Command> for Submission {
    fn from(command: Command) -> Self {
        (command, None).into()
    }
}

/// The event a process manager was handling when it dispatched a command:
/// what the infinite-loop check compares the command's events against.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cause {
    /// The process manager.
    pub plugin: String,
    /// The event name.
    pub event: String,
    /// The event's stream type.
    pub stream_type: String,
    /// The event's stream id.
    pub stream_id: String,
    /// The event's JSON payload.
    pub payload: String,
    /// Every `process-manager/Event` link from the cascade's first command
    /// to this one, oldest first.
    pub chain: Vec<String>,
}

/// A command as recorded in its cascade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRecord {
    /// `c<sequence>`.
    pub id: String,
    /// `e<position>` of the event that caused it, if any.
    pub causation_id: Option<String>,
    /// The listener that dispatched it, if any.
    pub issued_by: Option<String>,
    /// `stream-type:stream-id`.
    pub stream: String,
    /// The command name.
    pub name: String,
}

/// The persistent record of one cascade.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CascadeRecord {
    /// Commands queued and events not yet through both phases.
    pub outstanding: u64,
    /// Positions of the events appended in this cascade.
    pub events: Vec<u64>,
    /// Commands executed in this cascade, in order.
    pub commands: Vec<CommandRecord>,
    /// Every failure, in order.
    pub failures: Vec<Failure>,
}

/// What a plugin is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Exports `cascade:runtime/aggregate`.
    Aggregate,
    /// Exports `on-*` / `after-*` handlers.
    ProcessManager,
    /// Exports `collections` and `on-*` handlers.
    Projection,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Aggregate => "aggregate",
            PluginKind::ProcessManager => "process-manager",
            PluginKind::Projection => "projection",
        })
    }
}

/// A registered plugin, as the registry stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Unique name: the stream type of an aggregate, the listener name of a
    /// process manager.
    pub name: String,
    /// What it is.
    pub kind: PluginKind,
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    /// Registration order; listeners are called in this order.
    pub order: u64,
    /// The file it was added from.
    pub source: String,
    /// Its manifest (the defaults when it was added without one).
    pub manifest: Manifest,
    /// What its component exports; `None` when it was deployed by a Cascade
    /// that did not record it (filled in by its next deploy).
    pub exports: Option<Exports>,
}

/// What a plugin's component says it does, read from it at deploy: the
/// handlers it exports and the read-model collections it writes; for an
/// aggregate, its commands and events (what the flow graph draws).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exports {
    /// Its handler exports, e.g. `on-user-created`, `after-user-created`.
    pub handles: Vec<String>,
    /// The collections it writes (a projection's own).
    pub writes: Vec<String>,
    /// An aggregate's commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// An aggregate's events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emits: Vec<String>,
}

/// One version of a plugin name: what was deployed, when and by whom. Every
/// version is kept, so a rollback is one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginVersion {
    /// The plugin.
    pub name: String,
    /// 1 for the first deploy, then counting up.
    pub version: u64,
    /// What it is.
    pub kind: PluginKind,
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    /// Where it came from (a file, an HTTP upload, a watched folder).
    pub source: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// What its component exports (see [`PluginRecord::exports`]).
    pub exports: Option<Exports>,
    /// Milliseconds since the Unix epoch.
    pub deployed_at: u64,
    /// Who deployed it.
    pub deployed_by: String,
}

/// Hex SHA-256 of component bytes: their identity in the registry.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One instance of a per-instance process manager, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Its state as last set; `None` until a handler sets one.
    pub state: Option<Vec<u8>>,
    /// Position of the last event a handler handled for it.
    pub last_position: u64,
}

/// A pending timer of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// The process manager.
    pub plugin: String,
    /// Its instance.
    pub instance: String,
    /// The timer's name within the instance.
    pub name: String,
    /// When it is due, in milliseconds since the Unix epoch.
    pub due: u64,
    /// JSON text it was scheduled with.
    pub payload: String,
}

/// An effect in the outbox: stored with the commit of the call that
/// requested it, removed with the commit that records its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    /// Its key: the `Idempotency-Key` header of every attempt.
    pub key: String,
    /// The plugin that requested it.
    pub plugin: String,
    /// The plugin's name for it.
    pub name: String,
    /// The requesting instance, for a per-instance process manager.
    pub instance: Option<String>,
    /// The cascade of the event whose handler requested it.
    pub correlation_id: String,
    /// That event's position.
    pub position: u64,
    /// The request.
    pub request: crate::effect::HttpRequest,
    /// When its request was committed, in milliseconds since the Unix epoch.
    pub requested_at: u64,
    /// How it is performed: its plugin's policy when it was requested.
    pub policy: crate::manifest::EffectPolicy,
    /// Set when every attempt failed: it waits for `effects retry` or
    /// `effects skip`.
    pub parked: Option<ParkedEffect>,
}

/// Why an effect waits for an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkedEffect {
    /// The last failure.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// Milliseconds since the Unix epoch.
    pub parked_at: u64,
}

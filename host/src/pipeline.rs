//! The pipeline: the one writer loop that executes queued commands and runs
//! every event through both phases, in log order.
//!
//! For each event: phase 1 calls the `on-` handler of every listener that has
//! one, in registration order; phase 2 then calls every `after-` handler.
//! Commands dispatched in either phase join the persistent queue and run
//! after the event; their events are appended at the end of the log and go
//! through the same phases.
//!
//! Throughput comes from group commit: one [`Pipeline::step`] is one redb
//! transaction covering up to `batch_size` units of work (an event through
//! both phases, or a command executed) with everything they caused: events,
//! queued commands, snapshots, checkpoints, cascade records. A crash rolls
//! back to the last commit and the batch is redone, so commands execute
//! exactly once.
//!
//! Each cascade (one correlation id) keeps a record of its outstanding work,
//! events, commands and failures; it is *settled* when nothing is
//! outstanding.

use crate::store::{EventLog, Progress, WorkQueue};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, Aggregates};
use crate::error::{CascadeBudgetError, CausationDepthError, Error, Failure, HandlerFailure, PluginError, StoreError};
use crate::event::{Command, Envelope, Event};
use crate::listener::{Context, Effects, HandlerError, Level, Listener, Phase};
use crate::manifest::Policy;
use crate::read_model::ReadModels;
pub use crate::records::{CascadeRecord, Cause, CommandRecord, Parked, QueuedCommand, Skipped, Submission};
use crate::store::{Store, Tx};

mod refresh;

pub use refresh::{RefreshReport, state_json};

/// Tuning of the pipeline.
#[derive(Clone, Debug)]
pub struct Options {
    /// Units of work (events or commands) per redb transaction.
    pub batch_size: usize,
    /// Record every handler call for [`Settled::trace`].
    pub trace: bool,
    /// The longest chain of commands dispatched by process managers, each
    /// caused by an event of the previous one, before the next is refused.
    pub max_causation_depth: usize,
    /// Interrupt guest calls that exceed their time budget. Off only to
    /// measure what the interruption checks cost; never in production.
    pub epoch_interruption: bool,
    /// Guest log lines, and trace entries, held in memory until their
    /// cascade's [`Pipeline::settled`] collects them. Past this many the
    /// oldest are dropped, so a pipeline whose answers nobody collects does
    /// not grow without bound.
    pub retained_lines: usize,
    /// The redb page cache, in MiB, when a runtime opens its data file.
    pub cache_mib: usize,
    /// The most events and commands one cascade may count; past it, the
    /// commands that would grow it are dropped and the cascade fails.
    pub cascade_budget: usize,
    /// Which registered plugins a runtime compiles and instantiates when it
    /// opens. Commands that run no handler load none (or only projections,
    /// which declare the collections `read` serves), so they cost the same
    /// however big the registered process managers are.
    pub load: Load,
    /// Open the data file read-only: nothing is ever written (a write fails
    /// with [`crate::StoreError::ReadOnly`]), the directory may be
    /// read-only, and other read-only runtimes may share the file. The data
    /// directory must exist.
    pub read_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_size: 2048,
            trace: false,
            max_causation_depth: 64,
            epoch_interruption: true,
            retained_lines: 100_000,
            cache_mib: crate::store::DEFAULT_CACHE_MIB,
            cascade_budget: 10_000,
            load: Load::All,
            read_only: false,
        }
    }
}

/// Which plugins a runtime loads when it opens (see [`Options::load`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// Every plugin: the runtime runs handlers.
    All,
    /// Aggregates and projections: the runtime serves read models.
    Projections,
    /// None: the runtime reads the log, the registry and stored state.
    None,
}

/// The first pause before calling a failed handler again; it doubles with
/// each further attempt.
const RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// How a traced handler call ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Completed.
    Ok,
    /// Failed with this message.
    Failed(String),
    /// Skipped while refreshing.
    Skipped,
}

/// One handler call, recorded when [`Options::trace`] is on.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceEntry {
    /// The cascade.
    pub correlation_id: String,
    /// The listener.
    pub plugin: String,
    /// The export, e.g. `after-user-created`.
    pub handler: String,
    /// The event name.
    pub event: String,
    /// The event position.
    pub position: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time of the call.
    pub duration: Duration,
}

/// A line a guest logged.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// The cascade.
    pub correlation_id: String,
    /// The listener.
    pub plugin: String,
    /// The level.
    pub level: Level,
    /// The text.
    pub message: String,
}

/// The answer for a cascade that has settled.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    /// The cascade's correlation id (the id of its first command).
    pub correlation_id: String,
    /// Every event the cascade appended, in log order.
    pub events: Vec<Event>,
    /// Every command it executed, in order.
    pub commands: Vec<CommandRecord>,
    /// Every failure: rejected commands and failed handlers.
    pub failures: Vec<Failure>,
    /// Handler calls, when tracing is on. Like `logs`, handed over once and
    /// bounded by [`Options::retained_lines`].
    pub trace: Vec<TraceEntry>,
    /// Guest log lines, handed over by the first `settled` call that finds
    /// the cascade settled; lines of cascades nobody collects are dropped,
    /// oldest first, past [`Options::retained_lines`].
    pub logs: Vec<LogLine>,
}

impl Settled {
    /// Whether nothing in the cascade failed.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The answer as JSON, events with their payloads as values and each
    /// failure with its message: what `cascade exec --json` and
    /// `POST /commands` print.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("settled answers serialize");
        value["events"] = self.events.iter().map(Event::to_json).collect();
        value["failures"] = self
            .failures
            .iter()
            .map(|f| {
                let mut v = serde_json::to_value(f).expect("failures serialize");
                v["message"] = serde_json::Value::String(f.to_string());
                v
            })
            .collect();
        value
    }
}

struct Slot {
    listener: Box<dyn Listener>,
    /// The last position this listener has seen.
    checkpoint: u64,
    /// Whether it handled an event in the current batch (its state, if it
    /// has one, must be saved with the commit).
    dirty: bool,
    /// Handler calls since the pipeline was opened (live and replayed).
    calls: u64,
    /// Stopped by its error policy: it gets no events until started again,
    /// and `checkpoint` is the last event it completed.
    stopped: bool,
    /// Live calls per handler, by handler index.
    stats: Vec<HandlerStats>,
    /// Waiting to call a failed handler again: until then it gets no
    /// events, the others go on, and the cascades of the events it has yet
    /// to handle stay unsettled.
    backoff: Option<Backoff>,
}

/// When and where a listener in backoff resumes.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    until: Instant,
    /// The event it resumes at: it has handled everything before.
    position: u64,
    /// The handler to call first at `position` (`None`: all of them), and
    /// which attempt that call is.
    handler: Option<usize>,
    attempt: u32,
}

impl Backoff {
    /// A running listener behind the pipeline (it was waiting to retry when
    /// the host went down, or a batch rolled back) catches up at once.
    fn behind(stopped: bool, checkpoint: u64, pipeline_position: u64) -> Option<Backoff> {
        (!stopped && checkpoint < pipeline_position).then(|| Backoff {
            until: Instant::now(),
            position: checkpoint + 1,
            handler: None,
            attempt: 1,
        })
    }
}

/// Upper bounds, in seconds, of the buckets of [`HandlerStats::buckets`].
pub const DURATION_BUCKETS: [f64; 8] = [1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, f64::INFINITY];

/// Live calls of one handler export since the pipeline was opened.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerStats {
    /// The export, e.g. `on-user-created`.
    pub export: String,
    /// Calls, retries included.
    pub calls: u64,
    /// Calls that failed (each retry counts).
    pub failures: u64,
    /// Total wall time of the calls.
    pub seconds: f64,
    /// Calls per duration bucket ([`DURATION_BUCKETS`]), not cumulative.
    pub buckets: [u64; DURATION_BUCKETS.len()],
}

impl HandlerStats {
    fn record(&mut self, elapsed: Duration, failed: bool) {
        let seconds = elapsed.as_secs_f64();
        self.calls += 1;
        self.failures += u64::from(failed);
        self.seconds += seconds;
        let bucket = DURATION_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(0);
        self.buckets[bucket] += 1;
    }
}

/// What [`Pipeline::listener_stats`] reports of one listener.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStats {
    /// The listener.
    pub name: String,
    /// The last position it has seen.
    pub checkpoint: u64,
    /// Stopped by its error policy.
    pub stopped: bool,
    /// Its handlers' live calls.
    pub handlers: Vec<HandlerStats>,
    /// Memory of its sandbox instance, when one is live.
    pub memory_bytes: Option<u64>,
}

/// Queue `submissions` as new cascades from sequence `seq` on (advanced past
/// them); a known idempotency key queues nothing and yields the first
/// cascade's id.
fn enqueue(tx: &mut Tx<'_>, seq: &mut u64, submissions: Vec<Submission>) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::with_capacity(submissions.len());
    for submission in submissions {
        if let Some(key) = &submission.idempotency_key
            && let Some(first) = tx.idempotent(key)?
        {
            ids.push(first);
            continue;
        }
        let id = format!("c{seq}");
        if let Some(key) = &submission.idempotency_key {
            tx.put_idempotent(key, &id)?;
        }
        let queued = QueuedCommand {
            id: id.clone(),
            command: submission.command,
            correlation_id: id.clone(),
            causation_id: None,
            cause: None,
            expected_version: submission.expected_version,
        };
        tx.enqueue(*seq, &queued)?;
        *seq += 1;
        if let Some(budget) = submission.cascade_budget {
            tx.put_cascade_budget(&id, budget as u64)?;
        }
        let record = CascadeRecord {
            outstanding: 1,
            ..CascadeRecord::default()
        };
        tx.put_cascade(&id, &record)?;
        ids.push(id);
    }
    Ok(ids)
}

/// Which handlers an event name reaches, as (listener, handler) indices.
#[derive(Default)]
struct Route {
    on: Vec<(usize, usize)>,
    after: Vec<(usize, usize)>,
    /// The listeners the event reaches, each once.
    slots: Vec<usize>,
}

/// The event loop over one store, with its aggregates and listeners.
pub struct Pipeline {
    store: Store,
    read_models: ReadModels,
    aggregates: Aggregates,
    slots: Vec<Slot>,
    routes: HashMap<String, Route>,
    options: Options,
    trace: Vec<TraceEntry>,
    logs: Vec<LogLine>,
}

impl Pipeline {
    /// A pipeline over `store` with no aggregates or listeners yet.
    pub fn new(store: Store, options: Options) -> Self {
        Pipeline {
            read_models: ReadModels::new(store.database()),
            store,
            aggregates: Aggregates::default(),
            slots: Vec::new(),
            routes: HashMap::new(),
            options,
            trace: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The read models projections keep.
    pub fn read_models(&self) -> &ReadModels {
        &self.read_models
    }

    /// The registered aggregates.
    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// Turn tracing of handler calls on or off.
    pub fn set_trace(&mut self, on: bool) {
        self.options.trace = on;
    }

    /// Register an aggregate (or replace the one with the same name).
    ///
    /// # Errors
    ///
    /// See [`Aggregates::register`].
    pub fn register_aggregate(&mut self, aggregate: Box<dyn Aggregate>) -> Result<String, PluginError> {
        self.aggregates.register(aggregate)
    }

    /// Register a listener after the ones already registered, or replace the
    /// one with the same name in place. A new listener starts at the head of
    /// the log: it does not see history.
    ///
    /// # Errors
    ///
    /// [`PluginError::UnknownEvent`] when a handler names an event no
    /// aggregate declares; a storage error.
    pub fn register_listener(&mut self, listener: Box<dyn Listener>) -> Result<(), Error> {
        self.register_listener_with(listener, true)
    }

    /// [`Pipeline::register_listener`]; with `carry_state` false a replaced
    /// stateful listener starts from its initial state instead of loading the
    /// stored one (the caller refreshes or resets it next).
    ///
    /// # Errors
    ///
    /// As [`Pipeline::register_listener`]; [`PluginError::IncompatibleState`]
    /// when a redeployed build cannot load the stored state.
    pub fn register_listener_with(&mut self, listener: Box<dyn Listener>, carry_state: bool) -> Result<(), Error> {
        validate_handlers(&self.aggregates, listener.as_ref())?;
        let mut listener = listener;
        let name = listener.name().to_owned();
        if let Some(collections) = listener.collections() {
            self.read_models.declare(&name, collections)?;
        }
        let read_models = &self.read_models;
        let (checkpoint, state, stopped, pipeline_position) = self.store.write(|tx| {
            read_models.sync_indexes(tx, &name)?;
            let checkpoint = match tx.checkpoint(&name)? {
                Some(checkpoint) => checkpoint,
                None => tx.head(),
            };
            tx.set_checkpoint(&name, checkpoint)?;
            let stopped = tx.is_stopped(&name)?;
            Ok::<_, StoreError>((checkpoint, tx.pm_state(&name)?, stopped, tx.pipeline_position()?))
        })?;
        if listener.is_stateful() {
            // A redeployed version carries on from the state of the old one.
            let state = state.filter(|_| carry_state);
            listener.load_state(state.as_deref()).map_err(|message| match &state {
                Some(_) if self.slots.iter().any(|s| s.listener.name() == name) => PluginError::IncompatibleState {
                    plugin: name.clone(),
                    message,
                },
                _ => PluginError::State {
                    plugin: name.clone(),
                    action: "load",
                    message,
                },
            })?;
        }
        let stats = listener
            .handlers()
            .iter()
            .map(|h| HandlerStats {
                export: h.export_name(),
                ..HandlerStats::default()
            })
            .collect();
        let backoff = Backoff::behind(stopped, checkpoint, pipeline_position);
        let slot = Slot {
            listener,
            checkpoint,
            dirty: false,
            calls: 0,
            stopped,
            stats,
            backoff,
        };
        match self.slots.iter().position(|s| s.listener.name() == name) {
            Some(index) => self.slots[index] = slot,
            None => self.slots.push(slot),
        }
        self.routes = routes(&self.slots);
        Ok(())
    }

    /// How many handler calls the listener `name` has had since the pipeline
    /// was opened, live and during refreshes; `None` for an unknown name.
    pub fn handler_calls(&self, name: &str) -> Option<u64> {
        self.slots.iter().find(|s| s.listener.name() == name).map(|s| s.calls)
    }

    /// Every listener's checkpoint, status and handler calls, in
    /// registration order.
    pub fn listener_stats(&self) -> Vec<ListenerStats> {
        self.slots
            .iter()
            .map(|s| ListenerStats {
                name: s.listener.name().to_owned(),
                checkpoint: s.checkpoint,
                stopped: s.stopped,
                handlers: s.stats.clone(),
                memory_bytes: s.listener.memory_bytes(),
            })
            .collect()
    }

    /// Whether `name` is a registered stateful process manager.
    pub fn is_stateful(&self, name: &str) -> bool {
        self.slots
            .iter()
            .any(|s| s.listener.name() == name && s.listener.is_stateful())
    }

    /// Start the stateful process manager `name` over from its initial
    /// state, keeping its checkpoint: it forgets what it had folded.
    ///
    /// # Errors
    ///
    /// An unknown or stateless listener; a failing `load-state`; a storage
    /// error.
    pub fn reset_state(&mut self, name: &str) -> Result<(), Error> {
        let index = self.stateful_slot(name)?;
        self.slots[index]
            .listener
            .load_state(None)
            .map_err(|message| PluginError::State {
                plugin: name.to_owned(),
                action: "load",
                message,
            })?;
        self.store.write(|tx| tx.remove_pm_state(name))?;
        Ok(())
    }

    /// The names of the registered listeners, in registration order.
    pub fn listener_names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.listener.name().to_owned()).collect()
    }

    /// The position up to which every event has been through both phases.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn position(&self) -> Result<u64, StoreError> {
        self.store.read(|tx| tx.pipeline_position())
    }

    /// A listener's persisted checkpoint.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn checkpoint(&self, listener: &str) -> Result<Option<u64>, StoreError> {
        self.store.read(|tx| tx.checkpoint(listener))
    }

    /// Queue `command` from outside as the first command of a new cascade and
    /// return the cascade's correlation id. `expected_version`, when given,
    /// makes the command fail unless the stream is at that version.
    ///
    /// # Errors
    ///
    /// A [`crate::CommandError`] when the aggregate or command is unknown or
    /// the args are not JSON (nothing is queued); a storage error.
    pub fn submit(&mut self, command: Command, expected_version: Option<u64>) -> Result<String, Error> {
        let mut ids = self.submit_all(vec![(command, expected_version)])?;
        Ok(ids.pop().expect("one id per command"))
    }

    /// [`Pipeline::submit`] for many commands in one transaction: either all
    /// are queued or, when one is invalid, none is. A submission whose
    /// idempotency key was seen before queues nothing and returns the
    /// correlation id of the first submission with that key.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::submit`], for the first invalid command.
    pub fn submit_all<S: Into<Submission>>(
        &mut self,
        commands: impl IntoIterator<Item = S>,
    ) -> Result<Vec<String>, Error> {
        let submissions: Vec<Submission> = commands.into_iter().map(Into::into).collect();
        for submission in &submissions {
            self.aggregates.check(&submission.command)?;
        }
        Ok(self.store.write(|tx| {
            let mut seq = tx.next_command_seq()?;
            let ids = enqueue(tx, &mut seq, submissions)?;
            tx.set_next_command_seq(seq)?;
            Ok::<_, StoreError>(ids)
        })?)
    }

    /// Submit `command` and run the loop until its cascade has settled.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::submit`] and [`Pipeline::step`].
    pub fn execute(&mut self, command: Command) -> Result<Settled, Error> {
        self.execute_submission(command.into())
    }

    /// [`Pipeline::execute`] for a [`Submission`]. The command is queued in
    /// the transaction of the first step that runs it: a lone command that
    /// settles in one batch costs one commit.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::submit`] and [`Pipeline::step`].
    pub fn execute_submission(&mut self, submission: Submission) -> Result<Settled, Error> {
        self.aggregates.check(&submission.command)?;
        let (mut ids, _) = self.step_with(vec![submission])?;
        self.run_until_settled(&ids.remove(0))
    }

    /// Run the loop until the cascade `correlation_id` has settled.
    ///
    /// # Errors
    ///
    /// A storage error; an unknown correlation id.
    pub fn run_until_settled(&mut self, correlation_id: &str) -> Result<Settled, Error> {
        loop {
            if let Some(settled) = self.settled(correlation_id)? {
                return Ok(settled);
            }
            if self.step()? == 0 && !self.wait_for_retry() {
                // Idle but not settled: the record is inconsistent.
                return Err(StoreError::Corrupt {
                    table: "cascades",
                    message: format!("cascade `{correlation_id}` has outstanding work but the pipeline is idle"),
                }
                .into());
            }
        }
    }

    /// Run the loop until there is no work left; returns the units done.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn run_until_idle(&mut self) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            match self.step()? {
                0 if !self.wait_for_retry() => return Ok(total),
                done => total += done,
            }
        }
    }

    /// The settled answer of a cascade, or `None` while work is outstanding.
    /// Trace entries and logs of the cascade are handed over once.
    ///
    /// # Errors
    ///
    /// A storage error; an unknown correlation id.
    pub fn settled(&mut self, correlation_id: &str) -> Result<Option<Settled>, Error> {
        // A read transaction: no write lock, nothing to abort.
        let (record, events) = match self.store.reader().cascade(correlation_id)? {
            None => {
                return Err(Error::UnknownCascade {
                    correlation_id: correlation_id.to_owned(),
                });
            }
            Some((record, _)) if record.outstanding > 0 => return Ok(None),
            Some(found) => found,
        };
        let (trace, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.trace)
            .into_iter()
            .partition(|t| t.correlation_id == correlation_id);
        self.trace = rest;
        let (logs, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.logs)
            .into_iter()
            .partition(|l| l.correlation_id == correlation_id);
        self.logs = rest;
        Ok(Some(Settled {
            correlation_id: correlation_id.to_owned(),
            events,
            commands: record.commands,
            failures: record.failures,
            trace,
            logs,
        }))
    }

    /// One group commit: up to `batch_size` units of work in one redb
    /// transaction. Returns how many units ran (0 when idle).
    ///
    /// # Errors
    ///
    /// A storage error; the transaction is rolled back.
    pub fn step(&mut self) -> Result<usize, Error> {
        self.step_with(Vec::new()).map(|(_, done)| done)
    }

    /// [`Pipeline::step`] that first queues `submissions` in the same
    /// transaction, so a lone caller pays one commit for its command and its
    /// cascade's first batch. Returns their correlation ids (as
    /// [`Pipeline::submit_all`]) and the units done. The commands must have
    /// passed [`Aggregates::check`].
    ///
    /// # Errors
    ///
    /// A storage error; the transaction is rolled back, submissions included.
    pub fn step_with(&mut self, submissions: Vec<Submission>) -> Result<(Vec<String>, usize), Error> {
        loop {
            match self.step_once(submissions.clone()) {
                // One plugin's state could not be saved: the batch rolled
                // back; stop that plugin alone and redo the batch without it.
                Err(Error::Plugin(PluginError::State {
                    plugin,
                    action: "save",
                    message,
                })) if self.slots.iter().any(|s| s.listener.name() == plugin && !s.stopped) => {
                    self.stop_listener(&plugin, &format!("its state could not be saved: {message}"))?;
                }
                other => return other,
            }
        }
    }

    /// Stop listener `name` for `reason` (kept in the store, shown by
    /// `plugin list`): it keeps its committed checkpoint and state, gets no
    /// events, and `plugin start` resumes it from there.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn stop_listener(&mut self, name: &str, reason: &str) -> Result<(), Error> {
        if let Some(index) = self.slots.iter().position(|s| s.listener.name() == name) {
            self.end_backoff(index)?;
        }
        let checkpoint = self.store.write(|tx| {
            tx.stop_for(name, reason)?;
            tx.checkpoint(name)
        })?;
        if let Some(slot) = self.slots.iter_mut().find(|s| s.listener.name() == name) {
            slot.stopped = true;
            slot.checkpoint = checkpoint.unwrap_or(slot.checkpoint);
        }
        Ok(())
    }

    /// Queued commands grouped by cascade: (correlation id, how many, the
    /// oldest one), oldest cascade first.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn queue(&self) -> Result<Vec<(String, u64, Command)>, StoreError> {
        let queued = self.store.read(|tx| tx.queue())?;
        let mut by_cascade: Vec<(String, u64, Command)> = Vec::new();
        for (_, q) in queued {
            match by_cascade.iter_mut().find(|(id, _, _)| *id == q.correlation_id) {
                Some(entry) => entry.1 += 1,
                None => by_cascade.push((q.correlation_id, 1, q.command)),
            }
        }
        Ok(by_cascade)
    }

    /// Drop every queued command of cascade `correlation_id`, recording who
    /// and when in the cascade's failures; returns how many were dropped.
    /// The cascade settles once its events in flight are through.
    ///
    /// # Errors
    ///
    /// An unknown cascade; a storage error.
    pub fn cancel(&mut self, correlation_id: &str, by: &str) -> Result<u64, Error> {
        self.store.write(|tx| {
            let mut record = tx.cascade(correlation_id)?.ok_or_else(|| Error::UnknownCascade {
                correlation_id: correlation_id.to_owned(),
            })?;
            let mut dropped = 0;
            for (seq, q) in tx.queue()? {
                if q.correlation_id == correlation_id {
                    tx.unqueue(seq)?;
                    dropped += 1;
                }
            }
            record.outstanding = record.outstanding.saturating_sub(dropped);
            record.failures.push(Failure::Cancelled {
                by: by.to_owned(),
                at: crate::store::now_millis(),
                dropped,
            });
            tx.put_cascade(correlation_id, &record)?;
            Ok(dropped)
        })
    }

    /// Take listener `name` out of the pipeline (the caller unregisters it).
    ///
    /// # Errors
    ///
    /// An unknown listener.
    pub fn remove_listener(&mut self, name: &str) -> Result<(), Error> {
        let index = self.slot_index(name)?;
        self.end_backoff(index)?;
        self.slots.remove(index);
        self.routes = routes(&self.slots);
        Ok(())
    }

    /// A listener waiting to retry no longer will (it is stopped or
    /// removed): the cascades of the events it had yet to handle stop
    /// waiting for it.
    fn end_backoff(&mut self, index: usize) -> Result<(), Error> {
        let Some(backoff) = self.slots[index].backoff.take() else {
            return Ok(());
        };
        self.in_batch(|batch, tx| {
            let through = tx.pipeline_position()?;
            batch.release(tx, index, backoff.position, through)?;
            tx.set_checkpoint(batch.slots[index].listener.name(), backoff.position - 1)?;
            Ok(((), true))
        })?;
        self.slots[index].checkpoint = backoff.position - 1;
        Ok(())
    }

    /// When the next listener in backoff may call its failed handler again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|s| s.backoff.map(|b| b.until)).min()
    }

    /// Idle but for listeners in backoff: wait (outside any transaction)
    /// until the first may retry. Returns whether there was one to wait for.
    fn wait_for_retry(&self) -> bool {
        let Some(until) = self.next_retry() else {
            return false;
        };
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        true
    }

    fn step_once(&mut self, submissions: Vec<Submission>) -> Result<(Vec<String>, usize), Error> {
        let budget = self.options.batch_size.max(1);
        let (ids, done, position) = self.in_batch(|batch, tx| {
            batch.defer_retries = true;
            let ids = enqueue(tx, &mut batch.next_seq, submissions)?;
            let mut position = tx.pipeline_position()?;
            let mut done = batch.retry_waiting(tx, position)?;
            while done < budget {
                if position < tx.head() {
                    position += 1;
                    let event = match batch.appended.pop_front() {
                        Some(event) => event,
                        None => tx.logged_event(position)?,
                    };
                    debug_assert_eq!(event.position, position);
                    batch.process_event(tx, &event)?;
                } else if let Some(queued) = batch.next_command(tx)? {
                    batch.execute_command(tx, queued)?;
                } else {
                    break;
                }
                done += 1;
            }
            if done > 0 {
                tx.set_pipeline_position(position)?;
                for slot in batch.slots.iter().filter(|s| !s.stopped) {
                    match slot.backoff {
                        None if slot.checkpoint < position => tx.set_checkpoint(slot.listener.name(), position)?,
                        Some(b) => tx.set_checkpoint(slot.listener.name(), b.position - 1)?,
                        None => {}
                    }
                }
            }
            let changed = done > 0 || !ids.is_empty();
            Ok(((ids, done, position), changed))
        })?;
        // Only after the commit: memory follows what is durable.
        for slot in self.slots.iter_mut().filter(|s| !s.stopped) {
            slot.checkpoint = match slot.backoff {
                None => slot.checkpoint.max(position),
                Some(b) => b.position - 1,
            };
        }
        Ok((ids, done))
    }

    /// The listeners stopped by their error policy, with the last position
    /// each completed.
    pub fn stopped(&self) -> Vec<(String, u64)> {
        self.slots
            .iter()
            .filter(|s| s.stopped)
            .map(|s| (s.listener.name().to_owned(), s.checkpoint))
            .collect()
    }

    /// Start a listener its error policy stopped: it catches up from its
    /// checkpoint (both phases, live, its dispatches run) and then takes part
    /// in the pipeline again. Returns how many events it handled catching up;
    /// it stops again if an event still fails.
    ///
    /// # Errors
    ///
    /// An unknown listener; a storage error.
    pub fn start_listener(&mut self, name: &str) -> Result<u64, Error> {
        let index = self.slot_index(name)?;
        if !self.slots[index].stopped {
            return Ok(0);
        }
        self.slots[index].stopped = false;
        let by_event = handlers_by_event(self.slots[index].listener.as_ref());
        let handled = self.in_batch(|batch, tx| {
            tx.set_stopped(name, false)?;
            let through = tx.pipeline_position()?;
            let mut handled = 0;
            while batch.slots[index].checkpoint < through && !batch.slots[index].stopped {
                let position = batch.slots[index].checkpoint + 1;
                let event = tx.logged_event(position)?;
                for &handler in by_event.get(&event.name).map_or(&[][..], Vec::as_slice) {
                    if !batch.slots[index].stopped {
                        batch.call(tx, index, handler, &event, 1)?;
                    }
                }
                if !batch.slots[index].stopped {
                    batch.slots[index].checkpoint = position;
                    handled += u64::from(by_event.contains_key(&event.name));
                }
            }
            tx.set_checkpoint(name, batch.slots[index].checkpoint)?;
            Ok((handled, true))
        })?;
        self.run_until_idle()?;
        Ok(handled)
    }

    fn slot_index(&self, name: &str) -> Result<usize, PluginError> {
        self.slots
            .iter()
            .position(|s| s.listener.name() == name)
            .ok_or_else(|| {
                let names = self.listener_names();
                PluginError::UnknownListener {
                    name: name.to_owned(),
                    known: crate::aggregate::quoted_list(names.iter().map(String::as_str)),
                }
            })
    }

    /// Run `work` in one group commit. `work` returns its result and whether
    /// it did anything; if it did, everything the batch produced commits with
    /// it: queued commands, read-model writes, cascade records, state blobs.
    /// On an error everything rolls back, in redb and in memory.
    fn in_batch<R>(
        &mut self,
        work: impl FnOnce(&mut Batch<'_>, &mut Tx<'_>) -> Result<(R, bool), Error>,
    ) -> Result<R, Error> {
        let read_models = self.read_models.clone();
        // Where this batch's log lines and trace entries start: a rollback
        // drops them, since the redo produces them again.
        let (logs_before, trace_before) = (self.logs.len(), self.trace.len());
        let Pipeline {
            store,
            read_models: _,
            aggregates,
            slots,
            routes,
            options,
            trace,
            logs,
        } = self;
        let mut batch = Batch {
            aggregates,
            slots,
            routes,
            trace: options.trace.then_some(trace),
            logs,
            cascades: HashMap::new(),
            effects: Effects::default(),
            dispatched: VecDeque::new(),
            stored_queue_drained: false,
            appended: VecDeque::new(),
            next_seq: 0,
            max_depth: options.max_causation_depth,
            repark_as: None,
            cascade_budget: options.cascade_budget,
            budgets: HashMap::new(),
            defer_retries: false,
        };
        // A batch that did nothing is rolled back: no commit, no fsync.
        let written = store.write_if(|tx| {
            batch.next_seq = tx.next_command_seq()?;
            let (result, changed) = work(&mut batch, tx)?;
            if changed {
                batch.finish(tx, &read_models)?;
            }
            Ok::<_, Error>((result, changed))
        });
        drop(batch);
        let result = match written {
            Ok(result) => result,
            Err(err) => {
                // Rolled back: read models, stateful listeners and the
                // batch's log lines and trace return to the committed state.
                self.logs.truncate(logs_before);
                self.trace.truncate(trace_before);
                self.read_models.discard();
                self.reload_states()?;
                return Err(err);
            }
        };
        for slot in self.slots.iter_mut() {
            slot.dirty = false;
        }
        keep_newest(&mut self.logs, self.options.retained_lines);
        keep_newest(&mut self.trace, self.options.retained_lines);
        Ok(result)
    }

    /// Every parked event, oldest first, with its id.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn parked(&self) -> Result<Vec<(u64, Parked)>, StoreError> {
        self.store.read(|tx| tx.parked())
    }

    /// Call the parked handler again (typically after deploying a fixed
    /// version) and run whatever it dispatches. Returns `None` when it
    /// succeeded, or the id under which the event is parked again.
    ///
    /// # Errors
    ///
    /// An unknown parked id, a listener that is no longer registered; a
    /// storage error.
    pub fn retry_parked(&mut self, id: u64) -> Result<Option<u64>, Error> {
        let parked = self
            .store
            .read(|tx| tx.parked_entry(id))?
            .ok_or(PluginError::UnknownParked { id })?;
        let slot = self.slot_index(&parked.plugin)?;
        let handler = self.slots[slot]
            .listener
            .handlers()
            .iter()
            .position(|h| h.export_name() == parked.handler)
            .ok_or_else(|| PluginError::HandlerGone {
                id,
                plugin: parked.plugin.clone(),
                handler: parked.handler.clone(),
            })?;
        let outcome = self.in_batch(|batch, tx| {
            tx.take_parked(id)?;
            batch.repark_as = Some(id);
            let event = tx.logged_event(parked.position)?;
            let parked_again = batch.call(tx, slot, handler, &event, 1)?;
            Ok((parked_again, true))
        })?;
        self.run_until_idle()?;
        Ok(outcome)
    }

    /// Drop a parked event, recording who did it and when.
    ///
    /// # Errors
    ///
    /// An unknown parked id; a storage error.
    pub fn skip_parked(&mut self, id: u64, by: &str) -> Result<Skipped, Error> {
        self.store.write(|tx| {
            let parked = tx.take_parked(id)?.ok_or(PluginError::UnknownParked { id })?;
            let skipped = Skipped {
                parked,
                skipped_by: by.to_owned(),
                skipped_at: crate::store::now_millis(),
            };
            tx.put_skipped(id, &skipped)?;
            Ok(skipped)
        })
    }

    /// Return every listener to what is committed: checkpoint, stopped flag
    /// and, for a stateful one, its state blob.
    fn reload_states(&mut self) -> Result<(), Error> {
        let position = self.store.read(|tx| tx.pipeline_position())?;
        for slot in self.slots.iter_mut() {
            let name = slot.listener.name().to_owned();
            let (checkpoint, stopped) = self
                .store
                .read(|tx| Ok::<_, StoreError>((tx.checkpoint(&name)?, tx.is_stopped(&name)?)))?;
            slot.checkpoint = checkpoint.unwrap_or(slot.checkpoint);
            slot.stopped = stopped;
            slot.dirty = false;
            slot.backoff = Backoff::behind(stopped, slot.checkpoint, position);
        }
        let mut broken = Vec::new();
        for slot in self.slots.iter_mut().filter(|s| s.listener.is_stateful() && !s.stopped) {
            let name = slot.listener.name().to_owned();
            let state = self.store.read(|tx| tx.pm_state(&name))?;
            if let Err(message) = slot.listener.load_state(state.as_deref()) {
                broken.push((name, message));
            }
        }
        // A plugin that cannot load its own state stops; the others go on.
        for (name, message) in broken {
            self.stop_listener(&name, &format!("it cannot load its stored state: {message}"))?;
        }
        Ok(())
    }
}

/// Drop the oldest of `items` once they exceed `max` by a quarter, down to
/// `max`: a bound without moving the whole buffer after every batch.
fn keep_newest<T>(items: &mut Vec<T>, max: usize) {
    if items.len() > max + max / 4 {
        items.drain(..items.len() - max);
    }
}

/// The working state of one group commit.
struct Batch<'a> {
    aggregates: &'a mut Aggregates,
    slots: &'a mut [Slot],
    routes: &'a HashMap<String, Route>,
    trace: Option<&'a mut Vec<TraceEntry>>,
    logs: &'a mut Vec<LogLine>,
    /// Cascade records touched in this batch, written once at the end.
    cascades: HashMap<String, CascadeRecord>,
    /// Reused for every handler call.
    effects: Effects,
    /// Commands dispatched in this batch and not yet executed, with their
    /// sequence numbers; stored only if the batch ends before they run.
    dispatched: VecDeque<(u64, QueuedCommand)>,
    /// Whether the stored queue has been emptied in this batch.
    stored_queue_drained: bool,
    /// Events appended in this batch and not yet through the phases: handed
    /// over directly instead of read back from the log.
    appended: VecDeque<Event>,
    /// The next command sequence number.
    next_seq: u64,
    /// See [`Options::max_causation_depth`].
    max_depth: usize,
    /// A retried parked event that fails again keeps its id.
    repark_as: Option<u64>,
    /// See [`Options::cascade_budget`].
    cascade_budget: usize,
    /// Budgets cascades were submitted with, as read in this batch.
    budgets: HashMap<String, Option<usize>>,
    /// A failed call waits for its retry on a timer (the listener in
    /// [`Backoff`]) instead of sleeping in the transaction. Off for operator
    /// actions (`parked retry`, `plugin start`), which retry in place.
    defer_retries: bool,
}

impl Batch<'_> {
    /// Write what the batch produced besides events into `tx`.
    fn finish(&mut self, tx: &mut Tx<'_>, read_models: &ReadModels) -> Result<(), Error> {
        // What was dispatched but not yet executed waits in the stored queue.
        for (seq, queued) in self.dispatched.drain(..) {
            tx.enqueue(seq, &queued)?;
        }
        tx.set_next_command_seq(self.next_seq)?;
        read_models.flush(tx)?;
        for (correlation_id, record) in &self.cascades {
            tx.put_cascade(correlation_id, record)?;
        }
        // A listener its policy stopped keeps the checkpoint before the failure.
        for slot in self.slots.iter().filter(|s| s.stopped) {
            tx.set_stopped(slot.listener.name(), true)?;
            tx.set_checkpoint(slot.listener.name(), slot.checkpoint)?;
        }
        // State blobs commit with the checkpoints that cover them.
        for slot in self.slots.iter_mut().filter(|s| s.dirty && s.listener.is_stateful()) {
            let state = slot.listener.save_state().map_err(|message| PluginError::State {
                plugin: slot.listener.name().to_owned(),
                action: "save",
                message,
            })?;
            tx.put_pm_state(slot.listener.name(), &state)?;
        }
        Ok(())
    }

    /// The oldest command waiting: the stored queue (filled before this
    /// batch) first, then what this batch dispatched, in dispatch order.
    fn next_command(&mut self, tx: &mut Tx<'_>) -> Result<Option<QueuedCommand>, StoreError> {
        if !self.stored_queue_drained {
            if let Some(queued) = tx.dequeue()? {
                return Ok(Some(queued));
            }
            self.stored_queue_drained = true;
        }
        Ok(self.dispatched.pop_front().map(|(_, queued)| queued))
    }

    fn cascade(&mut self, tx: &Tx<'_>, correlation_id: &str) -> Result<&mut CascadeRecord, StoreError> {
        if !self.cascades.contains_key(correlation_id) {
            let record = tx.cascade(correlation_id)?.unwrap_or_default();
            self.cascades.insert(correlation_id.to_owned(), record);
        }
        Ok(self.cascades.get_mut(correlation_id).expect("inserted above"))
    }

    /// The budget the cascade's command was submitted with, if any.
    fn cascade_budget_of(&mut self, tx: &Tx<'_>, correlation_id: &str) -> Result<Option<usize>, StoreError> {
        if let Some(budget) = self.budgets.get(correlation_id) {
            return Ok(*budget);
        }
        let budget = tx.cascade_budget(correlation_id)?.map(|b| b as usize);
        self.budgets.insert(correlation_id.to_owned(), budget);
        Ok(budget)
    }

    fn process_event(&mut self, tx: &mut Tx<'_>, event: &Event) -> Result<(), StoreError> {
        let mut waiting = 0;
        if let Some(route) = self.routes.get(&event.name) {
            for &(slot, handler) in route.on.iter().chain(&route.after) {
                let s = &self.slots[slot];
                if !s.stopped && s.backoff.is_none() && s.checkpoint < event.position {
                    self.call(tx, slot, handler, event, 1)?;
                }
            }
            // A listener waiting to retry this event or an earlier one
            // handles it when it catches up: until then its cascade waits.
            waiting = route
                .slots
                .iter()
                .filter(|&&slot| self.slots[slot].backoff.is_some_and(|b| b.position <= event.position))
                .count() as u64;
        }
        let cascade = self.cascade(tx, &event.correlation_id)?;
        cascade.outstanding = (cascade.outstanding + waiting).saturating_sub(1);
        Ok(())
    }

    /// Let every listener whose backoff is over catch up from the event it
    /// waits at through `through`, in its own order; returns the events it
    /// handled. A call that fails again waits again.
    fn retry_waiting(&mut self, tx: &mut Tx<'_>, through: u64) -> Result<usize, StoreError> {
        let now = Instant::now();
        let mut done = 0;
        for slot in 0..self.slots.len() {
            let Some(backoff) = self.slots[slot].backoff.filter(|b| b.until <= now) else {
                continue;
            };
            self.slots[slot].backoff = None;
            let by_event = handlers_by_event(self.slots[slot].listener.as_ref());
            for position in backoff.position..=through {
                let event = tx.logged_event(position)?;
                let routed = by_event.get(&event.name).map_or(&[][..], Vec::as_slice);
                let (mut handlers, mut attempt) = (routed, 1);
                // At the event it waited at: from the handler that failed,
                // as its next attempt.
                if position == backoff.position
                    && let Some(failed) = backoff.handler
                {
                    handlers = &routed[routed.iter().position(|&h| h == failed).unwrap_or(routed.len())..];
                    attempt = backoff.attempt;
                }
                for &handler in handlers {
                    self.call(tx, slot, handler, &event, attempt)?;
                    attempt = 1;
                    if self.slots[slot].stopped || self.slots[slot].backoff.is_some() {
                        break;
                    }
                }
                if self.slots[slot].backoff.is_some() {
                    break;
                }
                if !routed.is_empty() {
                    // Handled (or parked, or stopped at): its cascade stops waiting.
                    let cascade = self.cascade(tx, &event.correlation_id)?;
                    cascade.outstanding = cascade.outstanding.saturating_sub(1);
                    done += 1;
                }
                if self.slots[slot].stopped {
                    self.release(tx, slot, position + 1, through)?;
                    break;
                }
                self.slots[slot].checkpoint = position;
            }
        }
        Ok(done)
    }

    /// The cascades of events `from..=through` that listener `slot` was to
    /// handle stop waiting for it (it was stopped or removed while behind).
    fn release(&mut self, tx: &mut Tx<'_>, slot: usize, from: u64, through: u64) -> Result<(), StoreError> {
        for position in from..=through {
            let event = tx.logged_event(position)?;
            if self.routes.get(&event.name).is_some_and(|r| r.slots.contains(&slot)) {
                let cascade = self.cascade(tx, &event.correlation_id)?;
                cascade.outstanding = cascade.outstanding.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Call one handler for one live event, as call number `attempt` for
    /// it; a failing call is retried with backoff up to the listener's
    /// attempts, then the event is parked for it (or the listener stopped).
    /// With `defer_retries` the retry waits on a timer: the listener goes
    /// into [`Backoff`] and this returns at once. Returns the parked id when
    /// it failed for good.
    fn call(
        &mut self,
        tx: &mut Tx<'_>,
        slot: usize,
        handler: usize,
        event: &Event,
        attempt: u32,
    ) -> Result<Option<u64>, StoreError> {
        let max_depth = self.max_depth;
        let started = self.trace.is_some().then(Instant::now);
        self.slots[slot].dirty = true;
        let on_error = self.slots[slot].listener.on_error();
        let attempts = on_error.attempts.max(1);
        let mut attempt = attempt;
        // The pause before the next attempt, when that waits on a timer.
        let mut deferred = None;
        let result = loop {
            self.slots[slot].calls += 1;
            let call_started = Instant::now();
            let result = self.slots[slot]
                .listener
                .handle(handler, event, Context::default(), &mut self.effects);
            self.slots[slot].stats[handler].record(call_started.elapsed(), result.is_err());
            match result {
                Err(HandlerError::Failed(_)) if attempt < attempts => {
                    // A failed call is atomic: what it dispatched is dropped.
                    self.effects.commands.clear();
                    let pause = RETRY_BACKOFF * 2u32.pow(attempt - 1);
                    if self.defer_retries {
                        deferred = Some(pause);
                        break result;
                    }
                    std::thread::sleep(pause);
                    attempt += 1;
                }
                result => break result,
            }
        };
        let listener = &self.slots[slot].listener;
        let plugin = || listener.name().to_owned();
        let failure = match result {
            Ok(()) => None,
            Err(HandlerError::Failed(message)) => Some(message),
            Err(HandlerError::SkipRefreshing) => {
                Some("returned `skip-refreshing` outside a refresh; only a refresh may skip an event".to_owned())
            }
        };
        let export = || listener.handlers()[handler].export_name();
        if let (Some(started), Some(trace)) = (started, self.trace.as_deref_mut()) {
            trace.push(TraceEntry {
                correlation_id: event.correlation_id.clone(),
                plugin: plugin(),
                handler: export(),
                event: event.name.clone(),
                position: event.position,
                outcome: failure.clone().map_or(Outcome::Ok, Outcome::Failed),
                duration: started.elapsed(),
            });
        }
        let failure = failure.map(|message| HandlerFailure {
            plugin: plugin(),
            handler: export(),
            event: event.name.clone(),
            position: event.position,
            message,
            parked: None,
            stopped: false,
        });
        // Drained, not taken: the buffers keep their capacity for the next call.
        self.logs
            .extend(self.effects.logs.drain(..).map(|(level, message)| LogLine {
                correlation_id: event.correlation_id.clone(),
                plugin: plugin(),
                level,
                message,
            }));
        if let Some(pause) = deferred {
            // Called again once the pause is over; until then the listener
            // waits and the others go on.
            self.effects.commands.clear();
            self.slots[slot].backoff = Some(Backoff {
                until: Instant::now() + pause,
                position: event.position,
                handler: Some(handler),
                attempt: attempt + 1,
            });
            return Ok(None);
        }
        if let Some(mut failure) = failure {
            // A failed handler is atomic: what it dispatched is dropped.
            self.effects.commands.clear();
            if on_error.policy == Policy::Stop {
                // The listener stops before this event; starting it again
                // resumes here.
                self.slots[slot].stopped = true;
                self.slots[slot].checkpoint = event.position - 1;
                failure.stopped = true;
                self.cascade(tx, &event.correlation_id)?
                    .failures
                    .push(Failure::Handler(failure));
                return Ok(None);
            }
            // Otherwise the event is parked for this listener, to retry or skip later.
            let id = tx.park(
                self.repark_as.take(),
                &Parked {
                    plugin: failure.plugin.clone(),
                    handler: failure.handler.clone(),
                    event: event.name.clone(),
                    position: event.position,
                    correlation_id: event.correlation_id.clone(),
                    message: failure.message.clone(),
                    attempts: attempt,
                    parked_at: crate::store::now_millis(),
                },
            )?;
            failure.parked = Some(id);
            self.cascade(tx, &event.correlation_id)?
                .failures
                .push(Failure::Handler(failure));
            return Ok(Some(id));
        }
        if self.effects.commands.is_empty() {
            return Ok(None);
        }
        let plugin = self.slots[slot].listener.name().to_owned();
        let mut chain = causation_chain(&event.metadata);
        chain.push(format!("{plugin}/{}", event.name));
        if chain.len() > max_depth {
            self.effects.commands.clear();
            let failure = Failure::CausationDepth(CausationDepthError { max: max_depth, chain });
            self.cascade(tx, &event.correlation_id)?.failures.push(failure);
            return Ok(None);
        }
        // A cascade that would outgrow its budget fails, and stops growing.
        // The budget is the command's, else the dispatching plugin's, else
        // the host's.
        let count = self.effects.commands.len();
        let max = match self.cascade_budget_of(tx, &event.correlation_id)? {
            Some(max) => max,
            None => self.slots[slot]
                .listener
                .cascade_budget()
                .unwrap_or(self.cascade_budget),
        };
        let record = self.cascade(tx, &event.correlation_id)?;
        // Each queued command counts twice: itself and the event it will
        // likely append, so the cascade stops at its budget, not past it.
        let size = record.events.len() + record.commands.len() + 2 * record.outstanding as usize;
        if size + 2 * count > max {
            if !record.failures.iter().any(|f| matches!(f, Failure::CascadeBudget(_))) {
                record.failures.push(Failure::CascadeBudget(CascadeBudgetError {
                    max,
                    plugin,
                    dropped: count,
                }));
            }
            self.effects.commands.clear();
            return Ok(None);
        }
        record.outstanding += count as u64;
        let cause = Cause {
            plugin,
            event: event.name.clone(),
            stream_type: event.stream_type.clone(),
            stream_id: event.stream_id.clone(),
            payload: event.payload.clone(),
            chain,
        };
        for mut command in self.effects.commands.drain(..) {
            if command.actor_id.is_none() {
                command.actor_id.clone_from(&event.actor_id);
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let queued = QueuedCommand {
                id: format!("c{seq}"),
                command,
                correlation_id: event.correlation_id.clone(),
                causation_id: Some(event.id()),
                cause: Some(cause.clone()),
                expected_version: None,
            };
            self.dispatched.push_back((seq, queued));
        }
        Ok(None)
    }

    fn execute_command(&mut self, tx: &mut Tx<'_>, queued: QueuedCommand) -> Result<(), StoreError> {
        let metadata = match &queued.cause {
            Some(cause) => serde_json::json!({ "issuedBy": cause.plugin, "chain": cause.chain }).to_string(),
            None => "{}".to_owned(),
        };
        let envelope = Envelope {
            metadata,
            actor_id: queued.command.actor_id.clone(),
            causation_id: queued.id.clone(),
            correlation_id: queued.correlation_id.clone(),
        };
        let outcome = self.aggregates.execute(
            tx,
            &queued.command,
            queued.expected_version,
            &envelope,
            queued.cause.as_ref(),
        )?;
        let (events, failure) = match outcome {
            Ok(events) => (events, None),
            Err(failure) => (Vec::new(), Some(failure)),
        };
        let cascade = self.cascade(tx, &queued.correlation_id)?;
        cascade.commands.push(CommandRecord {
            id: queued.id,
            causation_id: queued.causation_id,
            issued_by: queued.cause.map(|c| c.plugin),
            stream: queued.command.stream(),
            name: queued.command.name,
        });
        cascade.outstanding += events.len() as u64;
        cascade.events.extend(events.iter().map(|e| e.position));
        cascade.failures.extend(failure);
        cascade.outstanding = cascade.outstanding.saturating_sub(1);
        // Handed to the phases directly instead of being read back from the log.
        self.appended.extend(events);
        Ok(())
    }
}

/// The `chain` an event's metadata records: how process managers led to it.
fn causation_chain(metadata: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Metadata {
        #[serde(default)]
        chain: Vec<String>,
    }
    serde_json::from_str::<Metadata>(metadata).map_or_else(|_| Vec::new(), |m| m.chain)
}

fn validate_handlers(aggregates: &Aggregates, listener: &dyn Listener) -> Result<(), PluginError> {
    for handler in listener.handlers() {
        if !aggregates.declares(&handler.event) {
            let names = aggregates.event_names();
            return Err(PluginError::UnknownEvent {
                plugin: listener.name().to_owned(),
                export: handler.export_name(),
                event: handler.event.clone(),
                known: crate::aggregate::quoted_list(names.iter().map(String::as_str)),
            });
        }
    }
    Ok(())
}

/// A listener's handlers per event name: the `on-` handler first, then the
/// `after-` handler.
fn handlers_by_event(listener: &dyn Listener) -> HashMap<String, Vec<usize>> {
    let mut by_event: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, handler) in listener.handlers().iter().enumerate() {
        by_event.entry(handler.event.clone()).or_default().push(index);
    }
    for handlers in by_event.values_mut() {
        handlers.sort_by_key(|&h| listener.handlers()[h].phase == Phase::After);
    }
    by_event
}

fn routes(slots: &[Slot]) -> HashMap<String, Route> {
    let mut routes: HashMap<String, Route> = HashMap::new();
    for (slot_index, slot) in slots.iter().enumerate() {
        for (handler_index, handler) in slot.listener.handlers().iter().enumerate() {
            let route = routes.entry(handler.event.clone()).or_default();
            let phase = match handler.phase {
                Phase::On => &mut route.on,
                Phase::After => &mut route.after,
            };
            phase.push((slot_index, handler_index));
            if route.slots.last() != Some(&slot_index) {
                route.slots.push(slot_index);
            }
        }
    }
    routes
}

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
//!
//! # Layout
//!
//! This file holds the pipeline's records and the loop (`step`,
//! `run_until_*`, `settled`, retries on a timer); the rest is split by job:
//! `intake.rs` (submitting and executing commands), `batch.rs` (one group
//! commit: events through both phases, commands through their aggregates),
//! `listeners.rs` (registering listeners and aggregates, routes, stats),
//! `operations.rs` (operator actions: stop, start, remove, cancel, parked
//! events, state reset) and `refresh.rs` (replaying history).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::aggregate::Aggregates;
use crate::error::{Error, Failure, StoreError};
use crate::event::Event;
use crate::host_api::Level;
use crate::listener::Listener;
use crate::read_model::ReadModels;
pub use crate::records::{CascadeRecord, Cause, CommandRecord, Parked, Skipped, Submission};
use crate::store::{EventLog, Instances, Progress, Storage, Store, WorkQueue};

mod batch;
mod call;
mod instances;
mod intake;
mod lines;
mod listeners;
mod operations;
mod outbox;
mod quotas;
mod refresh;

pub(crate) use batch::record_grant_change;
use intake::{admit, new_cascade};

pub use instances::{LATENESS_BUCKETS, TimerStats};
pub use outbox::OutboxQueue;
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
    /// The PostgreSQL database (`postgres://USER@HOST:PORT/DB`) a runtime
    /// opens instead of the data directory's redb file.
    pub store: Option<String>,
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
            store: None,
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
    /// Handler calls, when tracing is on: kept for every caller that asks
    /// until [`Options::retained_lines`] drops them, oldest cascades first.
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
    /// See [`Progress::after_pending`]: the position after `checkpoint`
    /// whose `on-` handler ran and whose `after-` handler has not.
    after_pending: Option<u64>,
    /// Whether it handled an event in the current batch (where it resumes
    /// must commit with what the call did).
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
    /// The event it resumes at: it has handled everything before (and, if
    /// [`Slot::after_pending`] names it, its `on-` handler of this one).
    position: u64,
    /// Which attempt the first call at `position` is.
    attempt: u32,
}

impl Backoff {
    /// A running listener behind the pipeline (it was waiting to retry when
    /// the host went down, or a batch rolled back) catches up at once.
    fn behind(stopped: bool, checkpoint: u64, pipeline_position: u64) -> Option<Backoff> {
        (!stopped && checkpoint < pipeline_position).then(|| Backoff {
            until: Instant::now(),
            position: checkpoint + 1,
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

/// Which handlers an event name reaches, as (listener, handler) indices.
#[derive(Default)]
struct Route {
    on: Vec<(usize, usize)>,
    after: Vec<(usize, usize)>,
    /// The listeners the event reaches, each once.
    slots: Vec<usize>,
}

/// The event loop over one store, with its aggregates and listeners.
pub struct Pipeline<S: Storage = Store> {
    store: S,
    read_models: ReadModels,
    aggregates: Aggregates,
    slots: Vec<Slot>,
    routes: HashMap<String, Route>,
    options: Options,
    trace: lines::Retained<TraceEntry>,
    /// Cascades submitted with [`Submission::trace`], until collected.
    traced: HashSet<String>,
    /// Cascades that settled in commits since [`Pipeline::take_settled`];
    /// kept only once someone takes them.
    settled: Option<Vec<String>>,
    logs: lines::Retained<LogLine>,
    /// When the earliest pending timer is due (`Some(None)`: none is
    /// pending), so that a step only looks at the timers when one is due;
    /// `None` until read from the store again.
    next_timer: Option<Option<u64>>,
    timer_stats: TimerStats,
    outbox: OutboxQueue,
}

impl<S: Storage> Pipeline<S> {
    /// A pipeline over `store` with no aggregates or listeners yet.
    pub fn new(store: S, options: Options) -> Self {
        Pipeline {
            read_models: ReadModels::new(std::sync::Arc::new(store.clone())),
            store,
            aggregates: Aggregates::default(),
            slots: Vec::new(),
            routes: HashMap::new(),
            options,
            trace: lines::Retained::default(),
            traced: HashSet::new(),
            settled: None,
            logs: lines::Retained::default(),
            next_timer: None,
            timer_stats: TimerStats::default(),
            outbox: OutboxQueue::default(),
        }
    }

    /// Timers fired since the pipeline was opened, and how late.
    pub fn timer_stats(&self) -> &TimerStats {
        &self.timer_stats
    }

    /// The store.
    pub fn store(&self) -> &S {
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

    /// The cascades that settled in the commits since the last call (a
    /// cascade touched again after it settled, e.g. by a parked retry, is
    /// named again): what waiting callers need, without asking the store
    /// about each of them. The pipeline keeps these names from the first
    /// call on, so one that nobody asks does not collect them.
    pub fn take_settled(&mut self) -> Vec<String> {
        self.settled.replace(Vec::new()).unwrap_or_default()
    }

    /// Units of work (events or commands) per group commit.
    pub fn batch_size(&self) -> usize {
        self.options.batch_size.max(1)
    }

    /// The settled answer of a cascade, or `None` while work is outstanding.
    /// Trace entries and logs of the cascade are handed over once.
    ///
    /// # Errors
    ///
    /// A storage error; an unknown correlation id.
    pub fn settled(&mut self, correlation_id: &str) -> Result<Option<Settled>, Error> {
        self.settled_all(&[correlation_id])
            .map(|mut answers| answers.pop().expect("one answer per id"))?
    }

    /// [`Pipeline::settled`] for many cascades, read in one transaction:
    /// an answer per id, in order.
    ///
    /// # Errors
    ///
    /// A storage error (an unknown id is its own answer's error).
    pub fn settled_all(&mut self, ids: &[&str]) -> Result<Vec<Result<Option<Settled>, Error>>, Error> {
        // A read transaction: no write lock, nothing to abort.
        let found = self.store.read(|tx| {
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                let record = tx.cascade(id)?;
                let mut events = Vec::new();
                if let Some(record) = record.as_ref().filter(|r| r.outstanding == 0) {
                    for &position in &record.events {
                        events.extend(tx.event(position)?);
                    }
                }
                found.push(record.map(|record| (record, events)));
            }
            Ok::<_, StoreError>(found)
        })?;
        Ok(ids
            .iter()
            .zip(found)
            .map(|(&id, found)| match found {
                None => Err(Error::UnknownCascade {
                    correlation_id: id.to_owned(),
                }),
                Some((record, _)) if record.outstanding > 0 => Ok(None),
                Some((record, events)) => {
                    let (trace, logs) = self.collect_lines(id);
                    Ok(Some(Settled {
                        correlation_id: id.to_owned(),
                        events,
                        commands: record.commands,
                        failures: record.failures,
                        trace,
                        logs,
                    }))
                }
            })
            .collect())
    }

    /// The trace entries and log lines of cascade `id`: the log lines are
    /// handed over once, the trace to every caller that asks (the console's
    /// story of a cascade asks after its first caller) until the bound
    /// drops it.
    fn collect_lines(&mut self, id: &str) -> (Vec<TraceEntry>, Vec<LogLine>) {
        self.traced.remove(id);
        (self.trace.peek(id), self.logs.take(id))
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

    /// When the next pending timer is due, in milliseconds since the Unix
    /// epoch by [`crate::clock`]: a step at or after it fires it.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn next_timer(&mut self) -> Result<Option<u64>, StoreError> {
        if let Some(next) = self.next_timer {
            return Ok(next);
        }
        let next = self.store.read(|tx| tx.due_timers(u64::MAX, None, 1))?;
        let next = next.first().map(|t| t.due);
        self.next_timer = Some(next);
        Ok(next)
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
        let budget = self.options.batch_size.max(1);
        let now = crate::clock::now_millis();
        let timers_due = self.next_timer()?.is_some_and(|due| due <= now);
        // Recorded once the batch caught up with the log; kept for the next
        // batch if this one does not get there or rolls back.
        let outcomes = std::mem::take(&mut self.outbox.outcomes);
        let result = self.in_batch(|batch, tx| {
            batch.defer_retries = true;
            // Submissions wait in memory like dispatched commands: stored
            // only if the batch ends before they run (a lone command is
            // queued and run in one commit without touching the queue).
            let (ids, admitted, traced) = admit(tx, &mut batch.next_seq, submissions)?;
            batch.traced.extend(traced.iter().cloned());
            batch.traced_now.extend(traced);
            for (seq, queued) in admitted {
                batch.cascades.insert(queued.correlation_id.clone(), new_cascade());
                batch.dispatched.push_back((seq, queued));
            }
            let mut position = tx.pipeline_position()?;
            let mut done = batch.retry_waiting(tx, position)?;
            let (mut timers_due, mut fired) = (timers_due, 0);
            let mut recorded = None;
            while done < budget {
                if position < tx.head()? {
                    position += 1;
                    let event = match batch.appended.pop_front() {
                        Some(event) => event,
                        None => tx.logged_event(position)?,
                    };
                    debug_assert_eq!(event.position, position);
                    batch.process_event(tx, &event)?;
                } else if std::mem::take(&mut timers_due) {
                    // Caught up with the log: due timers join it as
                    // `TimerFired` events, handed to the phases like the
                    // events a command appends.
                    fired = batch.fire_due_timers(tx, now, budget - done)?;
                    continue;
                } else if recorded.is_none() && !outcomes.is_empty() {
                    // Effect outcomes join the log the same way.
                    recorded = Some(batch.record_outcomes(tx, &outcomes)?);
                    continue;
                } else if let Some(queued) = batch.next_command(tx)? {
                    batch.execute_command(tx, queued)?;
                } else {
                    break;
                }
                done += 1;
            }
            // A handler that ran is work even when its event is not done (an
            // `on-` handler ran, the `after-` one waits to retry): its effect
            // and where the listener resumes commit together.
            let changed = done > 0
                || fired > 0
                || recorded.is_some_and(|n| n > 0)
                || !ids.is_empty()
                || batch.slots.iter().any(|s| s.dirty);
            if changed {
                tx.set_pipeline_position(position)?;
                for slot in batch.slots.iter_mut().filter(|s| !s.stopped) {
                    let name = slot.listener.name();
                    match slot.backoff {
                        None if slot.checkpoint < position => {
                            tx.set_checkpoint(name, position)?;
                            if slot.after_pending.take().is_some() {
                                tx.set_after_pending(name, None)?;
                            }
                        }
                        // Where it resumes, durably: a restart must not call
                        // again an `on-` handler whose effects are committed.
                        Some(b) => {
                            tx.set_checkpoint(name, b.position - 1)?;
                            tx.set_after_pending(name, slot.after_pending)?;
                        }
                        None => {}
                    }
                }
            }
            Ok(((ids, done, position, recorded.is_some()), changed))
        });
        let (ids, done, position, recorded) = match result {
            Ok(result) => result,
            Err(err) => {
                self.outbox.outcomes.splice(0..0, outcomes);
                return Err(err);
            }
        };
        if !recorded {
            self.outbox.outcomes.splice(0..0, outcomes);
        }
        // Only after the commit: memory follows what is durable.
        for slot in self.slots.iter_mut().filter(|s| !s.stopped) {
            slot.checkpoint = match slot.backoff {
                None => slot.checkpoint.max(position),
                Some(b) => b.position - 1,
            };
        }
        Ok((ids, done))
    }

    /// After a panic in an operation on the pipeline: memory back to the
    /// last commit (read-model writes, listeners' checkpoints and states).
    pub(crate) fn reload_committed(&mut self) {
        self.read_models.discard();
        let _ = self.reload_states();
    }

    /// Return every listener to what is committed: checkpoint and stopped
    /// flag (instances live in the store, so they never need it).
    fn reload_states(&mut self) -> Result<(), Error> {
        let position = self.store.read(|tx| tx.pipeline_position())?;
        for slot in self.slots.iter_mut() {
            let name = slot.listener.name().to_owned();
            let (checkpoint, after_pending, stopped) = self.store.read(|tx| {
                Ok::<_, StoreError>((tx.checkpoint(&name)?, tx.after_pending(&name)?, tx.is_stopped(&name)?))
            })?;
            slot.checkpoint = checkpoint.unwrap_or(slot.checkpoint);
            slot.after_pending = after_pending;
            slot.stopped = stopped;
            slot.dirty = false;
            slot.backoff = Backoff::behind(stopped, slot.checkpoint, position);
        }
        Ok(())
    }
}

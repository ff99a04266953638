//! One group commit: the [`Batch`] that runs events through both phases and
//! commands through their aggregates inside one write transaction.

use super::listeners::handlers_by_event;
use super::{Backoff, LogLine, Outcome, Pipeline, RETRY_BACKOFF, Route, Slot, TraceEntry};
use crate::aggregate::Aggregates;
use crate::error::{CascadeBudgetError, CausationDepthError, Error, Failure, HandlerFailure, PluginError, StoreError};
use crate::event::{Envelope, Event};
use crate::host_api::Effects;
use crate::listener::{Context, HandlerError};
use crate::manifest::Policy;
use crate::read_model::ReadModels;
use crate::records::{CascadeRecord, Cause, CommandRecord, Parked, QueuedCommand};
use crate::store::{Storage, UnitOfWork, WorkQueue};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

impl<S: Storage> Pipeline<S> {
    /// Run `work` in one group commit. `work` returns its result and whether
    /// it did anything; if it did, everything the batch produced commits with
    /// it: queued commands, read-model writes, cascade records, state blobs.
    /// On an error everything rolls back, in redb and in memory.
    pub(super) fn in_batch<R>(
        &mut self,
        work: impl FnOnce(&mut Batch<'_>, &mut S::Tx<'_>) -> Result<(R, bool), Error>,
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
}

/// Drop the oldest of `items` once they exceed `max` by a quarter, down to
/// `max`: a bound without moving the whole buffer after every batch.
pub(super) fn keep_newest<T>(items: &mut Vec<T>, max: usize) {
    if items.len() > max + max / 4 {
        items.drain(..items.len() - max);
    }
}

/// The working state of one group commit.
pub(super) struct Batch<'a> {
    pub(super) aggregates: &'a mut Aggregates,
    pub(super) slots: &'a mut [Slot],
    pub(super) routes: &'a HashMap<String, Route>,
    pub(super) trace: Option<&'a mut Vec<TraceEntry>>,
    pub(super) logs: &'a mut Vec<LogLine>,
    /// Cascade records touched in this batch, written once at the end.
    pub(super) cascades: HashMap<String, CascadeRecord>,
    /// Reused for every handler call.
    pub(super) effects: Effects,
    /// Commands dispatched in this batch and not yet executed, with their
    /// sequence numbers; stored only if the batch ends before they run.
    pub(super) dispatched: VecDeque<(u64, QueuedCommand)>,
    /// Whether the stored queue has been emptied in this batch.
    pub(super) stored_queue_drained: bool,
    /// Events appended in this batch and not yet through the phases: handed
    /// over directly instead of read back from the log.
    pub(super) appended: VecDeque<Event>,
    /// The next command sequence number.
    pub(super) next_seq: u64,
    /// See [`Options::max_causation_depth`].
    pub(super) max_depth: usize,
    /// A retried parked event that fails again keeps its id.
    pub(super) repark_as: Option<u64>,
    /// See [`Options::cascade_budget`].
    pub(super) cascade_budget: usize,
    /// Budgets cascades were submitted with, as read in this batch.
    pub(super) budgets: HashMap<String, Option<usize>>,
    /// A failed call waits for its retry on a timer (the listener in
    /// [`Backoff`]) instead of sleeping in the transaction. Off for operator
    /// actions (`parked retry`, `plugin start`), which retry in place.
    pub(super) defer_retries: bool,
}

impl Batch<'_> {
    /// Write what the batch produced besides events into `tx`.
    pub(super) fn finish(&mut self, tx: &mut impl UnitOfWork, read_models: &ReadModels) -> Result<(), Error> {
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
    pub(super) fn next_command(&mut self, tx: &mut impl UnitOfWork) -> Result<Option<QueuedCommand>, StoreError> {
        if !self.stored_queue_drained {
            if let Some(queued) = tx.dequeue()? {
                return Ok(Some(queued));
            }
            self.stored_queue_drained = true;
        }
        Ok(self.dispatched.pop_front().map(|(_, queued)| queued))
    }

    pub(super) fn cascade(
        &mut self,
        tx: &impl UnitOfWork,
        correlation_id: &str,
    ) -> Result<&mut CascadeRecord, StoreError> {
        if !self.cascades.contains_key(correlation_id) {
            let record = tx.cascade(correlation_id)?.unwrap_or_default();
            self.cascades.insert(correlation_id.to_owned(), record);
        }
        Ok(self.cascades.get_mut(correlation_id).expect("inserted above"))
    }

    /// The budget the cascade's command was submitted with, if any.
    pub(super) fn cascade_budget_of(
        &mut self,
        tx: &impl UnitOfWork,
        correlation_id: &str,
    ) -> Result<Option<usize>, StoreError> {
        if let Some(budget) = self.budgets.get(correlation_id) {
            return Ok(*budget);
        }
        let budget = tx.cascade_budget(correlation_id)?.map(|b| b as usize);
        self.budgets.insert(correlation_id.to_owned(), budget);
        Ok(budget)
    }

    pub(super) fn process_event(&mut self, tx: &mut impl UnitOfWork, event: &Event) -> Result<(), StoreError> {
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
    pub(super) fn retry_waiting(&mut self, tx: &mut impl UnitOfWork, through: u64) -> Result<usize, StoreError> {
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
    pub(super) fn release(
        &mut self,
        tx: &mut impl UnitOfWork,
        slot: usize,
        from: u64,
        through: u64,
    ) -> Result<(), StoreError> {
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
    pub(super) fn call(
        &mut self,
        tx: &mut impl UnitOfWork,
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

    pub(super) fn execute_command(
        &mut self,
        tx: &mut impl UnitOfWork,
        queued: QueuedCommand,
    ) -> Result<(), StoreError> {
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
pub(super) fn causation_chain(metadata: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        chain: Vec<String>,
    }
    serde_json::from_str::<Metadata>(metadata).map_or_else(|_| Vec::new(), |m| m.chain)
}

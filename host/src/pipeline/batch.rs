//! One group commit: the [`Batch`] that runs events through both phases and
//! commands through their aggregates inside one write transaction.

use super::instances::TimerNote;
use super::listeners::{handlers_by_event, resumed};
use super::{LogLine, Pipeline, Route, Slot, TraceEntry};
use crate::aggregate::Aggregates;
use crate::error::{Error, StoreError};
use crate::event::{Envelope, Event, NewEvent};
use crate::grants::{GRANTS_CHANGED, GRANTS_STREAM, GrantChange};
use crate::host_api::Effects;
use crate::instance::{HOST_STREAM, delivered_to};
use crate::read_model::ReadModels;
use crate::records::{CascadeRecord, CommandRecord, Effect, QueuedCommand};
use crate::store::{Storage, UnitOfWork, WorkQueue};
use std::collections::{HashMap, HashSet, VecDeque};
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
        let Pipeline {
            store,
            read_models: _,
            aggregates,
            slots,
            routes,
            options,
            trace: _,
            traced,
            settled: kept,
            logs: _,
            next_timer: _,
            timer_stats: _,
            outbox: _,
        } = self;
        let mut batch = Batch {
            aggregates,
            slots,
            routes,
            trace: Vec::new(),
            trace_all: options.trace,
            traced,
            logs: Vec::new(),
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
            settled: kept.is_some().then(Vec::new),
            traced_now: Vec::new(),
            timers: TimerNote::default(),
            requested: Vec::new(),
            read_models: &read_models,
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
        let settled = std::mem::take(&mut batch.settled);
        let traced_now = std::mem::take(&mut batch.traced_now);
        let timers = std::mem::take(&mut batch.timers);
        let requested = std::mem::take(&mut batch.requested);
        // Lines join what callers collect only when their batch commits: a
        // rollback drops them, since the redo produces them again.
        let (trace, logs) = (std::mem::take(&mut batch.trace), std::mem::take(&mut batch.logs));
        drop(batch);
        let result = match written {
            Ok(result) => result,
            Err(err) => {
                // Rolled back: read models and stateful listeners return to
                // the committed state. Traced ids are given out again.
                for id in &traced_now {
                    self.traced.remove(id);
                }
                self.read_models.discard();
                self.next_timer = None;
                self.reload_states()?;
                return Err(err);
            }
        };
        self.next_timer = timers.next(self.next_timer);
        self.timer_stats.record(&timers.lateness);
        self.outbox.requested.extend(requested);
        for slot in self.slots.iter_mut() {
            slot.dirty = false;
        }
        if let (Some(kept), Some(settled)) = (&mut self.settled, settled) {
            kept.extend(settled);
        }
        self.logs.extend(logs, self.options.retained_lines);
        self.trace.extend(trace, self.options.retained_lines);
        Ok(result)
    }
}

/// Append `event` to the host's stream `cascade:<stream_id>` as the one
/// event of the new cascade `envelope` names; returns its record (the event
/// outstanding until the phases pass it) and the event.
fn append_to_host_stream(
    tx: &mut (impl UnitOfWork + ?Sized),
    stream_id: &str,
    event: NewEvent,
    envelope: &Envelope,
) -> Result<(CascadeRecord, Vec<Event>), StoreError> {
    let version = tx.stream(HOST_STREAM, stream_id)?.version;
    let events = tx.append_after(HOST_STREAM, stream_id, version, vec![event], envelope, None)?;
    let mut cascade = super::intake::new_cascade();
    cascade.events.extend(events.iter().map(|e| e.position));
    Ok((cascade, events))
}

/// Record a change of a plugin's grants in `tx` (the deploy's own
/// transaction) as a `GrantsChanged` event on `cascade:plugins`, by the
/// deployer, in a cascade `plugins-<seq>` of its own. Delivered to no plugin;
/// the next batch passes it like any event.
pub(crate) fn record_grant_change(tx: &mut (impl UnitOfWork + ?Sized), change: &GrantChange) -> Result<(), StoreError> {
    let seq = tx.next_command_seq()?;
    tx.set_next_command_seq(seq + 1)?;
    let correlation_id = format!("{GRANTS_STREAM}-{seq}");
    let envelope = Envelope {
        metadata: serde_json::json!({ "plugin": change.plugin }).to_string(),
        actor_id: Some(change.by.clone()),
        causation_id: correlation_id.clone(),
        correlation_id: correlation_id.clone(),
    };
    let event = NewEvent {
        name: GRANTS_CHANGED.to_owned(),
        payload: serde_json::to_string(change).expect("a grant change is JSON"),
    };
    let (cascade, _) = append_to_host_stream(tx, GRANTS_STREAM, event, &envelope)?;
    tx.put_cascade(&correlation_id, &cascade)
}

/// The working state of one group commit.
pub(super) struct Batch<'a> {
    pub(super) aggregates: &'a mut Aggregates,
    pub(super) slots: &'a mut [Slot],
    pub(super) routes: &'a HashMap<String, Route>,
    pub(super) trace: Vec<TraceEntry>,
    /// Trace every call ([`super::Options::trace`]), or only the calls of
    /// the cascades in `traced`.
    pub(super) trace_all: bool,
    pub(super) traced: &'a mut HashSet<String>,
    pub(super) logs: Vec<LogLine>,
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
    /// Cascades with nothing outstanding as this batch commits, when the
    /// pipeline keeps them ([`Pipeline::take_settled`]).
    pub(super) settled: Option<Vec<String>>,
    /// Cascades this batch admitted with a trace asked for: forgotten if it
    /// rolls back.
    pub(super) traced_now: Vec<String>,
    /// When timers are due after this batch.
    pub(super) timers: TimerNote,
    /// Effects this batch put in the outbox, for the workers once it commits.
    pub(super) requested: Vec<Effect>,
    /// The read models the calls write: a failed call's writes are undone.
    pub(super) read_models: &'a ReadModels,
}

impl Batch<'_> {
    /// Append `event` to the host's stream `cascade:<stream_id>` as the first
    /// event of a new cascade, `<kind>-<seq>`, with `metadata`: a fired timer
    /// or an effect's outcome. The phases then deliver it like any event the
    /// batch appended.
    pub(super) fn append_host_event(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        kind: &str,
        stream_id: &str,
        event: NewEvent,
        metadata: serde_json::Value,
    ) -> Result<(), StoreError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let correlation_id = format!("{kind}-{seq}");
        let envelope = Envelope {
            metadata: metadata.to_string(),
            actor_id: None,
            causation_id: correlation_id.clone(),
            correlation_id: correlation_id.clone(),
        };
        let (cascade, events) = append_to_host_stream(tx, stream_id, event, &envelope)?;
        self.cascades.insert(correlation_id, cascade);
        self.appended.extend(events);
        Ok(())
    }

    /// Write what the batch produced besides events into `tx`.
    pub(super) fn finish(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        read_models: &ReadModels,
    ) -> Result<(), Error> {
        // What was dispatched but not yet executed waits in the stored queue.
        for (seq, queued) in self.dispatched.drain(..) {
            tx.enqueue(seq, &queued)?;
        }
        tx.set_next_command_seq(self.next_seq)?;
        read_models.flush(tx)?;
        for (correlation_id, record) in &self.cascades {
            tx.put_cascade(correlation_id, record)?;
            if record.outstanding == 0
                && let Some(settled) = &mut self.settled
            {
                settled.push(correlation_id.clone());
            }
        }
        // A listener its policy stopped keeps the checkpoint before the failure.
        for slot in self.slots.iter().filter(|s| s.stopped) {
            tx.set_stopped(slot.listener.name(), true)?;
            tx.set_checkpoint(slot.listener.name(), slot.checkpoint)?;
            tx.set_after_pending(slot.listener.name(), slot.after_pending)?;
        }
        Ok(())
    }

    /// The oldest command waiting: the stored queue (filled before this
    /// batch) first, then what this batch dispatched, in dispatch order.
    pub(super) fn next_command(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
    ) -> Result<Option<QueuedCommand>, StoreError> {
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
        tx: &(impl UnitOfWork + ?Sized),
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
        tx: &(impl UnitOfWork + ?Sized),
        correlation_id: &str,
    ) -> Result<Option<usize>, StoreError> {
        if let Some(budget) = self.budgets.get(correlation_id) {
            return Ok(*budget);
        }
        let budget = tx.cascade_budget(correlation_id)?.map(|b| b as usize);
        self.budgets.insert(correlation_id.to_owned(), budget);
        Ok(budget)
    }

    pub(super) fn process_event(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        event: &Event,
    ) -> Result<(), StoreError> {
        let mut waiting = 0;
        if let Some(route) = self.routes.get(&event.name) {
            for &(slot, handler) in route.on.iter().chain(&route.after) {
                let s = &self.slots[slot];
                if !s.stopped
                    && s.backoff.is_none()
                    && s.checkpoint < event.position
                    && delivered_to(event, s.listener.name())
                {
                    self.call(tx, slot, handler, event, 1)?;
                }
            }
            // A listener waiting to retry this event or an earlier one
            // handles it when it catches up: until then its cascade waits.
            waiting = route
                .slots
                .iter()
                .filter(|&&slot| self.slots[slot].backoff.is_some_and(|b| b.position <= event.position))
                .filter(|&&slot| delivered_to(event, self.slots[slot].listener.name()))
                .count() as u64;
        }
        let cascade = self.cascade(tx, &event.correlation_id)?;
        cascade.outstanding = (cascade.outstanding + waiting).saturating_sub(1);
        Ok(())
    }

    /// Let every listener whose backoff is over catch up from the event it
    /// waits at through `through`, in its own order; returns the events it
    /// handled. A call that fails again waits again.
    pub(super) fn retry_waiting(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        through: u64,
    ) -> Result<usize, StoreError> {
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
                let routed = match delivered_to(&event, self.slots[slot].listener.name()) {
                    true => by_event.get(&event.name).map_or(&[][..], Vec::as_slice),
                    false => &[][..],
                };
                // At the event it waited at, the call that failed is the
                // next attempt; an `on-` handler that already ran is not
                // called again.
                let mut attempt = if position == backoff.position {
                    backoff.attempt
                } else {
                    1
                };
                let after_only = self.slots[slot].after_pending == Some(position);
                for &handler in resumed(self.slots[slot].listener.as_ref(), routed, after_only) {
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
            }
        }
        Ok(done)
    }

    /// The cascades of events `from..=through` that listener `slot` was to
    /// handle stop waiting for it (it was stopped or removed while behind).
    pub(super) fn release(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        slot: usize,
        from: u64,
        through: u64,
    ) -> Result<(), StoreError> {
        for position in from..=through {
            let event = tx.logged_event(position)?;
            if self.routes.get(&event.name).is_some_and(|r| r.slots.contains(&slot))
                && delivered_to(&event, self.slots[slot].listener.name())
            {
                let cascade = self.cascade(tx, &event.correlation_id)?;
                cascade.outstanding = cascade.outstanding.saturating_sub(1);
            }
        }
        Ok(())
    }

    pub(super) fn execute_command(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
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

//! Refresh and rebuild: replaying history into per-instance process managers.
//!
//! A refresh starts the process manager with no instances and no timers and
//! replays, from the first event up to the pipeline's position, every event
//! it handles, fired timers included: both phases, `on-` then `after-`, with
//! `refreshing = true`. Commands dispatched meanwhile are dropped and
//! counted, so history never re-issues commands, and a timer is never fired
//! by a refresh: the ones it schedules that did not fire live are pending
//! after it. The instances, timers and checkpoint commit together. A refresh
//! of one instance replays only its events, up to the listener's checkpoint.
//!
//! Failures do not make a refresh inexact: a call that fails or traps is
//! atomic, as it is live (the state returns to what it was before the call),
//! so the saved state is exactly the one a live run over the same events
//! reached; the failures are reported, and the state is saved all the same.

use crate::store::{Backend, Documents, EventLog, Instances, Progress, Storage, UnitOfWork, WorkQueue};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::instances::{self, Begin, Replayed};
use super::{Pipeline, Slot};
use crate::error::{Error, HandlerFailure, PluginError, StoreError};
use crate::host_api::Effects;
use crate::instance::{HOST_STREAM, delivered_to};
use crate::listener::{Context, HandlerError};
use crate::records::InstanceRecord;

/// Events read from the log per read transaction while replaying.
const CHUNK: usize = 8192;

/// What one refresh did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshReport {
    /// The process manager.
    pub listener: String,
    /// The last position replayed (the pipeline's position).
    pub through: u64,
    /// Events it handles that were replayed.
    pub events: u64,
    /// Handler calls made.
    pub calls: u64,
    /// Events a handler skipped with `skip-refreshing`.
    pub skipped: u64,
    /// Calls not replayed because they are parked, or were skipped by an
    /// operator: they were never applied live either.
    pub parked: u64,
    /// Commands dispatched during the replay, dropped.
    pub dropped_commands: u64,
    /// Effects requested during the replay, dropped: a refresh never calls out.
    pub dropped_effects: u64,
    /// Handlers that failed during the replay.
    pub failures: Vec<HandlerFailure>,
    /// Instances after the replay (the one refreshed, or all).
    pub instances: u64,
    /// Pending timers after the replay.
    pub timers: u64,
    /// The refreshed instance's state after the replay, as stored (a
    /// refresh of one instance only).
    pub state: Option<Vec<u8>>,
    /// Wall time of the replay.
    pub elapsed: Duration,
}

impl RefreshReport {
    /// The report as JSON, the state as JSON when it is JSON (else its size
    /// and hash) rather than a byte array: what `pm refresh --json`,
    /// `rebuild --json` and `POST /pm/{name}/refresh` print.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("reports serialize");
        value["state"] = self.state.as_deref().map_or(serde_json::Value::Null, state_json);
        value["elapsedMicros"] = serde_json::json!(self.elapsed.as_micros() as u64);
        value
    }
}

/// A state blob as JSON when it is JSON, else its size and hash.
pub fn state_json(blob: &[u8]) -> serde_json::Value {
    serde_json::from_slice(blob)
        .unwrap_or_else(|_| serde_json::json!({ "bytes": blob.len(), "sha256": crate::records::content_hash(blob) }))
}

impl<S: Storage> Pipeline<S> {
    /// Refresh the per-instance process manager `name`, every instance or
    /// only `instance`. `progress` is called with (position replayed, last
    /// position) after each chunk of the log.
    ///
    /// # Errors
    ///
    /// [`PluginError::UnknownListener`], [`PluginError::Stateless`], a
    /// storage error.
    pub fn refresh(
        &mut self,
        name: &str,
        instance: Option<&str>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<RefreshReport, Error> {
        let index = self.stateful_slot(name)?;
        if let (Some(_), Some(position)) = (instance, self.slots[index].after_pending) {
            return Err(PluginError::BetweenPhases {
                plugin: name.to_owned(),
                position,
            }
            .into());
        }
        // One instance is replayed as far as the listener has gone live, so
        // that it handles the rest once, when it gets there.
        let through = match instance {
            Some(_) => self.slots[index].checkpoint,
            None => self.store.read(|tx| tx.pipeline_position())?,
        };
        let started = Instant::now();
        let mut replayed = Replayed::default();
        let slot = &mut self.slots[index];
        let into = Some((&mut replayed, instance));
        let replayed_all = replay(&self.store, slot, through, into, progress, &mut || Ok(()))
            .and_then(|report| fired_after(&self.store, name, through, &mut replayed).map(|()| report));
        let mut report = match replayed_all {
            Ok(report) => report,
            Err(err) => {
                // Nothing was stored: the listener goes on as it was.
                self.reload_states()?;
                return Err(err);
            }
        };
        report.instances = replayed.instances.len() as u64;
        report.timers = replayed.timers.len() as u64;
        match instance {
            Some(id) => {
                report.state = replayed.instances.get(id).and_then(|i| i.state.clone());
                self.store.write(|tx| {
                    tx.remove_instance(name, id)?;
                    store_replayed(tx, name, replayed)
                })?;
            }
            None => self.finish_replay(index, through, Some(replayed))?,
        }
        self.next_timer = None;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Replay every projection into empty collections and refresh every
    /// stateful process manager, in registration order; stateless process
    /// managers are not called. `progress` gets the name too.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::refresh`].
    pub fn rebuild(&mut self, progress: &mut dyn FnMut(&str, u64, u64)) -> Result<Vec<RefreshReport>, Error> {
        let mut reports = Vec::new();
        for index in 0..self.slots.len() {
            let name = self.slots[index].listener.name().to_owned();
            let mut progress = |done, total| progress(&name, done, total);
            if self.slots[index].listener.collections().is_some() {
                reports.push(self.rebuild_projection(index, &mut progress)?);
            } else if self.slots[index].listener.instance_rules().is_some() {
                reports.push(self.refresh(&name, None, &mut progress)?);
            }
        }
        Ok(reports)
    }

    /// Clear a projection's collections and replay the log into them. The
    /// read-model writes of each chunk commit in one transaction.
    fn rebuild_projection(&mut self, index: usize, progress: &mut dyn FnMut(u64, u64)) -> Result<RefreshReport, Error> {
        let name = self.slots[index].listener.name().to_owned();
        let collections = self.read_models.owned_by(&name);
        let through = self.store.write(|tx| {
            for collection in &collections {
                tx.rm_clear(collection)?;
            }
            tx.pipeline_position()
        })?;
        let started = Instant::now();
        let read_models = self.read_models.clone();
        let store = &self.store;
        let mut flush = || store.write(|tx| read_models.flush(tx));
        let mut report = match replay(store, &mut self.slots[index], through, None, progress, &mut flush) {
            Ok(report) => report,
            Err(err) => {
                self.read_models.discard();
                self.reload_states()?;
                return Err(err);
            }
        };
        self.finish_replay(index, through, None)?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// A replay through `through` is done: in one commit, listener `index`
    /// stands at `through` with the instances and timers it `replayed` (if
    /// it keeps them), and the cascades of the events it was waiting to
    /// retry stop waiting for it (the replay covered them).
    fn finish_replay(&mut self, index: usize, through: u64, replayed: Option<Replayed>) -> Result<(), Error> {
        self.in_batch(|batch, tx| {
            if let Some(backoff) = batch.slots[index].backoff.take() {
                batch.release(tx, index, backoff.position, through)?;
            }
            let name = batch.slots[index].listener.name();
            if let Some(replayed) = replayed {
                tx.remove_instances(name)?;
                store_replayed(tx, name, replayed)?;
            }
            tx.set_after_pending(name, None)?;
            tx.set_checkpoint(name, through)?;
            Ok(((), true))
        })?;
        let slot = &mut self.slots[index];
        slot.checkpoint = through;
        slot.after_pending = None;
        Ok(())
    }

    /// The committed state of instance `id` of the per-instance process
    /// manager `name` (`None`: no such instance, or it has no state yet).
    ///
    /// # Errors
    ///
    /// [`PluginError::UnknownListener`], [`PluginError::Stateless`], a
    /// storage error.
    pub fn instance_state(&self, name: &str, id: &str) -> Result<Option<InstanceRecord>, Error> {
        self.stateful_slot(name)?;
        Ok(self.store.read(|tx| tx.instance(name, id))?)
    }

    pub(super) fn stateful_slot(&self, name: &str) -> Result<usize, PluginError> {
        let index = self.slot_index(name)?;
        if self.slots[index].listener.instance_rules().is_none() {
            return Err(PluginError::Stateless { name: name.to_owned() });
        }
        Ok(index)
    }
}

/// Replay every event up to `through` that `slot` handles, from its initial state.
/// `after_chunk` runs after each chunk of the log (a projection commits its
/// read-model writes there).
fn replay(
    store: &impl Backend,
    slot: &mut Slot,
    through: u64,
    mut into: Option<(&mut Replayed, Option<&str>)>,
    progress: &mut dyn FnMut(u64, u64),
    after_chunk: &mut dyn FnMut() -> Result<(), StoreError>,
) -> Result<RefreshReport, Error> {
    let listener = &mut slot.listener;
    let name = listener.name().to_owned();
    let rules = listener.instance_rules().cloned();
    let by_event = super::listeners::handlers_by_event(listener.as_ref());
    // Calls that failed for good live, and were parked or skipped, are left
    // out: live, a failed call is atomic, so its effect is in no state.
    // By handler index: no export name is built per replayed call.
    let exports: Vec<String> = listener.handlers().iter().map(|h| h.export_name()).collect();
    let not_applied: HashSet<(usize, u64)> = store.read(|tx| {
        let parked = tx.parked()?.into_iter().map(|(_, p)| p);
        let skipped = tx.skipped()?.into_iter().map(|(_, s)| s.parked);
        Ok::<_, StoreError>(
            parked
                .chain(skipped)
                .filter(|p| p.plugin == name)
                .filter_map(|p| Some((exports.iter().position(|e| *e == p.handler)?, p.position)))
                .collect(),
        )
    })?;
    let mut report = RefreshReport {
        listener: name.clone(),
        through,
        events: 0,
        calls: 0,
        skipped: 0,
        parked: 0,
        dropped_commands: 0,
        dropped_effects: 0,
        failures: Vec::new(),
        instances: 0,
        timers: 0,
        state: None,
        elapsed: Duration::ZERO,
    };
    let ctx = Context { refreshing: true };
    let mut effects = Effects::default();
    let mut from = 1;
    progress(0, through);
    while from <= through {
        let limit = usize::try_from(through - from + 1).unwrap_or(usize::MAX).min(CHUNK);
        let chunk = store.read(|tx| tx.events(from, limit))?;
        let Some(last) = chunk.last() else { break };
        from = last.position + 1;
        for event in &chunk {
            if !delivered_to(event, &name) {
                continue;
            }
            // A fired timer is no longer pending, whether or not a handler
            // takes the event.
            if let (Some(rules), Some((replayed, only))) = (&rules, &mut into) {
                if only.is_some_and(|id| rules.instance_of(event).is_none_or(|(of, _)| of != id)) {
                    continue;
                }
                instances::replay_fired(replayed, &name, event)?;
            }
            let Some(handlers) = by_event.get(&event.name) else {
                continue;
            };
            report.events += 1;
            for &handler in handlers {
                if !not_applied.is_empty() && not_applied.contains(&(handler, event.position)) {
                    report.parked += 1;
                    continue;
                }
                if let (Some(rules), Some((replayed, _))) = (&rules, &into) {
                    match instances::begin(&**replayed, rules, &name, event)? {
                        // A refresh rebuilds what was live: no quota applies.
                        Begin::Call(call) | Begin::Start(call) => effects.instance = Some(call),
                        Begin::Ignored => continue,
                    }
                }
                report.calls += 1;
                slot.calls += 1;
                let result = listener.handle(handler, event, ctx, &mut effects);
                report.dropped_commands += effects.commands.len() as u64;
                report.dropped_effects += effects.requests.len() as u64;
                effects.commands.clear();
                effects.requests.clear();
                effects.logs.clear();
                let call = effects.instance.take();
                match result {
                    Ok(()) => {
                        if let (Some(call), Some((replayed, _))) = (call, &mut into) {
                            instances::finish(&mut **replayed, &name, call, event.position)?;
                        }
                    }
                    Err(HandlerError::SkipRefreshing) => {
                        report.skipped += 1;
                        break;
                    }
                    Err(HandlerError::Failed(message)) => report.failures.push(HandlerFailure {
                        plugin: name.clone(),
                        handler: listener.handlers()[handler].export_name(),
                        event: event.name.clone(),
                        position: event.position,
                        message,
                        parked: None,
                        stopped: false,
                    }),
                }
            }
        }
        after_chunk()?;
        progress(from - 1, through);
    }
    Ok(report)
}

/// Timers that fired after `through` (the listener has their `TimerFired`
/// events still to handle) are not pending: the replay must not bring them
/// back.
fn fired_after(store: &impl Backend, name: &str, through: u64, replayed: &mut Replayed) -> Result<(), Error> {
    let head = store.read(|tx| tx.head())?;
    let mut from = through + 1;
    while from <= head {
        let chunk = store.read(|tx| tx.events(from, CHUNK))?;
        let Some(last) = chunk.last() else { break };
        from = last.position + 1;
        for event in chunk
            .iter()
            .filter(|e| e.stream_type == HOST_STREAM && delivered_to(e, name))
        {
            instances::replay_fired(replayed, name, event)?;
        }
    }
    Ok(())
}

/// Store the instances and timers a replay rebuilt.
fn store_replayed(tx: &mut (impl UnitOfWork + ?Sized), name: &str, replayed: Replayed) -> Result<(), StoreError> {
    for (id, record) in &replayed.instances {
        tx.put_instance(name, id, record)?;
    }
    for timer in replayed.timers.values() {
        tx.put_timer(timer)?;
    }
    Ok(())
}

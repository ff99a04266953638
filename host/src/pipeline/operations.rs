//! Operator actions: stop, start and remove listeners, the queue and
//! cancelling, parked events retried or skipped, a state reset.

use super::Pipeline;
use super::listeners::{handlers_by_event, resumed, routes};
use crate::error::{Error, Failure, PluginError, StoreError};
use crate::event::Command;
use crate::records::{Parked, Skipped};
use crate::store::{EventLog, Instances, Progress, Storage, WorkQueue};

impl<S: Storage> Pipeline<S> {
    /// Start the per-instance process manager `name` over with no instances
    /// and no timers, keeping its checkpoint: it forgets what it had folded.
    ///
    /// # Errors
    ///
    /// An unknown or stateless listener; a storage error.
    pub fn reset_state(&mut self, name: &str) -> Result<(), Error> {
        self.stateful_slot(name)?;
        self.store.write(|tx| tx.remove_instances(name))?;
        self.next_timer = None;
        Ok(())
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
        let (dropped, settled) = self.store.write(|tx| {
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
            Ok::<_, Error>((dropped, record.outstanding == 0))
        })?;
        if settled && let Some(kept) = &mut self.settled {
            kept.push(correlation_id.to_owned());
        }
        Ok(dropped)
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
        // Its collections are owned by no one now: no later plugin of the
        // same name reads them as its own.
        self.read_models.declare(name, &[], u64::MAX)?;
        Ok(())
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
                // Stopped at an `after-` handler: its `on-` handler ran.
                let after_only = batch.slots[index].after_pending.take() == Some(position);
                let routed = by_event.get(&event.name).map_or(&[][..], Vec::as_slice);
                for &handler in resumed(batch.slots[index].listener.as_ref(), routed, after_only) {
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
            tx.set_after_pending(name, batch.slots[index].after_pending)?;
            Ok((handled, true))
        })?;
        self.run_until_idle()?;
        Ok(handled)
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
}

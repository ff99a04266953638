//! Listeners and aggregates: registering them (checked against the events
//! aggregates declare), their routes, and what they report.

use super::{Backoff, HandlerStats, ListenerStats, Pipeline, Route, Slot};
use crate::aggregate::{Aggregate, Aggregates};
use crate::effect::EFFECT_COMPLETED;
use crate::error::{Error, PluginError, StoreError};
use crate::instance::TIMER_FIRED;
use crate::listener::{Listener, Phase};
use crate::store::{EventLog, Progress, Storage};
use std::collections::HashMap;

impl<S: Storage> Pipeline<S> {
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
        let name = listener.name().to_owned();
        if let Some(checkpoint) = self.register_listener_deferred(listener)? {
            self.store.write(|tx| tx.set_checkpoint(&name, checkpoint))?;
        }
        Ok(())
    }

    /// [`Pipeline::register_listener`] that leaves a new listener's
    /// first checkpoint (the head) for the caller to store in its own
    /// transaction, so adding a plugin is one commit; `None` for a known one.
    pub(crate) fn register_listener_deferred(&mut self, listener: Box<dyn Listener>) -> Result<Option<u64>, Error> {
        validate_handlers(&self.aggregates, listener.as_ref())?;
        let name = listener.name().to_owned();
        if let Some(collections) = listener.collections() {
            self.read_models
                .declare(&name, collections, listener.quotas().read_model_bytes)?;
        }
        let read_models = &self.read_models;
        // Only a changed index declaration writes here: loading the plugins
        // of a data directory commits nothing.
        let (checkpoint, after_pending, new, stopped, pipeline_position) = self.store.write_if(|tx| {
            let reindexed = read_models.sync_indexes(tx, &name)?;
            let (checkpoint, new) = match tx.checkpoint(&name)? {
                Some(checkpoint) => (checkpoint, false),
                None => (tx.head()?, true),
            };
            let stopped = tx.is_stopped(&name)?;
            let found = (
                checkpoint,
                tx.after_pending(&name)?,
                new,
                stopped,
                tx.pipeline_position()?,
            );
            Ok::<_, StoreError>((found, reindexed))
        })?;
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
            after_pending,
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
        Ok(new.then_some(checkpoint))
    }

    /// Check `listener` as registering it would, registering nothing: every
    /// handler names an event an aggregate declares (or the host's own).
    ///
    /// # Errors
    ///
    /// [`PluginError::UnknownEvent`].
    pub fn check_listener(&self, listener: &dyn Listener) -> Result<(), PluginError> {
        validate_handlers(&self.aggregates, listener)
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

    /// Whether `name` is a registered per-instance (stateful) process manager.
    pub fn is_stateful(&self, name: &str) -> bool {
        self.slots
            .iter()
            .any(|s| s.listener.name() == name && s.listener.instance_rules().is_some())
    }

    /// The names of the registered listeners, in registration order.
    pub fn listener_names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.listener.name().to_owned()).collect()
    }

    pub(super) fn slot_index(&self, name: &str) -> Result<usize, PluginError> {
        self.slots
            .iter()
            .position(|s| s.listener.name() == name)
            .ok_or_else(|| {
                let names = self.listener_names();
                PluginError::UnknownListener {
                    name: name.to_owned(),
                    known: crate::text::quoted_list(names.iter().map(String::as_str)),
                }
            })
    }
}

pub(super) fn validate_handlers(aggregates: &Aggregates, listener: &dyn Listener) -> Result<(), PluginError> {
    for handler in listener.handlers() {
        // A fired timer is the host's event, for the instances that
        // scheduled it; an effect's outcome, for any process manager.
        let timer = handler.event == TIMER_FIRED && listener.instance_rules().is_some();
        let effect = handler.event == EFFECT_COMPLETED && listener.collections().is_none();
        if !timer && !effect && !aggregates.declares(&handler.event) {
            let names = aggregates.event_names();
            return Err(PluginError::UnknownEvent {
                plugin: listener.name().to_owned(),
                export: handler.export_name(),
                event: handler.event.clone(),
                known: crate::text::quoted_list(names.iter().map(String::as_str)),
            });
        }
    }
    Ok(())
}

/// A listener's handlers per event name: the `on-` handler first, then the
/// `after-` handler.
pub(super) fn handlers_by_event(listener: &dyn Listener) -> HashMap<String, Vec<usize>> {
    let mut by_event: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, handler) in listener.handlers().iter().enumerate() {
        by_event.entry(handler.event.clone()).or_default().push(index);
    }
    for handlers in by_event.values_mut() {
        handlers.sort_by_key(|&h| listener.handlers()[h].phase == Phase::After);
    }
    by_event
}

/// `routed` (an event's handlers, `on-` first, as [`handlers_by_event`]
/// sorts them), or with `after_only` (its `on-` handler already ran: see
/// `Slot::after_pending`) its `after-` handler alone.
pub(super) fn resumed<'a>(listener: &dyn Listener, routed: &'a [usize], after_only: bool) -> &'a [usize] {
    if !after_only {
        return routed;
    }
    let first_after = routed
        .iter()
        .position(|&h| listener.handlers()[h].phase == Phase::After)
        .unwrap_or(routed.len());
    &routed[first_after..]
}

pub(super) fn routes(slots: &[Slot]) -> HashMap<String, Route> {
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

//! One handler call for one live event, split by job: the attempts, what
//! the call leaves behind (trace and logs), the failure path (a retry on a
//! timer, a stop, or a parked entry) and the success path (the commands it
//! dispatched, within the causation depth and the cascade's budget).

use std::time::{Duration, Instant};

use super::batch::{Batch, causation_chain};
use super::instances::{self, Begin};
use super::{Backoff, LogLine, Outcome, RETRY_BACKOFF, TraceEntry};
use crate::effect::effect_key;
use crate::error::{CascadeBudgetError, CausationDepthError, Failure, HandlerFailure, StoreError};
use crate::event::Event;
use crate::instance::InstanceCall;
use crate::listener::{Context, HandlerError, Phase};
use crate::manifest::Policy;
use crate::records::{Cause, Effect, Parked, QueuedCommand};
use crate::store::UnitOfWork;

impl Batch<'_> {
    /// Call one handler for one live event, as call number `attempt` for
    /// it; a failing call is retried with backoff up to the listener's
    /// attempts, then the event is parked for it (or the listener stopped).
    /// With `defer_retries` the retry waits on a timer: the listener goes
    /// into [`Backoff`] and this returns at once. Returns the parked id when
    /// it failed for good.
    pub(super) fn call(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        slot: usize,
        handler: usize,
        event: &Event,
        attempt: u32,
    ) -> Result<Option<u64>, StoreError> {
        self.slots[slot].dirty = true;
        // A per-instance process manager's call gets its instance, or none
        // is made (an event for no instance, or one it may not start).
        let instance = match self.slots[slot].listener.instance_rules() {
            None => None,
            Some(rules) => match instances::begin(&*tx, rules, self.slots[slot].listener.name(), event)? {
                Begin::Call(call) => Some(call),
                Begin::Start(call) => match self.over_instance_quota(tx, slot)? {
                    None => Some(call),
                    // Not called: the event waits, parked, for a raised quota.
                    Some(message) => {
                        let failure = self.failure(slot, handler, event, message);
                        return self.fail(tx, slot, handler, event, failure, attempt);
                    }
                },
                Begin::Ignored => return Ok(None),
            },
        };
        let (outcome, attempt) = self.attempt(&*tx, slot, handler, event, attempt, instance.as_ref())?;
        let failure = match outcome {
            Attempted::Done(failure) => failure,
            Attempted::RetryAfter(pause) => {
                self.defer(slot, handler, event, pause, attempt);
                return Ok(None);
            }
        };
        // A failed call is atomic: what it dispatched, wrote to read models
        // and did to its instance are dropped.
        match failure {
            Some(failure) => {
                self.effects.discard();
                self.fail(tx, slot, handler, event, failure, attempt)
            }
            None => {
                let instance = self.effects.instance.take();
                let id = instance.as_ref().map(|call| call.id.clone());
                if let Some(call) = instance {
                    self.timers.scheduled_by(&call);
                    instances::finish(tx, self.slots[slot].listener.name(), call, event.position)?;
                }
                self.request(tx, slot, handler, event, id)?;
                self.dispatch(tx, slot, event).map(|()| None)
            }
        }
    }

    /// Call the handler until it succeeds, its attempts are used up, or
    /// (with `defer_retries`) a retry must wait; record the call. Each
    /// attempt starts from `instance` as stored; one that would take the
    /// listener past a quota of timers or effects failed. Returns how it
    /// ended and the number of the last attempt.
    fn attempt(
        &mut self,
        tx: &(impl UnitOfWork + ?Sized),
        slot: usize,
        handler: usize,
        event: &Event,
        mut attempt: u32,
        instance: Option<&InstanceCall>,
    ) -> Result<(Attempted, u32), StoreError> {
        let traced = self.trace_all || (!self.traced.is_empty() && self.traced.contains(&event.correlation_id));
        let started = traced.then(Instant::now);
        let attempts = self.slots[slot].listener.on_error().attempts.max(1);
        let (result, retry) = loop {
            let s = &mut self.slots[slot];
            s.calls += 1;
            let call_started = Instant::now();
            self.effects.instance = instance.cloned();
            self.read_models.begin_call();
            let mut result = s.listener.handle(handler, event, Context::default(), &mut self.effects);
            if result.is_ok()
                && let Some(message) = self.over_call_quotas(tx, slot)?
            {
                result = Err(HandlerError::Failed(message));
            }
            self.slots[slot].stats[handler].record(call_started.elapsed(), result.is_err());
            if result.is_err() {
                self.read_models.undo_call();
            }
            match result {
                Err(HandlerError::Failed(_)) if attempt < attempts => {
                    self.effects.discard();
                    let pause = RETRY_BACKOFF * 2u32.pow(attempt - 1);
                    if self.defer_retries {
                        break (result, Some(pause));
                    }
                    std::thread::sleep(pause);
                    attempt += 1;
                }
                result => break (result, None),
            }
        };
        let message = match result {
            Ok(()) => None,
            Err(HandlerError::Failed(message)) => Some(message),
            Err(HandlerError::SkipRefreshing) => {
                Some("returned `skip-refreshing` outside a refresh; only a refresh may skip an event".to_owned())
            }
        };
        self.record(slot, handler, event, started, message.as_deref());
        let failure = message.map(|message| self.failure(slot, handler, event, message));
        Ok(match retry {
            Some(pause) => (Attempted::RetryAfter(pause), attempt),
            None => (Attempted::Done(failure), attempt),
        })
    }

    /// A failure of `handler` of the listener in `slot` with `event`.
    fn failure(&self, slot: usize, handler: usize, event: &Event, message: String) -> HandlerFailure {
        let listener = &self.slots[slot].listener;
        HandlerFailure {
            plugin: listener.name().to_owned(),
            handler: listener.handlers()[handler].export_name(),
            event: event.name.clone(),
            position: event.position,
            message,
            parked: None,
            stopped: false,
        }
    }

    /// The call's trace entry (when traced) and the lines it logged.
    fn record(&mut self, slot: usize, handler: usize, event: &Event, started: Option<Instant>, failed: Option<&str>) {
        let listener = &self.slots[slot].listener;
        if let Some(started) = started {
            self.trace.push(TraceEntry {
                correlation_id: event.correlation_id.clone(),
                plugin: listener.name().to_owned(),
                handler: listener.handlers()[handler].export_name(),
                event: event.name.clone(),
                position: event.position,
                outcome: failed.map_or(Outcome::Ok, |m| Outcome::Failed(m.to_owned())),
                duration: started.elapsed(),
            });
        }
        // Drained, not taken: the buffers keep their capacity for the next call.
        self.logs
            .extend(self.effects.logs.drain(..).map(|(level, message)| LogLine {
                correlation_id: event.correlation_id.clone(),
                plugin: listener.name().to_owned(),
                level,
                message,
            }));
    }

    /// The next attempt waits `pause` on a timer: until then the listener
    /// gets no events and the others go on. Stopped at an `after-` handler,
    /// it resumes there (its `on-` handler ran).
    fn defer(&mut self, slot: usize, handler: usize, event: &Event, pause: Duration, attempt: u32) {
        self.effects.discard();
        let s = &mut self.slots[slot];
        s.backoff = Some(Backoff {
            until: Instant::now() + pause,
            position: event.position,
            attempt: attempt + 1,
        });
        s.after_pending = (s.listener.handlers()[handler].phase == Phase::After).then_some(event.position);
    }

    /// A call that failed for good: the listener stops before the event
    /// (policy `stop`) or the event is parked for it. Returns the parked id.
    fn fail(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        slot: usize,
        handler: usize,
        event: &Event,
        mut failure: HandlerFailure,
        attempts: u32,
    ) -> Result<Option<u64>, StoreError> {
        let s = &mut self.slots[slot];
        let parked = if s.listener.on_error().policy == Policy::Stop {
            // Starting it again resumes here.
            s.stopped = true;
            s.checkpoint = event.position - 1;
            s.after_pending = (s.listener.handlers()[handler].phase == Phase::After).then_some(event.position);
            failure.stopped = true;
            None
        } else {
            let id = tx.park(
                self.repark_as.take(),
                &Parked {
                    plugin: failure.plugin.clone(),
                    handler: failure.handler.clone(),
                    event: event.name.clone(),
                    position: event.position,
                    correlation_id: event.correlation_id.clone(),
                    message: failure.message.clone(),
                    attempts,
                    parked_at: crate::store::now_millis(),
                },
            )?;
            failure.parked = Some(id);
            Some(id)
        };
        self.cascade(tx, &event.correlation_id)?
            .failures
            .push(Failure::Handler(failure));
        Ok(parked)
    }

    /// Put the HTTP requests of a successful call in the outbox, keyed by
    /// plugin, position, handler and order; the engine's workers get them
    /// once the batch commits.
    fn request(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        slot: usize,
        handler: usize,
        event: &Event,
        instance: Option<String>,
    ) -> Result<(), StoreError> {
        if self.effects.requests.is_empty() {
            return Ok(());
        }
        let listener = &self.slots[slot].listener;
        let export = listener.handlers()[handler].export_name();
        let policy = listener.effect_policy();
        for (index, requested) in self.effects.requests.drain(..).enumerate() {
            let effect = Effect {
                key: effect_key(listener.name(), event, &export, index),
                plugin: listener.name().to_owned(),
                name: requested.name,
                instance: instance.clone(),
                correlation_id: event.correlation_id.clone(),
                position: event.position,
                request: requested.request,
                requested_at: crate::clock::now_millis(),
                policy,
                parked: None,
            };
            tx.put_effect(&effect)?;
            self.requested.push(effect);
        }
        Ok(())
    }

    /// Queue what a successful call dispatched, unless the chain of
    /// dispatches is too deep or the cascade would outgrow its budget.
    fn dispatch(&mut self, tx: &mut (impl UnitOfWork + ?Sized), slot: usize, event: &Event) -> Result<(), StoreError> {
        if self.effects.commands.is_empty() {
            return Ok(());
        }
        let plugin = self.slots[slot].listener.name().to_owned();
        let mut chain = causation_chain(&event.metadata);
        chain.push(format!("{plugin}/{}", event.name));
        if chain.len() > self.max_depth {
            self.effects.commands.clear();
            let failure = Failure::CausationDepth(CausationDepthError {
                max: self.max_depth,
                chain,
            });
            self.cascade(tx, &event.correlation_id)?.failures.push(failure);
            return Ok(());
        }
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
            // A cascade that would outgrow its budget fails, and stops growing.
            if !record.failures.iter().any(|f| matches!(f, Failure::CascadeBudget(_))) {
                record.failures.push(Failure::CascadeBudget(CascadeBudgetError {
                    max,
                    plugin,
                    dropped: count,
                }));
            }
            self.effects.commands.clear();
            return Ok(());
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
        Ok(())
    }
}

/// How a handler's attempts ended.
enum Attempted {
    /// For good: `None` if it succeeded, else why it failed.
    Done(Option<HandlerFailure>),
    /// It failed and may be called again after this pause.
    RetryAfter(Duration),
}

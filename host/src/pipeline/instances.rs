//! Instances of per-instance process managers around a handler call: which
//! instance the call works on (or that it is ignored), storing what it did
//! to it, and due timers becoming `TimerFired` events.
//!
//! Live, instances and timers live in the batch's write transaction, so
//! what a call did commits with its checkpoint or rolls back with it; a
//! refresh replays into memory ([`Replayed`]) and writes the result in one
//! commit at the end.

use std::collections::{BTreeMap, HashMap};

use super::batch::Batch;
use crate::error::StoreError;
use crate::event::{Event, NewEvent};
use crate::instance::{
    HOST_STREAM, InstanceCall, InstanceRules, TIMER_FIRED, TimerFired, TimerRequest, timer_stream_id,
};
use crate::records::{InstanceRecord, Timer};
use crate::store::UnitOfWork;

/// Where the instances a call works on are kept.
pub(super) trait InstanceStore {
    fn load(&self, plugin: &str, id: &str) -> Result<Option<InstanceRecord>, StoreError>;
    fn save(&mut self, plugin: &str, id: &str, record: InstanceRecord) -> Result<(), StoreError>;
    /// Delete the instance and its timers.
    fn complete(&mut self, plugin: &str, id: &str) -> Result<(), StoreError>;
    fn schedule(&mut self, timer: Timer) -> Result<(), StoreError>;
    fn cancel(&mut self, plugin: &str, id: &str, name: &str) -> Result<(), StoreError>;
}

impl<T: UnitOfWork + ?Sized> InstanceStore for T {
    fn load(&self, plugin: &str, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.instance(plugin, id)
    }

    fn save(&mut self, plugin: &str, id: &str, record: InstanceRecord) -> Result<(), StoreError> {
        self.put_instance(plugin, id, &record)
    }

    fn complete(&mut self, plugin: &str, id: &str) -> Result<(), StoreError> {
        self.remove_instance(plugin, id)
    }

    fn schedule(&mut self, timer: Timer) -> Result<(), StoreError> {
        self.put_timer(&timer)
    }

    fn cancel(&mut self, plugin: &str, id: &str, name: &str) -> Result<(), StoreError> {
        self.remove_timer(plugin, id, name).map(drop)
    }
}

/// The instances and timers of one process manager, as a refresh rebuilds them.
#[derive(Default)]
pub(super) struct Replayed {
    pub(super) instances: HashMap<String, InstanceRecord>,
    /// By (instance, name).
    pub(super) timers: BTreeMap<(String, String), Timer>,
}

impl InstanceStore for Replayed {
    fn load(&self, _: &str, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.instances.get(id).cloned())
    }

    fn save(&mut self, _: &str, id: &str, record: InstanceRecord) -> Result<(), StoreError> {
        self.instances.insert(id.to_owned(), record);
        Ok(())
    }

    fn complete(&mut self, _: &str, id: &str) -> Result<(), StoreError> {
        self.instances.remove(id);
        self.timers.retain(|(instance, _), _| instance != id);
        Ok(())
    }

    fn schedule(&mut self, timer: Timer) -> Result<(), StoreError> {
        self.timers.insert((timer.instance.clone(), timer.name.clone()), timer);
        Ok(())
    }

    fn cancel(&mut self, _: &str, id: &str, name: &str) -> Result<(), StoreError> {
        self.timers.remove(&(id.to_owned(), name.to_owned()));
        Ok(())
    }
}

/// What a call of a per-instance process manager for an event works on.
pub(super) enum Begin {
    /// Its existing instance.
    Call(InstanceCall),
    /// A new instance the event starts.
    Start(InstanceCall),
    /// None: the event names no instance, or one that does not exist and
    /// that it may not start. No handler is called.
    Ignored,
}

/// The instance `event` belongs to for the per-instance process manager
/// `plugin`. Each phase's call asks anew: an `after-` handler runs whether
/// or not the `on-` handler succeeded, so it may start the instance too
/// (and start it again after the `on-` handler completed it).
pub(super) fn begin(
    store: &(impl InstanceStore + ?Sized),
    rules: &InstanceRules,
    plugin: &str,
    event: &Event,
) -> Result<Begin, StoreError> {
    let Some((id, starts)) = rules.instance_of(event) else {
        return Ok(Begin::Ignored);
    };
    match store.load(plugin, &id)? {
        Some(record) => Ok(Begin::Call(InstanceCall::new(id, record.state, event))),
        None if starts => {
            let mut call = InstanceCall::new(id, None, event);
            // A new instance is stored even if the call sets no state.
            call.state_set = true;
            Ok(Begin::Start(call))
        }
        None => Ok(Begin::Ignored),
    }
}

/// Upper bounds, in seconds, of the buckets of [`TimerStats::lateness`].
pub const LATENESS_BUCKETS: [f64; 8] = [0.001, 0.01, 0.05, 0.1, 1.0, 10.0, 60.0, f64::INFINITY];

/// Timers fired since the pipeline was opened, and how late.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerStats {
    /// Timers fired.
    pub fired: u64,
    /// Fired timers per lateness bucket ([`LATENESS_BUCKETS`]), not cumulative.
    pub lateness: [u64; LATENESS_BUCKETS.len()],
    /// Total lateness, in seconds.
    pub lateness_seconds: f64,
}

impl TimerStats {
    pub(super) fn record(&mut self, lateness_ms: &[u64]) {
        for &ms in lateness_ms {
            let seconds = ms as f64 / 1000.0;
            self.fired += 1;
            self.lateness_seconds += seconds;
            let bucket = LATENESS_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(0);
            self.lateness[bucket] += 1;
        }
    }
}

/// What a batch learned of when timers are due.
#[derive(Default)]
pub(super) struct TimerNote {
    /// When the first timer left after the batch fired some is due.
    pub(super) left_after_firing: Option<Option<u64>>,
    /// The earliest due of the timers the batch scheduled.
    pub(super) scheduled: Option<u64>,
    /// How late each timer the batch fired was, in milliseconds.
    pub(super) lateness: Vec<u64>,
}

impl TimerNote {
    /// The earliest pending timer after the batch, from what was known
    /// before it (`None`: unknown, read it again).
    pub(super) fn next(&self, before: Option<Option<u64>>) -> Option<Option<u64>> {
        let known = self.left_after_firing.or(before)?;
        Some(match (known, self.scheduled) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Note the timers `call` schedules.
    pub(super) fn scheduled_by(&mut self, call: &InstanceCall) {
        for request in &call.timers {
            if let TimerRequest::Schedule { due, .. } = request {
                self.scheduled = Some(self.scheduled.map_or(*due, |s| s.min(*due)));
            }
        }
    }
}

/// Store what a successful call did to its instance.
pub(super) fn finish(
    store: &mut (impl InstanceStore + ?Sized),
    plugin: &str,
    call: InstanceCall,
    position: u64,
) -> Result<(), StoreError> {
    if call.completed {
        return store.complete(plugin, &call.id);
    }
    for request in call.timers {
        match request {
            TimerRequest::Schedule { name, due, payload } => store.schedule(Timer {
                plugin: plugin.to_owned(),
                instance: call.id.clone(),
                name,
                due,
                payload,
            })?,
            TimerRequest::Cancel { name } => store.cancel(plugin, &call.id, &name)?,
        }
    }
    if call.state_set {
        let record = InstanceRecord {
            state: call.state,
            last_position: position,
        };
        store.save(plugin, &call.id, record)?;
    }
    Ok(())
}

/// A fired timer is no longer pending: live its firing removed it; a
/// refresh removes it when it replays the `TimerFired` event.
pub(super) fn replay_fired(replayed: &mut Replayed, plugin: &str, event: &Event) -> Result<(), StoreError> {
    if event.stream_type == HOST_STREAM
        && let Some(fired) = TimerFired::parse(&event.payload)
        && replayed
            .timers
            .get(&(fired.instance.clone(), fired.timer.clone()))
            .is_some_and(|t| t.due == fired.due)
    {
        replayed.cancel(plugin, &fired.instance, &fired.timer)?;
    }
    Ok(())
}

/// How long the timers of a plugin that is stopped or waiting to retry
/// wait before the pipeline looks at them again.
const HELD_TIMERS_RECHECK_MS: u64 = 1000;
/// Due timers one step looks at, per timer it may fire: held ones cannot
/// make a step read without bound.
const EXAMINED_PER_FIRED: usize = 8;

impl Batch<'_> {
    /// Fire up to `limit` timers due at `now`, once the batch has caught up
    /// with the log: each is removed and appended as a `TimerFired` event on
    /// its plugin's timer stream, in one new cascade, in this batch; the
    /// phases then deliver it like any event. The timers of a plugin that is
    /// stopped or waiting to retry wait: it has events before them to handle,
    /// and one of those may cancel them. Returns how many fired; notes when
    /// the pipeline must look at the timers again.
    pub(super) fn fire_due_timers(
        &mut self,
        tx: &mut (impl UnitOfWork + ?Sized),
        now: u64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let (mut fired, mut held, mut after) = (0, false, None::<Timer>);
        let mut examined = 0;
        'pages: loop {
            let page = tx.due_timers(now, after.as_ref(), limit)?;
            let Some(last) = page.last().cloned() else { break };
            for timer in page {
                if fired == limit || examined == EXAMINED_PER_FIRED * limit {
                    break 'pages;
                }
                examined += 1;
                if self.holds_timers_of(&timer.plugin) {
                    held = true;
                    continue;
                }
                self.fire(tx, &timer, now)?;
                fired += 1;
            }
            after = Some(last);
        }
        let next = tx.due_timers(u64::MAX, None, 1)?.first().map(|t| t.due);
        self.timers.left_after_firing = Some(match held {
            true => Some(now + HELD_TIMERS_RECHECK_MS),
            false => next,
        });
        Ok(fired)
    }

    /// Whether `plugin` is stopped or waiting to retry: it has not handled
    /// every event before a timer that fires now.
    fn holds_timers_of(&self, plugin: &str) -> bool {
        self.slots
            .iter()
            .find(|s| s.listener.name() == plugin)
            .is_some_and(|s| s.stopped || s.backoff.is_some())
    }

    fn fire(&mut self, tx: &mut (impl UnitOfWork + ?Sized), timer: &Timer, now: u64) -> Result<(), StoreError> {
        tx.remove_timer(&timer.plugin, &timer.instance, &timer.name)?;
        self.timers.lateness.push(now.saturating_sub(timer.due));
        let payload = serde_json::json!({
            "timer": timer.name,
            "instance": timer.instance,
            "due": timer.due,
            "payload": serde_json::from_str::<serde_json::Value>(&timer.payload).unwrap_or_default(),
        });
        let event = NewEvent {
            name: TIMER_FIRED.to_owned(),
            payload: payload.to_string(),
        };
        let metadata = serde_json::json!({ "timer": timer.name, "instance": timer.instance });
        self.append_host_event(tx, "timer", &timer_stream_id(&timer.plugin), event, metadata)
    }
}

//! Instances of process managers, and their timers: which instance an event
//! belongs to, what a handler call asked of its instance, and the event a
//! due timer becomes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// The stream type of the host's own streams: due timers become events on
/// `cascade:timers/<plugin>` and effect outcomes on `cascade:effects/<plugin>`,
/// each delivered only to that plugin. No aggregate may take this name.
pub const HOST_STREAM: &str = "cascade";
/// The stream id of `plugin`'s fired timers is this prefix and its name.
pub const TIMER_STREAM_PREFIX: &str = "timers/";
/// The name of the event a due timer becomes.
pub const TIMER_FIRED: &str = "TimerFired";
/// The event name of a rule for every event no other rule names.
pub const ANY_EVENT: &str = "*";
/// The instance of every event under [`InstanceKey::Single`].
pub const SINGLETON: &str = "singleton";
/// Bytes of a timer's name.
pub const MAX_TIMER_NAME_BYTES: usize = 128;
/// Bytes of a timer's payload.
pub const MAX_TIMER_PAYLOAD_BYTES: usize = 64 << 10;

/// Where the instance id of an event comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InstanceKey {
    /// The event's stream id.
    StreamId,
    /// The event's correlation id.
    CorrelationId,
    /// A top-level string or number field of the payload.
    PayloadField(String),
    /// One instance for every event.
    Single,
}

/// The instance rule of one handled event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRule {
    /// PascalCase event name.
    pub event: String,
    /// Where its instance id comes from.
    pub key: InstanceKey,
    /// Whether it may start a new instance.
    pub starts: bool,
}

/// A per-instance process manager's rules, by event name. An event no rule
/// names follows the rule for `*`, if there is one, else belongs to the
/// instance of its stream id and may start it; a fired timer belongs to the
/// instance that scheduled it and starts nothing.
#[derive(Clone, Debug, Default)]
pub struct InstanceRules {
    by_event: HashMap<String, (InstanceKey, bool)>,
    declared: Vec<InstanceRule>,
}

impl InstanceRules {
    /// The rules a plugin declared.
    pub fn new(rules: Vec<InstanceRule>) -> Self {
        let by_event = rules
            .iter()
            .map(|r| (r.event.clone(), (r.key.clone(), r.starts)))
            .collect();
        InstanceRules {
            by_event,
            declared: rules,
        }
    }

    /// The rules as declared.
    pub fn declared(&self) -> &[InstanceRule] {
        &self.declared
    }

    /// The instance `event` belongs to and whether it may start it; `None`
    /// when it names none (a payload field that is missing).
    pub fn instance_of(&self, event: &Event) -> Option<(String, bool)> {
        if event.stream_type == HOST_STREAM {
            return owning_instance(&event.payload).map(|id| (id, false));
        }
        let (key, starts) = match self.by_event.get(&event.name).or_else(|| self.by_event.get(ANY_EVENT)) {
            Some((key, starts)) => (key, *starts),
            None => (&InstanceKey::StreamId, true),
        };
        let id = match key {
            InstanceKey::StreamId => event.stream_id.clone(),
            InstanceKey::CorrelationId => event.correlation_id.clone(),
            InstanceKey::Single => SINGLETON.to_owned(),
            InstanceKey::PayloadField(field) => {
                let payload: serde_json::Value = serde_json::from_str(&event.payload).ok()?;
                match payload.get(field)? {
                    serde_json::Value::String(s) if !s.is_empty() => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return None,
                }
            }
        };
        Some((id, starts))
    }
}

/// Whether `event` is for the listener `name`: every event is, but those of
/// the host's own streams (a fired timer, an effect's outcome), which only
/// the plugin named by the stream id (`timers/NAME`, `effects/NAME`) receives.
pub fn delivered_to(event: &Event, name: &str) -> bool {
    event.stream_type != HOST_STREAM || event.stream_id.split_once('/').is_some_and(|(_, owner)| owner == name)
}

/// The instance a fired timer or an effect's outcome belongs to: the one
/// that scheduled or requested it (its payload's `instance`).
fn owning_instance(payload: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Owner {
        instance: Option<String>,
    }
    serde_json::from_str::<Owner>(payload).ok()?.instance
}

/// The stream id of `plugin`'s fired timers.
pub fn timer_stream_id(plugin: &str) -> String {
    format!("{TIMER_STREAM_PREFIX}{plugin}")
}

/// What a handler call did to its instance, and what it saw of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceCall {
    /// The instance id.
    pub id: String,
    /// Its state: as the call found it, then as the call left it.
    pub state: Option<Vec<u8>>,
    /// Whether the call set the state.
    pub state_set: bool,
    /// Whether the call completed the instance.
    pub completed: bool,
    /// Timers scheduled and cancelled, in call order.
    pub timers: Vec<TimerRequest>,
    /// The handler's time: the event's `created-at`, in milliseconds.
    pub now: u64,
}

impl InstanceCall {
    /// The call of a handler for `event` on instance `id` with `state`.
    pub fn new(id: String, state: Option<Vec<u8>>, event: &Event) -> Self {
        InstanceCall {
            id,
            state,
            now: event.created_at,
            ..InstanceCall::default()
        }
    }
}

/// A timer request of one handler call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimerRequest {
    /// Schedule (or replace) timer `name`, due at `due` ms.
    Schedule {
        /// Its name within the instance.
        name: String,
        /// Milliseconds since the Unix epoch.
        due: u64,
        /// JSON text.
        payload: String,
    },
    /// Cancel timer `name`.
    Cancel {
        /// Its name within the instance.
        name: String,
    },
}

/// The payload of a [`TIMER_FIRED`] event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerFired {
    /// The timer's name.
    pub timer: String,
    /// The instance that scheduled it.
    pub instance: String,
    /// When it was due, in milliseconds since the Unix epoch.
    pub due: u64,
    /// What it was scheduled with.
    pub payload: serde_json::Value,
}

impl TimerFired {
    /// The fired timer a payload describes.
    pub fn parse(payload: &str) -> Option<TimerFired> {
        serde_json::from_str(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, stream_type: &str, stream_id: &str, payload: &str) -> Event {
        Event {
            position: 1,
            name: name.into(),
            stream_type: stream_type.into(),
            stream_id: stream_id.into(),
            stream_version: 1,
            payload: payload.into(),
            metadata: "{}".into(),
            actor_id: None,
            causation_id: "c1".into(),
            correlation_id: "k1".into(),
            created_at: 0,
        }
    }

    fn rule(event: &str, key: InstanceKey, starts: bool) -> InstanceRule {
        InstanceRule {
            event: event.into(),
            key,
            starts,
        }
    }

    #[test]
    fn each_key_names_an_instance_and_unnamed_events_go_by_stream_id() {
        let rules = InstanceRules::new(vec![
            rule("PaymentSucceeded", InstanceKey::PayloadField("orderId".into()), false),
            rule("CartOpened", InstanceKey::CorrelationId, true),
            rule("Tick", InstanceKey::Single, true),
        ]);
        let of = |e: &Event| rules.instance_of(e);
        assert_eq!(
            of(&event("PaymentSucceeded", "payment", "p1", r#"{"orderId":"o7"}"#)),
            Some(("o7".into(), false))
        );
        assert_eq!(
            of(&event("PaymentSucceeded", "payment", "p1", r#"{"orderId":42}"#)),
            Some(("42".into(), false)),
            "a number names an instance too"
        );
        assert_eq!(of(&event("PaymentSucceeded", "payment", "p1", "{}")), None);
        assert_eq!(of(&event("CartOpened", "carts", "x", "{}")), Some(("k1".into(), true)));
        assert_eq!(of(&event("Tick", "clock", "x", "{}")), Some((SINGLETON.into(), true)));
        assert_eq!(
            of(&event("UserCreated", "users", "u1", "{}")),
            Some(("u1".into(), true))
        );
    }

    #[test]
    fn a_star_rule_covers_unnamed_events_and_a_fired_timer_goes_to_its_owner_only() {
        let rules = InstanceRules::new(vec![rule(ANY_EVENT, InstanceKey::Single, true)]);
        assert_eq!(
            rules.instance_of(&event("UserCreated", "users", "u1", "{}")),
            Some((SINGLETON.into(), true))
        );
        let payload = r#"{"timer":"t","instance":"o1","due":5,"payload":{}}"#;
        let fired = event(TIMER_FIRED, HOST_STREAM, &timer_stream_id("pm"), payload);
        assert_eq!(
            rules.instance_of(&fired),
            Some(("o1".into(), false)),
            "a timer starts nothing"
        );
        assert!(delivered_to(&fired, "pm"));
        assert!(!delivered_to(&fired, "other"));
        assert!(delivered_to(&event("UserCreated", "users", "u1", "{}"), "other"));
    }
}

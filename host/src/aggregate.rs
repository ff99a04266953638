//! Aggregates: the consistency boundaries that turn commands into events.
//!
//! An [`Aggregate`] is implemented natively in Rust or by a WASM component
//! (see `plugin`). The [`Aggregates`] registry checks commands against what
//! each aggregate declares, validates every produced payload against its
//! event's JSON Schema before anything is appended, and keeps each stream's
//! folded state with the stream head so a command never refolds its stream.

use std::collections::{HashMap, HashSet};

use crate::error::{
    CommandError, CommandFailure, EventValidationError, Failure, InfiniteLoopError, PluginError, StoreError,
};
use crate::event::{Command, Envelope, Event, NewEvent};
use crate::host_api::AggregateNames;
use crate::records::Cause;
use crate::text::quoted_list;

/// An event an aggregate can produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDeclaration {
    /// PascalCase name.
    pub name: String,
    /// JSON Schema text of the payload.
    pub schema: String,
}

/// What an aggregate is called, accepts and produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateDescription {
    /// The stream type.
    pub name: String,
    /// Every event it can produce.
    pub events: Vec<EventDeclaration>,
    /// Every command it accepts.
    pub commands: Vec<String>,
}

/// What an aggregate decided for one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The events, in order.
    pub events: Vec<NewEvent>,
    /// The state after folding them into the state the command saw; stored
    /// only if every event passes its schema.
    pub state: Vec<u8>,
}

/// A consistency boundary. The host owns the state bytes; the aggregate is a
/// pure function over them.
pub trait Aggregate: Send {
    /// Name, events and commands; called once at registration.
    ///
    /// # Errors
    ///
    /// The implementation failed (for WASM: the guest trapped).
    fn describe(&mut self) -> anyhow::Result<AggregateDescription>;

    /// Decide the events for `command` on `stream_id` given `state` (`None`
    /// before the stream's first event), and the state after them.
    ///
    /// # Errors
    ///
    /// The implementation failed; a rejection is `Ok(Err(reason))`.
    fn handle(
        &mut self,
        state: Option<&[u8]>,
        stream_id: &str,
        command: &str,
        args: &str,
    ) -> anyhow::Result<Result<Decision, String>>;
}

struct Registered {
    description: AggregateDescription,
    aggregate: Box<dyn Aggregate>,
    commands: HashSet<String>,
    schemas: HashMap<String, jsonschema::Validator>,
}

/// Every registered aggregate, by stream type.
#[derive(Default)]
pub struct Aggregates {
    entries: Vec<Registered>,
    by_name: HashMap<String, usize>,
    event_owner: HashMap<String, usize>,
    /// The registered stream types, shared with every plugin's sandbox so
    /// `dispatch` can refuse an unknown aggregate at once.
    names: AggregateNames,
}

impl Aggregates {
    /// Register `aggregate`, or replace the one registered under its name.
    ///
    /// # Errors
    ///
    /// An invalid schema, an event another aggregate already declares, or a
    /// failing `describe`.
    pub fn register(&mut self, mut aggregate: Box<dyn Aggregate>) -> Result<String, PluginError> {
        let description = aggregate.describe().map_err(|e| PluginError::InvalidAggregate {
            plugin: "<unnamed>".into(),
            message: format!("`describe` failed: {e:#}"),
        })?;
        let name = description.name.clone();
        let invalid = |message: String| PluginError::InvalidAggregate {
            plugin: name.clone(),
            message,
        };
        if name.is_empty() || name.contains(':') {
            return Err(invalid(format!(
                "stream type `{name}` must be non-empty and contain no `:`"
            )));
        }
        if name == crate::instance::HOST_STREAM {
            return Err(invalid(format!(
                "stream type `{name}` is the host's own (its streams hold fired timers and effect outcomes); choose another name"
            )));
        }
        if let Some(reserved) = description
            .events
            .iter()
            .find(|e| e.name == crate::instance::TIMER_FIRED || e.name == crate::effect::EFFECT_COMPLETED)
        {
            return Err(invalid(format!(
                "event name `{}` is the host's own (a fired timer or an effect's outcome); choose another name",
                reserved.name
            )));
        }
        let mut schemas = HashMap::new();
        for event in &description.events {
            if !is_pascal_case(&event.name) {
                return Err(invalid(format!("event name `{}` must be PascalCase", event.name)));
            }
            let schema: serde_json::Value = serde_json::from_str(&event.schema)
                .map_err(|e| invalid(format!("schema of `{}` is not JSON: {e}", event.name)))?;
            let validator = jsonschema::validator_for(&schema)
                .map_err(|e| invalid(format!("schema of `{}` is not a valid JSON Schema: {e}", event.name)))?;
            schemas.insert(event.name.clone(), validator);
        }
        let slot = self.by_name.get(&name).copied().unwrap_or(self.entries.len());
        // A new version must still declare every event the old one did: the
        // log may hold them, and they must keep validating and folding.
        if let Some(old) = self.entries.get(slot)
            && let Some(dropped) = old
                .description
                .events
                .iter()
                .find(|e| !description.events.iter().any(|n| n.name == e.name))
        {
            return Err(invalid(format!(
                "the new version no longer declares event `{}`, which the running version declares and the log may hold; keep declaring every event of the old version",
                dropped.name
            )));
        }
        for event in &description.events {
            if let Some(&owner) = self.event_owner.get(&event.name)
                && owner != slot
            {
                return Err(PluginError::DuplicateEvent {
                    plugin: name.clone(),
                    event: event.name.clone(),
                    owner: self.entries[owner].description.name.clone(),
                });
            }
        }
        self.event_owner.retain(|_, owner| *owner != slot);
        for event in &description.events {
            self.event_owner.insert(event.name.clone(), slot);
        }
        let entry = Registered {
            commands: description.commands.iter().cloned().collect(),
            description,
            aggregate,
            schemas,
        };
        if slot == self.entries.len() {
            self.entries.push(entry);
        } else {
            self.entries[slot] = entry;
        }
        self.by_name.insert(name.clone(), slot);
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone());
        Ok(name)
    }

    /// The registered stream types, shared: they follow every registration.
    pub(crate) fn names(&self) -> AggregateNames {
        self.names.clone()
    }

    /// Whether some registered aggregate declares the event.
    pub fn declares(&self, event: &str) -> bool {
        self.event_owner.contains_key(event)
    }

    /// Every declared event name, sorted, for messages.
    pub fn event_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.event_owner.keys().cloned().collect();
        names.sort();
        names
    }

    /// The descriptions of every registered aggregate, in registration order.
    pub fn descriptions(&self) -> impl Iterator<Item = &AggregateDescription> {
        self.entries.iter().map(|e| &e.description)
    }

    /// Check that the command's aggregate exists, declares the command, and that
    /// its args are JSON.
    ///
    /// # Errors
    ///
    /// A [`CommandError`] naming the aggregate, command and stream.
    pub fn check(&self, command: &Command) -> Result<(), Box<CommandError>> {
        self.validate(command).map(|_| ())
    }

    /// The index of the command's aggregate, once the aggregate, the command
    /// and the args (JSON) are known to be valid.
    fn validate(&self, command: &Command) -> Result<usize, Box<CommandError>> {
        let fail = |reason| Box::new(command_error(command, reason));
        let Some(&index) = self.by_name.get(&command.stream_type) else {
            let mut known: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(fail(CommandFailure::UnknownAggregate {
                aggregate: command.stream_type.clone(),
                known: quoted_list(known),
            }));
        };
        let entry = &self.entries[index];
        if !entry.commands.contains(&command.name) {
            return Err(fail(CommandFailure::UnknownCommand {
                aggregate: command.stream_type.clone(),
                command: command.name.clone(),
                known: quoted_list(entry.description.commands.iter().map(String::as_str)),
            }));
        }
        if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&command.args) {
            return Err(fail(CommandFailure::InvalidArgs(err.to_string())));
        }
        if let Err(problem) = check_stream_id(&command.stream_id) {
            return Err(fail(CommandFailure::InvalidStreamId(problem)));
        }
        Ok(index)
    }

    /// Execute `command` inside `tx`: decide, validate, fold, append.
    /// Nothing is written when the command fails. When a process manager
    /// dispatched it, `cause` is the event it was handling: producing that
    /// very event again (name, stream, payload) is an [`InfiniteLoopError`].
    ///
    /// # Errors
    ///
    /// `Ok(Err(..))` for a failed command; `Err` only for storage errors.
    pub fn execute(
        &mut self,
        tx: &mut (impl crate::store::UnitOfWork + ?Sized),
        command: &Command,
        expected_version: Option<u64>,
        envelope: &Envelope,
        cause: Option<&Cause>,
    ) -> Result<Result<Vec<Event>, Failure>, StoreError> {
        Ok(match self.decide(tx, command, expected_version, cause)? {
            Ok(Decided::Events { version, events, state }) => Ok(tx.append_after(
                &command.stream_type,
                &command.stream_id,
                version,
                events,
                envelope,
                Some(state),
            )?),
            Ok(Decided::Nothing) => Ok(Vec::new()),
            Err(failure) => Err(failure),
        })
    }

    fn decide(
        &mut self,
        tx: &mut (impl crate::store::UnitOfWork + ?Sized),
        command: &Command,
        expected_version: Option<u64>,
        cause: Option<&Cause>,
    ) -> Result<Result<Decided, Failure>, StoreError> {
        let fail = |reason| Failure::Command(command_error(command, reason));
        let index = match self.validate(command) {
            Ok(index) => index,
            Err(err) => return Ok(Err(Failure::Command(*err))),
        };
        let head = tx.stream(&command.stream_type, &command.stream_id)?;
        if let Some(expected) = expected_version
            && expected != head.version
        {
            return Ok(Err(fail(CommandFailure::Concurrency(crate::error::ConcurrencyError {
                stream: command.stream(),
                expected,
                actual: head.version,
            }))));
        }
        let entry = &mut self.entries[index];
        // The aggregate is named after the stream type the command addresses.
        let Decision { events, state } =
            match entry
                .aggregate
                .handle(head.state.as_deref(), &command.stream_id, &command.name, &command.args)
            {
                Ok(Ok(decision)) => decision,
                Ok(Err(message)) => {
                    return Ok(Err(fail(CommandFailure::Rejected {
                        aggregate: command.stream_type.clone(),
                        message,
                    })));
                }
                Err(err) => {
                    return Ok(Err(fail(CommandFailure::Guest {
                        aggregate: command.stream_type.clone(),
                        message: format!("{err:#}"),
                    })));
                }
            };
        for event in &events {
            if let Err(err) = validate(&entry.schemas, event) {
                return Ok(Err(fail(CommandFailure::InvalidEvent(err))));
            }
            if let Some(cause) = cause
                && re_emits(cause, command, event)
            {
                return Ok(Err(Failure::InfiniteLoop(InfiniteLoopError {
                    plugin: cause.plugin.clone(),
                    event: event.name.clone(),
                    stream: command.stream(),
                })));
            }
        }
        if events.is_empty() {
            return Ok(Ok(Decided::Nothing));
        }
        Ok(Ok(Decided::Events {
            version: head.version,
            events,
            state,
        }))
    }
}

/// What an aggregate decided for a command, checked and folded: the events
/// follow stream version `version`, read in the executing transaction.
enum Decided {
    Nothing,
    Events {
        version: u64,
        events: Vec<NewEvent>,
        state: Vec<u8>,
    },
}

fn command_error(command: &Command, reason: CommandFailure) -> CommandError {
    CommandError {
        aggregate: command.stream_type.clone(),
        command: command.name.clone(),
        stream: command.stream(),
        reason,
    }
}

/// Whether `event`, produced by `command`, is the event its process manager
/// was handling: same name, same stream, deep-equal JSON payload.
fn re_emits(cause: &Cause, command: &Command, event: &NewEvent) -> bool {
    event.name == cause.event
        && command.stream_type == cause.stream_type
        && command.stream_id == cause.stream_id
        && match (
            serde_json::from_str::<serde_json::Value>(&event.payload),
            serde_json::from_str::<serde_json::Value>(&cause.payload),
        ) {
            (Ok(a), Ok(b)) => json_equal(&a, &b),
            _ => false,
        }
}

/// The longest stream id, in bytes.
pub const MAX_STREAM_ID_BYTES: usize = 256;

/// A stream id is non-empty, at most [`MAX_STREAM_ID_BYTES`] long and holds
/// no control characters (they would break every text listing).
fn check_stream_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("it is empty".into());
    }
    if id.len() > MAX_STREAM_ID_BYTES {
        return Err(format!(
            "it is {} bytes long, more than {MAX_STREAM_ID_BYTES}",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(format!("it holds the control character {:?}", c));
    }
    Ok(())
}

/// Deep equality of JSON values with numbers compared by value (`40` equals
/// `40.0`), as the JS library's deep equality does; serde_json's own `==`
/// tells integers and floats apart.
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
            (Some(a), Some(b), _, _) => a == b,
            (_, _, Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64(),
        },
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_equal(a, b)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn validate(schemas: &HashMap<String, jsonschema::Validator>, event: &NewEvent) -> Result<(), EventValidationError> {
    let invalid = |field: String, message: String| EventValidationError {
        event: event.name.clone(),
        field,
        message,
    };
    let Some(validator) = schemas.get(&event.name) else {
        let mut declared: Vec<&str> = schemas.keys().map(String::as_str).collect();
        declared.sort_unstable();
        return Err(invalid(
            "/".into(),
            format!(
                "the aggregate does not declare this event (declared: {})",
                quoted_list(declared)
            ),
        ));
    };
    let payload: serde_json::Value =
        serde_json::from_str(&event.payload).map_err(|e| invalid("/".into(), format!("payload is not JSON: {e}")))?;
    validator.validate(&payload).map_err(|err| {
        let path = err.instance_path().to_string();
        invalid(if path.is_empty() { "/".into() } else { path }, err.to_string())
    })
}

fn is_pascal_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase()) && name.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An aggregate that declares the given events and decides nothing.
    struct Declares(&'static [&'static str]);

    impl Aggregate for Declares {
        fn describe(&mut self) -> anyhow::Result<AggregateDescription> {
            Ok(AggregateDescription {
                name: "users".into(),
                events: self
                    .0
                    .iter()
                    .map(|name| EventDeclaration {
                        name: (*name).into(),
                        schema: "{}".into(),
                    })
                    .collect(),
                commands: vec!["create".into()],
            })
        }

        fn handle(&mut self, _: Option<&[u8]>, _: &str, _: &str, _: &str) -> anyhow::Result<Result<Decision, String>> {
            Ok(Err("decides nothing".into()))
        }
    }

    #[test]
    fn a_new_version_of_an_aggregate_must_declare_every_event_of_the_old_one() {
        let mut aggregates = Aggregates::default();
        aggregates
            .register(Box::new(Declares(&["UserCreated", "UserUpdated"])))
            .unwrap();

        let err = aggregates.register(Box::new(Declares(&["UserCreated"]))).unwrap_err();
        assert!(
            err.to_string()
                .contains("the new version no longer declares event `UserUpdated`"),
            "{err}"
        );
        aggregates
            .register(Box::new(Declares(&["UserCreated", "UserUpdated", "UserDeleted"])))
            .unwrap();
        assert!(aggregates.names().read().unwrap().contains("users"));
    }

    #[test]
    fn json_payloads_compare_numbers_by_value() {
        let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert!(json_equal(&v(r#"{"age":40}"#), &v(r#"{"age":40.0}"#)));
        assert!(json_equal(&v(r#"[1, {"a": 2.50}]"#), &v(r#"[1.0, {"a": 2.5}]"#)));
        assert!(!json_equal(&v(r#"{"age":40}"#), &v(r#"{"age":41}"#)));
        assert!(!json_equal(&v(r#"{"age":40}"#), &v(r#"{"age":"40"}"#)));
        assert!(!json_equal(&v(r#"{"a":1}"#), &v(r#"{"a":1,"b":2}"#)));
    }
}

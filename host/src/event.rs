//! The records that flow through Cascade: events, commands and what an
//! aggregate decides before the host gives it an envelope.

use serde::{Deserialize, Serialize};

/// An immutable fact in the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Global, gapless position in the log, starting at 1.
    pub position: u64,
    /// PascalCase name, e.g. `UserCreated`.
    pub name: String,
    /// The aggregate that produced it, e.g. `users`.
    pub stream_type: String,
    /// The aggregate instance, e.g. `u1`.
    pub stream_id: String,
    /// Version of the stream after this event, starting at 1.
    pub stream_version: u64,
    /// JSON payload text, valid against the event's schema.
    pub payload: String,
    /// JSON object text with free-form metadata.
    pub metadata: String,
    /// Who caused the command that produced this event.
    pub actor_id: Option<String>,
    /// Id of the command that produced this event.
    pub causation_id: String,
    /// Shared by every command and event of one cascade.
    pub correlation_id: String,
    /// Milliseconds since the Unix epoch when the event was appended.
    pub created_at: u64,
}

impl Event {
    /// The id commands caused by this event name as their causation: `e<position>`.
    pub fn id(&self) -> String {
        format!("e{}", self.position)
    }

    /// `stream-type:stream-id`, the way messages name a stream.
    pub fn stream(&self) -> String {
        format!("{}:{}", self.stream_type, self.stream_id)
    }

    /// The event as JSON, with payload and metadata as values rather than
    /// text: what `cascade events --json` and the HTTP API print.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("events serialize");
        value["payload"] = parse_or_text(&self.payload);
        value["metadata"] = parse_or_text(&self.metadata);
        value
    }
}

fn parse_or_text(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// A request to one aggregate stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    /// The aggregate, e.g. `accounts`.
    pub stream_type: String,
    /// The aggregate instance, e.g. `u1`.
    pub stream_id: String,
    /// A command the aggregate declares, e.g. `open`.
    pub name: String,
    /// JSON arguments text.
    pub args: String,
    /// Who asks.
    pub actor_id: Option<String>,
}

impl Command {
    /// A command without an actor.
    pub fn new(stream_type: &str, stream_id: &str, name: &str, args: &str) -> Self {
        Command {
            stream_type: stream_type.to_owned(),
            stream_id: stream_id.to_owned(),
            name: name.to_owned(),
            args: args.to_owned(),
            actor_id: None,
        }
    }

    /// `stream-type:stream-id`, the way messages name a stream.
    pub fn stream(&self) -> String {
        format!("{}:{}", self.stream_type, self.stream_id)
    }
}

/// An event an aggregate decided on, before the host appends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// One of the aggregate's declared event names.
    pub name: String,
    /// JSON payload text.
    pub payload: String,
}

/// What the host stamps on every event a command appends.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    /// JSON object text.
    pub metadata: String,
    /// Who caused it.
    pub actor_id: Option<String>,
    /// The command id.
    pub causation_id: String,
    /// The cascade.
    pub correlation_id: String,
}

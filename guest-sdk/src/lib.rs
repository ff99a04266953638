//! Write Cascade aggregates and process managers in Rust.
//!
//! Plugins compile to `wasm32-wasip2` components and run inside the Cascade
//! host. A process manager is an inherent `impl` block whose methods are named
//! after the events they handle:
//!
//! ```ignore
//! use cascade_sdk::{Context, Event, HandlerResult, dispatch, process_manager};
//! use serde_json::json;
//!
//! struct Welcome;
//!
//! #[process_manager]
//! impl Welcome {
//!     /// Phase 1 of every `UserCreated` event.
//!     fn on_user_created(event: Event, _ctx: Context) -> HandlerResult {
//!         dispatch("accounts", &event.stream_id, "open", json!({}))
//!     }
//! }
//! ```
//!
//! `#[process_manager(state = T)]` makes a per-instance (stateful) process
//! manager: each handler takes `&mut T`, the state of the instance its event
//! belongs to (by default the event's stream id; see [`InstanceRule`]), and
//! may [`complete`] the instance or [`schedule_after`] a timer for it, which
//! comes back as `on_timer_fired` ([`FiredTimer`]).
//!
//! Any process manager may [`request`] an HTTP effect: the host performs it
//! after the handler's commit and hands the outcome back to
//! `on_effect_completed` ([`EffectOutcome`]).
//!
//! An aggregate implements [`Aggregate`] and is exported with
//! [`export_aggregate!`].

#![deny(missing_docs)]

#[allow(missing_docs)]
mod bindings {
    // `generate_unused_types`: the base world only imports, but every plugin
    // shares the handler types (`event`, `context`, ...) from here via `with`.
    wit_bindgen::generate!({
        path: "wit",
        // The one version of the package in `wit/`.
        world: "cascade:runtime/sdk",
        generate_unused_types: true,
    });
}

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use bindings::cascade::runtime::instance_types::{InstanceKey, InstanceRule};
pub use bindings::cascade::runtime::log::Level;
pub use bindings::cascade::runtime::projection_types::Collection;
pub use bindings::cascade::runtime::types::{Command, Context, Envelope, Event, HandlerError};
pub use cascade_sdk_macros::{export_aggregate, process_manager, projection};

/// What an `on_*` or `after_*` handler returns.
pub type HandlerResult = Result<(), HandlerError>;

impl Event {
    /// Deserialize the JSON payload into `T`.
    ///
    /// # Errors
    ///
    /// A [`HandlerError::Failed`] naming the event when the payload does not fit `T`.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_str(&self.payload).map_err(|err| {
            HandlerError::Failed(format!(
                "payload of `{}` does not fit the handler's type: {err}",
                self.name
            ))
        })
    }

    /// Where this event came from: metadata, actor, causation and
    /// correlation id. The host hands them over on demand (one call), so
    /// handlers that do not ask pay nothing for them.
    ///
    /// `None` when asked outside the handler call that received this event.
    pub fn envelope(&self) -> Option<Envelope> {
        bindings::cascade::runtime::event_envelope::get(self.position)
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        HandlerError::Failed(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        HandlerError::Failed(message.to_owned())
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(err: serde_json::Error) -> Self {
        HandlerError::Failed(err.to_string())
    }
}

/// Queue a command for `stream_type:stream_id`; the host runs it after the
/// current event has been handled by every listener.
///
/// # Errors
///
/// The host's reason when it refuses the command right away.
pub fn dispatch(stream_type: &str, stream_id: &str, command: &str, args: impl Serialize) -> HandlerResult {
    let args = serde_json::to_string(&args)?;
    bindings::cascade::runtime::commands::dispatch(&Command {
        stream_type: stream_type.to_owned(),
        stream_id: stream_id.to_owned(),
        name: command.to_owned(),
        args,
        actor_id: None,
    })
    .map_err(HandlerError::Failed)
}

/// Skip the rest of this handler during a refresh, and go on normally live:
/// `skip_refreshing(&ctx)?;` at the top of a handler whose effects must not
/// be replayed (the JS library's `skipRefreshing()`). A no-op outside a
/// refresh.
///
/// # Errors
///
/// [`HandlerError::SkipRefreshing`] while refreshing, which the `?` returns.
pub fn skip_refreshing(ctx: &Context) -> HandlerResult {
    if ctx.refreshing {
        Err(HandlerError::SkipRefreshing)
    } else {
        Ok(())
    }
}

impl InstanceRule {
    /// `event` belongs to the instance named by its stream id.
    pub fn by_stream_id(event: &str) -> Self {
        Self::new(event, InstanceKey::StreamId)
    }

    /// `event` belongs to the instance named by its correlation id.
    pub fn by_correlation_id(event: &str) -> Self {
        Self::new(event, InstanceKey::CorrelationId)
    }

    /// `event` belongs to the instance named by its payload's top-level
    /// `field` (a string or a number), e.g. `orderId`.
    pub fn by_payload_field(event: &str, field: &str) -> Self {
        Self::new(event, InstanceKey::PayloadField(field.to_owned()))
    }

    /// `event` belongs to the one instance `singleton`.
    pub fn single(event: &str) -> Self {
        Self::new(event, InstanceKey::Single)
    }

    /// The event does not start an instance: for one that does not exist
    /// (never started, or completed) it is ignored.
    pub fn no_start(mut self) -> Self {
        self.starts = false;
        self
    }

    fn new(event: &str, key: InstanceKey) -> Self {
        InstanceRule {
            event: event.to_owned(),
            key,
            starts: true,
        }
    }
}

/// The id of the instance the current handler call belongs to.
pub fn instance_id() -> String {
    bindings::cascade::runtime::instance::id()
}

/// Complete the current instance: when the call succeeds, its state is
/// deleted and its timers cancelled, and later events for it are ignored
/// unless their rule lets them start a new one.
pub fn complete() {
    bindings::cascade::runtime::instance::complete();
}

/// Schedule timer `name` of the current instance `millis` after the
/// handled event's time, with `payload`; it replaces a pending one of the
/// same name and comes back as `TimerFired` to `on_timer_fired`.
///
/// # Errors
///
/// The host's reason: no instances, a name or payload out of bounds.
pub fn schedule_after(name: &str, millis: u64, payload: impl Serialize) -> HandlerResult {
    schedule(name, bindings::cascade::runtime::timers::Due::After(millis), payload)
}

/// Schedule timer `name` of the current instance at `at` (milliseconds
/// since the Unix epoch), as [`schedule_after`].
///
/// # Errors
///
/// As [`schedule_after`].
pub fn schedule_at(name: &str, at: u64, payload: impl Serialize) -> HandlerResult {
    schedule(name, bindings::cascade::runtime::timers::Due::At(at), payload)
}

fn schedule(name: &str, due: bindings::cascade::runtime::timers::Due, payload: impl Serialize) -> HandlerResult {
    let payload = serde_json::to_string(&payload)?;
    bindings::cascade::runtime::timers::schedule(name, due, &payload).map_err(HandlerError::Failed)
}

/// Cancel timer `name` of the current instance; a missing one is fine.
pub fn cancel_timer(name: &str) {
    bindings::cascade::runtime::timers::cancel(name);
}

/// A fired timer, as `on_timer_fired` receives it in the event's payload.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct FiredTimer {
    /// The timer's name.
    pub timer: String,
    /// The instance that scheduled it.
    pub instance: String,
    /// When it was due, in milliseconds since the Unix epoch.
    pub due: u64,
    /// What it was scheduled with.
    pub payload: serde_json::Value,
}

impl Event {
    /// The timer a `TimerFired` event is about.
    ///
    /// # Errors
    ///
    /// A [`HandlerError::Failed`] when this is not a `TimerFired` event.
    pub fn timer(&self) -> Result<FiredTimer, HandlerError> {
        self.payload()
    }
}

/// The plugin's configuration value `key` (its manifest's `[config]`
/// table), deserialized into `T`; `None` when it is not set.
///
/// # Errors
///
/// A value that does not fit `T`.
pub fn config<T: DeserializeOwned>(key: &str) -> Result<Option<T>, HandlerError> {
    bindings::cascade::runtime::config::get(key)
        .map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| HandlerError::Failed(format!("config `{key}` does not fit the type: {e}")))
        })
        .transpose()
}

/// An HTTP request for [`request`]: performed by the host after the
/// handler's commit, with an `Idempotency-Key` header that is the same on
/// every attempt.
#[derive(Clone, Debug, Default)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// An absolute URL within one of the plugin's `http` grants.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A `POST` of `body` as JSON to `url`.
    ///
    /// # Errors
    ///
    /// `body` does not serialize.
    pub fn post_json(url: &str, body: impl Serialize) -> Result<HttpRequest, HandlerError> {
        Ok(HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&body)?,
        })
    }

    /// A `GET` of `url`.
    pub fn get(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url.into(),
            ..HttpRequest::default()
        }
    }

    /// The same request with header `name: value` added.
    pub fn header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Request `request` as effect `name`: stored with this call's commit and
/// performed after it (never inside the handler, never during a refresh);
/// its outcome comes back as `EffectCompleted` to `on_effect_completed`
/// ([`EffectOutcome`]).
///
/// # Errors
///
/// The host's reason, in one line: a URL outside the plugin's grants (the
/// call then fails too), a malformed request.
pub fn request(name: &str, request: HttpRequest) -> HandlerResult {
    let request = bindings::cascade::runtime::effects::HttpRequest {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
    };
    bindings::cascade::runtime::effects::request(name, &request).map_err(HandlerError::Failed)
}

/// An effect's outcome, as `on_effect_completed` receives it in the event's payload.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct EffectOutcome {
    /// The name the effect was requested under.
    pub effect: String,
    /// Its key: the `Idempotency-Key` it was sent with.
    pub key: String,
    /// The instance that requested it (per-instance process managers).
    pub instance: Option<String>,
    /// Whether the endpoint answered 2xx.
    pub ok: bool,
    /// The status it answered with; none when it never answered.
    pub status: Option<u16>,
    /// Kept response headers (content-type, location, etag, retry-after).
    pub headers: std::collections::BTreeMap<String, String>,
    /// The response body, up to the plugin's cap.
    pub body: String,
    /// Why it failed, when it never answered (an operator skipped it).
    pub error: Option<String>,
    /// Attempts made.
    pub attempts: u32,
}

impl Event {
    /// The effect an `EffectCompleted` event is about.
    ///
    /// # Errors
    ///
    /// A [`HandlerError::Failed`] when this is not an `EffectCompleted` event.
    pub fn effect(&self) -> Result<EffectOutcome, HandlerError> {
        self.payload()
    }
}

/// Log `message` at `level`; the host tags it with the plugin's name.
pub fn log(level: Level, message: &str) {
    bindings::cascade::runtime::log::log(level, message);
}

/// Log `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Declare a collection and the top-level fields `find` can search.
pub fn collection(name: &str, indexes: &[&str]) -> Collection {
    Collection {
        name: name.to_owned(),
        indexes: indexes.iter().map(|i| (*i).to_owned()).collect(),
    }
}

/// Put `document` as `id` in one of this projection's collections.
///
/// # Errors
///
/// The host's reason: a collection this projection does not own, or a
/// document that is not a JSON object.
pub fn put(collection: &str, id: &str, document: impl Serialize) -> HandlerResult {
    let body = serde_json::to_string(&document)?;
    bindings::cascade::runtime::read_model_writer::put(collection, id, &body).map_err(HandlerError::Failed)
}

/// Delete document `id` from one of this projection's collections.
///
/// # Errors
///
/// The host's reason: a collection this projection does not own.
pub fn delete(collection: &str, id: &str) -> HandlerResult {
    bindings::cascade::runtime::read_model_writer::delete(collection, id).map_err(HandlerError::Failed)
}

/// Queries over read models, for process managers and projections.
pub mod read_models {
    use super::{HandlerError, bindings::cascade::runtime::read_models as wit};
    use serde::de::DeserializeOwned;

    fn query_error(err: wit::QueryError) -> HandlerError {
        HandlerError::Failed(match err {
            wit::QueryError::UnknownCollection(m) | wit::QueryError::NotIndexed(m) | wit::QueryError::Invalid(m) => m,
        })
    }

    fn parse<T: DeserializeOwned>(body: &str) -> Result<T, HandlerError> {
        serde_json::from_str(body).map_err(|e| HandlerError::Failed(format!("read model does not fit the type: {e}")))
    }

    /// Document `id` of `collection`, deserialized into `T`.
    ///
    /// # Errors
    ///
    /// An unknown collection, or a document that does not fit `T`.
    pub fn get<T: DeserializeOwned>(collection: &str, id: &str) -> Result<Option<T>, HandlerError> {
        wit::get(collection, id)
            .map_err(query_error)?
            .map(|body| parse(&body))
            .transpose()
    }

    /// Every document of `collection` whose indexed `field` equals `value`,
    /// with its id.
    ///
    /// # Errors
    ///
    /// An unknown collection, a field that is not indexed, or documents that
    /// do not fit `T`.
    pub fn find<T: DeserializeOwned>(
        collection: &str,
        field: &str,
        value: impl serde::Serialize,
    ) -> Result<Vec<(String, T)>, HandlerError> {
        let value = serde_json::to_string(&value)?;
        wit::find(collection, field, &value)
            .map_err(query_error)?
            .into_iter()
            .map(|doc| Ok((doc.id, parse(&doc.body)?)))
            .collect()
    }

    /// Up to `limit` documents of `collection` after id `after`, and the id to
    /// pass as `after` for the next page.
    ///
    /// # Errors
    ///
    /// An unknown collection, or documents that do not fit `T`.
    pub fn list<T: DeserializeOwned>(
        collection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<(String, T)>, Option<String>), HandlerError> {
        let page = wit::list(collection, after, limit).map_err(query_error)?;
        let documents = page
            .documents
            .into_iter()
            .map(|doc| Ok((doc.id, parse(&doc.body)?)))
            .collect::<Result<_, HandlerError>>()?;
        Ok((documents, page.next))
    }
}

/// An event an aggregate declares: its name and the JSON Schema of its payload.
pub struct EventSchema {
    /// PascalCase name, e.g. `UserCreated`.
    pub name: &'static str,
    /// JSON Schema every payload must satisfy; the host checks it before appending.
    pub schema: serde_json::Value,
}

/// An event an aggregate decided on.
pub struct NewEvent {
    name: String,
    payload: serde_json::Value,
}

/// Build a [`NewEvent`] from a name and a serializable payload.
pub fn new_event(name: &str, payload: impl Serialize) -> NewEvent {
    NewEvent {
        name: name.to_owned(),
        payload: serde_json::to_value(payload).expect("event payloads serialize to JSON"),
    }
}

/// A consistency boundary: turns commands into events against its state.
pub trait Aggregate {
    /// The folded state of one stream; `Default` is the state before any event.
    type State: Default + Serialize + DeserializeOwned;
    /// The stream type, e.g. `users`.
    const NAME: &'static str;
    /// Every command name this aggregate accepts.
    const COMMANDS: &'static [&'static str];

    /// Every event this aggregate can produce, with its payload schema.
    fn events() -> Vec<EventSchema>;

    /// Decide the events for `command` on stream `stream_id` with JSON `args`,
    /// or the reason it is rejected.
    ///
    /// # Errors
    ///
    /// The rejection reason; the host reports it as a command error.
    fn handle(
        state: &Self::State,
        stream_id: &str,
        command: &str,
        args: serde_json::Value,
    ) -> Result<Vec<NewEvent>, String>;

    /// Fold one event into the state.
    fn apply(state: &mut Self::State, event: &str, payload: serde_json::Value);
}

#[doc(hidden)]
pub mod __private {
    //! Used by the code the macros generate; not a stable API.

    pub use wit_bindgen;

    pub mod wit {
        pub use crate::bindings::cascade::runtime::{
            commands, config, effects, event_envelope, instance, instance_types, log, projection_types,
            read_model_writer, read_models, timers, types,
        };
    }

    use super::{Aggregate, HandlerResult};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Call `f` with the state of the current instance (its `Default` for
    /// a new one) and hand the host the state it leaves, when it changed.
    pub fn with_state<T: Default + Serialize + DeserializeOwned>(
        f: impl FnOnce(&mut T) -> HandlerResult,
    ) -> HandlerResult {
        let stored = wit::instance::state();
        let mut state: T = match &stored {
            None => T::default(),
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| {
                crate::HandlerError::Failed(format!("the stored state does not fit the state type: {e}"))
            })?,
        };
        f(&mut state)?;
        let bytes = serde_json::to_vec(&state)?;
        if stored.as_deref() != Some(bytes.as_slice()) {
            wit::instance::set_state(&bytes);
        }
        Ok(())
    }

    pub fn describe<A: Aggregate>() -> (String, Vec<(String, String)>, Vec<String>) {
        let events = A::events()
            .into_iter()
            .map(|e| (e.name.to_owned(), e.schema.to_string()))
            .collect();
        let commands = A::COMMANDS.iter().map(|c| (*c).to_owned()).collect();
        (A::NAME.to_owned(), events, commands)
    }

    fn load<A: Aggregate>(state: Option<Vec<u8>>) -> Result<A::State, String> {
        match state {
            None => Ok(A::State::default()),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("stored state of `{}` is unreadable: {e}", A::NAME))
            }
        }
    }

    /// Decide, then fold the decided events into the state: one guest call
    /// per command.
    pub fn handle<A: Aggregate>(
        state: Option<Vec<u8>>,
        stream_id: &str,
        command: &str,
        args: &str,
    ) -> Result<(Vec<(String, String)>, Vec<u8>), String> {
        let mut state = load::<A>(state)?;
        let args = serde_json::from_str(args).map_err(|e| format!("args are not valid JSON: {e}"))?;
        let events = A::handle(&state, stream_id, command, args)?;
        let mut decided = Vec::with_capacity(events.len());
        for event in events {
            let payload = event.payload.to_string();
            A::apply(&mut state, &event.name, event.payload);
            decided.push((event.name, payload));
        }
        let state =
            serde_json::to_vec(&state).map_err(|e| format!("state of `{}` does not serialize: {e}", A::NAME))?;
        Ok((decided, state))
    }
}

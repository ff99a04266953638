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
            commands, event_envelope, log, projection_types, read_model_writer, read_models, types,
        };
    }

    use super::{Aggregate, HandlerResult};
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use std::cell::RefCell;

    /// The state of a stateful process manager. Components are
    /// single-threaded, so a `RefCell` in a static is sound.
    pub struct StateCell<T>(RefCell<Option<T>>);

    // SAFETY: wasm32-wasip2 components run on one thread.
    unsafe impl<T> Sync for StateCell<T> {}

    impl<T> StateCell<T> {
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            StateCell(RefCell::new(None))
        }
    }

    pub fn with_state<T: Default>(cell: &StateCell<T>, f: impl FnOnce(&mut T) -> HandlerResult) -> HandlerResult {
        let mut slot = cell.0.borrow_mut();
        f(slot.get_or_insert_with(T::default))
    }

    pub fn save_state<T: Default + Serialize>(cell: &StateCell<T>) -> Vec<u8> {
        let mut slot = cell.0.borrow_mut();
        serde_json::to_vec(slot.get_or_insert_with(T::default)).expect("process manager state serializes to JSON")
    }

    pub fn load_state<T: DeserializeOwned>(cell: &StateCell<T>, state: Option<Vec<u8>>) {
        // A blob that no longer fits the state type traps: the host reports
        // it and keeps the previous version running.
        // `load-state` cannot return an error in the contract: the panic
        // message is what the host reports.
        let state = state.map(|bytes| {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("the stored state does not fit the state type: {e}"))
        });
        *cell.0.borrow_mut() = state;
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

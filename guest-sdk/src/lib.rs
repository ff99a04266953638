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
        path: "../wit",
        world: "cascade:runtime/process-manager@0.1.0",
        generate_unused_types: true,
    });
}

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use bindings::cascade::runtime::log::Level;
pub use bindings::cascade::runtime::types::{Command, Context, Event, HandlerError};
pub use cascade_sdk_macros::{export_aggregate, process_manager};

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
            HandlerError::Failed(format!("payload of `{}` does not fit the handler's type: {err}", self.name))
        })
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

/// Log `message` at `level`; the host tags it with the plugin's name.
pub fn log(level: Level, message: &str) {
    bindings::cascade::runtime::log::log(level, message);
}

/// Log `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
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
    fn handle(state: &Self::State, stream_id: &str, command: &str, args: serde_json::Value) -> Result<Vec<NewEvent>, String>;

    /// Fold one event into the state.
    fn apply(state: &mut Self::State, event: &str, payload: serde_json::Value);
}

#[doc(hidden)]
pub mod __private {
    //! Used by the code the macros generate; not a stable API.

    pub use wit_bindgen;

    pub mod wit {
        pub use crate::bindings::cascade::runtime::{commands, log, types};
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
        let state = state.map(|bytes| serde_json::from_slice(&bytes).expect("stored state fits the state type"));
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
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("stored state of `{}` is unreadable: {e}", A::NAME)),
        }
    }

    pub fn handle<A: Aggregate>(state: Option<Vec<u8>>, stream_id: &str, command: &str, args: &str) -> Result<Vec<(String, String)>, String> {
        let state = load::<A>(state)?;
        let args = serde_json::from_str(args).map_err(|e| format!("args are not valid JSON: {e}"))?;
        let events = A::handle(&state, stream_id, command, args)?;
        Ok(events.into_iter().map(|e| (e.name, e.payload.to_string())).collect())
    }

    pub fn apply<A: Aggregate>(state: Option<Vec<u8>>, event: &str, payload: &str) -> Vec<u8> {
        // The host only hands back states this function produced and payloads
        // it validated, so a failure here is a bug in the aggregate: trap.
        let mut state = load::<A>(state).expect("state produced by apply");
        let payload = serde_json::from_str(payload).expect("payload validated by the host");
        A::apply(&mut state, event, payload);
        serde_json::to_vec(&state).expect("aggregate state serializes to JSON")
    }
}

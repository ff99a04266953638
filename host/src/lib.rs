//! Cascade: a runtime for event-sourced process managers (sagas) that run as
//! sandboxed WebAssembly components.
//!
//! Aggregates turn commands into events; process managers listen to events
//! with `on-<event>` handlers (phase 1) and `after-<event>` after-effects
//! (phase 2) and dispatch further commands. Everything is stored in one redb
//! file; a caller can wait until a command's whole cascade has settled.
//!
//! ```no_run
//! use cascade::{Command, Options, Runtime};
//!
//! let mut runtime = Runtime::open("cascade-data".as_ref(), Options::default())?;
//! runtime.add_plugin("target/plugins/users.wasm".as_ref())?;
//! runtime.add_plugin("target/plugins/accounts.wasm".as_ref())?;
//! runtime.add_plugin("target/plugins/welcome.wasm".as_ref())?;
//! let settled = runtime
//!     .pipeline()
//!     .execute(Command::new("users", "u1", "create", r#"{"name":"Torsten"}"#))?;
//! assert!(settled.is_ok());
//! # Ok::<(), cascade::Error>(())
//! ```
//!
//! A long-running program (the `cascade serve` server is one) runs the
//! runtime on an [`Engine`]: one writer thread that owns it, and cloneable
//! [`EngineHandle`]s that any task submits commands through and awaits their
//! settled answers with. Concurrent callers share group commits.
//!
//! ```
//! use std::time::Duration;
//! use cascade::{Command, Engine, Options};
//!
//! // The example plugins (`scripts/build-plugins.sh`; the test suite builds them).
//! let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
//! let data = tempfile::tempdir()?;
//! let engine = Engine::start(data.path(), Options::default(), Duration::from_secs(10))?;
//! let handle = engine.handle(); // Clone + Send + Sync: give one to every task
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     // Anything a runtime does, on the writer thread, between two batches.
//!     handle
//!         .with_runtime(move |runtime| {
//!             ["users", "accounts", "welcome"]
//!                 .iter()
//!                 .try_for_each(|name| runtime.add_plugin(&plugins.join(format!("{name}.wasm"))).map(drop))
//!         })
//!         .await??;
//!     // Queued, run by the writer, answered once the whole cascade settled:
//!     // `welcome` reacts to `UserCreated` by opening an account.
//!     let settled = handle
//!         .execute(Command::new("users", "u1", "create", r#"{"name":"Ada"}"#))
//!         .await?;
//!     assert!(settled.is_ok());
//!     let names: Vec<&str> = settled.events.iter().map(|e| e.name.as_str()).collect();
//!     assert_eq!(names, ["UserCreated", "AccountOpened"]);
//!     // Reads go to the log directly, beside the writer.
//!     assert_eq!(handle.log().head()?, 2);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! engine.shutdown(); // finishes the current batch, answers waiting callers
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A submission can also carry an expected stream version, an idempotency
//! key and a cascade budget ([`Submission`]); `submit` queues without
//! waiting and `settled` waits for an earlier one.
//!
//! # Layout
//!
//! Layers point one way; `docs/architecture.md` draws them.
//!
//! - types: `event` (commands, events), `records` (what the store keeps),
//!   `manifest` (what a plugin is granted, its limits and error policy),
//!   `host_api` (what a handler call produced and may see), `error`, `text`
//!   (one-line messages);
//! - `store`: the store traits, the redb file and an in-memory store;
//! - the engine: `aggregate` (executing commands, validating payloads
//!   against JSON Schemas), `listener` (the trait process managers and
//!   projections implement), `read_model` (collections of JSON documents
//!   written by projections), `pipeline` (the phase-by-phase event loop with
//!   group commit and settled tracking);
//! - `sandbox`: the wasmtime engine, linker and per-plugin store state, with
//!   time budgets, memory caps and call limits; `plugin`: components checked
//!   and wrapped as aggregates and listeners;
//! - `runtime`: a data directory opened, with its registered plugins, their
//!   versions and hot swaps; `engine`: the writer thread that owns a
//!   runtime, and its async handle.
//!
//! The `cascade` command line and `cascade serve` are a separate crate
//! (`host/cli`) that composes this one.
//!
//! The traits are public so Cascade can be embedded with native Rust
//! aggregates and listeners; the WASM loaders are implementations of them.

#![deny(missing_docs)]

mod aggregate;
pub mod clock;
mod effect;
mod engine;
mod error;
mod event;
mod grants;
mod graph;
mod host_api;
mod instance;
#[cfg(test)]
mod layers;
mod listener;
mod manifest;
mod pipeline;
mod plugin;
mod read_model;
mod records;
mod runtime;
mod sandbox;
pub mod store;
mod text;

pub use aggregate::{Aggregate, AggregateDescription, Aggregates, Decision, EventDeclaration};
pub use effect::{
    Attempted, EFFECT_COMPLETED, EffectCompleted, EffectOutcome, EffectRequest, HttpRequest, IDEMPOTENCY_KEY, Origin,
    shown_url,
};
pub use engine::{
    Deployed, EFFECT_LATENCY_BUCKETS, EffectStats, Engine, EngineHandle, EngineStats, MAX_EFFECTS_IN_FLIGHT,
    PluginEffects,
};
pub use error::{
    CascadeBudgetError, CausationDepthError, CommandError, CommandFailure, ConcurrencyError, Error,
    EventValidationError, Failure, HandlerFailure, InfiniteLoopError, PluginError, QueryError, StoreError,
};
pub use event::{Command, Envelope, Event, NewEvent};
pub use grants::{GRANTS_CHANGED, GRANTS_STREAM, GrantChange, Reach};
pub use graph::{Cycle, Edge, EdgeKind, FlowGraph, Node, NodeKind};
pub use host_api::{AggregateNames, Document, DocumentAccess, Effects, Level};
pub use instance::{
    HOST_STREAM, InstanceCall, InstanceKey, InstanceRule, InstanceRules, SINGLETON, TIMER_FIRED, TimerFired,
    TimerRequest,
};
pub use listener::{Context, Handler, HandlerError, Listener, Phase};
pub use manifest::{
    Capabilities, EffectPolicy, LimitOverrides, Manifest, ManifestAdditions, OnError, Placement, Policy, Quotas,
    StartFrom,
};
pub use pipeline::{
    CascadeRecord, Cause, CommandRecord, DURATION_BUCKETS, HandlerStats, LATENESS_BUCKETS, ListenerStats, Load,
    LogLine, Options, Outcome, Parked, Pipeline, RefreshReport, Settled, Skipped, Submission, TimerStats, TraceEntry,
    state_json,
};
pub use plugin::{
    CONTRACT_VERSION, HANDLER_SIGNATURE, PluginKind, PluginRecord, PluginVersion,
    name_from_path as plugin_name_from_path,
};
pub use read_model::{Collection, ReadModels};
pub use records::{Effect, Exports, InstanceRecord, ParkedEffect, Timer, content_hash};
pub use runtime::{
    Compiled, DATA_FILE, InstanceSummary, KEPT_VERSIONS, ListenerStatus, PluginStatus, Runtime, SERVER_FILE,
    ServerInfo, Swap, SwapState, Usage, flow_graph,
};
pub use sandbox::{Limits, Sandbox};
pub use store::{
    AnyStore, Backend, DEFAULT_CACHE_MIB, DocumentView, Documents, EventLog, LogReader, MemoryStore, PgStore, Progress,
    Registry, SCHEMA_VERSION, Storage, Store, Tx, UnitOfWork, Verification, WorkQueue,
};
pub use text::{one_line, panic_message};

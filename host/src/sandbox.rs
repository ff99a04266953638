//! The sandbox: one wasmtime [`Engine`], the [`Linker`] with the host's
//! imports, and the per-plugin store state.
//!
//! Guests get no ambient authority: WASI is linked because Rust's std imports
//! it, but with no preopened directories, no environment, no arguments and no
//! network; stdio goes nowhere. What a guest can do is what the Cascade
//! imports offer: queue commands (`commands.dispatch`) and log.

use std::hash::{DefaultHasher, Hash, Hasher};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::event::Command;
use crate::listener::Level;

/// Host-side bindings of `cascade:runtime`, generated from `wit/`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cascade:runtime/host",
    });
}

use bindings::cascade::runtime::{commands, log, projection_types, read_model_writer, read_models, types};

use crate::read_model::{QueryError, ReadModels};

/// The state every plugin's wasmtime `Store` carries.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The plugin's name: the owner its read-model writes are checked against.
    plugin: String,
    read_models: ReadModels,
    /// Commands dispatched during the current call.
    pub(crate) dispatched: Vec<Command>,
    /// Lines logged during the current call.
    pub(crate) logs: Vec<(Level, String)>,
}

impl HostState {
    fn new(plugin: &str, read_models: ReadModels) -> Self {
        HostState {
            // The builder's defaults grant nothing: no preopens, no env, no
            // args, no sockets, stdio discarded.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            plugin: plugin.to_owned(),
            read_models,
            dispatched: Vec::new(),
            logs: Vec::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl commands::Host for HostState {
    fn dispatch(&mut self, cmd: types::Command) -> Result<(), String> {
        if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&cmd.args) {
            return Err(format!(
                "args of command `{}` to `{}:{}` are not valid JSON: {err}",
                cmd.name, cmd.stream_type, cmd.stream_id
            ));
        }
        self.dispatched.push(Command {
            stream_type: cmd.stream_type,
            stream_id: cmd.stream_id,
            name: cmd.name,
            args: cmd.args,
            actor_id: cmd.actor_id,
        });
        Ok(())
    }
}

impl projection_types::Host for HostState {}

fn query_error(err: QueryError) -> read_models::QueryError {
    match err {
        QueryError::UnknownCollection { .. } => read_models::QueryError::UnknownCollection(err.to_string()),
        QueryError::NotIndexed { .. } => read_models::QueryError::NotIndexed(err.to_string()),
        _ => read_models::QueryError::Invalid(err.to_string()),
    }
}

fn documents(docs: Vec<(String, String)>) -> Vec<read_models::Document> {
    docs.into_iter()
        .map(|(id, body)| read_models::Document { id, body })
        .collect()
}

impl read_models::Host for HostState {
    fn get(&mut self, collection: String, id: String) -> Result<Option<String>, read_models::QueryError> {
        self.read_models.get(&collection, &id).map_err(query_error)
    }

    fn find(
        &mut self,
        collection: String,
        field: String,
        value: String,
    ) -> Result<Vec<read_models::Document>, read_models::QueryError> {
        let docs = self
            .read_models
            .find(&collection, &field, &value)
            .map_err(query_error)?;
        Ok(documents(docs))
    }

    fn list(
        &mut self,
        collection: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<read_models::Page, read_models::QueryError> {
        let (docs, next) = self
            .read_models
            .list(&collection, after.as_deref(), limit as usize)
            .map_err(query_error)?;
        Ok(read_models::Page {
            documents: documents(docs),
            next,
        })
    }
}

impl read_model_writer::Host for HostState {
    fn put(&mut self, collection: String, id: String, body: String) -> Result<(), String> {
        self.read_models.put(&self.plugin, &collection, &id, &body)
    }

    fn delete(&mut self, collection: String, id: String) -> Result<(), String> {
        self.read_models.delete(&self.plugin, &collection, &id)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.logs.push((level, message));
    }
}

/// The engine and linker shared by every plugin.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
}

impl Sandbox {
    /// An engine with the component model and a linker with every import a
    /// Cascade guest may use.
    ///
    /// # Errors
    ///
    /// wasmtime rejected the configuration.
    pub fn new() -> anyhow::Result<Sandbox> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::Host_::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        Ok(Sandbox { engine, linker })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// A fresh store for one instance of `plugin`.
    pub fn new_store(&self, plugin: &str, read_models: &ReadModels) -> wasmtime::Store<HostState> {
        wasmtime::Store::new(&self.engine, HostState::new(plugin, read_models.clone()))
    }

    /// Key of a precompiled artifact: content hash plus this engine's
    /// compatibility, so an upgraded wasmtime recompiles instead of loading
    /// incompatible code.
    pub fn artifact_key(&self, hash: &str) -> String {
        let mut hasher = DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{hash}-{:016x}", hasher.finish())
    }

    /// Compile component bytes.
    ///
    /// # Errors
    ///
    /// The bytes are not a valid component.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        Ok(Component::new(&self.engine, bytes)?)
    }

    /// Load an artifact made by [`Component::serialize`] with this engine.
    ///
    /// # Errors
    ///
    /// The artifact is not compatible with this engine.
    pub fn deserialize(&self, artifact: &[u8]) -> anyhow::Result<Component> {
        // SAFETY: artifacts are only ever written by `Component::serialize`
        // into the host's own redb file, keyed by engine compatibility.
        Ok(unsafe { Component::deserialize(&self.engine, artifact) }?)
    }
}

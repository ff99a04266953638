//! The runtime over a data directory: the redb file, the sandbox, the
//! pipeline, and the plugin registry that reloads every registered plugin
//! when the directory is opened again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::Component;

use crate::error::{Error, PluginError, StoreError};
use crate::manifest::Manifest;
use crate::pipeline::{Options, Pipeline};
use crate::plugin::{self, PluginKind, PluginRecord, Shape, WasmAggregate, WasmListener};
use crate::sandbox::{PluginEnv, Sandbox};
use crate::store::{Store, Tx};

/// The file inside a data directory that holds everything.
pub const DATA_FILE: &str = "cascade.redb";

/// A Cascade data directory, opened.
pub struct Runtime {
    pipeline: Pipeline,
    sandbox: Arc<Sandbox>,
    dir: PathBuf,
}

impl Runtime {
    /// Open (or create) the data directory `dir` and load every registered
    /// plugin, in registration order.
    ///
    /// # Errors
    ///
    /// The directory or redb file cannot be opened; a stored plugin no longer
    /// loads.
    pub fn open(dir: &Path, options: Options) -> Result<Runtime, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: format!("cannot create data directory `{}`", dir.display()),
            source,
        })?;
        let store = Store::open(&dir.join(DATA_FILE))?;
        let sandbox = Arc::new(
            Sandbox::new(options.epoch_interruption).map_err(|e| PluginError::Instantiate {
                plugin: "<engine>".into(),
                message: format!("{e:#}"),
            })?,
        );
        let mut runtime = Runtime {
            pipeline: Pipeline::new(store, options),
            sandbox,
            dir: dir.to_owned(),
        };
        let records = runtime.pipeline.store().read(|tx| tx.plugins())?;
        // Aggregates first: process managers are validated against their events.
        let (aggregates, listeners): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|r| r.kind == PluginKind::Aggregate);
        for record in aggregates.iter().chain(&listeners) {
            let component = runtime.stored_component(record)?;
            runtime.register(&record.name, &component, &record.manifest)?;
        }
        Ok(runtime)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pipeline, to submit commands and run the loop.
    pub fn pipeline(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }

    /// The pipeline, to read from.
    pub fn pipeline_ref(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Every registered plugin, in registration order.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        self.pipeline.store().read(|tx| tx.plugins())
    }

    /// Validate, register and store the component in `file`. A plugin with
    /// the same name is replaced (keeping its place in the order). Nothing is
    /// stored when validation fails.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a valid Cascade plugin.
    pub fn add_plugin(&mut self, file: &Path) -> Result<PluginRecord, Error> {
        let bytes = std::fs::read(file).map_err(|source| Error::Io {
            context: format!("cannot read plugin `{}`", file.display()),
            source,
        })?;
        let manifest_file = file.with_extension("toml");
        let manifest = match std::fs::read_to_string(&manifest_file) {
            Ok(text) => Manifest::parse(&text).map_err(|message| PluginError::InvalidManifest {
                file: manifest_file.display().to_string(),
                message,
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(source) => {
                return Err(Error::Io {
                    context: format!("cannot read manifest `{}`", manifest_file.display()),
                    source,
                });
            }
        };
        self.add_plugin_bytes(
            &plugin::name_from_path(file),
            &file.display().to_string(),
            &bytes,
            &manifest,
        )
    }

    /// [`Runtime::add_plugin`] for bytes in memory; `name` is used for a
    /// process manager (an aggregate is named by its stream type).
    ///
    /// # Errors
    ///
    /// The bytes are not a valid Cascade plugin.
    pub fn add_plugin_bytes(
        &mut self,
        name: &str,
        source: &str,
        bytes: &[u8],
        manifest: &Manifest,
    ) -> Result<PluginRecord, Error> {
        let component = self.sandbox.compile(bytes).map_err(|e| PluginError::NotAComponent {
            file: source.to_owned(),
            message: one_line(&format!("{e:#}")),
        })?;
        let (name, kind) = self.register(name, &component, manifest)?;
        let hash = plugin::content_hash(bytes);
        let artifact = component.serialize().map_err(|e| PluginError::Instantiate {
            plugin: name.clone(),
            message: format!("cannot precompile: {e:#}"),
        })?;
        let key = self.sandbox.artifact_key(&hash);
        let record = self.pipeline.store().write(|tx| {
            let order = existing_order(tx, &name)?;
            let record = PluginRecord {
                name: name.clone(),
                kind,
                hash: hash.clone(),
                order,
                source: source.to_owned(),
                manifest: manifest.clone(),
            };
            tx.put_component(&hash, bytes)?;
            tx.put_artifact(&key, &artifact)?;
            tx.put_plugin(&record)?;
            Ok::<_, StoreError>(record)
        })?;
        Ok(record)
    }

    /// Classify `component`, instantiate it and register it with the pipeline.
    fn register(
        &mut self,
        name: &str,
        component: &Component,
        manifest: &Manifest,
    ) -> Result<(String, PluginKind), Error> {
        let env = PluginEnv {
            read_models: self.pipeline.read_models().clone(),
            manifest: manifest.clone(),
        };
        match plugin::inspect(&self.sandbox, name, component)? {
            Shape::Aggregate => {
                let aggregate = WasmAggregate::new(self.sandbox.clone(), name, component, &env)?;
                let name = self.pipeline.register_aggregate(Box::new(aggregate))?;
                Ok((name, PluginKind::Aggregate))
            }
            shape => {
                let kind = match shape {
                    Shape::Projection { .. } => PluginKind::Projection,
                    _ => PluginKind::ProcessManager,
                };
                let listener = WasmListener::new(self.sandbox.clone(), name, component, shape, &env)?;
                self.pipeline.register_listener(Box::new(listener))?;
                Ok((name.to_owned(), kind))
            }
        }
    }

    /// The compiled component of a stored plugin: the precompiled artifact
    /// when this engine can load it, else compiled again from its bytes.
    fn stored_component(&self, record: &PluginRecord) -> Result<Component, Error> {
        let key = self.sandbox.artifact_key(&record.hash);
        let (artifact, bytes) = self
            .pipeline
            .store()
            .read(|tx| Ok::<_, StoreError>((tx.artifact(&key)?, tx.component(&record.hash)?)))?;
        if let Some(component) = artifact.and_then(|a| self.sandbox.deserialize(&a).ok()) {
            return Ok(component);
        }
        let bytes = bytes.ok_or_else(|| StoreError::Corrupt {
            table: "components",
            message: format!("component `{}` of plugin `{}` is missing", record.hash, record.name),
        })?;
        let component = self.sandbox.compile(&bytes).map_err(|e| PluginError::NotAComponent {
            file: record.source.clone(),
            message: format!("{e:#}"),
        })?;
        if let Ok(artifact) = component.serialize() {
            self.pipeline.store().write(|tx| tx.put_artifact(&key, &artifact))?;
        }
        Ok(component)
    }
}

/// The order of an existing plugin with this name, or the next free one.
fn existing_order(tx: &Tx<'_>, name: &str) -> Result<u64, StoreError> {
    let plugins = tx.plugins()?;
    Ok(match plugins.iter().find(|p| p.name == name) {
        Some(existing) => existing.order,
        None => plugins.iter().map(|p| p.order + 1).max().unwrap_or(0),
    })
}

/// wasmtime's parse errors span lines (byte dumps); CLI messages are one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

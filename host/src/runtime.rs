//! The runtime over a data directory: the redb file, the sandbox, the
//! pipeline, and the plugin registry that reloads every registered plugin
//! when the directory is opened again.

use crate::store::{Backend, UnitOfWork};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::Component;

use crate::error::{Error, PluginError, StoreError};
use crate::grants::{GrantChange, Reach};
use crate::graph::{FlowGraph, GraphPlugin};
use crate::listener::Listener;
use crate::manifest::{Manifest, ManifestAdditions, StartFrom};
use crate::pipeline::{Load, Options, Pipeline};
use crate::plugin::{self, PluginKind, PluginRecord, PluginVersion, Shape, WasmAggregate, WasmListener};
use crate::records::{Effect, Exports, InstanceRecord, Timer};
use crate::sandbox::{PluginEnv, Sandbox};
use crate::store::{AnyStore, Packed, PgStore, Store};

/// The file inside a data directory that holds everything.
pub const DATA_FILE: &str = "cascade.redb";

/// Versions of a plugin kept for rollback; older ones are forgotten and
/// their components and artifacts deleted when nothing else uses them.
pub const KEPT_VERSIONS: usize = 10;

/// A Cascade data directory, opened.
pub struct Runtime {
    pipeline: Pipeline<AnyStore>,
    sandbox: Arc<Sandbox>,
    dir: PathBuf,
}

impl Runtime {
    /// Open (or create) the data directory `dir` and load every registered
    /// plugin, in registration order (only those `options.load` names: a
    /// runtime that loads fewer only reads).
    ///
    /// # Errors
    ///
    /// The directory or redb file cannot be opened; a stored plugin no longer
    /// loads.
    pub fn open(dir: &Path, options: Options) -> Result<Runtime, Error> {
        if !options.read_only {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                context: format!("cannot create data directory `{}`", dir.display()),
                source,
            })?;
        }
        let file = dir.join(DATA_FILE);
        let store: AnyStore = match (&options.store, options.read_only) {
            (Some(url), true) => PgStore::open_read_only(url)?.into(),
            (Some(url), false) => PgStore::open_exclusive(url)?.into(),
            (None, true) => Store::open_read_only(&file, options.cache_mib << 20)?.into(),
            (None, false) => Store::open_with_cache(&file, options.cache_mib << 20)?.into(),
        };
        let sandbox = Arc::new(
            Sandbox::new(options.epoch_interruption).map_err(|e| PluginError::Instantiate {
                plugin: "<engine>".into(),
                message: format!("{e:#}"),
            })?,
        );
        let (load, read_only) = (options.load, options.read_only);
        let mut runtime = Runtime {
            pipeline: Pipeline::new(store, options),
            sandbox,
            dir: dir.to_owned(),
        };
        let records = runtime.pipeline.store().read(|tx| tx.plugins())?;
        let records = records.into_iter().filter(|r| match load {
            Load::All => true,
            // Projections are checked against the events aggregates declare.
            Load::Projections => r.kind != PluginKind::ProcessManager,
            Load::None => false,
        });
        // Aggregates first: process managers are validated against their events.
        let (aggregates, listeners): (Vec<_>, Vec<_>) = records.partition(|r| r.kind == PluginKind::Aggregate);
        for record in aggregates.iter().chain(&listeners) {
            let loaded = runtime
                .stored_component(record)
                .and_then(|component| runtime.build(&record.name, &component, &record.manifest))
                .and_then(|built| runtime.register(built))
                .and_then(|(name, _, first)| match first {
                    // Stored without a checkpoint: it starts at the head.
                    Some(checkpoint) if !read_only => Ok(runtime
                        .pipeline
                        .store()
                        .write(|tx| tx.set_checkpoint(&name, checkpoint))?),
                    _ => Ok(()),
                });
            // A plugin that no longer loads stops alone: the directory opens
            // and every other plugin goes on (a reader just leaves it out).
            if let Err(err) = loaded
                && !read_only
            {
                runtime
                    .pipeline
                    .stop_listener(&record.name, &format!("it no longer loads: {err}"))?;
            }
        }
        Ok(runtime)
    }

    /// [`Runtime::open`], waiting up to `timeout` while another process
    /// holds the data directory.
    ///
    /// # Errors
    ///
    /// [`StoreError::Busy`] naming what holds it, after `timeout`; as
    /// [`Runtime::open`].
    pub fn open_waiting(dir: &Path, options: Options, timeout: std::time::Duration) -> Result<Runtime, Error> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match Runtime::open(dir, options.clone()) {
                Err(Error::Store(StoreError::Busy { .. })) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                // A database's holder is another host, not this directory's server.
                Err(Error::Store(StoreError::Busy { path, .. })) if options.store.is_none() => {
                    return Err(StoreError::Busy {
                        path,
                        holder: holder(dir),
                    }
                    .into());
                }
                other => return other,
            }
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pipeline, to submit commands and run the loop.
    pub fn pipeline(&mut self) -> &mut Pipeline<AnyStore> {
        &mut self.pipeline
    }

    /// The pipeline, to read from.
    pub fn pipeline_ref(&self) -> &Pipeline<AnyStore> {
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
    /// stored when validation fails. The calling program is the operator: a
    /// redeploy that widens the plugin's grants is accepted (and recorded);
    /// [`Runtime::add_plugin_with`] lets it say otherwise.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a valid Cascade plugin.
    pub fn add_plugin(&mut self, file: &Path) -> Result<PluginRecord, Error> {
        self.add_plugin_with(file, &Swap::by_the_program())
    }

    /// [`Runtime::add_plugin`], saying who deploys and what happens to a
    /// redeployed stateful process manager's state.
    ///
    /// # Errors
    ///
    /// As [`Runtime::add_plugin`].
    pub fn add_plugin_with(&mut self, file: &Path, swap: &Swap) -> Result<PluginRecord, Error> {
        let compiled = Compiled::from_file(&self.sandbox, file)?;
        self.install(compiled, swap)
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
        let compiled = Compiled::new(&self.sandbox, name, source, bytes.to_vec(), manifest.clone())?;
        self.install(compiled, &Swap::by_the_program())
    }

    /// Validate and register a compiled plugin, store it as the newest version
    /// of its name and make it active. A plugin with the same name is
    /// replaced between two batches; a stateful process manager's state is
    /// carried over, refreshed or reset as `swap` says. When anything fails
    /// the old version keeps running and nothing is stored.
    ///
    /// # Errors
    ///
    /// The component does not validate, or its `load-state` fails on the
    /// carried state; a storage error.
    pub fn install(&mut self, compiled: Compiled, swap: &Swap) -> Result<PluginRecord, Error> {
        let Compiled {
            name,
            source,
            packed,
            hash,
            component,
            artifact,
            mut manifest,
            start_from,
        } = compiled;
        // Secrets live in no file: a redeploy keeps them unless given again.
        if let Some(active) = self.active_version(&name) {
            manifest.secrets = active.manifest.secrets;
        }
        manifest
            .add(&swap.additions)
            .map_err(|message| PluginError::InvalidManifest {
                file: source.clone(),
                message,
            })?;
        let first = !self.pipeline.listener_names().contains(&name);
        // A process manager new here that starts from the origin builds its
        // state from history before it goes live.
        let state = match (first, start_from) {
            (true, StartFrom::Origin) => SwapState::Refresh,
            _ => swap.state,
        };
        let built = self.build(&name, &component, &manifest)?;
        let exports = built.exports();
        let change = self.grant_change(built.name(), &manifest, &exports, &swap.by, swap.accept_grants)?;
        let (name, kind, first) = self.register(built)?;
        let key = self.sandbox.artifact_key(&hash);
        let record = self.pipeline.store().write(|tx| {
            let order = existing_order(tx, &name)?;
            let record = PluginRecord {
                name: name.clone(),
                kind,
                hash: hash.clone(),
                order,
                source: source.clone(),
                manifest: manifest.clone(),
                exports: Some(exports.clone()),
            };
            let (versions, _) = tx.plugin_versions(&name)?;
            tx.put_component(&hash, &packed)?;
            tx.put_artifact(&key, &artifact)?;
            tx.put_plugin(&record)?;
            tx.put_plugin_version(&PluginVersion {
                name: name.clone(),
                version: versions.last().map_or(1, |v| v.version + 1),
                kind,
                hash: hash.clone(),
                source: source.clone(),
                manifest: manifest.clone(),
                exports: Some(exports.clone()),
                deployed_at: crate::store::now_millis(),
                deployed_by: swap.by.clone(),
            })?;
            tx.prune_versions(&name, KEPT_VERSIONS)?;
            if let Some(change) = &change {
                crate::pipeline::record_grant_change(tx, change)?;
            }
            // A new listener's first checkpoint: one commit adds the plugin.
            if let Some(checkpoint) = first {
                tx.set_checkpoint(&name, checkpoint)?;
            }
            Ok::<_, StoreError>(record)
        })?;
        self.apply_state(&record, state)?;
        Ok(record)
    }

    /// Every registered plugin with its active version and, for listeners,
    /// where they are: checkpoint, lag behind the log head, calls and
    /// failures since this runtime opened, parked events, state size.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn statuses(&self) -> Result<Vec<PluginStatus>, Error> {
        let pipeline = self.pipeline_ref();
        let stats = pipeline.listener_stats();
        let head = pipeline.store().reader().head()?;
        let parked = pipeline.parked()?;
        // Where a listener is comes from the store, so that a runtime which
        // loaded no plugin reports it too; calls count this runtime's life.
        let stored = pipeline.store().read(|tx| {
            let mut stored = Vec::new();
            for record in tx.plugins()? {
                let (_, version) = tx.plugin_versions(&record.name)?;
                let place = match record.kind {
                    PluginKind::Aggregate => None,
                    _ => Some((
                        tx.checkpoint(&record.name)?.unwrap_or(0),
                        tx.is_stopped(&record.name)?,
                        Usage::of(tx, &record)?,
                    )),
                };
                let stopped_because = tx.stop_reason(&record.name)?;
                stored.push((record, version.unwrap_or(0), place, stopped_because));
            }
            Ok::<_, StoreError>(stored)
        })?;
        let statuses = stored
            .into_iter()
            .map(|(record, version, place, stopped_because)| {
                let listener = place.map(|(checkpoint, stopped, usage)| {
                    let live = stats.iter().find(|l| l.name == record.name);
                    let handlers = live.map(|l| &l.handlers[..]).unwrap_or_default();
                    ListenerStatus {
                        checkpoint,
                        lag: head.saturating_sub(checkpoint),
                        stopped,
                        calls: handlers.iter().map(|h| h.calls).sum(),
                        failures: handlers.iter().map(|h| h.failures).sum(),
                        parked: parked.iter().filter(|(_, p)| p.plugin == record.name).count() as u64,
                        usage,
                        memory_bytes: live.and_then(|l| l.memory_bytes),
                    }
                });
                PluginStatus {
                    reach: Reach::of(&record.manifest, record.exports.as_ref()),
                    record,
                    version,
                    listener,
                    stopped_because,
                }
            })
            .collect();
        Ok(statuses)
    }

    /// Check that `name` is a per-instance process manager, loaded or not
    /// (a runtime that loaded no plugin reads its component's exports).
    fn check_stateful(&self, name: &str) -> Result<(), Error> {
        if self.pipeline.listener_names().iter().any(|n| n == name) {
            return match self.pipeline.is_stateful(name) {
                true => Ok(()),
                false => Err(PluginError::Stateless { name: name.to_owned() }.into()),
            };
        }
        let plugins = self.plugins()?;
        match plugins.iter().find(|p| p.name == name) {
            Some(p) if p.kind == PluginKind::ProcessManager => {
                let component = self.pipeline.store().read(|tx| tx.component(&p.hash))?;
                match component {
                    Some(bytes) if !plugin::exports_instances(&bytes) => {
                        Err(PluginError::Stateless { name: name.to_owned() }.into())
                    }
                    _ => Ok(()),
                }
            }
            Some(_) => Err(PluginError::Stateless { name: name.to_owned() }.into()),
            None => Err(PluginError::UnknownListener {
                name: name.to_owned(),
                known: crate::text::quoted_list(
                    plugins
                        .iter()
                        .filter(|p| p.kind != PluginKind::Aggregate)
                        .map(|p| p.name.as_str()),
                ),
            }
            .into()),
        }
    }

    /// Up to `limit` instances of the per-instance process manager `name`
    /// with ids after `after`, in id order. Works on a runtime that loaded
    /// no plugin.
    ///
    /// # Errors
    ///
    /// No process manager has this name, or it has no instances; a storage
    /// error.
    pub fn instances(&self, name: &str, after: Option<&str>, limit: usize) -> Result<Vec<InstanceSummary>, Error> {
        self.check_stateful(name)?;
        let found = self.pipeline.store().read(|tx| {
            let mut found = Vec::new();
            for (id, record) in tx.instances(name, after, limit)? {
                let timers = tx.timers_of(name, Some(&id))?.len() as u64;
                found.push(InstanceSummary {
                    state_bytes: record.state.as_ref().map_or(0, |s| s.len() as u64),
                    last_position: record.last_position,
                    timers,
                    id,
                });
            }
            Ok::<_, StoreError>(found)
        })?;
        Ok(found)
    }

    /// Instance `id` of the per-instance process manager `name` and its
    /// pending timers (`None`: no such instance). Works on a runtime that
    /// loaded no plugin.
    ///
    /// # Errors
    ///
    /// As [`Runtime::instances`].
    pub fn instance(&self, name: &str, id: &str) -> Result<Option<(InstanceRecord, Vec<Timer>)>, Error> {
        self.check_stateful(name)?;
        let found = self.pipeline.store().read(|tx| {
            let Some(record) = tx.instance(name, id)? else {
                return Ok::<_, StoreError>(None);
            };
            Ok(Some((record, tx.timers_of(name, Some(id))?)))
        })?;
        Ok(found)
    }

    /// Up to `limit` pending timers of every plugin, in due order, after
    /// `after`; and how many are pending in all.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn timers(&self, after: Option<&Timer>, limit: usize) -> Result<(Vec<Timer>, u64), Error> {
        let found = self
            .pipeline
            .store()
            .read(|tx| Ok::<_, StoreError>((tx.due_timers(u64::MAX, after, limit)?, tx.pending_timers()?)))?;
        Ok(found)
    }

    /// Up to `limit` effects in the outbox with keys after `after` (only
    /// parked ones, with `parked = Some(true)`; only those not parked, with
    /// `Some(false)`), and how many are in it in all.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn effects(
        &self,
        after: Option<&str>,
        limit: usize,
        parked: Option<bool>,
    ) -> Result<(Vec<Effect>, u64), Error> {
        let found = self.pipeline.store().read(|tx| {
            let mut found = Vec::new();
            let mut after = after.map(str::to_owned);
            // Read on past the effects the filter leaves out.
            while found.len() < limit {
                let page = tx.effects(after.as_deref(), limit.max(64))?;
                let Some(last) = page.last() else { break };
                after = Some(last.key.clone());
                found.extend(
                    page.into_iter()
                        .filter(|e| parked.is_none_or(|p| p == e.parked.is_some())),
                );
            }
            found.truncate(limit);
            Ok::<_, StoreError>((found, tx.effect_count()?))
        })?;
        Ok(found)
    }

    /// Stop plugin `name` by hand (e.g. while it misbehaves): it gets no
    /// events until `plugin start`, which resumes it from its checkpoint.
    ///
    /// # Errors
    ///
    /// No listener has this name (aggregates cannot be stopped); a storage
    /// error.
    pub fn stop_plugin(&mut self, name: &str, by: &str) -> Result<(), Error> {
        if !self.pipeline.listener_stats().iter().any(|l| l.name == name) {
            return Err(PluginError::UnknownListener {
                name: name.to_owned(),
                known: crate::text::quoted_list(self.pipeline.listener_stats().iter().map(|l| l.name.as_str())),
            }
            .into());
        }
        self.pipeline.stop_listener(name, &format!("stopped by {by}"))
    }

    /// Unregister plugin `name`, broken or not: it is no longer loaded or
    /// called; its versions stay, so adding it again (or a rollback after
    /// adding) brings a build back. Aggregates stay: the log holds their
    /// events.
    ///
    /// # Errors
    ///
    /// No plugin has this name; it is an aggregate; a storage error.
    pub fn remove_plugin(&mut self, name: &str) -> Result<PluginRecord, Error> {
        let record = self
            .plugins()?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| PluginError::UnknownPlugin { name: name.to_owned() })?;
        if record.kind == PluginKind::Aggregate {
            return Err(PluginError::InvalidAggregate {
                plugin: name.to_owned(),
                message: "an aggregate cannot be removed: the log holds its events and replays need it".into(),
            }
            .into());
        }
        if self.pipeline.listener_names().iter().any(|n| n == name) {
            self.pipeline.remove_listener(name)?;
        }
        self.pipeline.store().write(|tx| tx.remove_plugin(name))?;
        Ok(record)
    }

    /// Every version plugin `name` has had, oldest first, and the active one.
    ///
    /// # Errors
    ///
    /// No plugin has this name; a storage error.
    pub fn versions(&self, name: &str) -> Result<(Vec<PluginVersion>, u64), Error> {
        let (versions, active) = self.pipeline.store().read(|tx| tx.plugin_versions(name))?;
        match active {
            Some(active) if !versions.is_empty() => Ok((versions, active)),
            _ => Err(PluginError::UnknownPlugin { name: name.to_owned() }.into()),
        }
    }

    /// The active version of plugin `name`, if it has one.
    pub fn active_version(&self, name: &str) -> Option<PluginVersion> {
        let (versions, active) = self.versions(name).ok()?;
        versions.into_iter().find(|v| v.version == active)
    }

    /// Go back one version of plugin `name`: the newest version older than
    /// the active one is registered again from its stored component (no
    /// compile when its artifact is cached) and becomes active.
    ///
    /// # Errors
    ///
    /// No plugin has this name, or no older version; the old version no
    /// longer validates; a storage error.
    pub fn rollback(&mut self, name: &str, swap: &Swap) -> Result<PluginVersion, Error> {
        let (versions, active) = self.versions(name)?;
        let target = versions
            .iter()
            .rev()
            .find(|v| v.version < active)
            .cloned()
            .ok_or_else(|| PluginError::NoOlderVersion {
                name: name.to_owned(),
                active,
            })?;
        // The secrets in use stay: a rollback must not bring back a rotated one.
        let mut manifest = target.manifest.clone();
        if let Some(current) = versions.iter().find(|v| v.version == active) {
            manifest.secrets = current.manifest.secrets.clone();
        }
        let mut record = PluginRecord {
            name: target.name.clone(),
            kind: target.kind,
            hash: target.hash.clone(),
            order: 0,
            source: target.source.clone(),
            manifest,
            exports: None,
        };
        let component = self.stored_component(&record)?;
        let built = self.build(name, &component, &record.manifest)?;
        let exports = built.exports();
        // Its grants were accepted when it was deployed; the change is recorded.
        let change = self.grant_change(name, &record.manifest, &exports, &swap.by, true)?;
        let (_, _, first) = self.register(built)?;
        record.exports = Some(exports);
        self.pipeline.store().write(|tx| {
            if let Some(checkpoint) = first {
                tx.set_checkpoint(name, checkpoint)?;
            }
            if let Some(change) = &change {
                crate::pipeline::record_grant_change(tx, change)?;
            }
            let order = existing_order(tx, name)?;
            tx.put_plugin(&PluginRecord {
                order,
                ..record.clone()
            })?;
            tx.set_active_version(name, target.version)
        })?;
        self.apply_state(&record, swap.state)?;
        Ok(target)
    }

    /// After a swap: refresh or reset a stateful process manager's state.
    fn apply_state(&mut self, record: &PluginRecord, state: SwapState) -> Result<(), Error> {
        let stateful = self.pipeline.is_stateful(&record.name);
        match state {
            SwapState::Carry => {}
            SwapState::Refresh if stateful => {
                self.pipeline.refresh(&record.name, None, &mut |_, _| {})?;
            }
            SwapState::Reset if stateful => self.pipeline.reset_state(&record.name)?,
            SwapState::Refresh | SwapState::Reset => {}
        }
        Ok(())
    }

    /// The sandbox, to compile components on other threads.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// Classify `component` and instantiate it, refusing a name a plugin of
    /// another kind has; nothing is registered yet.
    fn build(&self, name: &str, component: &Component, manifest: &Manifest) -> Result<Built, Error> {
        let env = PluginEnv {
            read_models: Arc::new(self.pipeline.read_models().clone()),
            manifest: manifest.clone(),
            aggregates: self.pipeline.aggregates().names(),
        };
        match plugin::inspect(&self.sandbox, name, component)? {
            Shape::Aggregate => {
                let mut aggregate = WasmAggregate::new(self.sandbox.clone(), name, component, &env)?;
                // Named by its file or manifest until `describe` names it.
                let description = crate::aggregate::Aggregate::describe(&mut aggregate).map_err(|e| {
                    PluginError::InvalidAggregate {
                        plugin: name.to_owned(),
                        message: format!("`describe` failed: {e:#}"),
                    }
                })?;
                self.check_kind(&description.name, PluginKind::Aggregate)?;
                Ok(Built::Aggregate(description, Box::new(aggregate)))
            }
            shape => {
                let kind = match shape {
                    Shape::Projection { .. } => PluginKind::Projection,
                    _ => PluginKind::ProcessManager,
                };
                self.check_kind(name, kind)?;
                let listener = WasmListener::new(self.sandbox.clone(), name, component, shape, &env)?;
                self.pipeline.check_listener(&listener)?;
                Ok(Built::Listener(kind, Box::new(listener)))
            }
        }
    }

    /// Register what [`Runtime::build`] built with the pipeline. A replaced
    /// process manager keeps its instances (the caller refreshes or resets
    /// them next, as the swap says).
    fn register(&mut self, built: Built) -> Result<(String, PluginKind, Option<u64>), Error> {
        match built {
            Built::Aggregate(_, aggregate) => {
                let name = self.pipeline.register_aggregate(aggregate)?;
                Ok((name, PluginKind::Aggregate, None))
            }
            Built::Listener(kind, listener) => {
                let name = listener.name().to_owned();
                let first = self.pipeline.register_listener_deferred(listener)?;
                Ok((name, kind, first))
            }
        }
    }

    /// How deploying `manifest` with `exports` as plugin `name` changes what
    /// its active version (or, removed, its newest) may do (`None`: never
    /// deployed, or no change); a widening needs `accept`.
    fn grant_change(
        &self,
        name: &str,
        manifest: &Manifest,
        exports: &Exports,
        by: &str,
        accept: bool,
    ) -> Result<Option<GrantChange>, Error> {
        // A removed plugin keeps its versions: re-adding it is a redeploy.
        let (versions, active) = self.pipeline.store().read(|tx| tx.plugin_versions(name))?;
        let active = versions
            .into_iter()
            .rev()
            .find(|v| active.is_none_or(|a| a == v.version));
        let Some(active) = active else {
            return Ok(None);
        };
        let before = Reach::of(&active.manifest, active.exports.as_ref());
        let change = GrantChange::between(name, by, &before, &Reach::of(manifest, Some(exports)));
        match change {
            Some(change) if !accept && !change.widened.is_empty() => Err(PluginError::GrantsWidened {
                name: name.to_owned(),
                widened: change.widened,
            }
            .into()),
            change => Ok(change),
        }
    }

    /// A name keeps its kind: a process manager cannot replace a projection.
    fn check_kind(&self, name: &str, kind: PluginKind) -> Result<(), Error> {
        let existing = self.pipeline.store().read(|tx| tx.plugins())?;
        match existing.iter().find(|p| p.name == name) {
            Some(p) if p.kind != kind => Err(PluginError::KindConflict {
                name: name.to_owned(),
                existing: p.kind.to_string(),
                new: kind.to_string(),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// The compiled component of a stored plugin: the precompiled artifact
    /// when this engine can load it, else compiled again from its bytes.
    fn stored_component(&self, record: &PluginRecord) -> Result<Component, Error> {
        let key = self.sandbox.artifact_key(&record.hash);
        let (artifact, bytes) = self.pipeline.store().read(|tx| {
            // A damaged artifact is compiled again from the component
            // (and replaced); `verify` reports it.
            let artifact = match tx.artifact(&key) {
                Err(StoreError::Checksum { .. }) => None,
                other => other?,
            };
            Ok::<_, StoreError>((artifact, tx.component(&record.hash)?))
        })?;
        // SAFETY: artifacts are written only by `Component::serialize`
        // below, into the host's own file, keyed by engine compatibility,
        // and come back only if their checksum matches.
        if let Some(component) = artifact.and_then(|a| unsafe { self.sandbox.deserialize(&a) }.ok()) {
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
            let artifact = Packed::new(&artifact);
            self.pipeline.store().write(|tx| tx.put_artifact(&key, &artifact))?;
        }
        Ok(component)
    }
}

/// A registered plugin and where it is.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// The registration.
    #[serde(flatten)]
    pub record: PluginRecord,
    /// The active version.
    pub version: u64,
    /// Everything it receives and may do.
    pub reach: Reach,
    /// For projections and process managers.
    #[serde(flatten)]
    pub listener: Option<ListenerStatus>,
    /// Why the host stopped it (its state would not load or save, or the
    /// build no longer loads); `plugin start` resumes it once fixed.
    pub stopped_because: Option<String>,
}

/// Where a listener is.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The last position it has seen.
    pub checkpoint: u64,
    /// Events between its checkpoint and the log head.
    pub lag: u64,
    /// Stopped by its error policy.
    pub stopped: bool,
    /// Handler calls since the runtime opened (a server's whole life).
    pub calls: u64,
    /// Failed calls since the runtime opened.
    pub failures: u64,
    /// Events parked for it.
    pub parked: u64,
    /// What it holds in the store, against its quotas (its live
    /// instances, timers, effects, document bytes).
    #[serde(flatten)]
    pub usage: Usage,
    /// Memory of its sandbox instance, when this runtime has it loaded (a
    /// server does; a CLI command that runs no handler loads none).
    pub memory_bytes: Option<u64>,
}

/// The flow graph of the plugins in `statuses`, from what each version
/// recorded at deploy (an aggregate deployed before Cascade recorded its
/// commands and events shows none until its next deploy).
pub fn flow_graph(statuses: &[PluginStatus]) -> FlowGraph {
    let plugins: Vec<GraphPlugin> = statuses
        .iter()
        .map(|s| {
            let exports = s.record.exports.clone().unwrap_or_default();
            GraphPlugin {
                name: s.record.name.clone(),
                kind: s.record.kind,
                commands: exports.commands,
                emits: exports.emits,
                handles: exports.handles,
                dispatch: s.record.manifest.capabilities.dispatch.clone(),
            }
        })
        .collect();
    FlowGraph::of(&plugins)
}

/// What a listener holds in the store, each bounded by a quota of its
/// manifest's `[limits]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Live instances (process managers; `None` for a projection).
    pub instances: Option<u64>,
    /// Bytes their states take as stored.
    pub state_bytes: u64,
    /// Pending timers.
    pub timers: u64,
    /// Effects in the outbox, parked ones included.
    pub effects: u64,
    /// Bytes (ids and bodies) of the documents of the collections it writes.
    pub read_model_bytes: u64,
}

impl Usage {
    /// What the listener of `record` holds, read in `tx`.
    fn of(tx: &(impl UnitOfWork + ?Sized), record: &PluginRecord) -> Result<Usage, StoreError> {
        let mut read_model_bytes = 0;
        for collection in record.exports.iter().flat_map(|e| &e.writes) {
            read_model_bytes += tx.rm_bytes(collection)?;
        }
        Ok(Usage {
            instances: (record.kind == PluginKind::ProcessManager)
                .then(|| tx.instance_count(&record.name))
                .transpose()?,
            state_bytes: tx.state_bytes(&record.name)?,
            timers: tx.timer_count(&record.name)?,
            effects: tx.effect_count_of(&record.name)?,
            read_model_bytes,
        })
    }
}

/// One instance of a per-instance process manager, as listed.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSummary {
    /// The instance id.
    pub id: String,
    /// Bytes of its state.
    pub state_bytes: u64,
    /// Its pending timers.
    pub timers: u64,
    /// Position of the last event that changed it.
    pub last_position: u64,
}

/// A component compiled (off the writer thread, if you like) and ready to
/// [`Runtime::install`].
pub struct Compiled {
    name: String,
    source: String,
    /// The component as stored.
    packed: Packed,
    hash: String,
    component: Component,
    /// The precompiled artifact, serialized and compressed here so that a
    /// hot swap does not spend the writer's time on it.
    artifact: Packed,
    manifest: Manifest,
    start_from: StartFrom,
}

impl Compiled {
    /// Compile `bytes` as plugin `name` (a process manager's name; an
    /// aggregate is named by its stream type). `source` says where the bytes
    /// came from, for messages and `plugin list`.
    ///
    /// # Errors
    ///
    /// The bytes are not a WebAssembly component.
    pub fn new(
        sandbox: &Sandbox,
        name: &str,
        source: &str,
        bytes: Vec<u8>,
        manifest: Manifest,
    ) -> Result<Compiled, Error> {
        // Refused imports cost no compile.
        plugin::check_imports(name, source, &bytes)?;
        let component = sandbox.compile(&bytes).map_err(|e| PluginError::NotAComponent {
            file: source.to_owned(),
            // wasmtime's parse errors span lines (byte dumps).
            message: crate::text::one_line(&format!("{e:#}")),
        })?;
        let artifact = component.serialize().map_err(|e| PluginError::Instantiate {
            plugin: name.to_owned(),
            message: format!("cannot precompile: {e:#}"),
        })?;
        Ok(Compiled {
            name: name.to_owned(),
            source: source.to_owned(),
            hash: crate::records::content_hash(&bytes),
            packed: Packed::new(&bytes),
            component,
            artifact: Packed::new(&artifact),
            manifest,
            start_from: StartFrom::Now,
        })
    }

    /// Where the plugin starts if it is a process manager new to the data
    /// directory (see [`StartFrom`]).
    pub fn starting_from(mut self, start_from: StartFrom) -> Self {
        self.start_from = start_from;
        self
    }

    /// Compile the component in `file`, with the manifest beside it
    /// (`welcome.wasm` → `welcome.toml`; the defaults without one), named
    /// after the file.
    ///
    /// # Errors
    ///
    /// The file cannot be read, the manifest does not parse, the bytes are
    /// not a component.
    pub fn from_file(sandbox: &Sandbox, file: &Path) -> Result<Compiled, Error> {
        let bytes = std::fs::read(file).map_err(|source| Error::Io {
            context: format!("cannot read plugin `{}`", file.display()),
            source,
        })?;
        let manifest_file = file.with_extension("toml");
        let (manifest, placement) = match std::fs::read_to_string(&manifest_file) {
            Ok(text) => Manifest::parse_with_placement(&text).map_err(|message| PluginError::InvalidManifest {
                file: manifest_file.display().to_string(),
                message,
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(source) => {
                return Err(Error::Io {
                    context: format!("cannot read manifest `{}`", manifest_file.display()),
                    source,
                });
            }
        };
        let source = file.display().to_string();
        let name = placement.name.unwrap_or_else(|| plugin::name_from_path(file));
        Ok(Compiled::new(sandbox, &name, &source, bytes, manifest)?.starting_from(placement.start_from))
    }

    /// The plugin's content hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The name it will be registered under (an aggregate's is its stream
    /// type, known only once it is inspected).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// How a deploy treats a stateful process manager's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapState {
    /// The old version's state goes into the new version's `load-state`.
    #[default]
    Carry,
    /// The new version replays its history with `refreshing = true`.
    Refresh,
    /// The new version starts from its initial state.
    Reset,
}

impl std::str::FromStr for SwapState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "carry" => Ok(SwapState::Carry),
            "refresh" => Ok(SwapState::Refresh),
            "reset" => Ok(SwapState::Reset),
            other => Err(format!("state `{other}` is not one of carry, refresh, reset")),
        }
    }
}

/// Who deploys, and what happens to the state.
#[derive(Clone, Debug)]
pub struct Swap {
    /// Recorded with the version.
    pub by: String,
    /// See [`SwapState`].
    pub state: SwapState,
    /// Grants, configuration and secrets the operator adds to a deployed
    /// manifest (not used by a rollback, which deploys a stored version).
    pub additions: ManifestAdditions,
    /// The operator accepts a redeploy that widens what the plugin may do
    /// (`--accept-grants`); without it such a redeploy is refused.
    pub accept_grants: bool,
}

impl Default for Swap {
    fn default() -> Self {
        Swap {
            by: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            state: SwapState::Carry,
            additions: ManifestAdditions::default(),
            accept_grants: false,
        }
    }
}

impl Swap {
    /// A deploy by the embedding program itself, the operator: a widening
    /// is accepted (and recorded).
    fn by_the_program() -> Swap {
        Swap {
            accept_grants: true,
            ..Swap::default()
        }
    }
}

/// A plugin instantiated and checked by [`Runtime::build`], not yet registered.
enum Built {
    /// An aggregate, with what `describe` said (its stream type first).
    Aggregate(crate::aggregate::AggregateDescription, Box<WasmAggregate>),
    Listener(PluginKind, Box<WasmListener>),
}

impl Built {
    fn name(&self) -> &str {
        match self {
            Built::Aggregate(description, _) => &description.name,
            Built::Listener(_, listener) => listener.name(),
        }
    }

    /// What its component exports: handlers, and the collections it writes.
    fn exports(&self) -> Exports {
        match self {
            Built::Aggregate(description, _) => Exports {
                commands: description.commands.clone(),
                emits: description.events.iter().map(|e| e.name.clone()).collect(),
                ..Exports::default()
            },
            Built::Listener(_, listener) => Exports {
                handles: listener.handlers().iter().map(|h| h.export_name()).collect(),
                writes: listener
                    .collections()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.name.clone())
                    .collect(),
                ..Exports::default()
            },
        }
    }
}

/// The order of an existing plugin with this name, or the next free one.
fn existing_order(tx: &(impl UnitOfWork + ?Sized), name: &str) -> Result<u64, StoreError> {
    let plugins = tx.plugins()?;
    Ok(match plugins.iter().find(|p| p.name == name) {
        Some(existing) => existing.order,
        None => plugins.iter().map(|p| p.order + 1).max().unwrap_or(0),
    })
}

/// The file in a data directory that names the server holding it.
pub const SERVER_FILE: &str = "server.json";

/// What `server.json` holds.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// Where it listens, e.g. `127.0.0.1:7878`.
    pub address: std::net::SocketAddr,
    /// Its process id.
    pub pid: u32,
    /// The token file clients must read, when one is required.
    pub token_file: Option<PathBuf>,
}

impl ServerInfo {
    /// What `dir`'s `server.json` says, if it holds one that parses.
    pub fn read(dir: &Path) -> Option<ServerInfo> {
        let text = std::fs::read(dir.join(SERVER_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// What holds a busy data directory, as far as it says.
fn holder(dir: &Path) -> String {
    match ServerInfo::read(dir) {
        Some(info) => format!("`cascade serve` (pid {}) on http://{}", info.pid, info.address),
        None => "another cascade process".to_owned(),
    }
}

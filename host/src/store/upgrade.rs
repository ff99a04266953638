//! Upgrades of data files written by older schemas, run once in the
//! transaction that first opens such a file for writing.

use redb::{ReadableTable, TableDefinition, TableHandle};

use serde::Deserialize;

use super::registry::{StoredPlugin, StoredVersion};
use super::{
    EFFECTS, EVENTS, HEAD, PLUGIN_VERSIONS, PLUGINS, PM_STATES_4, STREAMS, StreamHead, Tx, decode, encode_event,
    encode_head, lazy, sealed,
};
use crate::error::StoreError;
use crate::event::Event;
use crate::manifest::{Capabilities, LimitOverrides, Manifest, OnError};

/// `[limits]` as schemas 4 and 5 stored them (postcard): without `max-instances`.
#[derive(Deserialize)]
struct LimitOverrides5 {
    time_budget_ms: Option<u64>,
    memory_mib: Option<usize>,
    max_dispatches: Option<usize>,
    cascade_budget: Option<usize>,
}

impl From<LimitOverrides5> for LimitOverrides {
    fn from(old: LimitOverrides5) -> LimitOverrides {
        LimitOverrides {
            time_budget_ms: old.time_budget_ms,
            memory_mib: old.memory_mib,
            max_dispatches: old.max_dispatches,
            cascade_budget: old.cascade_budget,
            ..LimitOverrides::default()
        }
    }
}
use crate::records::{PluginKind, PluginRecord, PluginVersion};
use crate::store::traits::{Progress, Registry};

/// Schema 2's stream heads, stream index and checkpoints, each a table.
const STREAMS_2: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("streams");
const STREAM_EVENTS_2: TableDefinition<(&str, &str, u64), u64> = TableDefinition::new("stream_events");
const CHECKPOINTS_2: TableDefinition<&str, u64> = TableDefinition::new("checkpoints");

impl Tx<'_> {
    /// Upgrade a schema-1 file: seal every event with its checksum (once, when the file is first opened by this version).
    pub(super) fn seal_unsealed_records(&mut self) -> Result<(), StoreError> {
        let mut events = Vec::new();
        for entry in self.events.read()?.iter()? {
            let (position, bytes) = entry?;
            events.push((position.value(), bytes.value().to_vec()));
        }
        for (position, bytes) in events {
            let event: Event = decode(EVENTS.name(), &bytes)?;
            self.events.write()?.insert(position, encode_event(&event).as_slice())?;
        }
        Ok(())
    }

    /// Upgrade a schema-1, -2 or -3 file: seal every stream head and
    /// precompiled artifact with its checksum.
    pub(super) fn seal_heads_and_artifacts(&mut self) -> Result<(), StoreError> {
        let mut heads = Vec::new();
        for entry in self.streams.read()?.iter()? {
            let (key, bytes) = entry?;
            let (stream_type, stream_id, version) = key.value();
            if version == HEAD {
                heads.push((stream_type.to_owned(), stream_id.to_owned(), bytes.value().to_vec()));
            }
        }
        for (stream_type, stream_id, bytes) in heads {
            let head: StreamHead = decode(STREAMS.name(), &bytes)?;
            let sealed = encode_head(&stream_type, &stream_id, &head);
            self.streams
                .write()?
                .insert((stream_type.as_str(), stream_id.as_str(), HEAD), sealed.as_slice())?;
        }
        let mut artifacts = Vec::new();
        for entry in self.artifacts.read()?.iter()? {
            let (key, bytes) = entry?;
            artifacts.push((key.value().to_owned(), bytes.value().to_vec()));
        }
        for (key, bytes) in artifacts {
            let sealed = sealed::seal(key.as_bytes(), bytes);
            self.artifacts.write()?.insert(key.as_str(), sealed.as_slice())?;
        }
        Ok(())
    }

    /// Upgrade a schema-1 or -2 file: move stream heads and the stream
    /// index into the one stream table, and checkpoints into `meta`.
    pub(super) fn merge_stream_tables(&mut self) -> Result<(), StoreError> {
        let lazy::Txn::Write(txn) = self.txn else {
            return Err(StoreError::ReadOnly);
        };
        let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
        let has = |name: &str| names.iter().any(|n| n == name);
        if has(STREAMS_2.name()) {
            let old = txn.open_table(STREAMS_2)?;
            for entry in old.iter()? {
                let (key, head) = entry?;
                let (stream_type, stream_id) = key.value();
                self.streams
                    .write()?
                    .insert((stream_type, stream_id, HEAD), head.value())?;
            }
            drop(old);
            txn.delete_table(STREAMS_2)?;
        }
        if has(STREAM_EVENTS_2.name()) {
            let old = txn.open_table(STREAM_EVENTS_2)?;
            for entry in old.iter()? {
                let (key, position) = entry?;
                let position = position.value().to_le_bytes();
                self.streams.write()?.insert(key.value(), position.as_slice())?;
            }
            drop(old);
            txn.delete_table(STREAM_EVENTS_2)?;
        }
        if has(CHECKPOINTS_2.name()) {
            let old = txn.open_table(CHECKPOINTS_2)?;
            for entry in old.iter()? {
                let (name, checkpoint) = entry?;
                self.set_checkpoint(name.value(), checkpoint.value())?;
            }
            drop(old);
            txn.delete_table(CHECKPOINTS_2)?;
        }
        Ok(())
    }

    /// Upgrade a schema-1 to -4 file: drop the whole-plugin state blobs
    /// (state is per instance now, rebuilt from the log by `pm refresh`),
    /// and give every stored manifest an empty `[config]`.
    pub(super) fn per_instance_state(&mut self) -> Result<(), StoreError> {
        let lazy::Txn::Write(txn) = self.txn else {
            return Err(StoreError::ReadOnly);
        };
        if txn.list_tables()?.any(|t| t.name() == PM_STATES_4.name()) {
            txn.delete_table(PM_STATES_4)?;
        }
        let mut plugins = Vec::new();
        for entry in self.plugins.read()?.iter()? {
            let (name, bytes) = entry?;
            let old: PluginRecord4 = decode(PLUGINS.name(), bytes.value())?;
            plugins.push((name.value().to_owned(), old.into()));
        }
        self.put_upgraded(plugins, Vec::new())?;
        let mut versions = Vec::new();
        for entry in self.plugin_versions.read()?.iter()? {
            let (key, bytes) = entry?;
            let (name, version) = key.value();
            let old: PluginVersion4 = decode(PLUGIN_VERSIONS.name(), bytes.value())?;
            versions.push((name.to_owned(), version, old.into()));
        }
        self.put_upgraded(Vec::new(), versions)
    }

    /// Upgrade a schema-5 file: store manifests as JSON text (with an empty
    /// `http` grant list and the default `[effects]`).
    pub(super) fn manifests_as_json(&mut self) -> Result<(), StoreError> {
        let mut plugins = Vec::new();
        for entry in self.plugins.read()?.iter()? {
            let (name, bytes) = entry?;
            let old: PluginRecord5 = decode(PLUGINS.name(), bytes.value())?;
            plugins.push((name.value().to_owned(), old.into()));
        }
        let mut versions = Vec::new();
        for entry in self.plugin_versions.read()?.iter()? {
            let (key, bytes) = entry?;
            let (name, version) = key.value();
            let old: PluginVersion5 = decode(PLUGIN_VERSIONS.name(), bytes.value())?;
            versions.push((name.to_owned(), version, old.into()));
        }
        self.put_upgraded(plugins, versions)
    }

    /// Upgrade a schema-1 to -7 file: count each plugin's state bytes,
    /// pending timers and effects, and each collection's document bytes, as
    /// the quotas and `plugin list` read them ([`super::counts`]).
    pub(super) fn count_what_quotas_bound(&mut self) -> Result<(), StoreError> {
        let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for entry in self.timer_due.read()?.iter()? {
            let (key, _) = entry?;
            let plugin = key.value().split('\0').next().unwrap_or_default();
            *counts.entry(super::counts::timers_key(plugin)).or_default() += 1;
        }
        for entry in self.instances.read()?.iter()? {
            let (key, stored) = entry?;
            let plugin = key.value().split('\0').next().unwrap_or_default();
            *counts.entry(super::counts::state_bytes_key(plugin)).or_default() += stored.value().len() as u64;
        }
        for entry in self.effects.read()?.iter()? {
            let (_, bytes) = entry?;
            let effect: crate::records::Effect = decode(EFFECTS.name(), bytes.value())?;
            *counts.entry(super::counts::effects_key(&effect.plugin)).or_default() += 1;
        }
        for entry in self.rm_docs.read()?.iter()? {
            let (key, doc) = entry?;
            let (collection, id) = key.value();
            let bytes = (id.len() + doc.value().len()) as u64;
            *counts.entry(super::counts::document_bytes_key(collection)).or_default() += bytes;
        }
        for (key, count) in counts {
            self.set_count(&key, count)?;
        }
        Ok(())
    }

    /// Upgrade a schema-1 to -6 file: queries of read models need a grant
    /// now, so every process manager and projection stored keeps the access
    /// it had as an explicit grant of every collection (`read = ["*"]`),
    /// shown by `plugin list`, narrowed by a redeploy.
    pub(super) fn grant_reads_held(&mut self) -> Result<(), StoreError> {
        let held = |manifest: &mut Manifest, kind: PluginKind| {
            if kind != PluginKind::Aggregate && manifest.capabilities.read.is_empty() {
                manifest.capabilities.read = vec!["*".to_owned()];
            }
        };
        let mut plugins = Vec::new();
        for mut record in Registry::plugins(self)? {
            held(&mut record.manifest, record.kind);
            plugins.push((record.name.clone(), record));
        }
        let mut versions = Vec::new();
        for entry in self.plugin_versions.read()?.iter()? {
            let (key, bytes) = entry?;
            let (name, version) = key.value();
            let mut record = StoredVersion::decode(bytes.value())?;
            held(&mut record.manifest, record.kind);
            versions.push((name.to_owned(), version, record));
        }
        self.put_upgraded(plugins, versions)
    }

    /// Write upgraded registry records in this schema's encoding.
    fn put_upgraded(
        &mut self,
        plugins: Vec<(String, PluginRecord)>,
        versions: Vec<(String, u64, PluginVersion)>,
    ) -> Result<(), StoreError> {
        for (name, record) in plugins {
            self.plugins
                .write()?
                .insert(name.as_str(), StoredPlugin::encode(&record).as_slice())?;
        }
        for (name, version, record) in versions {
            self.plugin_versions
                .write()?
                .insert((name.as_str(), version), StoredVersion::encode(&record).as_slice())?;
        }
        Ok(())
    }
}

/// Capabilities as schemas 4 and 5 stored them: without `http`.
#[derive(Deserialize)]
struct Capabilities5 {
    dispatch: Vec<String>,
}

/// A manifest as schema 4 stored it: without `config`.
#[derive(Deserialize)]
struct Manifest4 {
    capabilities: Capabilities5,
    limits: LimitOverrides5,
    on_error: OnError,
}

impl From<Manifest4> for Manifest {
    fn from(old: Manifest4) -> Manifest {
        Manifest5 {
            capabilities: old.capabilities,
            limits: old.limits,
            on_error: old.on_error,
            config: Default::default(),
        }
        .into()
    }
}

/// A manifest as schema 5 stored it (postcard): without `http` grants and `[effects]`.
#[derive(Deserialize)]
struct Manifest5 {
    capabilities: Capabilities5,
    limits: LimitOverrides5,
    on_error: OnError,
    config: std::collections::BTreeMap<String, String>,
}

impl From<Manifest5> for Manifest {
    fn from(old: Manifest5) -> Manifest {
        Manifest {
            capabilities: Capabilities {
                dispatch: old.capabilities.dispatch,
                ..Capabilities::default()
            },
            limits: old.limits.into(),
            on_error: old.on_error,
            config: old.config,
            ..Manifest::default()
        }
    }
}

/// Registry records as schema 5 stored them, with `M` their manifest's form.
#[derive(Deserialize)]
struct PluginRecord5<M = Manifest5> {
    name: String,
    kind: PluginKind,
    hash: String,
    order: u64,
    source: String,
    manifest: M,
}

impl<M: Into<Manifest>> From<PluginRecord5<M>> for PluginRecord {
    fn from(old: PluginRecord5<M>) -> PluginRecord {
        PluginRecord {
            name: old.name,
            kind: old.kind,
            hash: old.hash,
            order: old.order,
            source: old.source,
            manifest: old.manifest.into(),
            exports: None,
        }
    }
}

#[derive(Deserialize)]
struct PluginVersion5<M = Manifest5> {
    name: String,
    version: u64,
    kind: PluginKind,
    hash: String,
    source: String,
    manifest: M,
    deployed_at: u64,
    deployed_by: String,
}

impl<M: Into<Manifest>> From<PluginVersion5<M>> for PluginVersion {
    fn from(old: PluginVersion5<M>) -> PluginVersion {
        PluginVersion {
            name: old.name,
            version: old.version,
            kind: old.kind,
            hash: old.hash,
            source: old.source,
            manifest: old.manifest.into(),
            exports: None,
            deployed_at: old.deployed_at,
            deployed_by: old.deployed_by,
        }
    }
}

/// Schema 4's records: those of 5 with a manifest without `config`.
type PluginRecord4 = PluginRecord5<Manifest4>;
type PluginVersion4 = PluginVersion5<Manifest4>;

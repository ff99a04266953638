//! The plugin registry: plugin records, every version of each, and the
//! components and precompiled artifacts they point at (stored once per hash).

use redb::TableHandle;

use super::{ARTIFACTS, COMPONENTS, PLUGIN_VERSIONS, PLUGINS, Packed, Tx, decode, encode, packed};
use crate::error::StoreError;
use crate::records::{PluginRecord, PluginVersion};

impl<'t> Tx<'t> {
    /// Every registered plugin, in registration order.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    pub fn plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        let mut records = Vec::new();
        for entry in self.plugins.read()?.iter()? {
            records.push(decode::<PluginRecord>(PLUGINS.name(), entry?.1.value())?);
        }
        records.sort_by_key(|r| r.order);
        Ok(records)
    }

    /// Register or replace a plugin.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn put_plugin(&mut self, record: &PluginRecord) -> Result<(), StoreError> {
        self.plugins
            .write()?
            .insert(record.name.as_str(), encode(record).as_slice())?;
        Ok(())
    }

    /// Unregister plugin `name`: its registration, checkpoint, state and stop
    /// marks go; its versions, components and parked events stay.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn remove_plugin(&mut self, name: &str) -> Result<(), StoreError> {
        self.plugins.write()?.remove(name)?;
        self.plugin_active.write()?.remove(name)?;
        self.checkpoints.write()?.remove(name)?;
        self.pm_states.write()?.remove(name)?;
        self.stopped.write()?.remove(name)?;
        self.stop_reasons.write()?.remove(name)?;
        Ok(())
    }

    /// Component bytes by content hash.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = self.components.read()?.get(hash)?;
        stored.map(|v| packed::unpack(COMPONENTS.name(), v.value())).transpose()
    }

    /// Store component bytes under their content hash (once: the same
    /// build deployed again is not stored twice).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn put_component(&mut self, hash: &str, bytes: &Packed) -> Result<(), StoreError> {
        if self.components.read()?.get(hash)?.is_none() {
            self.components.write()?.insert(hash, bytes.as_bytes())?;
        }
        Ok(())
    }

    /// A precompiled artifact by key (content hash + engine compatibility).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn artifact(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = self.artifacts.read()?.get(key)?;
        stored.map(|v| packed::unpack(ARTIFACTS.name(), v.value())).transpose()
    }

    /// Store a precompiled artifact, keyed by its component's hash, a `-`,
    /// and the engine's compatibility.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn put_artifact(&mut self, key: &str, bytes: &Packed) -> Result<(), StoreError> {
        if self.artifacts.read()?.get(key)?.is_none() {
            self.artifacts.write()?.insert(key, bytes.as_bytes())?;
        }
        Ok(())
    }

    /// Keep the newest `keep` versions of plugin `name` (and the active
    /// one), forget older ones, and delete every component and artifact no
    /// kept version of any plugin refers to. Returns the versions forgotten.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn prune_versions(&mut self, name: &str, keep: usize) -> Result<Vec<u64>, StoreError> {
        let (versions, active) = self.plugin_versions(name)?;
        let forgotten: Vec<u64> = versions
            .iter()
            .rev()
            .skip(keep)
            .map(|v| v.version)
            .filter(|v| Some(*v) != active)
            .collect();
        for version in &forgotten {
            self.plugin_versions.write()?.remove((name, *version))?;
        }
        let mut referenced = std::collections::HashSet::new();
        for entry in self.plugin_versions.read()?.iter()? {
            let version: PluginVersion = decode(PLUGIN_VERSIONS.name(), entry?.1.value())?;
            referenced.insert(version.hash);
        }
        for record in self.plugins()? {
            referenced.insert(record.hash);
        }
        let mut unused = Vec::new();
        for entry in self.components.read()?.iter()? {
            let hash = entry?.0.value().to_owned();
            if !referenced.contains(&hash) {
                unused.push(hash);
            }
        }
        for hash in &unused {
            self.components.write()?.remove(hash.as_str())?;
        }
        let mut unused = Vec::new();
        for entry in self.artifacts.read()?.iter()? {
            let key = entry?.0.value().to_owned();
            let hash = key.split_once('-').map_or(key.as_str(), |(hash, _)| hash);
            if !referenced.contains(hash) {
                unused.push(key);
            }
        }
        for key in &unused {
            self.artifacts.write()?.remove(key.as_str())?;
        }
        Ok(forgotten)
    }

    /// Every version of plugin `name`, oldest first, and the active one.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    pub fn plugin_versions(&self, name: &str) -> Result<(Vec<PluginVersion>, Option<u64>), StoreError> {
        let mut versions = Vec::new();
        for entry in self.plugin_versions.read()?.range((name, 0)..=(name, u64::MAX))? {
            versions.push(decode(PLUGIN_VERSIONS.name(), entry?.1.value())?);
        }
        let active = self.plugin_active.read()?.get(name)?.map(|v| v.value());
        Ok((versions, active))
    }

    /// Record `version` of its plugin and make it the active one.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn put_plugin_version(&mut self, version: &PluginVersion) -> Result<(), StoreError> {
        let key = (version.name.as_str(), version.version);
        self.plugin_versions.write()?.insert(key, encode(version).as_slice())?;
        self.set_active_version(&version.name, version.version)
    }

    /// Make `version` the active version of plugin `name`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn set_active_version(&mut self, name: &str, version: u64) -> Result<(), StoreError> {
        self.plugin_active.write()?.insert(name, version)?;
        Ok(())
    }
}

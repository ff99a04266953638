//! The plugin registry: plugin records, every version of each, and the
//! components and precompiled artifacts they point at (stored once per hash).

use redb::TableHandle;

use super::traits::Registry;
use super::{
    ARTIFACTS, COMPONENTS, PLUGIN_VERSIONS, PLUGINS, Packed, Tx, artifact_hash, decode, encode, packed, sealed,
    to_forget,
};
use crate::error::StoreError;
use crate::records::{PluginRecord, PluginVersion};

impl Registry for Tx<'_> {
    fn plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        let mut records = Vec::new();
        for entry in self.plugins.read()?.iter()? {
            records.push(decode::<PluginRecord>(PLUGINS.name(), entry?.1.value())?);
        }
        records.sort_by_key(|r| r.order);
        Ok(records)
    }

    fn put_plugin(&mut self, record: &PluginRecord) -> Result<(), StoreError> {
        self.plugins
            .write()?
            .insert(record.name.as_str(), encode(record).as_slice())?;
        Ok(())
    }

    fn remove_plugin(&mut self, name: &str) -> Result<(), StoreError> {
        self.plugins.write()?.remove(name)?;
        self.plugin_active.write()?.remove(name)?;
        self.meta.write()?.remove(super::checkpoint_key(name).as_str())?;
        self.meta.write()?.remove(super::after_pending_key(name).as_str())?;
        super::traits::Instances::remove_instances(self, name)?;
        self.stopped.write()?.remove(name)?;
        self.stop_reasons.write()?.remove(name)?;
        Ok(())
    }

    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = self.components.read()?.get(hash)?;
        stored.map(|v| packed::unpack(COMPONENTS.name(), v.value())).transpose()
    }

    fn put_component(&mut self, hash: &str, bytes: &Packed) -> Result<(), StoreError> {
        if self.components.read()?.get(hash)?.is_none() {
            self.components.write()?.insert(hash, bytes.as_bytes())?;
        }
        Ok(())
    }

    fn artifact(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = self.artifacts.read()?.get(key)?;
        stored
            .map(|v| {
                // Native code: only ever run what was stored, unchanged.
                let what = || format!("artifact `{key}`");
                let body = sealed::unseal(ARTIFACTS.name(), what, key.as_bytes(), v.value())?;
                packed::unpack(ARTIFACTS.name(), body)
            })
            .transpose()
    }

    fn put_artifact(&mut self, key: &str, bytes: &Packed) -> Result<(), StoreError> {
        // A damaged one is replaced; an intact one is the same bytes.
        let intact = self
            .artifacts
            .read()?
            .get(key)?
            .is_some_and(|v| sealed::unseal(ARTIFACTS.name(), String::new, key.as_bytes(), v.value()).is_ok());
        if !intact {
            let sealed = sealed::seal(key.as_bytes(), bytes.as_bytes().to_vec());
            self.artifacts.write()?.insert(key, sealed.as_slice())?;
        }
        Ok(())
    }

    fn prune_versions(&mut self, name: &str, keep: usize) -> Result<Vec<u64>, StoreError> {
        let (versions, active) = self.plugin_versions(name)?;
        let forgotten = to_forget(&versions, active, keep);
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
            if !referenced.contains(artifact_hash(&key)) {
                unused.push(key);
            }
        }
        for key in &unused {
            self.artifacts.write()?.remove(key.as_str())?;
        }
        Ok(forgotten)
    }

    fn plugin_versions(&self, name: &str) -> Result<(Vec<PluginVersion>, Option<u64>), StoreError> {
        let mut versions = Vec::new();
        for entry in self.plugin_versions.read()?.range((name, 0)..=(name, u64::MAX))? {
            versions.push(decode(PLUGIN_VERSIONS.name(), entry?.1.value())?);
        }
        let active = self.plugin_active.read()?.get(name)?.map(|v| v.value());
        Ok((versions, active))
    }

    fn put_plugin_version(&mut self, version: &PluginVersion) -> Result<(), StoreError> {
        let key = (version.name.as_str(), version.version);
        self.plugin_versions.write()?.insert(key, encode(version).as_slice())?;
        self.set_active_version(&version.name, version.version)
    }

    fn set_active_version(&mut self, name: &str, version: u64) -> Result<(), StoreError> {
        self.plugin_active.write()?.insert(name, version)?;
        Ok(())
    }
}

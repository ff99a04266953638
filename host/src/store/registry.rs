//! The plugin registry: plugin records, every version of each, and the
//! components and precompiled artifacts they point at (stored once per hash).

use redb::TableHandle;

use super::traits::Registry;
use super::{
    ARTIFACTS, COMPONENTS, PLUGIN_VERSIONS, PLUGINS, Packed, Tx, artifact_hash, decode, encode, packed, sealed,
    to_forget,
};
use crate::error::StoreError;
use crate::manifest::Manifest;
use crate::records::{Exports, PluginKind, PluginRecord, PluginVersion};

/// A manifest as the registry stores it: JSON text of the manifest, its
/// secrets and the component's exports, so that a new key needs no upgrade
/// of the file.
fn manifest_text(manifest: &Manifest, exports: &Option<Exports>) -> String {
    serde_json::to_string(&(manifest, &manifest.secrets, exports)).expect("a manifest is JSON")
}

/// The text as schema 7 writes it, or as schema 6 did (without exports).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ManifestText {
    WithExports(Manifest, Secrets, Option<Exports>),
    Schema6(Manifest, Secrets),
}

type Secrets = std::collections::BTreeMap<String, String>;

fn manifest_of(table: &'static str, text: &str) -> Result<(Manifest, Option<Exports>), StoreError> {
    let stored: ManifestText = serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table,
        message: format!("a stored manifest does not read: {e}"),
    })?;
    let (mut manifest, secrets, exports) = match stored {
        ManifestText::WithExports(manifest, secrets, exports) => (manifest, secrets, exports),
        ManifestText::Schema6(manifest, secrets) => (manifest, secrets, None),
    };
    manifest.secrets = secrets;
    Ok((manifest, exports))
}

/// A [`PluginRecord`] as stored.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct StoredPlugin {
    name: String,
    kind: PluginKind,
    hash: String,
    order: u64,
    source: String,
    manifest: String,
}

impl StoredPlugin {
    pub(super) fn encode(record: &PluginRecord) -> Vec<u8> {
        encode(&StoredPlugin {
            name: record.name.clone(),
            kind: record.kind,
            hash: record.hash.clone(),
            order: record.order,
            source: record.source.clone(),
            manifest: manifest_text(&record.manifest, &record.exports),
        })
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<PluginRecord, StoreError> {
        let s: StoredPlugin = decode(PLUGINS.name(), bytes)?;
        let (manifest, exports) = manifest_of(PLUGINS.name(), &s.manifest)?;
        Ok(PluginRecord {
            manifest,
            exports,
            name: s.name,
            kind: s.kind,
            hash: s.hash,
            order: s.order,
            source: s.source,
        })
    }
}

/// A [`PluginVersion`] as stored.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct StoredVersion {
    name: String,
    version: u64,
    kind: PluginKind,
    hash: String,
    source: String,
    manifest: String,
    deployed_at: u64,
    deployed_by: String,
}

impl StoredVersion {
    pub(super) fn encode(v: &PluginVersion) -> Vec<u8> {
        encode(&StoredVersion {
            name: v.name.clone(),
            version: v.version,
            kind: v.kind,
            hash: v.hash.clone(),
            source: v.source.clone(),
            manifest: manifest_text(&v.manifest, &v.exports),
            deployed_at: v.deployed_at,
            deployed_by: v.deployed_by.clone(),
        })
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<PluginVersion, StoreError> {
        let s: StoredVersion = decode(PLUGIN_VERSIONS.name(), bytes)?;
        let (manifest, exports) = manifest_of(PLUGIN_VERSIONS.name(), &s.manifest)?;
        Ok(PluginVersion {
            manifest,
            exports,
            name: s.name,
            version: s.version,
            kind: s.kind,
            hash: s.hash,
            source: s.source,
            deployed_at: s.deployed_at,
            deployed_by: s.deployed_by,
        })
    }
}

impl Registry for Tx<'_> {
    fn plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        let mut records = Vec::new();
        for entry in self.plugins.read()?.iter()? {
            records.push(StoredPlugin::decode(entry?.1.value())?);
        }
        records.sort_by_key(|r| r.order);
        Ok(records)
    }

    fn put_plugin(&mut self, record: &PluginRecord) -> Result<(), StoreError> {
        self.plugins
            .write()?
            .insert(record.name.as_str(), StoredPlugin::encode(record).as_slice())?;
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
            let version = StoredVersion::decode(entry?.1.value())?;
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
            versions.push(StoredVersion::decode(entry?.1.value())?);
        }
        let active = self.plugin_active.read()?.get(name)?.map(|v| v.value());
        Ok((versions, active))
    }

    fn put_plugin_version(&mut self, version: &PluginVersion) -> Result<(), StoreError> {
        let key = (version.name.as_str(), version.version);
        self.plugin_versions
            .write()?
            .insert(key, StoredVersion::encode(version).as_slice())?;
        self.set_active_version(&version.name, version.version)
    }

    fn set_active_version(&mut self, name: &str, version: u64) -> Result<(), StoreError> {
        self.plugin_active.write()?.insert(name, version)?;
        Ok(())
    }
}

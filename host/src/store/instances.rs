//! Instances of per-instance process managers and their timers.
//!
//! Keys join their parts with `\0`: plugin names and timer names hold no
//! control characters, so the first `\0` ends the plugin and the last one
//! starts a timer's name, whatever an instance id holds. An instance is
//! sealed with its key; a timer is in two tables, by due time (what fires
//! next) and by name (what a cancel finds). Each plugin's numbers of
//! instances and timers are kept in `meta` ([`super::counts`]).

use redb::TableHandle;

use super::counts::{instances_key, state_bytes_key, timers_key};
use super::traits::Instances;
use super::{INSTANCES, Tx, decode, encode, sealed};
use crate::error::StoreError;
use crate::records::{InstanceRecord, Timer};

fn instance_key(plugin: &str, id: &str) -> String {
    format!("{plugin}\0{id}")
}

fn timer_key(plugin: &str, id: &str, name: &str) -> String {
    format!("{plugin}\0{id}\0{name}")
}

/// (plugin, instance, name) of a timer key.
fn split_timer_key(key: &str) -> Option<(&str, &str, &str)> {
    let (plugin, rest) = key.split_once('\0')?;
    let (id, name) = rest.rsplit_once('\0')?;
    Some((plugin, id, name))
}

/// The end (exclusive) of the keys that start with `prefix`, which ends in
/// `\0`: the same prefix ending in `\u{1}`, the next character.
fn prefix_end(prefix: &str) -> String {
    let stem = prefix.strip_suffix('\0').expect("prefixes end in \\0");
    format!("{stem}\u{1}")
}

impl Tx<'_> {
    fn decode_instance(key: &str, stored: &[u8]) -> Result<InstanceRecord, StoreError> {
        let what = || format!("instance `{}`", key.replace('\0', "/"));
        let body = sealed::unseal(INSTANCES.name(), what, key.as_bytes(), stored)?;
        decode(INSTANCES.name(), body)
    }

    /// Keys and due times of `plugin`'s timers (of instance `id` only, when
    /// given), read from the name table alone.
    fn timer_keys(&self, plugin: &str, id: Option<&str>) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = match id {
            Some(id) => timer_key(plugin, id, ""),
            None => instance_key(plugin, ""),
        };
        let end = prefix_end(&prefix);
        let mut keys = Vec::new();
        for entry in self.timer_due.read()?.range(prefix.as_str()..end.as_str())? {
            let (key, due) = entry?;
            let key = key.value();
            // A prefix of an instance id also matches a longer id: keep exact ones.
            if id.is_some_and(|id| split_timer_key(key).is_none_or(|(_, instance, _)| instance != id)) {
                continue;
            }
            keys.push((key.to_owned(), due.value()));
        }
        Ok(keys)
    }

    /// Delete `plugin`'s timer stored under `key`, due at `due`, from both tables.
    fn remove_timer_key(&mut self, plugin: &str, key: &str, due: u64) -> Result<(), StoreError> {
        self.timer_due.write()?.remove(key)?;
        self.timers.write()?.remove((due, key))?;
        self.add_count(&timers_key(plugin), -1)
    }

    fn timer_at(&self, key: &str, due: u64) -> Result<Option<Timer>, StoreError> {
        let Some((plugin, instance, name)) = split_timer_key(key) else {
            return Ok(None);
        };
        let payload = self.timers.read()?.get((due, key))?;
        Ok(payload.map(|p| Timer {
            plugin: plugin.to_owned(),
            instance: instance.to_owned(),
            name: name.to_owned(),
            due,
            payload: String::from_utf8_lossy(p.value()).into_owned(),
        }))
    }
}

impl Instances for Tx<'_> {
    fn instance(&self, plugin: &str, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let key = instance_key(plugin, id);
        let stored = self.instances.read()?.get(key.as_str())?;
        stored.map(|v| Tx::decode_instance(&key, v.value())).transpose()
    }

    fn put_instance(&mut self, plugin: &str, id: &str, record: &InstanceRecord) -> Result<(), StoreError> {
        let key = instance_key(plugin, id);
        let sealed = sealed::seal(key.as_bytes(), encode(record));
        let old = self
            .instances
            .write()?
            .insert(key.as_str(), sealed.as_slice())?
            .map(|old| old.value().len());
        if old.is_none() {
            self.add_count(&instances_key(plugin), 1)?;
        }
        let by = sealed.len() as i64 - old.unwrap_or(0) as i64;
        self.add_count(&state_bytes_key(plugin), by)
    }

    fn remove_instance(&mut self, plugin: &str, id: &str) -> Result<(), StoreError> {
        let removed = self
            .instances
            .write()?
            .remove(instance_key(plugin, id).as_str())?
            .map(|old| old.value().len());
        if let Some(bytes) = removed {
            self.add_count(&instances_key(plugin), -1)?;
            self.add_count(&state_bytes_key(plugin), -(bytes as i64))?;
        }
        for (key, due) in self.timer_keys(plugin, Some(id))? {
            self.remove_timer_key(plugin, &key, due)?;
        }
        Ok(())
    }

    fn instances(
        &self,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        let prefix = instance_key(plugin, "");
        let start = instance_key(plugin, after.unwrap_or_default());
        let end = prefix_end(&prefix);
        let mut found = Vec::new();
        for entry in self.instances.read()?.range(start.as_str()..end.as_str())? {
            let (key, stored) = entry?;
            let key = key.value();
            let id = &key[prefix.len()..];
            if after == Some(id) {
                continue;
            }
            if found.len() == limit {
                break;
            }
            found.push((id.to_owned(), Tx::decode_instance(key, stored.value())?));
        }
        Ok(found)
    }

    fn instance_count(&self, plugin: &str) -> Result<u64, StoreError> {
        self.count(&instances_key(plugin))
    }

    fn timer_count(&self, plugin: &str) -> Result<u64, StoreError> {
        self.count(&timers_key(plugin))
    }

    fn state_bytes(&self, plugin: &str) -> Result<u64, StoreError> {
        self.count(&state_bytes_key(plugin))
    }

    fn remove_instances(&mut self, plugin: &str) -> Result<(), StoreError> {
        let prefix = instance_key(plugin, "");
        let end = prefix_end(&prefix);
        let keys: Vec<String> = self
            .instances
            .read()?
            .range(prefix.as_str()..end.as_str())?
            .map(|entry| entry.map(|(key, _)| key.value().to_owned()))
            .collect::<Result<_, _>>()?;
        for key in keys {
            self.instances.write()?.remove(key.as_str())?;
        }
        self.set_count(&instances_key(plugin), 0)?;
        self.set_count(&state_bytes_key(plugin), 0)?;
        for (key, due) in self.timer_keys(plugin, None)? {
            self.remove_timer_key(plugin, &key, due)?;
        }
        Ok(())
    }

    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        self.remove_timer(&timer.plugin, &timer.instance, &timer.name)?;
        let key = timer_key(&timer.plugin, &timer.instance, &timer.name);
        self.timer_due.write()?.insert(key.as_str(), timer.due)?;
        self.timers
            .write()?
            .insert((timer.due, key.as_str()), timer.payload.as_bytes())?;
        self.add_count(&timers_key(&timer.plugin), 1)
    }

    fn remove_timer(&mut self, plugin: &str, id: &str, name: &str) -> Result<Option<Timer>, StoreError> {
        let key = timer_key(plugin, id, name);
        let Some(due) = self.timer_due.write()?.remove(key.as_str())?.map(|d| d.value()) else {
            return Ok(None);
        };
        self.add_count(&timers_key(plugin), -1)?;
        // The removed row is the payload: no second lookup.
        let payload = self.timers.write()?.remove((due, key.as_str()))?;
        let payload = payload.map(|p| String::from_utf8_lossy(p.value()).into_owned());
        Ok(payload.map(|payload| Timer {
            plugin: plugin.to_owned(),
            instance: id.to_owned(),
            name: name.to_owned(),
            due,
            payload,
        }))
    }

    fn timers_of(&self, plugin: &str, id: Option<&str>) -> Result<Vec<Timer>, StoreError> {
        let mut found = Vec::new();
        for (key, due) in self.timer_keys(plugin, id)? {
            found.extend(self.timer_at(&key, due)?);
        }
        Ok(found)
    }

    fn due_timers(&self, through: u64, after: Option<&Timer>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let start_key = after.map(|t| timer_key(&t.plugin, &t.instance, &t.name));
        let start = (after.map_or(0, |t| t.due), start_key.as_deref().unwrap_or(""));
        let mut found = Vec::new();
        for entry in self.timers.read()?.range(start..)? {
            let (key, payload) = entry?;
            let (due, key) = key.value();
            if due > through || found.len() == limit {
                break;
            }
            if Some(key) == start_key.as_deref() && Some(due) == after.map(|t| t.due) {
                continue;
            }
            let Some((plugin, instance, name)) = split_timer_key(key) else {
                continue;
            };
            found.push(Timer {
                plugin: plugin.to_owned(),
                instance: instance.to_owned(),
                name: name.to_owned(),
                due,
                payload: String::from_utf8_lossy(payload.value()).into_owned(),
            });
        }
        Ok(found)
    }

    fn pending_timers(&self) -> Result<u64, StoreError> {
        Ok(self.timer_due.read()?.len()?)
    }
}

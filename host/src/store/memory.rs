//! A store in memory: the reference the conformance suite holds the redb
//! store to, and the shape a new store takes. A write transaction works on a
//! copy of the tables and puts it in place on commit, so `Err` leaves
//! nothing behind; a read view shares the last commit and never waits for
//! the writer. Every write transaction copies every table: for tests and
//! small data, not production.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::traits::{Backend, Documents, EventLog, Instances, Outbox, Progress, Registry, WorkQueue};
use super::{Packed, StreamHead, Verification, artifact_hash, packed, stamped, to_forget};
use crate::error::StoreError;
use crate::event::{Envelope, Event, NewEvent};
use crate::records::{
    CascadeRecord, Effect, InstanceRecord, Parked, PluginRecord, PluginVersion, QueuedCommand, Skipped, Timer,
};

/// Every table, as ordered maps.
#[derive(Clone, Default)]
pub struct MemoryTx {
    events: BTreeMap<u64, Event>,
    streams: BTreeMap<(String, String), StreamHead>,
    next_command: Option<u64>,
    next_parked: Option<u64>,
    pipeline_position: u64,
    queue: BTreeMap<u64, QueuedCommand>,
    cascades: BTreeMap<String, CascadeRecord>,
    idempotency: BTreeMap<String, String>,
    budgets: BTreeMap<String, u64>,
    parked: BTreeMap<u64, Parked>,
    skipped: BTreeMap<u64, Skipped>,
    checkpoints: BTreeMap<String, u64>,
    after_pending: BTreeMap<String, u64>,
    instances: BTreeMap<(String, String), InstanceRecord>,
    /// (due, plugin, instance, name) → payload, and where each name is due.
    timers: BTreeMap<(u64, String, String, String), String>,
    timer_due: BTreeMap<(String, String, String), u64>,
    effects: BTreeMap<String, Effect>,
    stopped: BTreeSet<String>,
    stop_reasons: BTreeMap<String, String>,
    plugins: BTreeMap<String, PluginRecord>,
    versions: BTreeMap<(String, u64), PluginVersion>,
    active: BTreeMap<String, u64>,
    components: BTreeMap<String, Vec<u8>>,
    artifacts: BTreeMap<String, Vec<u8>>,
    rm_docs: BTreeMap<(String, String), String>,
    rm_index: BTreeSet<(String, String, String, String)>,
    rm_indexed: BTreeMap<String, Vec<String>>,
}

/// The in-memory store; clones share the same tables.
#[derive(Clone, Default)]
pub struct MemoryStore {
    /// Held for a whole write transaction: one writer at a time, as in redb.
    writer: Arc<Mutex<()>>,
    /// The last commit; a read view holds it while the writer works on a copy.
    committed: Arc<Mutex<Arc<MemoryTx>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl MemoryStore {
    /// Nothing to check: the tables are only ever what the last commit put
    /// in place.
    pub fn verify(&self) -> Result<Verification, StoreError> {
        Ok(Verification {
            events: lock(&self.committed).events.len() as u64,
            ..Verification::default()
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a transaction never reaches the committed tables.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Backend for MemoryStore {
    type Tx<'t> = MemoryTx;

    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut MemoryTx) -> Result<R, E>) -> Result<R, E> {
        let _writer = lock(&self.writer);
        let mut tx = MemoryTx::clone(&lock(&self.committed));
        let value = f(&mut tx)?;
        *lock(&self.committed) = Arc::new(tx);
        Ok(value)
    }

    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&MemoryTx) -> Result<R, E>) -> Result<R, E> {
        let snapshot = lock(&self.committed).clone();
        f(&snapshot)
    }
}

fn key(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

impl EventLog for MemoryTx {
    fn head(&self) -> Result<u64, StoreError> {
        Ok(self.events.last_key_value().map_or(0, |(p, _)| *p))
    }

    fn event(&self, position: u64) -> Result<Option<Event>, StoreError> {
        Ok(self.events.get(&position).cloned())
    }

    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        Ok(self.events.range(from..).take(limit).map(|(_, e)| e.clone()).collect())
    }

    fn logged_event(&self, position: u64) -> Result<Event, StoreError> {
        self.event(position)?.ok_or_else(|| StoreError::Corrupt {
            table: "events",
            message: format!("position {position} is missing below the head"),
        })
    }

    fn stream_events(&self, stream_type: &str, stream_id: &str) -> Result<Vec<Event>, StoreError> {
        let of_stream = |e: &&Event| e.stream_type == stream_type && e.stream_id == stream_id;
        Ok(self.events.values().filter(of_stream).cloned().collect())
    }

    fn stream(&self, stream_type: &str, stream_id: &str) -> Result<StreamHead, StoreError> {
        Ok(self
            .streams
            .get(&key(stream_type, stream_id))
            .cloned()
            .unwrap_or_default())
    }

    fn append_after(
        &mut self,
        stream_type: &str,
        stream_id: &str,
        version: u64,
        events: Vec<NewEvent>,
        envelope: &Envelope,
        state: Option<Vec<u8>>,
    ) -> Result<Vec<Event>, StoreError> {
        let appended = stamped(events, self.head()?, (stream_type, stream_id), version, envelope);
        self.events.extend(appended.iter().map(|e| (e.position, e.clone())));
        if let Some(last) = appended.last() {
            let head = StreamHead {
                version: last.stream_version,
                state,
            };
            self.streams.insert(key(stream_type, stream_id), head);
        }
        Ok(appended)
    }
}

impl WorkQueue for MemoryTx {
    fn next_command_seq(&self) -> Result<u64, StoreError> {
        Ok(self.next_command.unwrap_or(1))
    }

    fn set_next_command_seq(&mut self, next: u64) -> Result<(), StoreError> {
        self.next_command = Some(next);
        Ok(())
    }

    fn enqueue(&mut self, seq: u64, command: &QueuedCommand) -> Result<(), StoreError> {
        self.queue.insert(seq, command.clone());
        Ok(())
    }

    fn dequeue(&mut self) -> Result<Option<QueuedCommand>, StoreError> {
        Ok(self.queue.pop_first().map(|(_, c)| c))
    }

    fn queued_commands(&self) -> Result<u64, StoreError> {
        Ok(self.queue.len() as u64)
    }

    fn queue(&self) -> Result<Vec<(u64, QueuedCommand)>, StoreError> {
        Ok(self.queue.iter().map(|(s, c)| (*s, c.clone())).collect())
    }

    fn unqueue(&mut self, seq: u64) -> Result<(), StoreError> {
        self.queue.remove(&seq);
        Ok(())
    }

    fn cascade(&self, correlation_id: &str) -> Result<Option<CascadeRecord>, StoreError> {
        Ok(self.cascades.get(correlation_id).cloned())
    }

    fn put_cascade(&mut self, correlation_id: &str, record: &CascadeRecord) -> Result<(), StoreError> {
        self.cascades.insert(correlation_id.to_owned(), record.clone());
        Ok(())
    }

    fn idempotent(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.idempotency.get(key).cloned())
    }

    fn put_cascade_budget(&mut self, correlation_id: &str, budget: u64) -> Result<(), StoreError> {
        self.budgets.insert(correlation_id.to_owned(), budget);
        Ok(())
    }

    fn cascade_budget(&self, correlation_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.budgets.get(correlation_id).copied())
    }

    fn put_idempotent(&mut self, key: &str, correlation_id: &str) -> Result<(), StoreError> {
        self.idempotency.insert(key.to_owned(), correlation_id.to_owned());
        Ok(())
    }

    fn park(&mut self, id: Option<u64>, parked: &Parked) -> Result<u64, StoreError> {
        let id = id.unwrap_or_else(|| {
            let id = self.next_parked.unwrap_or(1);
            self.next_parked = Some(id + 1);
            id
        });
        self.parked.insert(id, parked.clone());
        Ok(id)
    }

    fn parked(&self) -> Result<Vec<(u64, Parked)>, StoreError> {
        Ok(self.parked.iter().map(|(id, p)| (*id, p.clone())).collect())
    }

    fn parked_entry(&self, id: u64) -> Result<Option<Parked>, StoreError> {
        Ok(self.parked.get(&id).cloned())
    }

    fn take_parked(&mut self, id: u64) -> Result<Option<Parked>, StoreError> {
        Ok(self.parked.remove(&id))
    }

    fn put_skipped(&mut self, id: u64, skipped: &Skipped) -> Result<(), StoreError> {
        self.skipped.insert(id, skipped.clone());
        Ok(())
    }

    fn skipped(&self) -> Result<Vec<(u64, Skipped)>, StoreError> {
        Ok(self.skipped.iter().map(|(id, s)| (*id, s.clone())).collect())
    }
}

impl Progress for MemoryTx {
    fn pipeline_position(&self) -> Result<u64, StoreError> {
        Ok(self.pipeline_position)
    }

    fn set_pipeline_position(&mut self, position: u64) -> Result<(), StoreError> {
        self.pipeline_position = position;
        Ok(())
    }

    fn checkpoint(&self, listener: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.checkpoints.get(listener).copied())
    }

    fn set_checkpoint(&mut self, listener: &str, position: u64) -> Result<(), StoreError> {
        self.checkpoints.insert(listener.to_owned(), position);
        Ok(())
    }

    fn after_pending(&self, listener: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.after_pending.get(listener).copied())
    }

    fn set_after_pending(&mut self, listener: &str, position: Option<u64>) -> Result<(), StoreError> {
        match position {
            Some(position) => self.after_pending.insert(listener.to_owned(), position),
            None => self.after_pending.remove(listener),
        };
        Ok(())
    }

    fn is_stopped(&self, listener: &str) -> Result<bool, StoreError> {
        Ok(self.stopped.contains(listener))
    }

    fn set_stopped(&mut self, listener: &str, stopped: bool) -> Result<(), StoreError> {
        if stopped {
            self.stopped.insert(listener.to_owned());
        } else {
            self.stopped.remove(listener);
            self.stop_reasons.remove(listener);
        }
        Ok(())
    }

    fn stop_reason(&self, plugin: &str) -> Result<Option<String>, StoreError> {
        Ok(self.stop_reasons.get(plugin).cloned())
    }

    fn stop_for(&mut self, plugin: &str, reason: &str) -> Result<(), StoreError> {
        self.stopped.insert(plugin.to_owned());
        self.stop_reasons.insert(plugin.to_owned(), reason.to_owned());
        Ok(())
    }
}

impl Instances for MemoryTx {
    fn instance(&self, plugin: &str, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.instances.get(&(plugin.to_owned(), id.to_owned())).cloned())
    }

    fn put_instance(&mut self, plugin: &str, id: &str, record: &InstanceRecord) -> Result<(), StoreError> {
        self.instances
            .insert((plugin.to_owned(), id.to_owned()), record.clone());
        Ok(())
    }

    fn remove_instance(&mut self, plugin: &str, id: &str) -> Result<(), StoreError> {
        self.instances.remove(&(plugin.to_owned(), id.to_owned()));
        for timer in self.timers_of(plugin, Some(id))? {
            self.remove_timer(plugin, id, &timer.name)?;
        }
        Ok(())
    }

    fn instances(
        &self,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        Ok(self
            .instances
            .range((plugin.to_owned(), after.unwrap_or_default().to_owned())..)
            .take_while(|((p, _), _)| p == plugin)
            .filter(|((_, id), _)| after.is_none_or(|after| id.as_str() > after))
            .take(limit)
            .map(|((_, id), record)| (id.clone(), record.clone()))
            .collect())
    }

    fn instance_count(&self, plugin: &str) -> Result<u64, StoreError> {
        Ok(self.instances.keys().filter(|(p, _)| p == plugin).count() as u64)
    }

    fn state_bytes(&self, plugin: &str) -> Result<u64, StoreError> {
        let states = self.instances.iter().filter(|((p, _), _)| p == plugin);
        Ok(states.map(|(_, r)| r.state.as_ref().map_or(0, Vec::len) as u64).sum())
    }

    fn remove_instances(&mut self, plugin: &str) -> Result<(), StoreError> {
        self.instances.retain(|(p, _), _| p != plugin);
        self.timers.retain(|(_, p, _, _), _| p != plugin);
        self.timer_due.retain(|(p, _, _), _| p != plugin);
        Ok(())
    }

    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        self.remove_timer(&timer.plugin, &timer.instance, &timer.name)?;
        let name = (timer.plugin.clone(), timer.instance.clone(), timer.name.clone());
        self.timer_due.insert(name.clone(), timer.due);
        self.timers
            .insert((timer.due, name.0, name.1, name.2), timer.payload.clone());
        Ok(())
    }

    fn remove_timer(&mut self, plugin: &str, id: &str, name: &str) -> Result<Option<Timer>, StoreError> {
        let key = (plugin.to_owned(), id.to_owned(), name.to_owned());
        let Some(due) = self.timer_due.remove(&key) else {
            return Ok(None);
        };
        let payload = self.timers.remove(&(due, key.0, key.1, key.2)).unwrap_or_default();
        Ok(Some(Timer {
            plugin: plugin.to_owned(),
            instance: id.to_owned(),
            name: name.to_owned(),
            due,
            payload,
        }))
    }

    fn timers_of(&self, plugin: &str, id: Option<&str>) -> Result<Vec<Timer>, StoreError> {
        Ok(self
            .timer_due
            .iter()
            .filter(|((p, i, _), _)| p == plugin && id.is_none_or(|id| id == i))
            .map(|((p, i, n), &due)| Timer {
                plugin: p.clone(),
                instance: i.clone(),
                name: n.clone(),
                due,
                payload: self.timers[&(due, p.clone(), i.clone(), n.clone())].clone(),
            })
            .collect())
    }

    fn due_timers(&self, through: u64, after: Option<&Timer>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let start = after.map(|t| (t.due, t.plugin.clone(), t.instance.clone(), t.name.clone()));
        Ok(self
            .timers
            .iter()
            .filter(|(key, _)| start.as_ref().is_none_or(|start| *key > start))
            .take_while(|((due, ..), _)| *due <= through)
            .take(limit)
            .map(|((due, plugin, instance, name), payload)| Timer {
                plugin: plugin.clone(),
                instance: instance.clone(),
                name: name.clone(),
                due: *due,
                payload: payload.clone(),
            })
            .collect())
    }

    fn pending_timers(&self) -> Result<u64, StoreError> {
        Ok(self.timers.len() as u64)
    }

    fn timer_count(&self, plugin: &str) -> Result<u64, StoreError> {
        Ok(self.timer_due.keys().filter(|(p, _, _)| p == plugin).count() as u64)
    }
}

impl Outbox for MemoryTx {
    fn put_effect(&mut self, effect: &Effect) -> Result<(), StoreError> {
        self.effects.insert(effect.key.clone(), effect.clone());
        Ok(())
    }

    fn effect(&self, key: &str) -> Result<Option<Effect>, StoreError> {
        Ok(self.effects.get(key).cloned())
    }

    fn remove_effect(&mut self, key: &str) -> Result<Option<Effect>, StoreError> {
        Ok(self.effects.remove(key))
    }

    fn effects(&self, after: Option<&str>, limit: usize) -> Result<Vec<Effect>, StoreError> {
        let from = match after {
            Some(after) => std::ops::Bound::Excluded(after.to_owned()),
            None => std::ops::Bound::Unbounded,
        };
        Ok(self
            .effects
            .range((from, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn effect_count(&self) -> Result<u64, StoreError> {
        Ok(self.effects.len() as u64)
    }

    fn effect_count_of(&self, plugin: &str) -> Result<u64, StoreError> {
        Ok(self.effects.values().filter(|e| e.plugin == plugin).count() as u64)
    }
}

impl Registry for MemoryTx {
    fn plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        let mut records: Vec<PluginRecord> = self.plugins.values().cloned().collect();
        records.sort_by_key(|r| r.order);
        Ok(records)
    }

    fn put_plugin(&mut self, record: &PluginRecord) -> Result<(), StoreError> {
        self.plugins.insert(record.name.clone(), record.clone());
        Ok(())
    }

    fn remove_plugin(&mut self, name: &str) -> Result<(), StoreError> {
        self.plugins.remove(name);
        self.active.remove(name);
        self.checkpoints.remove(name);
        self.after_pending.remove(name);
        self.remove_instances(name)?;
        self.stopped.remove(name);
        self.stop_reasons.remove(name);
        Ok(())
    }

    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = self.components.get(hash);
        stored.map(|bytes| packed::unpack("components", bytes)).transpose()
    }

    fn put_component(&mut self, hash: &str, bytes: &Packed) -> Result<(), StoreError> {
        self.components
            .entry(hash.to_owned())
            .or_insert_with(|| bytes.as_bytes().to_vec());
        Ok(())
    }

    fn artifact(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = self.artifacts.get(key);
        stored.map(|bytes| packed::unpack("artifacts", bytes)).transpose()
    }

    fn put_artifact(&mut self, key: &str, bytes: &Packed) -> Result<(), StoreError> {
        self.artifacts
            .entry(key.to_owned())
            .or_insert_with(|| bytes.as_bytes().to_vec());
        Ok(())
    }

    fn prune_versions(&mut self, name: &str, keep: usize) -> Result<Vec<u64>, StoreError> {
        let (versions, active) = self.plugin_versions(name)?;
        let forgotten = to_forget(&versions, active, keep);
        for version in &forgotten {
            self.versions.remove(&(name.to_owned(), *version));
        }
        let referenced: BTreeSet<&str> = self
            .versions
            .values()
            .map(|v| v.hash.as_str())
            .chain(self.plugins.values().map(|r| r.hash.as_str()))
            .collect();
        let keep_component = |hash: &str| referenced.contains(hash);
        let components = std::mem::take(&mut self.components);
        let artifacts = std::mem::take(&mut self.artifacts);
        let components = components.into_iter().filter(|(h, _)| keep_component(h)).collect();
        let artifacts = artifacts
            .into_iter()
            .filter(|(k, _)| keep_component(artifact_hash(k)))
            .collect();
        self.components = components;
        self.artifacts = artifacts;
        Ok(forgotten)
    }

    fn plugin_versions(&self, name: &str) -> Result<(Vec<PluginVersion>, Option<u64>), StoreError> {
        let versions = self
            .versions
            .range((name.to_owned(), 0)..=(name.to_owned(), u64::MAX))
            .map(|(_, v)| v.clone())
            .collect();
        Ok((versions, self.active.get(name).copied()))
    }

    fn put_plugin_version(&mut self, version: &PluginVersion) -> Result<(), StoreError> {
        self.versions
            .insert((version.name.clone(), version.version), version.clone());
        self.set_active_version(&version.name, version.version)
    }

    fn set_active_version(&mut self, name: &str, version: u64) -> Result<(), StoreError> {
        self.active.insert(name.to_owned(), version);
        Ok(())
    }
}

impl Documents for MemoryTx {
    fn rm_page(&self, collection: &str, after: &str, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .rm_docs
            .range(key(collection, after)..)
            .take_while(|((c, _), _)| c == collection)
            .filter(|((_, id), _)| id.as_str() > after)
            .take(limit)
            .map(|((_, id), doc)| (id.clone(), doc.clone()))
            .collect())
    }

    fn rm_find(&self, collection: &str, field: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let from = (collection.to_owned(), field.to_owned(), key.to_owned(), String::new());
        Ok(self
            .rm_index
            .range(from..)
            .take_while(|(c, f, k, _)| (c.as_str(), f.as_str(), k.as_str()) == (collection, field, key))
            .map(|(_, _, _, id)| id.clone())
            .collect())
    }

    fn rm_doc(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.rm_docs.get(&key(collection, id)).cloned())
    }

    fn rm_put(&mut self, collection: &str, id: &str, doc: &str) -> Result<(), StoreError> {
        self.rm_docs.insert(key(collection, id), doc.to_owned());
        Ok(())
    }

    fn rm_delete(&mut self, collection: &str, id: &str) -> Result<(), StoreError> {
        self.rm_docs.remove(&key(collection, id));
        Ok(())
    }

    fn rm_index(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError> {
        self.rm_index
            .insert((collection.to_owned(), field.to_owned(), key.to_owned(), id.to_owned()));
        Ok(())
    }

    fn rm_unindex(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError> {
        self.rm_index
            .remove(&(collection.to_owned(), field.to_owned(), key.to_owned(), id.to_owned()));
        Ok(())
    }

    fn rm_docs(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .rm_docs
            .range(key(collection, "")..)
            .take_while(|((c, _), _)| c == collection)
            .map(|((_, id), doc)| (id.clone(), doc.clone()))
            .collect())
    }

    fn rm_clear(&mut self, collection: &str) -> Result<(), StoreError> {
        self.rm_docs.retain(|(c, _), _| c != collection);
        self.rm_clear_index(collection)
    }

    fn rm_clear_index(&mut self, collection: &str) -> Result<(), StoreError> {
        self.rm_index.retain(|(c, _, _, _)| c != collection);
        Ok(())
    }

    fn rm_indexed(&self, collection: &str) -> Result<Option<Vec<String>>, StoreError> {
        Ok(self.rm_indexed.get(collection).cloned())
    }

    fn set_rm_indexed(&mut self, collection: &str, fields: &[String]) -> Result<(), StoreError> {
        self.rm_indexed.insert(collection.to_owned(), fields.to_vec());
        Ok(())
    }

    fn rm_bytes(&self, collection: &str) -> Result<u64, StoreError> {
        let docs = self.rm_docs.iter().filter(|((c, _), _)| c == collection);
        Ok(docs.map(|((_, id), doc)| (id.len() + doc.len()) as u64).sum())
    }
}

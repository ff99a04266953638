//! [`PgTx`]'s accessors, by trait: one statement each where one does.

use std::collections::HashSet;

use postgres::types::ToSql;

use super::PgTx;
use crate::error::StoreError;
use crate::event::{Envelope, Event, NewEvent};
use crate::records::{
    CascadeRecord, Effect, InstanceRecord, Parked, PluginRecord, PluginVersion, QueuedCommand, Skipped, Timer,
};
use crate::store::registry::{StoredPlugin, StoredVersion};
use crate::store::traits::{Documents, EventLog, Instances, Outbox, Progress, Registry, WorkQueue};
use crate::store::{
    META_NEXT_COMMAND, META_NEXT_PARKED, META_PIPELINE, Packed, StreamHead, after_pending_key, artifact_hash,
    checkpoint_key, decode, encode, packed, stamped, to_forget,
};

/// Queued commands fetched per round trip when dequeuing.
const QUEUE_AHEAD: i64 = 256;

/// A count or position as PostgreSQL's `bigint` (every one Cascade keeps
/// fits; `u64::MAX`, "no bound", becomes the largest `bigint`).
fn big(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// A key stored as `bytea`, back as text.
pub(super) fn text(table: &'static str, bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|_| StoreError::Corrupt {
        table,
        message: "a key is not UTF-8".into(),
    })
}

impl PgTx<'_> {
    pub(super) fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let row = self.query_opt("SELECT value FROM cascade_meta WHERE key = $1", &[&key.as_bytes()])?;
        Ok(row.map(|row| unsigned(row.get(0))))
    }

    pub(super) fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key.as_bytes(), &big(value)],
        )?;
        Ok(())
    }

    fn remove_meta(&self, key: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM cascade_meta WHERE key = $1", &[&key.as_bytes()])?;
        Ok(())
    }

    /// The single number `sql` answers with `params` (a count, a sum).
    fn count(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let row = self.query_opt(sql, params)?;
        Ok(row.map_or(0, |row| unsigned(row.get(0))))
    }
}

impl EventLog for PgTx<'_> {
    fn head(&self) -> Result<u64, StoreError> {
        if let Some(head) = self.head.get() {
            return Ok(head);
        }
        let row = self.query_opt("SELECT max(position) FROM cascade_events", &[])?;
        let head = row.and_then(|row| row.get::<_, Option<i64>>(0)).map_or(0, unsigned);
        self.head.set(Some(head));
        Ok(head)
    }

    fn event(&self, position: u64) -> Result<Option<Event>, StoreError> {
        if let Some(event) = self.pending.borrow().event(position) {
            return Ok(Some(event.clone()));
        }
        let row = self.query_opt("SELECT body FROM cascade_events WHERE position = $1", &[&big(position)])?;
        row.map(|row| decode_event(position, row.get(0))).transpose()
    }

    fn logged_event(&self, position: u64) -> Result<Event, StoreError> {
        self.event(position)?.ok_or_else(|| StoreError::Corrupt {
            table: "events",
            message: format!("position {position} is missing below the head"),
        })
    }

    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.flush()?;
        let rows = self.query(
            "SELECT position, body FROM cascade_events WHERE position >= $1 ORDER BY position LIMIT $2",
            &[&big(from), &big(limit as u64)],
        )?;
        rows.iter()
            .map(|row| decode_event(unsigned(row.get(0)), row.get(1)))
            .collect()
    }

    fn stream_events(&self, stream_type: &str, stream_id: &str) -> Result<Vec<Event>, StoreError> {
        self.flush()?;
        let rows = self.query(
            "SELECT position, body FROM cascade_events WHERE stream_type = $1 AND stream_id = $2
             ORDER BY stream_version",
            &[&stream_type.as_bytes(), &stream_id.as_bytes()],
        )?;
        rows.iter()
            .map(|row| decode_event(unsigned(row.get(0)), row.get(1)))
            .collect()
    }

    fn stream(&self, stream_type: &str, stream_id: &str) -> Result<StreamHead, StoreError> {
        let key = (stream_type.to_owned(), stream_id.to_owned());
        if let Some(head) = self.pending.borrow().streams.get(&key) {
            return Ok(head.clone());
        }
        let row = self.query_opt(
            "SELECT version, state FROM cascade_streams WHERE stream_type = $1 AND stream_id = $2",
            &[&stream_type.as_bytes(), &stream_id.as_bytes()],
        )?;
        Ok(row.map_or_else(StreamHead::default, |row| StreamHead {
            version: unsigned(row.get(0)),
            state: row.get(1),
        }))
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
        let Some(last) = appended.last() else {
            return Ok(appended);
        };
        let head = StreamHead {
            version: last.stream_version,
            state,
        };
        let mut pending = self.pending.borrow_mut();
        pending
            .streams
            .insert((stream_type.to_owned(), stream_id.to_owned()), head);
        pending.events.extend(appended.iter().cloned());
        self.head.set(Some(last.position));
        Ok(appended)
    }
}

pub(super) fn decode_event(position: u64, body: &[u8]) -> Result<Event, StoreError> {
    let event: Event = decode("events", body)?;
    if event.position != position {
        return Err(StoreError::Corrupt {
            table: "events",
            message: format!("the record at position {position} says it is event #{}", event.position),
        });
    }
    Ok(event)
}

impl WorkQueue for PgTx<'_> {
    fn next_command_seq(&self) -> Result<u64, StoreError> {
        Ok(self.meta(META_NEXT_COMMAND)?.unwrap_or(1))
    }

    fn set_next_command_seq(&mut self, next: u64) -> Result<(), StoreError> {
        self.set_meta(META_NEXT_COMMAND, next)
    }

    fn enqueue(&mut self, seq: u64, command: &QueuedCommand) -> Result<(), StoreError> {
        let queue = &mut self.pending.get_mut().queue;
        // A fetched row of the same seq is replaced, not returned twice.
        queue.ahead.retain(|(s, _)| *s != seq);
        queue.inserts.insert(seq, encode(command));
        Ok(())
    }

    fn dequeue(&mut self) -> Result<Option<QueuedCommand>, StoreError> {
        while self.pending.get_mut().queue.needs_fetch() {
            let cursor = self.pending.get_mut().queue.cursor.map_or(-1, big);
            let rows = self.query(
                "SELECT seq, body FROM cascade_queue WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&cursor, &QUEUE_AHEAD],
            )?;
            let full = rows.len() as i64 == QUEUE_AHEAD;
            let rows = rows.iter().map(|row| (unsigned(row.get(0)), row.get(1))).collect();
            self.pending.get_mut().queue.fetched(rows, full);
        }
        let body = self.pending.get_mut().queue.pop();
        body.map(|body| decode("command_queue", &body)).transpose()
    }

    fn queued_commands(&self) -> Result<u64, StoreError> {
        self.flush()?;
        self.count("SELECT count(*) FROM cascade_queue", &[])
    }

    fn queue(&self) -> Result<Vec<(u64, QueuedCommand)>, StoreError> {
        self.flush()?;
        let rows = self.query("SELECT seq, body FROM cascade_queue ORDER BY seq", &[])?;
        rows.iter()
            .map(|row| Ok((unsigned(row.get(0)), decode("command_queue", row.get(1))?)))
            .collect()
    }

    fn unqueue(&mut self, seq: u64) -> Result<(), StoreError> {
        let queue = &mut self.pending.get_mut().queue;
        queue.inserts.remove(&seq);
        queue.ahead.retain(|(s, _)| *s != seq);
        queue.deletes.insert(seq);
        Ok(())
    }

    fn cascade(&self, correlation_id: &str) -> Result<Option<CascadeRecord>, StoreError> {
        if let Some(body) = self.pending.borrow().cascades.get(correlation_id) {
            return Ok(Some(decode("cascades", body)?));
        }
        let row = self.query_opt(
            "SELECT body FROM cascade_cascades WHERE correlation_id = $1",
            &[&correlation_id.as_bytes()],
        )?;
        row.map(|row| decode("cascades", row.get(0))).transpose()
    }

    fn put_cascade(&mut self, correlation_id: &str, record: &CascadeRecord) -> Result<(), StoreError> {
        let body = encode(record);
        self.pending
            .borrow_mut()
            .cascades
            .insert(correlation_id.to_owned(), body);
        Ok(())
    }

    fn idempotent(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = self.query_opt(
            "SELECT correlation_id FROM cascade_idempotency WHERE key = $1",
            &[&key.as_bytes()],
        )?;
        row.map(|row| text("idempotency", row.get(0))).transpose()
    }

    fn put_cascade_budget(&mut self, correlation_id: &str, budget: u64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_budgets (correlation_id, budget) VALUES ($1, $2)
             ON CONFLICT (correlation_id) DO UPDATE SET budget = EXCLUDED.budget",
            &[&correlation_id.as_bytes(), &big(budget)],
        )?;
        Ok(())
    }

    fn cascade_budget(&self, correlation_id: &str) -> Result<Option<u64>, StoreError> {
        let row = self.query_opt(
            "SELECT budget FROM cascade_budgets WHERE correlation_id = $1",
            &[&correlation_id.as_bytes()],
        )?;
        Ok(row.map(|row| unsigned(row.get(0))))
    }

    fn put_idempotent(&mut self, key: &str, correlation_id: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_idempotency (key, correlation_id) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET correlation_id = EXCLUDED.correlation_id",
            &[&key.as_bytes(), &correlation_id.as_bytes()],
        )?;
        Ok(())
    }

    fn park(&mut self, id: Option<u64>, parked: &Parked) -> Result<u64, StoreError> {
        let id = match id {
            Some(id) => id,
            None => {
                let id = self.meta(META_NEXT_PARKED)?.unwrap_or(1);
                self.set_meta(META_NEXT_PARKED, id + 1)?;
                id
            }
        };
        self.execute(
            "INSERT INTO cascade_parked (id, body) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            &[&big(id), &encode(parked)],
        )?;
        Ok(id)
    }

    fn parked(&self) -> Result<Vec<(u64, Parked)>, StoreError> {
        let rows = self.query("SELECT id, body FROM cascade_parked ORDER BY id", &[])?;
        rows.iter()
            .map(|row| Ok((unsigned(row.get(0)), decode("parked", row.get(1))?)))
            .collect()
    }

    fn parked_entry(&self, id: u64) -> Result<Option<Parked>, StoreError> {
        let row = self.query_opt("SELECT body FROM cascade_parked WHERE id = $1", &[&big(id)])?;
        row.map(|row| decode("parked", row.get(0))).transpose()
    }

    fn take_parked(&mut self, id: u64) -> Result<Option<Parked>, StoreError> {
        let row = self.query_opt("DELETE FROM cascade_parked WHERE id = $1 RETURNING body", &[&big(id)])?;
        row.map(|row| decode("parked", row.get(0))).transpose()
    }

    fn put_skipped(&mut self, id: u64, skipped: &Skipped) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_skipped (id, body) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            &[&big(id), &encode(skipped)],
        )?;
        Ok(())
    }

    fn skipped(&self) -> Result<Vec<(u64, Skipped)>, StoreError> {
        let rows = self.query("SELECT id, body FROM cascade_skipped ORDER BY id", &[])?;
        rows.iter()
            .map(|row| Ok((unsigned(row.get(0)), decode("skipped", row.get(1))?)))
            .collect()
    }
}

impl Progress for PgTx<'_> {
    fn pipeline_position(&self) -> Result<u64, StoreError> {
        Ok(self.meta(META_PIPELINE)?.unwrap_or(0))
    }

    fn set_pipeline_position(&mut self, position: u64) -> Result<(), StoreError> {
        self.set_meta(META_PIPELINE, position)
    }

    fn checkpoint(&self, listener: &str) -> Result<Option<u64>, StoreError> {
        self.meta(&checkpoint_key(listener))
    }

    fn set_checkpoint(&mut self, listener: &str, position: u64) -> Result<(), StoreError> {
        self.set_meta(&checkpoint_key(listener), position)
    }

    fn after_pending(&self, listener: &str) -> Result<Option<u64>, StoreError> {
        self.meta(&after_pending_key(listener))
    }

    fn set_after_pending(&mut self, listener: &str, position: Option<u64>) -> Result<(), StoreError> {
        match position {
            Some(position) => self.set_meta(&after_pending_key(listener), position),
            None => self.remove_meta(&after_pending_key(listener)),
        }
    }

    fn is_stopped(&self, listener: &str) -> Result<bool, StoreError> {
        let row = self.query_opt("SELECT 1 FROM cascade_stopped WHERE name = $1", &[&listener.as_bytes()])?;
        Ok(row.is_some())
    }

    fn set_stopped(&mut self, listener: &str, stopped: bool) -> Result<(), StoreError> {
        if stopped {
            self.execute(
                "INSERT INTO cascade_stopped (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&listener.as_bytes()],
            )?;
        } else {
            self.execute("DELETE FROM cascade_stopped WHERE name = $1", &[&listener.as_bytes()])?;
        }
        Ok(())
    }

    fn stop_reason(&self, plugin: &str) -> Result<Option<String>, StoreError> {
        let row = self.query_opt(
            "SELECT reason FROM cascade_stopped WHERE name = $1",
            &[&plugin.as_bytes()],
        )?;
        row.and_then(|row| row.get::<_, Option<Vec<u8>>>(0))
            .map(|reason| text("stop_reasons", reason))
            .transpose()
    }

    fn stop_for(&mut self, plugin: &str, reason: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_stopped (name, reason) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET reason = EXCLUDED.reason",
            &[&plugin.as_bytes(), &reason.as_bytes()],
        )?;
        Ok(())
    }
}

fn timer_of(row: &postgres::Row) -> Result<Timer, StoreError> {
    Ok(Timer {
        plugin: text("timers", row.get(0))?,
        instance: text("timers", row.get(1))?,
        name: text("timers", row.get(2))?,
        due: unsigned(row.get(3)),
        payload: text("timers", row.get(4))?,
    })
}

impl Instances for PgTx<'_> {
    fn instance(&self, plugin: &str, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let row = self.query_opt(
            "SELECT body FROM cascade_instances WHERE plugin = $1 AND id = $2",
            &[&plugin.as_bytes(), &id.as_bytes()],
        )?;
        row.map(|row| decode("instances", row.get(0))).transpose()
    }

    fn put_instance(&mut self, plugin: &str, id: &str, record: &InstanceRecord) -> Result<(), StoreError> {
        let bytes = big(record.state.as_ref().map_or(0, Vec::len) as u64);
        self.execute(
            "INSERT INTO cascade_instances (plugin, id, state_bytes, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (plugin, id) DO UPDATE SET state_bytes = EXCLUDED.state_bytes, body = EXCLUDED.body",
            &[&plugin.as_bytes(), &id.as_bytes(), &bytes, &encode(record)],
        )?;
        Ok(())
    }

    fn remove_instance(&mut self, plugin: &str, id: &str) -> Result<(), StoreError> {
        let (plugin, id) = (plugin.as_bytes(), id.as_bytes());
        self.execute(
            "DELETE FROM cascade_instances WHERE plugin = $1 AND id = $2",
            &[&plugin, &id],
        )?;
        self.execute(
            "DELETE FROM cascade_timers WHERE plugin = $1 AND instance = $2",
            &[&plugin, &id],
        )?;
        Ok(())
    }

    fn instances(
        &self,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        let rows = match after {
            Some(after) => self.query(
                "SELECT id, body FROM cascade_instances WHERE plugin = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&plugin.as_bytes(), &after.as_bytes(), &big(limit as u64)],
            )?,
            None => self.query(
                "SELECT id, body FROM cascade_instances WHERE plugin = $1 ORDER BY id LIMIT $2",
                &[&plugin.as_bytes(), &big(limit as u64)],
            )?,
        };
        rows.iter()
            .map(|row| Ok((text("instances", row.get(0))?, decode("instances", row.get(1))?)))
            .collect()
    }

    fn instance_count(&self, plugin: &str) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM cascade_instances WHERE plugin = $1",
            &[&plugin.as_bytes()],
        )
    }

    fn state_bytes(&self, plugin: &str) -> Result<u64, StoreError> {
        self.count(
            "SELECT coalesce(sum(state_bytes), 0)::bigint FROM cascade_instances WHERE plugin = $1",
            &[&plugin.as_bytes()],
        )
    }

    fn remove_instances(&mut self, plugin: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM cascade_instances WHERE plugin = $1", &[&plugin.as_bytes()])?;
        self.execute("DELETE FROM cascade_timers WHERE plugin = $1", &[&plugin.as_bytes()])?;
        Ok(())
    }

    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_timers (plugin, instance, name, due, payload) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (plugin, instance, name) DO UPDATE SET due = EXCLUDED.due, payload = EXCLUDED.payload",
            &[
                &timer.plugin.as_bytes(),
                &timer.instance.as_bytes(),
                &timer.name.as_bytes(),
                &big(timer.due),
                &timer.payload.as_bytes(),
            ],
        )?;
        Ok(())
    }

    fn remove_timer(&mut self, plugin: &str, id: &str, name: &str) -> Result<Option<Timer>, StoreError> {
        let row = self.query_opt(
            "DELETE FROM cascade_timers WHERE plugin = $1 AND instance = $2 AND name = $3
             RETURNING plugin, instance, name, due, payload",
            &[&plugin.as_bytes(), &id.as_bytes(), &name.as_bytes()],
        )?;
        row.as_ref().map(timer_of).transpose()
    }

    fn timers_of(&self, plugin: &str, id: Option<&str>) -> Result<Vec<Timer>, StoreError> {
        let rows = match id {
            Some(id) => self.query(
                "SELECT plugin, instance, name, due, payload FROM cascade_timers
                 WHERE plugin = $1 AND instance = $2 ORDER BY instance, name",
                &[&plugin.as_bytes(), &id.as_bytes()],
            )?,
            None => self.query(
                "SELECT plugin, instance, name, due, payload FROM cascade_timers
                 WHERE plugin = $1 ORDER BY instance, name",
                &[&plugin.as_bytes()],
            )?,
        };
        rows.iter().map(timer_of).collect()
    }

    fn due_timers(&self, through: u64, after: Option<&Timer>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let rows = match after {
            Some(t) => self.query(
                "SELECT plugin, instance, name, due, payload FROM cascade_timers
                 WHERE due <= $1 AND (due, plugin, instance, name) > ($2, $3, $4, $5)
                 ORDER BY due, plugin, instance, name LIMIT $6",
                &[
                    &big(through),
                    &big(t.due),
                    &t.plugin.as_bytes(),
                    &t.instance.as_bytes(),
                    &t.name.as_bytes(),
                    &big(limit as u64),
                ],
            )?,
            None => self.query(
                "SELECT plugin, instance, name, due, payload FROM cascade_timers
                 WHERE due <= $1 ORDER BY due, plugin, instance, name LIMIT $2",
                &[&big(through), &big(limit as u64)],
            )?,
        };
        rows.iter().map(timer_of).collect()
    }

    fn pending_timers(&self) -> Result<u64, StoreError> {
        self.count("SELECT count(*) FROM cascade_timers", &[])
    }

    fn timer_count(&self, plugin: &str) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM cascade_timers WHERE plugin = $1",
            &[&plugin.as_bytes()],
        )
    }
}

impl Outbox for PgTx<'_> {
    fn put_effect(&mut self, effect: &Effect) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_effects (key, plugin, body) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET plugin = EXCLUDED.plugin, body = EXCLUDED.body",
            &[&effect.key.as_bytes(), &effect.plugin.as_bytes(), &encode(effect)],
        )?;
        Ok(())
    }

    fn effect(&self, key: &str) -> Result<Option<Effect>, StoreError> {
        let row = self.query_opt("SELECT body FROM cascade_effects WHERE key = $1", &[&key.as_bytes()])?;
        row.map(|row| decode("effects", row.get(0))).transpose()
    }

    fn remove_effect(&mut self, key: &str) -> Result<Option<Effect>, StoreError> {
        let row = self.query_opt(
            "DELETE FROM cascade_effects WHERE key = $1 RETURNING body",
            &[&key.as_bytes()],
        )?;
        row.map(|row| decode("effects", row.get(0))).transpose()
    }

    fn effects(&self, after: Option<&str>, limit: usize) -> Result<Vec<Effect>, StoreError> {
        let after: &[u8] = after.map_or(&[], str::as_bytes);
        let rows = self.query(
            "SELECT body FROM cascade_effects WHERE key > $1 ORDER BY key LIMIT $2",
            &[&after, &big(limit as u64)],
        )?;
        rows.iter().map(|row| decode("effects", row.get(0))).collect()
    }

    fn effect_count(&self) -> Result<u64, StoreError> {
        self.count("SELECT count(*) FROM cascade_effects", &[])
    }

    fn effect_count_of(&self, plugin: &str) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM cascade_effects WHERE plugin = $1",
            &[&plugin.as_bytes()],
        )
    }
}

impl Registry for PgTx<'_> {
    fn plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        let rows = self.query("SELECT body FROM cascade_plugins", &[])?;
        let mut records = rows
            .iter()
            .map(|row| StoredPlugin::decode(row.get(0)))
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by_key(|r| r.order);
        Ok(records)
    }

    fn put_plugin(&mut self, record: &PluginRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_plugins (name, body) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body",
            &[&record.name.as_bytes(), &StoredPlugin::encode(record)],
        )?;
        Ok(())
    }

    fn remove_plugin(&mut self, name: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM cascade_plugins WHERE name = $1", &[&name.as_bytes()])?;
        self.execute("DELETE FROM cascade_active WHERE name = $1", &[&name.as_bytes()])?;
        self.remove_meta(&checkpoint_key(name))?;
        self.remove_meta(&after_pending_key(name))?;
        self.remove_instances(name)?;
        self.execute("DELETE FROM cascade_stopped WHERE name = $1", &[&name.as_bytes()])?;
        Ok(())
    }

    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.query_opt(
            "SELECT bytes FROM cascade_components WHERE hash = $1",
            &[&hash.as_bytes()],
        )?;
        row.map(|row| packed::unpack("components", row.get(0))).transpose()
    }

    fn put_component(&mut self, hash: &str, bytes: &Packed) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_components (hash, bytes) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
            &[&hash.as_bytes(), &bytes.as_bytes()],
        )?;
        Ok(())
    }

    fn artifact(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.query_opt("SELECT bytes FROM cascade_artifacts WHERE key = $1", &[&key.as_bytes()])?;
        row.map(|row| packed::unpack("artifacts", row.get(0))).transpose()
    }

    fn put_artifact(&mut self, key: &str, bytes: &Packed) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_artifacts (key, bytes) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key.as_bytes(), &bytes.as_bytes()],
        )?;
        Ok(())
    }

    fn prune_versions(&mut self, name: &str, keep: usize) -> Result<Vec<u64>, StoreError> {
        let (versions, active) = self.plugin_versions(name)?;
        let forgotten = to_forget(&versions, active, keep);
        for version in &forgotten {
            self.execute(
                "DELETE FROM cascade_versions WHERE name = $1 AND version = $2",
                &[&name.as_bytes(), &big(*version)],
            )?;
        }
        let mut referenced = HashSet::new();
        for row in self.query("SELECT body FROM cascade_versions", &[])? {
            referenced.insert(StoredVersion::decode(row.get(0))?.hash);
        }
        for record in self.plugins()? {
            referenced.insert(record.hash);
        }
        for row in self.query("SELECT hash FROM cascade_components", &[])? {
            let hash = text("components", row.get(0))?;
            if !referenced.contains(&hash) {
                self.execute("DELETE FROM cascade_components WHERE hash = $1", &[&hash.as_bytes()])?;
            }
        }
        for row in self.query("SELECT key FROM cascade_artifacts", &[])? {
            let key = text("artifacts", row.get(0))?;
            if !referenced.contains(artifact_hash(&key)) {
                self.execute("DELETE FROM cascade_artifacts WHERE key = $1", &[&key.as_bytes()])?;
            }
        }
        Ok(forgotten)
    }

    fn plugin_versions(&self, name: &str) -> Result<(Vec<PluginVersion>, Option<u64>), StoreError> {
        let rows = self.query(
            "SELECT body FROM cascade_versions WHERE name = $1 ORDER BY version",
            &[&name.as_bytes()],
        )?;
        let versions = rows
            .iter()
            .map(|row| StoredVersion::decode(row.get(0)))
            .collect::<Result<_, _>>()?;
        let active = self.query_opt(
            "SELECT version FROM cascade_active WHERE name = $1",
            &[&name.as_bytes()],
        )?;
        Ok((versions, active.map(|row| unsigned(row.get(0)))))
    }

    fn put_plugin_version(&mut self, version: &PluginVersion) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_versions (name, version, body) VALUES ($1, $2, $3)
             ON CONFLICT (name, version) DO UPDATE SET body = EXCLUDED.body",
            &[
                &version.name.as_bytes(),
                &big(version.version),
                &StoredVersion::encode(version),
            ],
        )?;
        self.set_active_version(&version.name, version.version)
    }

    fn set_active_version(&mut self, name: &str, version: u64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_active (name, version) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version",
            &[&name.as_bytes(), &big(version)],
        )?;
        Ok(())
    }
}

impl Documents for PgTx<'_> {
    fn rm_find(&self, collection: &str, field: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.query(
            "SELECT id FROM cascade_index WHERE collection = $1 AND field = $2 AND key = $3 ORDER BY id",
            &[&collection.as_bytes(), &field.as_bytes(), &key.as_bytes()],
        )?;
        rows.into_iter()
            .map(|row| text("read_model_index", row.get(0)))
            .collect()
    }

    fn rm_page(&self, collection: &str, after: &str, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.query(
            "SELECT id, doc FROM cascade_docs WHERE collection = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[&collection.as_bytes(), &after.as_bytes(), &big(limit as u64)],
        )?;
        rows.into_iter().map(|row| doc_of(&row)).collect()
    }

    fn rm_doc(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        let row = self.query_opt(
            "SELECT doc FROM cascade_docs WHERE collection = $1 AND id = $2",
            &[&collection.as_bytes(), &id.as_bytes()],
        )?;
        row.map(|row| text("read_model_docs", row.get(0))).transpose()
    }

    fn rm_put(&mut self, collection: &str, id: &str, doc: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_docs (collection, id, doc) VALUES ($1, $2, $3)
             ON CONFLICT (collection, id) DO UPDATE SET doc = EXCLUDED.doc",
            &[&collection.as_bytes(), &id.as_bytes(), &doc.as_bytes()],
        )?;
        Ok(())
    }

    fn rm_delete(&mut self, collection: &str, id: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM cascade_docs WHERE collection = $1 AND id = $2",
            &[&collection.as_bytes(), &id.as_bytes()],
        )?;
        Ok(())
    }

    fn rm_index(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_index (collection, field, key, id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[
                &collection.as_bytes(),
                &field.as_bytes(),
                &key.as_bytes(),
                &id.as_bytes(),
            ],
        )?;
        Ok(())
    }

    fn rm_unindex(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM cascade_index WHERE collection = $1 AND field = $2 AND key = $3 AND id = $4",
            &[
                &collection.as_bytes(),
                &field.as_bytes(),
                &key.as_bytes(),
                &id.as_bytes(),
            ],
        )?;
        Ok(())
    }

    fn rm_docs(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.query(
            "SELECT id, doc FROM cascade_docs WHERE collection = $1 ORDER BY id",
            &[&collection.as_bytes()],
        )?;
        rows.into_iter().map(|row| doc_of(&row)).collect()
    }

    fn rm_clear(&mut self, collection: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM cascade_docs WHERE collection = $1",
            &[&collection.as_bytes()],
        )?;
        self.rm_clear_index(collection)
    }

    fn rm_clear_index(&mut self, collection: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM cascade_index WHERE collection = $1",
            &[&collection.as_bytes()],
        )?;
        Ok(())
    }

    fn rm_indexed(&self, collection: &str) -> Result<Option<Vec<String>>, StoreError> {
        let row = self.query_opt(
            "SELECT fields FROM cascade_indexed WHERE collection = $1",
            &[&collection.as_bytes()],
        )?;
        row.map(|row| decode("read_model_indexed", row.get(0))).transpose()
    }

    fn set_rm_indexed(&mut self, collection: &str, fields: &[String]) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cascade_indexed (collection, fields) VALUES ($1, $2)
             ON CONFLICT (collection) DO UPDATE SET fields = EXCLUDED.fields",
            &[&collection.as_bytes(), &encode(&fields)],
        )?;
        Ok(())
    }

    fn rm_bytes(&self, collection: &str) -> Result<u64, StoreError> {
        self.count(
            "SELECT coalesce(sum(length(id) + length(doc)), 0)::bigint FROM cascade_docs WHERE collection = $1",
            &[&collection.as_bytes()],
        )
    }
}

fn doc_of(row: &postgres::Row) -> Result<(String, String), StoreError> {
    Ok((
        text("read_model_docs", row.get(0))?,
        text("read_model_docs", row.get(1))?,
    ))
}

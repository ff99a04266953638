//! What a store is: the traits one unit of work (a transaction) offers the
//! engine, grouped by job, and [`Backend`], which runs a closure in a write
//! transaction (committed on `Ok`, rolled back on `Err`) or in a read view
//! (a snapshot of the last commit that never blocks the writer).
//!
//! The redb [`Store`](super::Store), the PostgreSQL
//! [`PgStore`](super::PgStore) and the in-memory
//! [`MemoryStore`](super::MemoryStore) implement them, and all pass
//! [`conformance::run_shared`](super::conformance::run_shared): a new store
//! is one that passes the same suite.

use crate::error::{ConcurrencyError, StoreError};
use crate::event::{Envelope, Event, NewEvent};
use crate::records::{
    CascadeRecord, Effect, InstanceRecord, Parked, PluginRecord, PluginVersion, QueuedCommand, Skipped, Timer,
};

use super::{Packed, StreamHead};

/// The event log and stream heads.
pub trait EventLog {
    /// Position of the newest event, 0 when the log is empty.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn head(&self) -> Result<u64, StoreError>;

    /// The event at `position`.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn event(&self, position: u64) -> Result<Option<Event>, StoreError>;

    /// The event at `position`, which must be at or below the head: a gap
    /// there means the file is corrupt.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for a missing event; a storage error.
    fn logged_event(&self, position: u64) -> Result<Event, StoreError>;

    /// Up to `limit` events from position `from` on, in log order.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// Every event of one stream, in version order.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn stream_events(&self, stream_type: &str, stream_id: &str) -> Result<Vec<Event>, StoreError>;

    /// The stream's newest version and aggregate state.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn stream(&self, stream_type: &str, stream_id: &str) -> Result<StreamHead, StoreError>;

    /// Append `events` to a stream whose current version must be `expected`,
    /// and store `state` as the aggregate state after them (`None` keeps the
    /// stored state). Nothing is written when the versions differ.
    ///
    /// # Errors
    ///
    /// [`ConcurrencyError`] naming the stream and both versions (as
    /// `Ok(Err(..))`), or a storage error.
    fn append(
        &mut self,
        stream_type: &str,
        stream_id: &str,
        expected: u64,
        events: &[NewEvent],
        envelope: &Envelope,
        state: Option<Vec<u8>>,
    ) -> Result<Result<Vec<Event>, ConcurrencyError>, StoreError> {
        let head = self.stream(stream_type, stream_id)?;
        if head.version != expected {
            return Ok(Err(ConcurrencyError {
                stream: format!("{stream_type}:{stream_id}"),
                expected,
                actual: head.version,
            }));
        }
        let state = state.or(head.state);
        Ok(Ok(self.append_after(
            stream_type,
            stream_id,
            expected,
            events.to_vec(),
            envelope,
            state,
        )?))
    }

    /// Append `events` after `version`, the stream version the caller read
    /// in this transaction, and store `state` as the aggregate state after
    /// them. An executing aggregate has just read and checked the stream
    /// head, so it is not read again.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn append_after(
        &mut self,
        stream_type: &str,
        stream_id: &str,
        version: u64,
        events: Vec<NewEvent>,
        envelope: &Envelope,
        state: Option<Vec<u8>>,
    ) -> Result<Vec<Event>, StoreError>;
}

/// The work queue: queued commands, cascade records, idempotency keys and
/// budgets, parked and skipped events.
pub trait WorkQueue {
    /// The next free command sequence number (numbers are never reused).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn next_command_seq(&self) -> Result<u64, StoreError>;

    /// Record that sequence numbers below `next` are taken.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn set_next_command_seq(&mut self, next: u64) -> Result<(), StoreError>;

    /// Put a command at the end of the queue under its sequence number.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn enqueue(&mut self, seq: u64, command: &QueuedCommand) -> Result<(), StoreError>;

    /// Remove and return the oldest queued command.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn dequeue(&mut self) -> Result<Option<QueuedCommand>, StoreError>;

    /// How many commands wait in the queue.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn queued_commands(&self) -> Result<u64, StoreError>;

    /// Every queued command with its sequence number, oldest first.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn queue(&self) -> Result<Vec<(u64, QueuedCommand)>, StoreError>;

    /// Drop queued command `seq` without running it.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn unqueue(&mut self, seq: u64) -> Result<(), StoreError>;

    /// The record of a cascade, by correlation id.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn cascade(&self, correlation_id: &str) -> Result<Option<CascadeRecord>, StoreError>;

    /// Store the record of a cascade.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_cascade(&mut self, correlation_id: &str, record: &CascadeRecord) -> Result<(), StoreError>;

    /// The correlation id a command submitted with idempotency `key` started.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn idempotent(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Record the budget cascade `correlation_id` was submitted with.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_cascade_budget(&mut self, correlation_id: &str, budget: u64) -> Result<(), StoreError>;

    /// The budget cascade `correlation_id` was submitted with, if any.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn cascade_budget(&self, correlation_id: &str) -> Result<Option<u64>, StoreError>;

    /// Remember that idempotency `key` started cascade `correlation_id`.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_idempotent(&mut self, key: &str, correlation_id: &str) -> Result<(), StoreError>;

    /// Park an event for a listener under `id` (a retried parked event that
    /// failed again keeps its own), or under a new id that is never reused.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn park(&mut self, id: Option<u64>, parked: &Parked) -> Result<u64, StoreError>;

    /// Every parked event, oldest first.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn parked(&self) -> Result<Vec<(u64, Parked)>, StoreError>;

    /// One parked event.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn parked_entry(&self, id: u64) -> Result<Option<Parked>, StoreError>;

    /// Remove and return a parked event.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn take_parked(&mut self, id: u64) -> Result<Option<Parked>, StoreError>;

    /// Record a skipped parked event.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_skipped(&mut self, id: u64, skipped: &Skipped) -> Result<(), StoreError>;

    /// Every skipped parked event, oldest first, with its parked id.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn skipped(&self) -> Result<Vec<(u64, Skipped)>, StoreError>;
}

/// Where each listener is: the pipeline position, checkpoints, state blobs,
/// stopped listeners.
pub trait Progress {
    /// The position up to which the pipeline has run both phases.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn pipeline_position(&self) -> Result<u64, StoreError>;

    /// Record the pipeline's position.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn set_pipeline_position(&mut self, position: u64) -> Result<(), StoreError>;

    /// A listener's checkpoint: the last position it has seen.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn checkpoint(&self, listener: &str) -> Result<Option<u64>, StoreError>;

    /// Move a listener's checkpoint.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn set_checkpoint(&mut self, listener: &str, position: u64) -> Result<(), StoreError>;

    /// The position whose `after-` handler the listener has yet to call
    /// though its `on-` handler ran (it failed or stopped in between): it
    /// resumes there with the `after-` handler alone, so the `on-` handler,
    /// whose effects are in the state and the queue, never runs twice.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn after_pending(&self, listener: &str) -> Result<Option<u64>, StoreError>;

    /// Record (or, with `None`, clear) [`Progress::after_pending`].
    ///
    /// # Errors
    ///
    /// A storage error.
    fn set_after_pending(&mut self, listener: &str, position: Option<u64>) -> Result<(), StoreError>;

    /// Whether the listener is stopped (its checkpoint is where it stopped).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn is_stopped(&self, listener: &str) -> Result<bool, StoreError>;

    /// Mark a listener stopped or running.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn set_stopped(&mut self, listener: &str, stopped: bool) -> Result<(), StoreError>;

    /// Why the host stopped `plugin`, if it did.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn stop_reason(&self, plugin: &str) -> Result<Option<String>, StoreError>;

    /// Stop `plugin` for `reason`: it gets no events until started again.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn stop_for(&mut self, plugin: &str, reason: &str) -> Result<(), StoreError>;
}

/// The plugin registry: records, versions, components and artifacts.
pub trait Registry {
    /// Every registered plugin, in registration order.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn plugins(&self) -> Result<Vec<PluginRecord>, StoreError>;

    /// Register or replace a plugin.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_plugin(&mut self, record: &PluginRecord) -> Result<(), StoreError>;

    /// Unregister plugin `name`: its registration, checkpoint, state and stop
    /// marks go; its versions, components and parked events stay.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn remove_plugin(&mut self, name: &str) -> Result<(), StoreError>;

    /// Component bytes by content hash.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Store component bytes under their content hash (once: the same
    /// build deployed again is not stored twice).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_component(&mut self, hash: &str, bytes: &Packed) -> Result<(), StoreError>;

    /// A precompiled artifact by key (content hash + engine compatibility).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn artifact(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Store a precompiled artifact, keyed by its component's hash, a `-`,
    /// and the engine's compatibility.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_artifact(&mut self, key: &str, bytes: &Packed) -> Result<(), StoreError>;

    /// Keep the newest `keep` versions of plugin `name` (and the active
    /// one), forget older ones, and delete every component and artifact no
    /// kept version of any plugin refers to. Returns the versions forgotten.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn prune_versions(&mut self, name: &str, keep: usize) -> Result<Vec<u64>, StoreError>;

    /// Every version of plugin `name`, oldest first, and the active one.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    fn plugin_versions(&self, name: &str) -> Result<(Vec<PluginVersion>, Option<u64>), StoreError>;

    /// Record `version` of its plugin and make it the active one.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_plugin_version(&mut self, version: &PluginVersion) -> Result<(), StoreError>;

    /// Make `version` the active version of plugin `name`.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn set_active_version(&mut self, name: &str, version: u64) -> Result<(), StoreError>;
}

/// Read-model documents and their indexes.
pub trait Documents {
    /// The ids of `collection`'s documents whose indexed `field` has the
    /// canonical JSON `key`, in id order.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_find(&self, collection: &str, field: &str, key: &str) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` documents of `collection` with ids after `after`, in id
    /// order, as (id, JSON text).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_page(&self, collection: &str, after: &str, limit: usize) -> Result<Vec<(String, String)>, StoreError>;

    /// A read-model document.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_doc(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError>;

    /// Put `doc` (JSON text) as document `id` of `collection`, replacing any.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_put(&mut self, collection: &str, id: &str, doc: &str) -> Result<(), StoreError>;

    /// Delete document `id` of `collection`; a missing one is fine.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_delete(&mut self, collection: &str, id: &str) -> Result<(), StoreError>;

    /// Index document `id` of `collection` under `field` = `key` (canonical JSON).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_index(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError>;

    /// Remove the index entry [`Documents::rm_index`] made.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_unindex(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError>;

    /// Every document of `collection`, as (id, JSON text), in id order.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_docs(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// Remove every document and index entry of `collection`.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_clear(&mut self, collection: &str) -> Result<(), StoreError>;

    /// Remove every index entry of `collection`.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_clear_index(&mut self, collection: &str) -> Result<(), StoreError>;

    /// The fields `collection`'s index holds entries for; `None` when never
    /// recorded (a data directory from before this was tracked).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_indexed(&self, collection: &str) -> Result<Option<Vec<String>>, StoreError>;

    /// Record the fields `collection`'s index holds entries for.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn set_rm_indexed(&mut self, collection: &str, fields: &[String]) -> Result<(), StoreError>;

    /// Bytes of `collection`'s documents, ids and bodies (what a
    /// projection's quota counts).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rm_bytes(&self, collection: &str) -> Result<u64, StoreError>;
}

/// Instances of per-instance process managers and their pending timers.
pub trait Instances {
    /// Instance `id` of process manager `plugin`, if it exists.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn instance(&self, plugin: &str, id: &str) -> Result<Option<InstanceRecord>, StoreError>;

    /// Store instance `id` of `plugin` (with the checkpoint, in the same
    /// transaction).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_instance(&mut self, plugin: &str, id: &str, record: &InstanceRecord) -> Result<(), StoreError>;

    /// Delete instance `id` of `plugin` and cancel its timers.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn remove_instance(&mut self, plugin: &str, id: &str) -> Result<(), StoreError>;

    /// Up to `limit` instances of `plugin` with ids after `after`, in id order.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn instances(
        &self,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError>;

    /// How many instances `plugin` has.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn instance_count(&self, plugin: &str) -> Result<u64, StoreError>;

    /// Bytes `plugin`'s instances take as stored.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn state_bytes(&self, plugin: &str) -> Result<u64, StoreError>;

    /// Delete every instance and timer of `plugin`.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn remove_instances(&mut self, plugin: &str) -> Result<(), StoreError>;

    /// Store `timer`, replacing the instance's timer of the same name.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError>;

    /// Cancel timer `name` of instance `id` of `plugin`; returns it if it was pending.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn remove_timer(&mut self, plugin: &str, id: &str, name: &str) -> Result<Option<Timer>, StoreError>;

    /// The pending timers of `plugin` (of instance `id` only, when given),
    /// by instance and name.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn timers_of(&self, plugin: &str, id: Option<&str>) -> Result<Vec<Timer>, StoreError>;

    /// Up to `limit` pending timers due at or before `through`, or of any
    /// time with `through = u64::MAX`, in due order (then plugin, instance,
    /// name), starting after `after` (a timer's due, plugin, instance, name).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn due_timers(&self, through: u64, after: Option<&Timer>, limit: usize) -> Result<Vec<Timer>, StoreError>;

    /// How many timers are pending.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn pending_timers(&self) -> Result<u64, StoreError>;

    /// How many timers of `plugin` are pending.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn timer_count(&self, plugin: &str) -> Result<u64, StoreError>;
}

/// The effects outbox: requests stored with the commit of the call that made
/// them, until the commit that records their outcome.
pub trait Outbox {
    /// Store `effect`, replacing one of the same key.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn put_effect(&mut self, effect: &Effect) -> Result<(), StoreError>;

    /// The effect of key `key`, if it is in the outbox.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn effect(&self, key: &str) -> Result<Option<Effect>, StoreError>;

    /// Remove the effect of key `key`; returns it if it was there.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn remove_effect(&mut self, key: &str) -> Result<Option<Effect>, StoreError>;

    /// Up to `limit` effects with keys after `after`, in key order.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn effects(&self, after: Option<&str>, limit: usize) -> Result<Vec<Effect>, StoreError>;

    /// How many effects are in the outbox (parked ones included).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn effect_count(&self) -> Result<u64, StoreError>;

    /// How many effects of `plugin` are in the outbox (parked ones included).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn effect_count_of(&self, plugin: &str) -> Result<u64, StoreError>;
}

/// Everything one transaction offers.
pub trait UnitOfWork: EventLog + WorkQueue + Progress + Registry + Documents + Instances + Outbox {}

impl<T: EventLog + WorkQueue + Progress + Registry + Documents + Instances + Outbox> UnitOfWork for T {}

/// The documents of a store as read-model queries see them: a read view of
/// the last commit, shared with handler calls on any thread.
pub trait DocumentView: Send + Sync {
    /// Run `f` on a snapshot of the last commit's documents.
    ///
    /// # Errors
    ///
    /// `f`'s error, or a storage error.
    fn with_documents(&self, f: &mut dyn FnMut(&dyn Documents) -> Result<(), StoreError>) -> Result<(), StoreError>;
}

/// [`DocumentView`] for stores whose transactions are a type of their own.
macro_rules! document_view {
    ($($store:ty),*) => {$(
        impl DocumentView for $store {
            fn with_documents(
                &self,
                f: &mut dyn FnMut(&dyn Documents) -> Result<(), StoreError>,
            ) -> Result<(), StoreError> {
                self.read(|tx| f(tx))
            }
        }
    )*};
}

document_view!(super::Store, super::MemoryStore, super::PgStore, super::AnyStore);

/// What the engine runs on: a [`Backend`] it can share with read-model
/// queries on other threads (clones share one store).
pub trait Storage: Backend + DocumentView + Clone + 'static {}

impl<S: Backend + DocumentView + Clone + 'static> Storage for S {}

/// A store: units of work and read views over one set of tables.
pub trait Backend {
    /// One transaction; `'t` is the transaction's own lifetime. Unsized
    /// for [`AnyStore`](super::AnyStore), whose transactions are
    /// `dyn UnitOfWork`.
    type Tx<'t>: UnitOfWork + ?Sized;

    /// Run `f` in one write transaction: commit if it returns `Ok`, roll
    /// everything back if it returns `Err`.
    ///
    /// # Errors
    ///
    /// `f`'s error, or a storage error.
    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut Self::Tx<'_>) -> Result<R, E>) -> Result<R, E>;

    /// [`Backend::write`] where `f` also says whether it wrote anything; a
    /// store may then skip the commit (redb aborts instead, saving an fsync).
    ///
    /// # Errors
    ///
    /// `f`'s error, or a storage error.
    fn write_if<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Self::Tx<'_>) -> Result<(R, bool), E>,
    ) -> Result<R, E> {
        self.write(|tx| f(tx).map(|(value, _)| value))
    }

    /// Run `f` on a snapshot of the last commit, without writing.
    ///
    /// # Errors
    ///
    /// `f`'s error, or a storage error.
    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&Self::Tx<'_>) -> Result<R, E>) -> Result<R, E>;
}

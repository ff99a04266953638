//! The redb file: event log, stream index with aggregate state, checkpoints
//! and process-manager state blobs, the command queue, cascade records and
//! the plugin registry.
//!
//! Everything lives in one file so that one write transaction commits a whole
//! batch atomically: the events, everything their handlers produced, and the
//! checkpoints that cover them. [`Store::write`] scopes a transaction to a
//! closure: `Ok` commits, `Err` rolls back, so no half-batch is ever visible.
//!
//! # Invariants
//!
//! - Positions are gapless and start at 1; `events.last()` is the head.
//! - `stream_index[(type, id, 0)]` holds the version of the stream's newest
//!   event and the aggregate state folded up to exactly that version (one
//!   row, so they cannot disagree); `stream_index[(type, id, v)]` for v ≥ 1
//!   is that event's position.
//! - A queued command is removed in the same transaction that appends its
//!   events, so it runs exactly once.
//!
//! # Layout
//!
//! This file opens the store and its transactions ([`Store::write`], the
//! read view [`Store::read`]); [`Tx`]'s accessors live by job
//! in `log.rs` (events, stream heads), `work.rs` (command queue, cascades,
//! idempotency, budgets, parked and skipped events), `progress.rs` (pipeline
//! position, checkpoints, state blobs, stopped listeners), `registry.rs`
//! (plugins, versions, components, artifacts) and `read_models.rs`
//! (documents and indexes); `lazy.rs` opens tables on first use, `sealed.rs`
//! checksums records, `packed.rs` compresses components, `verify.rs` checks
//! a whole file. Beside it: `memory.rs` (the in-memory reference),
//! `postgres.rs` (the PostgreSQL store), `any.rs` ([`AnyStore`], any of them
//! behind one type, and [`LogReader`]), `conformance.rs` (what each must do).

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, TableDefinition, TableHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::event::{Envelope, Event, NewEvent};
use crate::records::PluginVersion;

mod any;
pub mod conformance;
mod counts;
mod instances;
mod lazy;
mod log;
mod memory;
mod outbox;
mod packed;
mod postgres;
mod progress;
mod read_models;
mod registry;
mod sealed;
mod traits;
mod upgrade;
mod verify;
mod work;
pub use any::{AnyStore, LogReader};
pub use memory::MemoryStore;
pub use packed::Packed;
pub use postgres::PgStore;
pub use traits::{
    Backend, DocumentView, Documents, EventLog, Instances, Outbox, Progress, Registry, Storage, UnitOfWork, WorkQueue,
};
pub use verify::Verification;

/// The page cache a data file gets unless told otherwise, in MiB.
pub const DEFAULT_CACHE_MIB: usize = 64;

/// Bumped whenever a table's layout changes; a newer file is refused, an
/// older one is upgraded when opened. 2: events and state blobs carry
/// checksums. 3: stream heads and the stream index share one table, and
/// checkpoints live in `meta` (a command's commit touches two tables fewer).
/// 4: stream heads (with the aggregate state) and precompiled artifacts
/// carry checksums too. 5: one state per process-manager instance, timers,
/// and a plugin's manifest keeps its `[config]`. 6: manifests are stored as
/// JSON text (a new manifest key needs no upgrade), and the effects outbox.
/// 7: manifests carry read grants (stored process managers and projections
/// keep their reads as `read = ["*"]`) and the component's exports. 8:
/// `meta` counts each plugin's pending timers and effects and each
/// collection's document bytes, for the quotas.
pub const SCHEMA_VERSION: u64 = 8;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Each stream in one place: its head at version [`HEAD`] ([`StreamHead`]),
/// then the position of each of its events by version (8 bytes, little
/// endian), so appending to a stream writes next to its head.
const STREAMS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("stream_index");
/// Where in [`STREAMS`] a stream's head is: before its first version.
const HEAD: u64 = 0;
/// Schema 4's state blobs, one per process manager: dropped by the upgrade
/// to 5, where state is per instance and rebuilt by a refresh.
const PM_STATES_4: TableDefinition<&str, &[u8]> = TableDefinition::new("pm_states");
/// Instances of process managers: `plugin\0id` → sealed [`InstanceRecord`].
const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
/// Pending timers by due time: (due, `plugin\0instance\0name`) → payload.
const TIMERS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("timers");
/// Pending timers by name: `plugin\0instance\0name` → due.
const TIMER_DUE: TableDefinition<&str, u64> = TableDefinition::new("timer_due");
/// The effects outbox: key → [`Effect`](crate::records::Effect).
const EFFECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("effects");
const PARKED: TableDefinition<u64, &[u8]> = TableDefinition::new("parked");
/// Stopped listeners, by name.
const STOPPED: TableDefinition<&str, ()> = TableDefinition::new("stopped");
const SKIPPED: TableDefinition<u64, &[u8]> = TableDefinition::new("skipped");
const COMMAND_QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("command_queue");
const CASCADES: TableDefinition<&str, &[u8]> = TableDefinition::new("cascades");
const PLUGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugins");
const COMPONENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("components");
const ARTIFACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("artifacts");
/// Every version a plugin name has had: (name, version) → [`PluginVersion`].
const PLUGIN_VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("plugin_versions");
/// The active version of each plugin name.
const PLUGIN_ACTIVE: TableDefinition<&str, u64> = TableDefinition::new("plugin_active");
/// Why a stopped plugin was stopped by the host (a failing `save-state`,
/// `load-state`, or a build that no longer loads), by name.
const STOP_REASONS: TableDefinition<&str, &str> = TableDefinition::new("stop_reasons");
/// Budgets cascades were submitted with (only those given one).
const CASCADE_BUDGETS: TableDefinition<&str, u64> = TableDefinition::new("cascade_budgets");
/// Idempotency keys of submitted commands → the correlation id they started.
const IDEMPOTENCY: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
/// Read-model documents: (collection, id) → JSON text.
pub(crate) const RM_DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("read_model_docs");
/// Read-model indexes: (collection, field, canonical JSON value, id) → ().
pub(crate) const RM_INDEX: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("read_model_index");
/// The fields each collection's index holds entries for: collection → field list.
const RM_INDEXED: TableDefinition<&str, &[u8]> = TableDefinition::new("read_model_indexed");

const META_SCHEMA: &str = "schema_version";
const META_NEXT_COMMAND: &str = "next_command";
const META_NEXT_PARKED: &str = "next_parked";
/// The position up to which the pipeline has run both phases.
const META_PIPELINE: &str = "pipeline_position";
/// A listener's checkpoint is `meta["checkpoint/<name>"]`: written with the
/// pipeline position, in the same table.
const META_CHECKPOINT: &str = "checkpoint/";

/// The `meta` key of `listener`'s checkpoint.
fn checkpoint_key(listener: &str) -> String {
    format!("{META_CHECKPOINT}{listener}")
}

/// A listener's [`Progress::after_pending`] is `meta["after-pending/<name>"]`,
/// present only while it is set.
const META_AFTER_PENDING: &str = "after-pending/";

/// The `meta` key of `listener`'s pending `after-` handler.
fn after_pending_key(listener: &str) -> String {
    format!("{META_AFTER_PENDING}{listener}")
}

/// A stream index entry's position.
fn index_position(stored: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = stored.try_into().map_err(|_| StoreError::Corrupt {
        table: STREAMS.name(),
        message: format!("a stream index entry holds {} bytes, not a position", stored.len()),
    })?;
    Ok(u64::from_le_bytes(bytes))
}

type Bytes = &'static [u8];

/// A stream's newest version and its aggregate state at that version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StreamHead {
    /// Version of the newest event; 0 for a stream with no events.
    pub version: u64,
    /// The aggregate state folded up to `version`; none before any event.
    pub state: Option<Vec<u8>>,
}

/// A redb database to read from: the writable one, or one opened read-only.
pub(crate) type ReadDb = dyn ReadableDatabase + Send + Sync;

/// How many tables a complete data file has: the events and every table
/// [`Tx::create_tables`] creates (a unit test keeps the two in step).
const TABLE_COUNT: usize = 23;

/// The schema version of the file behind `db`, if it has one, and whether
/// every table is in it.
fn probe(db: &ReadDb) -> Result<(Option<u64>, bool), StoreError> {
    let txn = db.begin_read()?;
    let complete = txn.list_tables()?.count() >= TABLE_COUNT;
    let schema = match txn.open_table(META) {
        Ok(meta) => meta.get(META_SCHEMA)?.map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(err) => return Err(err.into()),
    };
    Ok((schema, complete))
}

/// A file written by a newer Cascade is refused.
fn check_schema(path: &Path, found: Option<u64>) -> Result<(), StoreError> {
    match found {
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::NewerSchema {
            path: path.display().to_string(),
            found,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

fn busy(path: &Path) -> StoreError {
    StoreError::Busy {
        path: path.display().to_string(),
        holder: "another process".into(),
    }
}

/// The redb file behind a Cascade data directory; clones share it.
#[derive(Clone)]
pub struct Store {
    /// Every read: redb read transactions, beside the writer.
    db: std::sync::Arc<ReadDb>,
    /// The same file, to write; `None` when opened read-only.
    writer: Option<std::sync::Arc<Database>>,
}

impl Store {
    /// Open (or create) the redb file at `path`.
    ///
    /// # Errors
    ///
    /// The file is not a redb file, is locked by another process, or was
    /// written by a newer schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, DEFAULT_CACHE_MIB << 20)
    }

    /// [`Store::open`] with a page cache of `cache_bytes` (redb's default
    /// of 1 GiB is too much for a small machine and drives RSS).
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        // redb would silently make an empty file a new database: a truncated
        // data file must not look like a fresh start.
        if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::NotADataFile {
                path: path.display().to_string(),
                reason: "it is empty (0 bytes)".into(),
            });
        }
        let db = match Database::builder().set_cache_size(cache_bytes).create(path) {
            Ok(db) => std::sync::Arc::new(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(busy(path)),
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(err)))
                if err.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                return Err(StoreError::NotWritable {
                    path: path.display().to_string(),
                });
            }
            Err(err) => return Err(err.into()),
        };
        let store = Store {
            db: db.clone(),
            writer: Some(db),
        };
        // Opening writes only to a new or older file: reading a damaged
        // file must not commit over it.
        let (found, complete) = probe(store.db.as_ref())?;
        check_schema(path, found)?;
        if found != Some(SCHEMA_VERSION) || !complete {
            store.write(|tx| {
                tx.create_tables()?;
                if found == Some(1) {
                    tx.seal_unsealed_records()?;
                }
                if found.is_some_and(|found| found < 3) {
                    tx.merge_stream_tables()?;
                }
                if found.is_some_and(|found| found < 4) {
                    tx.seal_heads_and_artifacts()?;
                }
                if found.is_some_and(|found| found < 5) {
                    tx.per_instance_state()?;
                }
                if found == Some(5) {
                    tx.manifests_as_json()?;
                }
                if found.is_some_and(|found| found < 7) {
                    tx.grant_reads_held()?;
                }
                if found.is_some_and(|found| found < 8) {
                    tx.count_what_quotas_bound()?;
                }
                tx.meta.write()?.insert(META_SCHEMA, SCHEMA_VERSION)?;
                Ok::<_, StoreError>(())
            })?;
        }
        Ok(store)
    }

    /// Open the redb file at `path` to read only: nothing is ever written,
    /// the file and its directory may be read-only, and other read-only
    /// opens may share it (a writer excludes them: [`StoreError::Busy`]).
    ///
    /// # Errors
    ///
    /// As [`Store::open`]; a file from an older Cascade that has not been
    /// upgraded yet by a writable open.
    pub fn open_read_only(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::NotADataFile {
                path: path.display().to_string(),
                reason: "it is empty (0 bytes)".into(),
            });
        }
        let db = match Database::builder().set_cache_size(cache_bytes).open_read_only(path) {
            Ok(db) => std::sync::Arc::new(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(busy(path)),
            Err(redb::DatabaseError::RepairAborted) => {
                return Err(StoreError::NeedsRepair {
                    path: path.display().to_string(),
                });
            }
            Err(err) => return Err(err.into()),
        };
        let store = Store { db, writer: None };
        let (found, complete) = probe(store.db.as_ref())?;
        check_schema(path, found)?;
        if found != Some(SCHEMA_VERSION) || !complete {
            return Err(StoreError::NotADataFile {
                path: path.display().to_string(),
                reason: format!(
                    "it was written by an older Cascade (schema {}) and is upgraded by the first command that writes",
                    found.unwrap_or(0)
                ),
            });
        }
        Ok(store)
    }

    /// Repair the file at `path` after a crash: a writable open does it, and
    /// closes it again. A reader that met [`StoreError::NeedsRepair`] calls
    /// this, then opens read-only again.
    ///
    /// # Errors
    ///
    /// As [`Store::open`]: busy, not writable, not a data file.
    pub fn repair(path: &Path) -> Result<(), StoreError> {
        Store::open_with_cache(path, 1 << 20).map(drop)
    }

    /// Whether writes are refused ([`Store::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// Check everything the store can check of itself (see
    /// [`Verification`]), on a read transaction.
    ///
    /// # Errors
    ///
    /// redb cannot read the file at all.
    pub fn verify(&self) -> Result<Verification, StoreError> {
        verify::verify(self.db.as_ref())
    }

    /// A read-only view of the log for other threads.
    pub fn reader(&self) -> LogReader {
        AnyStore::from(self.clone()).reader()
    }

    /// Run `f` in one write transaction: commit if it returns `Ok`, roll
    /// everything back if it returns `Err`.
    ///
    /// # Errors
    ///
    /// `f`'s error, or a storage error from redb.
    pub fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        self.write_if(|tx| f(tx).map(|r| (r, true)))
    }

    /// [`Store::write`] where `f` also says whether it wrote anything; a
    /// transaction that did not is aborted instead of committed, so it costs
    /// no fsync. On a read-only store `f` runs on a read view, and is
    /// refused if it writes.
    ///
    /// # Errors
    ///
    /// `f`'s error, or a storage error from redb.
    pub fn write_if<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<(R, bool), E>,
    ) -> Result<R, E> {
        let Some(writer) = &self.writer else {
            // Read-only: `f` runs on a read view, where every write fails;
            // one that says it wrote is refused too.
            let txn = self.db.begin_read().map_err(StoreError::from)?;
            let mut tx = Tx::open(lazy::Txn::Read(&txn))?;
            return match f(&mut tx)? {
                (value, false) => Ok(value),
                (_, true) => Err(StoreError::ReadOnly.into()),
            };
        };
        let mut txn = writer.begin_write().map_err(StoreError::from)?;
        txn.set_durability(Durability::Immediate).map_err(StoreError::from)?;
        let result = {
            let mut tx = Tx::open(lazy::Txn::Write(&txn))?;
            f(&mut tx)
        };
        match result {
            Ok((value, true)) => {
                txn.commit().map_err(StoreError::from)?;
                Ok(value)
            }
            Ok((value, false)) => {
                txn.abort().map_err(StoreError::from)?;
                Ok(value)
            }
            Err(err) => {
                txn.abort().map_err(StoreError::from)?;
                Err(err)
            }
        }
    }

    /// Run `f` over the tables on a redb read transaction: a snapshot of the
    /// last commit that never waits for the writer, never commits and works
    /// on a read-only file.
    ///
    /// # Errors
    ///
    /// `f`'s error, or a storage error from redb.
    pub fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        let tx = Tx::open(lazy::Txn::Read(&txn))?;
        f(&tx)
    }
}

impl Backend for Store {
    type Tx<'t> = Tx<'t>;

    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        Store::write(self, f)
    }

    fn write_if<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<(R, bool), E>) -> Result<R, E> {
        Store::write_if(self, f)
    }

    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        Store::read(self, f)
    }
}

/// One write transaction; its tables open when first used.
pub struct Tx<'t> {
    /// The transaction itself, for what the tables below cannot do
    /// (upgrades that drop old tables).
    txn: lazy::Txn<'t>,
    meta: lazy::Lazy<'t, &'static str, u64>,
    events: lazy::Lazy<'t, u64, Bytes>,
    streams: lazy::Lazy<'t, (&'static str, &'static str, u64), Bytes>,
    instances: lazy::Lazy<'t, &'static str, Bytes>,
    timers: lazy::Lazy<'t, (u64, &'static str), Bytes>,
    timer_due: lazy::Lazy<'t, &'static str, u64>,
    effects: lazy::Lazy<'t, &'static str, Bytes>,
    parked: lazy::Lazy<'t, u64, Bytes>,
    stopped: lazy::Lazy<'t, &'static str, ()>,
    skipped: lazy::Lazy<'t, u64, Bytes>,
    command_queue: lazy::Lazy<'t, u64, Bytes>,
    cascades: lazy::Lazy<'t, &'static str, Bytes>,
    plugins: lazy::Lazy<'t, &'static str, Bytes>,
    components: lazy::Lazy<'t, &'static str, Bytes>,
    artifacts: lazy::Lazy<'t, &'static str, Bytes>,
    plugin_versions: lazy::Lazy<'t, (&'static str, u64), Bytes>,
    plugin_active: lazy::Lazy<'t, &'static str, u64>,
    idempotency: lazy::Lazy<'t, &'static str, &'static str>,
    cascade_budgets: lazy::Lazy<'t, &'static str, u64>,
    stop_reasons: lazy::Lazy<'t, &'static str, &'static str>,
    rm_docs: lazy::Lazy<'t, (&'static str, &'static str), Bytes>,
    rm_index: lazy::Lazy<'t, (&'static str, &'static str, &'static str, &'static str), ()>,
    rm_indexed: lazy::Lazy<'t, &'static str, Bytes>,
    /// The log head, read on first use (a read view that only queries
    /// documents never touches the events) and kept by appends.
    head: std::cell::Cell<Option<u64>>,
}

impl<'t> Tx<'t> {
    fn open(txn: lazy::Txn<'t>) -> Result<Tx<'t>, StoreError> {
        Ok(Tx {
            txn,
            meta: lazy::Lazy::new(txn, META),
            events: lazy::Lazy::new(txn, EVENTS),
            streams: lazy::Lazy::new(txn, STREAMS),
            instances: lazy::Lazy::new(txn, INSTANCES),
            timers: lazy::Lazy::new(txn, TIMERS),
            timer_due: lazy::Lazy::new(txn, TIMER_DUE),
            effects: lazy::Lazy::new(txn, EFFECTS),
            parked: lazy::Lazy::new(txn, PARKED),
            stopped: lazy::Lazy::new(txn, STOPPED),
            skipped: lazy::Lazy::new(txn, SKIPPED),
            command_queue: lazy::Lazy::new(txn, COMMAND_QUEUE),
            cascades: lazy::Lazy::new(txn, CASCADES),
            plugins: lazy::Lazy::new(txn, PLUGINS),
            components: lazy::Lazy::new(txn, COMPONENTS),
            artifacts: lazy::Lazy::new(txn, ARTIFACTS),
            plugin_versions: lazy::Lazy::new(txn, PLUGIN_VERSIONS),
            plugin_active: lazy::Lazy::new(txn, PLUGIN_ACTIVE),
            idempotency: lazy::Lazy::new(txn, IDEMPOTENCY),
            cascade_budgets: lazy::Lazy::new(txn, CASCADE_BUDGETS),
            stop_reasons: lazy::Lazy::new(txn, STOP_REASONS),
            rm_docs: lazy::Lazy::new(txn, RM_DOCS),
            rm_index: lazy::Lazy::new(txn, RM_INDEX),
            rm_indexed: lazy::Lazy::new(txn, RM_INDEXED),
            head: std::cell::Cell::new(None),
        })
    }

    /// Create every table of a new file, so that readers on read
    /// transactions find them all.
    fn create_tables(&mut self) -> Result<(), StoreError> {
        self.meta.write()?;
        self.events.write()?;
        self.streams.write()?;
        self.instances.write()?;
        self.timers.write()?;
        self.timer_due.write()?;
        self.effects.write()?;
        self.parked.write()?;
        self.stopped.write()?;
        self.skipped.write()?;
        self.command_queue.write()?;
        self.cascades.write()?;
        self.plugins.write()?;
        self.components.write()?;
        self.artifacts.write()?;
        self.plugin_versions.write()?;
        self.plugin_active.write()?;
        self.idempotency.write()?;
        self.cascade_budgets.write()?;
        self.stop_reasons.write()?;
        self.rm_docs.write()?;
        self.rm_index.write()?;
        self.rm_indexed.write()?;
        Ok(())
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("records serialize")
}

/// An event as stored: its record (which holds its position), sealed with
/// a checksum.
fn encode_event(event: &Event) -> Vec<u8> {
    sealed::seal(&[], encode(event))
}

/// The event stored at `position`, if its checksum holds and it says it is
/// at that position.
fn decode_event(position: u64, stored: &[u8]) -> Result<Event, StoreError> {
    let body = sealed::unseal(EVENTS.name(), || format!("event #{position}"), &[], stored)?;
    let event: Event = decode(EVENTS.name(), body)?;
    if event.position != position {
        return Err(StoreError::Corrupt {
            table: EVENTS.name(),
            message: format!("the record at position {position} says it is event #{}", event.position),
        });
    }
    Ok(event)
}

/// A stream head as stored, sealed with a checksum of it and its stream.
fn encode_head(stream_type: &str, stream_id: &str, head: &StreamHead) -> Vec<u8> {
    sealed::seal(&head_key(stream_type, stream_id), encode(head))
}

/// A stream's head, if its checksum holds.
fn decode_head(stream_type: &str, stream_id: &str, stored: &[u8]) -> Result<StreamHead, StoreError> {
    let what = || format!("the head of stream `{stream_type}:{stream_id}`");
    let body = sealed::unseal(STREAMS.name(), what, &head_key(stream_type, stream_id), stored)?;
    decode(STREAMS.name(), body)
}

fn head_key(stream_type: &str, stream_id: &str) -> Vec<u8> {
    [stream_type.as_bytes(), b"\0", stream_id.as_bytes()].concat()
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    })
}

/// `events` as appended after log position `head` and version `version`
/// of `stream` (type, id): the one place events get their positions and
/// envelope.
pub(crate) fn stamped(
    events: Vec<NewEvent>,
    head: u64,
    (stream_type, stream_id): (&str, &str),
    version: u64,
    envelope: &Envelope,
) -> Vec<Event> {
    let created_at = now_millis();
    (1..)
        .zip(events)
        .map(|(offset, new)| Event {
            position: head + offset,
            name: new.name,
            stream_type: stream_type.to_owned(),
            stream_id: stream_id.to_owned(),
            stream_version: version + offset,
            payload: new.payload,
            metadata: envelope.metadata.clone(),
            actor_id: envelope.actor_id.clone(),
            causation_id: envelope.causation_id.clone(),
            correlation_id: envelope.correlation_id.clone(),
            created_at,
        })
        .collect()
}

/// The versions pruning forgets: all but the newest `keep`, never the active one.
pub(crate) fn to_forget(versions: &[PluginVersion], active: Option<u64>, keep: usize) -> Vec<u64> {
    versions
        .iter()
        .rev()
        .skip(keep)
        .map(|v| v.version)
        .filter(|v| Some(*v) != active)
        .collect()
}

/// The component hash an artifact key starts with (its key is the hash, a
/// dash, and the engine's fingerprint).
pub(crate) fn artifact_hash(key: &str) -> &str {
    key.split_once('-').map_or(key, |(hash, _)| hash)
}

pub(crate) fn now_millis() -> u64 {
    crate::clock::now_millis()
}

/// redb's errors as the store's: a storage error with redb's message, on
/// one line, said once (no `source`, so a printed chain does not repeat it).
macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(err: $ty) -> Self {
                StoreError::Backend {
                    message: crate::text::one_line(&err.to_string()),
                }
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

#[cfg(test)]
mod tests {
    use super::*;

    /// A redb error says its cause once, however the chain is printed.
    #[test]
    fn a_redb_error_names_its_cause_once() {
        let err = anyhow::Error::from(crate::error::Error::Store(StoreError::from(redb::Error::RepairAborted)));
        let text = format!("{err:#}");
        assert_eq!(text.to_lowercase().matches("repair aborted").count(), 1, "{text}");
    }
    use crate::error::ConcurrencyError;
    use crate::event::{Envelope, NewEvent};

    fn envelope() -> Envelope {
        Envelope {
            metadata: "{}".into(),
            causation_id: "c1".into(),
            correlation_id: "c1".into(),
            ..Envelope::default()
        }
    }

    fn created(name: &str) -> NewEvent {
        NewEvent {
            name: "UserCreated".into(),
            payload: format!(r#"{{"name":"{name}"}}"#),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cascade.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn positions_are_gapless_and_stream_versions_count_per_stream() {
        let (_dir, store) = store();
        store
            .write(|tx| {
                tx.append("users", "u1", 0, &[created("a"), created("b")], &envelope(), None)?
                    .unwrap();
                tx.append("users", "u2", 0, &[created("c")], &envelope(), None)?
                    .unwrap();
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let log = store.reader().read_log(1, 10).unwrap();
        assert_eq!(log.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 2, 3]);
        let u1 = store.reader().read_stream("users", "u1").unwrap();
        assert_eq!(u1.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(store.reader().read_stream("users", "u2").unwrap()[0].position, 3);
        assert_eq!(store.reader().read_log(3, 10).unwrap().len(), 1);
    }

    #[test]
    fn append_with_a_stale_version_is_a_concurrency_error_and_writes_nothing() {
        let (_dir, store) = store();
        store
            .write(|tx| {
                tx.append("users", "u1", 0, &[created("a")], &envelope(), None)?
                    .unwrap();
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let conflict = store
            .write(|tx| tx.append("users", "u1", 0, &[created("b")], &envelope(), None))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            conflict,
            ConcurrencyError {
                stream: "users:u1".into(),
                expected: 0,
                actual: 1
            }
        );
        assert_eq!(
            conflict.to_string(),
            "concurrency conflict on stream `users:u1`: expected version 0, found 1"
        );
        assert_eq!(store.reader().read_log(1, 10).unwrap().len(), 1);
    }

    #[test]
    fn an_error_inside_write_rolls_the_whole_transaction_back() {
        let (_dir, store) = store();
        let result: Result<(), StoreError> = store.write(|tx| {
            tx.append("users", "u1", 0, &[created("a")], &envelope(), None)?
                .unwrap();
            Err(StoreError::Corrupt {
                table: "test",
                message: "injected".into(),
            })
        });
        assert!(result.is_err());
        assert!(store.reader().read_log(1, 10).unwrap().is_empty());
        assert_eq!(store.read(|tx| tx.head()).unwrap(), 0);
    }

    /// `users:u1`'s first event, as an older file would hold it.
    fn first_event() -> Event {
        Event {
            position: 1,
            name: "UserCreated".into(),
            stream_type: "users".into(),
            stream_id: "u1".into(),
            stream_version: 1,
            payload: r#"{"name":"Ada"}"#.into(),
            metadata: "{}".into(),
            actor_id: None,
            causation_id: "c1".into(),
            correlation_id: "c1".into(),
            created_at: 0,
        }
    }

    #[test]
    fn a_schema_1_file_is_sealed_when_opened_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cascade.redb");
        let event = first_event();
        {
            // What the first version wrote: records without checksums.
            let store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    tx.meta.write()?.insert(META_SCHEMA, 1)?;
                    tx.events.write()?.insert(1, encode(&event).as_slice())?;
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.reader().read_log(1, 10).unwrap(), [event]);
        assert!(store.verify().unwrap().is_ok());
        let schema = store
            .read(|tx| Ok::<_, StoreError>(tx.meta.read()?.get(META_SCHEMA)?.map(|v| v.value())))
            .unwrap();
        assert_eq!(schema, Some(SCHEMA_VERSION));
    }

    #[test]
    fn a_schema_2_file_gets_its_stream_tables_merged_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cascade.redb");
        let event = first_event();
        let head = StreamHead {
            version: 1,
            state: Some(br#"{"name":"Ada"}"#.to_vec()),
        };
        {
            // What schema 2 wrote: heads, the index and checkpoints apart.
            const OLD_STREAMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("streams");
            const OLD_INDEX: TableDefinition<(&str, &str, u64), u64> = TableDefinition::new("stream_events");
            const OLD_CHECKPOINTS: TableDefinition<&str, u64> = TableDefinition::new("checkpoints");
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert(META_SCHEMA, 2).unwrap();
            txn.open_table(META).unwrap().insert(META_PIPELINE, 1).unwrap();
            txn.open_table(EVENTS)
                .unwrap()
                .insert(1, encode_event(&event).as_slice())
                .unwrap();
            txn.open_table(OLD_STREAMS)
                .unwrap()
                .insert(("users", "u1"), encode(&head).as_slice())
                .unwrap();
            txn.open_table(OLD_INDEX)
                .unwrap()
                .insert(("users", "u1", 1), 1)
                .unwrap();
            txn.open_table(OLD_CHECKPOINTS).unwrap().insert("welcome", 1).unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.reader().read_stream("users", "u1").unwrap(), [event]);
        let (stored_head, checkpoint) = store
            .read(|tx| Ok::<_, StoreError>((tx.stream("users", "u1")?, tx.checkpoint("welcome")?)))
            .unwrap();
        assert_eq!(stored_head, head);
        assert_eq!(checkpoint, Some(1));
        let verification = store.verify().unwrap();
        assert!(verification.is_ok(), "{:?}", verification.problems);
        assert_eq!((verification.streams, verification.checkpoints), (1, 1));
        let txn = store.db.begin_read().unwrap();
        let tables: Vec<String> = txn.list_tables().unwrap().map(|t| t.name().to_owned()).collect();
        for old in ["streams", "stream_events", "checkpoints"] {
            assert!(!tables.iter().any(|t| t == old), "`{old}` is still there: {tables:?}");
        }
        assert_eq!(tables.len(), TABLE_COUNT, "{tables:?}");
    }

    #[test]
    fn a_schema_7_file_gets_what_the_quotas_bound_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cascade.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    let timer = |name: &str| crate::records::Timer {
                        plugin: "deadline".into(),
                        instance: "o1".into(),
                        name: name.into(),
                        due: 5,
                        payload: "{}".into(),
                    };
                    tx.put_timer(&timer("a"))?;
                    tx.put_timer(&timer("b"))?;
                    tx.rm_put("projects", "p1", r#"{"n":1}"#)?;
                    // What schema 7 wrote: no counts.
                    let keys: Vec<String> = tx
                        .meta
                        .read()?
                        .iter()?
                        .map(|e| e.map(|(k, _)| k.value().to_owned()))
                        .collect::<Result<_, _>>()?;
                    for key in keys.iter().filter(|k| k.contains('/')) {
                        tx.meta.write()?.remove(key.as_str())?;
                    }
                    assert_eq!(tx.timer_count("deadline")?, 0);
                    tx.meta.write()?.insert(META_SCHEMA, 7)?;
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let counts = store
            .read(|tx| Ok::<_, StoreError>((tx.timer_count("deadline")?, tx.rm_bytes("projects")?)))
            .unwrap();
        assert_eq!(counts, (2, 9));
    }

    #[test]
    fn a_schema_6_file_keeps_its_listeners_reads_as_an_explicit_grant() {
        /// What schema 6 wrote for a plugin: its manifest and secrets as JSON text.
        #[derive(serde::Serialize)]
        struct Record6 {
            name: &'static str,
            kind: crate::records::PluginKind,
            hash: &'static str,
            order: u64,
            source: &'static str,
            manifest: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cascade.redb");
        let manifest = r#"[{"capabilities":{"dispatch":["project.delete"],"http":[]},"limits":{"time-budget-ms":null,
            "memory-mib":null,"max-dispatches":null,"cascade-budget":null},"on-error":{"attempts":3,"policy":"park"},
            "effects":{"attempts":5,"backoff-ms":1000,"timeout-ms":10000,"max-response-bytes":65536,"concurrency":8},
            "config":{}},{"token":"\"t\""}]"#;
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    tx.meta.write()?.insert(META_SCHEMA, 6)?;
                    for (name, kind) in [
                        ("project-cascade", crate::records::PluginKind::ProcessManager),
                        ("project", crate::records::PluginKind::Aggregate),
                    ] {
                        let record = Record6 {
                            name,
                            kind,
                            hash: "h1",
                            order: 0,
                            source: "x.wasm",
                            manifest: manifest.to_owned(),
                        };
                        tx.plugins.write()?.insert(name, encode(&record).as_slice())?;
                    }
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let plugins = store.read(|tx| tx.plugins()).unwrap();
        let reads = |name: &str| {
            let plugin = plugins.iter().find(|p| p.name == name).unwrap();
            assert_eq!(plugin.exports, None, "not recorded yet");
            assert_eq!(plugin.manifest.capabilities.dispatch, ["project.delete"]);
            assert_eq!(plugin.manifest.secrets["token"], "\"t\"");
            plugin.manifest.capabilities.read.clone()
        };
        assert_eq!(reads("project-cascade"), ["*"]);
        assert!(reads("project").is_empty(), "an aggregate reads no read model");
    }

    #[test]
    fn a_schema_5_file_gets_its_manifests_as_json_and_keeps_every_grant_and_config_value() {
        /// What schema 5 wrote for a plugin: a postcard manifest without grants or `[effects]`.
        #[derive(serde::Serialize)]
        struct Manifest5 {
            capabilities: (Vec<String>,),
            limits: (Option<u64>, Option<usize>, Option<usize>, Option<usize>),
            on_error: crate::manifest::OnError,
            config: std::collections::BTreeMap<String, String>,
        }
        #[derive(serde::Serialize)]
        struct Record5 {
            name: &'static str,
            kind: crate::records::PluginKind,
            hash: &'static str,
            order: u64,
            source: &'static str,
            manifest: Manifest5,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cascade.redb");
        let manifest = || Manifest5 {
            capabilities: (vec!["inventory.release".to_owned()],),
            limits: Default::default(),
            on_error: Default::default(),
            config: [("deadline-ms".to_owned(), "1800000".to_owned())].into(),
        };
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    tx.meta.write()?.insert(META_SCHEMA, 5)?;
                    let record = Record5 {
                        name: "payment-deadline",
                        kind: crate::records::PluginKind::ProcessManager,
                        hash: "h1",
                        order: 0,
                        source: "payment-deadline.wasm",
                        manifest: manifest(),
                    };
                    tx.plugins
                        .write()?
                        .insert("payment-deadline", encode(&record).as_slice())?;
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let plugins = store.read(|tx| tx.plugins()).unwrap();
        let upgraded = &plugins[0].manifest;
        assert_eq!(upgraded.capabilities.dispatch, ["inventory.release"]);
        assert!(upgraded.capabilities.http.is_empty(), "no grant added");
        assert_eq!(
            upgraded.capabilities.read,
            ["*"],
            "the reads it had, as an explicit grant"
        );
        assert_eq!(plugins[0].exports, None);
        assert_eq!(upgraded.config["deadline-ms"], "1800000");
        assert_eq!(upgraded.effects, crate::manifest::EffectPolicy::default());
    }

    #[test]
    fn a_schema_3_file_gets_its_heads_and_artifacts_sealed_and_verify_then_catches_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cascade.redb");
        let head = StreamHead {
            version: 1,
            state: Some(br#"{"created":true}"#.to_vec()),
        };
        let artifact = Packed::new(b"\x7fELF native code");
        {
            // What schema 3 wrote: heads and artifacts without checksums.
            let store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    tx.meta.write()?.insert(META_SCHEMA, 3)?;
                    tx.events.write()?.insert(1, encode_event(&first_event()).as_slice())?;
                    tx.streams
                        .write()?
                        .insert(("users", "u1", HEAD), encode(&head).as_slice())?;
                    tx.streams
                        .write()?
                        .insert(("users", "u1", 1), 1u64.to_le_bytes().as_slice())?;
                    tx.artifacts.write()?.insert("h1-engine", artifact.as_bytes())?;
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let (stored_head, stored_artifact) = store
            .read(|tx| Ok::<_, StoreError>((tx.stream("users", "u1")?, tx.artifact("h1-engine")?)))
            .unwrap();
        assert_eq!(stored_head, head);
        assert_eq!(stored_artifact.as_deref(), Some(b"\x7fELF native code".as_slice()));
        let verification = store.verify().unwrap();
        assert!(verification.is_ok(), "{:?}", verification.problems);
        assert_eq!((verification.streams, verification.artifacts), (1, 1));

        // A changed aggregate state or artifact is named, never used.
        store
            .write(|tx| {
                let mut changed = encode_head("users", "u1", &head);
                changed[3] ^= 1;
                tx.streams.write()?.insert(("users", "u1", HEAD), changed.as_slice())?;
                let mut changed = sealed::seal(b"h1-engine", artifact.as_bytes().to_vec());
                changed[5] ^= 1;
                tx.artifacts.write()?.insert("h1-engine", changed.as_slice())?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let head_err = store.read(|tx| tx.stream("users", "u1")).unwrap_err();
        assert!(matches!(head_err, StoreError::Checksum { .. }), "{head_err}");
        let artifact_err = store.read(|tx| tx.artifact("h1-engine")).unwrap_err();
        assert!(matches!(artifact_err, StoreError::Checksum { .. }), "{artifact_err}");
        let problems = store.verify().unwrap().problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.contains("the head of stream `users:u1`")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("artifact `h1-engine`")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_redb_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let count = std::cell::Cell::new(0);
        conformance::run(|| {
            count.set(count.get() + 1);
            Store::open(&dir.path().join(format!("store-{}.redb", count.get()))).unwrap()
        });
    }

    #[test]
    fn the_in_memory_store_passes_the_conformance_suite() {
        conformance::run(MemoryStore::new);
    }

    #[test]
    fn a_store_behind_the_erased_type_passes_the_conformance_suite() {
        conformance::run(|| AnyStore::from(MemoryStore::new()));
        let dir = tempfile::tempdir().unwrap();
        let count = std::cell::Cell::new(0);
        conformance::run(|| {
            count.set(count.get() + 1);
            AnyStore::from(Store::open(&dir.path().join(format!("any-{}.redb", count.get()))).unwrap())
        });
    }

    #[test]
    fn the_suite_catches_a_store_that_breaks_a_promise() {
        /// The in-memory store, except that a failed unit of work keeps its writes.
        #[derive(Clone)]
        struct Leaky(MemoryStore);
        impl Backend for Leaky {
            type Tx<'t> = memory::MemoryTx;
            fn write<R, E: From<StoreError>>(
                &self,
                f: impl FnOnce(&mut memory::MemoryTx) -> Result<R, E>,
            ) -> Result<R, E> {
                let mut kept = None;
                let result = self.0.write(|tx| {
                    let result = f(tx);
                    kept = Some(tx.clone());
                    Ok::<_, E>(result)
                })?;
                if result.is_err() {
                    self.0.write(|tx| {
                        *tx = kept.take().expect("set above");
                        Ok::<_, StoreError>(())
                    })?;
                }
                result
            }
            fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&memory::MemoryTx) -> Result<R, E>) -> Result<R, E> {
                self.0.read(f)
            }
        }
        let caught = std::panic::catch_unwind(|| conformance::run(|| Leaky(MemoryStore::new())));
        let message = *caught.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.starts_with("store conformance: an Err rolls the whole unit of work back: "),
            "{message}"
        );
    }

    #[test]
    fn a_new_file_has_every_table_and_a_read_only_open_reads_it_and_writes_nothing() {
        let (dir, store) = store();
        let count = store.read(|tx| Ok::<_, StoreError>(tx.events.read()?.len()?)).unwrap();
        assert_eq!(count, 0);
        let txn = store.db.begin_read().unwrap();
        assert_eq!(
            txn.list_tables().unwrap().count(),
            TABLE_COUNT,
            "TABLE_COUNT is every table"
        );
        drop(txn);
        store
            .write(|tx| {
                tx.append("users", "u1", 0, &[created("a")], &envelope(), None)?
                    .unwrap();
                let record = crate::records::InstanceRecord {
                    state: Some(b"{}".to_vec()),
                    last_position: 1,
                };
                tx.put_instance("counter", "singleton", &record)
            })
            .unwrap();
        drop(store);
        let path = dir.path().join("cascade.redb");
        let before = std::fs::read(&path).unwrap();
        let reader = Store::open_read_only(&path, 1 << 20).unwrap();
        let other = Store::open_read_only(&path, 1 << 20).expect("read-only opens share the file");
        assert!(reader.is_read_only());
        assert_eq!(reader.reader().read_log(1, 10).unwrap().len(), 1);
        assert_eq!(
            other
                .read(|tx| tx.instance("counter", "singleton"))
                .unwrap()
                .and_then(|i| i.state)
                .as_deref(),
            Some(b"{}".as_slice())
        );
        assert!(reader.verify().unwrap().is_ok());
        let refused = reader.write(|tx| tx.set_checkpoint("counter", 1)).unwrap_err();
        assert!(matches!(refused, StoreError::ReadOnly), "{refused}");
        // A writer is excluded while they read.
        assert!(matches!(Store::open(&path).err(), Some(StoreError::Busy { .. })));
        drop((reader, other));
        assert_eq!(std::fs::read(&path).unwrap(), before, "reading changed no byte");
    }

    #[test]
    fn a_file_from_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cascade.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    tx.meta.write()?.insert(META_SCHEMA, SCHEMA_VERSION + 1)?;
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
        assert!(err.to_string().contains("upgrade cascade"), "{err}");
    }

    #[test]
    fn the_stream_head_keeps_version_and_state_together() {
        let (_dir, store) = store();
        let head = store
            .write(|tx| {
                tx.append("users", "u1", 0, &[created("a")], &envelope(), Some(b"s1".to_vec()))?
                    .unwrap();
                tx.append("users", "u1", 1, &[created("b")], &envelope(), None)?
                    .unwrap();
                tx.stream("users", "u1")
            })
            .unwrap();
        assert_eq!(
            head,
            StreamHead {
                version: 2,
                state: Some(b"s1".to_vec())
            }
        );
    }
}

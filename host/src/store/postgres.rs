//! The PostgreSQL store: the same tables as the redb file, in one database,
//! for hosts that outgrow one machine.
//!
//! # Invariants
//!
//! - One writer at a time: every write transaction first takes a
//!   transaction-scoped advisory lock ([`WRITER_LOCK`]), held until it
//!   commits or rolls back. Positions are assigned under that lock from the
//!   committed head, so they are gapless and become visible in commit order:
//!   a reader never sees position `n + 1` before `n` (the lock is released
//!   only after the commit is visible), and no sequence can leave a hole
//!   behind a rolled-back transaction. Several processes on one database
//!   serialise the same way.
//! - A read view is a `REPEATABLE READ READ ONLY` transaction: a snapshot of
//!   the last commit, taken without any lock, so reads never block the
//!   writer and the writer never blocks them.
//! - Keys a user chooses (stream ids, instance ids, document ids, index
//!   values) are stored as `bytea`: ordered byte by byte like the redb
//!   store's keys, and able to hold any string, NUL included.
//!
//! Records are encoded as the redb store encodes them (postcard; manifests
//! as JSON text), so a record means the same in either store.
//!
//! The accessors live in `postgres/tables.rs`, by trait.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use postgres::{Client, IsolationLevel, NoTls, Row, Statement, Transaction, types::ToSql};

use super::SCHEMA_VERSION;
use super::traits::Backend;
use crate::error::StoreError;

mod pending;
mod tables;
mod verify;

/// The advisory lock every write transaction holds (any constant unlikely
/// to be used by another application on the same database: "cascade" in
/// ASCII).
const WRITER_LOCK: i64 = 0x0063_6173_6361_6465;

/// The tables, created when missing. `meta` holds counters, the schema
/// version, checkpoints and other small numbers by key, as in redb.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cascade_meta (key bytea PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_events (
    position bigint PRIMARY KEY,
    stream_type bytea NOT NULL,
    stream_id bytea NOT NULL,
    stream_version bigint NOT NULL,
    body bytea NOT NULL);
CREATE INDEX IF NOT EXISTS cascade_events_stream ON cascade_events (stream_type, stream_id, stream_version);
CREATE TABLE IF NOT EXISTS cascade_streams (
    stream_type bytea, stream_id bytea, version bigint NOT NULL, state bytea,
    PRIMARY KEY (stream_type, stream_id));
CREATE TABLE IF NOT EXISTS cascade_queue (seq bigint PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_cascades (correlation_id bytea PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_idempotency (key bytea PRIMARY KEY, correlation_id bytea NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_budgets (correlation_id bytea PRIMARY KEY, budget bigint NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_parked (id bigint PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_skipped (id bigint PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_stopped (name bytea PRIMARY KEY, reason bytea);
CREATE TABLE IF NOT EXISTS cascade_instances (
    plugin bytea, id bytea, state_bytes bigint NOT NULL, body bytea NOT NULL,
    PRIMARY KEY (plugin, id));
CREATE TABLE IF NOT EXISTS cascade_timers (
    plugin bytea, instance bytea, name bytea, due bigint NOT NULL, payload bytea NOT NULL,
    PRIMARY KEY (plugin, instance, name));
CREATE INDEX IF NOT EXISTS cascade_timers_due ON cascade_timers (due, plugin, instance, name);
CREATE TABLE IF NOT EXISTS cascade_effects (key bytea PRIMARY KEY, plugin bytea NOT NULL, body bytea NOT NULL);
CREATE INDEX IF NOT EXISTS cascade_effects_plugin ON cascade_effects (plugin);
CREATE TABLE IF NOT EXISTS cascade_plugins (name bytea PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_versions (
    name bytea, version bigint, body bytea NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS cascade_active (name bytea PRIMARY KEY, version bigint NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_components (hash bytea PRIMARY KEY, bytes bytea NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_artifacts (key bytea PRIMARY KEY, bytes bytea NOT NULL);
CREATE TABLE IF NOT EXISTS cascade_docs (
    collection bytea, id bytea, doc bytea NOT NULL, PRIMARY KEY (collection, id));
CREATE TABLE IF NOT EXISTS cascade_index (
    collection bytea, field bytea, key bytea, id bytea, PRIMARY KEY (collection, field, key, id));
CREATE TABLE IF NOT EXISTS cascade_indexed (collection bytea PRIMARY KEY, fields bytea NOT NULL);
";

/// One connection and the statements prepared on it (prepared statements
/// belong to the session, so they outlive the transactions that made them).
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// A statement on it failed for want of the server: the client may not
    /// have noticed yet (`is_closed`), but the session, and with it any
    /// lock it held, is gone.
    broken: bool,
}

/// The connections of one store: the writer's, and idle readers' for reuse.
struct Pool {
    url: String,
    mode: Mode,
    writer: Mutex<Option<Conn>>,
    readers: Mutex<Vec<Conn>>,
}

/// Who else may write to the database while this handle is open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Any other handle too (each unit of work still runs alone).
    Shared,
    /// No other exclusive handle: the writer's connection holds
    /// [`HOST_LOCK`] for as long as it lives.
    Exclusive,
    /// This handle never writes.
    ReadOnly,
}

/// The session-level advisory lock an exclusive handle's writer connection
/// holds: one Cascade host writes to a database at a time. PostgreSQL
/// releases it when the connection ends, so a host that dies (or loses
/// its connection) lets the next one in.
const HOST_LOCK: i64 = WRITER_LOCK + 1;

/// Idle readers' connections kept for reuse; more are closed after use.
const IDLE_READERS: usize = 8;

/// A Cascade database on a PostgreSQL server; clones share its connections.
#[derive(Clone)]
pub struct PgStore {
    pool: Arc<Pool>,
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://USER@HOST:PORT/DB`),
    /// creating Cascade's tables when missing. Other handles may write to
    /// the same database; each unit of work still runs alone.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached;
    /// [`StoreError::NewerSchema`] for a database a newer Cascade wrote.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_as(url, Mode::Shared)
    }

    /// [`PgStore::open`] for the one host that writes: while this handle
    /// lives no other exclusive handle opens.
    ///
    /// # Errors
    ///
    /// [`StoreError::Busy`] while another host holds the database; as
    /// [`PgStore::open`].
    pub fn open_exclusive(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_as(url, Mode::Exclusive)
    }

    /// [`PgStore::open`] for a command that only reads: every write is
    /// refused with [`StoreError::ReadOnly`].
    ///
    /// # Errors
    ///
    /// As [`PgStore::open`].
    pub fn open_read_only(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_as(url, Mode::ReadOnly)
    }

    fn open_as(url: &str, mode: Mode) -> Result<PgStore, StoreError> {
        let store = PgStore {
            pool: Arc::new(Pool {
                url: url.to_owned(),
                mode,
                writer: Mutex::new(None),
                readers: Mutex::new(Vec::new()),
            }),
        };
        match mode {
            // A reader takes no lock and writes nothing: it checks.
            Mode::ReadOnly => blocking(|| store.read(|tx| tx.check_schema(url)))?,
            // Under the writer's lock, so that two hosts starting at once do not race.
            _ => store.on_writer(|tx| tx.create_schema(url))?,
        }
        Ok(store)
    }

    /// Run `f` in a transaction on the writer's connection, under the
    /// writer's lock; send what it held back and commit if it returns `Ok`.
    fn on_writer<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut PgTx<'_>) -> Result<R, E>) -> Result<R, E> {
        blocking(|| {
            let mut writer = self.writer()?;
            let Conn {
                client,
                statements,
                broken,
            } = writer.as_mut().expect("connected above");
            let txn = client.transaction().map_err(|err| lost(broken, err))?;
            let mut tx = PgTx::new(txn, statements);
            let result = tx
                .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])
                .map_err(E::from)
                .and_then(|_| f(&mut tx))
                .and_then(|value| tx.flush().map(|()| value).map_err(E::from));
            *broken |= tx.broken.get();
            let value = result?;
            tx.txn.into_inner().commit().map_err(|err| lost(broken, err))?;
            Ok(value)
        })
    }

    /// Whether writes are refused ([`PgStore::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.pool.mode == Mode::ReadOnly
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let client = Client::connect(&self.pool.url, NoTls).map_err(|e| unavailable(&self.pool.url, &e))?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
            broken: false,
        })
    }

    /// The writer's connection, connected again if the last one broke
    /// (except for an exclusive handle, see below).
    fn writer(&self) -> Result<MutexGuard<'_, Option<Conn>>, StoreError> {
        let mut writer = lock(&self.pool.writer);
        if writer
            .as_ref()
            .is_none_or(|conn| conn.broken || conn.client.is_closed())
        {
            // The host's lock went with the connection, and another host
            // may have written since: this one's checkpoints and plugins in
            // memory are stale, so it never writes again (restart it).
            if writer.is_some() && self.pool.mode == Mode::Exclusive {
                return Err(StoreError::Unavailable {
                    store: redacted(&self.pool.url),
                    message: "the connection that held this host's lock on the database was lost, \
                              and another host may have taken over; restart this one"
                        .into(),
                });
            }
            let mut conn = self.connect()?;
            if self.pool.mode == Mode::Exclusive {
                let row = conn
                    .client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&HOST_LOCK])
                    .map_err(from_pg)?;
                if !row.get::<_, bool>(0) {
                    return Err(StoreError::Busy {
                        path: redacted(&self.pool.url),
                        holder: "another Cascade host".into(),
                    });
                }
            }
            *writer = Some(conn);
        }
        Ok(writer)
    }

    /// An idle reader's connection back to the pool, unless enough wait.
    fn idle(&self, conn: Conn) {
        let mut readers = lock(&self.pool.readers);
        if readers.len() < IDLE_READERS {
            readers.push(conn);
        }
    }

    fn reader(&self) -> Result<Conn, StoreError> {
        let idle = lock(&self.pool.readers).pop();
        match idle {
            Some(conn) if !conn.broken && !conn.client.is_closed() => Ok(conn),
            _ => self.connect(),
        }
    }
}

/// Run `f`, which blocks on the client's own runtime: from a worker of a
/// multi-threaded tokio runtime (a server's handler), tell tokio first, or
/// the client's `block_on` would refuse to run inside it.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Drop for Pool {
    /// A client closes by blocking on its own runtime, which tokio refuses
    /// inside async code: from there, the connections close on a thread of
    /// their own.
    fn drop(&mut self) {
        let writer = self.writer.get_mut().map(Option::take).unwrap_or(None);
        let readers = std::mem::take(self.readers.get_mut().unwrap_or_else(|p| p.into_inner()));
        if tokio::runtime::Handle::try_current().is_ok() {
            let closing = std::thread::spawn(move || drop((writer, readers)));
            let _ = closing.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a transaction leaves the connection usable: its
    // transaction rolled back when dropped.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Backend for PgStore {
    type Tx<'t> = PgTx<'t>;

    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut PgTx<'_>) -> Result<R, E>) -> Result<R, E> {
        if self.is_read_only() {
            return Err(StoreError::ReadOnly.into());
        }
        self.on_writer(f)
    }

    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&PgTx<'_>) -> Result<R, E>) -> Result<R, E> {
        blocking(|| {
            let mut conn = self.reader()?;
            let value = {
                let Conn { client, statements, .. } = &mut conn;
                let txn = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .map_err(from_pg)?;
                let tx = PgTx::new(txn, statements);
                let value = f(&tx)?;
                tx.txn.into_inner().commit().map_err(from_pg)?;
                value
            };
            self.idle(conn);
            Ok(value)
        })
    }
}

/// One transaction on one connection. The accessors take `&self` for reads,
/// as the traits do, so the transaction sits in a cell.
pub struct PgTx<'t> {
    txn: RefCell<Transaction<'t>>,
    statements: RefCell<&'t mut HashMap<&'static str, Statement>>,
    /// The log head, read on first use and kept by appends.
    head: Cell<Option<u64>>,
    /// Writes held back until commit (see `pending.rs`).
    pending: RefCell<pending::Pending>,
    /// A statement failed for want of the server (see [`Conn::broken`]).
    broken: Cell<bool>,
}

impl<'t> PgTx<'t> {
    fn new(txn: Transaction<'t>, statements: &'t mut HashMap<&'static str, Statement>) -> PgTx<'t> {
        PgTx {
            txn: RefCell::new(txn),
            statements: RefCell::new(statements),
            head: Cell::new(None),
            pending: RefCell::new(pending::Pending::default()),
            broken: Cell::new(false),
        }
    }

    /// `err` as the store's, noting a connection that is gone.
    fn failed(&self, err: postgres::Error) -> StoreError {
        let err = from_pg(err);
        self.broken
            .set(self.broken.get() || matches!(err, StoreError::Unavailable { .. }));
        err
    }

    /// Send the held-back writes, before a read that must see them on the
    /// server (a range of events) and before commit.
    fn flush(&self) -> Result<(), StoreError> {
        if self.pending.borrow().is_empty() {
            return Ok(());
        }
        let sql = self.pending.borrow_mut().take_sql();
        let sent = self.txn.borrow_mut().batch_execute(&sql);
        sent.map_err(|err| self.failed(err))
    }

    /// `sql`, prepared once per connection.
    fn statement(&self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let prepared = self.txn.borrow_mut().prepare(sql);
        let statement = prepared.map_err(|err| self.failed(err))?;
        self.statements.borrow_mut().insert(sql, statement.clone());
        Ok(statement)
    }

    fn query(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let answer = self.txn.borrow_mut().query(&statement, params);
        answer.map_err(|err| self.failed(err))
    }

    fn query_opt(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let answer = self.txn.borrow_mut().query_opt(&statement, params);
        answer.map_err(|err| self.failed(err))
    }

    fn execute(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        let answer = self.txn.borrow_mut().execute(&statement, params);
        answer.map_err(|err| self.failed(err))
    }

    /// Create missing tables and check the schema version.
    fn create_schema(&mut self, url: &str) -> Result<(), StoreError> {
        let created = self.txn.borrow_mut().batch_execute(SCHEMA);
        created.map_err(|err| self.failed(err))?;
        match self.meta(crate::store::META_SCHEMA)? {
            Some(found) => newer_schema(url, found),
            None => self.set_meta(crate::store::META_SCHEMA, SCHEMA_VERSION),
        }
    }

    /// A database to read: Cascade's, of a schema this build reads.
    fn check_schema(&self, url: &str) -> Result<(), StoreError> {
        let row = self.query_opt("SELECT to_regclass('cascade_meta') IS NOT NULL", &[])?;
        if !row.is_some_and(|row| row.get::<_, bool>(0)) {
            return Err(StoreError::NotADataFile {
                path: redacted(url),
                reason: "the database holds no Cascade tables (a command that writes, such as \
                         `cascade plugin add`, creates them)"
                    .into(),
            });
        }
        newer_schema(url, self.meta(crate::store::META_SCHEMA)?.unwrap_or(0))
    }
}

/// `err` as the store's, marking the connection `broken` if it is gone.
fn lost(broken: &mut bool, err: postgres::Error) -> StoreError {
    let err = from_pg(err);
    *broken |= matches!(err, StoreError::Unavailable { .. });
    err
}

/// A database written by a newer Cascade is refused.
fn newer_schema(url: &str, found: u64) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: redacted(url),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// `url` without a password, to name the database in messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "the store".into();
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let rest = match rest.rsplit_once('@') {
        Some((user, host)) => format!("{}@{host}", user.split(':').next().unwrap_or_default()),
        None => rest.to_owned(),
    };
    let query: Vec<&str> = query
        .split('&')
        .filter(|param| !param.is_empty() && !param.starts_with("password="))
        .collect();
    match query.is_empty() {
        true => format!("{scheme}://{rest}"),
        false => format!("{scheme}://{rest}?{}", query.join("&")),
    }
}

fn unavailable(url: &str, err: &postgres::Error) -> StoreError {
    // The server's own refusal (a password, a database that does not
    // exist) says what to fix; only a silence needs the hint.
    let hint = match err.as_db_error() {
        Some(_) => "",
        None => "; check that the server runs and answers at that address",
    };
    StoreError::Unavailable {
        store: redacted(url),
        message: format!("{}{hint}", one_line(err)),
    }
}

/// A PostgreSQL error as the store's: a lost connection (or a session the
/// server ended) is [`StoreError::Unavailable`]; anything else is the
/// server's message.
fn from_pg(err: postgres::Error) -> StoreError {
    let ended = err.as_db_error().is_some_and(|db| {
        let code = db.code().code();
        code.starts_with("08") || code.starts_with("57P")
    });
    if ended || err.is_closed() || std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>()) {
        return StoreError::Unavailable {
            store: "postgres".into(),
            message: one_line(&err),
        };
    }
    StoreError::Backend {
        message: one_line(&err),
    }
}

fn one_line(err: &postgres::Error) -> String {
    let message = match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    };
    message.replace('\n', " ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::conformance;
    use crate::store::traits::Progress;

    /// A database of its own on the test server (`CASCADE_TEST_POSTGRES`,
    /// default the local one), dropped when this is.
    pub(crate) struct TestDb {
        admin: String,
        name: String,
        /// The database's URL.
        pub(crate) url: String,
    }

    impl TestDb {
        pub(crate) fn new(tag: &str) -> TestDb {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let server = std::env::var("CASCADE_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into());
            let (base, _) = server.rsplit_once('/').expect("a URL with a database");
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("cascade_{tag}_{}_{n}", std::process::id());
            let mut admin = Client::connect(&server, NoTls)
                .unwrap_or_else(|e| panic!("no PostgreSQL at `{server}` (set CASCADE_TEST_POSTGRES): {e}"));
            // One statement per call: neither runs inside a transaction.
            for sql in [
                format!("DROP DATABASE IF EXISTS {name}"),
                format!("CREATE DATABASE {name}"),
            ] {
                admin.batch_execute(&sql).expect("the test database is created");
            }
            TestDb {
                url: format!("{base}/{name}"),
                admin: server,
                name,
            }
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Ok(mut admin) = Client::connect(&self.admin, NoTls) {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
            }
        }
    }

    #[test]
    fn the_postgres_store_passes_the_conformance_suite() {
        let dbs = std::cell::RefCell::new(Vec::new());
        let make = || {
            let db = TestDb::new("conformance");
            let store = PgStore::open(&db.url).expect("the store opens");
            dbs.borrow_mut().push(db);
            store
        };
        // Another handle is another pool of connections, as another host has.
        conformance::run_shared(make, |store| {
            PgStore::open(&store.pool.url).expect("the store opens again")
        });
    }

    #[test]
    fn a_server_that_does_not_answer_is_one_line_naming_it() {
        let err = PgStore::open("postgres://ada:secret@127.0.0.1:1/nowhere")
            .err()
            .expect("nothing listens on port 1");
        let message = err.to_string();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{message}");
        assert!(
            message.starts_with("store `postgres://ada@127.0.0.1:1/nowhere` is unavailable: "),
            "{message}"
        );
        assert!(!message.contains("secret") && !message.contains('\n'), "{message}");
    }

    #[test]
    fn a_password_is_never_named() {
        assert_eq!(
            redacted("postgres://ada:secret@db:5432/shop?sslmode=disable&password=s3cret"),
            "postgres://ada@db:5432/shop?sslmode=disable"
        );
        assert_eq!(redacted("host=db password=secret"), "the store");
    }

    #[test]
    fn a_read_only_open_of_an_empty_database_creates_nothing_and_says_so() {
        let db = TestDb::new("empty");
        let err = PgStore::open_read_only(&db.url).err().expect("no Cascade tables");
        assert!(matches!(err, StoreError::NotADataFile { .. }), "{err}");
        assert!(err.to_string().contains("holds no Cascade tables"), "{err}");
        let mut admin = Client::connect(&db.url, NoTls).unwrap();
        let tables: i64 = admin
            .query_one("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'cascade_%'", &[])
            .unwrap()
            .get(0);
        assert_eq!(tables, 0, "a reader writes nothing");
        PgStore::open(&db.url).unwrap();
        PgStore::open_read_only(&db.url).expect("once created, it reads");
    }

    /// A host whose connection (and with it its lock) was lost may have
    /// been replaced: it never writes again, and another host can open.
    #[test]
    fn an_exclusive_host_that_lost_its_connection_never_writes_again() {
        let db = TestDb::new("lost");
        let host = PgStore::open_exclusive(&db.url).unwrap();
        let second = PgStore::open_exclusive(&db.url).err();
        assert!(
            matches!(second, Some(StoreError::Busy { .. })),
            "one host at a time: {second:?}"
        );
        let mut admin = Client::connect(&db.url, NoTls).unwrap();
        admin
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .unwrap();
        let write = || host.write(|tx| tx.set_checkpoint("p", 1));
        assert!(write().is_err(), "the broken connection fails the write");
        let err = write().expect_err("and it is not connected again");
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("restart this one"), "{err}");
        let next = PgStore::open_exclusive(&db.url).expect("another host takes over");
        next.write(|tx| tx.set_checkpoint("p", 2)).unwrap();
        assert!(write().is_err(), "the old host still does not write");
        assert_eq!(next.read(|tx| tx.checkpoint("p")).unwrap(), Some(2));
    }

    #[test]
    fn a_database_of_a_newer_schema_is_refused() {
        let db = TestDb::new("newer");
        let store = PgStore::open(&db.url).expect("the store opens");
        store
            .write(|tx| tx.set_meta(crate::store::META_SCHEMA, SCHEMA_VERSION + 1))
            .unwrap();
        let err = PgStore::open(&db.url).err().expect("a newer schema is refused");
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
    }
}

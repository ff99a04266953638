//! Any store behind one type: [`AnyStore`] is what a runtime runs on, so
//! that the command line, the server and an embedding program use the redb
//! file or a PostgreSQL database the same way. Its transactions are
//! `dyn UnitOfWork`: one indirect call per access, beside a storage engine's
//! own work. [`LogReader`] reads the log of any store from other threads.

use std::sync::Arc;

use super::traits::{Backend, UnitOfWork};
use super::{MemoryStore, PgStore, Store, Verification};
use crate::error::StoreError;
use crate::event::Event;
use crate::records::CascadeRecord;

/// A store of any kind; clones share it.
#[derive(Clone)]
pub struct AnyStore {
    inner: Arc<dyn Erased>,
}

/// A store's transactions with their type erased.
trait Erased: Send + Sync {
    /// One write transaction; `f` says whether it wrote (see
    /// [`Backend::write_if`]) and an `Err` from it rolls back.
    fn write(&self, f: &mut dyn FnMut(&mut dyn UnitOfWork) -> Result<bool, StoreError>) -> Result<(), StoreError>;

    fn read(&self, f: &mut dyn FnMut(&dyn UnitOfWork) -> Result<(), StoreError>) -> Result<(), StoreError>;

    fn verify(&self) -> Result<Verification, StoreError>;
}

macro_rules! erased {
    ($($store:ty),*) => {$(
        impl Erased for $store {
            fn write(
                &self,
                f: &mut dyn FnMut(&mut dyn UnitOfWork) -> Result<bool, StoreError>,
            ) -> Result<(), StoreError> {
                Backend::write_if(self, |tx| f(tx).map(|wrote| ((), wrote)))
            }

            fn read(&self, f: &mut dyn FnMut(&dyn UnitOfWork) -> Result<(), StoreError>) -> Result<(), StoreError> {
                Backend::read(self, |tx| f(tx))
            }

            fn verify(&self) -> Result<Verification, StoreError> {
                <$store>::verify(self)
            }
        }

        impl From<$store> for AnyStore {
            fn from(store: $store) -> AnyStore {
                AnyStore { inner: Arc::new(store) }
            }
        }
    )*};
}

erased!(Store, PgStore, MemoryStore);

/// What an erased transaction returns when the closure failed: only a
/// signal to roll back, never seen by a caller (the closure's own error is).
fn rolled_back() -> StoreError {
    StoreError::Backend {
        message: "rolled back".into(),
    }
}

impl AnyStore {
    /// Check everything the store can check of itself.
    ///
    /// # Errors
    ///
    /// The store cannot be read at all.
    pub fn verify(&self) -> Result<Verification, StoreError> {
        self.inner.verify()
    }

    /// A read-only view of the log for other threads.
    pub fn reader(&self) -> LogReader {
        LogReader { store: self.clone() }
    }

    fn run<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn UnitOfWork) -> Result<(R, bool), E>) -> Result<R, E> {
        let mut f = Some(f);
        let mut out = None;
        let done = self.inner.write(&mut |tx| {
            let f = f.take().expect("a unit of work runs its closure once");
            match f(tx) {
                Ok((value, wrote)) => {
                    out = Some(Ok(value));
                    Ok(wrote)
                }
                Err(err) => {
                    out = Some(Err(err));
                    Err(rolled_back())
                }
            }
        });
        match (out, done) {
            (Some(Err(err)), _) => Err(err),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(err)) => Err(err.into()),
            (None, Ok(())) => unreachable!("a committed unit of work ran its closure"),
        }
    }
}

impl Backend for AnyStore {
    type Tx<'t> = dyn UnitOfWork + 't;

    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut Self::Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        self.run(|tx| f(tx).map(|value| (value, true)))
    }

    fn write_if<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Self::Tx<'_>) -> Result<(R, bool), E>,
    ) -> Result<R, E> {
        self.run(f)
    }

    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&Self::Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        let mut f = Some(f);
        let mut out = None;
        let done = self.inner.read(&mut |tx| {
            let f = f.take().expect("a read view runs its closure once");
            out = Some(f(tx));
            Ok(())
        });
        match (out, done) {
            (Some(result), _) => result,
            (None, Err(err)) => Err(err.into()),
            (None, Ok(())) => unreachable!("a read view ran its closure"),
        }
    }
}

/// A read-only view of the event log and cascade records: cheap to clone,
/// usable from any thread, never waits for the writer and never commits.
#[derive(Clone)]
pub struct LogReader {
    store: AnyStore,
}

impl LogReader {
    /// Events from `from` (inclusive), in log order, at most `limit`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn read_log(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.store.read(|tx| tx.events(from, limit))
    }

    /// Every event of one stream, in version order.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn read_stream(&self, stream_type: &str, stream_id: &str) -> Result<Vec<Event>, StoreError> {
        self.store.read(|tx| tx.stream_events(stream_type, stream_id))
    }

    /// Position of the newest committed event, 0 for an empty log.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn head(&self) -> Result<u64, StoreError> {
        self.store.read(|tx| tx.head())
    }

    /// How many commands wait in the queue.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn queued_commands(&self) -> Result<u64, StoreError> {
        self.store.read(|tx| tx.queued_commands())
    }

    /// Of `correlation_ids`, the ones whose cascade has no outstanding work
    /// (or is unknown, so that the caller asks the pipeline and gets the
    /// error), in one read view.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    pub fn settled_of<'a>(&self, correlation_ids: impl Iterator<Item = &'a str>) -> Result<Vec<String>, StoreError> {
        self.store.read(|tx| {
            let mut settled = Vec::new();
            for id in correlation_ids {
                if tx.cascade(id)?.is_none_or(|record| record.outstanding == 0) {
                    settled.push(id.to_owned());
                }
            }
            Ok(settled)
        })
    }

    /// The record of cascade `correlation_id` and, once it has no
    /// outstanding work, its events, in one read view.
    ///
    /// # Errors
    ///
    /// A storage error, or an unreadable record.
    pub fn cascade(&self, correlation_id: &str) -> Result<Option<(CascadeRecord, Vec<Event>)>, StoreError> {
        self.store.read(|tx| {
            let Some(record) = tx.cascade(correlation_id)? else {
                return Ok(None);
            };
            let mut settled = Vec::new();
            if record.outstanding == 0 {
                for &position in &record.events {
                    settled.extend(tx.event(position)?);
                }
            }
            Ok(Some((record, settled)))
        })
    }

    /// The correlation id a command submitted with idempotency `key` started.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn idempotent(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.store.read(|tx| tx.idempotent(key))
    }
}

//! Tables opened when first used, not all of them for every transaction:
//! most transactions touch a few of the store's tables, and opening one is a
//! lookup in redb's table tree. The same tables serve a write transaction
//! and a read view on a redb read transaction (which never waits for the
//! writer, never commits, and works on a read-only file).

use std::borrow::Borrow;
use std::cell::OnceCell;
use std::ops::RangeBounds;

use redb::{
    AccessGuard, Key, Range, ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, StorageError, Table,
    TableDefinition, Value, WriteTransaction,
};

use crate::error::StoreError;

/// The transaction tables are opened in.
#[derive(Clone, Copy)]
pub(super) enum Txn<'t> {
    /// A write transaction: tables can be written, and are created if new.
    Write(&'t WriteTransaction),
    /// A read transaction: a snapshot of the last commit.
    Read(&'t ReadTransaction),
}

impl<'t> Txn<'t> {
    pub(super) fn open<K: Key + 'static, V: Value + 'static>(
        self,
        definition: TableDefinition<'static, K, V>,
    ) -> Result<Opened<'t, K, V>, StoreError> {
        Ok(match self {
            Txn::Write(txn) => Opened::Write(txn.open_table(definition)?),
            Txn::Read(txn) => Opened::Read(txn.open_table(definition)?),
        })
    }
}

/// A table of either kind of transaction; reads go to whichever it is.
pub(super) enum Opened<'t, K: Key + 'static, V: Value + 'static> {
    Write(Table<'t, K, V>),
    Read(ReadOnlyTable<K, V>),
}

impl<K: Key + 'static, V: Value + 'static> Opened<'_, K, V> {
    pub(super) fn get<'a>(
        &self,
        key: impl Borrow<K::SelfType<'a>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        match self {
            Opened::Write(t) => t.get(key),
            Opened::Read(t) => t.get(key),
        }
    }

    pub(super) fn range<'a, KR>(&self, range: impl RangeBounds<KR> + 'a) -> Result<Range<'_, K, V>, StorageError>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
    {
        match self {
            Opened::Write(t) => t.range(range),
            Opened::Read(t) => t.range(range),
        }
    }

    pub(super) fn iter(&self) -> Result<Range<'_, K, V>, StorageError> {
        match self {
            Opened::Write(t) => t.iter(),
            Opened::Read(t) => t.iter(),
        }
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn last(&self) -> Result<Option<(AccessGuard<'_, K>, AccessGuard<'_, V>)>, StorageError> {
        match self {
            Opened::Write(t) => t.last(),
            Opened::Read(t) => t.last(),
        }
    }

    pub(super) fn len(&self) -> Result<u64, StorageError> {
        match self {
            Opened::Write(t) => t.len(),
            Opened::Read(t) => t.len(),
        }
    }
}

impl<'t, K: Key + 'static, V: Value + 'static> Opened<'t, K, V> {
    /// The table, to write; a read view has none to give.
    pub(super) fn table_mut(&mut self) -> Result<&mut Table<'t, K, V>, StoreError> {
        match self {
            Opened::Write(t) => Ok(t),
            Opened::Read(_) => Err(StoreError::ReadOnly),
        }
    }
}

/// One table of a transaction, opened on first use.
pub(super) struct Lazy<'t, K: Key + 'static, V: Value + 'static> {
    txn: Txn<'t>,
    definition: TableDefinition<'static, K, V>,
    table: OnceCell<Opened<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Lazy<'t, K, V> {
    pub(super) fn new(txn: Txn<'t>, definition: TableDefinition<'static, K, V>) -> Self {
        Lazy {
            txn,
            definition,
            table: OnceCell::new(),
        }
    }

    /// The table, to read.
    pub(super) fn read(&self) -> Result<&Opened<'t, K, V>, StoreError> {
        if let Some(table) = self.table.get() {
            return Ok(table);
        }
        let table = self.txn.open(self.definition)?;
        Ok(self.table.get_or_init(|| table))
    }

    /// The table, to write.
    pub(super) fn write(&mut self) -> Result<&mut Table<'t, K, V>, StoreError> {
        self.read()?;
        self.table.get_mut().expect("opened above").table_mut()
    }
}

//! Tables opened when first used, not all of them for every transaction:
//! most transactions touch a few of the store's tables, and opening one is a
//! lookup in redb's table tree.

use std::cell::OnceCell;

use redb::{Key, Table, TableDefinition, Value, WriteTransaction};

use crate::error::StoreError;

/// One table of a write transaction, opened on first use.
pub(super) struct Lazy<'t, K: Key + 'static, V: Value + 'static> {
    txn: &'t WriteTransaction,
    definition: TableDefinition<'static, K, V>,
    table: OnceCell<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Lazy<'t, K, V> {
    pub(super) fn new(txn: &'t WriteTransaction, definition: TableDefinition<'static, K, V>) -> Self {
        Lazy {
            txn,
            definition,
            table: OnceCell::new(),
        }
    }

    /// The table, to read.
    pub(super) fn read(&self) -> Result<&Table<'t, K, V>, StoreError> {
        if let Some(table) = self.table.get() {
            return Ok(table);
        }
        let table = self.txn.open_table(self.definition)?;
        Ok(self.table.get_or_init(|| table))
    }

    /// The table, to write.
    pub(super) fn write(&mut self) -> Result<&mut Table<'t, K, V>, StoreError> {
        self.read()?;
        Ok(self.table.get_mut().expect("opened above"))
    }
}

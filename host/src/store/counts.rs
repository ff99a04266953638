//! Counts kept in `meta` beside what they count, in the same commit, so
//! that a quota check and `plugin list` read one value instead of a scan:
//! per plugin its live instances, the bytes of their stored records,
//! pending timers and effects in the outbox; per collection the bytes of
//! its documents (ids and bodies).

use super::Tx;
use crate::error::StoreError;

pub(super) fn instances_key(plugin: &str) -> String {
    format!("instances/{plugin}")
}

pub(super) fn state_bytes_key(plugin: &str) -> String {
    format!("state-bytes/{plugin}")
}

pub(super) fn timers_key(plugin: &str) -> String {
    format!("timers/{plugin}")
}

pub(super) fn effects_key(plugin: &str) -> String {
    format!("effects/{plugin}")
}

pub(super) fn document_bytes_key(collection: &str) -> String {
    format!("document-bytes/{collection}")
}

impl Tx<'_> {
    /// The count under `key`; 0 when there is none.
    pub(super) fn count(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.meta.read()?.get(key)?.map_or(0, |v| v.value()))
    }

    /// Add `by` (negative: take away) to the count under `key`; a count
    /// that reaches 0 is removed, so a forgotten plugin leaves no key.
    pub(super) fn add_count(&mut self, key: &str, by: i64) -> Result<(), StoreError> {
        if by == 0 {
            return Ok(());
        }
        let count = self.count(key)?.saturating_add_signed(by);
        self.set_count(key, count)
    }

    /// Set the count under `key`; 0 removes it.
    pub(super) fn set_count(&mut self, key: &str, count: u64) -> Result<(), StoreError> {
        match count {
            0 => self.meta.write()?.remove(key)?.map(drop),
            _ => self.meta.write()?.insert(key, count)?.map(drop),
        };
        Ok(())
    }
}

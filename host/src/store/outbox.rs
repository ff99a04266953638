//! The effects outbox: one row per effect, by key. It holds what is in
//! flight (a few thousand at most under load), so listing it scans it;
//! each plugin's number of effects is kept in `meta` for its quota.

use redb::TableHandle;

use super::counts::effects_key;
use super::traits::Outbox;
use super::{EFFECTS, Tx, decode, encode};
use crate::error::StoreError;
use crate::records::Effect;

impl Outbox for Tx<'_> {
    fn put_effect(&mut self, effect: &Effect) -> Result<(), StoreError> {
        let replaced = self
            .effects
            .write()?
            .insert(effect.key.as_str(), encode(effect).as_slice())?
            .is_some();
        match replaced {
            true => Ok(()),
            false => self.add_count(&effects_key(&effect.plugin), 1),
        }
    }

    fn effect(&self, key: &str) -> Result<Option<Effect>, StoreError> {
        match self.effects.read()?.get(key)? {
            Some(bytes) => Ok(Some(decode(EFFECTS.name(), bytes.value())?)),
            None => Ok(None),
        }
    }

    fn remove_effect(&mut self, key: &str) -> Result<Option<Effect>, StoreError> {
        let effect = match self.effects.write()?.remove(key)? {
            Some(bytes) => decode::<Effect>(EFFECTS.name(), bytes.value())?,
            None => return Ok(None),
        };
        self.add_count(&effects_key(&effect.plugin), -1)?;
        Ok(Some(effect))
    }

    fn effects(&self, after: Option<&str>, limit: usize) -> Result<Vec<Effect>, StoreError> {
        let table = self.effects.read()?;
        let range = match after {
            Some(after) => table.range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))?,
            None => table.range::<&str>(..)?,
        };
        let mut effects = Vec::new();
        for entry in range.take(limit) {
            effects.push(decode(EFFECTS.name(), entry?.1.value())?);
        }
        Ok(effects)
    }

    fn effect_count(&self) -> Result<u64, StoreError> {
        Ok(self.effects.read()?.len()?)
    }

    fn effect_count_of(&self, plugin: &str) -> Result<u64, StoreError> {
        self.count(&effects_key(plugin))
    }
}

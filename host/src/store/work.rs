//! The work queue: queued commands, cascade records, idempotency keys and
//! budgets, and events parked or skipped for a listener.

use redb::TableHandle;

use super::traits::WorkQueue;
use super::{CASCADES, COMMAND_QUEUE, META_NEXT_COMMAND, META_NEXT_PARKED, PARKED, SKIPPED, Tx, decode, encode};
use crate::error::StoreError;
use crate::records::{CascadeRecord, Parked, QueuedCommand, Skipped};

impl WorkQueue for Tx<'_> {
    fn next_command_seq(&self) -> Result<u64, StoreError> {
        Ok(self.meta.read()?.get(META_NEXT_COMMAND)?.map_or(1, |v| v.value()))
    }

    fn set_next_command_seq(&mut self, next: u64) -> Result<(), StoreError> {
        self.meta.write()?.insert(META_NEXT_COMMAND, next)?;
        Ok(())
    }

    fn enqueue(&mut self, seq: u64, command: &QueuedCommand) -> Result<(), StoreError> {
        self.command_queue.write()?.insert(seq, encode(command).as_slice())?;
        Ok(())
    }

    fn dequeue(&mut self) -> Result<Option<QueuedCommand>, StoreError> {
        match self.command_queue.write()?.pop_first()? {
            Some((_, bytes)) => Ok(Some(decode(COMMAND_QUEUE.name(), bytes.value())?)),
            None => Ok(None),
        }
    }

    fn queued_commands(&self) -> Result<u64, StoreError> {
        Ok(self.command_queue.read()?.len()?)
    }

    fn queue(&self) -> Result<Vec<(u64, QueuedCommand)>, StoreError> {
        let mut queue = Vec::new();
        for entry in self.command_queue.read()?.iter()? {
            let (seq, bytes) = entry?;
            queue.push((seq.value(), decode(COMMAND_QUEUE.name(), bytes.value())?));
        }
        Ok(queue)
    }

    fn unqueue(&mut self, seq: u64) -> Result<(), StoreError> {
        self.command_queue.write()?.remove(seq)?;
        Ok(())
    }

    fn cascade(&self, correlation_id: &str) -> Result<Option<CascadeRecord>, StoreError> {
        self.cascades
            .read()?
            .get(correlation_id)?
            .map(|bytes| decode(CASCADES.name(), bytes.value()))
            .transpose()
    }

    fn put_cascade(&mut self, correlation_id: &str, record: &CascadeRecord) -> Result<(), StoreError> {
        self.cascades
            .write()?
            .insert(correlation_id, encode(record).as_slice())?;
        Ok(())
    }

    fn idempotent(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.idempotency.read()?.get(key)?.map(|v| v.value().to_owned()))
    }

    fn put_cascade_budget(&mut self, correlation_id: &str, budget: u64) -> Result<(), StoreError> {
        self.cascade_budgets.write()?.insert(correlation_id, budget)?;
        Ok(())
    }

    fn cascade_budget(&self, correlation_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.cascade_budgets.read()?.get(correlation_id)?.map(|v| v.value()))
    }

    fn put_idempotent(&mut self, key: &str, correlation_id: &str) -> Result<(), StoreError> {
        self.idempotency.write()?.insert(key, correlation_id)?;
        Ok(())
    }

    fn park(&mut self, id: Option<u64>, parked: &Parked) -> Result<u64, StoreError> {
        let id = match id {
            Some(id) => id,
            None => {
                let id = self.meta.read()?.get(META_NEXT_PARKED)?.map_or(1, |v| v.value());
                self.meta.write()?.insert(META_NEXT_PARKED, id + 1)?;
                id
            }
        };
        self.parked.write()?.insert(id, encode(parked).as_slice())?;
        Ok(id)
    }

    fn parked(&self) -> Result<Vec<(u64, Parked)>, StoreError> {
        let mut all = Vec::new();
        for entry in self.parked.read()?.iter()? {
            let (id, bytes) = entry?;
            all.push((id.value(), decode(PARKED.name(), bytes.value())?));
        }
        Ok(all)
    }

    fn parked_entry(&self, id: u64) -> Result<Option<Parked>, StoreError> {
        self.parked
            .read()?
            .get(id)?
            .map(|bytes| decode(PARKED.name(), bytes.value()))
            .transpose()
    }

    fn take_parked(&mut self, id: u64) -> Result<Option<Parked>, StoreError> {
        match self.parked.write()?.remove(id)? {
            Some(bytes) => Ok(Some(decode(PARKED.name(), bytes.value())?)),
            None => Ok(None),
        }
    }

    fn put_skipped(&mut self, id: u64, skipped: &Skipped) -> Result<(), StoreError> {
        self.skipped.write()?.insert(id, encode(skipped).as_slice())?;
        Ok(())
    }

    fn skipped(&self) -> Result<Vec<(u64, Skipped)>, StoreError> {
        let mut all = Vec::new();
        for entry in self.skipped.read()?.iter()? {
            let (id, bytes) = entry?;
            all.push((id.value(), decode(SKIPPED.name(), bytes.value())?));
        }
        Ok(all)
    }
}

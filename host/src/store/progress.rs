//! Where each listener is: the pipeline position, checkpoints, state blobs
//! of stateful process managers, and stopped listeners with the reason.

use super::traits::Progress;
use super::{META_PIPELINE, Tx, after_pending_key, checkpoint_key};
use crate::error::StoreError;

impl Progress for Tx<'_> {
    fn pipeline_position(&self) -> Result<u64, StoreError> {
        Ok(self.meta.read()?.get(META_PIPELINE)?.map_or(0, |v| v.value()))
    }

    fn set_pipeline_position(&mut self, position: u64) -> Result<(), StoreError> {
        self.meta.write()?.insert(META_PIPELINE, position)?;
        Ok(())
    }

    fn checkpoint(&self, listener: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .meta
            .read()?
            .get(checkpoint_key(listener).as_str())?
            .map(|v| v.value()))
    }

    fn set_checkpoint(&mut self, listener: &str, position: u64) -> Result<(), StoreError> {
        self.meta.write()?.insert(checkpoint_key(listener).as_str(), position)?;
        Ok(())
    }

    fn after_pending(&self, listener: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .meta
            .read()?
            .get(after_pending_key(listener).as_str())?
            .map(|v| v.value()))
    }

    fn set_after_pending(&mut self, listener: &str, position: Option<u64>) -> Result<(), StoreError> {
        let key = after_pending_key(listener);
        match position {
            Some(position) => self.meta.write()?.insert(key.as_str(), position)?,
            None => self.meta.write()?.remove(key.as_str())?,
        };
        Ok(())
    }

    fn is_stopped(&self, listener: &str) -> Result<bool, StoreError> {
        Ok(self.stopped.read()?.get(listener)?.is_some())
    }

    fn set_stopped(&mut self, listener: &str, stopped: bool) -> Result<(), StoreError> {
        if stopped {
            self.stopped.write()?.insert(listener, ())?;
        } else {
            self.stopped.write()?.remove(listener)?;
            self.stop_reasons.write()?.remove(listener)?;
        }
        Ok(())
    }

    fn stop_reason(&self, plugin: &str) -> Result<Option<String>, StoreError> {
        Ok(self.stop_reasons.read()?.get(plugin)?.map(|v| v.value().to_owned()))
    }

    fn stop_for(&mut self, plugin: &str, reason: &str) -> Result<(), StoreError> {
        self.stopped.write()?.insert(plugin, ())?;
        self.stop_reasons.write()?.insert(plugin, reason)?;
        Ok(())
    }
}

//! Where each listener is: the pipeline position, checkpoints, state blobs
//! of stateful process managers, and stopped listeners with the reason.

use redb::TableHandle;

use super::{META_PIPELINE, PM_STATES, Tx, sealed};
use crate::error::StoreError;

impl<'t> Tx<'t> {
    /// The position up to which the pipeline has run both phases.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn pipeline_position(&self) -> Result<u64, StoreError> {
        Ok(self.meta.read()?.get(META_PIPELINE)?.map_or(0, |v| v.value()))
    }

    /// Record the pipeline's position.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn set_pipeline_position(&mut self, position: u64) -> Result<(), StoreError> {
        self.meta.write()?.insert(META_PIPELINE, position)?;
        Ok(())
    }

    /// A listener's checkpoint: the last position it has seen.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn checkpoint(&self, listener: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.checkpoints.read()?.get(listener)?.map(|v| v.value()))
    }

    /// Move a listener's checkpoint.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn set_checkpoint(&mut self, listener: &str, position: u64) -> Result<(), StoreError> {
        self.checkpoints.write()?.insert(listener, position)?;
        Ok(())
    }

    /// The state blob of a stateful process manager, as of its checkpoint.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn pm_state(&self, listener: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = self.pm_states.read()?.get(listener)?;
        stored
            .map(|v| {
                let what = || format!("the state of `{listener}`");
                sealed::unseal(PM_STATES.name(), what, listener.as_bytes(), v.value()).map(<[u8]>::to_vec)
            })
            .transpose()
    }

    /// Store a process manager's state blob (with its checkpoint, in the same
    /// transaction).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn put_pm_state(&mut self, listener: &str, state: &[u8]) -> Result<(), StoreError> {
        self.pm_states
            .write()?
            .insert(listener, sealed::seal(listener.as_bytes(), state.to_vec()).as_slice())?;
        Ok(())
    }

    /// Forget a process manager's state blob: it starts from its initial state.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn remove_pm_state(&mut self, listener: &str) -> Result<(), StoreError> {
        self.pm_states.write()?.remove(listener)?;
        Ok(())
    }
}

impl Tx<'_> {
    /// Whether the listener is stopped (its checkpoint is where it stopped).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn is_stopped(&self, listener: &str) -> Result<bool, StoreError> {
        Ok(self.stopped.read()?.get(listener)?.is_some())
    }

    /// Mark a listener stopped or running.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn set_stopped(&mut self, listener: &str, stopped: bool) -> Result<(), StoreError> {
        if stopped {
            self.stopped.write()?.insert(listener, ())?;
        } else {
            self.stopped.write()?.remove(listener)?;
            self.stop_reasons.write()?.remove(listener)?;
        }
        Ok(())
    }

    /// Why the host stopped `plugin`, if it did.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn stop_reason(&self, plugin: &str) -> Result<Option<String>, StoreError> {
        Ok(self.stop_reasons.read()?.get(plugin)?.map(|v| v.value().to_owned()))
    }

    /// Stop `plugin` for `reason`: it gets no events until started again.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn stop_for(&mut self, plugin: &str, reason: &str) -> Result<(), StoreError> {
        self.stopped.write()?.insert(plugin, ())?;
        self.stop_reasons.write()?.insert(plugin, reason)?;
        Ok(())
    }
}

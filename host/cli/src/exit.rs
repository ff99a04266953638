//! Exit statuses, and the one an error maps to.
//!
//! - 0: success (for `exec`: the cascade settled with no failure);
//! - 1: `exec` settled, but something in the cascade failed (or a refresh
//!   had failing handlers);
//! - 2: an error: bad arguments, bad input, unreadable data directory;
//! - 3: the data directory is busy: another process held it for longer than
//!   `--lock-timeout`;
//! - 4: storage failed (no space left, permission denied, read-only, a
//!   corrupt or foreign file); the message names the cause.

use cascade::{Error, StoreError};

/// The exit status of a data directory that stayed busy.
pub const EXIT_BUSY: u8 = 3;
/// The exit status of a storage failure (disk full, permission denied,
/// read-only file system, a corrupt file).
pub const EXIT_STORAGE: u8 = 4;

/// An error with its own exit status (the default for errors is 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The process exit status.
    pub status: u8,
    /// What to print after `cascade: `.
    pub message: String,
}

/// The exit status for an error `run` returned.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        return exit.status;
    }
    let store = match err.downcast_ref::<Error>().map(Error::root) {
        Some(Error::Store(store)) => Some(store),
        _ => err.downcast_ref::<StoreError>(),
    };
    match store {
        Some(StoreError::Busy { .. }) => EXIT_BUSY,
        Some(
            StoreError::Backend { .. }
            | StoreError::Unavailable { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Checksum { .. }
            | StoreError::NotADataFile { .. }
            | StoreError::NotWritable { .. }
            | StoreError::NeedsRepair { .. }
            | StoreError::ReadOnly,
        ) => EXIT_STORAGE,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A storage failure in the writer's batch reaches every caller in it
    /// as a storage failure (exit 4), however many share it.
    #[test]
    fn a_storage_failure_shared_by_a_batch_is_still_a_storage_failure() {
        let shared = std::sync::Arc::new(Error::Store(StoreError::ReadOnly));
        let err = anyhow::Error::from(Error::Batch(shared));
        assert_eq!(exit_status(&err), EXIT_STORAGE);
        assert!(
            err.to_string()
                .starts_with("the pipeline failed and rolled back its batch: "),
            "{err}"
        );
        let err = anyhow::Error::from(Error::Batch(std::sync::Arc::new(Error::EngineStopped)));
        assert_eq!(exit_status(&err), 2);
    }
}

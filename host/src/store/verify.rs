//! `cascade verify`: every check the store can make of itself, on one read
//! transaction, reporting every problem instead of stopping at the first.

use redb::{ReadableTable, TableHandle};

use super::{CHECKPOINTS, EVENTS, META, META_PIPELINE, PM_STATES, STREAM_EVENTS, STREAMS, StreamHead};
use crate::error::StoreError;

/// Problems listed one by one; past this many they are only counted.
const LISTED: usize = 1000;

/// What `verify` looked at and what it found.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Events read and checked.
    pub events: u64,
    /// Streams whose head was checked against their events.
    pub streams: u64,
    /// Listener checkpoints checked against the log head.
    pub checkpoints: u64,
    /// State blobs whose checksum was checked.
    pub states: u64,
    /// Every problem, one line each (the first thousand).
    pub problems: Vec<String>,
    /// Problems past the listed ones.
    pub unlisted: u64,
}

impl Verification {
    /// No problem found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < LISTED {
            self.problems.push(text);
        } else {
            self.unlisted += 1;
        }
    }
}

/// Check the log (gapless positions, checksums, each record at its own
/// position), every stream head against its events, checkpoints and the
/// pipeline position against the log head, and every state blob's checksum.
pub(super) fn verify(db: &super::ReadDb) -> Result<Verification, StoreError> {
    let txn = db.begin_read()?;
    let mut v = Verification::default();
    let mut head = 0;
    if let Ok(events) = txn.open_table(EVENTS) {
        for entry in events.iter()? {
            let (position, bytes) = entry?;
            let position = position.value();
            if position != head + 1 {
                v.problem(format!(
                    "events #{}..#{} are missing from the log",
                    head + 1,
                    position - 1
                ));
            }
            head = position;
            v.events += 1;
            if let Err(err) = super::decode_event(position, bytes.value()) {
                v.problem(err.to_string());
            }
        }
    }
    if let (Ok(streams), Ok(index), Ok(events)) = (
        txn.open_table(STREAMS),
        txn.open_table(STREAM_EVENTS),
        txn.open_table(EVENTS),
    ) {
        for entry in streams.iter()? {
            let (key, bytes) = entry?;
            let (stream_type, stream_id) = key.value();
            let stream = format!("stream `{stream_type}:{stream_id}`");
            v.streams += 1;
            let mut count = 0;
            for entry in index.range((stream_type, stream_id, 1)..=(stream_type, stream_id, u64::MAX))? {
                let (key, position) = entry?;
                let (_, _, version) = key.value();
                let position = position.value();
                count += 1;
                if version != count {
                    v.problem(format!("{stream}: version {version} follows version {}", count - 1));
                    count = version;
                }
                match events.get(position)? {
                    None => v.problem(format!(
                        "{stream}: version {version} points at event #{position}, which is missing"
                    )),
                    Some(bytes) => match super::decode_event(position, bytes.value()) {
                        Ok(e)
                            if (e.stream_type.as_str(), e.stream_id.as_str(), e.stream_version)
                                == (stream_type, stream_id, version) => {}
                        Ok(e) => v.problem(format!(
                            "{stream}: version {version} points at event #{position}, which is `{}:{}` version {}",
                            e.stream_type, e.stream_id, e.stream_version
                        )),
                        // Already reported by the log scan.
                        Err(_) => {}
                    },
                }
            }
            match super::decode::<StreamHead>(STREAMS.name(), bytes.value()) {
                Ok(stored) if stored.version == count => {}
                Ok(stored) => v.problem(format!(
                    "{stream}: its head says version {}, its events end at version {count}",
                    stored.version
                )),
                Err(err) => v.problem(format!("{stream}: {err}")),
            }
        }
    }
    if let Ok(checkpoints) = txn.open_table(CHECKPOINTS) {
        for entry in checkpoints.iter()? {
            let (name, checkpoint) = entry?;
            v.checkpoints += 1;
            if checkpoint.value() > head {
                v.problem(format!(
                    "the checkpoint of `{}` is #{}, past the log head #{head}",
                    name.value(),
                    checkpoint.value()
                ));
            }
        }
    }
    if let Ok(meta) = txn.open_table(META) {
        let position = meta.get(META_PIPELINE)?.map_or(0, |p| p.value());
        if position > head {
            v.problem(format!(
                "the pipeline position is #{position}, past the log head #{head}"
            ));
        }
    }
    if let Ok(states) = txn.open_table(PM_STATES) {
        for entry in states.iter()? {
            let (name, blob) = entry?;
            v.states += 1;
            let what = || format!("the state of `{}`", name.value());
            if let Err(err) = super::sealed::unseal(PM_STATES.name(), what, name.value().as_bytes(), blob.value()) {
                v.problem(err.to_string());
            }
        }
    }
    Ok(v)
}

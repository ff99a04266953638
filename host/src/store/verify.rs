//! `cascade verify`: every check the store can make of itself, on one read
//! transaction, reporting every problem instead of stopping at the first.

use redb::{ReadableTable, TableHandle};

use super::{ARTIFACTS, EVENTS, HEAD, INSTANCES, META, META_CHECKPOINT, META_PIPELINE, STREAMS, StreamHead};
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
    /// Process-manager instances whose checksum was checked.
    pub states: u64,
    /// Precompiled artifacts whose checksum was checked.
    pub artifacts: u64,
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

    pub(super) fn problem(&mut self, text: String) {
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
    if let (Ok(streams), Ok(events)) = (txn.open_table(STREAMS), txn.open_table(EVENTS)) {
        // One scan: each stream's head (version 0), then its versions.
        let mut stream: Option<StreamCheck> = None;
        for entry in streams.iter()? {
            let (key, bytes) = entry?;
            let (stream_type, stream_id, version) = key.value();
            if version == HEAD {
                if let Some(done) = stream.take() {
                    done.finish(&mut v);
                }
                v.streams += 1;
                stream = Some(StreamCheck {
                    name: format!("stream `{stream_type}:{stream_id}`"),
                    key: (stream_type.to_owned(), stream_id.to_owned()),
                    head: super::decode_head(stream_type, stream_id, bytes.value()),
                    count: 0,
                });
                continue;
            }
            let Some(current) = stream
                .as_mut()
                .filter(|s| s.key.0 == stream_type && s.key.1 == stream_id)
            else {
                v.problem(format!(
                    "stream `{stream_type}:{stream_id}` has version {version} in the index but no head"
                ));
                continue;
            };
            let name = &current.name;
            current.count += 1;
            if version != current.count {
                v.problem(format!(
                    "{name}: version {version} follows version {}",
                    current.count - 1
                ));
                current.count = version;
            }
            let position = match super::index_position(bytes.value()) {
                Ok(position) => position,
                Err(err) => {
                    v.problem(format!("{name}: version {version}: {err}"));
                    continue;
                }
            };
            match events.get(position)? {
                None => v.problem(format!(
                    "{name}: version {version} points at event #{position}, which is missing"
                )),
                Some(bytes) => match super::decode_event(position, bytes.value()) {
                    Ok(e)
                        if (e.stream_type.as_str(), e.stream_id.as_str(), e.stream_version)
                            == (stream_type, stream_id, version) => {}
                    Ok(e) => v.problem(format!(
                        "{name}: version {version} points at event #{position}, which is `{}:{}` version {}",
                        e.stream_type, e.stream_id, e.stream_version
                    )),
                    // Already reported by the log scan.
                    Err(_) => {}
                },
            }
        }
        if let Some(done) = stream.take() {
            done.finish(&mut v);
        }
    }
    if let Ok(meta) = txn.open_table(META) {
        let checkpoints = meta.range(META_CHECKPOINT..)?;
        for entry in checkpoints {
            let (key, checkpoint) = entry?;
            let Some(name) = key.value().strip_prefix(META_CHECKPOINT) else {
                break;
            };
            v.checkpoints += 1;
            if checkpoint.value() > head {
                v.problem(format!(
                    "the checkpoint of `{name}` is #{}, past the log head #{head}",
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
    v.states = check_sealed(&txn, &INSTANCES, |name| format!("the state of `{name}`"), &mut v)?;
    v.artifacts = check_sealed(&txn, &ARTIFACTS, |key| format!("artifact `{key}`"), &mut v)?;
    Ok(v)
}

/// Check the checksum of every record of `table` (sealed with its key);
/// returns how many there are.
fn check_sealed(
    txn: &redb::ReadTransaction,
    table: &'static redb::TableDefinition<'static, &'static str, &'static [u8]>,
    what: fn(&str) -> String,
    v: &mut Verification,
) -> Result<u64, StoreError> {
    let Ok(records) = txn.open_table(*table) else {
        return Ok(0);
    };
    let mut count = 0;
    for entry in records.iter()? {
        let (key, blob) = entry?;
        count += 1;
        let key = key.value();
        if let Err(err) = super::sealed::unseal(table.name(), || what(key), key.as_bytes(), blob.value()) {
            v.problem(err.to_string());
        }
    }
    Ok(count)
}

/// One stream as the scan goes: its head and how many versions followed.
struct StreamCheck {
    name: String,
    key: (String, String),
    head: Result<StreamHead, StoreError>,
    count: u64,
}

impl StreamCheck {
    /// The head must say the version its events end at.
    fn finish(self, v: &mut Verification) {
        let StreamCheck { name, head, count, .. } = self;
        match head {
            Ok(stored) if stored.version == count => {}
            Ok(stored) => v.problem(format!(
                "{name}: its head says version {}, its events end at version {count}",
                stored.version
            )),
            Err(err) => v.problem(format!("{name}: {err}")),
        }
    }
}

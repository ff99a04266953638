//! Upgrades of data files written by older schemas, run once in the
//! transaction that first opens such a file for writing.

use redb::{ReadableTable, TableDefinition, TableHandle};

use super::{EVENTS, HEAD, STREAMS, StreamHead, Tx, decode, encode_event, encode_head, lazy, sealed};
use crate::error::StoreError;
use crate::event::Event;
use crate::store::traits::Progress;

/// Schema 2's stream heads, stream index and checkpoints, each a table.
const STREAMS_2: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("streams");
const STREAM_EVENTS_2: TableDefinition<(&str, &str, u64), u64> = TableDefinition::new("stream_events");
const CHECKPOINTS_2: TableDefinition<&str, u64> = TableDefinition::new("checkpoints");

impl Tx<'_> {
    /// Upgrade a schema-1 file: seal every event and state blob with its
    /// checksum (once, when the file is first opened by this version).
    pub(super) fn seal_unsealed_records(&mut self) -> Result<(), StoreError> {
        let mut events = Vec::new();
        for entry in self.events.read()?.iter()? {
            let (position, bytes) = entry?;
            events.push((position.value(), bytes.value().to_vec()));
        }
        for (position, bytes) in events {
            let event: Event = decode(EVENTS.name(), &bytes)?;
            self.events.write()?.insert(position, encode_event(&event).as_slice())?;
        }
        let mut states = Vec::new();
        for entry in self.pm_states.read()?.iter()? {
            let (name, blob) = entry?;
            states.push((name.value().to_owned(), blob.value().to_vec()));
        }
        for (name, blob) in states {
            self.put_pm_state(&name, &blob)?;
        }
        Ok(())
    }

    /// Upgrade a schema-1, -2 or -3 file: seal every stream head and
    /// precompiled artifact with its checksum.
    pub(super) fn seal_heads_and_artifacts(&mut self) -> Result<(), StoreError> {
        let mut heads = Vec::new();
        for entry in self.streams.read()?.iter()? {
            let (key, bytes) = entry?;
            let (stream_type, stream_id, version) = key.value();
            if version == HEAD {
                heads.push((stream_type.to_owned(), stream_id.to_owned(), bytes.value().to_vec()));
            }
        }
        for (stream_type, stream_id, bytes) in heads {
            let head: StreamHead = decode(STREAMS.name(), &bytes)?;
            let sealed = encode_head(&stream_type, &stream_id, &head);
            self.streams
                .write()?
                .insert((stream_type.as_str(), stream_id.as_str(), HEAD), sealed.as_slice())?;
        }
        let mut artifacts = Vec::new();
        for entry in self.artifacts.read()?.iter()? {
            let (key, bytes) = entry?;
            artifacts.push((key.value().to_owned(), bytes.value().to_vec()));
        }
        for (key, bytes) in artifacts {
            let sealed = sealed::seal(key.as_bytes(), bytes);
            self.artifacts.write()?.insert(key.as_str(), sealed.as_slice())?;
        }
        Ok(())
    }

    /// Upgrade a schema-1 or -2 file: move stream heads and the stream
    /// index into the one stream table, and checkpoints into `meta`.
    pub(super) fn merge_stream_tables(&mut self) -> Result<(), StoreError> {
        let lazy::Txn::Write(txn) = self.txn else {
            return Err(StoreError::ReadOnly);
        };
        let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
        let has = |name: &str| names.iter().any(|n| n == name);
        if has(STREAMS_2.name()) {
            let old = txn.open_table(STREAMS_2)?;
            for entry in old.iter()? {
                let (key, head) = entry?;
                let (stream_type, stream_id) = key.value();
                self.streams
                    .write()?
                    .insert((stream_type, stream_id, HEAD), head.value())?;
            }
            drop(old);
            txn.delete_table(STREAMS_2)?;
        }
        if has(STREAM_EVENTS_2.name()) {
            let old = txn.open_table(STREAM_EVENTS_2)?;
            for entry in old.iter()? {
                let (key, position) = entry?;
                let position = position.value().to_le_bytes();
                self.streams.write()?.insert(key.value(), position.as_slice())?;
            }
            drop(old);
            txn.delete_table(STREAM_EVENTS_2)?;
        }
        if has(CHECKPOINTS_2.name()) {
            let old = txn.open_table(CHECKPOINTS_2)?;
            for entry in old.iter()? {
                let (name, checkpoint) = entry?;
                self.set_checkpoint(name.value(), checkpoint.value())?;
            }
            drop(old);
            txn.delete_table(CHECKPOINTS_2)?;
        }
        Ok(())
    }
}

//! The event log and stream heads: appending a command's events with their
//! stream version and aggregate state, and reading them back.

use redb::TableHandle;

use super::traits::EventLog;
use super::{
    EVENTS, HEAD, StreamHead, Tx, decode_event, decode_head, encode_event, encode_head, index_position, stamped,
};
use crate::error::StoreError;
use crate::event::{Envelope, Event, NewEvent};

impl EventLog for Tx<'_> {
    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        for entry in self.events.read()?.range(from..)?.take(limit) {
            let (position, bytes) = entry?;
            out.push(decode_event(position.value(), bytes.value())?);
        }
        Ok(out)
    }

    fn stream_events(&self, stream_type: &str, stream_id: &str) -> Result<Vec<Event>, StoreError> {
        let (index, events) = (self.streams.read()?, self.events.read()?);
        let mut out = Vec::new();
        for entry in index.range((stream_type, stream_id, HEAD + 1)..=(stream_type, stream_id, u64::MAX))? {
            let position = index_position(entry?.1.value())?;
            if let Some(bytes) = events.get(position)? {
                out.push(decode_event(position, bytes.value())?);
            }
        }
        Ok(out)
    }

    fn head(&self) -> Result<u64, StoreError> {
        if let Some(head) = self.head.get() {
            return Ok(head);
        }
        let head = self.events.read()?.last()?.map_or(0, |(k, _)| k.value());
        self.head.set(Some(head));
        Ok(head)
    }

    fn event(&self, position: u64) -> Result<Option<Event>, StoreError> {
        self.events
            .read()?
            .get(position)?
            .map(|bytes| decode_event(position, bytes.value()))
            .transpose()
    }

    fn logged_event(&self, position: u64) -> Result<Event, StoreError> {
        self.event(position)?.ok_or_else(|| StoreError::Corrupt {
            table: EVENTS.name(),
            message: format!("position {position} is missing below the head"),
        })
    }

    fn stream(&self, stream_type: &str, stream_id: &str) -> Result<StreamHead, StoreError> {
        match self.streams.read()?.get((stream_type, stream_id, HEAD))? {
            Some(bytes) => decode_head(stream_type, stream_id, bytes.value()),
            None => Ok(StreamHead::default()),
        }
    }

    fn append_after(
        &mut self,
        stream_type: &str,
        stream_id: &str,
        version: u64,
        events: Vec<NewEvent>,
        envelope: &Envelope,
        state: Option<Vec<u8>>,
    ) -> Result<Vec<Event>, StoreError> {
        let appended = stamped(events, self.head()?, (stream_type, stream_id), version, envelope);
        for event in &appended {
            self.events
                .write()?
                .insert(event.position, encode_event(event).as_slice())?;
            self.streams.write()?.insert(
                (stream_type, stream_id, event.stream_version),
                event.position.to_le_bytes().as_slice(),
            )?;
            self.head.set(Some(event.position));
        }
        if let Some(last) = appended.last() {
            let head = StreamHead {
                version: last.stream_version,
                state,
            };
            self.streams.write()?.insert(
                (stream_type, stream_id, HEAD),
                encode_head(stream_type, stream_id, &head).as_slice(),
            )?;
        }
        Ok(appended)
    }
}

//! Writes a unit of work holds back until it commits, or until a read needs
//! them on the server: the events it appends, the stream heads they move,
//! the cascade records it puts and what it does to the command queue. They travel in one round trip at the end
//! instead of one each (a round trip on the same machine costs about as much
//! as the rest of a command's work); a point read of a held-back row answers
//! from here.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::event::Event;
use crate::store::{StreamHead, encode};

/// What a unit of work has written and not yet sent.
#[derive(Default)]
pub(super) struct Pending {
    /// Appended events, contiguous positions after the server's head.
    pub(super) events: Vec<Event>,
    /// Stream heads by (type, id).
    pub(super) streams: BTreeMap<(String, String), StreamHead>,
    /// Encoded cascade records by correlation id.
    pub(super) cascades: BTreeMap<String, Vec<u8>>,
    /// The command queue as this unit of work sees it.
    pub(super) queue: Queue,
}

/// The command queue of a unit of work: what it enqueued and removed, and
/// the server's next rows fetched ahead, so that dequeuing a batch of
/// commands costs a round trip per page, not per command.
#[derive(Default)]
pub(super) struct Queue {
    /// Enqueued here and not yet sent: seq → encoded command.
    pub(super) inserts: BTreeMap<u64, Vec<u8>>,
    /// Rows on the server dequeued or unqueued here: deleted when sent.
    pub(super) deletes: BTreeSet<u64>,
    /// The server's next rows, fetched ahead, in seq order.
    pub(super) ahead: VecDeque<(u64, Vec<u8>)>,
    /// The highest seq fetched so far.
    pub(super) cursor: Option<u64>,
    /// The last fetch reached the end of the server's queue.
    pub(super) exhausted: bool,
}

impl Queue {
    /// The oldest command, by seq, of the fetched rows and this unit of
    /// work's own (the caller fetched ahead first).
    pub(super) fn pop(&mut self) -> Option<Vec<u8>> {
        let server = self.ahead.front().map(|(seq, _)| *seq);
        let local = self.inserts.keys().next().copied();
        // Taken rows are deleted on the server too: one enqueued here may
        // have replaced a row of the same seq there.
        let seq = match (server, local) {
            (Some(server), Some(local)) if local < server => local,
            (None, Some(local)) => local,
            (Some(server), _) => server,
            (None, None) => return None,
        };
        self.deletes.insert(seq);
        match self.ahead.front() {
            Some((first, _)) if *first == seq => self.ahead.pop_front().map(|(_, body)| body),
            _ => self.inserts.remove(&seq),
        }
    }

    /// Whether another page must be fetched before [`Queue::pop`].
    pub(super) fn needs_fetch(&self) -> bool {
        self.ahead.is_empty() && !self.exhausted
    }

    /// Take the fetched rows `(seq, body)`, `full` when the page was full.
    pub(super) fn fetched(&mut self, rows: Vec<(u64, Vec<u8>)>, full: bool) {
        self.exhausted = !full;
        for (seq, body) in rows {
            self.cursor = Some(seq);
            if !self.deletes.contains(&seq) && !self.inserts.contains_key(&seq) {
                self.ahead.push_back((seq, body));
            }
        }
    }
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.streams.is_empty()
            && self.cascades.is_empty()
            && self.queue.inserts.is_empty()
            && self.queue.deletes.is_empty()
    }

    /// The held-back event at `position`, if it is one.
    pub(super) fn event(&self, position: u64) -> Option<&Event> {
        let first = self.events.first()?.position;
        let index = usize::try_from(position.checked_sub(first)?).ok()?;
        self.events.get(index)
    }

    /// Every held-back write as one multi-statement query, and nothing held
    /// back any more. Values are numbers and hex literals only, so no text
    /// a user chose is ever parsed as SQL.
    pub(super) fn take_sql(&mut self) -> String {
        let mut sql = String::new();
        let events = std::mem::take(&mut self.events);
        if !events.is_empty() {
            sql.push_str("INSERT INTO cascade_events (position, stream_type, stream_id, stream_version, body) VALUES ");
            for (i, event) in events.iter().enumerate() {
                sql.push_str(if i == 0 { "(" } else { ",(" });
                sql.push_str(&event.position.to_string());
                sql.push(',');
                push_hex(&mut sql, event.stream_type.as_bytes());
                sql.push(',');
                push_hex(&mut sql, event.stream_id.as_bytes());
                sql.push(',');
                sql.push_str(&event.stream_version.to_string());
                sql.push(',');
                push_hex(&mut sql, &encode(event));
                sql.push(')');
            }
            sql.push_str(";\n");
        }
        let streams = std::mem::take(&mut self.streams);
        if !streams.is_empty() {
            sql.push_str("INSERT INTO cascade_streams (stream_type, stream_id, version, state) VALUES ");
            for (i, ((kind, id), head)) in streams.iter().enumerate() {
                sql.push_str(if i == 0 { "(" } else { ",(" });
                push_hex(&mut sql, kind.as_bytes());
                sql.push(',');
                push_hex(&mut sql, id.as_bytes());
                sql.push(',');
                sql.push_str(&head.version.to_string());
                sql.push(',');
                match &head.state {
                    Some(state) => push_hex(&mut sql, state),
                    None => sql.push_str("NULL"),
                }
                sql.push(')');
            }
            sql.push_str(
                " ON CONFLICT (stream_type, stream_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state;\n",
            );
        }
        let cascades = std::mem::take(&mut self.cascades);
        if !cascades.is_empty() {
            sql.push_str("INSERT INTO cascade_cascades (correlation_id, body) VALUES ");
            for (i, (id, body)) in cascades.iter().enumerate() {
                sql.push_str(if i == 0 { "(" } else { ",(" });
                push_hex(&mut sql, id.as_bytes());
                sql.push(',');
                push_hex(&mut sql, body);
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (correlation_id) DO UPDATE SET body = EXCLUDED.body;\n");
        }
        // Once sent, the server's queue is the truth again: fetch afresh.
        let queue = std::mem::take(&mut self.queue);
        if !queue.deletes.is_empty() {
            sql.push_str("DELETE FROM cascade_queue WHERE seq IN (");
            let seqs: Vec<String> = queue.deletes.iter().map(u64::to_string).collect();
            sql.push_str(&seqs.join(","));
            sql.push_str(");\n");
        }
        if !queue.inserts.is_empty() {
            sql.push_str("INSERT INTO cascade_queue (seq, body) VALUES ");
            for (i, (seq, body)) in queue.inserts.iter().enumerate() {
                sql.push_str(if i == 0 { "(" } else { ",(" });
                sql.push_str(&seq.to_string());
                sql.push(',');
                push_hex(&mut sql, body);
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (seq) DO UPDATE SET body = EXCLUDED.body;\n");
        }
        sql
    }
}

/// `bytes` as a bytea literal (an escape string, so it reads the same
/// whatever `standard_conforming_strings` says).
fn push_hex(sql: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    sql.reserve(bytes.len() * 2 + 16);
    sql.push_str("E'\\\\x");
    for &b in bytes {
        sql.push(char::from(DIGITS[usize::from(b >> 4)]));
        sql.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    sql.push_str("'::bytea");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_hex_literals_only() {
        let mut sql = String::new();
        push_hex(&mut sql, b"a'\0;");
        assert_eq!(sql, "E'\\\\x6127003b'::bytea");
    }
}

//! `cascade verify` on PostgreSQL: the checks of the redb store that mean
//! something here (the server keeps its own page checksums), on one
//! snapshot, every problem listed.

use super::PgStore;
use super::tables::{decode_event, text, unsigned};
use crate::error::StoreError;
use crate::records::InstanceRecord;
use crate::store::traits::{Backend, EventLog};
use crate::store::{META_CHECKPOINT, Verification, decode};

/// Events read per page.
const PAGE: usize = 4096;

impl PgStore {
    /// Check the log (gapless positions from 1, each record readable and at
    /// its own position), every stream head against its events, every
    /// checkpoint against the log head and every instance record.
    ///
    /// # Errors
    ///
    /// The database cannot be read at all.
    pub fn verify(&self) -> Result<Verification, StoreError> {
        self.read(|tx| {
            let mut v = Verification::default();
            let mut head = 0;
            loop {
                let rows = tx.query(
                    "SELECT position, body FROM cascade_events WHERE position > $1 ORDER BY position LIMIT $2",
                    &[&(head as i64), &(PAGE as i64)],
                )?;
                for row in &rows {
                    let position = unsigned(row.get(0));
                    if position != head + 1 {
                        v.problem(format!(
                            "events #{}..#{} are missing from the log",
                            head + 1,
                            position - 1
                        ));
                    }
                    if let Err(err) = decode_event(position, row.get(1)) {
                        v.problem(format!("event #{position}: {err}"));
                    }
                    head = position;
                    v.events += 1;
                }
                if rows.len() < PAGE {
                    break;
                }
            }
            let streams = tx.query(
                "SELECT s.stream_type, s.stream_id, s.version, coalesce(max(e.stream_version), 0)
                 FROM cascade_streams s LEFT JOIN cascade_events e USING (stream_type, stream_id)
                 GROUP BY s.stream_type, s.stream_id, s.version",
                &[],
            )?;
            for row in &streams {
                v.streams += 1;
                let (version, newest) = (unsigned(row.get(2)), unsigned(row.get(3)));
                if version != newest {
                    let kind = text("stream_index", row.get(0))?;
                    let id = text("stream_index", row.get(1))?;
                    v.problem(format!(
                        "stream `{kind}:{id}` says version {version}, its newest event is version {newest}"
                    ));
                }
            }
            let checkpoints = tx.query(
                "SELECT key, value FROM cascade_meta WHERE key LIKE $1",
                &[&format!("{META_CHECKPOINT}%").as_bytes()],
            )?;
            for row in &checkpoints {
                v.checkpoints += 1;
                let (key, position) = (text("meta", row.get(0))?, unsigned(row.get(1)));
                if position > head {
                    let listener = key.trim_start_matches(META_CHECKPOINT);
                    v.problem(format!(
                        "listener `{listener}` is at checkpoint #{position}, past the log head #{head}"
                    ));
                }
            }
            for row in &tx.query("SELECT plugin, id, body FROM cascade_instances", &[])? {
                v.states += 1;
                if let Err(err) = decode::<InstanceRecord>("instances", row.get(2)) {
                    let plugin = text("instances", row.get(0))?;
                    let id = text("instances", row.get(1))?;
                    v.problem(format!("instance `{id}` of `{plugin}`: {err}"));
                }
            }
            debug_assert_eq!(tx.head()?, head);
            Ok(v)
        })
    }
}

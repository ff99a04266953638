//! The host's side of a handler call, shared by the engine and the sandbox:
//! what a call produced ([`Effects`]) and what it may see besides its event
//! ([`DocumentAccess`], [`AggregateNames`]). The sandbox knows these, not
//! the pipeline or the read models behind them.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::effect::{EffectRequest, Refusal};
use crate::error::QueryError;
use crate::event::Command;
use crate::instance::InstanceCall;

/// Log levels a guest can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Detailed tracing.
    Debug,
    /// Normal operation.
    Info,
    /// Unexpected but handled.
    Warn,
    /// Failed.
    Error,
}

/// What a handler call produced besides its result.
#[derive(Debug, Default)]
pub struct Effects {
    /// Commands to queue, in dispatch order.
    pub commands: Vec<Command>,
    /// Log lines, in order.
    pub logs: Vec<(Level, String)>,
    /// For a per-instance process manager: the instance the call works on,
    /// set by the caller before the call and changed by it.
    pub instance: Option<InstanceCall>,
    /// HTTP requests for the outbox, in request order.
    pub requests: Vec<EffectRequest>,
}

impl Effects {
    /// Drop what a failed call asked for: its commands, requests and what
    /// it did to its instance (its logs stay: they tell why it failed).
    pub fn discard(&mut self) {
        self.commands.clear();
        self.requests.clear();
        self.instance = None;
    }
}

/// A document id and its JSON text.
pub type Document = (String, String);

/// Read models as a handler sees them: committed documents with the current
/// batch's writes on top. Writes are checked against the collections the
/// writing projection owns.
pub trait DocumentAccess: Send + Sync {
    /// Document `id` of `collection`.
    ///
    /// # Errors
    ///
    /// An unknown collection; a storage error.
    fn get(&self, collection: &str, id: &str) -> Result<Option<String>, QueryError>;

    /// The documents of `collection` whose indexed top-level `field` equals
    /// `value` (JSON text), in id order.
    ///
    /// # Errors
    ///
    /// An unknown collection, a field that is not indexed; a storage error.
    fn find(&self, collection: &str, field: &str, value: &str) -> Result<Vec<Document>, QueryError>;

    /// Up to `limit` documents after id `after`, in id order, and the id to
    /// continue after (none on the last page).
    ///
    /// # Errors
    ///
    /// An unknown collection; a storage error.
    fn list(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Document>, Option<String>), QueryError>;

    /// Put `body` as document `id` of `collection`, which `owner` must own.
    ///
    /// # Errors
    ///
    /// Not granted (the call fails): a collection `owner` does not own, a
    /// document past `owner`'s quota of bytes. Malformed: a body that is
    /// not a JSON object.
    fn put(&self, owner: &str, collection: &str, id: &str, body: &str) -> Result<(), Refusal>;

    /// Delete document `id` of `collection`, which `owner` must own.
    ///
    /// # Errors
    ///
    /// Not granted: a collection `owner` does not own.
    fn delete(&self, owner: &str, collection: &str, id: &str) -> Result<(), Refusal>;

    /// Whether `plugin` declared `collection` (a plugin may read what it
    /// owns without a grant).
    fn owns(&self, _plugin: &str, _collection: &str) -> bool {
        false
    }
}

/// The registered aggregates' stream types, shared with every plugin so a
/// dispatch can be checked against them.
pub type AggregateNames = Arc<RwLock<BTreeSet<String>>>;

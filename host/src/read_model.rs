//! Read models: JSON documents in collections, written by projections and
//! queried by process managers (and projections) from inside handler calls.
//!
//! A guest queries *during* a call, and must see every write of the current
//! batch, which is not committed yet. So [`ReadModels`] keeps the batch's
//! writes in an overlay in front of the store: reads consult the overlay
//! first, then the last commit (through the store's read view); at the end of the
//! batch the overlay is flushed into the batch's write transaction, with the
//! index entries, or dropped if the batch rolls back.
//!
//! Index entries are `(collection, field, canonical JSON value, id)` for each
//! indexed top-level field present in a document.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use serde_json::Value;

use crate::effect::Refusal;
use crate::error::{PluginError, QueryError, StoreError};
use crate::host_api::{Document, DocumentAccess};
use crate::store::{DocumentView, Documents};

/// A collection a projection declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    /// Unique among all projections.
    pub name: String,
    /// Top-level fields `find` can search.
    pub indexes: Vec<String>,
}

struct Owned {
    owner: String,
    indexes: Vec<String>,
    /// The owner's quota of document bytes, over all its collections.
    max_bytes: u64,
}

/// What every handle shares. Each part has its own lock so that a query of
/// the last commit takes none the writer holds while it flushes a batch.
struct Shared {
    view: Arc<dyn DocumentView>,
    /// Who owns which collection: written only when a projection is
    /// registered.
    collections: RwLock<Catalog>,
    /// This batch's writes: `Some(document)` put, `None` deleted. Only the
    /// writer's handle touches it.
    overlay: Mutex<Overlay>,
    /// Each writing owner's document bytes in this batch, for its quota.
    usage: Mutex<HashMap<String, Usage>>,
    /// What the current call's writes replaced in the overlay (`None`:
    /// nothing), in write order, to undo them if the call fails.
    undo: Mutex<UndoLog>,
}

/// An owner's document bytes as the batch goes: what the last commit holds,
/// and what the batch's writes add to it.
#[derive(Clone, Copy)]
struct Usage {
    committed: u64,
    added: Added,
}

/// What a batch's writes add to an owner's bytes.
#[derive(Clone, Copy)]
enum Added {
    /// At most this: each put counted whole, as if new, deletes not at all;
    /// cheap, and enough while far from the quota.
    AtMost(i64),
    /// Exactly this, each write against the document it replaces: near
    /// the quota.
    Exactly(i64),
    /// Not known since a failed call's writes were undone: counted again.
    Unknown,
}

type Catalog = HashMap<String, Owned>;
type Overlay = BTreeMap<(String, String), Option<String>>;
type UndoLog = Vec<((String, String), Option<Option<String>>)>;

/// The read models of one data directory; cheap to clone (one shared handle).
#[derive(Clone)]
pub struct ReadModels {
    shared: Arc<Shared>,
    /// Queries see only what is committed, never the current batch's
    /// writes (see [`ReadModels::committed`]).
    committed: bool,
}

/// Nothing written in a batch, for queries that look past the overlay.
static NO_OVERLAY: Overlay = BTreeMap::new();

impl ReadModels {
    pub(crate) fn new(view: Arc<dyn DocumentView>) -> Self {
        ReadModels {
            shared: Arc::new(Shared {
                view,
                collections: RwLock::new(HashMap::new()),
                overlay: Mutex::new(BTreeMap::new()),
                usage: Mutex::new(HashMap::new()),
                undo: Mutex::new(Vec::new()),
            }),
            committed: false,
        }
    }

    /// The same read models as other threads should see them: queries read
    /// the last commit through the store's read view and never a batch in
    /// progress, so they need not wait for the writer.
    pub fn committed(&self) -> ReadModels {
        ReadModels {
            shared: self.shared.clone(),
            committed: true,
        }
    }

    fn check_writable(&self) -> Result<(), String> {
        match self.committed {
            true => Err("read models seen from outside the writer cannot be written".into()),
            false => Ok(()),
        }
    }

    /// Run `f` on the batch's writes this handle's queries see: none for a
    /// handle of the last commit, which so never waits for the writer.
    fn with_overlay<R>(&self, f: impl FnOnce(&Overlay) -> R) -> R {
        if self.committed {
            f(&NO_OVERLAY)
        } else {
            f(&self.overlay())
        }
    }

    // A panic while holding a lock leaves no partial update behind (every
    // method mutates in one step), so a poisoned lock is usable.
    fn overlay(&self) -> MutexGuard<'_, Overlay> {
        self.shared
            .overlay
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.shared
            .collections
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Make `owner`, whose documents may take `max_bytes`, the owner of
    /// `collections`, replacing what it declared before.
    ///
    /// # Errors
    ///
    /// A collection another projection already owns.
    pub(crate) fn declare(&self, owner: &str, collections: &[Collection], max_bytes: u64) -> Result<(), PluginError> {
        let mut catalog = self
            .shared
            .collections
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for c in collections {
            if let Some(existing) = catalog.get(&c.name)
                && existing.owner != owner
            {
                return Err(PluginError::InvalidAggregate {
                    plugin: owner.to_owned(),
                    message: format!(
                        "collection `{}` is already owned by projection `{}`",
                        c.name, existing.owner
                    ),
                });
            }
        }
        catalog.retain(|_, o| o.owner != owner);
        for c in collections {
            let owned = Owned {
                owner: owner.to_owned(),
                indexes: c.indexes.clone(),
                max_bytes,
            };
            catalog.insert(c.name.clone(), owned);
        }
        Ok(())
    }

    /// The collections `owner` declared.
    pub(crate) fn owned_by(&self, owner: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .catalog()
            .iter()
            .filter(|(_, o)| o.owner == owner)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Document `id` of `collection`.
    ///
    /// # Errors
    ///
    /// An unknown collection; a storage error.
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<String>, QueryError> {
        owned(&self.catalog(), collection)?;
        let key = (collection.to_owned(), id.to_owned());
        if let Some(doc) = self.with_overlay(|overlay| overlay.get(&key).cloned()) {
            return Ok(doc);
        }
        let mut doc = None;
        self.shared
            .view
            .with_documents(&mut |docs| {
                doc = docs.rm_doc(collection, id)?;
                Ok(())
            })
            .map_err(query_store)?;
        Ok(doc)
    }

    /// Every document of `collection` whose indexed top-level `field` equals
    /// the JSON `value`, in id order.
    ///
    /// # Errors
    ///
    /// An unknown collection, a field that is not indexed, a `value` that is
    /// not JSON; a storage error.
    pub fn find(&self, collection: &str, field: &str, value: &str) -> Result<Vec<Document>, QueryError> {
        {
            let catalog = self.catalog();
            let owned = owned(&catalog, collection)?;
            if !owned.indexes.iter().any(|i| i == field) {
                return Err(QueryError::NotIndexed {
                    collection: collection.to_owned(),
                    field: field.to_owned(),
                    indexes: crate::text::quoted_list(owned.indexes.iter().map(String::as_str)),
                });
            }
        }
        let value: Value = serde_json::from_str(value)
            .map_err(|e| QueryError::Invalid(format!("find value `{value}` is not JSON: {e}")))?;
        let key = value.to_string();
        let mut found = BTreeMap::new();
        self.shared
            .view
            .with_documents(&mut |docs| {
                for id in docs.rm_find(collection, field, &key)? {
                    if let Some(doc) = docs.rm_doc(collection, &id)? {
                        found.insert(id, doc);
                    }
                }
                Ok(())
            })
            .map_err(query_store)?;
        // The batch's writes win over the last commit.
        self.with_overlay(|overlay| {
            for ((c, id), doc) in overlay.range((collection.to_owned(), String::new())..) {
                if c != collection {
                    break;
                }
                found.remove(id);
                if let Some(doc) = doc
                    && field_key(doc, field).as_deref() == Some(key.as_str())
                {
                    found.insert(id.clone(), doc.clone());
                }
            }
        });
        Ok(found.into_iter().collect())
    }

    /// Up to `limit` documents of `collection` with ids after `after`, in id
    /// order, and the id to continue after (none on the last page).
    ///
    /// # Errors
    ///
    /// An unknown collection; a storage error.
    pub fn list(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Document>, Option<String>), QueryError> {
        owned(&self.catalog(), collection)?;
        let after = after.unwrap_or("");
        let overlaid: Vec<(String, Option<String>)> = self.with_overlay(|overlay| {
            overlay
                .range((collection.to_owned(), after.to_owned())..)
                .take_while(|((c, _), _)| c == collection)
                .filter(|((_, id), _)| id.as_str() > after)
                .map(|((_, id), doc)| (id.clone(), doc.clone()))
                .collect()
        });
        // Enough committed candidates that deletions in the overlay cannot
        // leave the page short while more documents exist.
        let wanted = limit + overlaid.len() + 1;
        let mut page = BTreeMap::new();
        self.shared
            .view
            .with_documents(&mut |docs| {
                page.extend(docs.rm_page(collection, after, wanted)?);
                Ok(())
            })
            .map_err(query_store)?;
        for (id, doc) in overlaid {
            match doc {
                Some(doc) => page.insert(id, doc),
                None => page.remove(&id),
            };
        }
        let more = page.len() > limit;
        let documents: Vec<Document> = page.into_iter().take(limit).collect();
        let next = more.then(|| documents.last().map(|(id, _)| id.clone())).flatten();
        Ok((documents, next))
    }

    /// Put `body` as document `id` of `collection`, which `owner` must own.
    ///
    /// # Errors
    ///
    /// A collection `owner` does not own; a body that is not a JSON object;
    /// a document that would take `owner` past its quota of bytes.
    pub fn put(&self, owner: &str, collection: &str, id: &str, body: &str) -> Result<(), String> {
        self.write(owner, collection, id, body)
            .map_err(|refusal| refusal.to_string())
    }

    /// Delete document `id` of `collection`, which `owner` must own.
    ///
    /// # Errors
    ///
    /// A collection `owner` does not own.
    pub fn delete(&self, owner: &str, collection: &str, id: &str) -> Result<(), String> {
        self.check_writable()?;
        let max_bytes = check_owner(&self.catalog(), owner, collection)?;
        self.check_quota(owner, max_bytes, (collection, id), None)?;
        self.overlay_write((collection.to_owned(), id.to_owned()), None);
        Ok(())
    }

    /// Write into the overlay, noting what the write replaced.
    fn overlay_write(&self, key: (String, String), doc: Option<String>) {
        let replaced = self.overlay().insert(key.clone(), doc);
        self.undo_log().push((key, replaced));
    }

    fn undo_log(&self) -> MutexGuard<'_, UndoLog> {
        self.shared.undo.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A handler call starts: its writes are the ones [`ReadModels::undo_call`] undoes.
    pub(crate) fn begin_call(&self) {
        self.undo_log().clear();
    }

    /// The call failed: its writes are undone, the batch's earlier ones stay.
    pub(crate) fn undo_call(&self) {
        let undo = std::mem::take(&mut *self.undo_log());
        // One lock at a time: `check_quota` takes the usage, then the overlay.
        {
            let mut overlay = self.overlay();
            for (key, replaced) in undo.into_iter().rev() {
                match replaced {
                    Some(doc) => overlay.insert(key, doc),
                    None => overlay.remove(&key),
                };
            }
        }
        // An upper bound stays one; an exact count is not exact any more.
        for usage in self.usage().values_mut() {
            if let Added::Exactly(_) = usage.added {
                usage.added = Added::Unknown;
            }
        }
    }

    /// [`ReadModels::put`], saying whether a refusal fails the call: a
    /// write past the owner's collections or its quota does, a malformed
    /// document does not.
    fn write(&self, owner: &str, collection: &str, id: &str, body: &str) -> Result<(), Refusal> {
        self.check_writable().map_err(Refusal::NotGranted)?;
        let max_bytes = check_owner(&self.catalog(), owner, collection).map_err(Refusal::NotGranted)?;
        let malformed = |why: String| Refusal::Malformed(format!("document `{id}` for `{collection}` {why}"));
        let value: Value = serde_json::from_str(body).map_err(|e| malformed(format!("is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(malformed("must be a JSON object".into()));
        }
        let doc = value.to_string();
        self.check_quota(owner, max_bytes, (collection, id), Some(&doc))
            .map_err(Refusal::NotGranted)?;
        self.overlay_write((collection.to_owned(), id.to_owned()), Some(doc));
        Ok(())
    }

    /// Count a write of `doc` (`None`: a delete) as `id` of `collection`
    /// against `owner`'s `max_bytes`, refusing one that grows its documents
    /// past them. Far from the quota each put counts whole; near it, each
    /// write counts what it adds to the document it replaces, so a rewrite
    /// or a delete passes at (or past a lowered) quota, and growth does not.
    fn check_quota(
        &self,
        owner: &str,
        max_bytes: u64,
        (collection, id): (&str, &str),
        doc: Option<&str>,
    ) -> Result<(), String> {
        if max_bytes == u64::MAX {
            return Ok(());
        }
        let mut usage = self.usage();
        if !usage.contains_key(owner) {
            if doc.is_none() {
                return Ok(());
            }
            let committed = self.committed_bytes(owner).map_err(|e| e.to_string())?;
            let first = Usage {
                committed,
                added: Added::AtMost(0),
            };
            usage.insert(owner.to_owned(), first);
        }
        let u = usage.get_mut(owner).expect("counted above");
        let committed = u.committed;
        let within = |added: i64| i128::from(committed) + i128::from(added) <= i128::from(max_bytes);
        let new = doc.map_or(0, |doc| (id.len() + doc.len()) as i64);
        let added = match u.added {
            Added::AtMost(_) if doc.is_none() => return Ok(()),
            Added::AtMost(at_most) if within(at_most + new) => {
                u.added = Added::AtMost(at_most + new);
                return Ok(());
            }
            Added::AtMost(_) | Added::Unknown => self.added_exactly(owner).map_err(|e| e.to_string())?,
            Added::Exactly(added) => added,
        };
        let now = self.get(collection, id).map_err(|e| e.to_string())?;
        let grows = new - now.map_or(0, |doc| (id.len() + doc.len()) as i64);
        let refused = grows > 0 && !within(added + grows);
        u.added = Added::Exactly(if refused { added } else { added + grows });
        if refused {
            let mib = (i128::from(committed) + i128::from(added + grows)) as f64 / f64::from(1 << 20);
            return Err(format!(
                "`{owner}` would own {mib:.2} MiB of documents with `{id}` in `{collection}`, past its quota of {} \
                 MiB: delete some, or raise `max-read-model-mib` under [limits] in its manifest (a redeploy with \
                 --accept-grants)",
                max_bytes >> 20
            ));
        }
        Ok(())
    }

    /// Bytes of the documents of `owner`'s collections at the last commit.
    fn committed_bytes(&self, owner: &str) -> Result<u64, StoreError> {
        let collections = self.owned_by(owner);
        let mut bytes = 0;
        self.shared.view.with_documents(&mut |docs| {
            for collection in &collections {
                bytes += docs.rm_bytes(collection)?;
            }
            Ok(())
        })?;
        Ok(bytes)
    }

    /// What this batch's writes to `owner`'s collections add to its bytes
    /// at the last commit (negative: take away).
    fn added_exactly(&self, owner: &str) -> Result<i64, StoreError> {
        let collections = self.owned_by(owner);
        // Each written document's new length; `None`: deleted.
        let writes: Vec<((String, String), Option<usize>)> = self
            .overlay()
            .iter()
            .filter(|((collection, _), _)| collections.contains(collection))
            .map(|((collection, id), doc)| ((collection.clone(), id.clone()), doc.as_ref().map(String::len)))
            .collect();
        let mut added = 0i64;
        self.shared.view.with_documents(&mut |docs| {
            added = 0;
            for ((collection, id), len) in &writes {
                let old = docs
                    .rm_doc(collection, id)?
                    .map_or(0, |old| (id.len() + old.len()) as i64);
                added += len.map_or(0, |len| (id.len() + len) as i64) - old;
            }
            Ok(())
        })?;
        Ok(added)
    }

    fn usage(&self) -> MutexGuard<'_, HashMap<String, Usage>> {
        self.shared
            .usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write the batch's overlay into `tx`, maintaining the indexes.
    pub(crate) fn flush(&self, tx: &mut (impl Documents + ?Sized)) -> Result<(), StoreError> {
        let overlay = std::mem::take(&mut *self.overlay());
        self.usage().clear();
        self.undo_log().clear();
        let catalog = self.catalog();
        for ((collection, id), doc) in overlay {
            let indexes = catalog.get(&collection).map(|o| o.indexes.as_slice()).unwrap_or(&[]);
            if let Some(old) = tx.rm_doc(&collection, &id)? {
                for field in indexes {
                    if let Some(key) = field_key(&old, field) {
                        tx.rm_unindex(&collection, field, &key, &id)?;
                    }
                }
            }
            match doc {
                Some(doc) => {
                    tx.rm_put(&collection, &id, &doc)?;
                    for field in indexes {
                        if let Some(key) = field_key(&doc, field) {
                            tx.rm_index(&collection, field, &key, &id)?;
                        }
                    }
                }
                None => tx.rm_delete(&collection, &id)?,
            }
        }
        Ok(())
    }

    /// Make the stored index of each collection `owner` declares hold exactly
    /// the fields declared now. A redeployed projection that indexes another
    /// field then finds the existing documents by it, without a rebuild; an
    /// unchanged declaration costs one lookup. Returns whether it wrote.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn sync_indexes(&self, tx: &mut (impl Documents + ?Sized), owner: &str) -> Result<bool, StoreError> {
        let mut wrote = false;
        for (collection, owned) in self.catalog().iter().filter(|(_, o)| o.owner == owner) {
            let mut declared = owned.indexes.clone();
            declared.sort();
            if tx.rm_indexed(collection)?.as_ref() == Some(&declared) {
                continue;
            }
            tx.rm_clear_index(collection)?;
            for (id, doc) in tx.rm_docs(collection)? {
                for field in &declared {
                    if let Some(key) = field_key(&doc, field) {
                        tx.rm_index(collection, field, &key, &id)?;
                    }
                }
            }
            tx.set_rm_indexed(collection, &declared)?;
            wrote = true;
        }
        Ok(wrote)
    }

    /// Forget the batch's writes (it rolled back).
    pub(crate) fn discard(&self) {
        self.overlay().clear();
        self.usage().clear();
        self.undo_log().clear();
    }
}

// The sandbox reaches read models through this trait only.
impl DocumentAccess for ReadModels {
    fn get(&self, collection: &str, id: &str) -> Result<Option<String>, QueryError> {
        ReadModels::get(self, collection, id)
    }

    fn find(&self, collection: &str, field: &str, value: &str) -> Result<Vec<Document>, QueryError> {
        ReadModels::find(self, collection, field, value)
    }

    fn list(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Document>, Option<String>), QueryError> {
        ReadModels::list(self, collection, after, limit)
    }

    fn put(&self, owner: &str, collection: &str, id: &str, body: &str) -> Result<(), Refusal> {
        ReadModels::write(self, owner, collection, id, body)
    }

    fn delete(&self, owner: &str, collection: &str, id: &str) -> Result<(), Refusal> {
        ReadModels::delete(self, owner, collection, id).map_err(Refusal::NotGranted)
    }

    fn owns(&self, plugin: &str, collection: &str) -> bool {
        self.catalog().get(collection).is_some_and(|o| o.owner == plugin)
    }
}

fn owned<'a>(catalog: &'a Catalog, collection: &str) -> Result<&'a Owned, QueryError> {
    catalog.get(collection).ok_or_else(|| {
        let mut names: Vec<&str> = catalog.keys().map(String::as_str).collect();
        names.sort_unstable();
        QueryError::UnknownCollection {
            collection: collection.to_owned(),
            known: crate::text::quoted_list(names),
        }
    })
}

/// `owner`'s quota of bytes, if it owns `collection`.
fn check_owner(catalog: &Catalog, owner: &str, collection: &str) -> Result<u64, String> {
    match catalog.get(collection) {
        Some(o) if o.owner == owner => Ok(o.max_bytes),
        Some(o) => Err(format!(
            "`{owner}` cannot write collection `{collection}`: it belongs to projection `{}`",
            o.owner
        )),
        None => Err(format!(
            "`{owner}` cannot write collection `{collection}`: no projection declares it"
        )),
    }
}

/// The canonical JSON of a document's top-level `field`, if present.
fn field_key(doc: &str, field: &str) -> Option<String> {
    let value: Value = serde_json::from_str(doc).ok()?;
    value.get(field).map(Value::to_string)
}

fn query_store(err: StoreError) -> QueryError {
    QueryError::Store(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn read_models() -> (tempfile::TempDir, Store, ReadModels) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("rm.redb")).unwrap();
        let rm = ReadModels::new(std::sync::Arc::new(store.clone()));
        let projects = Collection {
            name: "projects".into(),
            indexes: vec!["groupId".into()],
        };
        rm.declare("projects", &[projects], u64::MAX).unwrap();
        (dir, store, rm)
    }

    fn ids(docs: Vec<Document>) -> Vec<String> {
        docs.into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn reads_see_the_batch_writes_before_and_after_the_flush() {
        let (_dir, store, rm) = read_models();
        rm.put("projects", "projects", "p1", r#"{"groupId":"g1"}"#).unwrap();
        rm.put("projects", "projects", "p2", r#"{"groupId":"g1"}"#).unwrap();
        assert_eq!(ids(rm.find("projects", "groupId", r#""g1""#).unwrap()), ["p1", "p2"]);

        store.write(|tx| rm.flush(tx)).unwrap();
        assert_eq!(ids(rm.find("projects", "groupId", r#""g1""#).unwrap()), ["p1", "p2"]);

        // Moving p1 to g2 in a new batch: the overlay hides the committed index entry.
        rm.put("projects", "projects", "p1", r#"{"groupId":"g2"}"#).unwrap();
        rm.delete("projects", "projects", "p2").unwrap();
        assert!(rm.find("projects", "groupId", r#""g1""#).unwrap().is_empty());
        assert_eq!(ids(rm.find("projects", "groupId", r#""g2""#).unwrap()), ["p1"]);
        assert_eq!(rm.get("projects", "p2").unwrap(), None);

        store.write(|tx| rm.flush(tx)).unwrap();
        assert!(rm.find("projects", "groupId", r#""g1""#).unwrap().is_empty());
        assert_eq!(ids(rm.list("projects", None, 10).unwrap().0), ["p1"]);
    }

    /// The quota counts what the documents take, not how often they are
    /// written: a batch may rewrite a document at its quota, not grow past it.
    #[test]
    fn a_projection_writes_up_to_its_quota_of_bytes_and_rewrites_at_it() {
        let (_dir, store, rm) = read_models();
        let notes = Collection {
            name: "notes".into(),
            indexes: Vec::new(),
        };
        // Ids and bodies: "n1" + `{"t":"xxxxxxxxxx"}` is 2 + 18 = 20 bytes.
        rm.declare("notes", &[notes], 45).unwrap();
        let doc = |c: char| format!(r#"{{"t":"{}"}}"#, c.to_string().repeat(10));
        rm.put("notes", "notes", "n1", &doc('a')).unwrap();
        rm.put("notes", "notes", "n2", &doc('a')).unwrap();
        let refused = rm.put("notes", "notes", "n3", &doc('a')).unwrap_err();
        assert!(
            refused.contains("`notes` would own") && refused.contains("`max-read-model-mib`"),
            "{refused}"
        );
        // Rewritten in the same batch, then in the next: no growth, no refusal.
        rm.put("notes", "notes", "n1", &doc('b')).unwrap();
        store.write(|tx| rm.flush(tx)).unwrap();
        for c in ['c', 'd', 'e'] {
            rm.put("notes", "notes", "n2", &doc(c)).unwrap();
        }
        assert!(rm.put("notes", "notes", "n3", &doc('a')).is_err(), "still full");
        // A delete makes room, in the same batch.
        rm.delete("notes", "notes", "n1").unwrap();
        rm.put("notes", "notes", "n3", &doc('a')).unwrap();
        store.write(|tx| rm.flush(tx)).unwrap();
        assert_eq!(ids(rm.list("notes", None, 10).unwrap().0), ["n2", "n3"]);

        // Past a lowered quota, what shrinks or stays passes and growth does not.
        let notes = Collection {
            name: "notes".into(),
            indexes: Vec::new(),
        };
        rm.declare("notes", &[notes], 30).unwrap();
        rm.put("notes", "notes", "n2", &doc('f')).unwrap();
        rm.put("notes", "notes", "n2", r#"{"t":""}"#).unwrap();
        assert!(
            rm.put("notes", "notes", "n2", &doc('g')).is_err(),
            "40 bytes would be past 30"
        );
        rm.delete("notes", "notes", "n3").unwrap();
        rm.put("notes", "notes", "n2", &doc('g')).unwrap();
    }

    /// A query of the last commit takes no lock the writer holds while it
    /// writes or flushes a batch.
    #[test]
    fn a_query_of_the_last_commit_does_not_wait_for_a_batch_in_flight() {
        let (_dir, store, rm) = read_models();
        rm.put("projects", "projects", "p1", r#"{"groupId":"g1"}"#).unwrap();
        store.write(|tx| rm.flush(tx)).unwrap();
        let committed = rm.committed();
        // The writer in the middle of a batch: its overlay is held.
        let _writing = rm.overlay();
        let (answer, answered) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let doc = committed.get("projects", "p1").unwrap();
            let found = committed.find("projects", "groupId", r#""g1""#).unwrap();
            let page = committed.list("projects", None, 10).unwrap();
            let _ = answer.send((doc, found.len(), page.0.len()));
        });
        let (doc, found, listed) = answered
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the query answered while the batch was in flight");
        assert_eq!(doc.as_deref(), Some(r#"{"groupId":"g1"}"#));
        assert_eq!((found, listed), (1, 1));
    }

    #[test]
    fn a_discarded_batch_leaves_the_committed_documents() {
        let (_dir, store, rm) = read_models();
        rm.put("projects", "projects", "p1", r#"{"groupId":"g1"}"#).unwrap();
        store.write(|tx| rm.flush(tx)).unwrap();

        rm.delete("projects", "projects", "p1").unwrap();
        rm.discard();

        assert_eq!(
            rm.get("projects", "p1").unwrap().as_deref(),
            Some(r#"{"groupId":"g1"}"#)
        );
    }

    #[test]
    fn list_pages_through_committed_and_uncommitted_documents_in_id_order() {
        let (_dir, store, rm) = read_models();
        for id in ["a", "c", "e"] {
            rm.put("projects", "projects", id, "{}").unwrap();
        }
        store.write(|tx| rm.flush(tx)).unwrap();
        rm.put("projects", "projects", "b", "{}").unwrap();
        rm.delete("projects", "projects", "c").unwrap();

        let (first, next) = rm.list("projects", None, 2).unwrap();
        assert_eq!(
            (ids(first), next.as_deref()),
            (vec!["a".to_owned(), "b".to_owned()], Some("b"))
        );
        let (second, next) = rm.list("projects", Some("b"), 2).unwrap();
        assert_eq!((ids(second), next), (vec!["e".to_owned()], None));
    }

    #[test]
    fn a_changed_index_declaration_reindexes_the_stored_documents() {
        let (_dir, store, rm) = read_models();
        store.write(|tx| rm.sync_indexes(tx, "projects")).unwrap();
        rm.put("projects", "projects", "p1", r#"{"groupId":"g1","name":"Apollo"}"#)
            .unwrap();
        rm.put("projects", "projects", "p2", r#"{"groupId":"g2"}"#).unwrap();
        store.write(|tx| rm.flush(tx)).unwrap();

        let by_name = Collection {
            name: "projects".into(),
            indexes: vec!["name".into()],
        };
        rm.declare("projects", &[by_name], u64::MAX).unwrap();
        store.write(|tx| rm.sync_indexes(tx, "projects")).unwrap();

        assert_eq!(ids(rm.find("projects", "name", r#""Apollo""#).unwrap()), ["p1"]);
        let indexed = store.read(|tx| tx.rm_indexed("projects")).unwrap();
        assert_eq!(indexed, Some(vec!["name".to_owned()]));

        let both = Collection {
            name: "projects".into(),
            indexes: vec!["name".into(), "groupId".into()],
        };
        rm.declare("projects", &[both], u64::MAX).unwrap();
        store.write(|tx| rm.sync_indexes(tx, "projects")).unwrap();
        assert_eq!(ids(rm.find("projects", "groupId", r#""g2""#).unwrap()), ["p2"]);
        assert_eq!(ids(rm.find("projects", "name", r#""Apollo""#).unwrap()), ["p1"]);
        let indexed = store.read(|tx| tx.rm_indexed("projects")).unwrap();
        assert_eq!(indexed, Some(vec!["groupId".to_owned(), "name".to_owned()]));
    }
}

//! Read-model documents and their indexes, as the read models' overlay
//! flushes them at the end of a batch.

use super::{Tx, decode, encode};
use crate::error::StoreError;

impl Tx<'_> {
    /// A read-model document.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn rm_doc(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .rm_docs
            .read()?
            .get((collection, id))?
            .map(|d| String::from_utf8_lossy(d.value()).into_owned()))
    }

    pub(crate) fn rm_put(&mut self, collection: &str, id: &str, doc: &str) -> Result<(), StoreError> {
        self.rm_docs.write()?.insert((collection, id), doc.as_bytes())?;
        Ok(())
    }

    pub(crate) fn rm_delete(&mut self, collection: &str, id: &str) -> Result<(), StoreError> {
        self.rm_docs.write()?.remove((collection, id))?;
        Ok(())
    }

    pub(crate) fn rm_index(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError> {
        self.rm_index.write()?.insert((collection, field, key, id), ())?;
        Ok(())
    }

    pub(crate) fn rm_unindex(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError> {
        self.rm_index.write()?.remove((collection, field, key, id))?;
        Ok(())
    }

    /// Every document of `collection`, as (id, JSON text), in id order.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn rm_docs(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut docs = Vec::new();
        for entry in self.rm_docs.read()?.range((collection, "")..)? {
            let (key, doc) = entry?;
            let (c, id) = key.value();
            if c != collection {
                break;
            }
            docs.push((id.to_owned(), String::from_utf8_lossy(doc.value()).into_owned()));
        }
        Ok(docs)
    }

    /// Remove every document and index entry of `collection`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn rm_clear(&mut self, collection: &str) -> Result<(), StoreError> {
        for (id, _) in self.rm_docs(collection)? {
            self.rm_docs.write()?.remove((collection, id.as_str()))?;
        }
        self.rm_clear_index(collection)
    }

    /// Remove every index entry of `collection`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn rm_clear_index(&mut self, collection: &str) -> Result<(), StoreError> {
        let mut keys = Vec::new();
        for entry in self.rm_index.read()?.range((collection, "", "", "")..)? {
            let (key, _) = entry?;
            let (c, f, v, id) = key.value();
            if c != collection {
                break;
            }
            keys.push((f.to_owned(), v.to_owned(), id.to_owned()));
        }
        for (f, v, id) in &keys {
            self.rm_index
                .write()?
                .remove((collection, f.as_str(), v.as_str(), id.as_str()))?;
        }
        Ok(())
    }

    /// The fields `collection`'s index holds entries for; `None` when never
    /// recorded (a data directory from before this was tracked).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn rm_indexed(&self, collection: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.rm_indexed
            .read()?
            .get(collection)?
            .map(|fields| decode("read_model_indexed", fields.value()))
            .transpose()
    }

    /// Record the fields `collection`'s index holds entries for.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn set_rm_indexed(&mut self, collection: &str, fields: &[String]) -> Result<(), StoreError> {
        self.rm_indexed
            .write()?
            .insert(collection, encode(&fields).as_slice())?;
        Ok(())
    }
}

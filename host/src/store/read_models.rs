//! Read-model documents and their indexes, as the read models' overlay
//! flushes them at the end of a batch.

use super::counts::document_bytes_key;
use super::traits::Documents;
use super::{Tx, decode, encode};
use crate::error::StoreError;

impl Documents for Tx<'_> {
    fn rm_page(&self, collection: &str, after: &str, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        let mut page = Vec::new();
        for entry in self.rm_docs.read()?.range((collection, after)..)? {
            let (key, doc) = entry?;
            let (c, id) = key.value();
            if c != collection || page.len() >= limit {
                break;
            }
            if id > after {
                page.push((id.to_owned(), String::from_utf8_lossy(doc.value()).into_owned()));
            }
        }
        Ok(page)
    }

    fn rm_find(&self, collection: &str, field: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for entry in self.rm_index.read()?.range((collection, field, key, "")..)? {
            let (entry, _) = entry?;
            let (c, f, k, id) = entry.value();
            if (c, f, k) != (collection, field, key) {
                break;
            }
            ids.push(id.to_owned());
        }
        Ok(ids)
    }

    fn rm_doc(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .rm_docs
            .read()?
            .get((collection, id))?
            .map(|d| String::from_utf8_lossy(d.value()).into_owned()))
    }

    fn rm_put(&mut self, collection: &str, id: &str, doc: &str) -> Result<(), StoreError> {
        let old = self
            .rm_docs
            .write()?
            .insert((collection, id), doc.as_bytes())?
            .map_or(0, |old| id.len() + old.value().len());
        let by = (id.len() + doc.len()) as i64 - old as i64;
        self.add_count(&document_bytes_key(collection), by)
    }

    fn rm_delete(&mut self, collection: &str, id: &str) -> Result<(), StoreError> {
        let old = self
            .rm_docs
            .write()?
            .remove((collection, id))?
            .map_or(0, |old| id.len() + old.value().len());
        self.add_count(&document_bytes_key(collection), -(old as i64))
    }

    fn rm_bytes(&self, collection: &str) -> Result<u64, StoreError> {
        self.count(&document_bytes_key(collection))
    }

    fn rm_index(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError> {
        self.rm_index.write()?.insert((collection, field, key, id), ())?;
        Ok(())
    }

    fn rm_unindex(&mut self, collection: &str, field: &str, key: &str, id: &str) -> Result<(), StoreError> {
        self.rm_index.write()?.remove((collection, field, key, id))?;
        Ok(())
    }

    fn rm_docs(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
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

    fn rm_clear(&mut self, collection: &str) -> Result<(), StoreError> {
        for (id, _) in self.rm_docs(collection)? {
            self.rm_docs.write()?.remove((collection, id.as_str()))?;
        }
        self.set_count(&document_bytes_key(collection), 0)?;
        self.rm_clear_index(collection)
    }

    fn rm_clear_index(&mut self, collection: &str) -> Result<(), StoreError> {
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

    fn rm_indexed(&self, collection: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.rm_indexed
            .read()?
            .get(collection)?
            .map(|fields| decode("read_model_indexed", fields.value()))
            .transpose()
    }

    fn set_rm_indexed(&mut self, collection: &str, fields: &[String]) -> Result<(), StoreError> {
        self.rm_indexed
            .write()?
            .insert(collection, encode(&fields).as_slice())?;
        Ok(())
    }
}

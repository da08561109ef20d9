//! Documents as users give them ([`Document`]), and the one place they are checked
//! ([`DocumentBatch::check`]): every rule a document must follow is here, for the library, the
//! CLI and the REST API alike; the layers below (encoding, [`barista_index::NewDocument`] for
//! the vectors, the log, the segments) trust a checked batch.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A document to index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Document {
    /// External id: 1 to 1,024 bytes, unique (adding an existing id replaces that document).
    pub id: String,
    /// The text to embed and store.
    pub text: String,
    /// A title, embedded before the text (BEIR convention) and stored on its own (not in the
    /// metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Any JSON object, stored and returned with hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

impl Document {
    /// Checks this document alone against the rules of [`DocumentBatch::check`] (for readers
    /// that want to name the line of a bad document early).
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming the document and the rule it breaks.
    pub fn check(&self) -> Result<()> {
        check_one(self, 0).map(|_| ())
    }

    /// The text the encoder sees: the title (if any, and not blank), a space, the text.
    pub fn passage(&self) -> String {
        match self.title.as_deref().map(str::trim) {
            Some(title) if !title.is_empty() => format!("{title} {}", self.text),
            _ => self.text.clone(),
        }
    }
}

/// A document that passed [`DocumentBatch::check`]: what to encode and what to store.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CheckedDocument {
    /// Its place in the slice it was checked from (for vectors given beside the documents).
    pub(crate) position: usize,
    pub(crate) id: String,
    pub(crate) passage: String,
    pub(crate) title: Option<String>,
    pub(crate) text: String,
    /// The metadata object as JSON, if any (exactly what was given: the title is kept apart).
    pub(crate) metadata: Option<String>,
}

/// Documents checked together: each follows the rules of [`DocumentBatch::check`], and no id
/// appears twice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DocumentBatch {
    pub(crate) docs: Vec<CheckedDocument>,
}

impl DocumentBatch {
    /// Checks documents:
    ///
    /// - the id has 1 to [`barista_index::MAX_ID_BYTES`] bytes;
    /// - `metadata`, if given and not `null`, is a JSON object;
    /// - no two documents of the batch share an id (which one should win would be a guess).
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming the document and the rule it breaks; nothing is kept.
    pub fn check(docs: &[Document]) -> Result<DocumentBatch> {
        let mut seen = HashSet::with_capacity(docs.len());
        let mut checked = Vec::with_capacity(docs.len());
        for (position, d) in docs.iter().enumerate() {
            checked.push(check_one(d, position)?);
            if !seen.insert(d.id.as_str()) {
                return Err(Error::InvalidRequest(format!("document {:?} appears twice in the batch", d.id)));
            }
        }
        Ok(DocumentBatch { docs: checked })
    }

    /// Like [`DocumentBatch::check`], but a later document with an id already in the batch
    /// replaces the earlier one (bulk loads of data sets with repeated ids); returns the batch
    /// and the ids that were repeated.
    pub fn check_last_wins(docs: &[Document]) -> Result<(DocumentBatch, Vec<String>)> {
        let mut position = std::collections::HashMap::with_capacity(docs.len());
        let mut checked: Vec<CheckedDocument> = Vec::with_capacity(docs.len());
        let mut repeated = Vec::new();
        for (at, d) in docs.iter().enumerate() {
            let c = check_one(d, at)?;
            match position.get(&c.id) {
                Some(&i) => {
                    repeated.push(c.id.clone());
                    checked[i] = c;
                }
                None => {
                    position.insert(c.id.clone(), checked.len());
                    checked.push(c);
                }
            }
        }
        Ok((DocumentBatch { docs: checked }, repeated))
    }

    /// Documents in the batch.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.docs.iter().map(|d| d.id.as_str())
    }
}

fn check_one(d: &Document, position: usize) -> Result<CheckedDocument> {
    barista_index::check_id(&d.id).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let metadata = match &d.metadata {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            return Err(Error::InvalidRequest(format!("document {:?}: metadata must be a JSON object", d.id)));
        }
    };
    Ok(CheckedDocument {
        position,
        id: d.id.clone(),
        passage: d.passage(),
        title: d.title.clone(),
        text: d.text.clone(),
        metadata: metadata.map(|m| serde_json::Value::Object(m).to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, metadata: Option<serde_json::Value>) -> Document {
        Document { id: id.into(), text: "t".into(), title: Some("T".into()), metadata }
    }

    #[test]
    fn every_rule_in_one_place() {
        let batch = DocumentBatch::check(&[doc("a", None), doc("b", Some(serde_json::json!({"k": 1})))]).unwrap();
        assert_eq!(batch.ids().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(batch.docs[0].passage, "T t");
        assert_eq!(batch.docs[1].metadata.as_deref(), Some(r#"{"k":1}"#), "the title stays apart");
        assert_eq!(batch.docs[1].title.as_deref(), Some("T"));
        for (docs, message) in [
            (vec![doc("", None)], "must not be empty"),
            (vec![doc(&"x".repeat(1025), None)], "at most 1024 bytes"),
            (vec![doc("a", Some(serde_json::json!([1])))], "must be a JSON object"),
            (vec![doc("a", None), doc("a", None)], "appears twice"),
        ] {
            let err = DocumentBatch::check(&docs).unwrap_err().to_string();
            assert!(err.contains(message), "{message}: {err}");
        }
        let (batch, repeated) = DocumentBatch::check_last_wins(&[
            doc("a", None),
            doc("b", None),
            Document { text: "newer".into(), ..doc("a", None) },
        ])
        .unwrap();
        assert_eq!((batch.len(), repeated), (2, vec!["a".to_string()]));
        assert_eq!(batch.docs[0].text, "newer");
    }
}

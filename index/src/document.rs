//! [`NewDocument`]: a document checked against an index's configuration. It is the only way
//! into a writer: every check a document needs (its id, its stored fields, one finite vector of
//! the right length per stored rung, values the rung's storage can hold) happens once, in
//! [`NewDocument::new`], and the layers below (write-ahead log, mutable segment, segment files,
//! graph) trust it.

use crate::config::{ElementType, IndexConfig};
use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// Longest document id, in bytes (UTF-8).
pub const MAX_ID_BYTES: usize = 1024;

/// Largest stored text or metadata, in bytes (the document store records lengths as u32).
pub const MAX_FIELD_BYTES: usize = u32::MAX as usize;

/// Checks a document id: 1 to [`MAX_ID_BYTES`] bytes.
///
/// # Errors
/// [`Error::InvalidInput`] naming the rule the id breaks.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidInput("a document id must not be empty".into()));
    }
    if id.len() > MAX_ID_BYTES {
        let start: String = id.chars().take(40).collect();
        return Err(Error::InvalidInput(format!(
            "the document id {start:?}… is {} bytes long; ids may have at most {MAX_ID_BYTES} bytes",
            id.len()
        )));
    }
    Ok(())
}

/// A document ready to be written: its id, stored fields and one vector per stored rung (in
/// stored-rung order), checked against the index configuration it was made for.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDocument {
    pub(crate) id: String,
    pub(crate) title: Option<String>,
    pub(crate) text: Option<String>,
    pub(crate) metadata: Option<String>,
    /// `metadata`, parsed (for filters on documents that are not in a segment file yet).
    pub(crate) fields: Option<Map<String, Value>>,
    pub(crate) vectors: Vec<Vec<f32>>,
}

impl NewDocument {
    /// Checks a document for an index with `config`.
    ///
    /// - `id`: see [`check_id`];
    /// - `text` and `metadata`: at most [`MAX_FIELD_BYTES`]; `metadata` is a JSON object;
    /// - `vectors`: one per stored rung, `rung.dim` finite values each, within what the rung's
    ///   element type holds (f16: ±65504), and the graph rung's squared norm finite in f32
    ///   (the graph's maximum-inner-product reduction squares it).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the document, the rung or field, and the rule broken.
    pub fn new(
        config: &IndexConfig,
        id: String,
        text: Option<String>,
        metadata: Option<String>,
        vectors: Vec<Vec<f32>>,
    ) -> Result<NewDocument> {
        check_id(&id)?;
        for (field, value) in [("text", &text), ("metadata", &metadata)] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_FIELD_BYTES) {
                return Err(Error::InvalidInput(format!("document {id:?}: its {field} exceeds 4 GiB")));
            }
        }
        let fields = match &metadata {
            None => None,
            Some(json) => match serde_json::from_str::<Value>(json) {
                Ok(Value::Object(map)) => Some(map),
                Ok(_) => return Err(Error::InvalidInput(format!("document {id:?}: metadata must be a JSON object"))),
                Err(e) => {
                    return Err(Error::InvalidInput(format!("document {id:?}: metadata is not valid JSON ({e})")));
                }
            },
        };
        check_vectors(config, &id, &vectors)?;
        Ok(NewDocument { id, title: None, text, metadata, fields, vectors })
    }

    /// The document with a title, stored apart from the text and the metadata.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the title exceeds [`MAX_FIELD_BYTES`].
    pub fn with_title(mut self, title: Option<String>) -> Result<NewDocument> {
        if title.as_ref().is_some_and(|t| t.len() > MAX_FIELD_BYTES) {
            return Err(Error::InvalidInput(format!("document {:?}: its title exceeds 4 GiB", self.id)));
        }
        self.title = title;
        Ok(self)
    }

    /// Checks that the document fits an index with `config` (documents are made for one
    /// index; a writer refuses one made for another).
    pub fn check_fits(&self, config: &IndexConfig) -> Result<()> {
        check_vectors(config, &self.id, &self.vectors)
    }

    /// The external id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stored title, if any.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The stored text, if any.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The stored metadata (a JSON object), if any.
    pub fn metadata(&self) -> Option<&str> {
        self.metadata.as_deref()
    }

    /// The vector of the `rung`-th stored rung.
    pub fn vector(&self, rung: usize) -> &[f32] {
        &self.vectors[rung]
    }

    /// Bytes this document takes in memory and in the log, roughly (fields and vectors).
    pub fn size(&self) -> usize {
        self.id.len()
            + self.title.as_ref().map_or(0, String::len)
            + self.text.as_ref().map_or(0, String::len)
            + self.metadata.as_ref().map_or(0, String::len)
            + self.vectors.iter().map(|v| v.len() * 4).sum::<usize>()
    }
}

/// The vector rules of [`NewDocument::new`].
fn check_vectors(config: &IndexConfig, id: &str, vectors: &[Vec<f32>]) -> Result<()> {
    if vectors.len() != config.rungs.len() {
        return Err(Error::InvalidInput(format!(
            "document {id:?} has {} vectors; the index stores {} rungs",
            vectors.len(),
            config.rungs.len()
        )));
    }
    for (r, (v, stored)) in vectors.iter().zip(&config.rungs).enumerate() {
        if v.len() != stored.rung.dim {
            return Err(Error::InvalidInput(format!(
                "document {id:?}: the vector for rung {} has {} values, not {}",
                stored.rung,
                v.len(),
                stored.rung.dim
            )));
        }
        let limit = match stored.element {
            ElementType::F32 | ElementType::I8 => f32::MAX,
            ElementType::F16 => half::f16::MAX.to_f32(),
        };
        if let Some(bad) = v.iter().find(|x| !x.is_finite() || x.abs() > limit) {
            return Err(Error::InvalidInput(format!(
                "document {id:?}: the vector for rung {} holds {bad}, which rung storage ({}) cannot represent",
                stored.rung, stored.element
            )));
        }
        if config.graph.rungs.contains(&r)
            && v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>() >= f64::from(f32::MAX) / 4.0
        {
            return Err(Error::InvalidInput(format!(
                "document {id:?}: the vector for rung {} is too large for the graph (its squared norm overflows f32)",
                stored.rung
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GraphParams, StoredRung};
    use crate::rung::Rung;

    fn config() -> IndexConfig {
        IndexConfig {
            model: "m".into(),
            profile: "{}".into(),
            rungs: vec![
                StoredRung { rung: Rung::new(1, 2), element: ElementType::I8 },
                StoredRung { rung: Rung::new(2, 3), element: ElementType::F16 },
            ],
            graph: GraphParams::on(0),
        }
    }

    fn doc(id: &str, metadata: Option<&str>, vectors: Vec<Vec<f32>>) -> Result<NewDocument> {
        NewDocument::new(&config(), id.into(), Some("t".into()), metadata.map(str::to_string), vectors)
    }

    #[test]
    fn every_rule_is_checked_in_one_place() {
        let good = || vec![vec![0.5, -0.5], vec![1.0, 2.0, 3.0]];
        let d = doc("a", Some(r#"{"x": 1}"#), good()).unwrap();
        assert_eq!(d.fields.as_ref().unwrap()["x"], 1);
        for (id, metadata, vectors, message) in [
            ("", None, good(), "must not be empty"),
            (&"x".repeat(MAX_ID_BYTES + 1) as &str, None, good(), "at most 1024 bytes"),
            ("a", Some("[1]"), good(), "must be a JSON object"),
            ("a", Some("{"), good(), "not valid JSON"),
            ("a", None, vec![vec![0.0, 0.0]], "has 1 vectors"),
            ("a", None, vec![vec![0.0], vec![0.0; 3]], "has 1 values, not 2"),
            ("a", None, vec![vec![0.0, f32::NAN], vec![0.0; 3]], "NaN"),
            ("a", None, vec![vec![0.0, 0.0], vec![0.0, 70_000.0, 0.0]], "cannot represent"),
            ("a", None, vec![vec![3e38, 3e38], vec![0.0; 3]], "squared norm overflows"),
        ] {
            let err = doc(id, metadata, vectors).unwrap_err().to_string();
            assert!(err.contains(message), "{message}: {err}");
        }
        assert!(check_id(&"é".repeat(MAX_ID_BYTES / 2)).is_ok());
    }
}

//! Metadata filters: restrict a search to documents whose stored metadata matches.
//!
//! A filter is a conjunction of conditions on top-level metadata keys; each condition accepts one
//! or more JSON values (equality; a document whose value is an array matches if any element
//! does). Per segment and key, the values are indexed on first use (one pass over the segment's
//! metadata) and kept: later filters on the same key cost a bit-vector union.

use crate::error::{Error, Result};
use bitvec::prelude::{BitVec, Lsb0};
use serde_json::Value;
use std::collections::HashMap;

/// Documents of one segment, one bit each.
pub type Mask = BitVec<u64, Lsb0>;

/// `key ∈ values` for every condition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    conditions: Vec<(String, Vec<Value>)>,
}

impl Filter {
    /// A filter from a JSON object: `{"source": "pubmed", "year": [2019, 2020]}` means
    /// source = "pubmed" and year ∈ {2019, 2020}.
    pub fn from_json(object: &serde_json::Map<String, Value>) -> Result<Filter> {
        let mut conditions = Vec::new();
        for (key, value) in object {
            let values = match value {
                Value::Array(values) if values.is_empty() => {
                    return Err(Error::InvalidInput(format!("filter on {key:?}: an empty list matches nothing")));
                }
                Value::Array(values) => values.clone(),
                Value::Object(_) => {
                    return Err(Error::InvalidInput(format!(
                        "filter on {key:?}: give a value or a list of values (equality), not an object"
                    )));
                }
                other => vec![other.clone()],
            };
            conditions.push((key.clone(), values));
        }
        Ok(Filter { conditions })
    }

    /// Whether the filter has no conditions (matches everything).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// The conditions.
    pub fn conditions(&self) -> &[(String, Vec<Value>)] {
        &self.conditions
    }
}

/// The canonical text of a value (object keys sorted by serde_json's map).
pub(crate) fn canonical(value: &Value) -> String {
    value.to_string()
}

/// Value → documents, for one metadata key of one segment.
pub(crate) type KeyIndex = HashMap<String, Mask>;

/// Adds document `doc`'s value of `key` (from its metadata JSON) to `index`.
pub(crate) fn index_value(index: &mut KeyIndex, docs: usize, doc: u32, metadata: &str, key: &str) {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(metadata) else { return };
    let Some(value) = map.get(key) else { return };
    let mut mark = |v: &Value| {
        index.entry(canonical(v)).or_insert_with(|| Mask::repeat(false, docs)).set(doc as usize, true);
    };
    mark(value);
    if let Value::Array(items) = value {
        items.iter().for_each(&mut mark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conditions_and_indexes_values() {
        let f = Filter::from_json(serde_json::json!({"a": 1, "b": ["x", "y"]}).as_object().unwrap()).unwrap();
        assert_eq!(f.conditions().len(), 2);
        assert!(Filter::from_json(serde_json::json!({"a": []}).as_object().unwrap()).is_err());
        assert!(Filter::from_json(serde_json::json!({"a": {"gt": 1}}).as_object().unwrap()).is_err());
        let mut index = KeyIndex::new();
        index_value(&mut index, 3, 0, r#"{"tags": ["red", "blue"]}"#, "tags");
        index_value(&mut index, 3, 1, r#"{"tags": "red"}"#, "tags");
        index_value(&mut index, 3, 2, "not json", "tags");
        assert_eq!(index["\"red\""].count_ones(), 2);
        assert_eq!(index["\"blue\""].count_ones(), 1);
    }
}

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

/// The canonical text of a value, so that equal JSON values compare equal: numbers as numbers
/// (`2020`, `2020.0` and `2.02e3` are one value: an integral number is written as an integer,
/// any other as the shortest decimal that reads back to the same f64), strings, booleans and
/// null as JSON, arrays and objects element by element (object keys sorted).
pub(crate) fn canonical(value: &Value) -> String {
    match value {
        Value::Number(n) => canonical_number(n),
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let fields: Vec<String> =
                entries.iter().map(|(k, v)| format!("{}:{}", Value::String((*k).clone()), canonical(v))).collect();
            format!("{{{}}}", fields.join(","))
        }
        other => other.to_string(),
    }
}

fn canonical_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        // Integral and exactly representable: the integer's text (2020.0 → "2020").
        Some(x) if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 => (x as i64).to_string(),
        Some(x) => format!("{x}"),
        None => n.to_string(),
    }
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

    /// The issue's case: `{"year": 2020.0}` is found by the filter `{"year": 2020}`.
    #[test]
    fn numbers_compare_as_numbers() {
        let c = |text: &str| canonical(&serde_json::from_str(text).unwrap());
        for same in ["2020", "2020.0", "2.02e3", "2020.000"] {
            assert_eq!(c(same), "2020", "{same}");
        }
        assert_eq!(c("-0.0"), c("0"));
        assert_eq!(c("0.5"), c("5e-1"));
        assert_ne!(c("2020.5"), c("2020"));
        assert_ne!(c("\"2020\""), c("2020"), "a string is not a number");
        assert_eq!(c("[1.0, {\"b\": 2, \"a\": 1.0}]"), c("[1, {\"a\": 1, \"b\": 2.0}]"));
        let mut index = KeyIndex::new();
        index_value(&mut index, 2, 0, r#"{"year": 2020.0}"#, "year");
        index_value(&mut index, 2, 1, r#"{"year": [2019, 2.02e3]}"#, "year");
        assert_eq!(index[&c("2020")].count_ones(), 2);
    }
}

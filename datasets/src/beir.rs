//! BEIR: `corpus.jsonl` (`{"_id", "title", "text"}` per line), `queries.jsonl` (`{"_id", "text"}`)
//! and `qrels/<split>.tsv`.

use crate::lines::{Reading, parse_json, read_lines};
use crate::{Document, Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct CorpusLine {
    #[serde(rename = "_id")]
    id: IdValue,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

/// BEIR ids are strings, but some corpora write them as numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    Text(String),
    Number(serde_json::Number),
}

impl IdValue {
    fn into_string(self) -> String {
        match self {
            IdValue::Text(s) => s,
            IdValue::Number(n) => n.to_string(),
        }
    }
}

/// Streams the documents of a BEIR `corpus.jsonl`; lines it cannot take as they are follow
/// `reading`'s policy (see [`crate::lines`]).
pub fn read_corpus(path: &Path, reading: &Reading) -> Result<impl Iterator<Item = Result<Document>> + use<>> {
    let owned: PathBuf = path.to_path_buf();
    let policy = reading.clone();
    Ok(read_lines(path, reading)?.filter_map(move |line| {
        let parsed = line.and_then(|(number, line)| {
            parse_json::<CorpusLine>(
                &policy,
                &owned,
                number,
                &line,
                "expected a JSON object with \"_id\", \"title\" and \"text\"",
            )
        });
        match parsed {
            Ok(Some(parsed)) => Some(Ok(Document {
                id: parsed.id.into_string(),
                title: parsed.title.unwrap_or_default(),
                text: parsed.text.unwrap_or_default(),
            })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }))
}

/// One query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Query id.
    pub id: String,
    /// Query text.
    pub text: String,
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id")]
    id: IdValue,
    #[serde(default)]
    text: Option<String>,
}

/// Reads a BEIR `queries.jsonl` (a query without `text` reads as blank).
pub fn read_queries(path: &Path, reading: &Reading) -> Result<Vec<Query>> {
    let mut queries = Vec::new();
    for line in read_lines(path, reading)? {
        let (number, line) = line?;
        let expected = "expected a JSON object with \"_id\" and \"text\"";
        if let Some(parsed) = parse_json::<QueryLine>(reading, path, number, &line, expected)? {
            queries.push(Query { id: parsed.id.into_string(), text: parsed.text.unwrap_or_default() });
        }
    }
    Ok(queries)
}

/// Relevance judgements: query id → document id → grade.
pub type Qrels = std::collections::BTreeMap<String, std::collections::BTreeMap<String, i32>>;

/// Reads a BEIR qrels TSV (`query-id<TAB>corpus-id<TAB>score`, with or without the header).
pub fn read_qrels(path: &Path, reading: &Reading) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    for line in read_lines(path, reading)? {
        let (number, line) = line?;
        if qrels.is_empty() && line.starts_with("query-id") {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let malformed = |message: String| Error::Malformed { path: path.to_path_buf(), line: number, message };
        let parsed = match fields[..] {
            [query, doc, _] if query.is_empty() || doc.is_empty() => {
                Err(malformed("the query id and the corpus id must not be empty".into()))
            }
            [query, doc, grade] => grade
                .parse::<i32>()
                .map(|grade| (query, doc, grade))
                .map_err(|_| malformed(format!("the score {grade:?} is not an integer"))),
            _ => Err(malformed(format!(
                "expected 3 tab-separated fields (query-id, corpus-id, score), found {}",
                fields.len()
            ))),
        };
        match parsed {
            Ok((query, doc, grade)) => {
                qrels.entry(query.to_string()).or_default().insert(doc.to_string(), grade);
            }
            Err(e) => reading.skip(e)?,
        }
    }
    Ok(qrels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_queries_and_qrels() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queries.jsonl");
        std::fs::write(&q, "{\"_id\": \"1\", \"text\": \"a?\", \"metadata\": {}}\n{\"_id\": 2, \"text\": \"b\"}\n")
            .unwrap();
        let queries = read_queries(&q, &Reading::tolerant()).unwrap();
        assert_eq!(queries[1], Query { id: "2".into(), text: "b".into() });
        let r = dir.path().join("test.tsv");
        std::fs::write(&r, "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t2\n").unwrap();
        let qrels = read_qrels(&r, &Reading::strict()).unwrap();
        assert_eq!(qrels["1"]["d2"], 2);
        std::fs::write(&r, "query-id\tcorpus-id\tscore\n1\td1\n").unwrap();
        assert!(read_qrels(&r, &Reading::strict()).unwrap_err().to_string().contains("test.tsv:2"));
        std::fs::write(&r, "1\td1\tx\n1\td2\t1\n").unwrap();
        assert!(read_qrels(&r, &Reading::strict()).unwrap_err().to_string().contains("not an integer"));
        // Tolerant: the bad line is skipped and named.
        let reading = Reading::tolerant();
        assert_eq!(read_qrels(&r, &reading).unwrap()["1"].len(), 1);
        assert!(reading.summary().unwrap().contains("test.tsv:1: the score \"x\" is not an integer"));
    }

    #[test]
    fn reads_real_shapes_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.jsonl");
        std::fs::write(
            &path,
            "\u{feff}{\"_id\": \"a\", \"title\": \"\", \"text\": \"x\"}\n\n{\"_id\": 7, \"text\": \"y\", \"metadata\": {}}\n{\"title\": \"no id\"}\n",
        )
        .unwrap();
        let docs: Vec<_> = read_corpus(&path, &Reading::strict()).unwrap().collect();
        assert_eq!(docs[0].as_ref().unwrap(), &Document { id: "a".into(), title: String::new(), text: "x".into() });
        assert_eq!(docs[0].as_ref().unwrap().passage(), "x");
        assert_eq!(docs[1].as_ref().unwrap().id, "7");
        let err = docs[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("corpus.jsonl:4") && err.contains("_id"), "{err}");
        let tolerant = Reading::tolerant();
        assert_eq!(read_corpus(&path, &tolerant).unwrap().filter(Result::is_ok).count(), 2);
        let summary = tolerant.summary().unwrap();
        assert!(summary.contains("skipped ") && summary.contains("corpus.jsonl:4"), "{summary}");
        // Invalid UTF-8 inside a string costs one replacement character, not the file; a null
        // title reads as empty.
        std::fs::write(&path, b"{\"_id\": \"m\", \"title\": null, \"text\": \"caf\xe9 \xc3\xa9t\xc3\xa9\"}\r\n")
            .unwrap();
        let doc = read_corpus(&path, &Reading::tolerant()).unwrap().next().unwrap().unwrap();
        assert_eq!((doc.title.as_str(), doc.text.as_str()), ("", "caf\u{fffd} \u{e9}t\u{e9}"));
    }

    /// The line: a lone surrogate (half an emoji). BEIR (Python's json) reads it; so
    /// does Barista, repairing it, unless --strict asks to stop.
    #[test]
    fn a_lone_surrogate_is_repaired_or_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.jsonl");
        std::fs::write(
            &path,
            "{\"_id\": \"a\", \"text\": \"ok\"}\n{\"_id\": \"b\", \"text\": \"emoji \\ud83d cut\"}\n",
        )
        .unwrap();
        let reading = Reading::tolerant();
        let docs: Vec<Document> = read_corpus(&path, &reading).unwrap().map(Result::unwrap).collect();
        assert_eq!(docs[1].text, "emoji \u{fffd} cut");
        assert!(reading.summary().unwrap().contains("corpus.jsonl:2: repaired: a lone UTF-16 surrogate"));
        let err = read_corpus(&path, &Reading::strict()).unwrap().nth(1).unwrap().unwrap_err().to_string();
        assert!(err.contains("corpus.jsonl:2") && err.contains("surrogate") && err.contains("--strict"), "{err}");
    }
}

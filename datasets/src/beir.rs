//! BEIR: `corpus.jsonl` (`{"_id", "title", "text"}` per line).

use crate::{Document, Error, Result};
use serde::Deserialize;
use std::io::{BufRead, BufReader};
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

/// Streams the documents of a BEIR `corpus.jsonl`.
pub fn read_corpus(path: &Path) -> Result<impl Iterator<Item = Result<Document>>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let path: PathBuf = path.to_path_buf();
    let mut lines = BufReader::new(file).lines().enumerate();
    Ok(std::iter::from_fn(move || {
        loop {
            let (index, line) = lines.next()?;
            let number = index + 1;
            let line = match line {
                Ok(line) => line,
                Err(source) => return Some(Err(Error::Io { path: path.clone(), source })),
            };
            let line = if number == 1 { line.trim_start_matches('\u{feff}') } else { &line };
            if line.trim().is_empty() {
                continue;
            }
            let parsed: CorpusLine = match serde_json::from_str(line) {
                Ok(parsed) => parsed,
                Err(e) => {
                    return Some(Err(Error::Malformed {
                        path: path.clone(),
                        line: number,
                        message: format!("{e}; expected a JSON object with \"_id\", \"title\" and \"text\""),
                    }));
                }
            };
            return Some(Ok(Document {
                id: parsed.id.into_string(),
                title: parsed.title.unwrap_or_default(),
                text: parsed.text.unwrap_or_default(),
            }));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_shapes_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.jsonl");
        std::fs::write(
            &path,
            "\u{feff}{\"_id\": \"a\", \"title\": \"\", \"text\": \"x\"}\n\n{\"_id\": 7, \"text\": \"y\", \"metadata\": {}}\n{\"title\": \"no id\"}\n",
        )
        .unwrap();
        let docs: Vec<_> = read_corpus(&path).unwrap().collect();
        assert_eq!(docs[0].as_ref().unwrap(), &Document { id: "a".into(), title: String::new(), text: "x".into() });
        assert_eq!(docs[0].as_ref().unwrap().passage(), "x");
        assert_eq!(docs[1].as_ref().unwrap().id, "7");
        let err = docs[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("corpus.jsonl:4") && err.contains("_id"), "{err}");
    }
}

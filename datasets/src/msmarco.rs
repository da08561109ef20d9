//! MS MARCO passage files: `collection.tsv` (`pid<TAB>passage`), `queries.*.tsv`
//! (`qid<TAB>query`) and TREC qrels (`qid 0 pid grade`, tab- or space-separated).
//!
//! The real collection contains mojibake and stray control characters; lines are read as bytes
//! and decoded lossily, so a bad byte never stops a 8.8M-line read.

use crate::beir::{Qrels, Query};
use crate::lines::{Reading, read_lines};
use crate::{Document, Error, Result};
use std::path::Path;

fn two_fields(path: &Path, number: usize, line: &str, what: &str) -> Result<(String, String)> {
    match line.split_once('\t') {
        Some((id, text)) if !id.trim().is_empty() => Ok((id.trim().to_string(), text.to_string())),
        _ => Err(Error::Malformed { path: path.to_path_buf(), line: number, message: format!("expected {what}") }),
    }
}

/// Streams `collection.tsv` as documents (no titles); lines it cannot take as they are follow
/// `reading`'s policy (see [`crate::lines`]).
pub fn read_collection(path: &Path, reading: &Reading) -> Result<impl Iterator<Item = Result<Document>> + use<>> {
    let owned = path.to_path_buf();
    let policy = reading.clone();
    Ok(read_lines(path, reading)?.filter_map(move |line| {
        let fields = line.and_then(|(number, line)| match two_fields(&owned, number, &line, "pid<TAB>passage") {
            Ok(fields) => Ok(Some(fields)),
            Err(e) => policy.skip(e).map(|()| None),
        });
        match fields {
            Ok(Some((id, text))) => Some(Ok(Document { id, title: String::new(), text })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }))
}

/// Reads a queries TSV.
pub fn read_queries(path: &Path, reading: &Reading) -> Result<Vec<Query>> {
    let mut queries = Vec::new();
    for line in read_lines(path, reading)? {
        let (number, line) = line?;
        match two_fields(path, number, &line, "qid<TAB>query") {
            Ok((id, text)) => queries.push(Query { id, text }),
            Err(e) => reading.skip(e)?,
        }
    }
    Ok(queries)
}

/// Reads TREC qrels (`qid iteration docid grade`).
pub fn read_qrels(path: &Path, reading: &Reading) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    for line in read_lines(path, reading)? {
        let (number, line) = line?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let malformed = |message: String| Error::Malformed { path: path.to_path_buf(), line: number, message };
        let parsed = match fields[..] {
            [query, _, doc, grade] => grade
                .parse::<i32>()
                .map(|grade| (query, doc, grade))
                .map_err(|_| malformed(format!("the grade {grade:?} is not an integer"))),
            _ => Err(malformed(format!("expected 4 fields (qid 0 docid grade), found {}", fields.len()))),
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
    fn reads_the_three_files_and_tolerates_mojibake() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("collection.tsv");
        std::fs::write(&c, b"1\tpassage \xe2\x80 one\r\n\n2\ttwo\n3 no tab\n").unwrap();
        let tolerant = Reading::tolerant();
        let docs: Vec<_> = read_collection(&c, &tolerant).unwrap().collect();
        assert!(docs[0].as_ref().unwrap().text.starts_with("passage"));
        assert_eq!(docs[1].as_ref().unwrap().id, "2");
        assert_eq!(docs.len(), 2, "the line without a tab is skipped");
        assert_eq!(tolerant.counts(), (1, 1));
        assert!(tolerant.summary().unwrap().contains("collection.tsv:4"));
        let strict: Vec<_> = read_collection(&c, &Reading::strict()).unwrap().collect();
        assert!(strict[0].as_ref().unwrap_err().to_string().contains("collection.tsv:1"), "mojibake stops it");
        let q = dir.path().join("queries.tsv");
        std::fs::write(&q, "19335\tanthropological definition of environment\n").unwrap();
        assert_eq!(read_queries(&q, &Reading::strict()).unwrap()[0].id, "19335");
        let r = dir.path().join("qrels.tsv");
        std::fs::write(&r, "19335\t0\t1720389\t1\n19335 0 1729 2\n").unwrap();
        assert_eq!(read_qrels(&r, &Reading::strict()).unwrap()["19335"]["1729"], 2);
        std::fs::write(&r, "19335 0 1729\n").unwrap();
        assert!(read_qrels(&r, &Reading::strict()).is_err());
    }
}

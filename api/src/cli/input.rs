//! Reading documents to index: JSONL (`{"id", "text", "title"?, "metadata"?}` per line) or a
//! BEIR corpus (`corpus.jsonl`, or a folder holding one).

use anyhow::Result;
use barista_datasets::Reading;
use barista_datasets::lines::{parse_json, read_lines};
use barista_engine::Document;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line: {"id", "text", "title"?, "metadata"?}.
    Jsonl,
    /// A BEIR corpus.jsonl ({"_id", "title", "text"}), or a BEIR data set folder.
    Beir,
    /// An MS MARCO collection.tsv (pid<TAB>passage), or a folder holding one.
    Msmarco,
}

/// A streaming reader of documents.
pub struct Documents {
    inner: Box<dyn Iterator<Item = Result<Document>>>,
    /// Documents in the input (for progress), when cheap to know.
    pub total: Option<u64>,
}

impl Iterator for Documents {
    type Item = Result<Document>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

/// Opens `path` in `format`; lines that cannot be taken as they are follow `reading` (see
/// [`barista_datasets::lines`]).
pub fn open(path: &Path, format: Format, reading: &Reading) -> Result<Documents> {
    match format {
        Format::Jsonl => jsonl(path, reading),
        Format::Beir => {
            let corpus = if path.is_dir() { path.join("corpus.jsonl") } else { path.to_path_buf() };
            let total = count_lines(&corpus).ok();
            let docs = barista_datasets::beir::read_corpus(&corpus, reading)?.map(|d| {
                let d = d?;
                Ok(Document {
                    id: d.id,
                    text: d.text,
                    title: Some(d.title).filter(|t| !t.trim().is_empty()),
                    metadata: None,
                })
            });
            Ok(Documents { inner: Box::new(docs), total })
        }
        Format::Msmarco => {
            let collection = if path.is_dir() { path.join("collection.tsv") } else { path.to_path_buf() };
            let total = count_lines(&collection).ok();
            let docs = barista_datasets::msmarco::read_collection(&collection, reading)?.map(|d| {
                d.map(|d| Document { id: d.id, text: d.text, title: None, metadata: None }).map_err(Into::into)
            });
            Ok(Documents { inner: Box::new(docs), total })
        }
    }
}

fn count_lines(path: &Path) -> std::io::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut lines = 0;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(lines);
        }
        lines += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
        let n = buffer.len();
        reader.consume(n);
    }
}

/// Barista's JSONL, through the same line reader as the data set formats: one document per
/// line, checked by the engine's rules (a line that breaks them is skipped, or stops a
/// `--strict` read, naming `file:line`).
fn jsonl(path: &Path, reading: &Reading) -> Result<Documents> {
    let total = count_lines(path).ok();
    let lines = read_lines(path, reading)?;
    let (path, reading): (PathBuf, Reading) = (path.to_path_buf(), reading.clone());
    let expected = "expected {\"id\": \"…\", \"text\": \"…\", \"title\"?, \"metadata\"?}";
    let inner = lines.filter_map(move |line| {
        let parsed = line.and_then(|(number, line)| {
            let doc = parse_json::<Document>(&reading, &path, number, &line, expected)?;
            match doc.map(|d| d.check().map(|()| d)) {
                Some(Err(e)) => {
                    let message = e.to_string();
                    reading.skip(barista_datasets::Error::Malformed { path: path.clone(), line: number, message })?;
                    Ok(None)
                }
                Some(Ok(d)) => Ok(Some(d)),
                None => Ok(None),
            }
        });
        match parsed {
            Ok(Some(d)) => Some(Ok(d)),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        }
    });
    Ok(Documents { inner: Box::new(inner), total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jsonl_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs.jsonl");
        std::fs::write(&path, "{\"id\": \"a\", \"text\": \"x\", \"metadata\": {\"k\": 1}}\n\n{\"id\": \"b\", \"text\": \"y\", \"title\": \"T\"}\n{\"text\": \"no id\"}\n{\"id\": \"\", \"text\": \"empty id\"}\n").unwrap();
        let docs: Vec<_> = open(&path, Format::Jsonl, &Reading::strict()).unwrap().collect();
        assert_eq!(docs[0].as_ref().unwrap().metadata, Some(serde_json::json!({"k": 1})));
        assert_eq!(docs[1].as_ref().unwrap().passage(), "T y");
        let err = format!("{:#}", docs[2].as_ref().unwrap_err());
        assert!(err.contains("docs.jsonl:4") && err.contains("id"), "{err}");
        // Tolerant: both bad lines are skipped and named; an invalid byte is repaired.
        std::fs::write(
            &path,
            b"{\"id\": \"a\", \"text\": \"caf\xe9\"}\n{\"text\": \"no id\"}\n{\"id\": \"\", \"text\": \"x\"}\n",
        )
        .unwrap();
        let reading = Reading::tolerant();
        let docs: Vec<_> = open(&path, Format::Jsonl, &reading).unwrap().map(Result::unwrap).collect();
        assert_eq!((docs.len(), docs[0].text.as_str()), (1, "caf\u{fffd}"));
        assert_eq!(reading.counts(), (1, 2));
        let summary = reading.summary().unwrap();
        assert!(
            summary.contains("docs.jsonl:1: repaired")
                && summary.contains("docs.jsonl:3: a document id must not be empty"),
            "{summary}"
        );
    }
}

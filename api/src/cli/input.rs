//! Reading documents to index: JSONL (`{"id", "text", "title"?, "metadata"?}` per line) or a
//! BEIR corpus (`corpus.jsonl`, or a folder holding one).

use anyhow::{Context, Result, bail};
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

/// Opens `path` in `format`.
pub fn open(path: &Path, format: Format) -> Result<Documents> {
    match format {
        Format::Jsonl => jsonl(path),
        Format::Beir => {
            let corpus = if path.is_dir() { path.join("corpus.jsonl") } else { path.to_path_buf() };
            let total = count_lines(&corpus).ok();
            let docs = barista_datasets::beir::read_corpus(&corpus)?.map(|d| {
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
            let docs = barista_datasets::msmarco::read_collection(&collection)?.map(|d| {
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

fn jsonl(path: &Path) -> Result<Documents> {
    let file = std::fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let total = count_lines(path).ok();
    let path: PathBuf = path.to_path_buf();
    let mut lines = BufReader::new(file).lines().enumerate();
    let inner = std::iter::from_fn(move || {
        loop {
            let (index, line) = lines.next()?;
            let line = match line {
                Ok(line) => line,
                Err(e) => return Some(Err(anyhow::Error::new(e).context(format!("reading {}", path.display())))),
            };
            let line = if index == 0 { line.trim_start_matches('\u{feff}').to_string() } else { line };
            if line.trim().is_empty() {
                continue;
            }
            return Some(parse_line(&line).with_context(|| format!("{}:{}", path.display(), index + 1)));
        }
    });
    Ok(Documents { inner: Box::new(inner), total })
}

fn parse_line(line: &str) -> Result<Document> {
    let doc: Document =
        serde_json::from_str(line).context("expected {\"id\": \"…\", \"text\": \"…\", \"title\"?, \"metadata\"?}")?;
    if doc.id.is_empty() {
        bail!("\"id\" is empty");
    }
    if doc.metadata.as_ref().is_some_and(|m| !m.is_object() && !m.is_null()) {
        bail!("\"metadata\" must be a JSON object");
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jsonl_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs.jsonl");
        std::fs::write(&path, "{\"id\": \"a\", \"text\": \"x\", \"metadata\": {\"k\": 1}}\n\n{\"id\": \"b\", \"text\": \"y\", \"title\": \"T\"}\n{\"text\": \"no id\"}\n").unwrap();
        let docs: Vec<_> = open(&path, Format::Jsonl).unwrap().collect();
        assert_eq!(docs[0].as_ref().unwrap().metadata, Some(serde_json::json!({"k": 1})));
        assert_eq!(docs[1].as_ref().unwrap().passage(), "T y");
        let err = format!("{:#}", docs[2].as_ref().unwrap_err());
        assert!(err.contains("docs.jsonl:4") && err.contains("id"), "{err}");
    }
}

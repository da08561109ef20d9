//! Readers for retrieval data sets in BEIR and MS MARCO file formats.
//!
//! Readers stream: they hold one line at a time, and every error names the file, the line and
//! what was expected there.

pub mod beir;
pub mod msmarco;
pub mod vecs;

use std::path::PathBuf;

/// Why a data set file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("could not read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line does not have the expected shape.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was expected.
        message: String,
    },
}

/// Shorthand for results with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One document of a corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// External id.
    pub id: String,
    /// Title (may be empty).
    pub title: String,
    /// Body text.
    pub text: String,
}

impl Document {
    /// The text an encoder sees: the title and the body joined by a space, as BEIR's
    /// sentence-transformers evaluation does (just the body when the title is empty).
    pub fn passage(&self) -> String {
        if self.title.trim().is_empty() { self.text.clone() } else { format!("{} {}", self.title, self.text) }
    }
}

/// A data set on disk: its documents, queries and judgements.
#[derive(Clone, Debug)]
pub enum DataSet {
    /// A BEIR folder: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.
    Beir(PathBuf),
    /// An MS MARCO-style folder: `collection.tsv`, `queries.tsv`, `qrels.tsv`.
    MsMarco(PathBuf),
}

impl DataSet {
    /// Recognises the format of a folder by its files.
    pub fn detect(dir: &std::path::Path) -> Result<DataSet> {
        if dir.join("corpus.jsonl").is_file() {
            Ok(DataSet::Beir(dir.to_path_buf()))
        } else if dir.join("collection.tsv").is_file() {
            Ok(DataSet::MsMarco(dir.to_path_buf()))
        } else {
            Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::other(
                    "neither a BEIR folder (corpus.jsonl) nor an MS MARCO folder (collection.tsv)",
                ),
            })
        }
    }

    /// Streams the documents.
    pub fn documents(&self) -> Result<Box<dyn Iterator<Item = Result<Document>>>> {
        Ok(match self {
            DataSet::Beir(dir) => Box::new(beir::read_corpus(&dir.join("corpus.jsonl"))?),
            DataSet::MsMarco(dir) => Box::new(msmarco::read_collection(&dir.join("collection.tsv"))?),
        })
    }

    /// The queries that have judgements in `split` (BEIR: `qrels/<split>.tsv`; MS MARCO: the one
    /// `qrels.tsv`), with those judgements.
    pub fn judged_queries(&self, split: &str) -> Result<(Vec<beir::Query>, beir::Qrels)> {
        let (queries, qrels) = match self {
            DataSet::Beir(dir) => (
                beir::read_queries(&dir.join("queries.jsonl"))?,
                beir::read_qrels(&dir.join("qrels").join(format!("{split}.tsv")))?,
            ),
            DataSet::MsMarco(dir) => {
                (msmarco::read_queries(&dir.join("queries.tsv"))?, msmarco::read_qrels(&dir.join("qrels.tsv"))?)
            }
        };
        let judged = queries.into_iter().filter(|q| qrels.contains_key(&q.id)).collect();
        Ok((judged, qrels))
    }
}

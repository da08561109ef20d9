//! Readers for retrieval data sets in BEIR and MS MARCO file formats.
//!
//! Readers stream: they hold one line at a time, tolerate what real files contain (byte-order
//! marks, mojibake, `\r\n`, empty titles, numeric ids), and every error names the file, the line
//! and what was expected there. [`catalog`] names the public BEIR and MS MARCO data sets and
//! [`download`] fetches them into a local cache, checksummed, when the network allows.

mod archive;
pub mod beir;
pub mod catalog;
pub mod download;
pub mod lines;
pub mod msmarco;
pub mod vecs;

pub use lines::Reading;
use std::path::{Path, PathBuf};

/// Why a data set file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("could not read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (part of the message, so not also a `source`).
        error: std::io::Error,
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
    /// A file could not be downloaded, or did not match its published checksum.
    #[error("could not download {url}: {message}")]
    Download {
        /// Where it was fetched from.
        url: String,
        /// What went wrong, and what to do.
        message: String,
    },
    /// A name that is neither a folder nor a data set this crate knows.
    #[error("{0}")]
    Unknown(String),
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

/// The file layout of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// BEIR: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.
    Beir,
    /// MS MARCO passage files: `collection.tsv`, a queries TSV and TREC qrels.
    MsMarco,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "beir" => Ok(Format::Beir),
            "msmarco" | "ms-marco" | "trec" => Ok(Format::MsMarco),
            other => Err(format!("unknown data set format '{other}': choose beir or msmarco")),
        }
    }
}

/// The three files of an MS MARCO-style data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsMarcoFiles {
    /// `pid<TAB>passage` lines.
    pub collection: PathBuf,
    /// `qid<TAB>query` lines.
    pub queries: PathBuf,
    /// TREC qrels (`qid 0 pid grade`).
    pub qrels: PathBuf,
}

/// A data set on disk: its documents, queries and judgements.
#[derive(Clone, Debug)]
pub enum DataSet {
    /// A BEIR folder: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.
    Beir(PathBuf),
    /// MS MARCO-style files.
    MsMarco(MsMarcoFiles),
}

fn missing(path: &Path, what: &str) -> Error {
    Error::Io { path: path.to_path_buf(), error: std::io::Error::new(std::io::ErrorKind::NotFound, what.to_string()) }
}

/// The one file in `dir` named `exact`, or else the only one whose name `matches` (described
/// by `pattern` in errors).
fn pick(dir: &Path, exact: &str, matches: impl Fn(&str) -> bool, pattern: &str, what: &str) -> Result<PathBuf> {
    if dir.join(exact).is_file() {
        return Ok(dir.join(exact));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), error: source })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(&matches))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(missing(dir, &format!("no {what} here: expected {exact} (or one {pattern})"))),
        _ => Err(missing(
            dir,
            &format!(
                "several candidate {what} files ({}): keep one, or name it {exact}",
                found.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

impl DataSet {
    /// Recognises the format of a folder by its files.
    pub fn detect(dir: &Path) -> Result<DataSet> {
        if dir.join("corpus.jsonl").is_file() {
            DataSet::open(dir, Format::Beir)
        } else if dir.join("collection.tsv").is_file() {
            DataSet::open(dir, Format::MsMarco)
        } else if !dir.is_dir() {
            Err(missing(dir, "no such folder"))
        } else {
            Err(missing(dir, "neither a BEIR folder (corpus.jsonl) nor an MS MARCO folder (collection.tsv)"))
        }
    }

    /// Opens a folder in the given format, checking that its files are there. MS MARCO folders
    /// hold `collection.tsv`, `queries.tsv` (or one `queries*.tsv`) and `qrels.tsv` (or one
    /// `qrels*.tsv` / `*qrels*.txt`).
    pub fn open(dir: &Path, format: Format) -> Result<DataSet> {
        match format {
            Format::Beir => {
                for file in ["corpus.jsonl", "queries.jsonl"] {
                    if !dir.join(file).is_file() {
                        return Err(missing(
                            &dir.join(file),
                            "a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/",
                        ));
                    }
                }
                Ok(DataSet::Beir(dir.to_path_buf()))
            }
            Format::MsMarco => {
                let collection = dir.join("collection.tsv");
                if !collection.is_file() {
                    return Err(missing(&collection, "an MS MARCO folder needs collection.tsv (pid<TAB>passage)"));
                }
                let queries = pick(
                    dir,
                    "queries.tsv",
                    |n| n.starts_with("queries") && n.ends_with(".tsv"),
                    "queries*.tsv",
                    "queries",
                )?;
                let qrels = pick(
                    dir,
                    "qrels.tsv",
                    |n| n.contains("qrels") && (n.ends_with(".tsv") || n.ends_with(".txt")),
                    "*qrels*.tsv or *qrels*.txt",
                    "qrels",
                )?;
                Ok(DataSet::MsMarco(MsMarcoFiles { collection, queries, qrels }))
            }
        }
    }

    /// The format of this data set.
    pub fn format(&self) -> Format {
        match self {
            DataSet::Beir(_) => Format::Beir,
            DataSet::MsMarco(_) => Format::MsMarco,
        }
    }

    /// Streams the documents (lines that cannot be taken as they are follow `reading`).
    pub fn documents(&self, reading: &Reading) -> Result<Box<dyn Iterator<Item = Result<Document>>>> {
        Ok(match self {
            DataSet::Beir(dir) => Box::new(beir::read_corpus(&dir.join("corpus.jsonl"), reading)?),
            DataSet::MsMarco(files) => Box::new(msmarco::read_collection(&files.collection, reading)?),
        })
    }

    /// The judgement splits available (BEIR: the files in `qrels/`; MS MARCO: the one qrels
    /// file, called `test`).
    pub fn splits(&self) -> Vec<String> {
        match self {
            DataSet::Beir(dir) => {
                let mut splits: Vec<String> = std::fs::read_dir(dir.join("qrels"))
                    .map(|entries| {
                        entries
                            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".tsv").map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                splits.sort();
                splits
            }
            DataSet::MsMarco(_) => vec!["test".into()],
        }
    }

    /// The queries that have judgements in `split` (BEIR: `qrels/<split>.tsv`; MS MARCO: the one
    /// qrels file, whatever `split` says), with those judgements.
    pub fn judged_queries(&self, split: &str, reading: &Reading) -> Result<(Vec<beir::Query>, beir::Qrels)> {
        let (queries, qrels) = match self {
            DataSet::Beir(dir) => {
                let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
                if !qrels_path.is_file() {
                    return Err(missing(
                        &qrels_path,
                        &format!("no judgements for split '{split}'; this data set has: {}", self.splits().join(", ")),
                    ));
                }
                (beir::read_queries(&dir.join("queries.jsonl"), reading)?, beir::read_qrels(&qrels_path, reading)?)
            }
            DataSet::MsMarco(files) => {
                (msmarco::read_queries(&files.queries, reading)?, msmarco::read_qrels(&files.qrels, reading)?)
            }
        };
        let judged = queries.into_iter().filter(|q| qrels.contains_key(&q.id)).collect();
        Ok((judged, qrels))
    }

    /// Every query (judged or not), for workloads that need no judgements.
    pub fn queries(&self, reading: &Reading) -> Result<Vec<beir::Query>> {
        match self {
            DataSet::Beir(dir) => beir::read_queries(&dir.join("queries.jsonl"), reading),
            DataSet::MsMarco(files) => msmarco::read_queries(&files.queries, reading),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_the_shared_data_sets_and_explains_what_is_missing() {
        let scifact = Path::new("../../shared/datasets/scifact");
        let data = DataSet::detect(scifact).unwrap();
        assert_eq!(data.splits(), vec!["test".to_string(), "train".into()]);
        let r = Reading::strict();
        let (queries, qrels) = data.judged_queries("test", &r).unwrap();
        assert_eq!((queries.len(), qrels.len()), (300, 300));
        let err = data.judged_queries("dev", &r).unwrap_err().to_string();
        assert!(err.contains("split 'dev'") && err.contains("test, train"), "{err}");

        let dl19 = DataSet::detect(Path::new("../../shared/datasets/msmarco-dl19-subset")).unwrap();
        let (queries, qrels) = dl19.judged_queries("test", &r).unwrap();
        assert_eq!((queries.len(), qrels.len()), (43, 43));
        assert_eq!(dl19.documents(&r).unwrap().count(), 5000);

        let dir = tempfile::tempdir().unwrap();
        let err = DataSet::detect(dir.path()).unwrap_err().to_string();
        assert!(err.contains("neither a BEIR folder"), "{err}");
        std::fs::write(dir.path().join("collection.tsv"), "1\tx\n").unwrap();
        std::fs::write(dir.path().join("queries.dev.tsv"), "1\tq\n").unwrap();
        std::fs::write(dir.path().join("queries.train.tsv"), "1\tq\n").unwrap();
        let err = DataSet::detect(dir.path()).unwrap_err().to_string();
        assert!(err.contains("several candidate queries files"), "{err}");
        std::fs::remove_file(dir.path().join("queries.train.tsv")).unwrap();
        std::fs::write(dir.path().join("2019qrels-pass.txt"), "1 0 1 1\n").unwrap();
        let DataSet::MsMarco(files) = DataSet::detect(dir.path()).unwrap() else { panic!("not MS MARCO") };
        assert!(files.queries.ends_with("queries.dev.tsv") && files.qrels.ends_with("2019qrels-pass.txt"));
        assert!("bier".parse::<Format>().unwrap_err().contains("beir or msmarco"));
    }
}

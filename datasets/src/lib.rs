//! Readers for retrieval data sets in BEIR and MS MARCO file formats.
//!
//! Readers stream: they hold one line at a time, and every error names the file, the line and
//! what was expected there.

pub mod beir;
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

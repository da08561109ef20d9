//! The engine's error type: every variant says what was wrong, where, and what to do.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model or encoding text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("could not read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file was read but its content is not what it must be.
    #[error("{path} is not valid: {message}")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// The model is not one Barista can run.
    #[error("unsupported model {model}: {message}")]
    UnsupportedModel {
        /// The model folder or id.
        model: String,
        /// What is unsupported and what to do.
        message: String,
    },
    /// The 2D Matryoshka profile is inconsistent or does not fit the model.
    #[error("invalid 2D profile for {model}: {message}")]
    Profile {
        /// The model folder or id.
        model: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A model could not be found locally or fetched from the Hugging Face Hub.
    #[error("{0}")]
    ModelNotFound(String),
    /// The tokenizer failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// A request asked for something impossible (an unknown rung, a layer beyond the model…).
    #[error("{0}")]
    InvalidRequest(String),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] barista_index::Error),
    /// An internal resource (a thread) could not be created.
    #[error("could not start an encoder thread: {0}")]
    Thread(std::io::Error),
}

/// Shorthand for results with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn invalid_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::InvalidFile { path: path.into(), message: message.into() }
    }
}

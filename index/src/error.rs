//! The index's error type. Every message names the file (or id, or rung) concerned and says
//! what to do.

use std::path::PathBuf;

/// Everything that can go wrong with an index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("could not read", "could not write", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file's content is not what the manifest or its own header promises: it is damaged.
    #[error(
        "{path} is damaged: {message}. The index refuses to use it; restore the index directory from a backup \
         or rebuild it"
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// The directory holds no index, or one this version cannot read.
    #[error("{path}: {message}")]
    Incompatible {
        /// The index directory.
        path: PathBuf,
        /// Why it cannot be used.
        message: String,
    },
    /// Another writer holds the index.
    #[error(
        "{path} is locked by another writer (a running `barista` or server?); only one process may write to an \
         index at a time"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A request that cannot be carried out as asked (wrong vector length, unknown rung, …).
    #[error("{0}")]
    InvalidInput(String),
    /// The writer cannot take the write now (flushes are behind); retrying later will work.
    #[error("{0}")]
    Busy(String),
    /// The writer hit a failure it cannot undo in this process (its log could not be rolled
    /// back, or a commit reached the disk but could not be taken up): reopen the index.
    #[error("{0}")]
    Unusable(String),
    /// The work was stopped because the writer is closing.
    #[error("stopped: the index writer is closing")]
    Cancelled,
}

/// Shorthand for results with the index's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { action: "could not read", path: path.into(), source }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { action: "could not write", path: path.into(), source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error::Corrupt { path: path.into(), message: message.into() }
    }

    /// The same error again (for telling every request of a failed group commit).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { action, path, source } => {
                Error::Io { action, path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            Error::Corrupt { path, message } => Error::Corrupt { path: path.clone(), message: message.clone() },
            Error::Incompatible { path, message } => {
                Error::Incompatible { path: path.clone(), message: message.clone() }
            }
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::InvalidInput(m) => Error::InvalidInput(m.clone()),
            Error::Busy(m) => Error::Busy(m.clone()),
            Error::Unusable(m) => Error::Unusable(m.clone()),
            Error::Cancelled => Error::Cancelled,
        }
    }

    /// Whether the error is a full disk (or a file-size limit): freeing space and retrying
    /// will work.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge | std::io::ErrorKind::QuotaExceeded))
    }
}

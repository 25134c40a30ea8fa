//! Errors the store reports.

use crate::codec::{FormatError, LimitError};
use crate::io::IoError;
use crate::query::QueryError;

/// Store-level error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `open` has not finished, or recovery failed.
    #[error("store not open")]
    NotOpen,
    /// Too much unflushed or unsynced data: retry after some acknowledgements.
    #[error("store busy, retry later")]
    Backpressure,
    /// The message breaks a limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Bad query arguments.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The disk is full; the store works again once space returns.
    #[error("no space left writing {file}")]
    NoSpace {
        /// File being written.
        file: String,
    },
    /// An I/O operation failed.
    #[error("i/o error on {file}: {error}")]
    Io {
        /// File concerned.
        file: String,
        /// Cause.
        error: IoError,
    },
    /// A sorted file or the manifest failed verification.
    #[error("corrupt file {file}: {error}")]
    CorruptFile {
        /// File name.
        file: String,
        /// What was wrong.
        error: FormatError,
    },
    /// The commit log lost acknowledged records (a later segment starts past the good end).
    #[error("commit log gap before {file}: expected seq {expected}, found {found}")]
    LogGap {
        /// Segment that starts too late.
        file: String,
        /// Sequence number expected.
        expected: u64,
        /// Its start sequence number.
        found: u64,
    },
}

impl StoreError {
    /// Maps an I/O error on `file`.
    pub fn io(file: impl Into<String>, error: IoError) -> Self {
        match error {
            IoError::NoSpace => StoreError::NoSpace { file: file.into() },
            error => StoreError::Io {
                file: file.into(),
                error,
            },
        }
    }
}

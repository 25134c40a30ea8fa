//! The harness's error type.

use std::io;

/// Everything that can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// An OS call failed; `what` says which step.
    #[error("{what}: {source}")]
    Io {
        /// The step that failed.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A server did not write a usable ready file in time.
    #[error("server {target} not ready: {detail}")]
    NotReady {
        /// The target name.
        target: String,
        /// What went wrong.
        detail: String,
    },
    /// A /proc file did not have the expected shape.
    #[error("cannot parse {file}: {detail}")]
    Parse {
        /// Which file.
        file: String,
        /// What was wrong.
        detail: String,
    },
    /// The command line asked for something impossible.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A client subprocess failed.
    #[error("client process: {0}")]
    Client(String),
}

impl BenchError {
    /// Wraps an `io::Error` with the step that failed.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        BenchError::Io {
            what: what.into(),
            source,
        }
    }
}

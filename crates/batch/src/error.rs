//! The one error type of the batch runner. Each variant names the file involved and, where
//! there is one, the fix; the binary adds the command's context around it.

use std::path::PathBuf;

use crate::validate::InvalidInput;

/// Why a batch could not run (as opposed to lines that failed, which are error lines).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A file could not be read, written or synced.
    #[error("{action} '{}'", path.display())]
    Io {
        /// What was being done (`reading`, `appending to`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The input has invalid lines (and `skip_invalid` is off): nothing was sent.
    #[error("{0}")]
    Invalid(Box<InvalidInput>),
    /// The checkpoint store failed.
    #[error("checkpoint store '{}'", path.display())]
    Store {
        /// The store's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The state on disk does not fit this run (another input, another error file, output
    /// without a state, a damaged output file): the message says what to do.
    #[error("{0}")]
    State(String),
}

impl BatchError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        BatchError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn store(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        BatchError::Store {
            path: path.into(),
            source,
        }
    }
}

//! The errors of the local model: every message names the problem and the fix.

use std::path::PathBuf;

/// What can go wrong finding, pulling, checking, loading or running a local model.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A model name tokenpace does not know, and not a `.gguf` path.
    #[error(
        "unknown local model '{0}': use one of {known}, or local:PATH.gguf for any GGUF file",
        known = crate::catalog::known_names()
    )]
    UnknownModel(String),
    /// A known model that has not been pulled yet.
    #[error("model '{name}' is not installed in {dir}: run `tokenpace model pull {name}` first")]
    NotInstalled {
        /// The catalog name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A file that is not a usable GGUF model (corrupt, truncated, wrong checksum, unsupported).
    #[error("{path}: {problem}")]
    BadModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        problem: String,
    },
    /// Pulling a model failed.
    #[error("pulling '{name}': {problem}")]
    Pull {
        /// The catalog name.
        name: String,
        /// What failed and what to do.
        problem: String,
    },
    /// The model's tokenizer or chat template cannot be used.
    #[error("{0}")]
    Tokenizer(String),
    /// The engine failed while computing (out of memory, a shape the model cannot take).
    #[error("inference failed: {0}")]
    Engine(String),
    /// A request the model cannot serve (prompt longer than the context, bad parameter).
    #[error("{0}")]
    Invalid(String),
    /// File-system trouble, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LocalError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LocalError::Io {
            path: path.into(),
            source,
        }
    }

    /// A bad model file.
    pub fn bad_file(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        LocalError::BadModelFile {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

impl From<candle_core::Error> for LocalError {
    fn from(e: candle_core::Error) -> Self {
        LocalError::Engine(e.to_string())
    }
}

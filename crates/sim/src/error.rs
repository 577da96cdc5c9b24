//! The simulator's library error: bad configuration at start, and the request-level
//! problems (unknown model, bad model option) that the HTTP layer turns into 4xx bodies.

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A model name that names no profile.
    #[error(
        "the model '{0}' does not exist in the simulator; use sim, sim-mini, sim-large, a profile from --profiles, or PROFILE:key=value options"
    )]
    UnknownModel(String),
    /// A bad `:k=v` option in a model name.
    #[error("invalid model option: {0}")]
    BadModelOption(String),
    /// Invalid configuration (flags or the profiles file).
    #[error("{0}")]
    Config(String),
    /// An I/O failure while starting (binding, spawning the timer thread).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

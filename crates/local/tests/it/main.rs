//! Integration tests of tokenpace-local: one test binary for the crate, one module per area.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test loudly on any error"
)]

mod engine;
mod fixture;
mod gemma;
mod llama;
#[cfg(unix)]
mod pull;
mod server;
mod tokenizer;
mod verify;

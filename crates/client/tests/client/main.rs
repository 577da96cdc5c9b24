//! Integration tests of `tokenpace-client` against real listeners on 127.0.0.1 port 0: the
//! in-process simulator for every behaviour it can produce, and tiny raw servers for the
//! shapes it cannot (in-stream errors, empty streams, TLS with a test CA). One server per
//! test.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test loudly on any error"
)]

mod anthropic;
mod errors;
mod openai;
mod pool;
mod support;
mod tls;

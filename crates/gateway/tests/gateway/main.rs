//! Integration tests of the gateway (one binary).
#![expect(clippy::unwrap_used, reason = "tests")]

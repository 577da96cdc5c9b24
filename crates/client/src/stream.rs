//! Reading a response stream: [`framing`] cuts the bytes into SSE events and stamps each
//! with the arrival of its first byte and of its closing blank line; [`classify`] then
//! decodes each event's JSON in the target's dialect into an [`crate::EventKind`], the
//! text, the usage and the outcome.
//!
//! The split keeps the stamps honest (taken before any JSON parsing) and the hot path
//! small: a byte scan and the `protocol` SSE decoder per read, one JSON parse per event,
//! no allocation per token beyond the decoded event itself.

pub(crate) mod classify;
pub(crate) mod framing;

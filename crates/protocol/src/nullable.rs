//! Serde glue for three-state fields: absent, explicitly `null`, or a value.
//!
//! Several wire fields mean different things depending on whether the key is missing or
//! present with `null` (OpenAI sends `"usage": null` on every non-final chunk when usage
//! was requested, vLLM leaves the key out; llama.cpp sends `"content": null` where OpenAI
//! sends `""`). Such fields are typed `Option<Option<T>>` and annotated with
//! `#[serde(default, skip_serializing_if = "Option::is_none", with = "crate::nullable")]`:
//!
//! | Rust value         | JSON            |
//! |--------------------|-----------------|
//! | `None`             | key absent      |
//! | `Some(None)`       | `"key": null`   |
//! | `Some(Some(v))`    | `"key": v`      |
//!
//! This module owns only that mapping; the types that use it live with their wire format.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serializes the inner option (only called when the outer option is `Some`, thanks to
/// `skip_serializing_if`), so `Some(None)` becomes `null`.
pub(crate) fn serialize<T, S>(value: &Option<Option<T>>, serializer: S) -> Result<S::Ok, S::Error>
where
    T: Serialize,
    S: Serializer,
{
    match value {
        Some(inner) => inner.serialize(serializer),
        // Unreachable with `skip_serializing_if = "Option::is_none"`, but a plain `null`
        // is the least surprising output if someone forgets the attribute.
        None => serializer.serialize_none(),
    }
}

/// Deserializes a present key: `null` becomes `Some(None)`, a value `Some(Some(v))`.
/// An absent key never reaches this function and falls back to `#[serde(default)]`.
pub(crate) fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

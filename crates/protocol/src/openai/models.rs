//! OpenAI model listing (`GET /v1/models`, `GET /v1/models/{model}`, api-formats §1.8).
//!
//! Only the wire shape; which models exist is the simulator's or gateway's business.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Response of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

impl ModelList {
    /// A list with `object: "list"`.
    pub fn new(data: Vec<Model>) -> Self {
        Self {
            object: "list".to_owned(),
            data,
        }
    }
}

/// One model (also the response of `GET /v1/models/{model}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Model name, usable as a request's `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Owner, for example `system` or `openai`.
    pub owned_by: String,
    /// Keys this crate does not model (`shutdown_date`, vLLM's `max_model_len`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Model {
    /// A model entry with `object: "model"`.
    pub fn new(id: impl Into<String>, created: u64, owned_by: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            object: "model".to_owned(),
            created,
            owned_by: owned_by.into(),
            extra: Map::new(),
        }
    }
}

//! Gateway keys: which tenant a request is.
//!
//! Without configured keys every request is the tenant `default`. With keys, a request
//! must carry one as `Authorization: Bearer KEY` or `x-api-key: KEY` (the OpenAI and the
//! Anthropic conventions); the key names the tenant. Client keys are only ever compared
//! here: the upstream request is built from scratch and carries the upstream's key.

use std::collections::HashMap;

use dispatch::config::GatewayKey;
use dispatch::{DispatchError, ErrorKind};
use http::HeaderMap;

/// The tenant of requests when no gateway keys are configured.
pub const DEFAULT_TENANT: &str = "default";

/// Key -> tenant.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    by_key: HashMap<String, String>,
}

impl Keys {
    /// The table for `keys`.
    pub fn new(keys: &[GatewayKey]) -> Keys {
        Keys {
            by_key: keys
                .iter()
                .map(|k| (k.key.clone(), k.tenant.clone()))
                .collect(),
        }
    }

    /// Whether keys are required.
    pub fn required(&self) -> bool {
        !self.by_key.is_empty()
    }

    /// The tenant of a request with `headers`.
    pub fn tenant(&self, headers: &HeaderMap) -> Result<String, DispatchError> {
        if self.by_key.is_empty() {
            return Ok(DEFAULT_TENANT.to_owned());
        }
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let x_api_key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let Some(key) = bearer.or(x_api_key) else {
            return Err(DispatchError::new(
                ErrorKind::Authentication,
                "no gateway key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'",
            ));
        };
        // Either header may carry the key; an SDK sets one of them.
        for candidate in [bearer, x_api_key].into_iter().flatten() {
            if let Some(t) = self.by_key.get(candidate) {
                return Ok(t.clone());
            }
        }
        let _ = key;
        Err(DispatchError::new(
            ErrorKind::Authentication,
            "the gateway key is not valid: use one of the keys configured in [[keys]]",
        )
        .with_code("invalid_api_key"))
    }
}

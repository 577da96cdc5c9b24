//! Which API operation a request is: the three ingress routes that carry model calls.
//!
//! The kind decides the wire dialect (OpenAI or Anthropic), which upstreams may serve it
//! (no translation between dialects), which defaults the cache key fills in, and how a
//! cached entry changes shape between streamed and non-streamed.

use client::Api;

/// A model-calling operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `POST /v1/chat/completions` (OpenAI).
    Chat,
    /// `POST /v1/completions` (OpenAI legacy completions).
    Completions,
    /// `POST /v1/messages` (Anthropic).
    Messages,
}

impl Kind {
    /// The upstream dialect that serves this kind.
    pub fn api(self) -> Api {
        match self {
            Kind::Chat | Kind::Completions => Api::OpenAi,
            Kind::Messages => Api::Anthropic,
        }
    }

    /// The path below the upstream's `/v1` base.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Chat => "/chat/completions",
            Kind::Completions => "/completions",
            Kind::Messages => "/messages",
        }
    }

    /// The ingress route, as metrics label it.
    pub fn route(self) -> &'static str {
        match self {
            Kind::Chat => "/v1/chat/completions",
            Kind::Completions => "/v1/completions",
            Kind::Messages => "/v1/messages",
        }
    }

    /// A stable one-byte tag (cache entries and keys).
    pub fn tag(self) -> u8 {
        match self {
            Kind::Chat => 1,
            Kind::Completions => 2,
            Kind::Messages => 3,
        }
    }

    /// The kind of a tag written by [`Kind::tag`].
    pub fn from_tag(tag: u8) -> Option<Kind> {
        match tag {
            1 => Some(Kind::Chat),
            2 => Some(Kind::Completions),
            3 => Some(Kind::Messages),
            _ => None,
        }
    }
}

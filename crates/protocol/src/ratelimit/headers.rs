//! Names of the rate-limit and retry headers, lowercase as HTTP/2 sends them.
//!
//! Owns only the names; values are handled by the sibling parsing modules.

/// OpenAI: requests allowed in the window (RPM-style limit).
pub const X_RATELIMIT_LIMIT_REQUESTS: &str = "x-ratelimit-limit-requests";
/// OpenAI: tokens allowed in the window (TPM-style limit).
pub const X_RATELIMIT_LIMIT_TOKENS: &str = "x-ratelimit-limit-tokens";
/// OpenAI: requests left.
pub const X_RATELIMIT_REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";
/// OpenAI: tokens left.
pub const X_RATELIMIT_REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
/// OpenAI: Go duration until the request limit is fully refilled.
pub const X_RATELIMIT_RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
/// OpenAI: Go duration until the token limit is fully refilled.
pub const X_RATELIMIT_RESET_TOKENS: &str = "x-ratelimit-reset-tokens";

/// Seconds to wait before retrying (integer; OpenAI's SDK also accepts floats).
pub const RETRY_AFTER: &str = "retry-after";
/// Milliseconds to wait before retrying (OpenAI; read before `retry-after`).
pub const RETRY_AFTER_MS: &str = "retry-after-ms";
/// `true` or `false`: the server's verdict on whether a retry can succeed.
pub const X_SHOULD_RETRY: &str = "x-should-retry";

/// Anthropic: max requests in the window.
pub const ANTHROPIC_RATELIMIT_REQUESTS_LIMIT: &str = "anthropic-ratelimit-requests-limit";
/// Anthropic: requests left.
pub const ANTHROPIC_RATELIMIT_REQUESTS_REMAINING: &str = "anthropic-ratelimit-requests-remaining";
/// Anthropic: RFC 3339 time when the request bucket is full again.
pub const ANTHROPIC_RATELIMIT_REQUESTS_RESET: &str = "anthropic-ratelimit-requests-reset";
/// Anthropic: combined token limit (the most restrictive in effect).
pub const ANTHROPIC_RATELIMIT_TOKENS_LIMIT: &str = "anthropic-ratelimit-tokens-limit";
/// Anthropic: combined tokens left (rounded to the nearest thousand).
pub const ANTHROPIC_RATELIMIT_TOKENS_REMAINING: &str = "anthropic-ratelimit-tokens-remaining";
/// Anthropic: RFC 3339 time when the combined token bucket is full again.
pub const ANTHROPIC_RATELIMIT_TOKENS_RESET: &str = "anthropic-ratelimit-tokens-reset";
/// Anthropic: input-token (ITPM) limit.
pub const ANTHROPIC_RATELIMIT_INPUT_TOKENS_LIMIT: &str = "anthropic-ratelimit-input-tokens-limit";
/// Anthropic: input tokens left.
pub const ANTHROPIC_RATELIMIT_INPUT_TOKENS_REMAINING: &str =
    "anthropic-ratelimit-input-tokens-remaining";
/// Anthropic: RFC 3339 time when the input-token bucket is full again.
pub const ANTHROPIC_RATELIMIT_INPUT_TOKENS_RESET: &str = "anthropic-ratelimit-input-tokens-reset";
/// Anthropic: output-token (OTPM) limit.
pub const ANTHROPIC_RATELIMIT_OUTPUT_TOKENS_LIMIT: &str = "anthropic-ratelimit-output-tokens-limit";
/// Anthropic: output tokens left.
pub const ANTHROPIC_RATELIMIT_OUTPUT_TOKENS_REMAINING: &str =
    "anthropic-ratelimit-output-tokens-remaining";
/// Anthropic: RFC 3339 time when the output-token bucket is full again.
pub const ANTHROPIC_RATELIMIT_OUTPUT_TOKENS_RESET: &str = "anthropic-ratelimit-output-tokens-reset";

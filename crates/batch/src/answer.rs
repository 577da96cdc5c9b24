//! One valid line through the [`Dispatcher`]: the call (with the cache on, batch priority
//! in the admission queue, a long queue deadline), the answer turned into its result line,
//! and what the summary counts about it (latency, tokens, the three costs).
//!
//! Retries and fallbacks are the dispatcher's (its one retry policy); whatever is left
//! after them — an upstream error status, a transport failure, an admission refusal —
//! becomes an error line here. No failure is ever dropped.

use std::time::{Duration, Instant};

use dispatch::admission::queue::Priority;
use dispatch::cache::entry::Body;
use dispatch::cache::shape;
use dispatch::{Answer, CachePolicy, Call, DispatchError, Dispatcher, ErrorKind, Kind};
use metrics::cost::{BillableTokens, Cost, PriceTable};
use serde_json::Value;

use crate::input::Request;
use crate::record::{self, Dest, Key};

/// How a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// A 2xx response.
    Succeeded,
    /// A valid line that failed.
    Failed,
    /// A line that failed validation.
    Invalid,
}

/// What the summary counts about one line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) status: Status,
    pub(crate) cached: bool,
    pub(crate) coalesced: bool,
    /// Time the line took, not counting its wait for tier capacity.
    pub(crate) latency: Duration,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    /// What the line would cost through the synchronous API.
    pub(crate) realtime: Cost,
    /// What it would cost through the provider's Batch API.
    pub(crate) batch: Cost,
    /// What it did cost: zero for cache hits and coalesced lines.
    pub(crate) actual: Cost,
    /// Whether the price table knows its model (succeeded lines only).
    pub(crate) priced: bool,
}

impl Outcome {
    pub(crate) fn failed(status: Status, latency: Duration) -> Outcome {
        Outcome {
            status,
            cached: false,
            coalesced: false,
            latency,
            input_tokens: 0,
            output_tokens: 0,
            realtime: Cost::ZERO,
            batch: Cost::ZERO,
            actual: Cost::ZERO,
            priced: true,
        }
    }
}

/// A result line ready for the writer.
#[derive(Debug)]
pub(crate) struct Answered {
    pub(crate) key: Key,
    pub(crate) dest: Dest,
    /// The whole line, `\n` included.
    pub(crate) line: Vec<u8>,
    pub(crate) outcome: Outcome,
}

/// How a batch call is made.
#[derive(Debug, Clone)]
pub(crate) struct CallSettings {
    pub(crate) tenant: String,
    pub(crate) queue_timeout: Duration,
}

/// The code of an error line for a dispatcher error.
fn dispatch_code(e: &DispatchError) -> &'static str {
    if let Some(code) = e.code {
        return code;
    }
    match e.kind {
        ErrorKind::InvalidRequest | ErrorKind::MethodNotAllowed | ErrorKind::TooLarge => {
            "invalid_request"
        }
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::NotFound => "model_not_found",
        ErrorKind::RateLimit => "rate_limit_exceeded",
        ErrorKind::Upstream => "upstream_error",
        ErrorKind::Timeout => "upstream_timeout",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Internal => "internal_error",
    }
}

/// The code of an error line for an upstream's error status.
fn status_code(status: u16) -> &'static str {
    match status {
        401 | 403 => "authentication_error",
        404 => "not_found",
        408 | 504 => "upstream_timeout",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request",
        _ => "upstream_error",
    }
}

/// The upstream's own message from an error body (both dialects put it at
/// `error.message`), else the start of the body.
fn upstream_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let mut end = text.len().min(500);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].trim().to_owned()
        })
}

fn failure(custom_id: &str, code: &str, message: &str, latency: Duration) -> Answered {
    Answered {
        key: Key::Id(custom_id.to_owned()),
        dest: Dest::Errors,
        line: record::error(Some(custom_id), code, message, None),
        outcome: Outcome::failed(Status::Failed, latency),
    }
}

/// Prices `(input, output)` tokens of `model` (or of the model the response names).
fn price(
    prices: &PriceTable,
    kind: Kind,
    model: &str,
    body: &Value,
    input: u64,
    output: u64,
) -> Option<(Cost, Cost)> {
    let p = prices.lookup(model).or_else(|| {
        body.get("model")
            .and_then(Value::as_str)
            .and_then(|m| prices.lookup(m))
    })?;
    let tokens = match kind {
        Kind::Chat | Kind::Completions => BillableTokens::openai(input, 0, output),
        Kind::Messages => BillableTokens::anthropic(input, 0, 0, output),
    };
    let realtime = p.cost(&tokens);
    // A model without a confirmed batch rate: the providers' 50% rule.
    let batch = p
        .batch_cost(&tokens)
        .unwrap_or(Cost(realtime.pico_usd() / 2));
    Some((realtime, batch))
}

/// Sends one line and waits for its whole answer.
pub(crate) async fn answer(
    dispatcher: &Dispatcher,
    prices: &PriceTable,
    settings: &CallSettings,
    req: Request,
) -> Answered {
    let started = Instant::now();
    let kind = req.kind;
    let model = req
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let custom_id = req.custom_id;
    let call = Call {
        kind,
        tenant: settings.tenant.clone(),
        body: req.body,
        policy: CachePolicy::ON,
        headers: Default::default(),
        priority: Priority::Batch,
        queue_timeout: Some(settings.queue_timeout),
    };
    let answer = match dispatcher.call(call).await {
        Ok(a) => a,
        Err(e) => return failure(&custom_id, dispatch_code(&e), &e.message, started.elapsed()),
    };
    let (bytes, request_id, cached, coalesced, tokens, queued) = match answer {
        Answer::Hit { entry, .. } => {
            let bytes = match &entry.body {
                Body::Json(b) => b.clone(),
                Body::Sse(events) => match shape::assemble(kind, events) {
                    Ok(b) => b,
                    Err(e) => {
                        return failure(
                            &custom_id,
                            "upstream_error",
                            &format!("the cached response could not be assembled: {e}"),
                            started.elapsed(),
                        );
                    }
                },
            };
            let tokens = (entry.input_tokens, entry.output_tokens);
            (
                bytes,
                record::new_id("req_"),
                true,
                false,
                tokens,
                Duration::ZERO,
            )
        }
        Answer::Live { mut sub, .. } => {
            let head = match sub.head().await {
                Ok(h) => h,
                Err(e) => {
                    return failure(&custom_id, dispatch_code(&e), &e.message, started.elapsed());
                }
            };
            let bytes = match sub.body().await {
                Ok(b) => b,
                Err(e) => {
                    return failure(&custom_id, dispatch_code(&e), &e.message, started.elapsed());
                }
            };
            let latency = started.elapsed().saturating_sub(head.queued);
            if !head.status.is_success() {
                let message = format!(
                    "upstream '{}' answered {}: {}",
                    head.upstream,
                    head.status,
                    upstream_message(&bytes)
                );
                return failure(
                    &custom_id,
                    status_code(head.status.as_u16()),
                    &message,
                    latency,
                );
            }
            let request_id = ["x-request-id", "request-id"]
                .iter()
                .find_map(|h| head.headers.get(*h).and_then(|v| v.to_str().ok()))
                .map_or_else(|| record::new_id("req_"), str::to_owned);
            let tokens = shape::usage_json(kind, &bytes);
            (bytes, request_id, false, sub.coalesced, tokens, head.queued)
        }
    };
    let latency = started.elapsed().saturating_sub(queued);
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return failure(
                &custom_id,
                "upstream_error",
                &format!("the upstream answered 200 with a body that is not JSON ({e})"),
                latency,
            );
        }
    };
    let (input_tokens, output_tokens) = tokens;
    let priced = price(prices, kind, &model, &body, input_tokens, output_tokens);
    let (realtime, batch) = priced.unwrap_or((Cost::ZERO, Cost::ZERO));
    Answered {
        key: Key::Id(custom_id.clone()),
        dest: Dest::Output,
        line: record::response(&custom_id, 200, &request_id, &body),
        outcome: Outcome {
            status: Status::Succeeded,
            cached,
            coalesced,
            latency,
            input_tokens,
            output_tokens,
            realtime,
            batch,
            actual: if cached || coalesced {
                Cost::ZERO
            } else {
                realtime
            },
            priced: priced.is_some(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_of_failures() {
        assert_eq!(status_code(500), "upstream_error");
        assert_eq!(status_code(529), "upstream_error");
        assert_eq!(status_code(429), "rate_limit_exceeded");
        assert_eq!(status_code(400), "invalid_request");
        assert_eq!(
            upstream_message(br#"{"error":{"message":"boom","type":"server_error"}}"#),
            "boom"
        );
        assert_eq!(
            upstream_message(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#
            ),
            "busy"
        );
        assert_eq!(upstream_message(b"  plain text "), "plain text");
        let e = DispatchError::new(ErrorKind::Timeout, "slow").with_code("upstream_timeout");
        assert_eq!(dispatch_code(&e), "upstream_timeout");
        assert_eq!(
            dispatch_code(&DispatchError::new(ErrorKind::RateLimit, "queue")),
            "rate_limit_exceeded"
        );
    }
}

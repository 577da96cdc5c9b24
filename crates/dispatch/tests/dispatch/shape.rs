//! `cache::shape` against the real simulator on a port-0 listener: the same request, with
//! the same seed, streamed (with usage) and not streamed must give the same body (ids and
//! timestamps aside) once the stream is assembled, for chat, legacy completions and
//! Anthropic messages; the non-streamed body synthesized into a stream must assemble back
//! to itself; and the classifier and usage readers must agree with the simulator's stream.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use sim::{RunningSim, SimConfig, Simulator};
use tokenpace_dispatch::cache::entry::RecordedEvent;
use tokenpace_dispatch::cache::shape::{
    EventClass, assemble, classify, synthesize, usage, usage_json,
};
use tokenpace_dispatch::kind::Kind;

/// A profile with no latency, so the tests take no time, and a fixed answer length.
const MODEL: &str = "sim-mini:net=0ms,ttft=0ms,itl=0ms,tokens=24";

async fn start() -> RunningSim {
    Simulator::new(SimConfig::default())
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn post(sim: &RunningSim, kind: Kind, body: &Value) -> reqwest::Response {
    let resp = http()
        .post(format!("{}{}", sim.url(), kind.route()))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{kind:?}");
    resp
}

/// The streamed answer as the gateway records it: one whole encoded event each.
async fn streamed(sim: &RunningSim, kind: Kind, body: &Value) -> Vec<RecordedEvent> {
    let started = Instant::now();
    let stream = testkit::read_sse(post(sim, kind, body).await)
        .await
        .unwrap();
    assert!(stream.transport_error.is_none());
    stream
        .events
        .into_iter()
        .map(|e| RecordedEvent {
            at: e.at.duration_since(started),
            data: e.event.encode(),
        })
        .collect()
}

async fn non_streamed(sim: &RunningSim, kind: Kind, body: &Value) -> Bytes {
    post(sim, kind, body).await.bytes().await.unwrap()
}

/// The same request both ways; returns (assembled stream, non-streamed body, events).
async fn both_ways(kind: Kind, body: Value) -> (Value, Value, Vec<RecordedEvent>) {
    let sim = start().await;
    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    if kind != Kind::Messages {
        stream_body["stream_options"] = json!({"include_usage": true});
    }
    let events = streamed(&sim, kind, &stream_body).await;
    let json = non_streamed(&sim, kind, &body).await;
    let assembled: Value = serde_json::from_slice(&assemble(kind, &events).unwrap()).unwrap();
    let plain: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(usage(kind, &events), usage_json(kind, &json), "{kind:?}");
    assert_ne!(usage(kind, &events), (0, 0), "{kind:?}");

    // Each recorded event classifies as the gateway relies on: the terminal event last,
    // the usage chunk (OpenAI) just before it, no errors.
    let classes: Vec<EventClass> = events.iter().map(|e| classify(kind, &e.data)).collect();
    assert_eq!(classes.last(), Some(&EventClass::Terminal), "{kind:?}");
    assert_eq!(
        classes
            .iter()
            .filter(|c| **c == EventClass::Terminal)
            .count(),
        1
    );
    assert!(!classes.contains(&EventClass::Error));
    let usage_only = classes
        .iter()
        .filter(|c| **c == EventClass::UsageOnly)
        .count();
    if kind == Kind::Messages {
        assert_eq!(usage_only, 0);
    } else {
        assert_eq!(usage_only, 1, "{classes:?}");
        assert_eq!(classes[classes.len() - 2], EventClass::UsageOnly);
    }

    // The other direction: the non-streamed body, synthesized and assembled again, is the
    // same answer.
    let synthesized = synthesize(kind, &json).unwrap();
    let recorded: Vec<RecordedEvent> = synthesized
        .into_iter()
        .map(|data| RecordedEvent {
            at: Duration::ZERO,
            data,
        })
        .collect();
    let again: Value = serde_json::from_slice(&assemble(kind, &recorded).unwrap()).unwrap();
    assert_eq!(answer(&again), answer(&plain), "{kind:?}");
    (assembled, plain, events)
}

/// What must agree between shapes: everything but the per-request `id` and `created`, and
/// the one field a stream cannot carry (chat's `annotations`).
fn answer(body: &Value) -> Value {
    let mut body = body.clone();
    let object = body.as_object_mut().unwrap();
    object.remove("id");
    object.remove("created");
    for choice in object
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) {
            message.remove("annotations");
        }
    }
    body
}

#[tokio::test]
async fn chat_stream_assembles_to_the_non_streamed_answer() {
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something about caches."}],
        "seed": 42,
    });
    let (assembled, plain, _) = both_ways(Kind::Chat, body).await;
    assert_eq!(answer(&assembled), answer(&plain));
    assert_eq!(assembled["object"], "chat.completion");
    let text = assembled["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(!text.is_empty());
    assert_eq!(assembled["usage"]["completion_tokens"], 24);
    let _: protocol::openai::ChatCompletionResponse = serde_json::from_value(assembled).unwrap();
}

#[tokio::test]
async fn completion_stream_assembles_to_the_non_streamed_answer() {
    let body = json!({
        "model": MODEL,
        "prompt": "Once upon a time",
        "max_tokens": 40,
        "seed": 42,
    });
    let (assembled, plain, _) = both_ways(Kind::Completions, body).await;
    assert_eq!(answer(&assembled), answer(&plain));
    assert_eq!(assembled["object"], "text_completion");
    let _: protocol::openai::CompletionResponse = serde_json::from_value(assembled).unwrap();
}

#[tokio::test]
async fn messages_stream_assembles_to_the_non_streamed_answer() {
    let body = json!({
        "model": MODEL,
        "max_tokens": 100,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Say something about caches."}],
    });
    let (assembled, plain, events) = both_ways(Kind::Messages, body).await;
    assert_eq!(answer(&assembled), answer(&plain));
    assert!(events.len() > 5, "a real event sequence: {}", events.len());
    let _: protocol::anthropic::MessagesResponse = serde_json::from_value(assembled).unwrap();
}

//! The OpenAI wire: chunk sequence, usage, determinism, legacy completions.

use protocol::openai::{ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse};
use serde_json::json;

use super::*;

#[tokio::test]
async fn stream_with_usage_follows_openai_sequence() {
    let sim = start_default().await;
    let mut req = chat("sim:tokens=5", true);
    req["stream_options"] = json!({"include_usage": true});
    let resp = post(&sim, "/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 200);
    assert!(
        header(&resp, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(
        header(&resp, "server-timing")
            .unwrap()
            .starts_with("queue;dur=")
    );
    let stream = testkit::read_sse(resp).await.unwrap();
    assert!(stream.transport_error.is_none());
    let data = stream.data();
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let chunks: Vec<ChatCompletionChunk> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // role chunk, 5 content chunks, finish chunk, usage chunk
    assert_eq!(chunks.len(), 8, "{data:#?}");
    let first = &chunks[0].choices[0];
    assert_eq!(first.delta.role.as_deref(), Some("assistant"));
    assert!(!first.delta.has_token(), "the role chunk carries no token");
    let mut text = String::new();
    for c in &chunks[1..6] {
        assert!(c.choices[0].delta.has_token());
        text.push_str(
            c.choices[0]
                .delta
                .content
                .clone()
                .flatten()
                .as_deref()
                .unwrap(),
        );
        assert_eq!(c.usage, Some(None), "usage: null on every non-final chunk");
        assert!(c.obfuscation.is_some(), "obfuscation is on by default");
    }
    assert_eq!(chunks[6].choices[0].finish_reason.as_deref(), Some("stop"));
    assert!(!chunks[6].choices[0].delta.has_token());
    let last = &chunks[7];
    assert!(last.choices.is_empty());
    let usage = last.usage.clone().flatten().unwrap();
    assert_eq!(usage.completion_tokens, 5);
    assert_eq!(
        protocol::tokens::count_text(&text),
        5,
        "text tokenizes to its usage: {text:?}"
    );
    let parsed: ChatCompletionRequest = serde_json::from_value(req).unwrap();
    assert_eq!(
        usage.prompt_tokens,
        protocol::tokens::count_chat_input(&parsed)
    );
    assert_eq!(usage.total_tokens, usage.prompt_tokens + 5);
    // All chunks share id and created.
    assert!(
        chunks
            .iter()
            .all(|c| c.id == chunks[0].id && c.created == chunks[0].created)
    );
    assert!(chunks.iter().all(|c| c.model == "sim:tokens=5"));
}

#[tokio::test]
async fn stream_without_usage_has_no_usage_key_and_obfuscation_can_be_off() {
    let sim = start_default().await;
    let mut req = chat("sim:tokens=3", true);
    req["stream_options"] = json!({"include_obfuscation": false});
    let stream = testkit::read_sse(post(&sim, "/v1/chat/completions", &req).await)
        .await
        .unwrap();
    let json = stream.json();
    assert_eq!(json.len(), 5, "role, 3 tokens, finish");
    for c in &json {
        assert!(c.get("usage").is_none());
        assert!(c.get("obfuscation").is_none());
    }
}

#[tokio::test]
async fn non_stream_is_deterministic_and_seeded() {
    let sim = start_default().await;
    let get = |model: &'static str| {
        let sim = &sim;
        async move {
            let r: ChatCompletionResponse = post(sim, "/v1/chat/completions", &chat(model, false))
                .await
                .json()
                .await
                .unwrap();
            r
        }
    };
    let a = get("sim-mini:net=0ms,ttft=0ms,itl=0ms").await;
    let b = get("sim-mini:net=0ms,ttft=0ms,itl=0ms").await;
    let c = get("sim-mini:net=0ms,ttft=0ms,itl=0ms,seed=9").await;
    let text = |r: &ChatCompletionResponse| r.choices[0].message.content.clone().unwrap();
    assert_eq!(text(&a), text(&b));
    assert_ne!(text(&a), text(&c));
    let usage = a.usage.clone().unwrap();
    assert_eq!(
        protocol::tokens::count_text(&text(&a)),
        usage.completion_tokens
    );
    assert!((40..=200).contains(&usage.completion_tokens));
    assert_eq!(a.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(a.model, "sim-mini:net=0ms,ttft=0ms,itl=0ms");
}

#[tokio::test]
async fn caps_ignore_eos_min_tokens_and_unknown_fields() {
    let sim = start_default().await;
    let mut req = chat("sim:tokens=50", false);
    req["max_completion_tokens"] = json!(7);
    req["some_vendor_field"] = json!({"kept": true});
    let r: ChatCompletionResponse = post(&sim, "/v1/chat/completions", &req)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.usage.unwrap().completion_tokens, 7);
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));

    let mut req = chat("sim:tokens=2", false);
    req["max_tokens"] = json!(12);
    req["ignore_eos"] = json!(true);
    let r: ChatCompletionResponse = post(&sim, "/v1/chat/completions", &req)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.usage.unwrap().completion_tokens, 12);

    let mut req = chat("sim:tokens=2", false);
    req["min_tokens"] = json!(6);
    let r: ChatCompletionResponse = post(&sim, "/v1/chat/completions", &req)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.usage.unwrap().completion_tokens, 6);
}

#[tokio::test]
async fn reasoning_tokens_come_first() {
    let sim = start_default().await;
    let mut req = chat("sim:tokens=3,reasoning=2", true);
    req["stream_options"] = json!({"include_usage": true});
    let stream = testkit::read_sse(post(&sim, "/v1/chat/completions", &req).await)
        .await
        .unwrap();
    let json = stream.json();
    assert!(json[1]["choices"][0]["delta"]["reasoning_content"].is_string());
    assert!(json[2]["choices"][0]["delta"]["reasoning_content"].is_string());
    assert!(json[3]["choices"][0]["delta"]["content"].is_string());
    let usage = &json.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 5);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 2);
}

#[tokio::test]
async fn chunks_group_tokens() {
    let sim = start_default().await;
    let stream = testkit::read_sse(
        post(
            &sim,
            "/v1/chat/completions",
            &chat("sim:tokens=7,chunk=3", true),
        )
        .await,
    )
    .await
    .unwrap();
    let json = stream.json();
    // role + ceil(7/3) = 3 content chunks + finish
    assert_eq!(json.len(), 5);
    let text: String = json[1..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(protocol::tokens::count_text(&text), 7);
}

#[tokio::test]
async fn legacy_completions() {
    let sim = start_default().await;
    let r: protocol::openai::CompletionResponse = post(
        &sim,
        "/v1/completions",
        &json!({"model": "sim:tokens=50", "prompt": "Once upon a time"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(r.object, "text_completion");
    let usage = r.usage.unwrap();
    assert_eq!(
        usage.completion_tokens, 16,
        "the legacy default max_tokens is 16"
    );
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
    assert_eq!(
        usage.prompt_tokens,
        protocol::tokens::count_text("Once upon a time")
    );

    let stream = testkit::read_sse(
        post(
            &sim,
            "/v1/completions",
            &json!({"model": "sim:tokens=4", "prompt": ["a", "b"], "stream": true,
                    "stream_options": {"include_usage": true}, "max_tokens": 10}),
        )
        .await,
    )
    .await
    .unwrap();
    let data = stream.data();
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let chunks: Vec<protocol::openai::CompletionChunk> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks.len(), 6, "4 tokens, finish, usage");
    assert_eq!(chunks[4].choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        chunks[5].usage.clone().flatten().unwrap().completion_tokens,
        4
    );
}

//! The Anthropic wire: the streaming event sequence, thinking blocks, stop reasons, errors.

use protocol::anthropic::{BlockDelta, MessagesResponse, StreamEvent};
use serde_json::json;

use super::*;

fn message(model: &str, max_tokens: u32, stream: bool) -> serde_json::Value {
    json!({
        "model": model,
        "max_tokens": max_tokens,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Say hi"}],
        "stream": stream,
    })
}

#[tokio::test]
async fn stream_event_sequence() {
    let sim = start_default().await;
    let resp = post(&sim, "/v1/messages", &message("sim:tokens=4", 100, true)).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "request-id").unwrap().starts_with("req_"));
    let stream = testkit::read_sse(resp).await.unwrap();
    let names: Vec<&str> = stream
        .events
        .iter()
        .map(|e| e.event.event.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let events: Vec<StreamEvent> = stream
        .events
        .iter()
        .map(|e| serde_json::from_str(&e.event.data).unwrap())
        .collect();
    for (event, name) in events.iter().zip(&names) {
        assert_eq!(event.name(), *name, "event: line matches the data's type");
    }
    let StreamEvent::MessageStart { message } = &events[0] else {
        panic!("{:?}", events[0])
    };
    assert!(message.usage.input_tokens > 0);
    assert!(message.stop_reason.is_none());
    let mut text = String::new();
    for e in &events[3..7] {
        let StreamEvent::ContentBlockDelta {
            delta: BlockDelta::TextDelta { text: t },
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        text.push_str(t);
    }
    assert_eq!(protocol::tokens::count_text(&text), 4);
    let StreamEvent::MessageDelta { delta, usage } = &events[8] else {
        panic!()
    };
    assert_eq!(delta.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(usage.output_tokens, 4);
}

#[tokio::test]
async fn thinking_block_then_text() {
    let sim = start_default().await;
    let stream = testkit::read_sse(
        post(
            &sim,
            "/v1/messages",
            &message("sim:tokens=2,reasoning=3", 100, true),
        )
        .await,
    )
    .await
    .unwrap();
    let events: Vec<StreamEvent> = stream
        .events
        .iter()
        .map(|e| serde_json::from_str(&e.event.data).unwrap())
        .collect();
    let thinking = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                StreamEvent::ContentBlockDelta {
                    index: 0,
                    delta: BlockDelta::ThinkingDelta { .. }
                }
            )
        })
        .count();
    let text = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                StreamEvent::ContentBlockDelta {
                    index: 1,
                    delta: BlockDelta::TextDelta { .. }
                }
            )
        })
        .count();
    assert_eq!((thinking, text), (3, 2));
    assert!(events.iter().any(|e| matches!(
        e,
        StreamEvent::ContentBlockDelta {
            delta: BlockDelta::SignatureDelta { .. },
            ..
        }
    )));

    let r: MessagesResponse = post(
        &sim,
        "/v1/messages",
        &message("sim:tokens=2,reasoning=3", 100, false),
    )
    .await
    .json()
    .await
    .unwrap();
    let v = serde_json::to_value(&r.content).unwrap();
    assert_eq!(v[0]["type"], "thinking");
    assert_eq!(v[1]["type"], "text");
    assert_eq!(r.usage.output_tokens, 5);
}

#[tokio::test]
async fn non_stream_and_max_tokens() {
    let sim = start_default().await;
    let r: MessagesResponse = post(&sim, "/v1/messages", &message("sim:tokens=20", 5, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.stop_reason.as_deref(), Some("max_tokens"));
    assert_eq!(r.usage.output_tokens, 5);
    assert_eq!(r.model, "sim:tokens=20");
    let r: MessagesResponse = post(&sim, "/v1/messages", &message("sim:tokens=3", 5, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
}

#[tokio::test]
async fn anthropic_errors() {
    let sim = start_default().await;
    let resp = post(
        &sim,
        "/v1/messages",
        &json!({"model": "sim", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: protocol::anthropic::AnthropicErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.r#type, "invalid_request_error");
    assert!(body.error.message.contains("max_tokens"));

    let resp = post(&sim, "/v1/messages", &message("claude-nope", 5, false)).await;
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");

    let resp = post(
        &sim,
        "/v1/messages",
        &message("sim:fail_first=1,fail_status=529", 5, false),
    )
    .await;
    assert_eq!(resp.status(), 529);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
}

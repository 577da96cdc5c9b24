//! Anthropic fixtures (api-formats §4.3–§4.5): streams, response and error body.

use protocol::anthropic::{
    AnthropicErrorBody, BlockDelta, ContentBlock, MessagesResponse, StreamEvent,
};
use protocol::sse::SseEvent;
use serde_json::{Value, json};

use crate::{assert_round_trip, fixture, json as parse_json, sse_fixture};

/// Decodes a stream fixture, checking each event's JSON `type` matches its SSE name.
fn stream(name: &str) -> Vec<(SseEvent, StreamEvent)> {
    sse_fixture(name)
        .into_iter()
        .map(|sse| {
            let event: StreamEvent = serde_json::from_str(&sse.data).unwrap();
            let sse_name = sse.event.clone().unwrap();
            if event == StreamEvent::Unknown {
                assert_eq!(event.name(), "unknown");
            } else {
                assert_eq!(event.name(), sse_name);
                // Known events re-serialize to the same JSON.
                assert_eq!(serde_json::to_value(&event).unwrap(), parse_json(&sse.data));
            }
            (sse, event)
        })
        .collect()
}

#[test]
fn full_text_stream() {
    let events: Vec<StreamEvent> = stream("anthropic_stream.sse")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let names: Vec<&str> = events.iter().map(StreamEvent::name).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let StreamEvent::MessageStart { message } = &events[0] else {
        panic!("first event is {:?}", events[0]);
    };
    assert!(message.content.is_empty());
    assert_eq!(message.stop_reason, None);
    assert_eq!(message.usage.input_tokens, 16);
    assert_eq!(message.usage.cache_read_input_tokens, Some(0));
    assert_eq!(message.usage.service_tier.as_deref(), Some("standard"));

    assert_eq!(events.iter().position(StreamEvent::has_token), Some(3));
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ContentBlockDelta {
                delta: BlockDelta::TextDelta { text },
                ..
            } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hello!");

    let StreamEvent::MessageDelta { delta, usage } = &events[6] else {
        panic!("expected message_delta");
    };
    assert_eq!(delta.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(usage.output_tokens, 15);
    assert_eq!(
        usage.input_tokens, None,
        "older streams send only output_tokens"
    );
    assert!(events[7].is_terminal());
    assert!(!events[..7].iter().any(StreamEvent::is_terminal));
}

#[test]
fn tool_use_stream_joins_input_json_and_ignores_unknown_events() {
    let events = stream("anthropic_tool_stream.sse");
    let unknown: Vec<&SseEvent> = events
        .iter()
        .filter(|(_, e)| *e == StreamEvent::Unknown)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].event.as_deref(), Some("future_feature_notice"));

    let start = events.iter().find_map(|(_, e)| match e {
        StreamEvent::ContentBlockStart {
            index: 1,
            content_block: ContentBlock::ToolUse { id, name, input },
        } => Some((id.clone(), name.clone(), input.clone())),
        _ => None,
    });
    assert_eq!(
        start,
        Some((
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6".to_owned(),
            "get_weather".to_owned(),
            json!({})
        ))
    );
    let mut input = String::new();
    for (_, event) in &events {
        if let StreamEvent::ContentBlockDelta {
            index: 1,
            delta: delta @ BlockDelta::InputJsonDelta { partial_json },
        } = event
        {
            assert_eq!(delta.has_token(), !partial_json.is_empty());
            input.push_str(partial_json);
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"city": "Paris"})
    );

    let (_, StreamEvent::MessageDelta { delta, usage }) = &events[events.len() - 2] else {
        panic!("expected message_delta before message_stop");
    };
    assert_eq!(delta.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!((usage.input_tokens, usage.output_tokens), (Some(472), 89));
    assert_eq!(usage.cache_read_input_tokens, Some(0));
}

#[test]
fn thinking_stream_signature_is_not_a_token() {
    let events: Vec<StreamEvent> = stream("anthropic_thinking_stream.sse")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let StreamEvent::ContentBlockStart { content_block, .. } = &events[1] else {
        panic!("expected content_block_start");
    };
    assert_eq!(
        content_block,
        &ContentBlock::Thinking {
            thinking: String::new(),
            signature: String::new()
        }
    );
    let deltas: Vec<&BlockDelta> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ContentBlockDelta { delta, .. } => Some(delta),
            _ => None,
        })
        .collect();
    assert_eq!(deltas.len(), 4);
    assert!(matches!(deltas[0], BlockDelta::ThinkingDelta { .. }) && deltas[0].has_token());
    assert!(
        matches!(deltas[2], BlockDelta::SignatureDelta { signature } if signature.starts_with("EqQB"))
    );
    assert!(!deltas[2].has_token());
    assert!(matches!(deltas[3], BlockDelta::TextDelta { text } if text == "27 * 453 = 12,231"));
}

#[test]
fn error_event_inside_a_200_stream() {
    let events = stream("anthropic_error_stream.sse");
    let (sse, last) = events.last().unwrap();
    let StreamEvent::Error { error } = last else {
        panic!("expected an error event, got {last:?}");
    };
    assert_eq!(error.r#type, "overloaded_error");
    assert_eq!(error.message, "Overloaded");
    assert!(last.is_terminal());
    // The same payload also reads as an error body.
    let body: AnthropicErrorBody = serde_json::from_str(&sse.data).unwrap();
    assert_eq!(body, AnthropicErrorBody::overloaded("Overloaded"));
    assert!(!events.iter().any(|(_, e)| e.has_token()));
}

#[test]
fn malformed_known_event_is_an_error_not_unknown() {
    assert!(serde_json::from_str::<StreamEvent>(r#"{"type":"content_block_delta"}"#).is_err());
    assert_eq!(
        serde_json::from_str::<StreamEvent>(r#"{"type":"brand_new","x":1}"#).unwrap(),
        StreamEvent::Unknown
    );
    assert_eq!(
        serde_json::from_str::<BlockDelta>(r#"{"type":"brand_new_delta","x":1}"#).unwrap(),
        BlockDelta::Unknown
    );
}

#[test]
fn events_encode_to_sse_with_matching_names() {
    let event = StreamEvent::ContentBlockDelta {
        index: 0,
        delta: BlockDelta::TextDelta { text: "Hi".into() },
    };
    let sse = event.to_sse().unwrap();
    assert_eq!(sse.event.as_deref(), Some("content_block_delta"));
    assert_eq!(
        parse_json(&sse.data),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}})
    );
    assert_eq!(
        serde_json::to_value(StreamEvent::Ping).unwrap(),
        json!({"type": "ping"})
    );
}

#[test]
fn non_stream_response_round_trips() {
    let response: MessagesResponse = assert_round_trip(&fixture("anthropic_response.json"));
    assert_eq!(response.text(), "Hi!");
    assert_eq!(response.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(response.stop_sequence, None);
    assert_eq!(response.usage.total_input_tokens(), 12);
    assert_eq!(
        response.usage.cache_creation.as_ref().unwrap()["ephemeral_1h_input_tokens"],
        json!(0)
    );
}

#[test]
fn unknown_content_blocks_are_kept_verbatim() {
    let text = r#"{"id":"msg_1","type":"message","role":"assistant","model":"m",
        "content":[{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"x"}},
                   {"type":"redacted_thinking","data":"abc"},
                   {"type":"text","text":"done"}],
        "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":2}}"#;
    let response: MessagesResponse = assert_round_trip(text);
    assert!(matches!(&response.content[0], ContentBlock::Unknown(v) if v["name"] == "web_search"));
    assert_eq!(
        response.content[1],
        ContentBlock::RedactedThinking { data: "abc".into() }
    );
    assert_eq!(response.text(), "done");
}

#[test]
fn error_body_round_trips_and_constructors_match() {
    let body: AnthropicErrorBody = assert_round_trip(&fixture("anthropic_error.json"));
    assert_eq!(body.r#type, "error");
    assert_eq!(body.error.r#type, "not_found_error");
    assert_eq!(
        body.request_id.as_deref(),
        Some("req_011CSHoEeqs5C35K2UUqR7Fy")
    );
    assert_eq!(
        AnthropicErrorBody::not_found("The requested resource could not be found.")
            .with_request_id("req_011CSHoEeqs5C35K2UUqR7Fy"),
        body
    );
    let pairs = [
        (
            AnthropicErrorBody::invalid_request("m"),
            "invalid_request_error",
        ),
        (AnthropicErrorBody::rate_limit("m"), "rate_limit_error"),
        (AnthropicErrorBody::api_error("m"), "api_error"),
        (AnthropicErrorBody::overloaded("m"), "overloaded_error"),
    ];
    for (body, kind) in pairs {
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            json!({"type":"error","error":{"type":kind,"message":"m"}})
        );
    }
}

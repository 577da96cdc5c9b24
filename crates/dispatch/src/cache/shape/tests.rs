//! `shape`'s tests (kept out of the module so it stays readable).

use std::time::Duration;

use proptest::prelude::*;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../../protocol/tests/fixtures/", $name))
    };
}

/// A fixture file as recorded events, one per SSE event.
fn recorded(text: &str) -> Vec<RecordedEvent> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .enumerate()
        .map(|(i, e)| RecordedEvent {
            at: Duration::from_millis(i as u64 * 10),
            data: Bytes::from(format!("{}\n\n", e.trim_start_matches('\n'))),
        })
        .collect()
}

fn as_recorded(events: Vec<Bytes>) -> Vec<RecordedEvent> {
    events
        .into_iter()
        .map(|data| RecordedEvent {
            at: Duration::ZERO,
            data,
        })
        .collect()
}

fn assembled(kind: Kind, text: &str) -> Value {
    serde_json::from_slice(&assemble(kind, &recorded(text)).unwrap()).unwrap()
}

fn round_trip(kind: Kind, body: &Value) -> Value {
    let events = synthesize(kind, body.to_string().as_bytes()).unwrap();
    for event in &events {
        assert!(event.ends_with(b"\n\n"), "{event:?}");
        assert!(!event[..event.len() - 2].contains(&b'\n') || kind == Kind::Messages);
    }
    let terminal = events.last().unwrap();
    assert_eq!(classify(kind, terminal), EventClass::Terminal);
    serde_json::from_slice(&assemble(kind, &as_recorded(events)).unwrap()).unwrap()
}

#[test]
fn assembles_an_openai_text_stream() {
    let body = assembled(Kind::Chat, fixture!("openai_chat_stream.sse"));
    assert_eq!(
        body,
        json!({
            "id": "chatcmpl-123",
            "object": "chat.completion",
            "created": 1694268190,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there!", "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "service_tier": "default",
            "system_fingerprint": "fp_44709d6fcb",
        })
    );
    // Parses as the protocol's response type.
    let _: protocol::openai::ChatCompletionResponse = serde_json::from_value(body).unwrap();
}

#[test]
fn assembles_usage_and_unicode() {
    let body = assembled(Kind::Chat, fixture!("openai_chat_stream_usage.sse"));
    assert_eq!(body["choices"][0]["message"]["content"], "你好。");
    assert_eq!(body["usage"]["prompt_tokens"], 14);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    assert!(body.get("service_tier").is_none());
}

#[test]
fn assembles_tool_calls() {
    let body = assembled(Kind::Chat, fixture!("openai_chat_stream_tools.sse"));
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{
            "id": "call_2Uzw",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        }])
    );
}

#[test]
fn assembles_compatible_server_streams() {
    let llama = assembled(Kind::Chat, fixture!("llamacpp_chat_stream.sse"));
    assert_eq!(llama["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(llama["usage"]["total_tokens"], 11);
    assert_eq!(llama["system_fingerprint"], "b4100-abcdef");
    let vllm = assembled(Kind::Chat, fixture!("vllm_chat_stream.sse"));
    assert_eq!(vllm["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(vllm["choices"][0]["finish_reason"], "stop");
    let ollama = assembled(Kind::Chat, fixture!("ollama_chat_stream.sse"));
    assert_eq!(ollama["choices"][0]["message"]["content"], "Hey!");
}

#[test]
fn assembles_interleaved_choices_and_reasoning() {
    let chunk = |choices: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices})
        )
    };
    let stream = [
        chunk(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}}])),
        chunk(json!([{"index": 1, "delta": {"role": "assistant", "content": ""}}])),
        chunk(json!([{"index": 1, "delta": {"reasoning_content": "hm"}}])),
        chunk(json!([{"index": 0, "delta": {"content": "A"}}])),
        chunk(json!([{"index": 1, "delta": {"content": "B"}}])),
        chunk(
            json!([{"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [{"token": "a"}]}}]),
        ),
        chunk(
            json!([{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": {"content": [{"token": "!"}]}}]),
        ),
        chunk(json!([{"index": 1, "delta": {}, "finish_reason": "length"}])),
        "data: [DONE]\n\n".to_owned(),
    ];
    let body = assembled(Kind::Chat, &stream.concat());
    assert_eq!(body["choices"][0]["message"]["content"], "Aa");
    assert_eq!(
        body["choices"][0]["logprobs"]["content"],
        json!([{"token": "a"}, {"token": "!"}])
    );
    assert_eq!(body["choices"][1]["message"]["content"], "B");
    assert_eq!(body["choices"][1]["message"]["reasoning_content"], "hm");
    assert_eq!(body["choices"][1]["finish_reason"], "length");
    assert!(body.get("usage").is_none(), "no usage chunk, no usage");
}

#[test]
fn assembles_a_completion_stream() {
    let body = assembled(Kind::Completions, fixture!("openai_completion_stream.sse"));
    assert_eq!(
        body,
        json!({
            "id": "cmpl-7a1",
            "object": "text_completion",
            "created": 1589478378,
            "model": "gpt-3.5-turbo-instruct",
            "choices": [{"text": "\n\nThis is a test", "index": 0, "logprobs": null, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        })
    );
}

#[test]
fn assembles_anthropic_streams() {
    let text = assembled(Kind::Messages, fixture!("anthropic_stream.sse"));
    assert_eq!(text["content"], json!([{"type": "text", "text": "Hello!"}]));
    assert_eq!(text["stop_reason"], "end_turn");
    assert_eq!(text["stop_sequence"], Value::Null);
    assert_eq!(
        text["usage"]["output_tokens"], 15,
        "output from message_delta"
    );
    assert_eq!(
        text["usage"]["input_tokens"], 16,
        "input from message_start"
    );
    assert_eq!(text["usage"]["service_tier"], "standard");
    let _: protocol::anthropic::MessagesResponse = serde_json::from_value(text).unwrap();

    let thinking = assembled(Kind::Messages, fixture!("anthropic_thinking_stream.sse"));
    assert_eq!(
        thinking["content"],
        json!([
            {"type": "thinking", "thinking": "The user wants 27 * 453. 27 * 453 = 12231.",
             "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
            {"type": "text", "text": "27 * 453 = 12,231"},
        ])
    );

    let tool = assembled(Kind::Messages, fixture!("anthropic_tool_stream.sse"));
    assert_eq!(tool["content"][1]["input"], json!({"city": "Paris"}));
    assert_eq!(tool["content"][1]["name"], "get_weather");
    assert_eq!(tool["stop_reason"], "tool_use");
    assert_eq!(tool["usage"]["output_tokens"], 89);
}

#[test]
fn tool_use_without_input_deltas_keeps_an_empty_object() {
    let stream = [
        r#"event: message_start
data: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"c","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}"#,
        r#"event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"now","input":{}}}"#,
        r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        r#"event: content_block_stop
data: {"type":"content_block_stop","index":0}"#,
        r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":7}}"#,
        r#"event: message_stop
data: {"type":"message_stop"}"#,
    ]
    .join("\n\n");
    let body = assembled(Kind::Messages, &stream);
    assert_eq!(body["content"][0]["input"], json!({}));
    assert_eq!(usage(Kind::Messages, &recorded(&stream)), (3, 7));
}

#[test]
fn error_events_and_truncation_are_errors() {
    let err = assemble(
        Kind::Chat,
        &recorded(fixture!("openai_chat_stream_error.sse")),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ShapeError::Upstream { message } if message.contains("server had an error")),
        "{err}"
    );
    let err = assemble(
        Kind::Messages,
        &recorded(fixture!("anthropic_error_stream.sse")),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ShapeError::Upstream { message } if message == "Overloaded"),
        "{err}"
    );

    for (kind, text) in [
        (Kind::Chat, fixture!("openai_chat_stream.sse")),
        (Kind::Completions, fixture!("openai_completion_stream.sse")),
        (Kind::Messages, fixture!("anthropic_stream.sse")),
    ] {
        let mut events = recorded(text);
        events.pop();
        let err = assemble(kind, &events).unwrap_err();
        assert!(
            matches!(err, ShapeError::Incomplete { .. }),
            "{kind:?}: {err}"
        );
        assert!(err.to_string().contains("terminal event"));
    }
    let err = assemble(Kind::Chat, &recorded("data: [DONE]\n\n")).unwrap_err();
    assert!(matches!(err, ShapeError::Malformed(_)), "{err}");
    let err = assemble(Kind::Chat, &recorded("data: {not json\n\ndata: [DONE]\n\n")).unwrap_err();
    assert!(matches!(err, ShapeError::Json { .. }), "{err}");
}

fn fixture_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn chat_round_trips() {
    let mut text = fixture_json(fixture!("openai_chat_response.json"));
    // Annotations have no streamed form; everything else must survive.
    text["choices"][0]["message"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    assert_eq!(round_trip(Kind::Chat, &text), text);

    let tools = json!({
        "id": "chatcmpl-t", "object": "chat.completion", "created": 7, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\", \"days\": [1, 2, 3]}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
            ]}, "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 30, "total_tokens": 70},
    });
    assert_eq!(round_trip(Kind::Chat, &tools), tools);

    let n2 = json!({
        "id": "chatcmpl-n", "object": "chat.completion", "created": 9, "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "First answer, with several words in it.\nAnd a second line.", "refusal": null, "reasoning_content": "Let me think about it for a while."}, "logprobs": {"content": [{"token": "First", "logprob": -0.1}]}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": "", "refusal": "I can't help with that."}, "logprobs": null, "finish_reason": "content_filter"},
        ],
        "system_fingerprint": "fp_1",
    });
    assert_eq!(round_trip(Kind::Chat, &n2), n2);
}

#[test]
fn completions_and_messages_round_trip() {
    let completion = fixture_json(fixture!("openai_completion_response.json"));
    assert_eq!(round_trip(Kind::Completions, &completion), completion);
    let empty = json!({"id": "c", "object": "text_completion", "created": 1, "model": "m",
        "choices": [{"text": "", "index": 0, "logprobs": null, "finish_reason": "length"},
                    {"text": "two choices", "index": 1, "logprobs": null, "finish_reason": "stop"}]});
    assert_eq!(round_trip(Kind::Completions, &empty), empty);

    let message = fixture_json(fixture!("anthropic_response.json"));
    assert_eq!(round_trip(Kind::Messages, &message), message);
    let rich = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
        "content": [
            {"type": "thinking", "thinking": "The user wants the weather. I should call the tool.", "signature": "sig=="},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Let me check — one moment.", "citations": [{"type": "char_location", "cited_text": "x"}]},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "days": [1, 2]}},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 472, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 7, "output_tokens": 89},
        "container": null,
    });
    assert_eq!(round_trip(Kind::Messages, &rich), rich);
}

#[test]
fn synthesized_streams_look_real() {
    let body = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "one two three four five six seven eight nine ten"}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 10, "total_tokens": 13}});
    let events = synthesize(Kind::Chat, body.to_string().as_bytes()).unwrap();
    let classes: Vec<EventClass> = events.iter().map(|e| classify(Kind::Chat, e)).collect();
    assert_eq!(classes[classes.len() - 2], EventClass::UsageOnly);
    assert_eq!(classes[classes.len() - 1], EventClass::Terminal);
    assert!(
        classes[..classes.len() - 2]
            .iter()
            .all(|c| *c == EventClass::Other)
    );
    // role, 4 content pieces, finish, usage, [DONE]
    assert_eq!(events.len(), 8, "{events:#?}");
    let first: Value = serde_json::from_str(decode_one(&events[0]).unwrap().data.as_str()).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let second: Value =
        serde_json::from_str(decode_one(&events[1]).unwrap().data.as_str()).unwrap();
    assert_eq!(second["choices"][0]["delta"]["content"], "one two three");
    let chunks: Vec<protocol::openai::ChatCompletionChunk> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&decode_one(e).unwrap().data).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c.id == "x" && c.created == 1 && c.model == "m")
    );

    let message = fixture_json(fixture!("anthropic_response.json"));
    let events = synthesize(Kind::Messages, message.to_string().as_bytes()).unwrap();
    let names: Vec<String> = events
        .iter()
        .map(|e| decode_one(e).unwrap().event.unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for event in &events {
        let decoded = decode_one(event).unwrap();
        let parsed: protocol::anthropic::StreamEvent = serde_json::from_str(&decoded.data).unwrap();
        assert_eq!(parsed.name(), decoded.event.unwrap(), "event: matches type");
    }
    let start: Value = serde_json::from_str(&decode_one(&events[0]).unwrap().data).unwrap();
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["stop_reason"], Value::Null);
    assert_eq!(start["message"]["usage"]["output_tokens"], 1);
    assert_eq!(start["message"]["usage"]["input_tokens"], 12);
}

#[test]
fn synthesize_rejects_other_shapes() {
    assert!(matches!(
        synthesize(Kind::Chat, b"nope"),
        Err(ShapeError::Json { .. })
    ));
    assert!(matches!(
        synthesize(Kind::Chat, b"[]"),
        Err(ShapeError::Malformed(_))
    ));
    assert!(matches!(
        synthesize(Kind::Chat, b"{\"id\":1}"),
        Err(ShapeError::Malformed(_))
    ));
    let chat = br#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}"#;
    assert!(matches!(
        synthesize(Kind::Messages, chat),
        Err(ShapeError::Malformed(_))
    ));
}

#[test]
fn classifies_openai_events() {
    let cases: &[(&[u8], EventClass)] = &[
        (b"data: [DONE]\n\n", EventClass::Terminal),
        (b"data:[DONE]\n\n", EventClass::Terminal),
        (br#"data: {"choices":[{"index":0,"delta":{"content":"[DONE]"}}]}"#, EventClass::Other),
        (br#"data: {"choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#, EventClass::Other),
        (br#"data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#, EventClass::UsageOnly),
        (b"data: {\"choices\" : [ ] , \"usage\" : {\"prompt_tokens\":1}}\n\n", EventClass::UsageOnly),
        // vLLM's continuous usage: usage on a chunk that still has choices.
        (br#"data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#, EventClass::Other),
        (br#"data: {"choices":[],"usage":null}"#, EventClass::Other),
        (br#"data: {"choices":[{"index":0,"delta":{"content":"the \"usage\" and \"error\" words"}}]}"#, EventClass::Other),
        (br#"data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#, EventClass::Error),
        (br#"data: {"object":"error","message":"bad","type":"BadRequestError","code":400}"#, EventClass::Error),
        (br#"data: {"error":null,"choices":[{"index":0,"delta":{"content":"x"}}]}"#, EventClass::Other),
        (b"event: error\ndata: {\"message\":\"x\"}\n\n", EventClass::Error),
        (b": keep-alive\n\n", EventClass::Other),
    ];
    for (event, expected) in cases {
        for kind in [Kind::Chat, Kind::Completions] {
            assert_eq!(
                classify(kind, event),
                *expected,
                "{}",
                String::from_utf8_lossy(event)
            );
        }
    }
}

#[test]
fn classifies_anthropic_events() {
    let cases: &[(&[u8], EventClass)] = &[
        (b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", EventClass::Terminal),
        (b"event:message_stop\r\ndata: {}\r\n\r\n", EventClass::Terminal),
        (b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", EventClass::Error),
        (b"event: ping\ndata: {\"type\": \"ping\"}\n\n", EventClass::Other),
        (b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"event: message_stop\"}}\n\n", EventClass::Other),
        (b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\n", EventClass::Other),
        (b"data: {\"type\":\"message_stop\"}\n\n", EventClass::Terminal),
        (b"data: {\"type\":\"error\",\"error\":{\"message\":\"x\"}}\n\n", EventClass::Error),
        (b"data: {\"type\":\"ping\"}\n\n", EventClass::Other),
    ];
    for (event, expected) in cases {
        assert_eq!(
            classify(Kind::Messages, event),
            *expected,
            "{}",
            String::from_utf8_lossy(event)
        );
    }
    // The fixtures end with exactly one terminal event.
    let events = recorded(fixture!("anthropic_tool_stream.sse"));
    let terminals = events
        .iter()
        .filter(|e| classify(Kind::Messages, &e.data) == EventClass::Terminal)
        .count();
    assert_eq!(terminals, 1);
    assert_eq!(
        classify(Kind::Messages, &events.last().unwrap().data),
        EventClass::Terminal
    );
}

#[test]
fn reads_usage_from_streams_and_bodies() {
    assert_eq!(
        usage(
            Kind::Chat,
            &recorded(fixture!("openai_chat_stream_usage.sse"))
        ),
        (14, 3)
    );
    assert_eq!(
        usage(Kind::Chat, &recorded(fixture!("openai_chat_stream.sse"))),
        (0, 0)
    );
    // Servers that attach usage to the last content chunk instead of a usage-only one.
    let attached = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],",
        "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
    );
    assert_eq!(usage(Kind::Chat, &recorded(attached)), (4, 1));
    assert_eq!(assembled(Kind::Chat, attached)["usage"]["prompt_tokens"], 4);
    assert_eq!(
        usage(
            Kind::Completions,
            &recorded(fixture!("openai_completion_stream.sse"))
        ),
        (5, 7)
    );
    assert_eq!(
        usage(Kind::Messages, &recorded(fixture!("anthropic_stream.sse"))),
        (16, 15)
    );
    assert_eq!(
        usage(
            Kind::Messages,
            &recorded(fixture!("anthropic_tool_stream.sse"))
        ),
        (472, 89)
    );

    assert_eq!(
        usage_json(Kind::Chat, fixture!("openai_chat_response.json").as_bytes()),
        (19, 10)
    );
    assert_eq!(
        usage_json(
            Kind::Completions,
            fixture!("openai_completion_response.json").as_bytes()
        ),
        (5, 7)
    );
    assert_eq!(
        usage_json(
            Kind::Messages,
            fixture!("anthropic_response.json").as_bytes()
        ),
        (12, 6)
    );
    let cached = br#"{"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":20,"output_tokens":2}}"#;
    assert_eq!(
        usage_json(Kind::Messages, cached),
        (35, 2),
        "total input, as client::UsageCounts"
    );
    assert_eq!(usage_json(Kind::Chat, b"not json"), (0, 0));
    assert_eq!(usage_json(Kind::Chat, br#"{"usage":null}"#), (0, 0));
}

#[test]
fn pieces_cut_at_words_and_characters() {
    assert_eq!(
        pieces("one two three four five"),
        ["one two three", " four five"]
    );
    assert_eq!(pieces(""), Vec::<&str>::new());
    assert_eq!(pieces("  lead"), ["  lead"]);
    let cjk = "你好世界你好世界你好世界";
    assert!(pieces(cjk).len() > 1);
    assert!(pieces(cjk).iter().all(|p| p.len() <= MAX_PIECE_BYTES));
}

proptest! {
    #[test]
    fn pieces_concatenate_to_the_text(text in "\\PC{0,200}|[a b\n]{0,60}") {
        let parts = pieces(&text);
        prop_assert_eq!(parts.concat(), text.clone());
        prop_assert!(parts.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn any_chat_text_round_trips(content in "\\PC{0,120}", reasoning in proptest::option::of("\\PC{0,40}")) {
        let mut message = json!({"role": "assistant", "content": content, "refusal": null});
        if let Some(r) = reasoning {
            message["reasoning_content"] = Value::from(r);
        }
        let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": "stop"}]});
        prop_assert_eq!(round_trip(Kind::Chat, &body), body);
    }
}

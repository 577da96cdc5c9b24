//! Request bodies: lossless pass-through of unknown fields, helpers, and the shared token
//! estimate.

use proptest::prelude::*;
use protocol::anthropic::{AnthropicContent, MessagesRequest, SystemPrompt};
use protocol::openai::{ChatCompletionRequest, CompletionRequest, MessageContent, Prompt, Stop};
use protocol::tokens::{
    count_chat_input, count_completion_input, count_messages_input, count_text, o200k,
};
use serde_json::{Map, Value, json};

use crate::{assert_round_trip, fixture};

#[test]
fn chat_request_with_unknown_fields_round_trips_byte_for_byte() {
    let text = fixture("openai_chat_request.json");
    let request: ChatCompletionRequest = assert_round_trip(&text);
    // Known fields are written in declaration order and unknown ones after them, which is
    // the order of this fixture, so even the bytes are identical.
    assert_eq!(serde_json::to_string(&request).unwrap(), text.trim_end());
    assert_eq!(
        request.extra["x_custom_flag"],
        json!({"nested": [1, 2.5, "three", null]})
    );
    assert_eq!(request.extra["top_k"], json!(40));
    assert_eq!(
        request.stream_options.as_ref().unwrap().extra["continuous_usage_stats"],
        json!(false)
    );
    let user = &request.messages[1];
    assert_eq!(user.name.as_deref(), Some("alice"));
    let Some(MessageContent::Parts(parts)) = &user.content else {
        panic!("expected content parts");
    };
    assert_eq!(parts[1].r#type, "image_url");
    assert_eq!(parts[1].extra["image_url"]["detail"], "low");
    assert_eq!(user.text(), "Say hi");
    assert_eq!(request.messages[2].content, None);
    assert_eq!(
        request.messages[3].tool_call_id.as_deref(),
        Some("call_abc")
    );

    assert_eq!(request.output_cap(), Some(64));
    assert!(request.is_stream());
    assert!(request.include_usage());
    assert_eq!(request.ignore_eos, Some(false));
    assert_eq!(request.reasoning_effort.as_deref(), Some("low"));
}

#[test]
fn chat_request_helpers_follow_field_precedence() {
    let mut request: ChatCompletionRequest =
        serde_json::from_value(json!({"model": "m", "messages": [], "max_tokens": 10})).unwrap();
    assert_eq!(request.output_cap(), Some(10));
    request.max_completion_tokens = Some(20);
    assert_eq!(request.output_cap(), Some(20), "max_completion_tokens wins");
    assert!(!request.is_stream());
    request.stream_options = Some(serde_json::from_value(json!({"include_usage": true})).unwrap());
    assert!(!request.include_usage(), "usage chunk only when streaming");
    request.stream = Some(true);
    assert!(request.include_usage());
    assert_eq!(request.choice_count(), 1);
}

#[test]
fn explicit_null_on_a_known_optional_field_is_dropped() {
    let request: ChatCompletionRequest = serde_json::from_value(
        json!({"model": "m", "messages": [], "temperature": null, "unknown": null}),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({"model": "m", "messages": [], "unknown": null}),
        "unknown keys keep their null"
    );
}

#[test]
fn missing_required_fields_are_errors() {
    assert!(serde_json::from_value::<ChatCompletionRequest>(json!({"model": "m"})).is_err());
    assert!(serde_json::from_value::<CompletionRequest>(json!({"model": "m"})).is_err());
    assert!(serde_json::from_value::<MessagesRequest>(json!({"messages": []})).is_err());
}

#[test]
fn stop_accepts_one_or_many() {
    let one: Stop = serde_json::from_value(json!("\n")).unwrap();
    let many: Stop = serde_json::from_value(json!(["a", "b"])).unwrap();
    assert_eq!(one.sequences(), ["\n"]);
    assert_eq!(many.sequences(), ["a", "b"]);
    assert_eq!(serde_json::to_value(&many).unwrap(), json!(["a", "b"]));
}

#[test]
fn legacy_prompt_forms_and_token_counts() {
    let cases = [
        (
            json!("Say this is a test"),
            count_text("Say this is a test"),
            1,
        ),
        (
            json!(["hello", "hello world"]),
            count_text("hello") + count_text("hello world"),
            2,
        ),
        (json!([1, 2, 3]), 3, 1),
        (json!([[1, 2], [3, 4, 5]]), 5, 2),
    ];
    for (prompt, tokens, prompts) in cases {
        let request: CompletionRequest = assert_round_trip(
            &json!({"model": "gpt-3.5-turbo-instruct", "prompt": prompt, "logit_bias": {"50256": -100}})
                .to_string(),
        );
        assert_eq!(count_completion_input(&request), tokens, "{prompt}");
        assert_eq!(request.prompt.len(), prompts);
        assert_eq!(request.output_cap(), 16, "OpenAI's default max_tokens");
        assert!(request.extra.contains_key("logit_bias"));
    }
    let tokens: CompletionRequest =
        serde_json::from_value(json!({"model": "m", "prompt": [7, 8]})).unwrap();
    assert_eq!(tokens.prompt, Prompt::Tokens(vec![7, 8]));
    let mut streaming = CompletionRequest::new("m", "p");
    streaming.stream = Some(true);
    assert!(!streaming.include_usage());
    streaming.stream_options =
        Some(serde_json::from_value(json!({"include_usage": true})).unwrap());
    assert!(streaming.include_usage());
}

#[test]
fn anthropic_request_round_trips_byte_for_byte() {
    let text = fixture("anthropic_request.json");
    let request: MessagesRequest = assert_round_trip(&text);
    assert_eq!(serde_json::to_string(&request).unwrap(), text.trim_end());
    assert_eq!(request.max_tokens, Some(1024));
    assert!(!request.is_stream());
    assert_eq!(request.extra["container"], "cntr_01");
    assert!(matches!(&request.system, Some(SystemPrompt::Blocks(b)) if b.len() == 1));
    assert_eq!(request.system.as_ref().unwrap().text(), "You are terse.");
    assert_eq!(request.messages[2].text(), "18CThanks");
    assert!(matches!(
        request.messages[0].content,
        AnthropicContent::Text(_)
    ));
    let inputs: Vec<&Value> = request.messages[1].content.tool_use_inputs().collect();
    assert_eq!(inputs, [&json!({"city": "Paris"})]);
}

#[test]
fn anthropic_request_without_max_tokens_still_parses() {
    let request: MessagesRequest = serde_json::from_value(
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    assert_eq!(request.max_tokens, None);
}

#[test]
fn chat_token_estimate_follows_the_documented_formula() {
    let request: ChatCompletionRequest =
        serde_json::from_str(&fixture("openai_chat_request.json")).unwrap();
    let tool_calls =
        serde_json::to_string(request.messages[2].tool_calls.as_ref().unwrap()).unwrap();
    let tools = serde_json::to_string(request.tools.as_ref().unwrap()).unwrap();
    let expected = 3 // reply priming
        + (3 + count_text("system") + count_text("You are terse."))
        + (3 + count_text("user") + count_text("Say hi") + count_text("alice") + 1)
        + (3 + count_text("assistant") + count_text(&tool_calls))
        + (3 + count_text("tool") + count_text("18C, cloudy"))
        + count_text(&tools);
    assert_eq!(count_chat_input(&request), expected);
    assert!(expected > 40, "sanity: {expected}");
}

#[test]
fn anthropic_token_estimate_counts_system_tool_use_and_tools() {
    let request: MessagesRequest =
        serde_json::from_str(&fixture("anthropic_request.json")).unwrap();
    let expected = 3
        + (3 + count_text("system") + count_text("You are terse."))
        + (3 + count_text("user") + count_text("Say hi"))
        + (3 + count_text("assistant") + count_text(r#"{"city":"Paris"}"#))
        + (3 + count_text("user") + count_text("18CThanks"));
    assert_eq!(count_messages_input(&request), expected);
}

#[test]
fn o200k_is_the_real_encoding() {
    // Token ids of o200k_base, stable across releases.
    assert_eq!(o200k().encode_ordinary("hello world"), vec![24912, 2375]);
    assert_eq!(count_text("hello world"), 2);
    assert!(std::ptr::eq(o200k(), o200k()), "built once");
}

#[test]
fn pathological_whitespace_does_not_break_the_tokenizer() {
    let spaces = " ".repeat(200_000);
    assert!(count_text(&spaces) > 0);
    let mixed = " \n\t".repeat(50_000);
    assert!(count_text(&mixed) > 0);
}

fn extra_key() -> impl Strategy<Value = String> {
    "x_[a-z_]{1,10}"
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Unknown keys of any JSON shape, at the top level, in messages and in content
    /// parts, survive a read and a write.
    #[test]
    fn unknown_fields_survive_round_trip(
        top in prop::collection::btree_map(extra_key(), json_value(), 0..5),
        in_message in prop::collection::btree_map(extra_key(), json_value(), 0..3),
        in_part in prop::collection::btree_map(extra_key(), json_value(), 0..3),
        text in "\\PC{0,40}",
        max_tokens in prop::option::of(0u32..100_000),
    ) {
        let mut part = Map::new();
        part.insert("type".into(), json!("text"));
        part.insert("text".into(), json!(text));
        part.extend(in_part);
        let mut message = Map::new();
        message.insert("role".into(), json!("user"));
        message.insert("content".into(), json!([part]));
        message.extend(in_message);
        let mut body = Map::new();
        body.insert("model".into(), json!("m"));
        body.insert("messages".into(), json!([message]));
        if let Some(max) = max_tokens {
            body.insert("max_tokens".into(), json!(max));
        }
        body.extend(top);
        let body = Value::Object(body);

        let request: ChatCompletionRequest = serde_json::from_value(body.clone()).unwrap();
        prop_assert_eq!(serde_json::to_value(&request).unwrap(), body);
        prop_assert_eq!(request.messages[0].text(), text);
        prop_assert_eq!(request.output_cap(), max_tokens);
    }
}

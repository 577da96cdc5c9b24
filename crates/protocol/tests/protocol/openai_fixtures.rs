//! OpenAI fixtures (api-formats §1.4–§1.8): streams, responses, errors, legacy completions
//! and the model list.

use protocol::openai::{
    ChatCompletionChunk, ChatCompletionResponse, CompletionChunk, CompletionResponse, ErrorBody,
    ModelList, StreamData,
};
use serde_json::{Value, json as j};

use crate::{assert_round_trip, fixture, json, sse_fixture};

/// Decodes a chat stream fixture into its payloads, checking every chunk round-trips.
fn chat_stream(name: &str) -> Vec<StreamData<ChatCompletionChunk>> {
    sse_fixture(name)
        .iter()
        .map(|event| {
            assert_eq!(event.event, None, "OpenAI events are unnamed");
            let data = StreamData::<ChatCompletionChunk>::parse(&event.data).unwrap();
            if let StreamData::Item(_) = &data {
                assert_round_trip::<ChatCompletionChunk>(&event.data);
            }
            data
        })
        .collect()
}

fn chunks(items: &[StreamData<ChatCompletionChunk>]) -> Vec<&ChatCompletionChunk> {
    items
        .iter()
        .filter_map(|d| match d {
            StreamData::Item(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn stream_without_usage_has_role_chunk_tokens_and_finish_chunk() {
    let items = chat_stream("openai_chat_stream.sse");
    assert_eq!(items.len(), 5);
    assert_eq!(items[4], StreamData::Done);
    let chunks = chunks(&items);

    let role = &chunks[0].choices[0].delta;
    assert_eq!(role.role.as_deref(), Some("assistant"));
    assert_eq!(role.content, Some(Some(String::new())));
    assert_eq!(role.refusal, Some(None), "`refusal: null` is kept as null");
    assert!(!role.has_token(), "the role chunk is not the first token");
    assert_eq!(chunks[0].obfuscation.as_deref(), Some("r4N7vQ2m"));

    let first_token = chunks.iter().position(|c| c.has_token());
    assert_eq!(first_token, Some(1));

    let finish = chunks[3];
    assert!(!finish.has_token());
    assert_eq!(finish.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(finish.choices[0].delta, Default::default());

    assert!(
        chunks.iter().all(|c| c.usage.is_none()),
        "no usage key at all"
    );
    assert!(
        chunks
            .iter()
            .all(|c| c.id == "chatcmpl-123" && c.created == 1694268190)
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content_str())
        .collect();
    assert_eq!(text, "Hello there!");
}

#[test]
fn stream_with_usage_sends_null_usage_until_the_final_empty_choices_chunk() {
    let items = chat_stream("openai_chat_stream_usage.sse");
    assert_eq!(items.last(), Some(&StreamData::Done));
    let chunks = chunks(&items);
    let (last, before) = chunks.split_last().unwrap();
    assert_eq!(before.len(), 4);
    for chunk in before {
        assert_eq!(chunk.usage, Some(None), "`usage: null` is distinguishable");
        assert_eq!(chunk.reported_usage(), None);
        assert!(!chunk.choices.is_empty());
    }
    assert!(last.choices.is_empty());
    let usage = last.reported_usage().unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (14, 3, 17)
    );
    assert_eq!(usage.cached_tokens(), 0);
    assert_eq!(
        usage
            .completion_tokens_details
            .as_ref()
            .unwrap()
            .rejected_prediction_tokens,
        Some(0)
    );
    let found: Vec<usize> = chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.reported_usage().is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(found, vec![4], "usage only on the final chunk");
    assert_eq!(
        chunks[1].choices[0].delta.content_str(),
        Some("你好"),
        "multi-byte text survives the decoder"
    );
}

#[test]
fn tool_call_stream_counts_as_token_and_arguments_join_by_index() {
    let items = chat_stream("openai_chat_stream_tools.sse");
    let chunks = chunks(&items);
    let first = &chunks[0].choices[0].delta;
    assert_eq!(
        first.content,
        Some(None),
        "`content: null` next to tool calls"
    );
    assert!(first.has_token(), "a tool-call delta is output");

    let mut arguments = String::new();
    let mut name = None;
    for chunk in &chunks {
        for call in chunk
            .choices
            .iter()
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
        {
            assert_eq!(call["index"], 0);
            if let Some(n) = call["function"]["name"].as_str() {
                name = Some(n.to_owned());
            }
            arguments.push_str(call["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    let args: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(args, j!({"city": "Paris"}));
    assert_eq!(
        chunks.last().unwrap().choices[0].finish_reason.as_deref(),
        Some("tool_calls")
    );
    assert_eq!(chunks[1].obfuscation.as_deref(), Some(""));
}

#[test]
fn mid_stream_error_is_classified_and_ends_without_done() {
    let items = chat_stream("openai_chat_stream_error.sse");
    assert_eq!(items.len(), 3);
    assert!(matches!(&items[1], StreamData::Item(c) if c.has_token()));
    let StreamData::Error(err) = &items[2] else {
        panic!("expected an error payload, got {:?}", items[2]);
    };
    assert_eq!(err.error.r#type, "server_error");
    assert_eq!(err.error.code, None);
    assert!(!items.contains(&StreamData::Done));
}

#[test]
fn done_sentinel_and_garbage_payloads() {
    assert_eq!(
        StreamData::<ChatCompletionChunk>::parse("[DONE]").unwrap(),
        StreamData::Done
    );
    assert!(StreamData::<ChatCompletionChunk>::parse("{\"id\":1}").is_err());
    assert!(StreamData::<ChatCompletionChunk>::parse("not json").is_err());
    // A chunk whose text mentions "error" is still a chunk.
    let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"\"error\""},"finish_reason":null}]}"#;
    assert!(matches!(
        StreamData::<ChatCompletionChunk>::parse(chunk).unwrap(),
        StreamData::Item(_)
    ));
}

#[test]
fn non_stream_response_round_trips_and_keeps_annotations() {
    let response: ChatCompletionResponse = assert_round_trip(&fixture("openai_chat_response.json"));
    assert_eq!(response.object, "chat.completion");
    let choice = &response.choices[0];
    assert_eq!(
        choice.message.content.as_deref(),
        Some("Hello! How can I help?")
    );
    assert_eq!(choice.message.refusal, None);
    assert_eq!(choice.message.extra["annotations"], j!([]));
    assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
    let usage = response.usage.unwrap();
    assert_eq!(usage.total_tokens, 29);
    assert_eq!(usage.reasoning_tokens(), 0);
    assert_eq!(
        response.system_fingerprint.as_deref(),
        Some("fp_44709d6fcb")
    );
}

#[test]
fn constructed_response_serializes_nulls_where_the_spec_requires_keys() {
    use protocol::openai::{AssistantMessage, ChatChoice, Usage};
    let mut response = ChatCompletionResponse::new(
        "chatcmpl-1",
        7,
        "gpt-4o-mini",
        vec![ChatChoice {
            index: 0,
            message: AssistantMessage::new("hi"),
            logprobs: None,
            finish_reason: Some("stop".into()),
        }],
    );
    response.usage = Some(Usage::new(3, 1));
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        j!({"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"gpt-4o-mini",
            "choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null},
                        "logprobs":null,"finish_reason":"stop"}],
            "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})
    );
}

#[test]
fn error_bodies_parse_and_round_trip() {
    let bodies: Vec<Value> = serde_json::from_str(&fixture("openai_errors.json")).unwrap();
    let parsed: Vec<ErrorBody> = bodies
        .iter()
        .map(|b| assert_round_trip(&b.to_string()))
        .collect();
    assert_eq!(parsed[0].code_str(), Some("invalid_api_key"));
    assert_eq!(parsed[1].error.r#type, "tokens");
    assert_eq!(parsed[1].code_str(), Some("rate_limit_exceeded"));
    assert_eq!(parsed[2].code_str(), Some("insufficient_quota"));
    assert_eq!(parsed[3].error.code, None);
    assert!(parsed.iter().all(|b| b.error.param.is_none()));
}

#[test]
fn error_constructors_always_write_all_four_keys() {
    assert_eq!(
        serde_json::to_value(ErrorBody::server_error("boom")).unwrap(),
        j!({"error":{"message":"boom","type":"server_error","param":null,"code":null}})
    );
    assert_eq!(
        serde_json::to_value(ErrorBody::rate_limit("slow down", "requests")).unwrap(),
        j!({"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}})
    );
    let missing = ErrorBody::not_found_model("gpt-9");
    assert_eq!(missing.error.r#type, "invalid_request_error");
    assert_eq!(missing.code_str(), Some("model_not_found"));
    assert!(missing.error.message.contains("`gpt-9`"));
    let bad = ErrorBody::invalid_request("no messages").with_param("messages");
    assert_eq!(
        serde_json::to_value(bad).unwrap(),
        j!({"error":{"message":"no messages","type":"invalid_request_error","param":"messages","code":null}})
    );
    assert_eq!(
        ErrorBody::new("m", "t", Some("c")),
        serde_json::from_value(j!({"error":{"message":"m","type":"t","param":null,"code":"c"}}))
            .unwrap()
    );
}

#[test]
fn legacy_completion_response_and_stream() {
    let response: CompletionResponse =
        assert_round_trip(&fixture("openai_completion_response.json"));
    assert_eq!(response.object, "text_completion");
    assert_eq!(response.choices[0].text, "\n\nThis is indeed a test");
    assert_eq!(response.choices[0].finish_reason.as_deref(), Some("length"));
    assert_eq!(response.usage.unwrap().completion_tokens, 7);

    let events = sse_fixture("openai_completion_stream.sse");
    let items: Vec<StreamData<CompletionChunk>> = events
        .iter()
        .map(|e| StreamData::parse(&e.data).unwrap())
        .collect();
    assert_eq!(items.last(), Some(&StreamData::Done));
    let chunks: Vec<&CompletionChunk> = items
        .iter()
        .filter_map(|d| match d {
            StreamData::Item(c) => Some(c),
            _ => None,
        })
        .collect();
    for event in &events[..events.len() - 1] {
        assert_round_trip::<CompletionChunk>(&event.data);
    }
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .map(|c| c.text.as_str())
        .collect();
    assert_eq!(text, "\n\nThis is a test");
    assert!(chunks[0].has_token());
    assert_eq!(
        chunks[2].choices[0].finish_reason.as_deref(),
        Some("length")
    );
    assert_eq!(chunks[3].reported_usage().unwrap().total_tokens, 12);
    assert!(!chunks[3].has_token());
    assert!(chunks[..3].iter().all(|c| c.usage.is_none()));
}

#[test]
fn model_list_round_trips_with_extra_fields() {
    let list: ModelList = assert_round_trip(&fixture("openai_models.json"));
    assert_eq!(list.object, "list");
    assert_eq!(list.data.len(), 2);
    assert_eq!(list.data[0].id, "gpt-4o-mini");
    assert_eq!(list.data[0].owned_by, "system");
    assert_eq!(list.data[1].extra.get("shutdown_date"), Some(&Value::Null));
    let built = ModelList::new(vec![protocol::openai::Model::new("m", 1, "tokenpace")]);
    assert_eq!(
        serde_json::to_value(built).unwrap(),
        json(
            r#"{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"tokenpace"}]}"#
        )
    );
}

//! Quirks of OpenAI-compatible servers (api-formats §6): vLLM, llama.cpp and Ollama.

use protocol::openai::{ChatCompletionChunk, ErrorBody, StreamData};
use serde_json::json;

use crate::{assert_round_trip, fixture, sse_fixture};

fn chunks(name: &str) -> (Vec<ChatCompletionChunk>, bool) {
    let mut chunks = Vec::new();
    let mut done = false;
    for event in sse_fixture(name) {
        match StreamData::<ChatCompletionChunk>::parse(&event.data).unwrap() {
            StreamData::Item(chunk) => chunks.push(chunk),
            StreamData::Done => done = true,
            StreamData::Error(e) => panic!("unexpected error {e:?}"),
        }
    }
    (chunks, done)
}

#[test]
fn vllm_finishes_on_the_last_content_chunk_without_usage() {
    let (chunks, done) = chunks("vllm_chat_stream.sse");
    assert!(done);
    assert_eq!(chunks.len(), 3);
    assert!(!chunks[0].has_token(), "role chunk with empty content");
    let last = &chunks[2];
    assert!(last.has_token(), "the finishing chunk still carries text");
    assert_eq!(last.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(last.choices[0].delta.content_str(), Some(" there"));
    assert!(
        chunks.iter().all(|c| c.usage.is_none()),
        "vLLM omits the usage key"
    );
    assert!(chunks.iter().all(|c| c.obfuscation.is_none()));
}

#[test]
fn vllm_error_code_is_an_integer() {
    let body: ErrorBody = assert_round_trip(&fixture("vllm_error.json"));
    assert_eq!(body.error.code, Some(json!(400)));
    assert_eq!(body.code_str(), None);
    assert_eq!(body.error.r#type, "BadRequestError");
}

#[test]
fn llamacpp_role_chunk_has_null_content_and_timings_ride_the_last_chunk() {
    let (chunks, done) = chunks("llamacpp_chat_stream.sse");
    assert!(done);
    let role = &chunks[0].choices[0].delta;
    assert_eq!(
        role.content,
        Some(None),
        "`content: null`, not absent and not empty"
    );
    assert!(!role.has_token());
    assert!(chunks[1].has_token());
    let finish = &chunks[3];
    assert_eq!(finish.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(finish.extra["timings"]["predicted_n"], json!(2));
    assert!(chunks[..3].iter().all(|c| !c.extra.contains_key("timings")));
    let usage = chunks[4].reported_usage().unwrap();
    assert_eq!((usage.prompt_tokens, usage.total_tokens), (9, 11));
    assert!(usage.prompt_tokens_details.is_none());
    assert_eq!(
        chunks[0].system_fingerprint.as_deref(),
        Some("b4100-abcdef")
    );
    // llama.cpp orders keys differently and leaves out `logprobs`; re-serialized, the only
    // difference is the `"logprobs": null` we always write, as OpenAI does.
    let raw = fixture("llamacpp_chat_stream.sse");
    for line in raw.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            continue;
        }
        let chunk: ChatCompletionChunk = serde_json::from_str(line).unwrap();
        let mut written = serde_json::to_value(&chunk).unwrap();
        for choice in written["choices"].as_array_mut().unwrap() {
            assert_eq!(
                choice.as_object_mut().unwrap().remove("logprobs"),
                Some(json!(null))
            );
        }
        assert_eq!(
            written,
            serde_json::from_str::<serde_json::Value>(line).unwrap()
        );
    }
}

#[test]
fn ollama_sends_no_usage_key_and_a_constant_fingerprint() {
    let (chunks, done) = chunks("ollama_chat_stream.sse");
    assert!(done);
    assert_eq!(chunks.len(), 4);
    assert!(chunks.iter().all(|c| c.usage.is_none()));
    assert!(
        chunks
            .iter()
            .all(|c| c.system_fingerprint.as_deref() == Some("fp_ollama"))
    );
    assert!(!chunks[0].has_token());
    assert_eq!(
        chunks.iter().position(ChatCompletionChunk::has_token),
        Some(1)
    );
    // Ollama leaves `logprobs` out; we read that as `None`.
    assert!(chunks.iter().all(|c| c.choices[0].logprobs.is_none()));
}

#[test]
fn ollama_reasoning_field_counts_as_a_token() {
    let chunk: ChatCompletionChunk = serde_json::from_value(json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen3",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "reasoning": "Hmm"},
                     "finish_reason": null}]
    }))
    .unwrap();
    assert!(chunk.has_token());
}

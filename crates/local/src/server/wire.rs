//! The answers in OpenAI's exact shapes, built from the `protocol` crate's types: the
//! non-streamed chat and text completions, and the SSE sequence of a stream (role chunk, one
//! content chunk per text piece, the finish chunk with an empty delta, the `choices: []` usage
//! chunk when asked for, `data: [DONE]`), or an error event that ends a broken stream.

use bytes::Bytes;
use protocol::openai::{
    AssistantMessage, ChatChoice, ChatCompletionChunk, ChatCompletionResponse, ChunkChoice,
    ChunkDelta, CompletionChoice, CompletionChunk, CompletionResponse, ErrorBody,
    PromptTokensDetails, TEXT_COMPLETION_OBJECT, Usage,
};
use protocol::sse;
use serde::Serialize;
use serde_json::Map;

use super::request::Api;
use crate::engine::{Finish, Generation};

/// `system_fingerprint` of every answer: names the backend, as OpenAI's names a configuration.
pub(crate) const FINGERPRINT: &str = "fp_tokenpace_local";

/// OpenAI's `finish_reason` for how generation ended (a cancelled job never reaches a client).
pub(crate) fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Length => "length",
        Finish::Stop | Finish::Cancelled => "stop",
    }
}

/// The engine's exact counts as OpenAI's `usage`.
pub(crate) fn usage(g: &Generation) -> Usage {
    Usage {
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: Some(u64::from(g.cached_tokens)),
            ..PromptTokensDetails::default()
        }),
        ..Usage::new(u64::from(g.prompt_tokens), u64::from(g.completion_tokens))
    }
}

/// Identity shared by every chunk of one answer.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// Which endpoint.
    pub api: Api,
    /// `chatcmpl-...` or `cmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model's name.
    pub model: String,
}

/// The non-streamed answer's JSON body.
pub(crate) fn response(head: &Head, g: &Generation) -> String {
    match head.api {
        Api::Chat => {
            let mut message = AssistantMessage::new(g.text.clone());
            message
                .extra
                .insert("annotations".into(), serde_json::Value::Array(vec![]));
            let mut resp = ChatCompletionResponse::new(
                head.id.clone(),
                head.created,
                head.model.clone(),
                vec![ChatChoice {
                    index: 0,
                    message,
                    logprobs: None,
                    finish_reason: Some(finish_reason(g.finish).into()),
                }],
            );
            resp.usage = Some(usage(g));
            resp.system_fingerprint = Some(FINGERPRINT.into());
            to_json(&resp)
        }
        Api::Completion => to_json(&CompletionResponse {
            id: head.id.clone(),
            object: TEXT_COMPLETION_OBJECT.into(),
            created: head.created,
            model: head.model.clone(),
            choices: vec![CompletionChoice {
                text: g.text.clone(),
                index: 0,
                logprobs: None,
                finish_reason: Some(finish_reason(g.finish).into()),
            }],
            usage: Some(usage(g)),
            system_fingerprint: Some(FINGERPRINT.into()),
            extra: Map::new(),
        }),
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // These types serialize infallibly (string keys, finite numbers); an empty object is the
    // harmless fallback the compiler needs.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

/// Writes the SSE events of one streamed answer.
#[derive(Debug, Clone)]
pub(crate) struct StreamWriter {
    head: Head,
    include_usage: bool,
}

impl StreamWriter {
    /// A writer for one stream.
    pub(crate) fn new(head: Head, include_usage: bool) -> Self {
        StreamWriter {
            head,
            include_usage,
        }
    }

    /// `usage: null` on every chunk before the usage chunk when usage was asked for.
    fn null_usage(&self) -> Option<Option<Usage>> {
        self.include_usage.then_some(None)
    }

    fn chat(&self, delta: ChunkDelta, finish: Option<Finish>) -> Bytes {
        let mut chunk = ChatCompletionChunk::new(
            self.head.id.clone(),
            self.head.created,
            self.head.model.clone(),
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish.map(|f| finish_reason(f).into()),
            }],
        );
        chunk.system_fingerprint = Some(FINGERPRINT.into());
        chunk.usage = self.null_usage();
        sse::encode_data(&to_json(&chunk))
    }

    fn completion(&self, text: &str, finish: Option<Finish>) -> Bytes {
        let chunk = CompletionChunk {
            id: self.head.id.clone(),
            object: TEXT_COMPLETION_OBJECT.into(),
            created: self.head.created,
            model: self.head.model.clone(),
            choices: vec![CompletionChoice {
                text: text.to_owned(),
                index: 0,
                logprobs: None,
                finish_reason: finish.map(|f| finish_reason(f).into()),
            }],
            usage: self.null_usage(),
            system_fingerprint: Some(FINGERPRINT.into()),
            extra: Map::new(),
        };
        sse::encode_data(&to_json(&chunk))
    }

    /// The first event: the chat role chunk `{"role":"assistant","content":"","refusal":null}`
    /// (legacy completions have none).
    pub(crate) fn open(&self) -> Option<Bytes> {
        match self.head.api {
            Api::Chat => {
                let mut delta = ChunkDelta::assistant_role();
                delta.refusal = Some(None);
                Some(self.chat(delta, None))
            }
            Api::Completion => None,
        }
    }

    /// One content chunk carrying `text`.
    pub(crate) fn text(&self, text: &str) -> Bytes {
        match self.head.api {
            Api::Chat => self.chat(ChunkDelta::with_content(text), None),
            Api::Completion => self.completion(text, None),
        }
    }

    /// The finish chunk, the usage chunk when asked for, and `data: [DONE]`.
    pub(crate) fn close(&self, g: &Generation) -> Bytes {
        let mut out = Vec::with_capacity(1024);
        match self.head.api {
            Api::Chat => {
                out.extend_from_slice(&self.chat(ChunkDelta::default(), Some(g.finish)));
                if self.include_usage {
                    let mut chunk = ChatCompletionChunk::new(
                        self.head.id.clone(),
                        self.head.created,
                        self.head.model.clone(),
                        vec![],
                    );
                    chunk.system_fingerprint = Some(FINGERPRINT.into());
                    chunk.usage = Some(Some(usage(g)));
                    out.extend_from_slice(&sse::encode_data(&to_json(&chunk)));
                }
            }
            Api::Completion => {
                out.extend_from_slice(&self.completion("", Some(g.finish)));
                if self.include_usage {
                    let chunk = CompletionChunk {
                        id: self.head.id.clone(),
                        object: TEXT_COMPLETION_OBJECT.into(),
                        created: self.head.created,
                        model: self.head.model.clone(),
                        choices: vec![],
                        usage: Some(Some(usage(g))),
                        system_fingerprint: Some(FINGERPRINT.into()),
                        extra: Map::new(),
                    };
                    out.extend_from_slice(&sse::encode_data(&to_json(&chunk)));
                }
            }
        }
        out.extend_from_slice(&sse::encode_done());
        Bytes::from(out)
    }

    /// An in-band error event: the `200` went out already, so a failure after it is told as
    /// `data: {"error": ...}` and the stream ends (api-formats §1.5.6).
    pub(crate) fn error(&self, body: &ErrorBody) -> Bytes {
        sse::encode_data(&to_json(body))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protocol::openai::StreamData;
    use protocol::sse::SseDecoder;

    use super::*;

    fn generation(finish: Finish) -> Generation {
        Generation {
            prompt_tokens: 7,
            cached_tokens: 2,
            completion_tokens: 3,
            finish,
            text: "Hi there".into(),
            prefill: Duration::from_millis(5),
            decode: Duration::from_millis(9),
        }
    }

    fn head(api: Api) -> Head {
        Head {
            api,
            id: "chatcmpl-x".into(),
            created: 5,
            model: "smollm2".into(),
        }
    }

    fn events(bytes: &[u8]) -> Vec<String> {
        let mut d = SseDecoder::default();
        d.push(bytes).unwrap().into_iter().map(|e| e.data).collect()
    }

    #[test]
    fn chat_stream_has_openai_sequence_with_usage() {
        let w = StreamWriter::new(head(Api::Chat), true);
        let mut bytes = w.open().unwrap().to_vec();
        bytes.extend_from_slice(&w.text("Hi"));
        bytes.extend_from_slice(&w.close(&generation(Finish::Length)));
        let data = events(&bytes);
        assert_eq!(data.len(), 5, "{data:?}");
        assert_eq!(
            data[0],
            r#"{"id":"chatcmpl-x","object":"chat.completion.chunk","created":5,"model":"smollm2","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"system_fingerprint":"fp_tokenpace_local"}"#
        );
        let chunks: Vec<ChatCompletionChunk> = data[..4]
            .iter()
            .map(|d| match StreamData::parse(d).unwrap() {
                StreamData::Item(c) => c,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(chunks[1].choices[0].delta.content_str(), Some("Hi"));
        assert_eq!(
            chunks[2].choices[0].finish_reason.as_deref(),
            Some("length")
        );
        assert_eq!(chunks[2].choices[0].delta, ChunkDelta::default());
        assert!(chunks[3].choices.is_empty());
        let u = chunks[3].reported_usage().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (7, 3, 10)
        );
        assert_eq!(u.cached_tokens(), 2);
        assert!(chunks[..3].iter().all(|c| c.usage == Some(None)));
        assert_eq!(data[4], "[DONE]");
    }

    #[test]
    fn completion_stream_without_usage_has_no_usage_key() {
        let w = StreamWriter::new(head(Api::Completion), false);
        assert!(w.open().is_none());
        let mut bytes = w.text("abc").to_vec();
        bytes.extend_from_slice(&w.close(&generation(Finish::Stop)));
        let data = events(&bytes);
        assert_eq!(data.len(), 3);
        assert!(!data[0].contains("usage"), "{}", data[0]);
        assert!(data[1].contains(r#""text":"","index":0,"logprobs":null,"finish_reason":"stop""#));
        assert_eq!(data[2], "[DONE]");
    }

    #[test]
    fn non_streamed_bodies_have_openai_shape() {
        let chat: serde_json::Value =
            serde_json::from_str(&response(&head(Api::Chat), &generation(Finish::Stop))).unwrap();
        assert_eq!(chat["object"], "chat.completion");
        assert_eq!(chat["choices"][0]["message"]["content"], "Hi there");
        assert_eq!(
            chat["choices"][0]["message"]["refusal"],
            serde_json::Value::Null
        );
        assert_eq!(chat["choices"][0]["logprobs"], serde_json::Value::Null);
        assert_eq!(chat["usage"]["total_tokens"], 10);
        assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
        assert_eq!(chat["system_fingerprint"], FINGERPRINT);
        let text: serde_json::Value = serde_json::from_str(&response(
            &head(Api::Completion),
            &generation(Finish::Length),
        ))
        .unwrap();
        assert_eq!(text["object"], "text_completion");
        assert_eq!(text["choices"][0]["text"], "Hi there");
        assert_eq!(text["choices"][0]["finish_reason"], "length");
    }
}

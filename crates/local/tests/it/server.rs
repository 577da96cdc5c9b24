//! `serve-local` over real loopback sockets with the real SmolLM2 model: OpenAI's shapes,
//! exact usage, determinism, stops, every refusal, the queue and its timing, disconnects,
//! overload and shutdown.
//!
//! These tests need the model (`tokenpace model pull smollm2`); without it they print
//! "skipped: ..." and pass, unless TOKENPACE_REQUIRE_MODEL=1 (scripts/test.sh sets it after
//! pulling) makes a missing model a failure.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::openai::{ChatCompletionChunk, CompletionChunk, StreamData, Usage};
use serde_json::{Value, json};
use tokenpace_local::catalog::{self, ResolvedModel};
use tokenpace_local::engine::{Engine, LoadOptions, Model, Prompter, default_threads};
use tokenpace_local::server::{LocalServer, RunningLocal, SHUTDOWN_GRACE, ServeOptions};

/// The installed model `name`; `None` (after saying "skipped") if it is not installed, unless
/// the environment variable `require` is 1, which turns a missing model into a failure.
pub fn installed(name: &str, require: &str) -> Option<ResolvedModel> {
    match catalog::resolve(name, None) {
        Ok(model) => Some(model),
        Err(e) => {
            assert!(
                std::env::var(require).as_deref() != Ok("1"),
                "{require}=1 but {name} cannot be used: {e}"
            );
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// SmolLM2 if installed (TOKENPACE_REQUIRE_MODEL=1 makes its absence a failure).
pub fn smollm2() -> Option<ResolvedModel> {
    installed("smollm2", "TOKENPACE_REQUIRE_MODEL")
}

fn load(resolved: &ResolvedModel) -> Model {
    Model::load(
        &resolved.engine_path,
        &resolved.name,
        &LoadOptions {
            engine: Engine::Candle,
            threads: default_threads(),
            expected_sha256: resolved.expected_sha256.clone(),
            prefix_reuse: false,
        },
    )
    .unwrap()
}

/// Sends `head` over a new connection to the server at `url` and returns all it answers.
async fn raw_http(url: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

fn loopback() -> ServeOptions {
    ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        queue_limit: 64,
    }
}

/// One server per test process for the tests that do not time the queue (nextest runs each
/// test in a process of its own; `cargo test` shares it).
struct Shared {
    url: String,
    prompter: Arc<Prompter>,
}

fn shared() -> Option<&'static Shared> {
    static SHARED: OnceLock<Option<Shared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let model = load(&smollm2()?);
            let prompter = model.prompter();
            let (tx, rx) = std::sync::mpsc::channel();
            // Its own runtime on its own thread: each test's runtime ends with the test.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let server = LocalServer::bind(model, loopback()).await.unwrap();
                    tx.send(server.url()).unwrap();
                    server.serve_until(std::future::pending()).await.unwrap();
                });
            });
            Some(Shared {
                url: rx.recv().unwrap(),
                prompter,
            })
        })
        .as_ref()
}

/// A server of this test's own (for queue timing, overload and shutdown).
async fn own(queue_limit: usize) -> Option<RunningLocal> {
    let resolved = smollm2()?;
    let model = tokio::task::spawn_blocking(move || load(&resolved))
        .await
        .unwrap();
    let opts = ServeOptions {
        queue_limit,
        ..loopback()
    };
    Some(LocalServer::spawn(model, opts).await.unwrap())
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(url: &str, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post_json(url: &str, path: &str, body: &Value) -> (reqwest::StatusCode, Value) {
    let resp = post(url, path, body).await;
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": "smollm2", "messages": [{"role": "user", "content": content}]});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    body
}

fn usage_of(v: &Value) -> Usage {
    serde_json::from_value(v["usage"].clone()).unwrap()
}

/// `(queue, prefill, decode)` in milliseconds from a `server-timing` header.
fn timings(resp: &reqwest::Response) -> (f64, Option<f64>, Option<f64>) {
    let header = resp
        .headers()
        .get("server-timing")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let metric = |name: &str| {
        header.split(',').find_map(|m| {
            let mut parts = m.split(';').map(str::trim);
            (parts.next()? == name)
                .then(|| parts.find_map(|p| p.strip_prefix("dur=")?.parse::<f64>().ok()))
                .flatten()
        })
    };
    (
        metric("queue").unwrap(),
        metric("prefill"),
        metric("decode"),
    )
}

async fn chunks_of<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    resp: reqwest::Response,
) -> (Vec<T>, bool) {
    let stream = testkit::read_sse(resp).await.unwrap();
    assert!(
        stream.transport_error.is_none(),
        "{:?}",
        stream.transport_error
    );
    let mut items = Vec::new();
    let mut done = false;
    for data in stream.data() {
        match StreamData::<T>::parse(data).unwrap() {
            StreamData::Item(c) => {
                assert!(!done, "an event after [DONE]");
                items.push(c);
            }
            StreamData::Error(e) => panic!("error event: {e:?}"),
            StreamData::Done => done = true,
        }
    }
    (items, done)
}

fn with_model<F: Future<Output = ()>>(test: impl FnOnce(&'static Shared) -> F) -> Option<F> {
    shared().map(test)
}

#[tokio::test]
async fn chat_stream_has_openai_chunk_sequence_and_the_exact_usage() {
    let Some(test) = with_model(|s| async move {
        let ask = |extra: Value| chat("Tell me about the sea.", extra);
        let (status, plain) = post_json(
            &s.url,
            "/v1/chat/completions",
            &ask(json!({"temperature": 0, "max_tokens": 8})),
        )
        .await;
        assert_eq!(status, 200, "{plain}");
        assert_eq!(plain["object"], "chat.completion");
        assert!(plain["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(plain["model"], "smollm2");
        assert!(
            plain["system_fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("fp_")
        );
        let choice = &plain["choices"][0];
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["logprobs"], Value::Null);
        assert_eq!(choice["finish_reason"], "length");
        let usage = usage_of(&plain);
        assert_eq!(
            usage.completion_tokens, 8,
            "finish length means max_tokens tokens"
        );
        assert_eq!(usage.total_tokens, usage.prompt_tokens + 8);
        assert_eq!(
            usage.prompt_tokens_details.as_ref().unwrap().cached_tokens,
            Some(0)
        );

        let resp = post(
            &s.url,
            "/v1/chat/completions",
            &ask(json!({"temperature": 0, "max_tokens": 8, "stream": true,
                "stream_options": {"include_usage": true}})),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let (chunks, done) = chunks_of::<ChatCompletionChunk>(resp).await;
        assert!(done, "the stream ends with [DONE]");
        assert!(chunks.len() >= 4, "{chunks:?}");
        let id = &chunks[0].id;
        assert!(
            chunks
                .iter()
                .all(|c| &c.id == id && c.object == "chat.completion.chunk")
        );
        assert!(
            chunks
                .iter()
                .all(|c| c.created == chunks[0].created && c.model == "smollm2")
        );
        // The role chunk: {"role":"assistant","content":""}.
        let first = &chunks[0].choices[0];
        assert_eq!(first.delta.role.as_deref(), Some("assistant"));
        assert_eq!(first.delta.content_str(), Some(""));
        assert_eq!(first.finish_reason, None);
        let (usage_chunk, rest) = chunks.split_last().unwrap();
        let (finish_chunk, content) = rest.split_last().unwrap();
        // Content chunks: text only, no finish reason, usage null.
        for c in &content[1..] {
            assert_eq!(c.choices.len(), 1);
            assert!(
                c.choices[0]
                    .delta
                    .content_str()
                    .is_some_and(|t| !t.is_empty()),
                "{c:?}"
            );
            assert_eq!(c.choices[0].delta.role, None);
            assert_eq!(c.choices[0].finish_reason, None);
        }
        assert!(
            rest.iter().all(|c| c.usage == Some(None)),
            "usage: null before the end"
        );
        assert_eq!(
            finish_chunk.choices[0].finish_reason.as_deref(),
            Some("length")
        );
        assert_eq!(
            finish_chunk.choices[0].delta,
            Default::default(),
            "empty delta"
        );
        assert!(usage_chunk.choices.is_empty());
        assert_eq!(
            usage_chunk.reported_usage(),
            Some(&usage),
            "the same exact usage"
        );
        let text: String = content
            .iter()
            .filter_map(|c| c.choices[0].delta.content_str())
            .collect();
        assert_eq!(text, choice["message"]["content"].as_str().unwrap());

        // Without include_usage: no usage key at all.
        let resp = post(
            &s.url,
            "/v1/chat/completions",
            &ask(json!({"temperature": 0, "max_tokens": 2, "stream": true})),
        )
        .await;
        let raw = testkit::read_sse(resp).await.unwrap();
        assert!(
            raw.data().iter().all(|d| !d.contains("usage")),
            "{:?}",
            raw.data()
        );
        assert_eq!(raw.data().last(), Some(&"[DONE]"));
    }) else {
        return;
    };
    test.await;
}

#[tokio::test]
async fn greedy_is_deterministic_and_seeded_sampling_repeats_per_seed() {
    let Some(test) = with_model(|s| async move {
        let text = |extra: Value| async move {
            let (status, v) = post_json(
                &s.url,
                "/v1/chat/completions",
                &chat("Name a colour and a fruit.", extra),
            )
            .await;
            assert_eq!(status, 200, "{v}");
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let greedy = json!({"temperature": 0, "max_tokens": 6});
        assert_eq!(text(greedy.clone()).await, text(greedy).await);

        let seeded = |seed: i64| json!({"temperature": 1.0, "max_tokens": 6, "seed": seed});
        let a = text(seeded(42)).await;
        assert_eq!(a, text(seeded(42)).await, "same seed, same text");
        let mut others = Vec::new();
        for seed in [1, 2, 3, 4] {
            others.push(text(seeded(seed)).await);
        }
        assert!(
            others.iter().any(|o| o != &a),
            "different seeds give different texts: {a:?} vs {others:?}"
        );
    }) else {
        return;
    };
    test.await;
}

#[tokio::test]
async fn stop_sequences_cut_the_text_and_finish_with_stop() {
    let Some(test) = with_model(|s| async move {
        let ask = |extra: Value| chat("Write a sentence about cats.", extra);
        let (_, full) = post_json(
            &s.url,
            "/v1/chat/completions",
            &ask(json!({"temperature": 0, "max_tokens": 24})),
        )
        .await;
        let full = full["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        // A stop sequence from the middle of the greedy answer: the same answer, cut before
        // the stop's first occurrence.
        let chars: Vec<(usize, char)> = full.char_indices().collect();
        assert!(chars.len() > 8, "{full:?}");
        let (at, _) = chars[chars.len() / 2];
        let stop: String = full[at..].chars().take(3).collect();
        let cut = &full[..full.find(&stop).unwrap()];
        for stream in [false, true] {
            let body = ask(
                json!({"temperature": 0, "max_tokens": 24, "stop": ["@@never@@", stop],
                "stream": stream}),
            );
            let resp = post(&s.url, "/v1/chat/completions", &body).await;
            let (text, finish) = if stream {
                let (chunks, _) = chunks_of::<ChatCompletionChunk>(resp).await;
                let text: String = chunks
                    .iter()
                    .filter_map(|c| c.choices[0].delta.content_str())
                    .collect();
                let finish = chunks.last().unwrap().choices[0].finish_reason.clone();
                (text, finish.unwrap())
            } else {
                let v: Value = resp.json().await.unwrap();
                (
                    v["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    v["choices"][0]["finish_reason"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            };
            assert_eq!(text, cut, "stop {stop:?} in {full:?}");
            assert_eq!(finish, "stop");
        }
    }) else {
        return;
    };
    test.await;
}

#[tokio::test]
async fn completions_take_text_and_token_id_prompts() {
    let Some(test) = with_model(|s| async move {
        let prompt = "The capital of France is";
        let ids = s.prompter.text_prompt(prompt);
        let mut texts = Vec::new();
        for p in [json!(prompt), json!([prompt]), json!(ids), json!([ids])] {
            let (status, v) = post_json(
                &s.url,
                "/v1/completions",
                &json!({"model": "local:smollm2", "prompt": p, "temperature": 0, "max_tokens": 5}),
            )
            .await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["object"], "text_completion");
            assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
            assert_eq!(v["choices"][0]["logprobs"], Value::Null);
            let usage = usage_of(&v);
            assert_eq!(usage.prompt_tokens, ids.len() as u64, "{v}");
            texts.push(v["choices"][0]["text"].as_str().unwrap().to_owned());
        }
        assert!(texts.iter().all(|t| t == &texts[0]), "{texts:?}");

        // OpenAI's default for completions is 16 tokens.
        let (_, v) = post_json(
            &s.url,
            "/v1/completions",
            &json!({"model": "smollm2", "prompt": "1, 2, 3, 4,", "temperature": 0}),
        )
        .await;
        assert_eq!(usage_of(&v).completion_tokens, 16, "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "length");

        let resp = post(
            &s.url,
            "/v1/completions",
            &json!({"model": "smollm2", "prompt": prompt, "temperature": 0, "max_tokens": 5,
                "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
        let (chunks, done) = chunks_of::<CompletionChunk>(resp).await;
        assert!(done);
        let (usage_chunk, rest) = chunks.split_last().unwrap();
        assert!(usage_chunk.choices.is_empty());
        assert_eq!(usage_chunk.reported_usage().unwrap().completion_tokens, 5);
        assert!(
            rest.iter()
                .all(|c| c.object == "text_completion" && c.usage == Some(None))
        );
        let finish = rest.last().unwrap();
        assert_eq!(finish.choices[0].text, "");
        assert_eq!(finish.choices[0].finish_reason.as_deref(), Some("length"));
        let text: String = rest.iter().map(|c| c.choices[0].text.as_str()).collect();
        assert_eq!(text, texts[0]);
    }) else {
        return;
    };
    test.await;
}

#[tokio::test]
async fn models_and_health_answer() {
    let Some(test) = with_model(|s| async move {
        let get = |path: &'static str| async move {
            let resp = client()
                .get(format!("{}{path}", s.url))
                .send()
                .await
                .unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        };
        let (status, list) = get("/v1/models").await;
        assert_eq!(status, 200);
        assert_eq!(list["object"], "list");
        let data = list["data"].as_array().unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0]["id"], "smollm2");
        assert_eq!(data[0]["object"], "model");
        assert!(data[0]["created"].as_u64().unwrap() > 1_700_000_000);
        assert_eq!(data[0]["owned_by"], "tokenpace-local");
        for path in ["/v1/models/smollm2", "/v1/models/local:smollm2"] {
            let (status, m) = get(path).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(m["id"], "smollm2");
        }
        let (status, e) = get("/v1/models/gpt-4o").await;
        assert_eq!(status, 404);
        assert_eq!(e["error"]["code"], "model_not_found");
        let (status, h) = get("/health").await;
        assert_eq!(status, 200);
        assert_eq!(h["status"], "ok");
        assert_eq!(h["model"], "smollm2");
        assert!(h["context_length"].as_u64().unwrap() >= 2048);
    }) else {
        return;
    };
    test.await;
}

#[tokio::test]
async fn bad_requests_get_openai_errors_that_name_the_field() {
    let Some(test) = with_model(|s| async move {
        let check = |path: &'static str,
                     body: Value,
                     status: u16,
                     param: Option<&'static str>,
                     code: Option<&'static str>,
                     says: &'static str| async move {
            let (got, v) = post_json(&s.url, path, &body).await;
            let e = &v["error"];
            assert_eq!(got.as_u16(), status, "{body} -> {v}");
            let kind = if status < 500 {
                "invalid_request_error"
            } else {
                "server_error"
            };
            assert_eq!(e["type"], kind, "{v}");
            assert_eq!(e["param"].as_str(), param, "{body} -> {v}");
            assert_eq!(e["code"].as_str(), code, "{body} -> {v}");
            let message = e["message"].as_str().unwrap();
            assert!(message.contains(says), "{body} -> {message}");
        };
        let c = "/v1/chat/completions";
        let t = "/v1/completions";
        let m = |extra: Value| chat("Hi", extra);
        let u = Some("unsupported_parameter");

        // Malformed bodies.
        let (status, v) = {
            let resp = client()
                .post(format!("{}{c}", s.url))
                .header("content-type", "application/json")
                .body("{\"model\": \"smollm2\", \"messages\": [")
                .send()
                .await
                .unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        };
        assert_eq!(status, 400);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("JSON"),
            "{v}"
        );
        check(
            c,
            json!(["not", "an", "object"]),
            400,
            None,
            None,
            "JSON object",
        )
        .await;
        check(
            c,
            json!({"model": "smollm2"}),
            400,
            Some("messages"),
            None,
            "messages",
        )
        .await;
        check(
            c,
            m(json!({"max_tokens": "ten"})),
            400,
            Some("max_tokens"),
            None,
            "integer",
        )
        .await;
        check(
            c,
            m(json!({"temperature": "hot"})),
            400,
            Some("temperature"),
            None,
            "number",
        )
        .await;
        check(
            c,
            json!({"model": "smollm2", "messages": []}),
            400,
            Some("messages"),
            None,
            "empty",
        )
        .await;

        // The model.
        check(
            c,
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}),
            404,
            Some("model"),
            Some("model_not_found"),
            "smollm2",
        )
        .await;
        check(
            t,
            json!({"model": "local:other", "prompt": "x"}),
            404,
            Some("model"),
            Some("model_not_found"),
            "local:smollm2",
        )
        .await;

        // Out-of-range parameters.
        check(
            c,
            m(json!({"temperature": 2.5})),
            400,
            Some("temperature"),
            None,
            "[0, 2]",
        )
        .await;
        check(
            c,
            m(json!({"temperature": -0.1})),
            400,
            Some("temperature"),
            None,
            "[0, 2]",
        )
        .await;
        check(
            c,
            m(json!({"top_p": 0})),
            400,
            Some("top_p"),
            None,
            "(0, 1]",
        )
        .await;
        check(
            c,
            m(json!({"top_p": 1.5})),
            400,
            Some("top_p"),
            None,
            "(0, 1]",
        )
        .await;
        check(
            c,
            m(json!({"stop": ["a", "b", "c", "d", "e"]})),
            400,
            Some("stop"),
            None,
            "at most 4",
        )
        .await;
        check(
            c,
            m(json!({"max_tokens": 0})),
            400,
            Some("max_tokens"),
            None,
            "at least 1",
        )
        .await;
        check(
            c,
            m(json!({"max_completion_tokens": 0, "max_tokens": 5})),
            400,
            Some("max_completion_tokens"),
            None,
            "at least 1",
        )
        .await;
        check(c, m(json!({"n": 0})), 400, Some("n"), None, "at least 1").await;
        check(
            c,
            m(json!({"stream_options": {"include_usage": true}})),
            400,
            Some("stream_options"),
            None,
            "stream",
        )
        .await;

        // Unsupported features.
        check(c, m(json!({"n": 2})), 400, Some("n"), u, "one choice").await;
        check(
            c,
            m(json!({"logprobs": true})),
            400,
            Some("logprobs"),
            u,
            "log probabilities",
        )
        .await;
        check(
            c,
            m(json!({"top_logprobs": 3})),
            400,
            Some("top_logprobs"),
            u,
            "log probabilities",
        )
        .await;
        check(
            c,
            m(json!({"tools": [{"type": "function", "function": {"name": "f"}}]})),
            400,
            Some("tools"),
            u,
            "tools",
        )
        .await;
        check(
            c,
            m(json!({"functions": [{"name": "f"}]})),
            400,
            Some("functions"),
            u,
            "functions",
        )
        .await;
        check(
            c,
            m(json!({"tool_choice": "required"})),
            400,
            Some("tool_choice"),
            u,
            "tools",
        )
        .await;
        check(
            c,
            m(json!({"response_format": {"type": "json_object"}})),
            400,
            Some("response_format"),
            u,
            "json_object",
        )
        .await;
        check(
            c,
            m(json!({"logit_bias": {"42": 10}})),
            400,
            Some("logit_bias"),
            u,
            "biases",
        )
        .await;
        check(
            c,
            m(json!({"presence_penalty": 0.5})),
            400,
            Some("presence_penalty"),
            u,
            "penalties",
        )
        .await;
        check(
            c,
            json!({"model": "smollm2", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
            400,
            Some("messages[0].content"),
            u,
            "image_url",
        )
        .await;
        check(
            t,
            json!({"model": "smollm2", "prompt": "x", "echo": true}),
            400,
            Some("echo"),
            u,
            "echo",
        )
        .await;
        check(
            t,
            json!({"model": "smollm2", "prompt": "x", "suffix": "y"}),
            400,
            Some("suffix"),
            u,
            "suffix",
        )
        .await;
        check(
            t,
            json!({"model": "smollm2", "prompt": "x", "best_of": 2}),
            400,
            Some("best_of"),
            u,
            "best_of",
        )
        .await;
        check(
            t,
            json!({"model": "smollm2", "prompt": "x", "logprobs": 2}),
            400,
            Some("logprobs"),
            u,
            "log probabilities",
        )
        .await;
        check(
            t,
            json!({"model": "smollm2", "prompt": "x", "logit_bias": {"1": 5}}),
            400,
            Some("logit_bias"),
            u,
            "biases",
        )
        .await;
        check(
            t,
            json!({"model": "smollm2", "prompt": ["a", "b"]}),
            400,
            Some("prompt"),
            u,
            "one prompt",
        )
        .await;
        check(
            t,
            json!({"model": "smollm2", "prompt": ""}),
            400,
            Some("prompt"),
            None,
            "empty",
        )
        .await;
        check(
            t,
            json!({"model": "smollm2", "prompt": [99999999]}),
            400,
            Some("prompt"),
            None,
            "vocabulary",
        )
        .await;

        // Prompt plus max_tokens over the context.
        check(
            c,
            m(json!({"max_tokens": 1_000_000})),
            400,
            Some("messages"),
            Some("context_length_exceeded"),
            "maximum context length",
        )
        .await;
        check(
            t,
            json!({"model": "smollm2", "prompt": "x", "max_tokens": 1_000_000}),
            400,
            Some("prompt"),
            Some("context_length_exceeded"),
            "maximum context length",
        )
        .await;

        // Too large, unknown route, wrong method.
        // Announced only: the server answers 413 from the length alone and may close before a
        // body would be read, so a client still writing 4 MiB can get a broken pipe instead of
        // the answer. Raw HTTP sends the head and reads the reply.
        let reply = raw_http(
            &s.url,
            &format!(
                "POST {c} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                4 * 1024 * 1024 + 1
            ),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
        assert!(reply.contains("4 MiB"), "{reply}");
        let resp = client()
            .post(format!("{}/v1/embeddings", s.url))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let resp = client().get(format!("{}{c}", s.url)).send().await.unwrap();
        assert_eq!(resp.status(), 405);

        // After all that, the server still answers.
        let (status, _) = post_json(&s.url, c, &m(json!({"max_tokens": 1}))).await;
        assert_eq!(status, 200);
    }) else {
        return;
    };
    test.await;
}

#[tokio::test]
async fn the_second_of_two_concurrent_requests_reports_waiting_for_the_first() {
    let Some(server) = own(64).await else {
        return;
    };
    let url = server.url();
    let body = chat(
        "Write a long poem about mountains.",
        json!({"temperature": 0, "max_tokens": 24}),
    );
    let first = post(&url, "/v1/chat/completions", &body);
    let second = async {
        // Let the first reach the queue first.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let sent = Instant::now();
        let mut body = body.clone();
        body["stream"] = json!(true);
        let resp = post(&url, "/v1/chat/completions", &body).await;
        (sent.elapsed(), resp)
    };
    let (first, (head_after, second)) = tokio::join!(first, second);
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    let (q1, prefill, decode) = timings(&first);
    let processing = prefill.unwrap() + decode.unwrap();
    let (q2, p2, _) = timings(&second);
    assert_eq!(p2, None, "a streamed head carries only the queue wait");
    assert!(q1 < 25.0, "the first did not wait: {q1} ms");
    assert!(q2 > 0.0);
    // The second waited for the whole of the first (less the 30 ms head start).
    assert!(
        q2 > processing * 0.8 - 40.0 && q2 < processing + 250.0,
        "second waited {q2} ms, the first took {processing} ms"
    );
    // Its head went out only once its generation started.
    assert!(
        head_after.as_secs_f64() * 1000.0 >= q2,
        "head after {head_after:?}, queue {q2} ms"
    );
    let (_, done) = chunks_of::<ChatCompletionChunk>(second).await;
    assert!(done);
    eprintln!(
        "first: queue {q1:.1} ms, prefill {:.1} ms, decode {:.1} ms (24 tokens); second queued {q2:.1} ms",
        prefill.unwrap(),
        decode.unwrap()
    );
    server.stop().await;
}

/// A completion that goes on for thousands of tokens unless cancelled.
fn endless(stream: bool) -> Value {
    json!({"model": "smollm2", "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "temperature": 0,
        "max_tokens": 4000, "stream": stream})
}

/// Reads the stream until its first text piece; returns the response and the time it took.
async fn first_piece(resp: reqwest::Response) -> impl Sized {
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while let Some(bytes) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&bytes.unwrap()));
        if seen.contains("\"text\":") {
            break;
        }
    }
    body
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_frees_the_worker() {
    let Some(server) = own(64).await else {
        return;
    };
    let url = server.url();
    let resp = post(&url, "/v1/completions", &endless(true)).await;
    assert_eq!(resp.status(), 200);
    let body = first_piece(resp).await;
    drop(body);
    let started = Instant::now();
    let resp = post(
        &url,
        "/v1/completions",
        &json!({"model": "smollm2", "prompt": "Hello", "max_tokens": 2}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (queue, _, _) = timings(&resp);
    assert!(
        queue < 1000.0 && started.elapsed() < Duration::from_secs(5),
        "the abandoned 4000-token job was cancelled: the next one waited {queue} ms"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_503_overloaded_with_retry_after() {
    let Some(server) = own(0).await else {
        return;
    };
    let url = server.url();
    let resp = post(&url, "/v1/completions", &endless(true)).await;
    let running = first_piece(resp).await;
    let resp = post(
        &url,
        "/v1/completions",
        &json!({"model": "smollm2", "prompt": "Hi"}),
    )
    .await;
    assert_eq!(resp.status(), 503);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    assert_eq!(v["error"]["code"], "overloaded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--queue-limit"),
        "{v}"
    );
    drop(running);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_cancels_a_long_stream_after_the_grace_with_an_error_event() {
    let Some(server) = own(64).await else {
        return;
    };
    let url = server.url();
    let resp = post(&url, "/v1/completions", &endless(true)).await;
    let stream = tokio::spawn(testkit::read_sse(resp));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    server.stop().await;
    let took = stopping.elapsed();
    assert!(
        took >= SHUTDOWN_GRACE - Duration::from_millis(100)
            && took < SHUTDOWN_GRACE + Duration::from_secs(3),
        "stop took {took:?}"
    );
    let stream = stream.await.unwrap().unwrap();
    let last = stream
        .data()
        .last()
        .map(|d| d.to_string())
        .unwrap_or_default();
    match StreamData::<CompletionChunk>::parse(&last).unwrap() {
        StreamData::Error(e) => assert_eq!(e.code_str(), Some("shutting_down"), "{e:?}"),
        other => panic!("the cut stream ends with an error event, not {other:?}"),
    }
    // Nothing listens any more.
    assert!(client().get(format!("{url}/health")).send().await.is_err());
}

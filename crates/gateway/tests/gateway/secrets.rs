//! Keys stay where they belong: the upstream gets the upstream key from `api_key_env`
//! and never the client's gateway key; the upstream key shows up in no response (headers,
//! bodies, errors) and not in `/metrics`. A small mock upstream records what it received.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;
use serde_json::json;
use tokenpace_gateway::RunningGateway;

use super::support::*;

const UPSTREAM_KEY: &str = "sk-upstream-secret-7f3a";
const GATEWAY_KEY: &str = "gw-client-key-91bc";

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A mock OpenAI + Anthropic upstream that records each request's path and headers.
async fn mock_upstream() -> (String, Seen, tokio::task::JoinHandle<()>) {
    async fn record(State(seen): State<Seen>, req: Request) -> Response {
        let path = req.uri().path().to_owned();
        seen.lock()
            .unwrap()
            .push((path.clone(), req.headers().clone()));
        let body = if path.ends_with("/messages") {
            json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": "claude",
                "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
                "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}})
        } else {
            json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
        };
        axum::Json(body).into_response()
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(record))
        .route("/v1/messages", post(record))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, seen, task)
}

/// A gateway with gateway keys in front of the mock (`mock`) and a dead upstream (`down`),
/// both with the upstream key from the environment.
async fn gateway_with_keys(mock_url: &str) -> RunningGateway {
    let toml = format!(
        "[upstreams.mock]\nurl = \"{mock_url}\"\napi_key_env = \"TP_TEST_UPSTREAM_KEY\"\n\
         models = [\"m\", \"claude\"]\n\n\
         [upstreams.down]\nurl = \"http://127.0.0.1:{}\"\napi_key_env = \"TP_TEST_UPSTREAM_KEY\"\n\
         models = [\"d\"]\n\n\
         [cache]\nstore = \"memory\"\n\n\
         [[keys]]\ntenant = \"team\"\nkey_env = \"TP_TEST_GATEWAY_KEY\"\n",
        closed_port()
    );
    gateway(config_with_env(
        &toml,
        &[
            ("TP_TEST_UPSTREAM_KEY", UPSTREAM_KEY),
            ("TP_TEST_GATEWAY_KEY", GATEWAY_KEY),
        ],
    ))
    .await
}

/// Everything a client sees of a response, as text.
async fn visible(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let mut text = String::new();
    for (name, value) in resp.headers() {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push_str(&resp.text().await.unwrap());
    (status, text)
}

fn header_text(headers: &HeaderMap) -> String {
    headers
        .iter()
        .map(|(n, v)| format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_gets_its_own_key_and_never_the_clients() {
    let (url, seen, _task) = mock_upstream().await;
    let gw = gateway_with_keys(&url).await;
    let c = client();
    // Clients (SDKs) may send the key both ways.
    let both = [
        ("authorization", &*format!("Bearer {GATEWAY_KEY}")),
        ("x-api-key", GATEWAY_KEY),
    ];

    let r = post_chat(&c, &gw, &chat("m", false), &both).await;
    let (status, text) = visible(r).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("hello"));
    let r = post_with(
        &c,
        &gw,
        "/v1/messages",
        &messages("claude", false),
        &[
            ("x-api-key", GATEWAY_KEY),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await;
    let (status, text) = visible(r).await;
    assert_eq!(status, 200, "{text}");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (path, openai) = &seen[0];
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(
        openai.get("authorization").unwrap(),
        &format!("Bearer {UPSTREAM_KEY}")
    );
    assert!(openai.get("x-api-key").is_none(), "{openai:?}");
    let (path, anthropic) = &seen[1];
    assert_eq!(path, "/v1/messages");
    assert_eq!(anthropic.get("x-api-key").unwrap(), UPSTREAM_KEY);
    assert!(anthropic.get("authorization").is_none(), "{anthropic:?}");
    assert_eq!(anthropic.get("anthropic-version").unwrap(), "2023-06-01");
    for (path, headers) in &seen {
        let text = header_text(headers);
        assert!(
            !text.contains(GATEWAY_KEY),
            "{path} got the client's key:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_key_is_in_no_response_and_not_in_metrics() {
    let (url, _seen, _task) = mock_upstream().await;
    let gw = gateway_with_keys(&url).await;
    let c = client();
    let auth = [("authorization", &*format!("Bearer {GATEWAY_KEY}"))];
    let mut seen_statuses = Vec::new();
    let mut check = |(status, text): (u16, String), what: &str| {
        assert!(
            !text.contains(UPSTREAM_KEY),
            "{what} ({status}) shows the upstream key:\n{text}"
        );
        assert!(
            !text.contains(GATEWAY_KEY),
            "{what} ({status}) echoes the gateway key:\n{text}"
        );
        seen_statuses.push(status);
    };

    check(
        visible(post_chat(&c, &gw, &chat("m", false), &auth).await).await,
        "a miss",
    );
    check(
        visible(post_chat(&c, &gw, &chat("m", false), &auth).await).await,
        "a hit",
    );
    check(
        visible(post_chat(&c, &gw, &chat("m", true), &auth).await).await,
        "a stream",
    );
    check(
        visible(post_chat(&c, &gw, &chat("m", false), &[("x-api-key", "wrong")]).await).await,
        "a wrong key",
    );
    check(
        visible(post_chat(&c, &gw, &chat("nowhere", false), &auth).await).await,
        "an unrouted model",
    );
    check(
        visible(post_chat(&c, &gw, &chat("d", false), &auth).await).await,
        "an unreachable upstream",
    );
    check(
        visible(post_chat(&c, &gw, &chat("d", true), &auth).await).await,
        "an unreachable upstream, streamed",
    );
    for path in ["/metrics", "/health", "/v1/models"] {
        let r = c
            .get(format!("{}{path}", gw.url()))
            .header("x-api-key", GATEWAY_KEY)
            .send()
            .await
            .unwrap();
        check(visible(r).await, path);
    }
    assert_eq!(
        seen_statuses,
        vec![200, 200, 200, 401, 404, 502, 502, 200, 200, 200],
        "each case reached the state it checks"
    );
}

//! Shared set-up of the gateway tests: a simulator and a gateway on 127.0.0.1 port 0 (one
//! of each per test, so no two tests share a port, a cache file or a counter), request
//! bodies, and readers for what comes back (stream text, `/stats`, `/metrics`).

use std::sync::Arc;
use std::time::Duration;

use dispatch::Dispatcher;
use dispatch::config::{CacheStore, Config, RawConfig};
use serde_json::{Value, json};
use sim::config::SimConfig;
use sim::{RunningSim, Simulator};
use tokenpace_gateway::{AppState, RunningGateway};

/// A simulator on a free loopback port.
pub async fn sim() -> RunningSim {
    Simulator::new(SimConfig::default())
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Resolves a `gateway.toml`, reading variables from `env` only (never the process
/// environment). A test must never write the user's real cache: a SQLite store has to be
/// a temporary file.
pub fn config_with_env(toml: &str, env: &[(&str, &str)]) -> Config {
    let lookup = |var: &str| {
        env.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| (*v).to_owned())
    };
    let config = RawConfig::from_toml(toml)
        .unwrap_or_else(|e| panic!("test config does not parse: {e}\n{toml}"))
        .resolve(&lookup)
        .unwrap_or_else(|e| panic!("test config does not resolve: {e}\n{toml}"));
    if config.cache.enabled
        && let CacheStore::Sqlite(path) = &config.cache.store
    {
        assert!(
            path.starts_with(std::env::temp_dir()),
            "a test's SQLite cache must live in a temporary directory, not {}",
            path.display()
        );
    }
    // Files and batches are written on first use: a test that configures them must use
    // a temporary data directory (without `data_dir` no test touches the default one).
    if toml.contains("data_dir") {
        assert!(
            config.data_dir.starts_with(std::env::temp_dir()),
            "a test's data_dir must be a temporary directory, not {}",
            config.data_dir.display()
        );
    }
    config
}

/// [`config_with_env`] with an empty environment.
pub fn config(toml: &str) -> Config {
    config_with_env(toml, &[])
}

/// The router's state for `config` (no listener).
pub fn state(config: Config) -> Arc<AppState> {
    let (dispatcher, warnings) = Dispatcher::new(config).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    AppState::new(dispatcher)
}

/// A gateway serving `config` on a free loopback port.
pub async fn gateway(config: Config) -> RunningGateway {
    RunningGateway::spawn("127.0.0.1:0".parse().unwrap(), state(config))
        .await
        .unwrap()
}

/// The TOML of a gateway in front of `sim`: `top` holds top-level settings, `rest`
/// further tables (`[cache]`, `[[keys]]`, ...).
pub fn sim_toml(sim: &RunningSim, top: &str, rest: &str) -> String {
    format!(
        "{top}\n[upstreams.sim]\nurl = \"{}\"\n\n{rest}\n",
        sim.url()
    )
}

/// A gateway with an in-memory cache in front of `sim`.
pub async fn memory_gateway(sim: &RunningSim) -> RunningGateway {
    gateway(config(&sim_toml(sim, "", "[cache]\nstore = \"memory\"\n"))).await
}

/// Like [`memory_gateway`], without retries: for tests of what a single upstream
/// failure looks like to the client (retries are tested on their own).
pub async fn memory_gateway_no_retries(sim: &RunningSim) -> RunningGateway {
    gateway(config(&sim_toml(
        sim,
        "",
        "[cache]\nstore = \"memory\"\n\n[retry]\nmax_attempts = 1\n",
    )))
    .await
}

/// A client with a generous timeout (no test may hang).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A chat request body.
pub fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say something about latency."}],
        "stream": stream,
    })
}

/// An Anthropic Messages request body.
pub fn messages(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say something about latency."}],
        "stream": stream,
    })
}

/// POSTs `body` to `path` of the gateway with extra headers.
pub async fn post_with(
    client: &reqwest::Client,
    gw: &RunningGateway,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client.post(format!("{}{path}", gw.url())).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// POSTs a chat body.
pub async fn post_chat(
    client: &reqwest::Client,
    gw: &RunningGateway,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    post_with(client, gw, "/v1/chat/completions", body, headers).await
}

/// A response header as a string.
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `x-tokenpace-cache` of a response.
pub fn cache_status(resp: &reqwest::Response) -> String {
    header(resp, "x-tokenpace-cache").unwrap_or_else(|| "<none>".to_owned())
}

/// The simulator's `/stats`.
pub async fn sim_stats(sim: &RunningSim) -> Value {
    client()
        .get(format!("{}/stats", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Requests the simulator received for the exact model string `model`.
pub async fn upstream_requests(sim: &RunningSim, model: &str) -> u64 {
    sim_stats(sim).await["by_model"][model]["requests_total"]
        .as_u64()
        .unwrap_or(0)
}

/// The text of a chat completion or an Anthropic message (non-streamed).
pub fn body_text(body: &Value) -> String {
    if let Some(t) = body
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
    {
        return t.to_owned();
    }
    body["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"].as_str())
        .collect()
}

/// The text of a streamed chat completion or Anthropic message.
pub fn stream_text(stream: &testkit::Stream) -> String {
    stream
        .json()
        .iter()
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .or_else(|| v.pointer("/delta/text"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// The events of a stream that carry text (one token each from the simulator).
pub fn content_chunks(stream: &testkit::Stream) -> usize {
    stream
        .json()
        .iter()
        .filter(|v| {
            v.pointer("/choices/0/delta/content")
                .or_else(|| v.pointer("/delta/text"))
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty())
        })
        .count()
}

/// Whether a streamed chat response ended with `data: [DONE]`.
pub fn ends_with_done(stream: &testkit::Stream) -> bool {
    stream.transport_error.is_none() && stream.data().last() == Some(&"[DONE]")
}

/// The data of every OpenAI chunk with `choices: []` and a usage object.
pub fn usage_chunks(stream: &testkit::Stream) -> Vec<Value> {
    stream
        .json()
        .into_iter()
        .filter(|v| v["choices"].as_array().is_some_and(Vec::is_empty) && v["usage"].is_object())
        .collect()
}

/// The gateway's `/metrics` text.
pub async fn metrics(gw: &RunningGateway) -> String {
    let resp = client()
        .get(format!("{}/metrics", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The value of one series (`name` or `name{labels}`, exactly as rendered), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// Waits up to `within` for `check` to hold, polling every 20 ms.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

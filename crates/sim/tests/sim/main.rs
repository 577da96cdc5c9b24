//! Integration tests of the simulator through a real listener on 127.0.0.1:0 (one
//! simulator per test), with every response shape parsed back through `protocol`'s types.
//! One test binary for the crate; modules by what they exercise.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test loudly on any error"
)]

mod anthropic;
mod errors;
mod faults;
mod openai;
mod tiers;
mod timing;

use std::time::Duration;

use serde_json::{Value, json};
use tokenpace_sim as sim;

use sim::config::{RawSimArgs, SimConfig};
use sim::{RunningSim, Simulator};

/// Starts a simulator with `config` on a free loopback port.
pub async fn start(config: SimConfig) -> RunningSim {
    Simulator::new(config)
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A simulator with default settings.
pub async fn start_default() -> RunningSim {
    start(SimConfig::default()).await
}

/// A simulator with flags as `tokenpace sim` would pass them.
pub async fn start_with(args: RawSimArgs, file: Option<&str>) -> RunningSim {
    start(SimConfig::resolve(args, file.map(|f| ("test.toml", f))).unwrap()).await
}

/// A client with a generous timeout (no test may hang).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POSTs JSON.
pub async fn post(sim: &RunningSim, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", sim.url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// POSTs JSON with a Bearer key.
pub async fn post_key(sim: &RunningSim, path: &str, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", sim.url()))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// GETs /stats.
pub async fn stats(sim: &RunningSim) -> Value {
    client()
        .get(format!("{}/stats", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
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

/// A response header as a string.
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test]
async fn health_models_and_stats() {
    let sim = start_default().await;
    let health: Value = client()
        .get(format!("{}/health", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    let models: protocol::openai::ModelList = client()
        .get(format!("{}/v1/models", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
    for id in ["sim", "sim-mini", "sim-large"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    let one = client()
        .get(format!("{}/v1/models/sim-mini", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let missing = client()
        .get(format!("{}/v1/models/gpt-4o", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let resp = post(&sim, "/v1/chat/completions", &chat("sim:tokens=4", false)).await;
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await.unwrap();
    let s = stats(&sim).await;
    assert_eq!(s["requests_total"], 1);
    assert_eq!(s["responses_by_status"]["200"], 1);
    assert_eq!(s["by_model"]["sim:tokens=4"]["output_tokens_total"], 4);
    assert!(s["input_tokens_total"].as_u64().unwrap() > 0);
    assert_eq!(s["simulated"], true);
}

#[tokio::test]
async fn profiles_file_adds_models() {
    let file = "[profiles.tiny]\nbase = \"sim\"\nlength_mean = 3\n";
    let sim = start_with(RawSimArgs::default(), Some(file)).await;
    let resp = post(&sim, "/v1/chat/completions", &chat("tiny", false)).await;
    let body: protocol::openai::ChatCompletionResponse = resp.json().await.unwrap();
    assert_eq!(body.usage.unwrap().completion_tokens, 3);
    let models: Value = client()
        .get(format!("{}/v1/models", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "tiny")
    );
}

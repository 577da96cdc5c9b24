//! Shared setup: simulators, clients, endpoints, requests and raw servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::openai::ChatMessage;
use sim::config::RawSimArgs;
use sim::stats::Stats;
use sim::{RunningSim, SimConfig, Simulator};
use tokenpace_client::{
    Api, Client, ClientOptions, Endpoint, Ledger, PreparedRequest, RequestBuilder, Target,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A simulator with the default (unlimited) configuration.
pub async fn sim() -> RunningSim {
    sim_with(SimConfig::default()).await.0
}

/// A simulator with `config`, and its emit-time recorder.
pub async fn sim_with(config: SimConfig) -> (RunningSim, Arc<Stats>) {
    let simulator = Simulator::new(config).unwrap();
    let stats = simulator.stats();
    let running = simulator
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (running, stats)
}

/// A simulator whose default tier allows `rpm` requests per minute.
pub async fn sim_rpm(rpm: u64) -> RunningSim {
    let config = SimConfig::resolve(
        RawSimArgs {
            rpm: Some(rpm),
            ..RawSimArgs::default()
        },
        None,
    )
    .unwrap();
    sim_with(config).await.0
}

pub fn client() -> Client {
    Client::new(ClientOptions::default()).unwrap()
}

pub fn client_with_timeout(timeout: Duration) -> Client {
    Client::new(ClientOptions {
        timeout,
        ..ClientOptions::default()
    })
    .unwrap()
}

pub fn openai(url: &str) -> Endpoint {
    Target::new("sim", url, Api::OpenAi)
        .with_api_key("sk-test")
        .endpoint()
        .unwrap()
}

pub fn anthropic(url: &str) -> Endpoint {
    Target::new("sim-anthropic", url, Api::Anthropic)
        .with_api_key("sk-ant-test")
        .endpoint()
        .unwrap()
}

pub fn chat(
    endpoint: &Endpoint,
    model: &str,
    stream: bool,
    include_usage: bool,
) -> PreparedRequest {
    RequestBuilder::chat(
        endpoint,
        model,
        vec![ChatMessage::new("user", "Say something about latency.")],
    )
    .max_tokens(256)
    .stream(stream)
    .include_usage(include_usage)
    .build()
    .unwrap()
}

pub async fn send(client: &Client, req: &PreparedRequest) -> Ledger {
    client.send(req, Instant::now()).await
}

/// The error class label of a ledger, or "ok".
pub fn label(ledger: &Ledger) -> &'static str {
    match &ledger.outcome {
        Ok(_) => "ok",
        Err(e) => e.label(),
    }
}

/// A server that answers every connection with `response` (status line, headers and a
/// body delimited by closing the connection), after reading the request.
pub async fn raw_server(response: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                read_request(&mut socket).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Reads one request: headers, then `content-length` bytes of body.
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(socket: &mut S) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = socket.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= head_end + 4 + length {
            return;
        }
    }
}

/// An SSE response whose body is `events`, delimited by closing the connection.
pub fn sse_response(events: &[&str]) -> String {
    let mut body = String::new();
    for e in events {
        body.push_str(e);
        body.push_str("\n\n");
    }
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n{body}"
    )
}

/// A URL on which nothing listens (bound, then released).
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

//! Simulator fidelity and ceiling, printed as figures (not a timed test).
//!
//! `cargo bench -p tokenpace-sim --bench fidelity`
//!
//! 1. Fidelity: at 1 and at 256 concurrent streams of `sim:ttft=50ms,itl=10ms,tokens=64`,
//!    how far the simulator's recorded emit times (its `/stats`) are from what the profile
//!    prescribes, for the first token and for every later one. Target: p50 within 1 ms and
//!    p99 within 2 ms.
//! 2. Ceiling: with zero delays, how many streamed requests and SSE events per second the
//!    simulator serves on this machine (client in the same process, so this is a floor of
//!    the true ceiling), and non-streamed requests per second. Later benchmarks compare
//!    against these to tell when the simulator, not the system under test, is the limit.
//!
//! Environment: FIDELITY_ROUNDS (requests per stream at 256, default 2), CEILING_SECS
//! (default 3).

#![expect(
    clippy::expect_used,
    reason = "a benchmark fails loudly on any setup error"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokenpace_sim::config::SimConfig;
use tokenpace_sim::{RunningSim, Simulator};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn start() -> RunningSim {
    Simulator::new(SimConfig::default())
        .expect("simulator")
        .spawn("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("spawn")
}

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Measure me."}]})
}

/// Streams one request to its end; returns the number of SSE events (blank-line separated).
async fn stream_one(client: &reqwest::Client, url: &str, req: &Value) -> u64 {
    let resp = client.post(url).json(req).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let mut events = 0u64;
    let mut body = resp.bytes_stream();
    let mut tail = [0u8; 1];
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("body");
        // Count "\n\n" boundaries, including one split across chunks.
        let mut prev = tail[0];
        for &b in chunk.iter() {
            if b == b'\n' && prev == b'\n' {
                events += 1;
            }
            prev = b;
        }
        tail[0] = prev;
    }
    events
}

async fn fidelity(concurrency: usize, rounds: usize) {
    let sim = start().await;
    let url = format!("{}/v1/chat/completions", sim.url());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("client");
    let req = body("sim:ttft=50ms,itl=10ms,tokens=64", true);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..concurrency {
        let (client, url, req) = (client.clone(), url.clone(), req.clone());
        // Streams start spread over one inter-token interval (10 ms), as independent users
        // do; phase-locked streams would measure the cost of 256 writes in one instant.
        let offset = Duration::from_micros(10_000 * i as u64 / concurrency as u64);
        tasks.spawn(async move {
            tokio::time::sleep(offset).await;
            for _ in 0..rounds {
                stream_one(&client, &url, &req).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let wall = started.elapsed();
    let stats: Value = client
        .get(format!("{}/stats", sim.url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    let e = &stats["emit"];
    let f = |k: &str, p: &str| e[k][p].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:>11} {:>9} {:>8.1}s {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
        concurrency,
        e["ttft"]["count"],
        wall.as_secs_f64(),
        f("ttft_error", "p50_ms"),
        f("ttft_error", "p99_ms"),
        f("gap_error", "p50_ms"),
        f("gap_error", "p99_ms"),
        f("ttft", "p50_ms"),
        f("gap", "p50_ms"),
    );
    sim.stop().await;
}

async fn ceiling(stream: bool, concurrency: usize, secs: u64) -> (f64, f64) {
    let sim = start().await;
    let url = format!("{}/v1/chat/completions", sim.url());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("client");
    let req = body("sim:tokens=64", stream);
    let requests = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, req) = (client.clone(), url.clone(), req.clone());
        let (requests, events) = (requests.clone(), events.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                if stream {
                    let n = stream_one(&client, &url, &req).await;
                    events.fetch_add(n, Ordering::Relaxed);
                } else {
                    let resp = client.post(&url).json(&req).send().await.expect("send");
                    let _ = resp.bytes().await.expect("body");
                }
                requests.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let wall = started.elapsed().as_secs_f64();
    sim.stop().await;
    (
        requests.load(Ordering::Relaxed) as f64 / wall,
        events.load(Ordering::Relaxed) as f64 / wall,
    )
}

/// Lateness of the precise timer alone (one task sleeping 10 ms steps), to tell timer and
/// scheduler noise from the server's own cost.
async fn timer_alone(steps: u32) {
    let timer = tokenpace_sim::timer::PreciseTimer::start().expect("timer");
    let mut late = Vec::with_capacity(steps as usize);
    let mut due = Instant::now();
    for _ in 0..steps {
        due += Duration::from_millis(10);
        timer.sleep_until(due).await;
        late.push(Instant::now().saturating_duration_since(due));
    }
    late.sort();
    let q = |p: f64| late[((late.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "  timer alone, {steps} sleeps of 10 ms: lateness p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rounds = env_u64("FIDELITY_ROUNDS", 2) as usize;
    let secs = env_u64("CEILING_SECS", 3);
    runtime.block_on(async {
        println!("simulator fidelity: sim:ttft=50ms,itl=10ms,tokens=64, streamed; emit times from the simulator's /stats");
        println!("target: |emit - prescribed| p50 <= 1 ms, p99 <= 2 ms");
        println!(
            "{:>11} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "concurrency", "requests", "wall", "ttft_e p50", "ttft_e p99", "gap_e p50", "gap_e p99", "ttft p50", "gap p50"
        );
        fidelity(1, 15).await;
        fidelity(16, 16).await;
        fidelity(256, rounds).await;
        timer_alone(300).await;
        println!();
        println!("simulator ceiling, zero delays (sim:tokens=64; load generator in the same process, 2 cores shared)");
        let (rps, eps) = ceiling(true, 32, secs).await;
        println!("  streamed, concurrency 32:     {rps:>9.0} requests/s  {eps:>10.0} SSE events/s");
        let (rps, _) = ceiling(false, 32, secs).await;
        println!("  non-streamed, concurrency 32: {rps:>9.0} requests/s");
    });
}

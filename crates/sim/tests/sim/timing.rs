//! The latency model as a client sees it: TTFT, decode gaps, queueing. Bounds are generous
//! on the slow side (a busy 2-core machine); the fast side is exact, since the simulator
//! never emits before the prescribed time.

use std::time::{Duration, Instant};

use super::*;

fn content_times(stream: &testkit::Stream) -> Vec<Instant> {
    stream
        .events
        .iter()
        .filter(|e| e.event.data.contains("\"delta\":{\"content\":\""))
        .map(|e| e.at)
        .collect()
}

#[tokio::test]
async fn ttft_and_itl_follow_the_model_name() {
    let sim = start_default().await;
    let start = Instant::now();
    let resp = post(
        &sim,
        "/v1/chat/completions",
        &chat("sim:ttft=120ms,itl=30ms,tokens=5", true),
    )
    .await;
    let stream = testkit::read_sse(resp).await.unwrap();
    let times = content_times(&stream);
    assert_eq!(times.len(), 5);
    let ttft = times[0] - start;
    assert!(ttft >= Duration::from_millis(120), "{ttft:?}");
    assert!(ttft < Duration::from_millis(1500), "{ttft:?}");
    let decode = times[4] - times[0];
    assert!(decode >= Duration::from_millis(4 * 30 - 25), "{decode:?}");
    assert!(decode < Duration::from_millis(4 * 30 + 1000), "{decode:?}");
    let s = stats(&sim).await;
    assert_eq!(s["emit"]["ttft"]["count"], 1);
    assert_eq!(s["emit"]["gap"]["count"], 4);
    assert!(s["emit"]["ttft"]["p50_ms"].as_f64().unwrap() >= 119.9);
}

#[tokio::test]
async fn prefill_grows_with_input_and_large_is_slower() {
    let sim = start_default().await;
    let mut times = Vec::new();
    for model in ["sim-mini", "sim-large"] {
        let mut req = chat(model, true);
        req["max_tokens"] = serde_json::json!(1);
        let start = Instant::now();
        let stream = testkit::read_sse(post(&sim, "/v1/chat/completions", &req).await)
            .await
            .unwrap();
        times.push(content_times(&stream)[0] - start);
    }
    // sim-mini: 20 + 80 ms + input; sim-large: 20 + 250 ms + input.
    assert!(times[0] >= Duration::from_millis(100), "{times:?}");
    assert!(times[1] >= Duration::from_millis(270), "{times:?}");
    assert!(times[1] > times[0]);
}

#[tokio::test]
async fn excess_requests_queue_fifo_and_report_it() {
    let sim = start_default().await;
    let url = sim.url();
    let model = "sim:slots=1,ttft=100ms,tokens=1";
    let first = {
        let url = url.clone();
        tokio::spawn(async move {
            client()
                .post(format!("{url}/v1/chat/completions"))
                .json(&chat(model, false))
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let second = post(&sim, "/v1/chat/completions", &chat(model, false)).await;
    let first = first.await.unwrap();
    let queued = |r: &reqwest::Response| -> f64 {
        header(r, "server-timing")
            .unwrap()
            .trim_start_matches("queue;dur=")
            .parse()
            .unwrap()
    };
    assert!(queued(&first) < 20.0, "{}", queued(&first));
    assert!(
        queued(&second) >= 50.0,
        "the second waited for the slot: {}",
        queued(&second)
    );
}

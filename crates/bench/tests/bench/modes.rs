//! Load shapes, stop conditions, sweeps, speedup, SLOs, cost, comparisons, warm-up,
//! per-request output and cancellation.

use std::time::Instant;

use bench::arrival::ArrivalKind;
use metrics::slo::Slo;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_concurrency_reaches_it() {
    let sim = sim().await;
    let p = plan(
        series(&sim, &["sim:ttft=20ms,tokens=2"]),
        Load::Closed { concurrency: 8 },
        Stop::Requests(80),
    );
    let r = run(&p).await;
    let s = &r.series[0];
    assert_eq!(s.requests.succeeded, 80);
    let c = s.achieved_concurrency.unwrap();
    assert!(c > 4.0 && c <= 8.5, "{c}");
    assert!(
        s.requests.new_connections <= 8 + 1,
        "connections are reused: {}",
        s.requests.new_connections
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_rate_is_kept() {
    let sim = sim().await;
    let load = Load::Open {
        rate: 200.0,
        arrival: ArrivalKind::Constant,
        seed: 0,
    };
    let p = plan(series(&sim, &["sim:tokens=2"]), load, Stop::Requests(200));
    let r = run(&p).await;
    let s = &r.series[0];
    assert_eq!(s.requests.total, 200);
    let rate = s.rate.as_ref().unwrap();
    assert_eq!(rate.offered_per_s, 200.0);
    assert!((rate.dispatched_per_s - 200.0).abs() < 20.0, "{rate:?}");
    assert!(s.latency_ms.contains_key("queue_inclusive_ttft_ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_stop() {
    let sim = sim().await;
    let start = Instant::now();
    let p = plan(
        series(&sim, &["sim:ttft=10ms,tokens=1"]),
        Load::Closed { concurrency: 2 },
        Stop::Duration(Duration::from_millis(600)),
    );
    let r = run(&p).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(r.series[0].requests.succeeded >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_and_speedup() {
    let sim = sim().await;
    let mut p = plan(
        series(&sim, &["sim:ttft=30ms,tokens=1"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(8),
    );
    p.sweep = vec![1, 4];
    let r = run(&p).await;
    assert_eq!(r.sweep.len(), 2);
    assert_eq!(r.sweep[1].concurrency, 4);
    assert!(r.sweep[1].requests_per_s.unwrap() > r.sweep[0].requests_per_s.unwrap());

    let mut p = plan(
        series(&sim, &["sim:ttft=40ms,tokens=1"]),
        Load::Closed { concurrency: 4 },
        Stop::Requests(8),
    );
    p.speedup = Some(4);
    let r = run(&p).await;
    let s = r.speedup.unwrap();
    assert_eq!(s.requests, 8);
    assert!(s.speedup > 2.5, "{s:?}");
    assert!(s.sequential_s > s.parallel_s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_attainment_and_goodput() {
    let sim = sim().await;
    let mut p = plan(
        series(&sim, &["sim:ttft=50ms,tokens=2"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(3),
    );
    p.slo = Some(Slo::parse("ttft=30ms").unwrap());
    let r = run(&p).await;
    let slo = r.series[0].slo.as_ref().unwrap();
    assert_eq!((slo.good, slo.bad), (0, 3));
    assert_eq!(slo.attainment, Some(0.0));
    p.slo = Some(Slo::parse("chatbot").unwrap());
    let r = run(&p).await;
    let slo = r.series[0].slo.as_ref().unwrap();
    assert_eq!(slo.attainment, Some(1.0));
    assert!(slo.goodput_requests_per_s.unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comparison_cost_and_warmup() {
    let sim = sim().await;
    let mut p = plan(
        series(&sim, &["sim-mini", "sim-large"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(3),
    );
    p.warmup = 1;
    p.workload.max_tokens = Some(5);
    let r = run(&p).await;
    assert_eq!(r.series.len(), 2);
    assert_eq!(r.series[0].requests.total, 3);
    assert_eq!(r.series[0].requests.warmup, 1);
    let st = stats(&sim).await;
    assert_eq!(
        st["by_model"]["sim-mini"]["requests_total"], 4,
        "warm-up requests were sent"
    );
    let ttft = r.comparisons.iter().find(|c| c.metric == "ttft").unwrap();
    assert_eq!(ttft.faster, "sim-mini");
    assert!(ttft.ratio > 1.5, "{ttft:?}");
    assert!(ttft.text.contains("faster than sim-large"), "{}", ttft.text);
    let cost = r.series[1].cost.as_ref().unwrap();
    assert!(cost.simulated);
    assert!(cost.total_usd > 0.0);
    assert!(cost.batch_total_usd.unwrap() < cost.total_usd);
    assert!(
        r.series[0].cost.as_ref().unwrap().total_usd < cost.total_usd,
        "mini is cheaper"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_out_has_one_line_per_request() {
    let sim = sim().await;
    let dir = std::env::temp_dir().join(format!(
        "tokenpace-bench-{}-{}",
        std::process::id(),
        line!()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("requests.jsonl");
    let mut p = plan(
        series(&sim, &["sim:tokens=2"]),
        Load::Closed { concurrency: 2 },
        Stop::Requests(6),
    );
    p.requests_out = Some(path.clone());
    run(&p).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert!(
        lines
            .iter()
            .all(|l| l["ok"] == true && l["output_tokens"] == 2)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_gives_a_partial_report() {
    let sim = sim().await;
    let p = plan(
        series(&sim, &["sim:ttft=100ms,tokens=1"]),
        Load::Closed { concurrency: 4 },
        Stop::Requests(1000),
    );
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(350)).await;
        c.cancel();
    });
    let start = Instant::now();
    let r = run_with(&p, &cancel).await;
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(r.interrupted);
    let s = &r.series[0];
    assert!(
        s.requests.succeeded >= 4 && s.requests.succeeded < 1000,
        "{:?}",
        s.requests
    );
    assert!(s.requests.incomplete >= 1, "{:?}", s.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_up_spreads_worker_starts() {
    let sim = sim().await;
    let mut p = plan(
        series(&sim, &["sim:tokens=1"]),
        Load::Closed { concurrency: 4 },
        Stop::Requests(4),
    );
    p.ramp_up = Duration::from_millis(400);
    let start = Instant::now();
    let r = run(&p).await;
    assert_eq!(r.series[0].requests.succeeded, 4);
    // The last of 4 workers starts 3/4 of the way through the ramp.
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

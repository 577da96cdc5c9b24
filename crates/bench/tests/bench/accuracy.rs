//! Reported figures against the simulator's known timings (generous on the slow side: a
//! busy 2-core machine; exact on the fast side: the simulator never emits early).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_ttft_and_tpot_match_the_profile() {
    let sim = sim().await;
    let p = plan(
        series(&sim, &["sim:ttft=50ms,itl=10ms,tokens=20"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(5),
    );
    let r = run(&p).await;
    let s = &r.series[0];
    assert_eq!(s.requests.total, 5);
    assert_eq!(s.requests.succeeded, 5);
    let ttft = &s.latency_ms["ttft_ms"];
    assert!(ttft.min >= 50.0, "{ttft:?}");
    assert!(ttft.p50 < 120.0, "{ttft:?}");
    let tpot = &s.latency_ms["tpot_ms"];
    assert!((tpot.p50 - 10.0).abs() < 3.0, "{tpot:?}");
    assert_eq!(s.tokens.output, 100);
    assert_eq!(s.tokens.output_source.get("usage"), Some(&5));
    let ttlt = &s.latency_ms["ttlt_ms"];
    assert!(ttlt.p50 >= 50.0 + 19.0 * 10.0 - 1.0, "{ttlt:?}");
    // The simulator's recorded TTFT is the truth; the client adds only its own path.
    let truth = stats(&sim).await["emit"]["ttft"]["p50_ms"]
        .as_f64()
        .unwrap();
    assert!(
        (ttft.p50 - truth).abs() < 5.0,
        "reported {} vs truth {truth}",
        ttft.p50
    );
    assert!(r.simulated);
    assert_eq!(r.schema_version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_chunk_is_not_the_first_token() {
    // The simulator sends the role chunk at once and the first token after 80 ms.
    let sim = sim().await;
    let p = plan(
        series(&sim, &["sim:ttft=80ms,tokens=3"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(2),
    );
    let r = run(&p).await;
    let s = &r.series[0];
    assert!(s.latency_ms["ttft_ms"].min >= 80.0);
    assert!(
        s.latency_ms["time_to_first_byte_ms"].max < 40.0,
        "the role chunk arrives early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_counts_for_ttft_not_ttfc() {
    let sim = sim().await;
    let p = plan(
        series(&sim, &["sim:ttft=20ms,itl=10ms,reasoning=5,tokens=3"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(2),
    );
    let r = run(&p).await;
    let s = &r.series[0];
    let ttft = s.latency_ms["ttft_ms"].p50;
    let ttfc = s.latency_ms["ttfc_ms"].p50;
    assert!(
        ttfc - ttft >= 49.0,
        "5 reasoning tokens at 10 ms: ttft {ttft} ttfc {ttfc}"
    );
    assert_eq!(s.tokens.reasoning, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_streams_apportion_itl() {
    let sim = sim().await;
    let p = plan(
        series(&sim, &["sim:itl=8ms,tokens=12,chunk=4"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(2),
    );
    let r = run(&p).await;
    let s = &r.series[0];
    let icl = &s.latency_ms["icl_ms"];
    let itl = &s.latency_ms["itl_ms"];
    assert_eq!(icl.n, 4, "3 chunks per request: 2 gaps each");
    assert_eq!(itl.n, 16, "each gap apportioned over its 4 tokens");
    assert!((icl.p50 - 32.0).abs() < 12.0, "{icl:?}");
    assert!(
        (itl.p50 - icl.p50 / 4.0).abs() < 0.5,
        "ITL is ICL split over 4 tokens: {itl:?} {icl:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streamed_has_no_ttft() {
    let sim = sim().await;
    let mut p = plan(
        series(&sim, &["sim:ttft=10ms,tokens=4"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(2),
    );
    p.stream = false;
    let r = run(&p).await;
    let s = &r.series[0];
    assert_eq!(s.requests.succeeded, 2);
    assert!(!s.latency_ms.contains_key("ttft_ms"), "TTFT is n/a, not 0");
    assert!(s.latency_ms["e2e_ms"].min >= 10.0);
    assert_eq!(s.tokens.output, 8);
}

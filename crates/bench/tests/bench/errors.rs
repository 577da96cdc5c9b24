//! Every error class is counted, never aborts the run.

use sim::config::RawSimArgs;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_classes_are_counted() {
    let sim = sim().await;
    let cases = [
        ("sim:tokens=3,fail_first=2", "http_5xx", 2),
        ("sim:tokens=5,reset_after=2", "reset", 3),
        ("sim:tokens=5,truncate_after=2", "truncated", 3),
        ("no-such-model", "http_4xx", 3),
        ("sim:tokens=5,error_after=2", "in_stream_error", 3),
        ("sim:tokens=0", "empty", 3),
    ];
    for (model, class, n) in cases {
        let p = plan(
            series(&sim, &[model]),
            Load::Closed { concurrency: 1 },
            Stop::Requests(3),
        );
        let r = run(&p).await;
        let s = &r.series[0];
        assert_eq!(s.requests.total, 3, "{model}");
        assert_eq!(
            s.requests.failed_by_class.get(class),
            Some(&n),
            "{model}: {:?}",
            s.requests
        );
        assert_eq!(s.requests.succeeded, 3 - n, "{model}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_transport_failures() {
    let sim = sim().await;
    let mut p = plan(
        series(&sim, &["sim:stall=2s,tokens=1"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(1),
    );
    p.timeout = Duration::from_millis(200);
    let r = run(&p).await;
    assert_eq!(
        r.series[0].requests.failed_by_class.get("timeout"),
        Some(&1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_reported_as_the_provider_limit() {
    let config = SimConfig::resolve(
        RawSimArgs {
            rpm: Some(3),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let sim = sim_with(config).await;
    let p = plan(
        series(&sim, &["sim:tokens=1"]),
        Load::Closed { concurrency: 1 },
        Stop::Requests(5),
    );
    let r = run(&p).await;
    let s = &r.series[0];
    assert_eq!(s.requests.failed_by_class.get("rate_limited"), Some(&2));
    let rl = &s.rate_limits;
    assert_eq!(rl.responses_429, 2);
    assert_eq!(rl.requests_limit, Some(3));
    assert_eq!(rl.min_requests_remaining, Some(0));
    assert!(rl.provider_limited);
    assert!(rl.max_retry_after_s.unwrap() > 0.0);
    assert!(s.warnings.iter().any(|w| w.code == "rate_limited"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_counted() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let endpoint = Target::new("dead", format!("http://{addr}/v1"), Api::OpenAi)
        .endpoint()
        .unwrap();
    let s = Series {
        label: "dead".into(),
        endpoint,
        model: "m".into(),
        simulated: false,
        workload: None,
    };
    let p = plan(vec![s], Load::Closed { concurrency: 1 }, Stop::Requests(2));
    let r = run(&p).await;
    assert_eq!(
        r.series[0].requests.failed_by_class.get("connect"),
        Some(&2)
    );
    assert!(r.series[0].warnings.iter().any(|w| w.code == "all_failed"));
}

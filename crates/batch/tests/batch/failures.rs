//! Upstream failures after the dispatcher's retries become error lines with a code from
//! the status and the upstream's message; a transient failure is retried into a success.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_become_error_lines_never_lost_lines() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    let lines = vec![
        chat_line("ok", "sim:tokens=2", "fine"),
        // Fails on every attempt: retried by the dispatcher, then an error line.
        chat_line(
            "always-500",
            "sim:tokens=2,fail_first=1000,fail_status=500",
            "x",
        ),
        // Not retryable: an error line at once.
        chat_line(
            "bad-request",
            "sim:tokens=2,fail_first=1000,fail_status=400",
            "y",
        ),
        // Fails once, then succeeds on the retry.
        chat_line("flaky", "sim:tokens=2,fail_first=1,fail_status=503", "z"),
    ];
    write_lines(&input, &lines);
    let summary = env.run(&env.plan(&input)).await.unwrap();

    assert!(summary.complete, "{summary:?}");
    assert!(!summary.all_succeeded());
    assert_eq!(summary.counts.succeeded, 2);
    assert_eq!(summary.counts.failed, 2);
    assert_eq!(summary.files.error_lines, 2);
    let by_id = results_by_id(&env);
    assert_eq!(by_id.len(), 4);
    assert_eq!(by_id["ok"]["response"]["status_code"], 200);
    assert_eq!(by_id["flaky"]["response"]["status_code"], 200);

    let e = &by_id["always-500"];
    assert!(e["response"].is_null());
    assert_eq!(e["error"]["code"], "upstream_error");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("500"), "{msg}");
    assert!(e["error"].get("line").is_none());

    let e = &by_id["bad-request"];
    assert_eq!(e["error"]["code"], "invalid_request");
    assert!(e["error"]["message"].as_str().unwrap().contains("400"));

    let s = env.stats.snapshot();
    let attempts = |m: &str| s.by_model[m].requests_total;
    assert_eq!(
        attempts("sim:tokens=2,fail_first=1000,fail_status=500"),
        3,
        "retried"
    );
    assert_eq!(
        attempts("sim:tokens=2,fail_first=1000,fail_status=400"),
        1,
        "not retried"
    );
    assert_eq!(attempts("sim:tokens=2,fail_first=1,fail_status=503"), 2);
}

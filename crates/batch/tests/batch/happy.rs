//! Every line answered once, in the Batch output shape; the cache and coalescing at work;
//! the three URLs; the summary.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_gets_exactly_one_output_line() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    let lines = chat_lines(40, "sim:tokens=5");
    write_lines(&input, &lines);
    let summary = env.run(&env.plan(&input)).await.unwrap();

    assert!(summary.complete && summary.all_succeeded(), "{summary:?}");
    assert!(!summary.interrupted);
    assert_eq!(summary.counts.total, 40);
    assert_eq!(summary.counts.succeeded, 40);
    assert_eq!(summary.counts.failed + summary.counts.invalid, 0);
    assert_eq!(summary.files.output_lines, 40);
    assert_eq!(summary.files.error_lines, 0);
    assert!(
        !env.path("out.errors.jsonl").exists(),
        "no empty error file"
    );
    assert_eq!(env.upstream_requests(), 40);

    let out = read_results(&env.path("out.jsonl"));
    assert_eq!(out.len(), 40);
    let by_id = results_by_id(&env);
    for i in 0..40 {
        let line = &by_id[&format!("req-{i}")];
        assert!(line["id"].as_str().unwrap().starts_with("batch_req_"));
        assert!(line["error"].is_null());
        let response = &line["response"];
        assert_eq!(response["status_code"], 200);
        assert!(!response["request_id"].as_str().unwrap().is_empty());
        let body: protocol::openai::ChatCompletionResponse =
            serde_json::from_value(response["body"].clone()).expect("a chat completion");
        assert_eq!(body.usage.unwrap().completion_tokens, 5);
    }
    assert_eq!(summary.tokens.output, 200);
    assert!(summary.tokens.input > 0);
    assert!(summary.sequential_time_s > 0.0);
    assert!(summary.speedup.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_lines_share_one_upstream_call() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    // Priced like gpt-4o-mini; a little latency so some copies are in flight together.
    let model = "sim-mini:ttft=20ms,itl=1ms,tokens=10,fail_rate=0,net=0ms";
    let lines: Vec<Value> = (0..30)
        .map(|i| chat_line(&format!("same-{i}"), model, "the same prompt"))
        .collect();
    write_lines(&input, &lines);
    let summary = env.run(&env.plan(&input)).await.unwrap();

    assert_eq!(summary.counts.succeeded, 30, "{summary:?}");
    assert_eq!(env.upstream_requests(), 1, "one upstream call for 30 lines");
    assert_eq!(
        summary.counts.cached + summary.counts.coalesced,
        29,
        "{summary:?}"
    );
    let c = summary.cost_usd;
    assert!(c.realtime > 0.0, "{c:?}");
    assert!((c.batch - c.realtime / 2.0).abs() < 1e-9, "{c:?}");
    assert!(
        (c.actual - c.realtime / 30.0).abs() < 1e-9,
        "only the one upstream call is spent: {c:?}"
    );
    assert_eq!(c.unpriced_lines, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_messages_lines_are_served() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    let lines = vec![
        json!({"custom_id": "c", "method": "POST", "url": "/v1/completions",
               "body": {"model": "sim:tokens=3", "prompt": "Once upon a time", "max_tokens": 8}}),
        json!({"custom_id": "m", "method": "POST", "url": "/v1/messages",
               "body": {"model": "sim:tokens=4", "max_tokens": 8,
                        "messages": [{"role": "user", "content": "hi"}]}}),
    ];
    write_lines(&input, &lines);
    let summary = env.run(&env.plan(&input)).await.unwrap();
    assert!(summary.all_succeeded(), "{summary:?}");
    let by_id = results_by_id(&env);
    assert_eq!(by_id["c"]["response"]["body"]["object"], "text_completion");
    assert_eq!(by_id["m"]["response"]["body"]["type"], "message");
    assert_eq!(by_id["m"]["response"]["body"]["usage"]["output_tokens"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_json_has_every_field() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    write_lines(
        &input,
        &chat_lines(3, "sim-mini:ttft=1ms,itl=0ms,tokens=2,fail_rate=0"),
    );
    let summary = env.run(&env.plan(&input)).await.unwrap();
    let v: Value = serde_json::from_str(&summary.to_json()).unwrap();
    assert_eq!(v["schema_version"], 1);
    for field in [
        "input",
        "output",
        "errors",
        "complete",
        "interrupted",
        "concurrency",
        "wall_time_s",
        "sequential_time_s",
        "speedup",
    ] {
        assert!(v.get(field).is_some(), "{field} in {v}");
    }
    for field in [
        "total",
        "succeeded",
        "failed",
        "cached",
        "coalesced",
        "skipped_already_done",
        "invalid",
        "not_run",
    ] {
        assert!(v["counts"][field].is_u64(), "counts.{field} in {v}");
    }
    for field in ["output_lines", "error_lines"] {
        assert!(v["files"][field].is_u64(), "files.{field} in {v}");
    }
    for field in ["input", "output"] {
        assert!(v["tokens"][field].is_u64(), "tokens.{field} in {v}");
    }
    for field in ["realtime", "batch", "actual"] {
        assert!(v["cost_usd"][field].is_f64(), "cost_usd.{field} in {v}");
    }
    assert!(v["cost_usd"]["unpriced_lines"].is_u64());
    for field in [
        "resumed",
        "recovered_lines",
        "forgotten_lines",
        "truncated_bytes",
    ] {
        assert!(v["resume"].get(field).is_some(), "resume.{field} in {v}");
    }
    assert_eq!(v["counts"]["total"], 3);
    assert_eq!(v["tokens"]["output"], 6);
    assert!(v["cost_usd"]["realtime"].as_f64().unwrap() > 0.0);
}

//! Validation before anything is sent: every problem with its line number in one message;
//! `skip_invalid` runs the rest and writes the invalid lines as error lines; the limits.

use tokenpace_batch::{BatchError, Limits};

use super::*;

fn mixed_input(env: &Env) -> PathBuf {
    let input = env.path("in.jsonl");
    let good = |id: &str| chat_line(id, "sim:tokens=2", id).to_string();
    let text = [
        // 1
        good("a"),
        // 2
        "{not json".to_owned(),
        // 3: blank, not a request
        String::new(),
        // 4
        json!({"method": "POST", "url": "/v1/chat/completions", "body": {"model": "sim"}})
            .to_string(),
        // 5: a duplicate of line 1
        good("a"),
        // 6
        json!({"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"model": "sim"}})
            .to_string(),
        // 7
        json!({"custom_id": "f", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}})
            .to_string(),
        // 8
        good("b"),
    ]
    .join("\n");
    std::fs::write(&input, text + "\n").unwrap();
    input
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_lines_are_all_reported_with_their_numbers_and_nothing_is_sent() {
    let env = Env::new().await;
    let input = mixed_input(&env);
    let err = env.run(&env.plan(&input)).await.unwrap_err();
    let BatchError::Invalid(report) = &err else {
        panic!("expected the invalid-input error, got {err}");
    };
    assert_eq!(report.invalid, 5);
    assert_eq!(report.requests, 7, "the blank line is not a request");
    let msg = err.to_string();
    for needle in [
        "5 invalid lines",
        "nothing was sent",
        "line 2: is not JSON",
        "line 4: has no custom_id",
        "line 5: custom_id 'a' is also on line 1",
        "line 6: url '/v1/embeddings' is not supported",
        "line 7: body.model is missing",
    ] {
        assert!(msg.contains(needle), "{needle:?} in:\n{msg}");
    }
    assert!(!msg.contains("line 8"), "{msg}");
    assert_eq!(env.upstream_requests(), 0, "nothing was sent");
    assert!(!env.path("out.jsonl").exists());
    assert!(
        !env.path("out.jsonl.tokenpace-state").exists(),
        "no state for a batch that never started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_invalid_runs_the_valid_lines_and_writes_error_lines_for_the_rest() {
    let env = Env::new().await;
    let input = mixed_input(&env);
    let mut plan = env.plan(&input);
    plan.skip_invalid = true;
    let summary = env.run(&plan).await.unwrap();
    assert!(summary.complete, "{summary:?}");
    assert!(!summary.all_succeeded());
    assert_eq!(summary.counts.total, 7);
    assert_eq!(summary.counts.succeeded, 2);
    assert_eq!(summary.counts.invalid, 5);
    assert_eq!(summary.files.output_lines, 2);
    assert_eq!(summary.files.error_lines, 5);
    assert_eq!(env.upstream_requests(), 2);

    let out = read_results(&env.path("out.jsonl"));
    let mut ids: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b"]);
    let errors = read_results(&env.path("out.errors.jsonl"));
    let mut by_line: Vec<(u64, Value, String)> = errors
        .iter()
        .map(|l| {
            assert!(l["response"].is_null());
            assert!(l["id"].as_str().unwrap().starts_with("batch_req_"));
            (
                l["error"]["line"].as_u64().unwrap(),
                l["custom_id"].clone(),
                l["error"]["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    by_line.sort_by_key(|(n, ..)| *n);
    assert_eq!(
        by_line,
        vec![
            (2, Value::Null, "invalid_request".into()),
            (4, Value::Null, "invalid_request".into()),
            (5, json!("a"), "duplicate_custom_id".into()),
            (6, json!("e"), "invalid_request".into()),
            (7, json!("f"), "invalid_request".into()),
        ]
    );

    // Run again: everything is done, nothing is sent or written twice.
    let again = env.run(&plan).await.unwrap();
    assert_eq!(again.counts.skipped_already_done, 7, "{again:?}");
    assert_eq!(again.counts.invalid + again.counts.succeeded, 0);
    assert_eq!(env.upstream_requests(), 2);
    assert_eq!(read_results(&env.path("out.errors.jsonl")).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_past_the_limits_are_invalid() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    write_lines(&input, &chat_lines(10, "sim:tokens=1"));
    let mut plan = env.plan(&input);
    plan.limits = Limits {
        max_lines: 6,
        max_bytes: 1_000_000,
    };
    let msg = env.run(&plan).await.unwrap_err().to_string();
    assert!(
        msg.contains("lines 7 to 10 (4 request lines): past the limit of 6 request lines"),
        "{msg}"
    );

    let size = std::fs::metadata(&input).unwrap().len();
    plan.limits = Limits {
        max_lines: 100,
        max_bytes: size / 2,
    };
    let msg = env.run(&plan).await.unwrap_err().to_string();
    assert!(msg.contains("ending past the limit of"), "{msg}");

    plan.limits.max_lines = 6;
    plan.limits.max_bytes = 1_000_000;
    plan.skip_invalid = true;
    let summary = env.run(&plan).await.unwrap();
    assert_eq!(summary.counts.succeeded, 6);
    assert_eq!(summary.counts.invalid, 4);
    let errors = read_results(&env.path("out.errors.jsonl"));
    assert!(
        errors
            .iter()
            .all(|l| l["error"]["code"] == "too_many_lines")
    );
}

#[test]
fn with_an_endpoint_every_line_must_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let completion = json!({"custom_id": "c", "method": "POST", "url": "/v1/completions",
                            "body": {"model": "sim", "prompt": "x"}});
    write_lines(
        &input,
        &[
            chat_line("a", "sim", "x"),
            completion,
            chat_line("b", "sim", "y"),
        ],
    );
    let any = tokenpace_batch::validate::validate(&input, Limits::default()).unwrap();
    assert_eq!(any.invalid(), 0, "{any:?}");
    let chat = tokenpace_batch::validate::validate_for(
        &input,
        Limits::default(),
        Some(dispatch::Kind::Chat),
    )
    .unwrap();
    assert_eq!(chat.requests, 3);
    assert_eq!(chat.problems.len(), 1, "{chat:?}");
    let p = &chat.problems[0];
    assert_eq!(
        (p.line, p.code, p.custom_id.as_deref()),
        (2, "invalid_request", Some("c"))
    );
    assert!(
        p.message
            .contains("url '/v1/completions' is not the batch's endpoint '/v1/chat/completions'"),
        "{}",
        p.message
    );
}

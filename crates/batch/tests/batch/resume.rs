//! Resuming: a stopped run continues where it left off without sending a recorded line
//! again; the state repairs a torn last line and a line written but not marked; a state
//! for another input, or output without a state, is refused.
//! (Crashes of a real process, kill -9 at random points, are tested on the binary in
//! crates/tokenpace/tests/cli/batch.rs.)

use std::time::Duration;

use tokenpace_batch::checkpoint::state_path;

use super::*;

/// Runs `plan`, stopping gracefully once `after` lines are recorded.
async fn run_until(env: &Env, plan: &Plan, after: u64) -> Summary {
    let progress = Arc::new(Progress::new());
    let stop = Stop::default();
    let watcher = {
        let (progress, stop) = (progress.clone(), stop.clone());
        tokio::spawn(async move {
            while progress.snapshot().done < after {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.graceful.cancel();
        })
    };
    let summary = tokenpace_batch::run(plan, &env.dispatcher, progress, &stop)
        .await
        .unwrap();
    watcher.abort();
    summary
}

/// Removes the marks of `ids` from the store, as if the run had died between writing
/// their lines and committing.
fn unmark(env: &Env, ids: &[&str]) {
    let conn = rusqlite::Connection::open(state_path(&env.path("out.jsonl"))).unwrap();
    for id in ids {
        let n = conn
            .execute("DELETE FROM done_id WHERE custom_id = ?1", [id])
            .unwrap();
        assert_eq!(n, 1, "{id} was marked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_run_resumes_without_sending_a_recorded_line_again() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    write_lines(&input, &chat_lines(120, "sim:ttft=3ms,tokens=2"));
    let mut plan = env.plan(&input);
    plan.concurrency = 4;

    let first = run_until(&env, &plan, 20).await;
    assert!(first.interrupted && !first.complete, "{first:?}");
    let done = first.counts.succeeded;
    assert!((20..120).contains(&done), "{first:?}");
    assert_eq!(first.counts.not_run, 120 - done);
    assert_eq!(first.files.output_lines, done);
    assert_eq!(
        env.upstream_requests(),
        done,
        "lines in flight at the stop finished and were written"
    );

    let second = env.run(&plan).await.unwrap();
    assert!(second.complete && second.all_succeeded(), "{second:?}");
    assert!(second.resume.resumed);
    assert_eq!(second.counts.skipped_already_done, done);
    assert_eq!(second.counts.succeeded, 120 - done);
    assert_eq!(second.files.output_lines, 120);
    assert_eq!(env.upstream_requests(), 120, "no line sent twice");
    assert_eq!(results_by_id(&env).len(), 120);

    // A finished batch run again does nothing.
    let third = env.run(&plan).await.unwrap();
    assert_eq!(third.counts.skipped_already_done, 120);
    assert_eq!(third.counts.succeeded, 0);
    assert!(third.all_succeeded());
    assert_eq!(env.upstream_requests(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_cut_and_its_line_runs_again() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    write_lines(&input, &chat_lines(10, "sim:tokens=2"));
    let plan = env.plan(&input);
    env.run(&plan).await.unwrap();
    assert_eq!(env.upstream_requests(), 10);

    // As if the process died in the middle of writing its last line, before the commit.
    let out = env.path("out.jsonl");
    let bytes = std::fs::read(&out).unwrap();
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    let last: Value = serde_json::from_slice(&bytes[last_start..]).unwrap();
    let torn_id = last["custom_id"].as_str().unwrap().to_owned();
    let cut = last_start + (bytes.len() - last_start) / 2;
    std::fs::write(&out, &bytes[..cut]).unwrap();
    unmark(&env, &[&torn_id]);

    let summary = env.run(&plan).await.unwrap();
    assert_eq!(summary.resume.truncated_bytes, (cut - last_start) as u64);
    assert_eq!(summary.counts.succeeded, 1, "only the torn line runs again");
    assert_eq!(summary.counts.skipped_already_done, 9);
    // Answered again: by the upstream, or by the dispatcher's cache of its first answer.
    assert_eq!(env.upstream_requests() - 10 + summary.counts.cached, 1);
    let by_id = results_by_id(&env);
    assert_eq!(by_id.len(), 10);
    assert_eq!(by_id[&torn_id]["response"]["status_code"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_written_but_not_marked_is_not_sent_again() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    write_lines(&input, &chat_lines(10, "sim:tokens=2"));
    let plan = env.plan(&input);
    env.run(&plan).await.unwrap();
    unmark(&env, &["req-3", "req-7"]);

    let summary = env.run(&plan).await.unwrap();
    assert_eq!(summary.resume.recovered_lines, 2, "{summary:?}");
    assert_eq!(summary.counts.skipped_already_done, 10);
    assert_eq!(env.upstream_requests(), 10, "nothing sent again");
    assert_eq!(results_by_id(&env).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_output_file_makes_its_lines_run_again() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    write_lines(&input, &chat_lines(5, "sim:tokens=2"));
    let plan = env.plan(&input);
    env.run(&plan).await.unwrap();
    std::fs::remove_file(env.path("out.jsonl")).unwrap();
    let summary = env.run(&plan).await.unwrap();
    assert_eq!(summary.resume.forgotten_lines, 5);
    assert_eq!(summary.counts.succeeded, 5);
    assert_eq!(results_by_id(&env).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_for_another_input_or_output_without_state_is_refused() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    write_lines(&input, &chat_lines(3, "sim:tokens=2"));
    let plan = env.plan(&input);
    env.run(&plan).await.unwrap();

    write_lines(&input, &chat_lines(4, "sim:tokens=2"));
    let msg = env.run(&plan).await.unwrap_err().to_string();
    assert!(msg.contains("belongs to another input file"), "{msg}");
    assert_eq!(env.upstream_requests(), 3);

    std::fs::remove_file(state_path(&env.path("out.jsonl"))).unwrap();
    let msg = env.run(&plan).await.unwrap_err().to_string();
    assert!(msg.contains("already exists and has no state"), "{msg}");
    assert_eq!(env.upstream_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_splits_the_lines_done_before_by_file() {
    let env = Env::new().await;
    let input = env.path("in.jsonl");
    let mut lines = chat_lines(6, "sim:tokens=2");
    lines.push(chat_line("bad", "sim:fail_rate=1,fail_status=400", "x"));
    write_lines(&input, &lines);
    let plan = env.plan(&input);
    env.run(&plan).await.unwrap();

    let progress = Arc::new(Progress::new());
    tokenpace_batch::run(&plan, &env.dispatcher, progress.clone(), &Stop::default())
        .await
        .unwrap();
    let s = progress.snapshot();
    assert_eq!(s.total, 7);
    assert_eq!((s.already_succeeded, s.already_failed), (6, 1), "{s:?}");
    assert_eq!(s.already_done, 7);
    assert_eq!(s.done, 0);
}

//! Integration tests of the batch runner against the in-process simulator on 127.0.0.1:0
//! (one simulator per test; model names choose its behaviour). One test binary for the
//! crate; modules by what they exercise.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test loudly on any error"
)]

mod failures;
mod happy;
mod resume;
mod validation;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dispatch::Dispatcher;
use dispatch::config::{RawConfig, RawUpstream};
use serde_json::{Value, json};
use tokenpace_batch::{Plan, Progress, Stop, Summary};

/// A simulator, a dispatcher in front of it, and a directory for the files.
pub struct Env {
    /// The simulator (serving while this lives).
    pub sim: sim::RunningSim,
    /// Its counters.
    pub stats: Arc<sim::stats::Stats>,
    /// A dispatcher with one upstream, the simulator, and an in-memory cache.
    pub dispatcher: Dispatcher,
    /// The test's files.
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Starts everything.
    pub async fn new() -> Env {
        let simulator = sim::Simulator::new(sim::SimConfig::default()).unwrap();
        let stats = simulator.stats();
        let sim = simulator
            .spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut raw = RawConfig::default();
        raw.upstreams.insert(
            "upstream".into(),
            RawUpstream {
                url: sim.url(),
                ..RawUpstream::default()
            },
        );
        raw.cache.store = Some("memory".into());
        // Quick backoff: the tests exercise that retries happen, not how long they wait.
        raw.retry.base = Some("5ms".into());
        raw.retry.cap = Some("20ms".into());
        let config = raw.resolve(&|_| None).unwrap();
        let (dispatcher, warnings) = Dispatcher::new(config).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        Env {
            sim,
            stats,
            dispatcher,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A file in the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A plan for `input` -> `out.jsonl` (errors in `out.errors.jsonl`).
    pub fn plan(&self, input: &Path) -> Plan {
        let mut plan = Plan::new(input, self.path("out.jsonl"));
        plan.concurrency = 8;
        plan
    }

    /// Requests the simulator received.
    pub fn upstream_requests(&self) -> u64 {
        self.stats.snapshot().totals.requests_total
    }

    /// Runs `plan` to its end.
    pub async fn run(&self, plan: &Plan) -> Result<Summary, tokenpace_batch::BatchError> {
        tokenpace_batch::run(
            plan,
            &self.dispatcher,
            Arc::new(Progress::new()),
            &Stop::default(),
        )
        .await
    }
}

/// A chat line.
pub fn chat_line(id: &str, model: &str, text: &str) -> Value {
    json!({
        "custom_id": id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 20},
    })
}

/// `n` chat lines `req-0`.. with distinct prompts.
pub fn chat_lines(n: usize, model: &str) -> Vec<Value> {
    (0..n)
        .map(|i| chat_line(&format!("req-{i}"), model, &format!("prompt number {i}")))
        .collect()
}

/// Writes JSON lines.
pub fn write_lines(path: &Path, lines: &[Value]) {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Reads a result file: every line must end with `\n` and be JSON (no torn lines).
pub fn read_results(path: &Path) -> Vec<Value> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{} ends with a torn line",
        path.display()
    );
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("every written line is JSON"))
        .collect()
}

/// Result lines by custom_id across both files; fails on any id written twice.
pub fn results_by_id(env: &Env) -> HashMap<String, Value> {
    let mut all = HashMap::new();
    for file in ["out.jsonl", "out.errors.jsonl"] {
        for line in read_results(&env.path(file)) {
            let id = line["custom_id"].as_str().unwrap().to_owned();
            assert!(
                all.insert(id.clone(), line).is_none(),
                "custom_id {id} written twice"
            );
        }
    }
    all
}

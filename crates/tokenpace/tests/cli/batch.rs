//! `tokenpace batch run` as a process: exit codes, the summary on stderr and in `--json`,
//! Ctrl-C, and crashes: kill -9 at random points, rerun until complete, then exactly one
//! line per custom_id across the output and error files, and no torn line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::*;

async fn start_sim() -> ::sim::RunningSim {
    ::sim::Simulator::new(::sim::SimConfig::default())
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// `n` chat lines `req-0`..; every `fail_every`-th one is answered 400 by the simulator.
fn write_input(path: &Path, n: usize, model: &str, fail_every: usize) {
    let mut text = String::new();
    for i in 0..n {
        let model = if fail_every > 0 && i % fail_every == fail_every - 1 {
            "sim:tokens=1,fail_first=1000000,fail_status=400"
        } else {
            model
        };
        let line = json!({"custom_id": format!("req-{i}"), "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "max_tokens": 8,
                     "messages": [{"role": "user", "content": format!("prompt {i}")}]}});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn batch_cmd(sim_url: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.args(["batch", "run"])
        .arg(dir.join("in.jsonl"))
        .arg("--output")
        .arg(dir.join("out.jsonl"))
        .args(["--base-url", sim_url])
        .args(extra);
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Every result line of both files by custom_id, with the file it is in; fails on a torn
/// line or an id written twice.
fn results(dir: &Path) -> HashMap<String, (&'static str, Value)> {
    let mut all = HashMap::new();
    for file in ["out.jsonl", "out.errors.jsonl"] {
        let Ok(bytes) = std::fs::read(dir.join(file)) else {
            continue;
        };
        assert!(
            bytes.is_empty() || bytes.ends_with(b"\n"),
            "{file} ends with a torn line"
        );
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "{file}: a line that is not JSON ({e}): {}",
                    String::from_utf8_lossy(line)
                )
            });
            let id = v["custom_id"].as_str().unwrap().to_owned();
            assert!(
                all.insert(id.clone(), (file, v)).is_none(),
                "custom_id {id} written twice"
            );
        }
    }
    all
}

/// Runs a blocking closure off the runtime (the simulator serves on it meanwhile).
async fn off<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_text_summary_and_json_summary() {
    let sim = start_sim().await;
    let url = sim.url();
    let dir = tempfile::tempdir().unwrap();
    let d: PathBuf = dir.path().to_owned();

    // All lines succeed: exit 0, the summary on stderr and in --json.
    write_input(&d.join("in.jsonl"), 20, "sim:tokens=3", 0);
    let json_path = d.join("summary.json");
    let mut cmd = batch_cmd(&url, &d, &["--json", json_path.to_str().unwrap()]);
    let out = off(move || cmd.output().unwrap()).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("20 succeeded"), "{err}");
    assert!(err.contains("parallelism gave"), "{err}");
    assert!(err.contains("at batch prices"), "{err}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(summary["counts"]["total"], 20);
    assert_eq!(summary["counts"]["succeeded"], 20);
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["tokens"]["output"], 60);
    for field in [
        "wall_time_s",
        "sequential_time_s",
        "speedup",
        "cost_usd",
        "files",
    ] {
        assert!(summary.get(field).is_some(), "{field}");
    }
    assert_eq!(results(&d).len(), 20);

    // Running it again finds everything done: still exit 0, nothing sent.
    let mut cmd = batch_cmd(&url, &d, &["--quiet"]);
    let out = off(move || cmd.output().unwrap()).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "--quiet: {}", stderr(&out));

    // Some lines fail upstream: exit 1, error lines in the error file.
    let dir2 = tempfile::tempdir().unwrap();
    let d2: PathBuf = dir2.path().to_owned();
    write_input(&d2.join("in.jsonl"), 10, "sim:tokens=3", 5);
    let mut cmd = batch_cmd(&url, &d2, &[]);
    let out = off(move || cmd.output().unwrap()).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let all = results(&d2);
    assert_eq!(all.len(), 10);
    let (file, line) = &all["req-4"];
    assert_eq!(*file, "out.errors.jsonl");
    assert_eq!(line["error"]["code"], "invalid_request");

    // An invalid input: exit 2, every bad line named, nothing written.
    let dir3 = tempfile::tempdir().unwrap();
    let d3: PathBuf = dir3.path().to_owned();
    std::fs::write(
        d3.join("in.jsonl"),
        "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"sim\"}}\nnot json\n{\"custom_id\":\"a\"}\n",
    )
    .unwrap();
    let mut cmd = batch_cmd(&url, &d3, &[]);
    let out = off(move || cmd.output().unwrap()).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 2: is not JSON"), "{err}");
    assert!(err.contains("line 3:"), "{err}");
    assert!(err.contains("--skip-invalid"), "{err}");
    assert!(!d3.join("out.jsonl").exists());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_the_lines_in_flight_and_the_rerun_resumes() {
    let sim = start_sim().await;
    let url = sim.url();
    let dir = tempfile::tempdir().unwrap();
    let d: PathBuf = dir.path().to_owned();
    write_input(&d.join("in.jsonl"), 200, "sim:ttft=20ms,tokens=2", 0);

    let mut cmd = batch_cmd(&url, &d, &["--concurrency", "4", "--quiet"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let out_path = d.join("out.jsonl");
    let out = off(move || {
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&out_path).map_or(0, |m| m.len()) == 0 {
            assert!(Instant::now() < deadline, "no line written");
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait_with_output().unwrap()
    })
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    let partial = results(&d).len();
    assert!(partial > 0 && partial < 200, "{partial} lines after Ctrl-C");

    let mut cmd = batch_cmd(&url, &d, &["--quiet"]);
    let out = off(move || cmd.output().unwrap()).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(results(&d).len(), 200);
}

/// A small xorshift generator: kill points vary per run; the seed is printed to replay one.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_then_resume_writes_every_line_exactly_once() {
    const LINES: usize = 2000;
    const FAIL_EVERY: usize = 50;
    let sim = start_sim().await;
    let url = sim.url();
    let dir = tempfile::tempdir().unwrap();
    let d: PathBuf = dir.path().to_owned();
    write_input(
        &d.join("in.jsonl"),
        LINES,
        "sim:ttft=5ms,tokens=2",
        FAIL_EVERY,
    );
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill points seed: {seed}");

    let (kills, finished_early) = {
        let (url, d) = (url.clone(), d.clone());
        off(move || {
            let mut rng = Rng(seed);
            let mut kills = 0;
            while kills < 25 {
                let mut cmd = batch_cmd(&url, &d, &["--concurrency", "4", "--quiet"]);
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
                let mut child = cmd.spawn().unwrap();
                std::thread::sleep(Duration::from_millis(10 + rng.next() % 150));
                if child.try_wait().unwrap().is_some() {
                    return (kills, true);
                }
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
            (kills, false)
        })
        .await
    };
    assert!(kills >= 20, "only {kills} kills before the batch finished");
    eprintln!("{kills} kills (finished early: {finished_early})");

    // Rerun until complete: exit 1 at the end because some lines fail upstream.
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 5, "not complete after {runs} reruns");
        let json_path = d.join("summary.json");
        let mut cmd = batch_cmd(
            &url,
            &d,
            &["--quiet", "--json", json_path.to_str().unwrap()],
        );
        let out = off(move || cmd.output().unwrap()).await;
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        if summary["complete"] == true {
            assert_eq!(summary["files"]["error_lines"], (LINES / FAIL_EVERY) as u64);
            break;
        }
    }

    let all = results(&d);
    assert_eq!(all.len(), LINES, "every line answered");
    for i in 0..LINES {
        let id = format!("req-{i}");
        let (file, line) = all.get(&id).unwrap_or_else(|| panic!("{id} missing"));
        if i % FAIL_EVERY == FAIL_EVERY - 1 {
            assert_eq!(*file, "out.errors.jsonl", "{id}");
            assert_eq!(line["error"]["code"], "invalid_request", "{id}");
        } else {
            assert_eq!(*file, "out.jsonl", "{id}");
            assert_eq!(line["response"]["status_code"], 200, "{id}");
        }
    }
}

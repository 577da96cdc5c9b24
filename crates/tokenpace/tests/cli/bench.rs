//! `tokenpace bench` as a user runs it: the embedded simulator, report files, exit codes and
//! usage errors.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tokenpace-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `bench` with no local model: the default run stays on the simulator whatever this machine
/// has installed.
fn bench(args: &[&str]) -> Output {
    bench_in(
        args,
        Some(&std::env::temp_dir().join("tokenpace-no-models-here")),
    )
}

/// `bench` with the real model cache (XDG or TOKENPACE_MODEL_DIR as the user has it).
fn bench_with_models(args: &[&str]) -> Output {
    bench_in(args, None)
}

fn bench_in(args: &[&str], model_dir: Option<&std::path::Path>) -> Output {
    let mut cmd = bin();
    cmd.arg("bench")
        .args(args)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY");
    if let Some(dir) = model_dir {
        cmd.env("TOKENPACE_MODEL_DIR", dir);
    }
    cmd.output().unwrap()
}

fn labels(r: &serde_json::Value) -> Vec<String> {
    r["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn default_run_without_a_local_model_names_the_pull_command() {
    let out = bench(&["--max-tokens", "2", "--runs", "1", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("tokenpace model pull smollm2"), "{stderr}");
}

#[test]
#[cfg(unix)]
fn default_run_with_smollm2_measures_it_for_real_with_the_output_length_experiment() {
    if !smollm2_installed() {
        return;
    }
    let dir = scratch("default-local");
    let json = dir.join("r.json");
    // A model directory with SmolLM2 only, whatever else this machine has installed.
    let models = models_with(&dir, &["smollm2"]);
    let out = bench_in(
        &[
            "--max-tokens",
            "6",
            "--runs",
            "2",
            "-q",
            "--json",
            json.to_str().unwrap(),
        ],
        Some(&models),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        labels(&r),
        [
            "local:smollm2",
            "sim-large",
            "local:smollm2 (as asked)",
            "local:smollm2 (ONE sentence)"
        ]
    );
    let series = r["series"].as_array().unwrap();
    assert_eq!(series[0]["simulated"], false, "{}", series[0]);
    assert_eq!(series[1]["simulated"], true, "{}", series[1]);
    for s in series {
        assert_eq!(s["requests"]["succeeded"], 2, "{s}");
        let out_tokens = s["tokens"]["output"].as_u64().unwrap();
        assert!((1..=12).contains(&out_tokens), "{s}");
    }
    let stdout = text(&out.stdout);
    assert!(stdout.contains("SIMULATED"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A model directory in `dir` holding links to the named installed models.
#[cfg(unix)]
fn models_with(dir: &std::path::Path, names: &[&str]) -> PathBuf {
    let real = local::catalog::model_dir(None).unwrap();
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for name in names {
        std::os::unix::fs::symlink(real.join(name), models.join(name)).unwrap();
    }
    models
}

#[test]
#[cfg(unix)]
fn default_run_with_gemma_too_compares_two_real_sizes() {
    if !smollm2_installed() || local::catalog::resolve("gemma3-270m", None).is_err() {
        eprintln!("skipped: needs smollm2 and gemma3-270m installed");
        return;
    }
    let dir = scratch("default-two-sizes");
    let json = dir.join("r.json");
    let models = models_with(&dir, &["smollm2", "gemma3-270m"]);
    let out = bench_in(
        &[
            "--max-tokens",
            "4",
            "--runs",
            "1",
            "-q",
            "--json",
            json.to_str().unwrap(),
        ],
        Some(&models),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        labels(&r),
        [
            "local:smollm2",
            "local:gemma3-270m",
            "local:smollm2 (as asked)",
            "local:smollm2 (ONE sentence)"
        ]
    );
    for s in r["series"].as_array().unwrap() {
        assert_eq!(s["simulated"], false, "{s}");
        assert_eq!(s["requests"]["succeeded"], 1, "{s}");
    }
    assert!(!text(&out.stdout).contains("SIMULATED"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn local_model_runs_in_process() {
    if !smollm2_installed() {
        return;
    }
    let dir = scratch("local");
    let json = dir.join("r.json");
    let out = bench_with_models(&[
        "--model",
        "local:smollm2",
        "--runs",
        "3",
        "--max-tokens",
        "5",
        "--local-threads",
        "1",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(labels(&r), ["local:smollm2"]);
    let s = &r["series"][0];
    assert_eq!(s["requests"]["succeeded"], 3, "{s}");
    assert_eq!(s["simulated"], false);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_or_missing_local_models_are_usage_errors() {
    let out = bench(&["--model", "local:nope", "--runs", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("smollm2"), "{stderr}");
    let out = bench(&["--model", "local:smollm2", "--runs", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("tokenpace model pull smollm2"), "{stderr}");
    let out = bench(&["--model", "local:/nonexistent/model.gguf", "--runs", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("model.gguf"),
        "{}",
        text(&out.stderr)
    );
    let out = bench(&["--model", "local:", "--runs", "1"]);
    assert_eq!(out.status.code(), Some(2));
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).to_string()
}

#[test]
fn default_run_compares_small_and_large_simulated_models() {
    let dir = scratch("default");
    let json = dir.join("r.json");
    // The lesson's Part 1, shortened to 5 output tokens to keep the test quick.
    let out = bench(&["--max-tokens", "5", "--json", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("SIMULATED"), "{stdout}");
    assert!(stdout.contains("faster than sim-large"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["schema_version"], 1);
    let labels: Vec<&str> = r["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["sim-mini", "sim-large"]);
    for s in r["series"].as_array().unwrap() {
        assert_eq!(s["requests"]["succeeded"], 5);
        assert_eq!(s["tokens"]["output"], 25);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_files_and_requests_out() {
    let dir = scratch("files");
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let out = bench(&[
        "--model",
        "sim:tokens=3",
        "--runs",
        "3",
        "--csv",
        &p("r.csv"),
        "--markdown",
        &p("r.md"),
        "--requests-out",
        &p("req.jsonl"),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(p("r.csv")).unwrap();
    assert!(csv.starts_with("series,model,load,metric"), "{csv}");
    assert!(csv.contains("ttft"));
    assert!(
        std::fs::read_to_string(p("r.md"))
            .unwrap()
            .contains("sim:tokens=3")
    );
    assert_eq!(
        std::fs::read_to_string(p("req.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failed_requests_exit_1_and_are_classified() {
    let out = bench(&["--model", "sim:tokens=2,fail_first=1", "--runs", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("http_5xx"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn usage_errors_exit_2_and_name_the_fix() {
    let cases: &[(&[&str], &str)] = &[
        (&["--runs", "3", "--concurrency", "2"], "--concurrency"),
        (&["--model", "llama3:8b"], "--base-url"),
        (&["--slo", "fast"], "--slo"),
        (&["--concurrency", "1,x"], "--concurrency"),
        (&["--duration", "soon"], "--duration"),
        (
            &["--prompts", "/nonexistent/prompts.jsonl"],
            "/nonexistent/prompts.jsonl",
        ),
        (&["--input-tokens", "abc"], "--input-tokens"),
        (&["--rate", "0"], "--rate"),
    ];
    for (args, needle) in cases {
        let out = bench(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn prompts_file_errors_carry_the_line() {
    let dir = scratch("prompts");
    let file = dir.join("p.jsonl");
    std::fs::write(&file, "{\"prompt\": \"hi\"}\n{oops\n").unwrap();
    let out = bench(&["--model", "sim", "--prompts", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_streamed_ttft_is_na() {
    let out = bench(&["--model", "sim:tokens=2", "--runs", "2", "--no-stream"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("n/a"), "{}", text(&out.stdout));
}

#[test]
fn against_a_separate_simulator_and_a_targets_file() {
    let mut cmd = bin();
    cmd.args(["sim", "--listen", "127.0.0.1:0"]);
    let server = testkit::spawn_listening(cmd, Duration::from_secs(20)).unwrap();
    let out = bench(&[
        "--base-url",
        &server.url,
        "--model",
        "sim:tokens=2",
        "--runs",
        "2",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&server.url),
        "{}",
        text(&out.stdout)
    );

    let dir = scratch("targets");
    let file = dir.join("targets.toml");
    std::fs::write(
        &file,
        format!(
            "[[target]]\nname = \"a\"\nbase_url = \"{0}/v1\"\nmodel = \"sim:tokens=2\"\n\n[[target]]\nname = \"b\"\nbase_url = \"{0}\"\nmodel = \"sim:tokens=2,ttft=20ms\"\n",
            server.url
        ),
    )
    .unwrap();
    let json = dir.join("r.json");
    let out = bench(&[
        "--targets",
        file.to_str().unwrap(),
        "--runs",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let labels: Vec<&str> = r["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["a/sim:tokens=2", "b/sim:tokens=2,ttft=20ms"]);
    assert_eq!(
        r["simulated"], false,
        "an external endpoint is not known to be simulated"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! `tokenpace serve-local` as a process: the missing-model error, and (with SmolLM2
//! installed) the first stdout line, a real answer and a clean exit on SIGTERM.

use std::time::Duration;

use super::*;

#[test]
fn a_missing_model_exits_2_naming_the_pull_command() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let serve = |model: &str| {
        run(&[
            "serve-local",
            "--model",
            model,
            "--listen",
            "127.0.0.1:0",
            "--model-dir",
            dir_arg,
        ])
    };
    for model in ["smollm2", "local:smollm2"] {
        let out = serve(model);
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty(), "nothing is announced");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("`tokenpace model pull smollm2`"), "{err}");
        assert!(err.contains(dir_arg), "{err}");
    }
    let out = serve("llama-70b");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("smollm2, gemma3-270m"), "{err}");
    let out = serve("/nonexistent/model.gguf");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = run(&["serve-local", "--model", "smollm2", "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["serve-local", "--model", "smollm2", "--listen", "localhost"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["serve-local", "--model", "smollm2", "--engine", "vulkan"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown engine 'vulkan'"), "{err}");
    if cfg!(not(feature = "llama")) {
        // A build without llama.cpp says how to get it, on both commands that take an engine.
        for args in [
            &["serve-local", "--model", "smollm2", "--engine", "llama-cpp"][..],
            &[
                "bench",
                "--model",
                "local:smollm2",
                "--local-engine",
                "llama-cpp",
            ][..],
        ] {
            let out = run(args);
            assert_eq!(out.status.code(), Some(2));
            let err = String::from_utf8(out.stderr).unwrap();
            assert!(err.contains("--features llama"), "{err}");
        }
    }
    let out = run(&["serve-local", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("--queue-limit") && help.contains("server-timing"),
        "{help}"
    );
}

#[tokio::test]
async fn prints_listening_first_and_serves_the_model() {
    if !smollm2_installed() {
        return;
    }
    let mut cmd = bin();
    cmd.args([
        "serve-local",
        "--model",
        "smollm2",
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
    ]);
    let mut server = testkit::spawn_listening(cmd, Duration::from_secs(60)).unwrap();
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let client = reqwest::Client::new();
    let models: serde_json::Value = client
        .get(format!("{}/v1/models", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "smollm2");
    let resp = client
        .post(format!("{}/v1/chat/completions", server.url))
        .json(
            &serde_json::json!({"model": "local:smollm2", "max_tokens": 2,
            "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() <= 2,
        "{body}"
    );

    #[cfg(unix)]
    {
        let pid = server.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status:?}");
    }
}

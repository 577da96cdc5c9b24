//! `tokenpace serve` as a process: the `listening on` line, serving through the cache,
//! configuration errors that name the field, and the guard against an open listener
//! without keys.

use std::time::Duration;

use super::*;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_listening_first_and_serves_through_the_cache() {
    let upstream = ::sim::Simulator::new(::sim::SimConfig::default())
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut cmd = bin();
    cmd.args(["serve", "--upstream"])
        .arg(format!("sim={}", upstream.url()))
        .args(["--listen", "127.0.0.1:0", "--cache", "memory"]);
    let server = testkit::spawn_listening(cmd, Duration::from_secs(20)).unwrap();
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let health = client
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["upstreams"], serde_json::json!(["sim"]));

    let body = serde_json::json!({"model": "sim:tokens=3",
        "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{}/v1/chat/completions", server.url);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        seen.push(
            r.headers()
                .get("x-tokenpace-cache")
                .map(|v| v.to_str().unwrap().to_owned()),
        );
    }
    assert_eq!(seen, [Some("miss".to_owned()), Some("hit".to_owned())]);
}

#[test]
fn invalid_config_file_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        "[upstreams.x]\nurl = \"http://127.0.0.1:9\"\ntimeout = \"ten\"\n",
    )
    .unwrap();
    let out = run(&[
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--cache",
        "memory",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("upstreams.x.timeout"), "{err}");
    assert!(err.contains("10s"), "says how to write it: {err}");
    assert!(out.stdout.is_empty(), "nothing announced");

    // An unknown field is named too, with the file.
    std::fs::write(
        &file,
        "[upstreams.x]\nurl = \"http://127.0.0.1:9\"\ncolour = 1\n",
    )
    .unwrap();
    let out = run(&[
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--cache",
        "memory",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("colour"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
}

#[test]
fn public_listen_without_keys_exits_2() {
    let out = run(&[
        "serve",
        "--upstream",
        "sim=http://127.0.0.1:9",
        "--listen",
        "0.0.0.0:0",
        "--cache",
        "memory",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--allow-unauthenticated"), "{err}");
    assert!(out.stdout.is_empty(), "it never listened");
}

#[test]
fn serve_help_mentions_upstream() {
    let out = run(&["serve", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("--upstream"), "{text}");
    assert!(text.contains("NAME=URL"), "{text}");
    assert!(text.contains("--cache"), "{text}");
}

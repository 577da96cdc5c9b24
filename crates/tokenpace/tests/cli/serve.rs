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

/// The number of keys in a Redis server, over its wire protocol (no client library).
fn redis_dbsize(url: &str) -> u64 {
    use std::io::{BufRead, BufReader, Write};
    let addr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"*1\r\n$6\r\nDBSIZE\r\n").unwrap();
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).unwrap();
    line.trim().trim_start_matches(':').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_share_one_redis_cache() {
    let redis = testkit::RedisServer::start().unwrap();
    let upstream = ::sim::Simulator::new(::sim::SimConfig::default())
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let start = || {
        let mut cmd = bin();
        cmd.args(["serve", "--upstream"])
            .arg(format!("sim={}", upstream.url()))
            .args(["--listen", "127.0.0.1:0", "--redis-url", &redis.url()]);
        testkit::spawn_listening(cmd, Duration::from_secs(20)).unwrap()
    };
    let (a, b) = (start(), start());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let body = serde_json::json!({"model": "sim:tokens=4,seed=3",
        "messages": [{"role": "user", "content": "shared?"}]});
    let cache = |r: &reqwest::Response| {
        r.headers()
            .get("x-tokenpace-cache")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let first = client
        .post(format!("{}/v1/chat/completions", a.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(cache(&first).as_deref(), Some("miss"));
    let first: serde_json::Value = first.json().await.unwrap();
    // The Redis write happens in the background: wait for it, then ask the other process
    // once (asking earlier would let it cache its own answer and pass for the wrong reason).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis_dbsize(&redis.url()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway A never wrote to Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = client
        .post(format!("{}/v1/chat/completions", b.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(cache(&second).as_deref(), Some("hit"), "B serves A's entry");
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(first["choices"], second["choices"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_stream_finish_then_exits_0() {
    let upstream = ::sim::Simulator::new(::sim::SimConfig::default())
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut cmd = bin();
    cmd.args(["serve", "--upstream"])
        .arg(format!("sim={}", upstream.url()))
        .args(["--listen", "127.0.0.1:0", "--cache", "memory"]);
    let mut server = testkit::spawn_listening(cmd, Duration::from_secs(20)).unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let body = serde_json::json!({"model": "sim:itl=50ms,tokens=20", "stream": true,
        "messages": [{"role": "user", "content": "long"}]});
    let mut resp = client
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    let first = resp.chunk().await.unwrap().unwrap();
    text.push_str(&String::from_utf8_lossy(&first));
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("data: [DONE]"), "the stream finished: {text}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_1_serves_on_one_thread_and_0_is_refused() {
    let out = run(&[
        "serve",
        "--upstream",
        "sim=http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("threads"), "{}", stderr(&out));

    let upstream = ::sim::Simulator::new(::sim::SimConfig::default())
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut cmd = bin();
    cmd.args(["serve", "--upstream"])
        .arg(format!("sim={}", upstream.url()))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cache",
            "memory",
            "--threads",
            "1",
        ]);
    let server = testkit::spawn_listening(cmd, Duration::from_secs(20)).unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let body = serde_json::json!({"model": "sim:tokens=3", "stream": true,
        "messages": [{"role": "user", "content": "one thread"}]});
    let r = client
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("data: [DONE]"));
}

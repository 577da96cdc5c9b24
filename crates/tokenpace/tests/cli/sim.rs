//! `tokenpace sim` as a process.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn prints_listening_first_and_serves() {
    let mut cmd = bin();
    cmd.args([
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--rpm",
        "1",
        "--window",
        "2s",
    ]);
    let server = testkit::spawn_listening(cmd, Duration::from_secs(20)).unwrap();
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let client = reqwest::Client::new();
    let body = serde_json::json!({"model": "sim:tokens=2",
        "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{}/v1/chat/completions", server.url);
    let first = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(second.status(), 429, "--rpm 1 applies");
    let health: serde_json::Value = client
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["simulated"], true);
}

#[test]
fn bad_settings_fail_at_start_naming_the_fix() {
    let out = run(&["sim", "--listen", "127.0.0.1:0", "--tier", "gold"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--tier gold") && err.contains("tier-1"),
        "{err}"
    );

    let out = run(&["sim", "--listen", "127.0.0.1:0", "--window", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("--window soon")
    );

    let out = run(&[
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--profiles",
        "/nonexistent/p.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("/nonexistent/p.toml")
    );

    let dir = std::env::temp_dir().join(format!("tokenpace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[profiles.x]\nitl = \"fast\"\n").unwrap();
    let out = run(&[
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--profiles",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("profiles.x.itl"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["sim", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&addr), "{err}");
}

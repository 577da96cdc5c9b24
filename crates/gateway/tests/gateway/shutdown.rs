//! Graceful shutdown: a stream under way when `stop` is called still ends with its
//! terminal event, and the listener takes no new connections.

use std::time::Duration;

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_progress_completes_after_stop() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let addr = gw.addr;
    let c = client();

    let mut resp = post_chat(&c, &gw, &chat("sim:itl=50ms,tokens=20", true), &[]).await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_ok(),
        "accepting before stop"
    );
    let stopping = tokio::spawn(gw.stop());

    // While it drains, the listener is closed: new connections are refused.
    let refused = eventually(Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(refused, "still accepting connections after stop");
    assert!(!stopping.is_finished(), "stop waits for the open stream");

    // The rest of the stream arrives in full.
    let mut rest = first.to_vec();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(rest).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let tokens = text.matches("\"content\":\"").count() - text.matches("\"content\":\"\"").count();
    assert_eq!(tokens, 20, "{text}");

    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap_or_else(|_| panic!("stop did not return once the stream was over"))
        .unwrap()
        .unwrap();
    let after = c
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap_err();
    assert!(after.is_connect(), "{after}");
}

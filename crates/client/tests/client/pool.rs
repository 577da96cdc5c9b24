//! Connection reuse, pre-warming and schedule lag.

use std::time::{Duration, Instant};

use tokenpace_client::derive;

use crate::support::{chat, client, openai, send, sim};

#[tokio::test]
async fn second_request_reuses_the_connection() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let client = client();
    let req = chat(&ep, "sim:tokens=4", true, true);

    let first = send(&client, &req).await;
    assert!(first.is_success());
    assert!(!first.conn.reused);
    let tcp = first.conn.tcp.unwrap();
    assert_eq!(first.conn.rtt_estimate, Some(tcp));
    assert_eq!(client.idle_connections(&ep), 1);

    let second = send(&client, &req).await;
    assert!(second.is_success());
    assert!(second.conn.reused);
    assert_eq!(
        (second.conn.dns, second.conn.tcp, second.conn.tls),
        (None, None, None)
    );
    // The pooled connection keeps its round-trip estimate.
    assert_eq!(second.conn.rtt_estimate, Some(tcp));
    let m = derive(&second, "sim");
    assert_eq!(m.conn_setup, Some(Duration::ZERO));
    assert!(!m.new_connection);
    assert_eq!(m.network, Some(tcp));
}

#[tokio::test]
async fn prewarm_opens_the_pool_ahead() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let client = client();
    assert_eq!(client.prewarm(&ep, 3).await.unwrap(), 3);
    assert_eq!(client.idle_connections(&ep), 3);
    let ledger = send(&client, &chat(&ep, "sim:tokens=2", true, true)).await;
    assert!(ledger.is_success());
    assert!(ledger.conn.reused);
    assert!(ledger.conn.rtt_estimate.is_some());
    // Clones share the pool.
    assert_eq!(client.clone().idle_connections(&ep), 3);
}

#[tokio::test]
async fn concurrent_requests_each_get_a_connection() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let client = client();
    let req = chat(&ep, "sim:ttft=20ms,tokens=3", true, true);
    let (a, b) = tokio::join!(send(&client, &req), send(&client, &req));
    assert!(a.is_success() && b.is_success());
    assert_eq!(client.idle_connections(&ep), 2);
}

#[tokio::test]
async fn schedule_lag_when_intended_in_the_past() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let intended = Instant::now() - Duration::from_millis(100);
    let ledger = client()
        .send(&chat(&ep, "sim:ttft=10ms,tokens=3", true, true), intended)
        .await;
    assert!(ledger.is_success());
    let m = derive(&ledger, "sim");
    assert!(m.schedule_lag >= Duration::from_millis(100));
    assert_eq!(
        m.ttft_queue_inclusive.unwrap(),
        m.ttft.unwrap() + m.schedule_lag
    );
    assert_eq!(m.e2e_queue_inclusive, m.e2e + m.schedule_lag);
}

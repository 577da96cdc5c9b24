//! Anthropic Messages against the simulator: the event sequence, usage from
//! `message_delta`, thinking blocks, non-streamed bodies and 529.

use std::time::Duration;

use tokenpace_client::{ErrorClass, EventKind, TokenSource, derive};

use crate::support::{anthropic, chat, client, send, sim};

#[tokio::test]
async fn anthropic_stream_structure_and_usage() {
    let sim = sim().await;
    let ep = anthropic(&sim.url());
    let model = "sim:ttft=20ms,itl=5ms,tokens=6";
    let ledger = send(&client(), &chat(&ep, model, true, false)).await;
    let completion = ledger.outcome.clone().unwrap();
    assert_eq!(completion.finish_reason.as_deref(), Some("end_turn"));
    let kinds: Vec<EventKind> = ledger.events.iter().map(|e| e.kind).collect();
    // message_start, content_block_start, ping before any token.
    assert_eq!(
        kinds[..3],
        [
            EventKind::Structural,
            EventKind::Structural,
            EventKind::Ping
        ],
        "{kinds:?}"
    );
    assert_eq!(ledger.token_events().count(), 6);
    assert!(ledger.token_events().all(|e| e.kind == EventKind::Content));
    assert_eq!(kinds.last(), Some(&EventKind::Done));
    assert!(kinds.contains(&EventKind::Usage), "message_delta");
    let usage = ledger.usage.unwrap();
    assert_eq!(usage.output, 6);
    assert!(usage.input > 0);

    let m = derive(&ledger, model);
    assert!(m.ttft.unwrap() >= Duration::from_millis(20));
    assert_eq!(m.output_tokens, (6, TokenSource::Usage));
    assert_eq!(m.input_tokens.unwrap().1, TokenSource::Usage);
    assert_eq!(m.count_mismatch, Some(0.0));
}

#[tokio::test]
async fn anthropic_thinking_block_is_reasoning() {
    let sim = sim().await;
    let ep = anthropic(&sim.url());
    let model = "sim:ttft=10ms,itl=5ms,tokens=4,reasoning=3";
    let ledger = send(&client(), &chat(&ep, model, true, false)).await;
    assert!(ledger.is_success(), "{:?}", ledger.outcome);
    let kinds: Vec<EventKind> = ledger.token_events().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            [EventKind::Reasoning; 3].as_slice(),
            [EventKind::Content; 4].as_slice()
        ]
        .concat()
    );
    let m = derive(&ledger, model);
    assert!(m.ttft.unwrap() < m.ttfc.unwrap());
    assert_eq!(m.output_tokens.0, 7);
}

#[tokio::test]
async fn anthropic_non_streamed() {
    let sim = sim().await;
    let ep = anthropic(&sim.url());
    let ledger = send(&client(), &chat(&ep, "sim:tokens=5", false, false)).await;
    assert!(ledger.is_success(), "{:?}", ledger.outcome);
    assert_eq!(ledger.usage.unwrap().output, 5);
    let m = derive(&ledger, "sim:tokens=5");
    assert_eq!(m.ttft, None);
    assert_eq!(m.output_tokens, (5, TokenSource::Usage));
}

#[tokio::test]
async fn anthropic_529_is_a_5xx() {
    let sim = sim().await;
    let ep = anthropic(&sim.url());
    let ledger = send(
        &client(),
        &chat(&ep, "sim:fail_first=1,fail_status=529", true, false),
    )
    .await;
    assert_eq!(ledger.status, Some(529));
    match &ledger.outcome {
        Err(ErrorClass::Http5xx {
            status: 529,
            message,
        }) => {
            assert!(message.contains("Overloaded"), "{message}");
        }
        other => panic!("expected a 529, got {other:?}"),
    }
    assert_eq!(ledger.outcome.as_ref().unwrap_err().label(), "http_5xx");
}

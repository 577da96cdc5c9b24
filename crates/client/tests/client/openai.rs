//! OpenAI chat and completion streams against the simulator: the ledger's events, token
//! provenance, reasoning, multi-token chunks, non-streamed bodies and timing accuracy.

use std::time::Duration;

use tokenpace_client::{EventKind, RequestBuilder, TokenSource, WireDialect, derive};

use crate::support::{chat, client, openai, send, sim, sim_with};

#[tokio::test]
async fn streamed_chat_ledger_starts_with_the_role_chunk() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let model = "sim:ttft=50ms,itl=10ms,tokens=8";
    let ledger = send(&client(), &chat(&ep, model, true, true)).await;

    let completion = ledger.outcome.clone().unwrap();
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert_eq!(ledger.status, Some(200));
    assert!(ledger.streamed);
    // role chunk, 8 content chunks, finish chunk, usage chunk, [DONE]
    let kinds: Vec<EventKind> = ledger.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds[0], EventKind::Structural, "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == EventKind::Content).count(),
        8
    );
    assert_eq!(
        &kinds[9..],
        &[EventKind::Structural, EventKind::Usage, EventKind::Done]
    );
    // Stamps are ordered and `at` never follows `done_at`.
    for pair in ledger.events.windows(2) {
        assert!(pair[0].at <= pair[1].at);
    }
    assert!(ledger.events.iter().all(|e| e.at <= e.done_at));

    let connected = ledger.connected.unwrap();
    let written = ledger.request_written.unwrap();
    let headers = ledger.headers_at.unwrap();
    let first_byte = ledger.first_byte.unwrap();
    assert!(ledger.dispatched <= connected && connected <= written);
    assert!(written <= headers && headers <= first_byte);
    assert!(!ledger.conn.reused);
    assert!(ledger.conn.tcp.is_some());
    assert_eq!(ledger.conn.dns, None, "an IP address needs no DNS");
    assert!(ledger.server_queue.unwrap() < Duration::from_millis(5));
    assert!(
        ledger
            .request_id
            .as_deref()
            .is_some_and(|id| id.starts_with("req_sim"))
    );

    let m = derive(&ledger, model);
    let ttft = m.ttft.unwrap();
    assert!(ttft >= Duration::from_millis(50), "{ttft:?}");
    // The role chunk went out at once: the first body byte is well before the first token.
    assert!(m.time_to_first_byte.unwrap() + Duration::from_millis(30) < ttft);
    assert_eq!(m.ttfc, m.ttft);
    assert_eq!(m.output_tokens, (8, TokenSource::Usage));
    assert_eq!(m.tokenizer_output_tokens, Some(8));
    assert_eq!(m.count_mismatch, Some(0.0));
    assert!(m.input_tokens.unwrap().0 > 0);
    assert_eq!(m.icl.len(), 7);
    assert_eq!(m.itl.len(), 7);
    assert!(m.ttlt.unwrap() <= m.e2e);
    assert!(m.new_connection);
    assert!(m.conn_setup.unwrap() > Duration::ZERO);
}

#[tokio::test]
async fn without_include_usage_tokens_come_from_the_tokenizer() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let model = "sim:tokens=12";
    let ledger = send(&client(), &chat(&ep, model, true, false)).await;
    assert!(ledger.is_success());
    assert_eq!(ledger.usage, None);
    assert!(!ledger.events.iter().any(|e| e.kind == EventKind::Usage));
    let m = derive(&ledger, model);
    assert_eq!(m.output_tokens, (12, TokenSource::Tokenizer));
    assert_eq!(m.count_mismatch, None);
    // Input falls back to the request's client-side estimate.
    assert_eq!(m.input_tokens.unwrap().1, TokenSource::Tokenizer);
    // A model outside the OpenAI family would fall back to chunk counts (the derive unit
    // tests cover that on hand-built ledgers; the simulator only answers `sim*` names).
    let m = derive(&ledger, "llama-3.1-8b");
    assert_eq!(m.output_tokens, (12, TokenSource::Chunks));
}

#[tokio::test]
async fn reasoning_comes_first_so_ttft_precedes_ttfc() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let model = "sim:ttft=20ms,itl=10ms,tokens=6,reasoning=4";
    let ledger = send(&client(), &chat(&ep, model, true, true)).await;
    assert!(ledger.is_success(), "{:?}", ledger.outcome);
    let kinds: Vec<EventKind> = ledger.token_events().map(|e| e.kind).collect();
    assert_eq!(kinds[..4], [EventKind::Reasoning; 4]);
    assert!(kinds[4..].iter().all(|k| *k == EventKind::Content));
    let m = derive(&ledger, model);
    let (ttft, ttfc) = (m.ttft.unwrap(), m.ttfc.unwrap());
    assert!(ttft < ttfc, "{ttft:?} vs {ttfc:?}");
    // The first content token is due 40 ms after the first reasoning token.
    assert!(
        ttfc - ttft >= Duration::from_millis(20),
        "{ttft:?} vs {ttfc:?}"
    );
    assert_eq!(m.reasoning_tokens, Some(4));
    assert_eq!(m.output_tokens, (10, TokenSource::Usage));
}

#[tokio::test]
async fn multi_token_chunks_split_icl_from_apportioned_itl() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let model = "sim:ttft=10ms,itl=10ms,tokens=16,chunk=4";
    let ledger = send(&client(), &chat(&ep, model, true, true)).await;
    assert!(ledger.is_success());
    assert_eq!(ledger.token_events().count(), 4);
    let m = derive(&ledger, model);
    assert_eq!(m.output_tokens, (16, TokenSource::Usage));
    assert_eq!(m.icl.len(), 3);
    assert_eq!(m.itl.len(), 12, "4 samples per gap");
    for (gap, samples) in m.icl.iter().zip(m.itl.chunks(4)) {
        // A chunk of 4 tokens is due 40 ms after the previous one (one late chunk makes
        // the next gap shorter: the simulator keeps to its schedule).
        assert!(*gap >= Duration::from_millis(20), "{gap:?}");
        assert!(samples.iter().all(|s| *s == *gap / 4));
    }
    let decode: Duration = m.icl.iter().sum();
    // 120 ms as scheduled, less any lateness of the first chunk.
    assert!(decode >= Duration::from_millis(90), "{decode:?}");
}

#[tokio::test]
async fn non_streamed_chat_has_no_ttft() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let model = "sim:ttft=20ms,itl=2ms,tokens=10";
    let ledger = send(&client(), &chat(&ep, model, false, false)).await;
    assert!(ledger.is_success(), "{:?}", ledger.outcome);
    assert!(!ledger.streamed);
    assert!(ledger.events.is_empty());
    assert!(!ledger.text.is_empty());
    assert_eq!(ledger.usage.unwrap().output, 10);
    let m = derive(&ledger, model);
    assert_eq!((m.ttft, m.ttfc, m.ttlt, m.tpot), (None, None, None, None));
    assert!(m.e2e >= Duration::from_millis(38));
    assert_eq!(m.output_tokens, (10, TokenSource::Usage));
    assert!(m.processing.unwrap() >= Duration::from_millis(30));
    let tps = m.output_tps.unwrap();
    assert!(tps > 0.0 && tps < 10.0 / 0.038, "{tps}");
}

#[tokio::test]
async fn legacy_completion_stream_from_a_raw_body() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let body = serde_json::json!({
        "model": "sim:tokens=5",
        "prompt": "Once upon a time",
        "max_tokens": 5,
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let req = RequestBuilder::from_body(&ep, "/completions", body).unwrap();
    assert_eq!(req.dialect(), WireDialect::OpenAiCompletion);
    let ledger = send(&client(), &req).await;
    assert!(ledger.is_success(), "{:?}", ledger.outcome);
    assert_eq!(ledger.token_events().count(), 5);
    assert_eq!(ledger.usage.unwrap().output, 5);
}

/// The client's numbers against the simulator's own record of when it wrote each token.
/// The bounds hold on a machine busy with the rest of the test suite; the tight figures
/// (within 1 ms) come from `scripts/bench-perf.sh` on a quiet machine.
#[tokio::test]
async fn timing_matches_the_simulators_emit_record() {
    let (sim, stats) = sim_with(sim::SimConfig::default()).await;
    let ep = openai(&sim.url());
    let client = client();
    // A warm connection, as a real run would have after warm-up.
    assert_eq!(client.prewarm(&ep, 1).await.unwrap(), 1);
    let model = "sim:ttft=50ms,itl=10ms,tokens=16";
    let ledger = send(&client, &chat(&ep, model, true, true)).await;
    assert!(ledger.is_success());
    let m = derive(&ledger, model);

    let tpot = m.tpot.unwrap().as_secs_f64() * 1000.0;
    assert!((tpot - 10.0).abs() <= 3.0, "TPOT {tpot} ms");
    let sim_ttft = stats.snapshot().emit.ttft.p50_ms;
    let ttft = m.ttft.unwrap().as_secs_f64() * 1000.0;
    assert!(
        ttft >= sim_ttft - 1.0 && ttft - sim_ttft <= 25.0,
        "client TTFT {ttft} ms vs simulator {sim_ttft} ms"
    );
}

use crate::support::{chat, client, openai, raw_server, send, sse_response};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_tmp() {
    let chunk = r#"data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}],"obfuscation":"abcd"}"#;
    let mut events = vec![chunk; 200_000];
    events.push("data: [DONE]");
    let url = raw_server(sse_response(&events)).await;
    let ep = openai(&url);
    let c = client();
    for _ in 0..3 {
        let t = Instant::now();
        let l = send(&c, &chat(&ep, "gpt-4o-mini", true, false)).await;
        let el = t.elapsed();
        println!(
            "{} events in {:?}: {:.0} events/s, {:?}",
            l.events.len(),
            el,
            l.events.len() as f64 / el.as_secs_f64(),
            l.outcome.as_ref().map(|_| ())
        );
    }
}

#[test]
fn parse_cost_tmp() {
    #[derive(serde::Deserialize)]
    struct Lean<'a> {
        #[serde(borrow)]
        choices: Vec<LeanChoice<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct LeanChoice<'a> {
        #[serde(borrow)]
        delta: LeanDelta<'a>,
    }
    #[derive(serde::Deserialize)]
    struct LeanDelta<'a> {
        #[serde(borrow, default)]
        content: Option<std::borrow::Cow<'a, str>>,
    }
    let chunk = r#"{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}],"obfuscation":"abcd"}"#;
    let t = Instant::now();
    for _ in 0..200_000 {
        let c: protocol::openai::ChatCompletionChunk = serde_json::from_str(chunk).unwrap();
        std::hint::black_box(c);
    }
    println!("full: {:?}", t.elapsed());
    let t = Instant::now();
    for _ in 0..200_000 {
        let c: Lean = serde_json::from_str(chunk).unwrap();
        std::hint::black_box(c.choices.len());
    }
    println!("lean: {:?}", t.elapsed());
    let t = Instant::now();
    let mut f = protocol::sse::SseDecoder::default();
    let line = format!("data: {chunk}\n\n");
    for _ in 0..200_000 {
        let e = f.push(line.as_bytes()).unwrap();
        std::hint::black_box(e);
    }
    println!("sse: {:?}", t.elapsed());
}

//! Pacing behind a real gateway: retries (the retry policy, `retry-after` honoured),
//! fallbacks across a route's targets, TTFT timeouts, hedging, latency-aware routing, and
//! admission control against the simulator's tier limits — bursts queued instead of
//! refused, priority classes, queue deadlines, requests too large for the tier, limits
//! learned from rate-limit headers, and two gateways sharing one Redis ledger.
//!
//! The simulator is the provider: its tier (a short window, a handful of requests) answers
//! over-limit requests with real 429s, and its `/stats` counts them, so "the upstream saw
//! zero 429s" is checked where it happens. Timing bounds are generous (a loaded 2-core
//! machine): lower bounds come from the windows, upper bounds only guard against hangs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sim::config::SimConfig;
use sim::tier::TierLimits;
use sim::{RunningSim, Simulator};
use testkit::RedisServer;
use tokenpace_gateway::RunningGateway;

use super::support::*;

const NO_STORE: (&str, &str) = ("cache-control", "no-store");

/// A simulator whose every key has `rpm` requests per `window`.
async fn sim_with_tier(rpm: u64, window: Duration) -> RunningSim {
    Simulator::new(SimConfig {
        window,
        default_limits: TierLimits {
            rpm: Some(rpm),
            ..TierLimits::default()
        },
        ..SimConfig::default()
    })
    .unwrap()
    .spawn("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

/// A chat body whose prompt carries `tag`, so no two requests of a burst are identical.
fn chat_tagged(model: &str, tag: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": format!("Request {tag}: say something.")}],
        "stream": stream,
    })
}

/// Responses of every status the simulator sent (all models).
async fn sim_status_count(sim: &RunningSim, status: u16) -> u64 {
    sim_stats(sim).await["responses_by_status"][status.to_string()]
        .as_u64()
        .unwrap_or(0)
}

/// The sum of every series of counter `name` (0 when it has none).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            (rest.is_empty() || rest.starts_with('{'))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The `queue;dur=` of a `server-timing` header, if the request waited.
fn queue_wait(resp: &reqwest::Response) -> Option<Duration> {
    let timing = header(resp, "server-timing")?;
    timing.split(',').find_map(|part| {
        let ms: f64 = part.trim().strip_prefix("queue;dur=")?.parse().ok()?;
        Some(Duration::from_secs_f64(ms / 1000.0))
    })
}

/// What one request of a burst came back with.
#[derive(Debug)]
struct Outcome {
    status: u16,
    upstream: Option<String>,
    queued: Option<Duration>,
}

/// Sends `n` distinct non-streamed requests for `model` to the gateways (round robin) all
/// at once, with `headers` and no cache, and reads every body to its end.
async fn burst(
    gws: &[&RunningGateway],
    model: &str,
    n: usize,
    headers: &[(&'static str, &'static str)],
) -> Vec<Outcome> {
    let c = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        let url = gws[i % gws.len()].url();
        let body = chat_tagged(model, &format!("burst-{i}"), false);
        let headers = headers.to_vec();
        tasks.spawn(async move {
            let mut req = c.post(format!("{url}/v1/chat/completions")).json(&body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let upstream = header(&r, "x-tokenpace-upstream");
            let queued = queue_wait(&r);
            let body: Value = r.json().await.unwrap();
            if status == 200 {
                assert!(!body_text(&body).is_empty(), "{body}");
            }
            Outcome {
                status,
                upstream,
                queued,
            }
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        out.push(r.unwrap());
    }
    out
}

// ---- 1. retries ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_until_the_upstream_answers() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let model = "sim:tokens=3,fail_first=2,fail_status=503";
    let r = post_chat(&client(), &gw, &chat(model, false), &[NO_STORE]).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(!body_text(&body).is_empty(), "{body}");
    assert_eq!(upstream_requests(&sim, model).await, 3);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "tokenpace_retries_total{upstream=\"sim\",reason=\"5xx\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "tokenpace_upstream_requests_total{upstream=\"sim\",status=\"503\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after() {
    let sim = sim().await;
    // What the simulator's injected 429 says (asked directly, with its own model string:
    // `fail_first` counts per exact model string).
    let probe = client()
        .post(format!("{}/v1/chat/completions", sim.url()))
        .json(&chat(
            "sim:tokens=3,fail_first=1,fail_status=429,seed=1",
            false,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 429);
    let retry_after: u64 = header(&probe, "retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);

    let gw = memory_gateway(&sim).await;
    let model = "sim:tokens=3,fail_first=1,fail_status=429,seed=2";
    let started = Instant::now();
    let r = post_chat(&client(), &gw, &chat(model, false), &[NO_STORE]).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(
        elapsed >= Duration::from_secs(retry_after),
        "retried after {elapsed:?}, before the upstream's retry-after of {retry_after}s"
    );
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert_eq!(upstream_requests(&sim, model).await, 2);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "tokenpace_retries_total{upstream=\"sim\",reason=\"429\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "tokenpace_upstream_pauses_total{upstream=\"sim\"}").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_the_503_passes_through() {
    let sim = sim().await;
    let gw = memory_gateway_no_retries(&sim).await;
    let model = "sim:tokens=3,fail_first=2,fail_status=503";
    let r = post_chat(&client(), &gw, &chat(model, false), &[NO_STORE]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "x-tokenpace-upstream").as_deref(), Some("sim"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("simulated fault")),
        "the upstream's own error body: {body}"
    );
    assert_eq!(upstream_requests(&sim, model).await, 1);
    let text = metrics(&gw).await;
    assert_eq!(metric_sum(&text, "tokenpace_retries_total"), 0.0);
}

// ---- 2. fallbacks and TTFT timeouts ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_falls_back_to_the_next() {
    let sim = sim().await;
    let port = closed_port();
    let gw = gateway(config(&format!(
        "[upstreams.down]\nurl = \"http://127.0.0.1:{port}\"\nconnect_timeout = \"2s\"\n\n\
         [upstreams.sim]\nurl = \"{}\"\n\n\
         [cache]\nstore = \"memory\"\n\n\
         [[routes]]\nmodel = \"chat\"\ntargets = [\"down/m\", \"sim/sim:tokens=3\"]\n",
        sim.url()
    )))
    .await;
    let c = client();
    for stream in [false, true] {
        let r = post_chat(&c, &gw, &chat("chat", stream), &[NO_STORE]).await;
        assert_eq!(r.status(), 200, "stream={stream}");
        assert_eq!(header(&r, "x-tokenpace-upstream").as_deref(), Some("sim"));
        if stream {
            let s = testkit::read_sse(r).await.unwrap();
            assert!(ends_with_done(&s), "{:?}", s.data());
            assert_eq!(content_chunks(&s), 3);
        } else {
            let body: Value = r.json().await.unwrap();
            assert!(!body_text(&body).is_empty(), "{body}");
        }
    }
    assert_eq!(upstream_requests(&sim, "sim:tokens=3").await, 2);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(&text, "tokenpace_fallbacks_total{route=\"chat\"}"),
        Some(2.0),
        "one fallback per request: {text}"
    );
    assert_eq!(
        metric(
            &text,
            "tokenpace_upstream_requests_total{upstream=\"down\",status=\"0\"}"
        ),
        Some(2.0)
    );
}

/// Two upstreams on one simulator: `slow` gives up after `ttft_timeout`, `fast` answers.
fn ttft_toml(sim: &RunningSim, slow_model: &str) -> String {
    format!(
        "[upstreams.slow]\nurl = \"{url}\"\nttft_timeout = \"200ms\"\n\n\
         [upstreams.fast]\nurl = \"{url}\"\n\n\
         [cache]\nstore = \"memory\"\n\n\
         [[routes]]\nmodel = \"chat\"\ntargets = [\"slow/{slow_model}\", \"fast/sim:tokens=3\"]\n",
        url = sim.url()
    )
}

async fn assert_fast_answers_within_the_ttft_timeout(slow_model: &str, api: client::Api) {
    let sim = sim().await;
    let gw = gateway(config(&ttft_toml(&sim, slow_model))).await;
    let (path, body) = match api {
        client::Api::OpenAi => ("/v1/chat/completions", chat("chat", true)),
        client::Api::Anthropic => ("/v1/messages", messages("chat", true)),
    };
    let started = Instant::now();
    let r = post_with(&client(), &gw, path, &body, &[NO_STORE]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tokenpace-upstream").as_deref(), Some("fast"));
    let s = testkit::read_sse(r).await.unwrap();
    let took = started.elapsed();
    assert_eq!(content_chunks(&s), 3, "{:?}", s.data());
    match api {
        client::Api::OpenAi => assert!(ends_with_done(&s), "{:?}", s.data()),
        client::Api::Anthropic => assert_eq!(
            s.events.last().and_then(|e| e.event.event.as_deref()),
            Some("message_stop")
        ),
    }
    assert!(
        took < Duration::from_millis(1500),
        "the slow target (first token after 3 s) was waited for: {took:?}"
    );
    assert_eq!(upstream_requests(&sim, slow_model).await, 1);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "tokenpace_retries_total{upstream=\"slow\",reason=\"transport\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "tokenpace_fallbacks_total{route=\"chat\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_token_fails_over_after_ttft_timeout() {
    // The head and the role chunk come at once; the first token after 3 s.
    assert_fast_answers_within_the_ttft_timeout("sim:ttft=3s,tokens=3", client::Api::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_token_fails_over_on_the_messages_api() {
    // `message_start` comes at once (as from Anthropic); the first text delta after 3 s.
    assert_fast_answers_within_the_ttft_timeout("sim:ttft=3s,tokens=3", client::Api::Anthropic)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_response_head_fails_over_after_ttft_timeout() {
    // The simulator's network delay holds back even the response head for 3 s: the TTFT
    // timeout must cover the wait for the head too.
    assert_fast_answers_within_the_ttft_timeout("sim:net=3s,tokens=3", client::Api::OpenAi).await;
}

// ---- 3. hedging ------------------------------------------------------------------------

fn hedge_toml(sim: &RunningSim, max_share: f64) -> String {
    format!(
        "[upstreams.a]\nurl = \"{url}\"\n\n[upstreams.b]\nurl = \"{url}\"\n\n\
         [cache]\nstore = \"memory\"\n\n\
         [[routes]]\nmodel = \"chat\"\n\
         targets = [\"a/sim:ttft=2s,tokens=3\", \"b/sim:ttft=10ms,tokens=3\"]\n\
         hedge_after = \"150ms\"\nhedge_max_share = {max_share:.1}\n",
        url = sim.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_target_is_hedged_and_the_hedge_wins() {
    let sim = sim().await;
    let gw = gateway(config(&hedge_toml(&sim, 1.0))).await;
    let started = Instant::now();
    let r = post_chat(&client(), &gw, &chat("chat", true), &[NO_STORE]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tokenpace-upstream").as_deref(), Some("b"));
    let s = testkit::read_sse(r).await.unwrap();
    let took = started.elapsed();
    assert!(ends_with_done(&s), "{:?}", s.data());
    assert_eq!(content_chunks(&s), 3);
    assert!(
        took < Duration::from_millis(1500),
        "the hedge should answer long before a's 2 s: {took:?}"
    );
    // Both were asked: a first, b after 150 ms.
    assert_eq!(upstream_requests(&sim, "sim:ttft=2s,tokens=3").await, 1);
    assert_eq!(upstream_requests(&sim, "sim:ttft=10ms,tokens=3").await, 1);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "tokenpace_hedges_total{route=\"chat\",result=\"sent\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "tokenpace_hedges_total{route=\"chat\",result=\"won\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_hedge_share_sends_no_hedge() {
    let sim = sim().await;
    let gw = gateway(config(&hedge_toml(&sim, 0.0))).await;
    let started = Instant::now();
    let r = post_chat(&client(), &gw, &chat("chat", true), &[NO_STORE]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tokenpace-upstream").as_deref(), Some("a"));
    let s = testkit::read_sse(r).await.unwrap();
    assert!(ends_with_done(&s), "{:?}", s.data());
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(upstream_requests(&sim, "sim:ttft=10ms,tokens=3").await, 0);
    let text = metrics(&gw).await;
    assert_eq!(metric_sum(&text, "tokenpace_hedges_total"), 0.0);
}

// ---- 4. latency-aware routing ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_strategy_prefers_the_faster_target() {
    let sim = sim().await;
    let gw = gateway(config(&format!(
        "[upstreams.slow]\nurl = \"{url}\"\n\n[upstreams.fast]\nurl = \"{url}\"\n\n\
         [cache]\nstore = \"memory\"\n\n\
         [[routes]]\nmodel = \"chat\"\nstrategy = \"latency\"\n\
         targets = [\"slow/sim:ttft=250ms,tokens=3\", \"fast/sim:tokens=3\"]\n",
        url = sim.url()
    )))
    .await;
    let c = client();
    let mut picks = Vec::new();
    for i in 0..30 {
        let r = post_chat(
            &c,
            &gw,
            &chat_tagged("chat", &i.to_string(), false),
            &[NO_STORE],
        )
        .await;
        assert_eq!(r.status(), 200);
        picks.push(header(&r, "x-tokenpace-upstream").unwrap());
        drop(r.bytes().await.unwrap());
    }
    // Unmeasured targets are tried first, so the warm-up measures both.
    assert!(picks[..10].iter().any(|p| p == "slow"), "{picks:?}");
    let fast = picks[10..].iter().filter(|p| *p == "fast").count();
    assert!(
        fast >= 16,
        "{fast} of 20 went to the fast target: {picks:?}"
    );
}

// ---- 5. admission ----------------------------------------------------------------------

/// A gateway in front of `sim` whose upstream has `limits` (TOML lines) and a 2 s window.
async fn limited_gateway(sim: &RunningSim, limits: &str, rest: &str) -> RunningGateway {
    gateway(config(&format!(
        "[upstreams.sim]\nurl = \"{}\"\nwindow = \"2s\"\n{limits}\n\n\
         [cache]\nstore = \"memory\"\n\n{rest}\n",
        sim.url()
    )))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_above_the_tier_is_paced_without_upstream_429s() {
    let sim = sim_with_tier(4, Duration::from_secs(2)).await;
    let gw = limited_gateway(&sim, "rpm = 4", "").await;
    let started = Instant::now();
    let outcomes = burst(&[&gw], "sim:tokens=3", 12, &[NO_STORE]).await;
    let took = started.elapsed();
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        sim_status_count(&sim, 429).await,
        0,
        "{}",
        sim_stats(&sim).await
    );
    assert_eq!(sim_status_count(&sim, 200).await, 12);
    // 4 per 2 s window: the last 4 cannot be sent before the third window, 4 s in.
    assert!(took >= Duration::from_millis(3900), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let waited = outcomes
        .iter()
        .filter(|o| o.queued.is_some_and(|q| q >= Duration::from_millis(1500)))
        .count();
    assert!(
        waited >= 8,
        "the requests of the 2nd and 3rd windows report their wait in server-timing: {outcomes:?}"
    );
    let text = metrics(&gw).await;
    assert!(
        metric(
            &text,
            "tokenpace_admission_total{upstream=\"sim\",result=\"queued\"}"
        )
        .unwrap_or(0.0)
            >= 8.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "tokenpace_queue_wait_seconds_count{upstream=\"sim\"}"
        )
        .unwrap_or(0.0)
            >= 12.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_requests_overtake_queued_batch_requests() {
    let sim = sim().await;
    let gw = limited_gateway(&sim, "rpm = 3", "").await;
    let c = client();
    // Fill the window.
    for i in 0..3 {
        let r = post_chat(
            &c,
            &gw,
            &chat_tagged("sim:tokens=3", &format!("fill-{i}"), false),
            &[NO_STORE],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(queue_wait(&r), None, "the first 3 fit at once");
    }
    let send = |class: &'static str, i: usize| {
        let c = c.clone();
        let url = gw.url();
        async move {
            let r = c
                .post(format!("{url}/v1/chat/completions"))
                .header("tokenpace-priority", class)
                .header(NO_STORE.0, NO_STORE.1)
                .json(&chat_tagged("sim:tokens=3", &format!("{class}-{i}"), false))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{class} {i}");
            drop(r.bytes().await.unwrap());
            (class, Instant::now())
        }
    };
    let admission = gw.state.dispatcher.admission();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..3 {
        tasks.spawn(send("batch", i));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            admission.total_depth() == 3
        })
        .await,
        "the batch requests queue"
    );
    for i in 0..3 {
        tasks.spawn(send("interactive", i));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            admission.total_depth() == 6
        })
        .await,
        "the interactive requests queue behind them"
    );
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        done.push(r.unwrap());
    }
    let last_interactive = done
        .iter()
        .filter(|(c, _)| *c == "interactive")
        .map(|(_, at)| *at)
        .max()
        .unwrap();
    let first_batch = done
        .iter()
        .filter(|(c, _)| *c == "batch")
        .map(|(_, at)| *at)
        .min()
        .unwrap();
    assert!(
        last_interactive < first_batch,
        "interactive requests queued later finish first: {done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_deadline_is_a_429_with_retry_after() {
    let sim = sim().await;
    let gw = gateway(config(&format!(
        "[upstreams.sim]\nurl = \"{}\"\nrpm = 1\nwindow = \"10s\"\n\n[cache]\nstore = \"memory\"\n",
        sim.url()
    )))
    .await;
    let c = client();
    let r = post_chat(
        &c,
        &gw,
        &chat_tagged("sim:tokens=3", "first", false),
        &[NO_STORE],
    )
    .await;
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    let r = post_chat(
        &c,
        &gw,
        &chat_tagged("sim:tokens=3", "second", false),
        &[NO_STORE, ("tokenpace-queue-timeout", "100ms")],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(r.status(), 429);
    assert!(took >= Duration::from_millis(90), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let secs: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    let ms: u64 = header(&r, "retry-after-ms").unwrap().parse().unwrap();
    // The window frees its one slot ~10 s after the first request (plus the gateway's
    // 2% guard against network jitter: 10.2 s).
    assert!((1..=11).contains(&secs), "retry-after {secs}");
    assert!((1_000..=10_200).contains(&ms), "retry-after-ms {ms}");
    assert_eq!(secs, ms.div_ceil(1000), "the two headers agree");
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tokenpace-queue-timeout")),
        "{err}"
    );
    assert_eq!(
        upstream_requests(&sim, "sim:tokens=3").await,
        1,
        "never sent"
    );
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "tokenpace_admission_total{upstream=\"sim\",result=\"rejected\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_above_the_tier_is_a_400_naming_the_limit() {
    let sim = sim().await;
    let gw = limited_gateway(&sim, "tpm = 1000", "").await;
    let mut body = chat("sim:tokens=3", false);
    body["max_tokens"] = json!(5000);
    let r = post_chat(&client(), &gw, &body, &[NO_STORE]).await;
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("allows 1,000 per 2s"), "{message}");
    assert!(message.contains("max_tokens"), "{message}");
    assert_eq!(err["error"]["code"], "request_too_large_for_tier", "{err}");
    assert_eq!(err["error"]["param"], "max_tokens", "{err}");
    assert_eq!(upstream_requests(&sim, "sim:tokens=3").await, 0);
    // Within the limit it is served.
    body["max_tokens"] = json!(100);
    let r = post_chat(&client(), &gw, &body, &[NO_STORE]).await;
    assert_eq!(r.status(), 200);
}

// ---- 6. limits learned from headers ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_learned_from_headers_pace_a_burst() {
    let sim = sim_with_tier(4, Duration::from_secs(2)).await;
    // No limits configured: only the window, which no header states.
    let gw = limited_gateway(&sim, "", "").await;
    let r = post_chat(
        &client(),
        &gw,
        &chat_tagged("sim:tokens=3", "warm-up", false),
        &[NO_STORE],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-ratelimit-limit-requests").as_deref(),
        Some("4")
    );
    drop(r.bytes().await.unwrap());

    let started = Instant::now();
    let outcomes = burst(&[&gw], "sim:tokens=3", 10, &[NO_STORE]).await;
    let took = started.elapsed();
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        sim_status_count(&sim, 429).await,
        0,
        "the learned limit (and the warm-up the upstream counted) paced the burst: {}",
        sim_stats(&sim).await
    );
    // 11 requests (the warm-up counts) at 4 per 2 s: the last ones go out in the third
    // window, 4 s after the burst began.
    assert!(took >= Duration::from_millis(3900), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(outcomes.iter().filter(|o| o.queued.is_some()).count() >= 6);
    let text = metrics(&gw).await;
    assert_eq!(metric_sum(&text, "tokenpace_retries_total"), 0.0);
}

// ---- 7. two gateways, one Redis ledger -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_share_the_tier() {
    let redis = RedisServer::start().unwrap();
    let sim = sim_with_tier(4, Duration::from_secs(2)).await;
    let admission = format!(
        "[admission]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    let a = limited_gateway(&sim, "rpm = 4", &admission).await;
    let b = limited_gateway(&sim, "rpm = 4", &admission).await;
    let started = Instant::now();
    let outcomes = burst(&[&a, &b], "sim:tokens=3", 12, &[NO_STORE]).await;
    let took = started.elapsed();
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.upstream.as_deref() == Some("sim"))
    );
    assert_eq!(
        sim_status_count(&sim, 429).await,
        0,
        "{}",
        sim_stats(&sim).await
    );
    assert_eq!(sim_status_count(&sim, 200).await, 12);
    // Alone, each gateway would send its 6 in two windows; together they need three.
    assert!(took >= Duration::from_millis(3900), "{took:?}");
    for gw in [&a, &b] {
        let text = metrics(gw).await;
        assert_eq!(metric_sum(&text, "tokenpace_retries_total"), 0.0);
    }
}

// ---- faults: stalls and resets -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_before_the_first_token_fails_over_after_ttft_timeout() {
    assert_fast_answers_within_the_ttft_timeout("sim:stall=3s,tokens=3", client::Api::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_the_first_token_is_retried_on_the_next_target() {
    let sim = sim().await;
    let gw = gateway(config(&format!(
        "[upstreams.a]\nurl = \"{url}\"\n\n[upstreams.b]\nurl = \"{url}\"\n\n\
         [cache]\nstore = \"memory\"\n\n\
         [[routes]]\nmodel = \"chat\"\ntargets = [\"a/sim:tokens=5,reset_after=0\", \"b/sim:tokens=3\"]\n",
        url = sim.url()
    )))
    .await;
    let r = post_chat(&client(), &gw, &chat("chat", true), &[NO_STORE]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tokenpace-upstream").as_deref(), Some("b"));
    let s = testkit::read_sse(r).await.unwrap();
    assert!(ends_with_done(&s), "{:?}", s.data());
    assert_eq!(content_chunks(&s), 3);
    assert_eq!(
        upstream_requests(&sim, "sim:tokens=5,reset_after=0").await,
        1,
        "the reset target was tried once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_the_first_token_is_an_error_event_never_a_retry() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let model = "sim:tokens=6,reset_after=2";
    let r = post_chat(&client(), &gw, &chat(model, true), &[NO_STORE]).await;
    assert_eq!(r.status(), 200, "the stream had started");
    let s = testkit::read_sse(r).await.unwrap();
    assert!(!ends_with_done(&s), "{:?}", s.data());
    let last: Value = serde_json::from_str(s.data().last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].is_string(),
        "ends with an error event: {last}"
    );
    assert_eq!(
        content_chunks(&s),
        2,
        "the tokens before the reset were relayed once"
    );
    assert_eq!(
        upstream_requests(&sim, model).await,
        1,
        "nothing is retried once a token reached the client"
    );
}

//! The timed token stream of one admitted request: slots (the queue), the emit schedule,
//! the recording of actual emit times, and the settling of the tier charge when the
//! response ends for any reason (complete, fault, or client gone).
//!
//! The schedule is computed from prescribed times, never from actual ones, so lateness does
//! not accumulate: token k is due at `first_due + sum of the per-token decode times`, each
//! decode time scaled by the slots occupied when it is scheduled. A chunk is stamped when it
//! is handed to the HTTP connection, which writes it at once (TCP_NODELAY, no buffering).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::plan::{Finish, Plan};
use crate::stats::Stats;
use crate::text::TokenText;
use crate::tier::{Admission, Charge, Limiter};
use crate::timer::PreciseTimer;

/// The concurrent slots of one profile: a FIFO semaphore (tokio's is fair) and the count of
/// occupied slots that drives the batching slowdown.
#[derive(Debug)]
pub struct SlotPool {
    semaphore: Option<Arc<Semaphore>>,
    active: AtomicU32,
}

impl SlotPool {
    /// A pool of `slots` slots (0 = unlimited).
    pub fn new(slots: u32) -> Self {
        SlotPool {
            semaphore: (slots > 0).then(|| Arc::new(Semaphore::new(slots as usize))),
            active: AtomicU32::new(0),
        }
    }

    /// Waits (FIFO) for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        let permit = match &self.semaphore {
            // The semaphore is never closed, so acquiring cannot fail.
            Some(sem) => sem.clone().acquire_owned().await.ok(),
            None => None,
        };
        self.active.fetch_add(1, Ordering::Relaxed);
        Slot {
            pool: self.clone(),
            _permit: permit,
        }
    }

    fn occupied(&self) -> u32 {
        self.active.load(Ordering::Relaxed).max(1)
    }
}

/// An occupied slot, released on drop.
#[derive(Debug)]
pub struct Slot {
    pool: Arc<SlotPool>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which part of the output a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reasoning ("thinking") tokens, sent first.
    Reasoning,
    /// The visible answer.
    Content,
}

/// One step of a response.
#[derive(Debug)]
pub enum Step {
    /// `n` tokens of one kind, with their text; emitted at their due time.
    Tokens {
        /// Reasoning or content.
        kind: Kind,
        /// The tokens' text.
        text: String,
    },
    /// Injected fault: reset the connection now.
    Reset,
    /// Injected fault: end without the terminal event now.
    Truncate,
    /// Injected fault: send an error event inside the stream, then end.
    Error,
    /// All tokens are out: send the terminal events.
    Done(Finish),
}

/// Token counts of a response so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Input tokens.
    pub input: u64,
    /// Output tokens sent, reasoning included.
    pub output: u64,
    /// Reasoning tokens among them.
    pub reasoning: u64,
}

/// Shared services a response needs.
#[derive(Debug, Clone)]
pub struct EmitCtx {
    /// The precise timer.
    pub timer: PreciseTimer,
    /// The recorder.
    pub stats: Arc<Stats>,
    /// The tier limiter, to settle the charge.
    pub limiter: Arc<Limiter>,
}

/// Timing parameters copied out of the profile.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the request was received (TTFT is measured from here).
    pub received: Instant,
    /// When the first token is due.
    pub first_due: Instant,
    /// Decode time per token at one occupied slot.
    pub itl: Duration,
    /// Slowdown per additional occupied slot.
    pub batch_slowdown: f64,
    /// Tokens per chunk.
    pub chunk_tokens: u32,
}

/// The running response of one admitted request.
#[derive(Debug)]
pub struct Emission {
    ctx: EmitCtx,
    model: String,
    plan: Plan,
    timing: Timing,
    text: TokenText,
    slot: Slot,
    admission: Option<Admission>,
    counts: Counts,
    last_due: Instant,
    last_emit: Instant,
    done: bool,
}

impl Emission {
    /// Starts the response of an admitted request that holds `slot`.
    pub fn new(
        ctx: EmitCtx,
        model: String,
        plan: Plan,
        timing: Timing,
        slot: Slot,
        admission: Option<Admission>,
        input_tokens: u64,
    ) -> Self {
        let text = TokenText::new(plan.text_seed);
        Emission {
            ctx,
            model,
            plan,
            text,
            slot,
            admission,
            counts: Counts {
                input: input_tokens,
                ..Counts::default()
            },
            last_due: timing.first_due,
            last_emit: timing.received,
            timing,
            done: false,
        }
    }

    /// Token counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Waits for and returns the next step. After `Reset`, `Truncate` or `Done` the
    /// response is over; calling again returns `Done` again.
    pub async fn next_step(&mut self) -> Step {
        let sent = self.counts.output as u32;
        if self.done || sent >= self.plan.output_tokens {
            self.done = true;
            return Step::Done(self.plan.finish);
        }
        if self.plan.reset_after.is_some_and(|r| sent >= r) {
            self.done = true;
            // Let the connection flush what was sent before the reset: a reset mid-stream
            // means the client saw the first tokens, even with zero delays. hyper writes out
            // its buffer when the body is not ready, so the body must be pending at least once:
            // a timed sleep alone can return at once when the thread was descheduled past its
            // deadline (seen on a loaded CI machine: the client got no response head at all).
            tokio::task::yield_now().await;
            self.ctx
                .timer
                .sleep_until(Instant::now() + Duration::from_millis(2))
                .await;
            return Step::Reset;
        }
        if self.plan.truncate_after.is_some_and(|t| sent >= t) {
            self.done = true;
            return Step::Truncate;
        }
        if self.plan.error_after.is_some_and(|t| sent >= t) {
            self.done = true;
            return Step::Error;
        }
        let kind = if sent < self.plan.reasoning_tokens {
            Kind::Reasoning
        } else {
            Kind::Content
        };
        let kind_end = match kind {
            Kind::Reasoning => self.plan.reasoning_tokens,
            Kind::Content => self.plan.output_tokens,
        };
        let mut end = kind_end.min(sent.saturating_add(self.timing.chunk_tokens));
        for stop in [
            self.plan.reset_after,
            self.plan.truncate_after,
            self.plan.error_after,
        ]
        .into_iter()
        .flatten()
        {
            if stop > sent {
                end = end.min(stop);
            }
        }
        // Prescribed due time of the chunk's last token.
        let step = self.decode_step();
        let mut due = self.last_due;
        for k in sent..end {
            if k > 0 {
                due += step;
            }
        }
        self.ctx.timer.sleep_until(due).await;
        let now = Instant::now();
        if sent == 0 {
            self.ctx
                .stats
                .first_token(now - self.timing.received, due - self.timing.received);
        } else {
            let error = now
                .saturating_duration_since(due)
                .max(due.saturating_duration_since(now));
            self.ctx.stats.later_token(now - self.last_emit, error);
        }
        self.last_due = due;
        self.last_emit = now;
        let mut text = String::new();
        for _ in sent..end {
            text.push_str(&self.text.next_token());
        }
        let n = u64::from(end - sent);
        self.counts.output += n;
        if kind == Kind::Reasoning {
            self.counts.reasoning += n;
        }
        Step::Tokens { kind, text }
    }

    fn decode_step(&self) -> Duration {
        let occupied = self.slot.pool.occupied();
        let factor = 1.0 + self.timing.batch_slowdown * f64::from(occupied - 1);
        self.timing.itl.mul_f64(factor)
    }
}

impl Drop for Emission {
    fn drop(&mut self) {
        // The response is over (complete, faulted, or the client left): charge the tier
        // what was really used and count the tokens that were generated.
        if let Some(admission) = self.admission.take() {
            let actual = Charge {
                requests: 1,
                input_tokens: self.counts.input,
                output_tokens: self.counts.output,
            };
            self.ctx.limiter.settle(&admission, actual, Instant::now());
        }
        self.ctx
            .stats
            .output_tokens(&self.model, self.counts.output);
    }
}

/// Renders the steps of a response in one wire dialect.
pub trait Dialect: Send + 'static {
    /// Events sent as soon as the stream starts (role chunk, `message_start`, ...).
    fn open(&mut self) -> Bytes;
    /// One chunk of tokens.
    fn tokens(&mut self, kind: Kind, text: &str) -> Bytes;
    /// The terminal events (finish chunk, usage, `[DONE]` / `message_stop`).
    fn close(&mut self, finish: Finish, counts: Counts) -> Bytes;
    /// An error event inside the stream (OpenAI `data: {"error": ...}`, Anthropic
    /// `event: error`), after which the stream ends.
    fn error(&mut self) -> Bytes;
}

/// The SSE body of a streamed response: `open`, then each chunk at its due time, then
/// `close`. An injected reset ends the body with an error, which makes the HTTP server drop
/// the connection mid-stream; an injected truncation ends it without the terminal events.
pub fn sse_body(emission: Emission, dialect: Box<dyn Dialect>) -> axum::body::Body {
    enum Phase {
        Open,
        Run,
        Over,
    }
    let stream = futures_util::stream::unfold(
        (emission, dialect, Phase::Open),
        |(mut em, mut dialect, phase)| async move {
            match phase {
                Phase::Open => {
                    let bytes = dialect.open();
                    Some((Ok(bytes), (em, dialect, Phase::Run)))
                }
                Phase::Run => match em.next_step().await {
                    Step::Tokens { kind, text } => {
                        let bytes = dialect.tokens(kind, &text);
                        Some((Ok(bytes), (em, dialect, Phase::Run)))
                    }
                    Step::Done(finish) => {
                        let bytes = dialect.close(finish, em.counts());
                        Some((Ok(bytes), (em, dialect, Phase::Over)))
                    }
                    Step::Reset => Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "simulated connection reset",
                        )),
                        (em, dialect, Phase::Over),
                    )),
                    Step::Error => {
                        let bytes = dialect.error();
                        Some((Ok(bytes), (em, dialect, Phase::Over)))
                    }
                    Step::Truncate => None,
                },
                Phase::Over => None,
            }
        },
    );
    axum::body::Body::from_stream(stream)
}

/// A body that fails at once, so the connection drops before a complete response: how a
/// non-streamed request suffers an injected reset or truncation.
pub fn broken_body() -> axum::body::Body {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        ))
    });
    axum::body::Body::from_stream(stream)
}

/// Collected output of a non-streamed response.
#[derive(Debug, Default)]
pub struct Collected {
    /// Reasoning text.
    pub reasoning: String,
    /// Visible text.
    pub content: String,
    /// How it ended: `None` for an injected reset, truncation or error.
    pub finish: Option<Finish>,
    /// An injected error ended it.
    pub errored: bool,
    /// Token counts.
    pub counts: Counts,
}

/// Runs a non-streamed response to its end (taking as long as the stream would).
pub async fn collect(mut em: Emission) -> Collected {
    let mut out = Collected::default();
    loop {
        match em.next_step().await {
            Step::Tokens {
                kind: Kind::Reasoning,
                text,
            } => out.reasoning.push_str(&text),
            Step::Tokens {
                kind: Kind::Content,
                text,
            } => out.content.push_str(&text),
            Step::Done(finish) => {
                out.finish = Some(finish);
                break;
            }
            Step::Error => {
                out.errored = true;
                break;
            }
            Step::Reset | Step::Truncate => break,
        }
    }
    out.counts = em.counts();
    out
}

//! One upstream call and everyone waiting on it: request coalescing.
//!
//! A [`Flight`] is filled by the task that makes the upstream call (head, then body
//! chunks or SSE events as they arrive, then the end) and read by any number of
//! [`Subscription`]s, each at its own pace: a subscriber that joins late first gets what
//! arrived so far, then follows live. Subscribers are woken once per upstream read (a
//! `watch` version bump), never per token.
//!
//! A subscriber may want the other shape than the upstream call has: a non-streamed
//! subscriber of a streamed call gets the assembled body at the end, a streamed subscriber
//! of a non-streamed call gets synthesized events at the end ([`crate::cache::shape`]).
//!
//! When the last subscriber goes before the end, the flight is closed and the upstream
//! call cancelled; a closed flight takes no new subscribers.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::Api;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cache::entry::RecordedEvent;
use crate::cache::shape::{self, EventClass};
use crate::error::{DispatchError, ErrorKind};
use crate::kind::Kind;

/// The upstream's response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// Its status.
    pub status: StatusCode,
    /// The upstream headers worth passing on (content type, request id, rate limits).
    pub headers: HeaderMap,
    /// Whether the body is an SSE stream.
    pub streamed: bool,
    /// When the upstream request went out.
    pub sent_at: Instant,
    /// Time from sending to the upstream's headers.
    pub upstream_headers: Duration,
    /// The upstream that answered (after retries, fallbacks or a hedge).
    pub upstream: Arc<str>,
    /// Time the call waited for tier capacity, all attempts together.
    pub queued: Duration,
}

/// What the filling task has recorded.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) head: Option<Result<Head, DispatchError>>,
    /// A stream's head as soon as an upstream answered 2xx, before its first event: a
    /// streamed client gets its status and headers then, while the call may still retry
    /// or fall back (the stream is committed only at its first event).
    pub(crate) early: Option<Head>,
    /// Streamed bodies: the events, and their classes.
    pub(crate) events: Vec<RecordedEvent>,
    pub(crate) classes: Vec<EventClass>,
    /// Non-streamed bodies: the chunks.
    pub(crate) chunks: Vec<Bytes>,
    /// Set once: how the body ended.
    pub(crate) end: Option<Result<(), DispatchError>>,
    pub(crate) followers: u64,
    subscribers: usize,
    closed: bool,
}

/// One upstream call in progress.
#[derive(Debug)]
pub struct Flight {
    state: Mutex<State>,
    version: watch::Sender<u64>,
    pub(crate) cancel: CancellationToken,
    pub(crate) kind: Kind,
    /// The upstream being tried (the one that answered, once there is a head).
    upstream: Mutex<Arc<str>>,
}

impl Flight {
    pub(crate) fn new(kind: Kind, upstream: Arc<str>) -> Arc<Flight> {
        Arc::new(Flight {
            state: Mutex::new(State::default()),
            version: watch::channel(0).0,
            cancel: CancellationToken::new(),
            kind,
            upstream: Mutex::new(upstream),
        })
    }

    /// Records the upstream now being tried.
    pub(crate) fn set_upstream(&self, upstream: Arc<str>) {
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = upstream;
    }

    /// The upstream being tried.
    pub(crate) fn upstream(&self) -> Arc<str> {
        self.upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to the state, then wakes every subscriber.
    pub(crate) fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A new subscriber, unless the flight is closed (its last subscriber left).
    pub(crate) fn subscribe(
        self: &Arc<Flight>,
        include_usage: bool,
        coalesced: bool,
    ) -> Option<Subscription> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.subscribers += 1;
        drop(state);
        Some(Subscription {
            rx: self.version.subscribe(),
            flight: self.clone(),
            next_event: 0,
            include_usage,
            coalesced,
            synthesized: None,
            finished: false,
        })
    }
}

/// One waiter on a [`Flight`].
#[derive(Debug)]
pub struct Subscription {
    flight: Arc<Flight>,
    rx: watch::Receiver<u64>,
    next_event: usize,
    include_usage: bool,
    /// Whether this subscriber joined a call another request started.
    pub coalesced: bool,
    synthesized: Option<std::vec::IntoIter<Bytes>>,
    finished: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.flight.lock();
        state.subscribers = state.subscribers.saturating_sub(1);
        if state.subscribers == 0 && state.end.is_none() {
            state.closed = true;
            drop(state);
            self.flight.cancel.cancel();
        }
    }
}

impl Subscription {
    /// The upstream that serves this call.
    pub fn upstream(&self) -> Arc<str> {
        self.flight.upstream()
    }

    /// Waits for something new from the filling task.
    async fn changed(&mut self) -> Result<(), DispatchError> {
        self.rx.changed().await.map_err(|_| {
            DispatchError::new(
                ErrorKind::Upstream,
                "the upstream call ended without an answer",
            )
        })
    }

    /// Waits for the upstream's final head (or the failure that prevented one).
    pub async fn head(&mut self) -> Result<Head, DispatchError> {
        loop {
            self.rx.borrow_and_update();
            if let Some(head) = &self.flight.lock().head {
                return head.clone();
            }
            self.changed().await?;
        }
    }

    /// For a streamed client: the head as soon as an upstream answered 2xx with a stream
    /// (before its first event), else the final head. A failure after this head went out
    /// reaches the client as an error event.
    pub async fn stream_head(&mut self) -> Result<Head, DispatchError> {
        loop {
            self.rx.borrow_and_update();
            {
                let state = self.flight.lock();
                if let Some(head) = &state.head {
                    return head.clone();
                }
                if let Some(early) = &state.early {
                    return Ok(early.clone());
                }
            }
            self.changed().await?;
        }
    }

    /// Waits for the end; returns the whole body in the non-streamed shape.
    pub async fn body(&mut self) -> Result<Bytes, DispatchError> {
        loop {
            self.rx.borrow_and_update();
            {
                let state = self.flight.lock();
                match &state.end {
                    Some(Err(e)) => return Err(e.clone()),
                    Some(Ok(())) => {
                        let streamed = matches!(&state.head, Some(Ok(h)) if h.streamed);
                        if !streamed {
                            return Ok(concat(&state.chunks));
                        }
                        return shape::assemble(self.flight.kind, &state.events).map_err(|e| {
                            DispatchError::new(
                                ErrorKind::Upstream,
                                format!("the upstream stream could not be assembled into one response: {e}"),
                            )
                        });
                    }
                    None => {}
                }
            }
            self.changed().await?;
        }
    }

    /// The next encoded SSE events for a streamed subscriber (all that arrived since the
    /// last call, as one chunk), `None` at the end. A failure after the stream started
    /// comes as an error event, then the end.
    pub async fn next_event(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let api = self.flight.kind.api();
        loop {
            if let Some(iter) = &mut self.synthesized {
                let next = iter.next();
                if next.is_none() {
                    self.finished = true;
                }
                return next;
            }
            self.rx.borrow_and_update();
            {
                let state = self.flight.lock();
                if let Some(Ok(h)) = &state.head
                    && !h.status.is_success()
                    && state.end.is_some()
                {
                    // The client already has a 200 (an early head) but every attempt
                    // failed: the upstream's error becomes an error event.
                    let body = concat(&state.chunks);
                    let detail = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| {
                            v.pointer("/error/message")
                                .and_then(serde_json::Value::as_str)
                                .map(str::to_owned)
                        })
                        .unwrap_or_default();
                    self.finished = true;
                    return Some(
                        DispatchError::new(
                            ErrorKind::Upstream,
                            format!("upstream '{}' answered {}: {detail}", h.upstream, h.status),
                        )
                        .sse_event(api),
                    );
                }
                let streamed = matches!(&state.head, Some(Ok(h)) if h.streamed);
                if streamed && self.next_event < state.events.len() {
                    // Everything that arrived since the last call goes out as one chunk:
                    // one write for the events of one upstream read, not one per event.
                    let mut out: Option<Bytes> = None;
                    let mut joined: Vec<u8> = Vec::new();
                    while self.next_event < state.events.len() {
                        let i = self.next_event;
                        self.next_event += 1;
                        if state.classes[i] == EventClass::UsageOnly && !self.include_usage {
                            continue;
                        }
                        let data = &state.events[i].data;
                        match out.take() {
                            None if joined.is_empty() => out = Some(data.clone()),
                            Some(first) => {
                                joined.extend_from_slice(&first);
                                joined.extend_from_slice(data);
                            }
                            None => joined.extend_from_slice(data),
                        }
                    }
                    if let Some(one) = out {
                        return Some(one);
                    }
                    if !joined.is_empty() {
                        return Some(Bytes::from(joined));
                    }
                }
                match &state.end {
                    Some(Err(e)) => {
                        self.finished = true;
                        return Some(e.sse_event(api));
                    }
                    Some(Ok(())) if streamed => {
                        self.finished = true;
                        return None;
                    }
                    Some(Ok(())) => {
                        let body = concat(&state.chunks);
                        drop(state);
                        match shape::synthesize(self.flight.kind, &body) {
                            Ok(events) => {
                                let kind = self.flight.kind;
                                let keep: Vec<Bytes> = events
                                    .into_iter()
                                    .filter(|e| {
                                        self.include_usage
                                            || shape::classify(kind, e) != EventClass::UsageOnly
                                    })
                                    .collect();
                                self.synthesized = Some(keep.into_iter());
                                continue;
                            }
                            Err(e) => {
                                self.finished = true;
                                return Some(
                                    DispatchError::new(
                                        ErrorKind::Upstream,
                                        format!("the upstream response could not be streamed: {e}"),
                                    )
                                    .sse_event(api),
                                );
                            }
                        }
                    }
                    None => {}
                }
            }
            if self.changed().await.is_err() {
                self.finished = true;
                return Some(
                    DispatchError::new(
                        ErrorKind::Upstream,
                        "the upstream call ended without an answer",
                    )
                    .sse_event(api),
                );
            }
        }
    }

    /// The dialect of this call.
    pub fn api(&self) -> Api {
        self.flight.kind.api()
    }
}

/// The chunks as one buffer (no copy for the common single chunk).
pub(crate) fn concat(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut all = Vec::with_capacity(many.iter().map(Bytes::len).sum());
            for c in many {
                all.extend_from_slice(c);
            }
            Bytes::from(all)
        }
    }
}

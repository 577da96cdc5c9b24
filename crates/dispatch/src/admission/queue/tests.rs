//! Real time (the crate's tokio has no `test-util`, so no paused clock): waits are
//! driven by settle and cancel where the order is what is tested, and windows are
//! short with generous bounds where time is.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::mpsc;

use super::*;
use crate::admission::BoxFuture;
use crate::admission::ledger::Ledger;
use crate::admission::local::LocalBackend;

const MINUTE: Duration = Duration::from_secs(60);

fn lane() -> Lane {
    Lane {
        upstream: "openai".to_owned(),
        model: "gpt-test".to_owned(),
    }
}

fn rpm(requests: u64) -> Limits {
    Limits {
        requests: Some(requests),
        ..Limits::default()
    }
}

fn one() -> Charge {
    Charge {
        requests: 1,
        input: 10,
        output: 10,
    }
}

fn request(tenant: &str, priority: Priority, limits: Limits, window: Duration) -> AdmitRequest {
    AdmitRequest {
        lane: lane(),
        limits,
        window,
        charge: one(),
        tenant: tenant.to_owned(),
        priority,
        deadline: Instant::now() + Duration::from_secs(30),
    }
}

/// Waits (up to 10 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// An admission over a fresh local backend.
fn local(max_queue: usize) -> (Arc<LocalBackend>, Arc<Admission>) {
    let backend = Arc::new(LocalBackend::new());
    let admission = Arc::new(Admission::new(backend.clone(), max_queue));
    (backend, admission)
}

type Results = mpsc::UnboundedReceiver<(String, Reply)>;

/// Submits labelled requests one after the other, each waiting (queued) before the
/// next is submitted, so the queue order is the submission order.
async fn submit(admission: &Arc<Admission>, requests: Vec<(String, AdmitRequest)>) -> Results {
    let (tx, rx) = mpsc::unbounded_channel();
    for (label, req) in requests {
        let depth = admission.depth(&req.lane);
        let admission_ = Arc::clone(admission);
        let tx = tx.clone();
        tokio::spawn(async move {
            let reply = admission_.admit(req).await;
            let _ = tx.send((label, reply));
        });
        until("the request queues", || {
            admission.depth(&lane()) == depth + 1
        })
        .await;
    }
    rx
}

/// Receives the next admitted request, and cancels its reservation so the next one
/// can go (the limit is one request at a time).
async fn next_admitted(admission: &Admission, results: &mut Results) -> String {
    let (label, reply) = results.recv().await.unwrap();
    let admitted = reply.unwrap_or_else(|e| panic!("{label} rejected: {e}"));
    admission.cancel(&admitted.reservation).await;
    label
}

#[tokio::test]
async fn fast_path_admits_immediately() {
    let (_, admission) = local(10);
    // The gateway awaits `admit` in spawned tasks.
    fn send<T: Send>(_: &T) {}
    send(&admission.admit(request("t", Priority::Batch, rpm(1), MINUTE)));
    let started = Instant::now();
    for _ in 0..100 {
        let admitted = admission
            .admit(request("t", Priority::Interactive, rpm(1_000), MINUTE))
            .await
            .unwrap();
        assert_eq!(admitted.queued, Duration::ZERO);
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(admission.total_depth(), 0);
    // No waker was needed.
    assert!(admission.shared.wakers.is_empty());
    assert!(admission.shared.lock().lanes.is_empty());
}

#[tokio::test]
async fn interactive_overtakes_batch() {
    let (_, admission) = local(10);
    let limits = rpm(1);
    let blocker = admission
        .admit(request("t", Priority::Batch, limits, MINUTE))
        .await
        .unwrap();
    let mut results = submit(
        &admission,
        vec![
            ("b1".into(), request("t", Priority::Batch, limits, MINUTE)),
            ("b2".into(), request("u", Priority::Batch, limits, MINUTE)),
            (
                "i1".into(),
                request("t", Priority::Interactive, limits, MINUTE),
            ),
        ],
    )
    .await;
    admission.cancel(&blocker.reservation).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(next_admitted(&admission, &mut results).await);
    }
    assert_eq!(order, ["i1", "b1", "b2"]);
}

#[tokio::test]
async fn tenants_take_turns() {
    let (_, admission) = local(100);
    let limits = rpm(1);
    let blocker = admission
        .admit(request("a", Priority::Interactive, limits, MINUTE))
        .await
        .unwrap();
    let mut requests = Vec::new();
    for i in 0..10 {
        requests.push((
            format!("a{i}"),
            request("a", Priority::Interactive, limits, MINUTE),
        ));
    }
    for i in 0..2 {
        requests.push((
            format!("b{i}"),
            request("b", Priority::Interactive, limits, MINUTE),
        ));
    }
    let mut results = submit(&admission, requests).await;
    admission.cancel(&blocker.reservation).await;
    let mut order = Vec::new();
    for _ in 0..12 {
        order.push(next_admitted(&admission, &mut results).await);
    }
    assert_eq!(
        order,
        [
            "a0", "b0", "a1", "b1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"
        ]
    );
}

#[tokio::test]
async fn a_big_head_is_not_overtaken_by_small_requests() {
    let (backend, admission) = local(10);
    let limits = Limits {
        tokens: Some(1_000),
        ..Limits::default()
    };
    let small = |tenant: &str| AdmitRequest {
        charge: Charge {
            requests: 1,
            input: 100,
            output: 0,
        },
        ..request(tenant, Priority::Interactive, limits, MINUTE)
    };
    let held = admission.admit(small("a")).await.unwrap();
    let mut blockers = vec![held];
    for _ in 0..4 {
        blockers.push(admission.admit(small("a")).await.unwrap());
    }
    // 500 held; the big one needs 900.
    let big = AdmitRequest {
        charge: Charge {
            requests: 1,
            input: 900,
            output: 0,
        },
        ..request("big", Priority::Interactive, limits, MINUTE)
    };
    let mut results = submit(
        &admission,
        vec![("big".into(), big), ("small".into(), small("b"))],
    )
    .await;
    // The small one would fit now, but waits behind the big one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(admission.depth(&lane()), 2);
    for blocker in &blockers {
        admission.cancel(&blocker.reservation).await;
    }
    let (first, _) = results.recv().await.unwrap();
    let (second, _) = results.recv().await.unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("big", "small"));
    assert_eq!(backend.usage(&lane()).input, 1_000);
}

#[tokio::test]
async fn a_request_that_can_never_fit_is_rejected_at_once_even_behind_a_queue() {
    let (_, admission) = local(1);
    let limits = Limits {
        requests: Some(1),
        tokens: Some(1_000),
        ..Limits::default()
    };
    let _blocker = admission
        .admit(request("t", Priority::Interactive, limits, MINUTE))
        .await
        .unwrap();
    let _results = submit(
        &admission,
        vec![(
            "w".into(),
            request("t", Priority::Interactive, limits, MINUTE),
        )],
    )
    .await;
    let huge = AdmitRequest {
        charge: Charge {
            requests: 1,
            input: 10,
            output: 2_000,
        },
        ..request("t", Priority::Interactive, limits, MINUTE)
    };
    let rejected = admission.admit(huge).await.unwrap_err();
    assert_eq!(
        rejected,
        Rejected::Never(
            "this request needs 2,010 tokens but the tier allows 1,000 per 60s; \
             lower max_tokens"
                .into()
        )
    );
    assert_eq!(admission.depth(&lane()), 1);
}

#[tokio::test]
async fn deadline_rejects_with_a_truthful_retry_after() {
    let (_, admission) = local(10);
    let window = Duration::from_secs(2);
    admission
        .admit(request("t", Priority::Interactive, rpm(1), window))
        .await
        .unwrap();
    let started = Instant::now();
    let waiting = AdmitRequest {
        deadline: started + Duration::from_millis(200),
        ..request("t", Priority::Interactive, rpm(1), window)
    };
    let rejected = admission.admit(waiting).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200),
        "gave up early: {elapsed:?}"
    );
    let Rejected::Deadline { retry_after } = rejected else {
        panic!("expected Deadline, got {rejected:?}");
    };
    // The blocker expires 2 s after it was admitted, about 1.8 s from now.
    assert!(
        retry_after <= Duration::from_millis(1_800) && retry_after >= Duration::from_millis(1_300),
        "retry_after {retry_after:?}"
    );
    assert_eq!(admission.depth(&lane()), 0);
}

#[tokio::test]
async fn a_waiter_that_times_out_does_not_block_those_behind() {
    let (_, admission) = local(10);
    let blocker = admission
        .admit(request("t", Priority::Interactive, rpm(1), MINUTE))
        .await
        .unwrap();
    let impatient = AdmitRequest {
        deadline: Instant::now() + Duration::from_millis(100),
        ..request("t", Priority::Interactive, rpm(1), MINUTE)
    };
    let mut results = submit(
        &admission,
        vec![
            ("impatient".into(), impatient),
            (
                "patient".into(),
                request("t", Priority::Interactive, rpm(1), MINUTE),
            ),
        ],
    )
    .await;
    let (label, reply) = results.recv().await.unwrap();
    assert_eq!(label, "impatient");
    assert!(matches!(reply, Err(Rejected::Deadline { .. })));
    admission.cancel(&blocker.reservation).await;
    assert_eq!(next_admitted(&admission, &mut results).await, "patient");
}

#[tokio::test]
async fn a_full_queue_rejects_at_once() {
    let (_, admission) = local(2);
    admission
        .admit(request("t", Priority::Interactive, rpm(1), MINUTE))
        .await
        .unwrap();
    let _results = submit(
        &admission,
        vec![
            (
                "w1".into(),
                request("t", Priority::Interactive, rpm(1), MINUTE),
            ),
            ("w2".into(), request("u", Priority::Batch, rpm(1), MINUTE)),
        ],
    )
    .await;
    let started = Instant::now();
    let rejected = admission
        .admit(request("v", Priority::Interactive, rpm(1), MINUTE))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100));
    let Rejected::QueueFull { retry_after } = rejected else {
        panic!("expected QueueFull, got {rejected:?}");
    };
    assert!(retry_after > Duration::from_secs(50) && retry_after <= MINUTE);
    assert_eq!(admission.total_depth(), 2);
}

#[tokio::test]
async fn dropping_a_waiting_future_frees_its_slot() {
    let (backend, admission) = local(1);
    let blocker = admission
        .admit(request("t", Priority::Interactive, rpm(1), MINUTE))
        .await
        .unwrap();
    let admission_ = Arc::clone(&admission);
    let client = tokio::spawn(async move {
        admission_
            .admit(request("t", Priority::Interactive, rpm(1), MINUTE))
            .await
    });
    until("the client queues", || admission.depth(&lane()) == 1).await;
    client.abort();
    until("the client's place is freed", || {
        admission.depth(&lane()) == 0
    })
    .await;
    // The freed place takes another waiter, which is admitted when capacity frees.
    let mut results = submit(
        &admission,
        vec![(
            "next".into(),
            request("t", Priority::Interactive, rpm(1), MINUTE),
        )],
    )
    .await;
    admission.cancel(&blocker.reservation).await;
    let (label, reply) = results.recv().await.unwrap();
    assert_eq!(label, "next");
    assert!(reply.is_ok());
    assert_eq!(backend.usage(&lane()).requests, 1);
}

#[tokio::test]
async fn dropping_a_granted_but_unread_future_cancels_its_reservation() {
    let (backend, admission) = local(1);
    let blocker = admission
        .admit(request("t", Priority::Interactive, rpm(1), MINUTE))
        .await
        .unwrap();
    let mut waiting =
        Box::pin(admission.admit(request("t", Priority::Interactive, rpm(1), MINUTE)));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(waiting.as_mut().poll(&mut cx), Poll::Pending));
    assert_eq!(admission.depth(&lane()), 1);
    admission.cancel(&blocker.reservation).await;
    // The waker grants it; the answer sits unread in its channel.
    until("the waiter is granted", || admission.depth(&lane()) == 0).await;
    assert_eq!(backend.usage(&lane()).requests, 1);
    drop(waiting);
    until("the reservation is cancelled", || {
        backend.usage(&lane()).requests == 0
    })
    .await;
}

#[tokio::test]
async fn settling_down_wakes_a_waiter_before_the_window_would() {
    let (_, admission) = local(10);
    let limits = Limits {
        tokens: Some(1_000),
        ..Limits::default()
    };
    let window = Duration::from_secs(10);
    let first = admission
        .admit(AdmitRequest {
            charge: Charge {
                requests: 1,
                input: 100,
                output: 900,
            },
            ..request("t", Priority::Interactive, limits, window)
        })
        .await
        .unwrap();
    let second = AdmitRequest {
        charge: Charge {
            requests: 1,
            input: 500,
            output: 0,
        },
        ..request("t", Priority::Interactive, limits, window)
    };
    let mut results = submit(&admission, vec![("second".into(), second)]).await;
    let started = Instant::now();
    let used = Charge {
        requests: 1,
        input: 100,
        output: 100,
    };
    admission.settle(&first.reservation, used).await;
    let (_, reply) = results.recv().await.unwrap();
    let admitted = reply.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(admitted.queued < Duration::from_secs(3));
    assert!(admitted.queued > Duration::ZERO);
}

#[tokio::test]
async fn the_waker_ends_when_its_lane_is_empty() {
    let (_, admission) = local(10);
    let blocker = admission
        .admit(request("t", Priority::Interactive, rpm(1), MINUTE))
        .await
        .unwrap();
    let mut results = submit(
        &admission,
        vec![(
            "w".into(),
            request("t", Priority::Interactive, rpm(1), MINUTE),
        )],
    )
    .await;
    assert_eq!(admission.shared.wakers.len(), 1);
    admission.cancel(&blocker.reservation).await;
    results.recv().await.unwrap().1.unwrap();
    until("the waker exits", || admission.shared.wakers.is_empty()).await;
    assert!(admission.shared.lock().lanes.is_empty());
}

/// A backend of one lane that records when (by its own clock) each charge was admitted.
#[derive(Debug)]
struct Recording {
    ledger: Mutex<Ledger>,
    admitted: Mutex<Vec<Instant>>,
    tries: AtomicUsize,
}

impl Backend for Recording {
    fn try_reserve<'a>(
        &'a self,
        lane: &'a Lane,
        _limits: Limits,
        _window: Duration,
        charge: Charge,
    ) -> BoxFuture<'a, Result<Reservation, NotNow>> {
        Box::pin(async move {
            self.tries.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let id = self.ledger.lock().unwrap().try_reserve(now, charge)?;
            self.admitted.lock().unwrap().push(now);
            Ok(Reservation {
                lane: lane.clone(),
                id,
                charge,
            })
        })
    }

    fn settle<'a>(&'a self, r: &'a Reservation, actual: Charge) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.ledger
                .lock()
                .unwrap()
                .settle(Instant::now(), r.id, actual);
        })
    }

    fn cancel<'a>(&'a self, r: &'a Reservation) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.ledger.lock().unwrap().cancel(r.id) })
    }

    fn pause<'a>(&'a self, _lane: &'a Lane, after: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.ledger.lock().unwrap().pause(Instant::now(), after) })
    }

    fn calibrate<'a>(
        &'a self,
        _lane: &'a Lane,
        _limits: Limits,
        _window: Duration,
        observed: Observed,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.ledger
                .lock()
                .unwrap()
                .calibrate(Instant::now(), observed);
        })
    }
}

#[tokio::test]
async fn a_burst_is_admitted_in_order_as_the_window_slides() {
    let window = Duration::from_millis(300);
    let limits = rpm(3);
    let backend = Arc::new(Recording {
        ledger: Mutex::new(Ledger::new(limits, window)),
        admitted: Mutex::new(Vec::new()),
        tries: AtomicUsize::new(0),
    });
    let admission = Arc::new(Admission::new(backend.clone(), 100));
    let started = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..9usize {
        let admission_ = Arc::clone(&admission);
        let tx = tx.clone();
        let done_ = Arc::clone(&done);
        tokio::spawn(async move {
            let reply = admission_
                .admit(request("t", Priority::Batch, limits, window))
                .await;
            done_.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send((i, reply));
        });
        until("the request is admitted or queued", || {
            done.load(Ordering::SeqCst) + admission.depth(&lane()) == i + 1
        })
        .await;
    }
    let mut ids = Vec::new();
    for _ in 0..9 {
        let (i, reply) = rx.recv().await.unwrap();
        ids.push((reply.unwrap().reservation.id, i));
    }
    // Three per window: the last three cannot go before two windows have passed.
    assert!(started.elapsed() >= 2 * window);
    assert!(started.elapsed() < 20 * window);
    ids.sort_unstable();
    let order: Vec<usize> = ids.iter().map(|&(_, i)| i).collect();
    assert_eq!(order, (0..9).collect::<Vec<_>>());
    let admitted = backend.admitted.lock().unwrap().clone();
    assert_eq!(admitted.len(), 9);
    for &end in &admitted {
        let inside = admitted
            .iter()
            .filter(|&&at| at <= end && end.duration_since(at) < window)
            .count();
        assert!(inside <= 3, "{inside} admissions within one window");
    }
    // One waker tries one head at a time, at most every 250 ms or on a wake: a few
    // dozen tries, not a spin.
    assert!(backend.tries.load(Ordering::Relaxed) < 100);
}

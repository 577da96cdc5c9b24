//! The waiting queue in front of a [`Backend`]: requests that do not fit now wait their
//! turn instead of failing, up to a deadline.
//!
//! It owns the order in which waiting requests are admitted and who tries them: per lane,
//! every [`Priority::Interactive`] request before any [`Priority::Batch`] one; within a
//! class, tenants take turns (each its own FIFO), so one tenant's burst cannot starve
//! another; and head-of-line: the next request in that order is tried first, and while it
//! does not fit nothing behind it is admitted, so big requests are not starved by small
//! ones. A request that can never fit is rejected at once, before it queues. It leaves the
//! limit rule to the [`super::ledger`] and where it is kept to the backend.
//!
//! Design. The fast path takes no task, timer or channel: when a lane has no waiters,
//! [`Admission::admit`] calls the backend directly. Otherwise the request becomes a waiter
//! (a oneshot reply channel in the lane's queue) and waits for its answer or its deadline.
//! One waker task per lane with waiters does all the trying, so the backend sees one
//! attempt per lane at a time however many wait: it tries the head, and when the head does
//! not fit, sleeps until the `RetryIn` the backend reported (at most 250 ms, so capacity
//! freed by other instances sharing a Redis backend is noticed) or until settle, cancel or
//! a change of head on the lane wakes it. It exits, under the lock, when its lane has no
//! waiters and no reservations left to cancel, and the lane's entry goes with it, so a
//! lane's entry exists exactly while its waker runs. Wakers are tracked by a
//! `TaskTracker` and stopped by a cancellation token when the [`Admission`] is dropped.
//!
//! A waiter leaves by being answered (under the lock, by the waker), by its deadline, or by
//! being dropped (the client left); the last two remove it under the same lock, so each
//! waiter is answered or removed exactly once. A reservation granted to a waiter that is
//! gone (dropped during the backend call, or after the answer was sent but before it was
//! read) is handed to the waker to cancel, so no capacity leaks.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ledger::never_fits;
use super::{Backend, Charge, Lane, Limits, NotNow, Observed, Reservation};

/// The longest a waker sleeps between tries of its head, whatever the backend said:
/// another instance sharing the backend may free capacity without waking us.
const LONGEST_NAP: Duration = Duration::from_millis(250);

/// The shortest nap, so a backend answering `RetryIn(0)` cannot make a waker spin.
const SHORTEST_NAP: Duration = Duration::from_millis(1);

/// The smallest `retry_after` reported: zero would invite an immediate retry loop.
const SHORTEST_RETRY_AFTER: Duration = Duration::from_millis(1);

/// Waits longer than this are clamped so `now + wait` cannot overflow an `Instant`.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Which class a request waits in. Every waiting interactive request is admitted before
/// any batch one on the same lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A client is waiting for the answer.
    Interactive,
    /// Offline work (`batch`): may wait behind interactive traffic.
    Batch,
}

impl Priority {
    fn index(self) -> usize {
        match self {
            Priority::Interactive => 0,
            Priority::Batch => 1,
        }
    }
}

/// One request asking to be admitted.
#[derive(Debug, Clone)]
pub struct AdmitRequest {
    /// The lane to charge.
    pub lane: Lane,
    /// The lane's limits (as configured or learned).
    pub limits: Limits,
    /// The window of the per-window limits.
    pub window: Duration,
    /// What the request costs (output: `max_tokens` or an estimate).
    pub charge: Charge,
    /// Who asked (a gateway key or user): the unit of fairness.
    pub tenant: String,
    /// The class it waits in.
    pub priority: Priority,
    /// When to give up waiting.
    pub deadline: Instant,
}

/// An admitted request: send it, then settle (or cancel) the reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// What was reserved.
    pub reservation: Reservation,
    /// How long it waited in the queue (zero on the fast path).
    pub queued: Duration,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// It alone exceeds a limit (the message names which, and the fix).
    #[error("{0}")]
    Never(String),
    /// The lane's queue is full.
    #[error("too many requests are waiting for this model; retry after {retry_after:?}")]
    QueueFull {
        /// When the lane may have room, as far as the backend knows.
        retry_after: Duration,
    },
    /// Its deadline passed while it waited.
    #[error("no capacity for this model before the queue deadline; retry after {retry_after:?}")]
    Deadline {
        /// The wait the backend last reported for it, from now.
        retry_after: Duration,
    },
}

impl Rejected {
    /// When a retry could succeed (`None`: it never will as it is).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejected::Never(_) => None,
            Rejected::QueueFull { retry_after } | Rejected::Deadline { retry_after } => {
                Some(*retry_after)
            }
        }
    }
}

type Reply = Result<Admitted, Rejected>;

/// The admission queue in front of a backend. Share it (`Arc<Admission>`); it must be used
/// inside a Tokio runtime (wakers are Tokio tasks).
#[derive(Debug)]
pub struct Admission {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    backend: Arc<dyn Backend>,
    max_queue_per_lane: usize,
    state: Mutex<State>,
    /// The wakers. Owned here; stopped by `shutdown` when the `Admission` is dropped.
    wakers: TaskTracker,
    shutdown: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    /// One entry per lane whose waker runs (see the module docs).
    lanes: HashMap<Lane, LaneQueue>,
    /// Waiters across all lanes.
    waiting: usize,
    next_id: u64,
}

#[derive(Debug, Default)]
struct LaneQueue {
    /// Indexed by [`Priority::index`].
    classes: [Class; 2],
    waiters: HashMap<u64, Waiter>,
    /// Wakes the lane's waker: settle, cancel, a new head, a reservation to cancel.
    wake: Arc<Notify>,
    /// Reservations granted to waiters that had gone: the waker cancels them.
    orphans: Vec<Reservation>,
    /// When the head may fit, as the backend last reported.
    head_retry_at: Option<Instant>,
}

/// One priority class of a lane: tenants in turn, each with its FIFO of waiter ids.
#[derive(Debug, Default)]
struct Class {
    /// Tenants with waiters, the one whose turn it is first.
    turns: VecDeque<String>,
    fifos: HashMap<String, VecDeque<u64>>,
}

#[derive(Debug)]
struct Waiter {
    tenant: String,
    priority: Priority,
    limits: Limits,
    window: Duration,
    charge: Charge,
    deadline: Instant,
    /// When `admit` was called.
    started: Instant,
    /// When it may fit, as the backend last reported for it.
    retry_at: Option<Instant>,
    reply: oneshot::Sender<Reply>,
}

impl LaneQueue {
    /// The next waiter in admission order.
    fn head(&self) -> Option<u64> {
        self.classes.iter().find_map(|class| {
            let tenant = class.turns.front()?;
            class.fifos.get(tenant)?.front().copied()
        })
    }

    fn push(&mut self, id: u64, waiter: Waiter) {
        let class = &mut self.classes[waiter.priority.index()];
        let fifo = class.fifos.entry(waiter.tenant.clone()).or_default();
        if fifo.is_empty() {
            class.turns.push_back(waiter.tenant.clone());
        }
        fifo.push_back(id);
        self.waiters.insert(id, waiter);
    }

    /// Removes waiter `id`. When it was `served` (admitted), its tenant's turn passes to the
    /// next tenant.
    fn take(&mut self, id: u64, served: bool) -> Option<Waiter> {
        let waiter = self.waiters.remove(&id)?;
        let class = &mut self.classes[waiter.priority.index()];
        if let Some(fifo) = class.fifos.get_mut(&waiter.tenant) {
            if let Some(at) = fifo.iter().position(|&queued| queued == id) {
                fifo.remove(at);
            }
            if fifo.is_empty() {
                class.fifos.remove(&waiter.tenant);
                class.turns.retain(|tenant| *tenant != waiter.tenant);
            } else if served && class.turns.front() == Some(&waiter.tenant) {
                class.turns.rotate_left(1);
            }
        }
        Some(waiter)
    }

    /// Removes `id` from the turn order without a waiter to go with it.
    fn forget(&mut self, id: u64) {
        for class in &mut self.classes {
            for fifo in class.fifos.values_mut() {
                fifo.retain(|&queued| queued != id);
            }
            class.fifos.retain(|_, fifo| !fifo.is_empty());
            let fifos = &class.fifos;
            class.turns.retain(|tenant| fifos.contains_key(tenant));
        }
    }
}

/// What a waker does next.
enum Step {
    /// Its lane is empty (and its entry removed): end.
    Exit,
    /// Give back a reservation nobody will use.
    Cancel(Reservation),
    /// Try the head.
    Try {
        id: u64,
        limits: Limits,
        window: Duration,
        charge: Charge,
    },
}

/// What a waker does after trying the head.
enum After {
    /// Try the (new) head at once.
    Next,
    /// The head was granted a reservation but has gone: give it back.
    Cancel(Reservation),
    /// The head does not fit: sleep this long at most.
    Nap(Duration),
}

impl Admission {
    /// A queue in front of `backend`, holding at most `max_queue_per_lane` waiters per lane.
    #[must_use]
    pub fn new(backend: Arc<dyn Backend>, max_queue_per_lane: usize) -> Admission {
        Admission {
            shared: Arc::new(Shared {
                backend,
                max_queue_per_lane,
                state: Mutex::new(State::default()),
                wakers: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Admits `req` now, or when its turn comes and it fits, or rejects it.
    ///
    /// Dropping the future gives up the request's place (and cancels its reservation if one
    /// had just been granted). Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`Rejected::Never`] when the request alone exceeds a limit, [`Rejected::QueueFull`]
    /// when its lane already has `max_queue_per_lane` waiters, [`Rejected::Deadline`] when it
    /// did not fit before `req.deadline`.
    pub async fn admit(&self, req: AdmitRequest) -> Result<Admitted, Rejected> {
        if let Some(message) = never_fits(&req.limits, req.charge, req.window) {
            return Err(Rejected::Never(message));
        }
        let started = Instant::now();
        let mut reported = None;
        if !self.shared.has_waiters(&req.lane) {
            let fast = self
                .shared
                .backend
                .try_reserve(&req.lane, req.limits, req.window, req.charge)
                .await;
            match fast {
                Ok(reservation) => {
                    return Ok(Admitted {
                        reservation,
                        queued: Duration::ZERO,
                    });
                }
                Err(NotNow::Never(message)) => return Err(Rejected::Never(message)),
                Err(NotNow::RetryIn(wait)) => reported = Some(later(Instant::now(), wait)),
            }
        }
        let deadline = req.deadline;
        let (id, reply) = Shared::enqueue(&self.shared, &req, started, reported)?;
        Waiting {
            shared: Arc::clone(&self.shared),
            lane: req.lane,
            id,
            reply,
            armed: true,
        }
        .wait(deadline)
        .await
    }

    /// Settles `reservation` to what was actually used, and lets the lane's waiters try
    /// again (settling down frees capacity at once).
    pub async fn settle(&self, reservation: &Reservation, actual: Charge) {
        self.shared.backend.settle(reservation, actual).await;
        self.shared.wake(&reservation.lane);
    }

    /// Cancels `reservation` (never sent), and lets the lane's waiters try again.
    pub async fn cancel(&self, reservation: &Reservation) {
        self.shared.backend.cancel(reservation).await;
        self.shared.wake(&reservation.lane);
    }

    /// Pauses `lane` for `after` (an upstream 429's `retry-after`).
    pub async fn pause(&self, lane: &Lane, after: Duration) {
        self.shared.backend.pause(lane, after).await;
        // The head is tried again so the wait it reports (and a deadline's retry_after)
        // includes the pause.
        self.shared.wake(lane);
    }

    /// Aligns `lane` with what the upstream reported (see [`Backend::calibrate`]).
    pub async fn calibrate(
        &self,
        lane: &Lane,
        limits: Limits,
        window: Duration,
        observed: Observed,
    ) {
        self.shared
            .backend
            .calibrate(lane, limits, window, observed)
            .await;
        // New limits may be looser than the ones the waiters were refused under.
        self.shared.wake(lane);
    }

    /// How many requests wait on `lane`.
    #[must_use]
    pub fn depth(&self, lane: &Lane) -> usize {
        self.shared
            .lock()
            .lanes
            .get(lane)
            .map_or(0, |queue| queue.waiters.len())
    }

    /// How many requests wait on all lanes.
    #[must_use]
    pub fn total_depth(&self) -> usize {
        self.shared.lock().waiting
    }

    /// The backend behind the queue.
    #[must_use]
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.shared.backend
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // No waiter can outlive the `Admission` (`admit` borrows it), so the wakers have
        // nothing left to answer; stop them rather than let them finish their naps.
        // Reservations still to cancel then expire with their window.
        self.shared.shutdown.cancel();
        self.shared.wakers.close();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; if something ever did, the queues are still
        // consistent between calls, so carry on with them.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_waiters(&self, lane: &Lane) -> bool {
        self.lock()
            .lanes
            .get(lane)
            .is_some_and(|queue| !queue.waiters.is_empty())
    }

    fn wake(&self, lane: &Lane) {
        if let Some(queue) = self.lock().lanes.get(lane)
            && !queue.waiters.is_empty()
        {
            queue.wake.notify_one();
        }
    }

    /// Queues `req` (or refuses it at once), starting the lane's waker if none runs.
    fn enqueue(
        this: &Arc<Shared>,
        req: &AdmitRequest,
        started: Instant,
        reported: Option<Instant>,
    ) -> Result<(u64, oneshot::Receiver<Reply>), Rejected> {
        let now = Instant::now();
        let mut state = this.lock();
        let state = &mut *state;
        let existing = state.lanes.get(&req.lane);
        let estimate = || retry_after(now, [reported, existing.and_then(|q| q.head_retry_at)]);
        if existing.map_or(0, |queue| queue.waiters.len()) >= this.max_queue_per_lane {
            return Err(Rejected::QueueFull {
                retry_after: estimate(),
            });
        }
        if req.deadline <= now {
            return Err(Rejected::Deadline {
                retry_after: estimate(),
            });
        }
        let start_waker = existing.is_none();
        let id = state.next_id;
        state.next_id += 1;
        let (reply, answer) = oneshot::channel();
        let queue = state.lanes.entry(req.lane.clone()).or_default();
        let head = queue.head();
        queue.push(
            id,
            Waiter {
                tenant: req.tenant.clone(),
                priority: req.priority,
                limits: req.limits,
                window: req.window,
                charge: req.charge,
                deadline: req.deadline,
                started,
                retry_at: reported,
                reply,
            },
        );
        // A new waker tries the head first anyway; a running one is told only when the
        // newcomer goes first (an interactive request behind batch ones), since anything
        // else would only repeat a try that has just failed.
        if !start_waker && queue.head() != head {
            queue.wake.notify_one();
        }
        state.waiting += 1;
        if start_waker {
            Shared::start_waker(this, req.lane.clone(), &Handle::current());
        }
        Ok((id, answer))
    }

    fn start_waker(this: &Arc<Shared>, lane: Lane, runtime: &Handle) {
        let shared = Arc::clone(this);
        let shutdown = this.shutdown.clone();
        this.wakers.spawn_on(
            async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = shared.run_waker(lane) => {}
                }
            },
            runtime,
        );
    }

    /// The waker of `lane`: tries the head until the lane is empty.
    async fn run_waker(&self, lane: Lane) {
        let Some(wake) = self.lock().lanes.get(&lane).map(|q| Arc::clone(&q.wake)) else {
            return;
        };
        loop {
            match self.next_step(&lane) {
                Step::Exit => return,
                Step::Cancel(reservation) => self.backend.cancel(&reservation).await,
                Step::Try {
                    id,
                    limits,
                    window,
                    charge,
                } => {
                    let result = self
                        .backend
                        .try_reserve(&lane, limits, window, charge)
                        .await;
                    match self.deliver(&lane, id, result) {
                        After::Next => {}
                        After::Cancel(reservation) => self.backend.cancel(&reservation).await,
                        After::Nap(wait) => {
                            let nap = wait.clamp(SHORTEST_NAP, LONGEST_NAP);
                            tokio::select! {
                                () = wake.notified() => {}
                                () = tokio::time::sleep(nap) => {}
                            }
                        }
                    }
                }
            }
        }
    }

    fn next_step(&self, lane: &Lane) -> Step {
        let now = Instant::now();
        let mut state = self.lock();
        let state = &mut *state;
        let Some(queue) = state.lanes.get_mut(lane) else {
            return Step::Exit;
        };
        if let Some(reservation) = queue.orphans.pop() {
            return Step::Cancel(reservation);
        }
        while let Some(id) = queue.head() {
            let Some(waiter) = queue.waiters.get(&id) else {
                // Unreachable: the FIFOs and the map change together. Drop the stray id
                // rather than spin on it.
                queue.forget(id);
                continue;
            };
            if waiter.deadline > now {
                return Step::Try {
                    id,
                    limits: waiter.limits,
                    window: waiter.window,
                    charge: waiter.charge,
                };
            }
            // Its own timer answers it too, but only while its future is polled; answering
            // here keeps a past-deadline head from blocking the lane meanwhile.
            if let Some(waiter) = queue.take(id, false) {
                state.waiting -= 1;
                let retry_after = retry_after(now, [waiter.retry_at, queue.head_retry_at]);
                // A closed channel means the waiter is being dropped; nothing to answer.
                let _ = waiter.reply.send(Err(Rejected::Deadline { retry_after }));
            }
        }
        state.lanes.remove(lane);
        Step::Exit
    }

    /// Hands the result of trying waiter `id` to it, if it is still there.
    fn deliver(&self, lane: &Lane, id: u64, result: Result<Reservation, NotNow>) -> After {
        let now = Instant::now();
        let mut state = self.lock();
        let state = &mut *state;
        let Some(queue) = state.lanes.get_mut(lane) else {
            // Unreachable: only this waker removes its lane's entry.
            return result.map_or(After::Next, After::Cancel);
        };
        match result {
            Ok(reservation) => {
                let Some(waiter) = queue.take(id, true) else {
                    // It left (deadline or dropped) while the backend was asked.
                    return After::Cancel(reservation);
                };
                state.waiting -= 1;
                queue.head_retry_at = None;
                let admitted = Admitted {
                    reservation,
                    queued: now.saturating_duration_since(waiter.started),
                };
                match waiter.reply.send(Ok(admitted)) {
                    Ok(()) => After::Next,
                    // The receiver goes only after its waiter is removed under this lock,
                    // so this cannot happen; if it did, the capacity must not leak.
                    Err(Ok(admitted)) => After::Cancel(admitted.reservation),
                    Err(Err(_)) => After::Next,
                }
            }
            Err(NotNow::Never(message)) => {
                // Limits tightened since it queued (calibration, new limits).
                if let Some(waiter) = queue.take(id, false) {
                    state.waiting -= 1;
                    let _ = waiter.reply.send(Err(Rejected::Never(message)));
                }
                After::Next
            }
            Err(NotNow::RetryIn(wait)) => match queue.waiters.get_mut(&id) {
                Some(waiter) => {
                    let at = later(now, wait);
                    waiter.retry_at = Some(at);
                    queue.head_retry_at = Some(at);
                    After::Nap(wait)
                }
                // It left while being tried: the new head has not been tried yet.
                None => After::Next,
            },
        }
    }

    /// Removes waiter `id` whose deadline passed, answering `Deadline`; if it was answered
    /// meanwhile, returns that answer instead.
    fn withdraw(&self, lane: &Lane, id: u64, answer: &mut oneshot::Receiver<Reply>) -> Reply {
        let now = Instant::now();
        {
            let mut state = self.lock();
            let state = &mut *state;
            if let Some(queue) = state.lanes.get_mut(lane) {
                let was_head = queue.head() == Some(id);
                if let Some(waiter) = queue.take(id, false) {
                    state.waiting -= 1;
                    if was_head {
                        queue.wake.notify_one();
                    }
                    // Behind the head it cannot go before the head does: the later of the
                    // two reports is the truthful lower bound.
                    let retry_after = retry_after(now, [waiter.retry_at, queue.head_retry_at]);
                    return Err(Rejected::Deadline { retry_after });
                }
            }
        }
        // Not queued any more, so the waker answered it (under the lock, before we took it).
        answer.try_recv().unwrap_or(Err(Rejected::Deadline {
            retry_after: SHORTEST_RETRY_AFTER,
        }))
    }

    /// Removes waiter `id` whose future was dropped; gives back a reservation it had been
    /// granted but never read.
    fn abandon(this: &Arc<Shared>, lane: &Lane, id: u64, answer: &mut oneshot::Receiver<Reply>) {
        let mut state = this.lock();
        let state = &mut *state;
        if let Some(queue) = state.lanes.get_mut(lane) {
            let was_head = queue.head() == Some(id);
            if queue.take(id, false).is_some() {
                state.waiting -= 1;
                if was_head {
                    queue.wake.notify_one();
                }
                return;
            }
        }
        let Ok(Ok(admitted)) = answer.try_recv() else {
            return;
        };
        if let Some(queue) = state.lanes.get_mut(lane) {
            queue.orphans.push(admitted.reservation);
            queue.wake.notify_one();
            return;
        }
        // The lane's waker has exited: start one to cancel it (it exits when done). Without
        // a runtime (it is shutting down) the reservation simply expires with its window.
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let queue = state.lanes.entry(lane.clone()).or_default();
        queue.orphans.push(admitted.reservation);
        Shared::start_waker(this, lane.clone(), &runtime);
    }
}

/// A waiter's side of the queue: waits for the answer, and leaves the queue when its
/// deadline passes or it is dropped.
struct Waiting {
    shared: Arc<Shared>,
    lane: Lane,
    id: u64,
    reply: oneshot::Receiver<Reply>,
    /// Whether dropping it must still remove it from the queue.
    armed: bool,
}

impl Waiting {
    async fn wait(mut self, deadline: Instant) -> Reply {
        let deadline = tokio::time::Instant::from_std(deadline);
        let outcome = tokio::time::timeout_at(deadline, &mut self.reply).await;
        self.armed = false;
        match outcome {
            Ok(Ok(reply)) => reply,
            // The deadline passed (or, impossibly, the waker dropped the reply channel
            // without answering): leave the queue, or take the answer that just came.
            Ok(Err(_)) | Err(_) => self.shared.withdraw(&self.lane, self.id, &mut self.reply),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.armed {
            Shared::abandon(&self.shared, &self.lane, self.id, &mut self.reply);
        }
    }
}

/// The latest of the reported instants, as a wait from `now`: at least
/// [`SHORTEST_RETRY_AFTER`].
fn retry_after(now: Instant, reports: [Option<Instant>; 2]) -> Duration {
    reports
        .into_iter()
        .flatten()
        .map(|at| at.saturating_duration_since(now))
        .max()
        .unwrap_or(SHORTEST_RETRY_AFTER)
        .max(SHORTEST_RETRY_AFTER)
}

/// `now + wait`, clamped so it cannot overflow.
fn later(now: Instant, wait: Duration) -> Instant {
    // Cannot fail for a year on a monotonic clock; if it did, "now" only shortens an
    // estimate (a retry_after), never an admission decision.
    now.checked_add(wait.min(LONGEST_WAIT)).unwrap_or(now)
}

#[cfg(test)]
mod tests;

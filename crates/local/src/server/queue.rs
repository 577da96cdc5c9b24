//! The one thread that owns the model, and the bounded FIFO queue of jobs in front of it.
//!
//! A [`Model`] is not `Sync` and a request keeps it busy for seconds of CPU work, so it lives on
//! one dedicated OS thread that takes jobs in arrival order. Each job carries the sending half
//! of a tokio channel: the worker reports when it starts the job (how long it waited), every
//! text piece the engine produces, and the outcome. A job whose receiver is gone (the client
//! left) is skipped if still queued and cancelled at its next text piece if running. An engine
//! panic becomes an error for that one job; the thread goes on serving.
//!
//! The HTTP side (what the events become on the wire) is the parent module's job.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::LocalError;
use crate::engine::{Control, GenParams, Generation, Model};

/// What the worker reports about one job, in this order: `Started`, any number of `Text`,
/// then `Done`. A channel that closes without `Done` means the worker thread is gone.
#[derive(Debug)]
pub(crate) enum Event {
    /// The worker took the job after it waited this long in the queue.
    Started {
        /// Time from submission to the worker taking it.
        queue: Duration,
    },
    /// A piece of generated text, as the engine released it.
    Text(String),
    /// The job is over.
    Done(Result<Generation, LocalError>),
}

/// Generation as the worker sees it: the real [`Model`], or a scripted stand-in in tests.
pub(crate) trait Generate: Send + 'static {
    /// Runs one request to the end, handing text pieces to `on_text`.
    fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenParams,
        on_text: &mut dyn FnMut(&str) -> Control,
    ) -> Result<Generation, LocalError>;
}

impl Generate for Model {
    fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenParams,
        on_text: &mut dyn FnMut(&str) -> Control,
    ) -> Result<Generation, LocalError> {
        Model::generate(self, prompt, params, on_text)
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The queue holds `limit` jobs already.
    Full {
        /// The limit.
        limit: usize,
        /// A guess of how long until a slot frees up.
        retry_after: Duration,
    },
    /// The server is shutting down.
    Closing,
    /// The worker thread has stopped.
    Stopped,
}

struct Job {
    prompt: Vec<u32>,
    params: GenParams,
    enqueued: Instant,
    events: UnboundedSender<Event>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    closing: bool,
    alive: bool,
    busy: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    limit: usize,
    /// Set to cancel the running job (the shutdown grace ran out).
    cancel_running: AtomicBool,
    /// Moving average of a job's run time, microseconds (for `retry-after`).
    avg_job_us: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-changed (every change
        // is one push or pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The worker thread and its queue.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Worker")
            .field("queued", &state.jobs.len())
            .field("busy", &state.busy)
            .field("alive", &state.alive)
            .finish()
    }
}

/// Marks the worker dead when its thread ends for any reason, and drops the jobs still
/// queued, so their handlers answer at once instead of waiting forever.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.alive = false;
        state.busy = false;
        state.jobs.clear();
    }
}

impl Worker {
    /// Starts the thread that owns `engine`; at most `limit` jobs wait in its queue.
    pub(crate) fn start(engine: impl Generate, limit: usize) -> Result<Worker, LocalError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                alive: true,
                ..State::default()
            }),
            ready: Condvar::new(),
            limit,
            cancel_running: AtomicBool::new(false),
            avg_job_us: AtomicU64::new(0),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tokenpace-local-model".into())
            .spawn(move || run(engine, for_thread))
            .map_err(|e| LocalError::Engine(format!("cannot start the model's thread: {e}")))?;
        Ok(Worker {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a job; the receiver gets its [`Event`]s.
    pub(crate) fn submit(
        &self,
        prompt: Vec<u32>,
        params: GenParams,
    ) -> Result<UnboundedReceiver<Event>, Refusal> {
        let (tx, rx) = unbounded_channel();
        let mut state = self.shared.lock();
        if !state.alive {
            return Err(Refusal::Stopped);
        }
        if state.closing {
            return Err(Refusal::Closing);
        }
        // Jobs whose clients left hold no slot.
        state.jobs.retain(|j| !j.events.is_closed());
        // An idle worker takes the job at once, so it never counts against the limit.
        let waits = state.busy || !state.jobs.is_empty();
        if waits && state.jobs.len() >= self.shared.limit {
            let avg = Duration::from_micros(self.shared.avg_job_us.load(Ordering::Relaxed));
            let ahead = state.jobs.len() as u32 + u32::from(state.busy);
            return Err(Refusal::Full {
                limit: self.shared.limit,
                retry_after: avg.saturating_mul(ahead),
            });
        }
        state.jobs.push_back(Job {
            prompt,
            params,
            enqueued: Instant::now(),
            events: tx,
        });
        drop(state);
        self.shared.ready.notify_one();
        Ok(rx)
    }

    /// Jobs waiting (not counting the running one).
    pub(crate) fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Whether a job is running.
    pub(crate) fn busy(&self) -> bool {
        self.shared.lock().busy
    }

    /// Whether the thread is still there.
    pub(crate) fn alive(&self) -> bool {
        self.shared.lock().alive
    }

    /// Whether [`Worker::close`] was called.
    pub(crate) fn closing(&self) -> bool {
        self.shared.lock().closing
    }

    /// Takes no more jobs and drops the queued ones (their receivers close without
    /// `Started`); the running job goes on. The thread ends after it.
    pub(crate) fn close(&self) {
        let dropped: Vec<Job> = {
            let mut state = self.shared.lock();
            state.closing = true;
            state.jobs.drain(..).collect()
        };
        drop(dropped);
        self.shared.ready.notify_all();
    }

    /// Cancels the running job at its next text piece (it ends as `Finish::Cancelled`).
    pub(crate) fn cancel_running(&self) {
        self.shared.cancel_running.store(true, Ordering::SeqCst);
    }

    /// Closes the queue and waits (blocking) until the thread has ended, so the model's
    /// memory is released when this returns.
    pub(crate) fn join(&self) {
        self.close();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Without this the thread would wait on the condvar forever, holding the model.
        self.close();
    }
}

fn run(mut engine: impl Generate, shared: Arc<Shared>) {
    let _alive = AliveGuard(shared.clone());
    loop {
        let job = {
            let mut state = shared.lock();
            loop {
                if state.closing {
                    return;
                }
                if let Some(job) = state.jobs.pop_front() {
                    if job.events.is_closed() {
                        // Its client left while it waited.
                        continue;
                    }
                    state.busy = true;
                    break job;
                }
                state = shared.ready.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let started = Instant::now();
        let queue = started.duration_since(job.enqueued);
        if job.events.send(Event::Started { queue }).is_ok() {
            let result = run_job(&mut engine, &shared, &job);
            let _ = job.events.send(Event::Done(result));
            record(&shared, started.elapsed());
        }
        shared.lock().busy = false;
    }
}

fn run_job(
    engine: &mut impl Generate,
    shared: &Shared,
    job: &Job,
) -> Result<Generation, LocalError> {
    let events = &job.events;
    let mut on_text = |text: &str| {
        if shared.cancel_running.load(Ordering::SeqCst) {
            return Control::Cancel;
        }
        if text.is_empty() {
            // A probe between prefill chunks: nothing to send, only whether anyone still waits.
            return if events.is_closed() {
                Control::Cancel
            } else {
                Control::Continue
            };
        }
        match events.send(Event::Text(text.to_owned())) {
            Ok(()) => Control::Continue,
            // The receiver is gone: the client left.
            Err(_) => Control::Cancel,
        }
    };
    // The engine's state after a panic is only its KV cache, which the next prompt overwrites
    // (every generation starts at position 0 or at a verified prefix), so going on is safe.
    match catch_unwind(AssertUnwindSafe(|| {
        engine.generate(&job.prompt, &job.params, &mut on_text)
    })) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(LocalError::Engine(format!("the engine panicked: {what}")))
        }
    }
}

fn record(shared: &Shared, took: Duration) {
    let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    let old = shared.avg_job_us.load(Ordering::Relaxed);
    let new = if old == 0 {
        took
    } else {
        // An exponential average over roughly the last eight jobs.
        old - old / 8 + took / 8
    };
    shared.avg_job_us.store(new, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Finish;

    /// A stand-in engine: emits `max_tokens` pieces "t0 t1 ..." with `delay` before each, or
    /// panics when the prompt is `[666]`.
    struct Scripted {
        delay: Duration,
    }

    impl Generate for Scripted {
        fn generate(
            &mut self,
            prompt: &[u32],
            params: &GenParams,
            on_text: &mut dyn FnMut(&str) -> Control,
        ) -> Result<Generation, LocalError> {
            if prompt == [666] {
                panic!("scripted failure");
            }
            let started = Instant::now();
            let mut text = String::new();
            let mut finish = Finish::Length;
            let mut n = 0;
            while n < params.max_tokens {
                std::thread::sleep(self.delay);
                n += 1;
                let piece = format!("t{} ", prompt[0] * 100 + n);
                text.push_str(&piece);
                if on_text(&piece) == Control::Cancel {
                    finish = Finish::Cancelled;
                    break;
                }
            }
            Ok(Generation {
                prompt_tokens: prompt.len() as u32,
                cached_tokens: 0,
                completion_tokens: n,
                finish,
                text,
                prefill: Duration::ZERO,
                decode: started.elapsed(),
            })
        }
    }

    fn params(max_tokens: u32) -> GenParams {
        GenParams {
            max_tokens,
            ..GenParams::default()
        }
    }

    fn drain(rx: &mut UnboundedReceiver<Event>) -> (Option<Duration>, String, Option<Generation>) {
        let mut queue = None;
        let mut text = String::new();
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                Event::Started { queue: q } => queue = Some(q),
                Event::Text(t) => text.push_str(&t),
                Event::Done(r) => return (queue, text, Some(r.unwrap())),
            }
        }
        (queue, text, None)
    }

    #[test]
    fn jobs_run_in_order_and_report_their_wait() {
        let w = Worker::start(
            Scripted {
                delay: Duration::from_millis(20),
            },
            4,
        )
        .unwrap();
        let mut a = w.submit(vec![1], params(3)).unwrap();
        let mut b = w.submit(vec![2], params(2)).unwrap();
        let (qa, ta, ga) = drain(&mut a);
        let (qb, tb, gb) = drain(&mut b);
        assert_eq!(ta, "t101 t102 t103 ");
        assert_eq!(tb, "t201 t202 ");
        assert_eq!(ga.unwrap().completion_tokens, 3);
        assert_eq!(gb.unwrap().finish, Finish::Length);
        assert!(qa.unwrap() < Duration::from_millis(30), "{qa:?}");
        assert!(
            qb.unwrap() >= Duration::from_millis(55),
            "b waited for a: {qb:?}"
        );
        w.join();
        assert!(!w.alive());
    }

    #[test]
    fn a_full_queue_refuses_and_left_clients_free_their_slot() {
        let w = Worker::start(
            Scripted {
                delay: Duration::from_millis(30),
            },
            1,
        )
        .unwrap();
        let mut running = w.submit(vec![1], params(4)).unwrap();
        // Wait until the worker took the first job, so the next one queues.
        assert!(matches!(
            running.blocking_recv(),
            Some(Event::Started { .. })
        ));
        let queued = w.submit(vec![2], params(1)).unwrap();
        assert!(matches!(
            w.submit(vec![3], params(1)),
            Err(Refusal::Full { limit: 1, .. })
        ));
        drop(queued);
        let mut third = w.submit(vec![3], params(1)).unwrap();
        let (_, text, _) = drain(&mut third);
        assert_eq!(text, "t301 ");
        drain(&mut running);
    }

    #[test]
    fn a_dropped_receiver_cancels_the_running_job() {
        let w = Worker::start(
            Scripted {
                delay: Duration::from_millis(10),
            },
            4,
        )
        .unwrap();
        let mut first = w.submit(vec![1], params(10_000)).unwrap();
        assert!(matches!(first.blocking_recv(), Some(Event::Started { .. })));
        assert!(matches!(first.blocking_recv(), Some(Event::Text(_))));
        drop(first);
        let before = Instant::now();
        let mut next = w.submit(vec![2], params(1)).unwrap();
        let (queue, _, g) = drain(&mut next);
        assert!(g.is_some());
        assert!(
            queue.unwrap() < Duration::from_millis(500)
                && before.elapsed() < Duration::from_secs(2),
            "the abandoned job stopped: {queue:?}"
        );
    }

    #[test]
    fn a_panic_fails_one_job_and_the_worker_goes_on() {
        let w = Worker::start(
            Scripted {
                delay: Duration::ZERO,
            },
            4,
        )
        .unwrap();
        let mut bad = w.submit(vec![666], params(1)).unwrap();
        assert!(matches!(bad.blocking_recv(), Some(Event::Started { .. })));
        match bad.blocking_recv() {
            Some(Event::Done(Err(LocalError::Engine(m)))) => {
                assert!(m.contains("scripted failure"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let mut good = w.submit(vec![1], params(1)).unwrap();
        assert_eq!(drain(&mut good).1, "t101 ");
        assert!(w.alive());
    }

    #[test]
    fn close_refuses_new_jobs_drops_queued_and_cancel_stops_the_running_one() {
        let w = Worker::start(
            Scripted {
                delay: Duration::from_millis(10),
            },
            4,
        )
        .unwrap();
        let mut running = w.submit(vec![1], params(10_000)).unwrap();
        assert!(matches!(
            running.blocking_recv(),
            Some(Event::Started { .. })
        ));
        let mut queued = w.submit(vec![2], params(1)).unwrap();
        w.close();
        assert!(w.closing());
        assert_eq!(w.submit(vec![3], params(1)).unwrap_err(), Refusal::Closing);
        assert!(queued.blocking_recv().is_none(), "dropped without Started");
        w.cancel_running();
        let (_, _, g) = drain(&mut running);
        assert_eq!(g.unwrap().finish, Finish::Cancelled);
        w.join();
        assert_eq!(w.submit(vec![3], params(1)).unwrap_err(), Refusal::Stopped);
    }
}

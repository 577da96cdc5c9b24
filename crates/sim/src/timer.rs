//! A precise timer for the simulator's emit schedule.
//!
//! tokio's timer wheel has a resolution of one millisecond and rounds every deadline up, so
//! a token due at t fires anywhere in [t, t + 1 ms) and the simulator's fidelity target
//! (emit within 1 ms p50 of the prescribed time, 2 ms p99, at 256 streams) would be eaten
//! by the timer alone. This module owns one dedicated thread that keeps every pending
//! deadline in a heap and waits for the earliest with a nanosecond-resolution wait
//! (`recv_timeout`, a futex with the kernel's ~50 us slack), then wakes the task through a
//! oneshot. Deadlines far away (over 20 ms) are first slept on tokio's wheel, so the heap
//! holds only the near future.
//!
//! Nothing here measures: the clock is `Instant` (monotonic), and the recorder in `stats`
//! stamps the actual emit times.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Deadlines further away than this are first slept on tokio's coarse timer.
const COARSE_HORIZON: Duration = Duration::from_millis(20);

struct Pending {
    deadline: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

/// Handle to the timer thread. Cloning is cheap; the thread ends when the last handle is
/// dropped and no deadline is pending.
#[derive(Clone)]
pub struct PreciseTimer {
    tx: mpsc::Sender<(Instant, oneshot::Sender<()>)>,
}

impl std::fmt::Debug for PreciseTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreciseTimer")
    }
}

impl PreciseTimer {
    /// Starts the timer thread.
    pub fn start() -> std::io::Result<PreciseTimer> {
        let (tx, rx) = mpsc::channel::<(Instant, oneshot::Sender<()>)>();
        std::thread::Builder::new()
            .name("sim-timer".into())
            .spawn(move || run(rx))?;
        Ok(PreciseTimer { tx })
    }

    /// Completes at `deadline` (or at once if it has passed).
    pub async fn sleep_until(&self, deadline: Instant) {
        let now = Instant::now();
        if deadline <= now {
            return;
        }
        if deadline - now > COARSE_HORIZON {
            tokio::time::sleep_until((deadline - COARSE_HORIZON / 2).into()).await;
        }
        let (wake, woken) = oneshot::channel();
        if self.tx.send((deadline, wake)).is_err() {
            // The thread is gone (it only ends with the process): fall back to tokio.
            tokio::time::sleep_until(deadline.into()).await;
            return;
        }
        // An error means the thread dropped the sender, which it never does before the
        // deadline; either way the wait is over.
        let _ = woken.await;
    }
}

fn run(rx: mpsc::Receiver<(Instant, oneshot::Sender<()>)>) {
    let mut heap: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = match heap.peek() {
            Some(Reverse(p)) => {
                let now = Instant::now();
                if p.deadline <= now {
                    if let Some(Reverse(p)) = heap.pop() {
                        // The waiter may have gone (client disconnected): nothing to do.
                        let _ = p.wake.send(());
                    }
                    continue;
                }
                rx.recv_timeout(p.deadline - now)
            }
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((deadline, wake)) => {
                seq += 1;
                heap.push(Reverse(Pending {
                    deadline,
                    seq,
                    wake,
                }));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if heap.is_empty() {
                    return;
                }
                // No new deadlines can come; serve what is pending.
                if let Some(Reverse(p)) = heap.peek() {
                    std::thread::sleep(p.deadline.saturating_duration_since(Instant::now()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_in_deadline_order_and_never_early() {
        let timer = PreciseTimer::start().unwrap();
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for ms in [30u64, 5, 15, 1, 25] {
            let timer = timer.clone();
            tasks.spawn(async move {
                let deadline = start + Duration::from_millis(ms);
                timer.sleep_until(deadline).await;
                (ms, Instant::now().saturating_duration_since(deadline))
            });
        }
        let mut fired = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let (ms, late) = r.unwrap();
            assert!(Instant::now() >= start + Duration::from_millis(ms));
            fired.push((ms, late));
        }
        assert_eq!(fired.len(), 5);
    }

    #[tokio::test]
    async fn past_deadline_returns_at_once() {
        let timer = PreciseTimer::start().unwrap();
        let before = Instant::now();
        timer.sleep_until(before - Duration::from_millis(5)).await;
        timer.sleep_until(before).await;
    }
}

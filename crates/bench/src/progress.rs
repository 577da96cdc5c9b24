//! Live progress counters that the display polls at a fixed rate. Workers touch only
//! atomics (and, now and then, a try-locked histogram for the rolling TTFT); nothing here
//! waits, so the display can never slow the request path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::hist::LatencyHistogram;

use crate::record::Booked;

/// Shared progress of the current series.
#[derive(Debug)]
pub struct Progress {
    label: Mutex<(String, Option<u64>, Instant)>,
    done: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicI64,
    ttft: Mutex<LatencyHistogram>,
}

/// What the display shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Series label.
    pub label: String,
    /// Requests to send, when known.
    pub total: Option<u64>,
    /// Finished requests.
    pub done: u64,
    /// Failed among them.
    pub failed: u64,
    /// In flight now.
    pub in_flight: i64,
    /// Time since the series started.
    pub elapsed: Duration,
    /// Median TTFT so far.
    pub ttft_p50: Option<Duration>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    /// Empty counters.
    pub fn new() -> Self {
        Progress {
            label: Mutex::new((String::new(), None, Instant::now())),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            ttft: Mutex::new(LatencyHistogram::new()),
        }
    }

    /// A new series (or phase) begins.
    pub fn begin(&self, label: &str, total: Option<u64>) {
        if let Ok(mut l) = self.label.lock() {
            *l = (label.to_string(), total, Instant::now());
        }
        self.done.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        if let Ok(mut h) = self.ttft.lock() {
            *h = LatencyHistogram::new();
        }
    }

    /// A request was dispatched.
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request finished (`None`: not measured, e.g. warm-up or cancelled).
    pub fn finished(&self, booked: Option<Booked>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = booked {
            if !b.ok {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            if let (Some(ttft), Ok(mut h)) = (b.ttft, self.ttft.try_lock()) {
                h.record(ttft);
            }
        }
    }

    /// The current figures.
    pub fn snapshot(&self) -> Snapshot {
        let (label, total, started) = self
            .label
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|_| (String::new(), None, Instant::now()));
        Snapshot {
            label,
            total,
            done: self.done.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
            ttft_p50: self.ttft.lock().ok().and_then(|h| h.quantile(0.5)),
        }
    }
}

//! Choosing among equivalent upstreams for one model, and learning how they behave.
//!
//! A route may list several targets (upstream, model) that can serve the same requests.
//! [`Picker::order`] returns the order to try them in: the first is the choice, the rest
//! are the fallbacks. Strategies: fixed order; weighted random; latency-aware — the power
//! of two choices on an exponentially weighted moving average of TTFT, with a penalty for
//! recent errors (two random candidates, the better one wins: nearly as good as always
//! taking the best, without herding every request onto it). [`Picker::p95`] gives the
//! observed p95 TTFT of a target, the default hedging threshold.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::retry::Jitter;

/// How a route chooses among its targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// In the listed order.
    Ordered,
    /// At random in proportion to the weights; the rest by decreasing weight.
    Weighted(Vec<u32>),
    /// Power of two choices on TTFT EWMA with error penalties.
    Latency,
}

/// The smoothing of the TTFT average: each new sample counts this much.
const EWMA_ALPHA: f64 = 0.2;
/// How many recent TTFTs are kept for the p95.
const RECENT: usize = 200;
/// Fewest samples before a p95 is trusted.
const MIN_P95_SAMPLES: usize = 20;

#[derive(Debug, Clone, Default)]
struct Health {
    ewma_ns: Option<f64>,
    /// Grows by one per error, halves per success.
    penalty: f64,
    recent: VecDeque<u64>,
}

impl Health {
    fn score(&self) -> f64 {
        // Unmeasured targets score best, so every target gets measured.
        self.ewma_ns.unwrap_or(0.0) * (1.0 + self.penalty)
    }
}

/// Per-target health, shared by all requests.
#[derive(Debug, Default)]
pub struct Picker {
    health: Mutex<HashMap<String, Health>>,
}

impl Picker {
    /// No observations yet.
    pub fn new() -> Picker {
        Picker::default()
    }

    fn with<R>(&self, target: &str, f: impl FnOnce(&mut Health) -> R) -> R {
        let mut all = self.health.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(target.to_owned()).or_default())
    }

    /// Records a successful first token (or full response) after `ttft`.
    pub fn observe(&self, target: &str, ttft: Duration) {
        let ns = ttft.as_nanos() as f64;
        self.with(target, |h| {
            h.ewma_ns = Some(match h.ewma_ns {
                None => ns,
                Some(prev) => prev + EWMA_ALPHA * (ns - prev),
            });
            h.penalty /= 2.0;
            if h.recent.len() == RECENT {
                h.recent.pop_front();
            }
            h.recent.push_back(ttft.as_nanos() as u64);
        });
    }

    /// Records a failed attempt.
    pub fn observe_error(&self, target: &str) {
        self.with(target, |h| h.penalty += 1.0);
    }

    /// The observed p95 TTFT of `target`, once there are enough samples.
    pub fn p95(&self, target: &str) -> Option<Duration> {
        self.with(target, |h| {
            if h.recent.len() < MIN_P95_SAMPLES {
                return None;
            }
            let mut v: Vec<u64> = h.recent.iter().copied().collect();
            v.sort_unstable();
            let i = ((v.len() as f64) * 0.95).ceil() as usize;
            v.get(i.saturating_sub(1).min(v.len() - 1))
                .map(|ns| Duration::from_nanos(*ns))
        })
    }

    /// The TTFT moving average of `target`.
    pub fn ewma(&self, target: &str) -> Option<Duration> {
        self.with(target, |h| {
            h.ewma_ns.map(|ns| Duration::from_nanos(ns as u64))
        })
    }

    /// The order in which to try `targets`.
    pub fn order(
        &self,
        strategy: &Strategy,
        targets: &[String],
        jitter: &mut Jitter,
    ) -> Vec<usize> {
        let n = targets.len();
        let mut order: Vec<usize> = (0..n).collect();
        if n < 2 {
            return order;
        }
        match strategy {
            Strategy::Ordered => {}
            Strategy::Weighted(weights) => {
                let w = |i: usize| u64::from(weights.get(i).copied().unwrap_or(1));
                let total: u64 = (0..n).map(w).sum();
                if total > 0 {
                    let mut r = (jitter.unit() * total as f64) as u64;
                    let mut first = 0;
                    for i in 0..n {
                        if r < w(i) {
                            first = i;
                            break;
                        }
                        r -= w(i);
                    }
                    order.sort_by_key(|&i| (i != first, std::cmp::Reverse(w(i)), i));
                }
            }
            Strategy::Latency => {
                let scores: Vec<f64> = {
                    let all = self.health.lock().unwrap_or_else(|p| p.into_inner());
                    targets
                        .iter()
                        .map(|t| all.get(t).map_or(0.0, Health::score))
                        .collect()
                };
                let a = (jitter.unit() * n as f64) as usize % n;
                let mut b = (jitter.unit() * (n - 1) as f64) as usize % (n - 1);
                if b >= a {
                    b += 1;
                }
                let first = if scores[b] < scores[a] { b } else { a };
                order.sort_by(|&x, &y| {
                    (x != first)
                        .cmp(&(y != first))
                        .then(scores[x].total_cmp(&scores[y]))
                        .then(x.cmp(&y))
                });
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn ordered_keeps_the_list() {
        let p = Picker::new();
        assert_eq!(
            p.order(&Strategy::Ordered, &names(3), &mut Jitter::seeded(1)),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn weighted_follows_the_weights() {
        let p = Picker::new();
        let mut j = Jitter::seeded(3);
        let mut firsts = [0u32; 2];
        for _ in 0..2000 {
            firsts[p.order(&Strategy::Weighted(vec![9, 1]), &names(2), &mut j)[0]] += 1;
        }
        assert!(firsts[0] > 1600 && firsts[1] > 100, "{firsts:?}");
    }

    #[test]
    fn latency_prefers_the_faster_and_avoids_errors() {
        let p = Picker::new();
        let t = names(3);
        for _ in 0..10 {
            p.observe("t0", Duration::from_millis(300));
            p.observe("t1", Duration::from_millis(50));
            p.observe("t2", Duration::from_millis(100));
        }
        let mut j = Jitter::seeded(5);
        let mut firsts = [0u32; 3];
        for _ in 0..3000 {
            firsts[p.order(&Strategy::Latency, &t, &mut j)[0]] += 1;
        }
        // With two random candidates, the slowest wins only if drawn... never (it loses to
        // either other), and the fastest wins whenever drawn (2 of 3 pairs).
        assert_eq!(firsts[0], 0, "{firsts:?}");
        assert!(firsts[1] > firsts[2], "{firsts:?}");
        for _ in 0..5 {
            p.observe_error("t1");
        }
        let mut firsts = [0u32; 3];
        for _ in 0..3000 {
            firsts[p.order(&Strategy::Latency, &t, &mut j)[0]] += 1;
        }
        assert!(
            firsts[2] > firsts[1],
            "errors must push t1 back: {firsts:?}"
        );
    }

    #[test]
    fn p95_needs_samples() {
        let p = Picker::new();
        for i in 1..=10 {
            p.observe("x", Duration::from_millis(i));
        }
        assert_eq!(p.p95("x"), None);
        for i in 11..=100 {
            p.observe("x", Duration::from_millis(i));
        }
        assert_eq!(p.p95("x"), Some(Duration::from_millis(95)));
    }
}

//! Service-level objectives: parsing `--slo` specs ([`Slo::parse`]), judging one request
//! ([`Slo::judge`]) and accumulating attainment and goodput ([`Attainment`]).
//!
//! This module owns the SLO vocabulary (presets from the lesson's use-case table and the
//! custom `key=duration` form) and the rule for what makes a request *good*. It leaves the
//! per-request values to its caller, who passes them as a lookup so an undefined metric
//! (TPOT with fewer than two output tokens, TTFT without streaming) stays undefined.
//!
//! The comparison is strict: a threshold is met iff `value < threshold`, because the
//! lesson's table reads "< 1 second first token" and "< 100ms".

use std::fmt;
use std::time::Duration;

use crate::throughput::Window;

/// A per-request metric an SLO threshold can constrain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SloMetric {
    /// Time to first token.
    Ttft,
    /// Time to first content.
    Ttfc,
    /// Time per output token (defined for N_out ≥ 2).
    Tpot,
    /// Time to last token.
    Ttlt,
    /// End-to-end latency.
    E2e,
    /// TTFT measured from the intended send time.
    QueueTtft,
    /// E2E measured from the intended send time.
    QueueE2e,
}

impl SloMetric {
    /// Every metric, in the order keys are listed in messages.
    pub const ALL: [SloMetric; 7] = [
        SloMetric::Ttft,
        SloMetric::Ttfc,
        SloMetric::Tpot,
        SloMetric::Ttlt,
        SloMetric::E2e,
        SloMetric::QueueTtft,
        SloMetric::QueueE2e,
    ];

    /// The key used in `--slo` specs, e.g. `"ttft"`.
    pub const fn key(self) -> &'static str {
        match self {
            SloMetric::Ttft => "ttft",
            SloMetric::Ttfc => "ttfc",
            SloMetric::Tpot => "tpot",
            SloMetric::Ttlt => "ttlt",
            SloMetric::E2e => "e2e",
            SloMetric::QueueTtft => "queue_ttft",
            SloMetric::QueueE2e => "queue_e2e",
        }
    }

    /// Parses a [`key`](Self::key).
    pub fn from_key(key: &str) -> Option<SloMetric> {
        Self::ALL.into_iter().find(|m| m.key() == key)
    }
}

/// The named presets, from the lesson's use-case latency table.
pub const PRESETS: [(&str, &str); 4] = [
    ("chatbot", "ttft < 1s"),
    ("autocomplete", "e2e < 100ms"),
    ("realtime", "ttft < 500ms"),
    ("batch", "no latency threshold"),
];

fn preset(name: &str) -> Option<Vec<(SloMetric, Duration)>> {
    match name {
        "chatbot" => Some(vec![(SloMetric::Ttft, Duration::from_secs(1))]),
        "autocomplete" => Some(vec![(SloMetric::E2e, Duration::from_millis(100))]),
        "realtime" => Some(vec![(SloMetric::Ttft, Duration::from_millis(500))]),
        "batch" => Some(vec![]),
        _ => None,
    }
}

/// Why an SLO spec or a duration did not parse. Messages name the bad part and list what
/// is valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SloError {
    /// The spec was empty.
    #[error("empty SLO; use a preset ({presets}) or key=duration pairs with keys {keys}")]
    Empty {
        /// The valid presets.
        presets: String,
        /// The valid keys.
        keys: String,
    },
    /// A part is neither a preset nor `key=duration` with a known key.
    #[error(
        "'{part}' in the SLO is not a preset or a known key; presets: {presets}; keys: {keys} (e.g. ttft=200ms,e2e=2s)"
    )]
    UnknownPart {
        /// The offending part.
        part: String,
        /// The valid presets.
        presets: String,
        /// The valid keys.
        keys: String,
    },
    /// A value did not parse as a duration.
    #[error("'{part}' in the SLO: {reason}")]
    BadDuration {
        /// The offending part.
        part: String,
        /// What is wrong with its value.
        reason: DurationError,
    },
}

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number, or a malformed one.
    #[error("'{0}' is not a duration; write a number and a unit such as 500us, 200ms, 1.5s, 2m")]
    Malformed(String),
    /// The unit is missing or unknown.
    #[error("'{0}' has no known unit; use ns, us (or µs), ms, s or m")]
    Unit(String),
    /// Finer than a nanosecond or longer than `u64` nanoseconds.
    #[error("'{0}' is out of range (1 ns resolution, at most about 584 years)")]
    Range(String),
}

fn preset_names() -> String {
    PRESETS.map(|(n, _)| n).join(", ")
}

fn key_names() -> String {
    SloMetric::ALL.map(SloMetric::key).join(", ")
}

/// Parses a duration such as `500us`, `200ms`, `1.5s`, `2s`, `2m` or `250ns` exactly
/// (decimal arithmetic, no floats). Units: `ns`, `us`/`µs`, `ms`, `s`, `m` (minutes).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError::Unit(t.to_string()))?;
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(DurationError::Malformed(t.to_string()));
    }
    let unit_ns: u128 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        _ => return Err(DurationError::Unit(t.to_string())),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return Err(DurationError::Malformed(t.to_string()));
    }
    let range = || DurationError::Range(t.to_string());
    let int_val: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| range())?
    };
    let mut total = int_val.checked_mul(unit_ns).ok_or_else(range)?;
    // Each fractional digit is worth a tenth of the previous; anything left after the
    // nanosecond must be zero.
    let mut place = unit_ns;
    for b in frac.bytes() {
        let d = u128::from(b - b'0');
        if !place.is_multiple_of(10) {
            if d != 0 {
                return Err(range());
            }
            continue;
        }
        place /= 10;
        total += d * place;
    }
    let ns = u64::try_from(total).map_err(|_| range())?;
    Ok(Duration::from_nanos(ns))
}

/// A set of per-request thresholds. Met iff `value < threshold` for every applicable one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slo {
    /// The thresholds, at most one per metric.
    pub thresholds: Vec<(SloMetric, Duration)>,
}

/// The verdict on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Succeeded and met every applicable threshold.
    Good,
    /// Succeeded but missed at least one applicable threshold.
    Bad,
    /// Did not succeed; counts against attainment.
    Failed,
}

impl Slo {
    /// Parses a comma-separated spec of presets (`chatbot`, `autocomplete`, `realtime`,
    /// `batch`) and `key=duration` pairs (keys `ttft`, `ttfc`, `tpot`, `ttlt`, `e2e`,
    /// `queue_ttft`, `queue_e2e`), e.g. `chatbot,tpot=50ms`. A later threshold on the same
    /// metric replaces an earlier one.
    pub fn parse(spec: &str) -> Result<Slo, SloError> {
        let parts: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            return Err(SloError::Empty {
                presets: preset_names(),
                keys: key_names(),
            });
        }
        let mut slo = Slo::default();
        for part in parts {
            let unknown = || SloError::UnknownPart {
                part: part.to_string(),
                presets: preset_names(),
                keys: key_names(),
            };
            match part.split_once('=') {
                Some((key, value)) => {
                    let metric = SloMetric::from_key(&key.trim().to_ascii_lowercase())
                        .ok_or_else(unknown)?;
                    let d = parse_duration(value).map_err(|reason| SloError::BadDuration {
                        part: part.to_string(),
                        reason,
                    })?;
                    slo.set(metric, d);
                }
                None => {
                    for (metric, d) in preset(&part.to_ascii_lowercase()).ok_or_else(unknown)? {
                        slo.set(metric, d);
                    }
                }
            }
        }
        Ok(slo)
    }

    /// Sets (or replaces) the threshold on `metric`.
    pub fn set(&mut self, metric: SloMetric, threshold: Duration) {
        match self.thresholds.iter_mut().find(|(m, _)| *m == metric) {
            Some(slot) => slot.1 = threshold,
            None => self.thresholds.push((metric, threshold)),
        }
    }

    /// The threshold on `metric`, if any.
    pub fn threshold(&self, metric: SloMetric) -> Option<Duration> {
        self.thresholds
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, d)| *d)
    }

    /// The first applicable threshold `values` misses, if any. A metric for which `values`
    /// returns `None` is not applicable and is skipped (not passed, not failed).
    pub fn first_miss(&self, values: &dyn Fn(SloMetric) -> Option<Duration>) -> Option<SloMetric> {
        self.thresholds
            .iter()
            .find(|(m, limit)| values(*m).is_some_and(|v| v >= *limit))
            .map(|(m, _)| *m)
    }

    /// Judges one request: [`Verdict::Failed`] unless it succeeded, else
    /// [`Verdict::Good`] iff every applicable threshold is met (`value < threshold`).
    pub fn judge(
        &self,
        values: &dyn Fn(SloMetric) -> Option<Duration>,
        succeeded: bool,
    ) -> Verdict {
        if !succeeded {
            Verdict::Failed
        } else if self.first_miss(values).is_some() {
            Verdict::Bad
        } else {
            Verdict::Good
        }
    }
}

impl fmt::Display for Slo {
    /// The canonical spec, e.g. `ttft=1s,tpot=50ms` (`none` without thresholds).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.thresholds.is_empty() {
            return f.write_str("none");
        }
        for (i, (m, d)) in self.thresholds.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={}", m.key(), format_duration(*d))?;
        }
        Ok(())
    }
}

/// Formats a duration in the largest unit that shows it exactly (`1s`, `1500ms`, `250us`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    for (unit, size) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
        if ns != 0 && ns.is_multiple_of(size) {
            return format!("{}{unit}", ns / size);
        }
    }
    format!("{ns}ns")
}

/// Counts verdicts and the output tokens of good requests, for attainment and goodput.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attainment {
    /// Good requests.
    pub good: u64,
    /// Succeeded but missed a threshold.
    pub bad: u64,
    /// Failed requests.
    pub failed: u64,
    /// Cancelled because the run ended: excluded from attainment.
    pub incomplete: u64,
    /// Σ N_out over good requests.
    pub good_output_tokens: u64,
}

impl Attainment {
    /// Adds one verdict; `output_tokens` counts toward good-token goodput when good.
    pub fn add(&mut self, verdict: Verdict, output_tokens: u64) {
        match verdict {
            Verdict::Good => {
                self.good += 1;
                self.good_output_tokens = self.good_output_tokens.saturating_add(output_tokens);
            }
            Verdict::Bad => self.bad += 1,
            Verdict::Failed => self.failed += 1,
        }
    }

    /// Counts a request cancelled because the run ended.
    pub fn add_incomplete(&mut self) {
        self.incomplete += 1;
    }

    /// Adds another accumulator.
    pub fn merge(&mut self, o: &Attainment) {
        self.good += o.good;
        self.bad += o.bad;
        self.failed += o.failed;
        self.incomplete += o.incomplete;
        self.good_output_tokens = self.good_output_tokens.saturating_add(o.good_output_tokens);
    }

    /// Succeeded requests (good + bad).
    pub fn succeeded(&self) -> u64 {
        self.good + self.bad
    }

    /// Requests judged (good + bad + failed); incomplete ones are not.
    pub fn total(&self) -> u64 {
        self.good + self.bad + self.failed
    }

    /// good ÷ (succeeded + failed), `None` before any request was judged.
    pub fn attainment(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| self.good as f64 / total as f64)
    }

    /// Good requests per second over `window`. The window should be the one whose requests
    /// were added (the full run, or only requests ending in the steady window).
    pub fn goodput(&self, window: Window) -> Option<f64> {
        per_second(self.good, window)
    }

    /// Output tokens of good requests per second over `window`.
    pub fn good_token_goodput(&self, window: Window) -> Option<f64> {
        per_second(self.good_output_tokens, window)
    }
}

fn per_second(count: u64, window: Window) -> Option<f64> {
    (!window.is_empty()).then(|| count as f64 / window.len().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn durations_parse_exactly() {
        assert_eq!(parse_duration("200ms"), Ok(ms(200)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("500µs"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse_duration(".5ms"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("1.50ns"),
            Err(DurationError::Range("1.50ns".into()))
        );
        assert_eq!(parse_duration("1.0ns"), Ok(Duration::from_nanos(1)));
        assert!(matches!(parse_duration("200"), Err(DurationError::Unit(_))));
        assert!(matches!(
            parse_duration("200h"),
            Err(DurationError::Unit(_))
        ));
        assert!(matches!(
            parse_duration("ms"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Range(_))
        ));
    }

    #[test]
    fn presets_follow_the_lesson() {
        let p = |s| Slo::parse(s).unwrap();
        assert_eq!(p("chatbot").thresholds, [(SloMetric::Ttft, ms(1000))]);
        assert_eq!(p("autocomplete").thresholds, [(SloMetric::E2e, ms(100))]);
        assert_eq!(p("realtime").thresholds, [(SloMetric::Ttft, ms(500))]);
        assert!(p("batch").thresholds.is_empty());
        assert_eq!(p("Chatbot , tpot=50ms").to_string(), "ttft=1s,tpot=50ms");
        // Later wins.
        assert_eq!(
            p("chatbot,ttft=200ms").threshold(SloMetric::Ttft),
            Some(ms(200))
        );
    }

    #[test]
    fn custom_spec_and_errors() {
        let slo = Slo::parse("ttft=200ms,e2e=2s,tpot=50ms,ttfc=300ms,ttlt=1.5s").unwrap();
        assert_eq!(slo.thresholds.len(), 5);
        assert_eq!(
            slo.to_string(),
            "ttft=200ms,e2e=2s,tpot=50ms,ttfc=300ms,ttlt=1500ms"
        );
        let e = Slo::parse("ttft=200ms,latency=1s").unwrap_err().to_string();
        assert!(e.contains("'latency=1s'"), "{e}");
        assert!(e.contains("chatbot, autocomplete, realtime, batch"), "{e}");
        assert!(e.contains("ttft, ttfc, tpot, ttlt, e2e"), "{e}");
        let e = Slo::parse("ttft=fast").unwrap_err().to_string();
        assert!(e.contains("'ttft=fast'") && e.contains("200ms"), "{e}");
        assert!(matches!(Slo::parse(" , "), Err(SloError::Empty { .. })));
        assert!(
            Slo::parse("gaming")
                .unwrap_err()
                .to_string()
                .contains("'gaming'")
        );
    }

    #[test]
    fn judge_is_strict_and_skips_undefined() {
        let slo = Slo::parse("ttft=1s,tpot=50ms").unwrap();
        let vals = |ttft: Option<u64>, tpot: Option<u64>| {
            move |m: SloMetric| match m {
                SloMetric::Ttft => ttft.map(ms),
                SloMetric::Tpot => tpot.map(ms),
                _ => None,
            }
        };
        assert_eq!(slo.judge(&vals(Some(999), Some(49)), true), Verdict::Good);
        // Strict: equal to the threshold misses it.
        assert_eq!(slo.judge(&vals(Some(1000), Some(49)), true), Verdict::Bad);
        assert_eq!(
            slo.first_miss(&vals(Some(1000), Some(49))),
            Some(SloMetric::Ttft)
        );
        // TPOT undefined (one output token): skipped, TTFT decides.
        assert_eq!(slo.judge(&vals(Some(10), None), true), Verdict::Good);
        assert_eq!(slo.judge(&vals(Some(10), Some(51)), true), Verdict::Bad);
        assert_eq!(slo.judge(&vals(Some(10), Some(1)), false), Verdict::Failed);
        // No threshold applies: a success is good.
        assert_eq!(
            Slo::parse("batch").unwrap().judge(&vals(None, None), true),
            Verdict::Good
        );
    }

    #[test]
    fn attainment_and_goodput() {
        let mut a = Attainment::default();
        a.add(Verdict::Good, 100);
        a.add(Verdict::Good, 50);
        a.add(Verdict::Bad, 1000);
        a.add(Verdict::Failed, 0);
        a.add_incomplete();
        let mut b = Attainment::default();
        b.merge(&a);
        assert_eq!(b.attainment(), Some(0.5));
        assert_eq!((b.succeeded(), b.total(), b.incomplete), (3, 4, 1));
        let w = Window::new(Duration::from_secs(1), Duration::from_secs(3));
        assert_eq!(b.goodput(w), Some(1.0));
        assert_eq!(b.good_token_goodput(w), Some(75.0));
        assert_eq!(Attainment::default().attainment(), None);
        assert_eq!(b.goodput(Window::new(w.end, w.start)), None);
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ns in 0u64..10_000_000_000_000) {
            let d = Duration::from_nanos(ns);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn decimal_seconds_match_integer_nanos(secs in 0u64..100_000, frac in 0u32..1_000_000_000) {
            let text = format!("{secs}.{frac:09}s");
            prop_assert_eq!(parse_duration(&text), Ok(Duration::new(secs, frac)));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,12}") {
            let _ = Slo::parse(&s);
        }
    }
}

//! What the limiter reports: the kinds of limit ([`LimitKind`]), the per-kind limit,
//! remaining and reset of one (API key, model) ([`LimitState`]) rendered as OpenAI and
//! Anthropic headers, and a refused request ([`Rejection`]) rendered as `retry-after` headers
//! and provider-style 429 messages.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::fmt::thousands;
use protocol::ratelimit::{format_go_duration, format_rfc3339};

use super::format::{ceil_millis, ceil_secs, round_up_to_millis};
use super::limits::{Charge, TierLimits};

/// One kind of limit a tier may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Requests per window (`rpm`).
    Requests,
    /// Combined input + output tokens per window (`tpm`).
    Tokens,
    /// Input tokens per window (`itpm`).
    InputTokens,
    /// Output tokens per window (`otpm`).
    OutputTokens,
}

impl LimitKind {
    /// Every kind, in the order limits are checked and reported.
    pub const ALL: [LimitKind; 4] = [
        LimitKind::Requests,
        LimitKind::Tokens,
        LimitKind::InputTokens,
        LimitKind::OutputTokens,
    ];

    /// The limit `limits` sets for this kind (`None` = unlimited).
    #[must_use]
    pub fn limit(self, limits: &TierLimits) -> Option<u64> {
        match self {
            LimitKind::Requests => limits.rpm,
            LimitKind::Tokens => limits.tpm,
            LimitKind::InputTokens => limits.itpm,
            LimitKind::OutputTokens => limits.otpm,
        }
    }

    /// How much of this kind `charge` uses (tokens = input + output, without overflow).
    #[must_use]
    pub fn amount(self, charge: Charge) -> u128 {
        match self {
            LimitKind::Requests => u128::from(charge.requests),
            LimitKind::Tokens => u128::from(charge.input_tokens) + u128::from(charge.output_tokens),
            LimitKind::InputTokens => u128::from(charge.input_tokens),
            LimitKind::OutputTokens => u128::from(charge.output_tokens),
        }
    }

    /// Whether this is one of the token kinds.
    #[must_use]
    pub fn is_tokens(self) -> bool {
        self != LimitKind::Requests
    }

    /// The abbreviation providers use: `RPM`, `TPM`, `ITPM`, `OTPM`.
    #[must_use]
    pub fn abbreviation(self) -> &'static str {
        match self {
            LimitKind::Requests => "RPM",
            LimitKind::Tokens => "TPM",
            LimitKind::InputTokens => "ITPM",
            LimitKind::OutputTokens => "OTPM",
        }
    }

    /// What is counted, in words: `requests`, `tokens`, `input tokens`, `output tokens`.
    #[must_use]
    pub fn unit(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::InputTokens => "input tokens",
            LimitKind::OutputTokens => "output tokens",
        }
    }
}

/// Where one configured limit stands for one (API key, model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindState {
    /// The limit per window.
    pub limit: u64,
    /// How much of the limit is left in the window (after the request, on an admission).
    pub remaining: u64,
    /// Time until the window holds none of the current charges of this kind, i.e. until the
    /// limit is fully available again if nothing else is admitted. Zero when nothing counts.
    pub reset: Duration,
}

/// Where every configured limit of a tier stands for one (API key, model); a kind the tier
/// leaves unlimited is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitState {
    /// Requests (`rpm`).
    pub requests: Option<KindState>,
    /// Combined tokens (`tpm`).
    pub tokens: Option<KindState>,
    /// Input tokens (`itpm`).
    pub input_tokens: Option<KindState>,
    /// Output tokens (`otpm`).
    pub output_tokens: Option<KindState>,
}

impl LimitState {
    /// The state of `kind`, if the tier limits it.
    #[must_use]
    pub fn get(&self, kind: LimitKind) -> Option<KindState> {
        match kind {
            LimitKind::Requests => self.requests,
            LimitKind::Tokens => self.tokens,
            LimitKind::InputTokens => self.input_tokens,
            LimitKind::OutputTokens => self.output_tokens,
        }
    }

    /// Sets the state of `kind`.
    pub fn set(&mut self, kind: LimitKind, state: Option<KindState>) {
        match kind {
            LimitKind::Requests => self.requests = state,
            LimitKind::Tokens => self.tokens = state,
            LimitKind::InputTokens => self.input_tokens = state,
            LimitKind::OutputTokens => self.output_tokens = state,
        }
    }

    /// The most restrictive of the configured token limits (`tpm`, `itpm`, `otpm`): the one
    /// with the smallest fraction of its limit remaining; ties go to the smaller remaining,
    /// then the longer reset, then the order `tpm`, `itpm`, `otpm`. `None` when no token kind
    /// is limited.
    ///
    /// This is what both header families report as "tokens" when a tier has more than one
    /// token limit: for an Anthropic-style tier (itpm + otpm) on the OpenAI wire, the
    /// `x-ratelimit-*-tokens` headers describe whichever of the two buckets is closer to
    /// running out, so a client pacing itself by them never overruns either.
    #[must_use]
    pub fn tokens_summary(&self) -> Option<(LimitKind, KindState)> {
        let candidates = [
            LimitKind::Tokens,
            LimitKind::InputTokens,
            LimitKind::OutputTokens,
        ];
        let mut best: Option<(LimitKind, KindState)> = None;
        for kind in candidates {
            let Some(state) = self.get(kind) else {
                continue;
            };
            best = match best {
                Some((_, current)) if more_restrictive(current, state) != Ordering::Greater => best,
                _ => Some((kind, state)),
            };
        }
        best
    }

    /// OpenAI `x-ratelimit-*` headers, in OpenAI's order: `x-ratelimit-limit-requests`,
    /// `-limit-tokens`, `-remaining-requests`, `-remaining-tokens`, `-reset-requests`,
    /// `-reset-tokens`. Only limited kinds appear (none for an unlimited tier). Resets are
    /// Go-style durations rounded up to whole milliseconds (`6m0s`, `51.189s`, `12ms`).
    /// The tokens family is [`LimitState::tokens_summary`].
    #[must_use]
    pub fn openai_headers(&self) -> Vec<(&'static str, String)> {
        let requests = self.requests;
        let tokens = self.tokens_summary().map(|(_, state)| state);
        let mut out = Vec::with_capacity(6);
        let reset = |d: Duration| format_go_duration(round_up_to_millis(d));
        if let Some(s) = requests {
            out.push(("x-ratelimit-limit-requests", s.limit.to_string()));
        }
        if let Some(s) = tokens {
            out.push(("x-ratelimit-limit-tokens", s.limit.to_string()));
        }
        if let Some(s) = requests {
            out.push(("x-ratelimit-remaining-requests", s.remaining.to_string()));
        }
        if let Some(s) = tokens {
            out.push(("x-ratelimit-remaining-tokens", s.remaining.to_string()));
        }
        if let Some(s) = requests {
            out.push(("x-ratelimit-reset-requests", reset(s.reset)));
        }
        if let Some(s) = tokens {
            out.push(("x-ratelimit-reset-tokens", reset(s.reset)));
        }
        out
    }

    /// Anthropic `anthropic-ratelimit-*` headers: `-requests-{limit,remaining,reset}`,
    /// `-input-tokens-*`, `-output-tokens-*` for each limited kind, then `-tokens-*` for
    /// the most restrictive token limit ([`LimitState::tokens_summary`]). Resets are RFC 3339
    /// UTC timestamps, `now` plus the reset rounded up to the next whole second, so the bucket
    /// is certainly refilled at the stated time. Remaining values are exact (Anthropic rounds
    /// `-tokens-remaining` to thousands; the simulator reports the truth).
    #[must_use]
    pub fn anthropic_headers(&self, now: SystemTime) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(12);
        let stamp = |reset: Duration| format_rfc3339(reset_instant(now, reset));
        let mut push = |names: [&'static str; 3], state: Option<KindState>| {
            if let Some(s) = state {
                out.push((names[0], s.limit.to_string()));
                out.push((names[1], s.remaining.to_string()));
                out.push((names[2], stamp(s.reset)));
            }
        };
        push(
            [
                "anthropic-ratelimit-requests-limit",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            ],
            self.requests,
        );
        push(
            [
                "anthropic-ratelimit-input-tokens-limit",
                "anthropic-ratelimit-input-tokens-remaining",
                "anthropic-ratelimit-input-tokens-reset",
            ],
            self.input_tokens,
        );
        push(
            [
                "anthropic-ratelimit-output-tokens-limit",
                "anthropic-ratelimit-output-tokens-remaining",
                "anthropic-ratelimit-output-tokens-reset",
            ],
            self.output_tokens,
        );
        push(
            [
                "anthropic-ratelimit-tokens-limit",
                "anthropic-ratelimit-tokens-remaining",
                "anthropic-ratelimit-tokens-reset",
            ],
            self.tokens_summary().map(|(_, s)| s),
        );
        out
    }
}

/// Orders `a` against `b` by restrictiveness: `Less` means `a` is more restrictive.
fn more_restrictive(a: KindState, b: KindState) -> Ordering {
    // Smaller remaining / limit first, compared exactly by cross-multiplication; a zero
    // limit counts as fully used (remaining is then zero as well).
    let frac_a = u128::from(a.remaining) * u128::from(b.limit);
    let frac_b = u128::from(b.remaining) * u128::from(a.limit);
    let by_fraction = match (a.limit, b.limit) {
        (0, 0) => Ordering::Equal,
        (0, _) => Ordering::Less,
        (_, 0) => Ordering::Greater,
        _ => frac_a.cmp(&frac_b),
    };
    by_fraction
        .then(a.remaining.cmp(&b.remaining))
        .then(b.reset.cmp(&a.reset))
}

/// `now + reset`, rounded up to a whole second since the epoch (saturating at `now`), and
/// clamped to the epoch so a pre-epoch clock never yields a 1969 reset.
fn reset_instant(now: SystemTime, reset: Duration) -> SystemTime {
    let at = now.checked_add(reset).unwrap_or(now).max(UNIX_EPOCH);
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) if since.subsec_nanos() != 0 => {
            let up = Duration::from_nanos(u64::from(1_000_000_000 - since.subsec_nanos()));
            at.checked_add(up).unwrap_or(at)
        }
        _ => at,
    }
}

/// A request the limiter refused: which limit it hit, by how much, and when it would fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The binding limit: the one whose charges take longest to expire far enough (or one the
    /// request can never fit).
    pub kind: LimitKind,
    /// That limit per window.
    pub limit: u64,
    /// How much of it the window's charges use now.
    pub used: u64,
    /// How much of it the request asked for.
    pub requested: u64,
    /// Exactly how long until enough of the window's charges expire for this request to fit
    /// every limit, if nothing else is admitted meanwhile. `None` when the request alone
    /// exceeds a limit and can never fit.
    pub retry_after: Option<Duration>,
    /// Every limit's state at the time of the rejection (the request is not charged).
    pub state: LimitState,
    /// The limiter's window (the "minute" of the limits).
    pub window: Duration,
}

impl Rejection {
    /// The `retry-after` header value: whole seconds, rounded up, at least 1; `None` when the
    /// request can never fit.
    #[must_use]
    pub fn retry_after_header(&self) -> Option<String> {
        self.retry_after.map(|d| ceil_secs(d).max(1).to_string())
    }

    /// The `retry-after-ms` header value: milliseconds rounded up; `None` when the request can
    /// never fit.
    #[must_use]
    pub fn retry_after_ms_header(&self) -> Option<String> {
        self.retry_after.map(|d| ceil_millis(d).to_string())
    }

    /// The `type` of OpenAI's 429 error object: `requests` for a request limit, `tokens` for
    /// any token limit.
    #[must_use]
    pub fn openai_error_type(&self) -> &'static str {
        if self.kind.is_tokens() {
            "tokens"
        } else {
            "requests"
        }
    }

    /// OpenAI-style 429 message, e.g. `Rate limit reached for gpt-4o-mini on tokens per min
    /// (TPM): Limit 200000, Used 170633, Requested 180002. Please try again in 45.19s.`
    /// (the wait rounded up to whole milliseconds), or a `Request too large ...` message when
    /// the request can never fit.
    #[must_use]
    pub fn openai_message(&self, model: &str) -> String {
        let label = format!(
            "{} per {} ({})",
            self.kind.unit(),
            self.period(),
            self.kind.abbreviation()
        );
        match self.retry_after {
            Some(wait) => format!(
                "Rate limit reached for {model} on {label}: Limit {}, Used {}, Requested {}. \
                 Please try again in {}.",
                self.limit,
                self.used,
                self.requested,
                format_go_duration(round_up_to_millis(wait))
            ),
            None => format!(
                "Request too large for {model} on {label}: Limit {}, Requested {}. {}",
                self.limit,
                self.requested,
                self.never_fits_advice()
            ),
        }
    }

    /// Anthropic-style 429 message (the `error.message` of a `rate_limit_error`), e.g. `This
    /// request would exceed your rate limit of 30,000 input tokens per minute for
    /// claude-sonnet-4-5 (used 25,000, requested 8,000). Please try again in 12.5s, or reduce
    /// the prompt length or the maximum tokens requested.`
    #[must_use]
    pub fn anthropic_message(&self, model: &str) -> String {
        let period = if self.window == Duration::from_secs(60) {
            "minute".to_owned()
        } else {
            self.period()
        };
        let head = format!(
            "This request would exceed your rate limit of {} {} per {period} for {model}",
            thousands(self.limit),
            self.kind.unit()
        );
        match self.retry_after {
            Some(wait) => {
                let advice = if self.kind.is_tokens() {
                    ", or reduce the prompt length or the maximum tokens requested"
                } else {
                    ""
                };
                format!(
                    "{head} (used {}, requested {}). Please try again in {}{advice}.",
                    thousands(self.used),
                    thousands(self.requested),
                    format_go_duration(round_up_to_millis(wait))
                )
            }
            None => format!(
                "{head} by itself (requested {}). {}",
                thousands(self.requested),
                self.never_fits_advice()
            ),
        }
    }

    /// `min` for the default one-minute window, otherwise the window as a Go duration.
    fn period(&self) -> String {
        if self.window == Duration::from_secs(60) {
            "min".to_owned()
        } else {
            format_go_duration(self.window)
        }
    }

    fn never_fits_advice(&self) -> &'static str {
        match self.kind {
            LimitKind::Requests => "No request can be admitted under this limit.",
            LimitKind::Tokens => {
                "The input or output tokens must be reduced in order to run successfully."
            }
            LimitKind::InputTokens => {
                "The input tokens must be reduced in order to run successfully."
            }
            LimitKind::OutputTokens => {
                "The maximum output tokens must be reduced in order to run successfully."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks(limit: u64, remaining: u64, reset_ms: u64) -> KindState {
        KindState {
            limit,
            remaining,
            reset: Duration::from_millis(reset_ms),
        }
    }

    fn rejection(kind: LimitKind, retry_after: Option<Duration>) -> Rejection {
        Rejection {
            kind,
            limit: 200_000,
            used: 170_633,
            requested: 180_002,
            retry_after,
            state: LimitState::default(),
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn kinds_charge_the_right_components() {
        let c = Charge {
            requests: 1,
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
        };
        assert_eq!(LimitKind::Requests.amount(c), 1);
        assert_eq!(LimitKind::Tokens.amount(c), 2 * u128::from(u64::MAX));
        assert_eq!(LimitKind::InputTokens.amount(c), u128::from(u64::MAX));
        let c = Charge {
            requests: 0,
            input_tokens: 3,
            output_tokens: 4,
        };
        assert_eq!(LimitKind::OutputTokens.amount(c), 4);
        assert_eq!(LimitKind::Tokens.amount(c), 7);
        let limits = TierLimits {
            rpm: Some(1),
            tpm: Some(2),
            itpm: Some(3),
            otpm: Some(4),
        };
        let got: Vec<_> = LimitKind::ALL.iter().map(|k| k.limit(&limits)).collect();
        assert_eq!(got, [Some(1), Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn openai_headers_for_an_openai_tier() {
        let state = LimitState {
            requests: Some(ks(60, 59, 1_000)),
            tokens: Some(ks(150_000, 149_984, 360_000)),
            ..LimitState::default()
        };
        let want = [
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-limit-tokens", "150000"),
            ("x-ratelimit-remaining-requests", "59"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ];
        let got = state.openai_headers();
        let got: Vec<(&str, &str)> = got.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn openai_resets_round_up_to_milliseconds_and_stay_ascii() {
        let state = LimitState {
            tokens: Some(KindState {
                limit: 10,
                remaining: 0,
                reset: Duration::from_micros(51_188_001),
            }),
            requests: Some(KindState {
                limit: 1,
                remaining: 1,
                reset: Duration::from_nanos(5),
            }),
            ..LimitState::default()
        };
        let headers = state.openai_headers();
        assert!(headers.contains(&("x-ratelimit-reset-tokens", "51.189s".to_owned())));
        assert!(headers.contains(&("x-ratelimit-reset-requests", "1ms".to_owned())));
        assert!(headers.iter().all(|(_, v)| v.is_ascii()));
        assert!(LimitState::default().openai_headers().is_empty());
    }

    #[test]
    fn openai_tokens_family_reports_the_tighter_anthropic_bucket() {
        // Output bucket is 50% used, input 10%: output is reported.
        let state = LimitState {
            input_tokens: Some(ks(30_000, 27_000, 2_000)),
            output_tokens: Some(ks(8_000, 4_000, 3_000)),
            ..LimitState::default()
        };
        assert_eq!(
            state.tokens_summary(),
            Some((LimitKind::OutputTokens, ks(8_000, 4_000, 3_000)))
        );
        let headers = state.openai_headers();
        assert!(headers.contains(&("x-ratelimit-limit-tokens", "8000".to_owned())));
        assert!(headers.contains(&("x-ratelimit-remaining-tokens", "4000".to_owned())));
        assert!(headers.contains(&("x-ratelimit-reset-tokens", "3s".to_owned())));
        assert!(!headers.iter().any(|(n, _)| n.contains("requests")));
        // Now input is the tighter one.
        let state = LimitState {
            input_tokens: Some(ks(30_000, 3_000, 2_000)),
            output_tokens: Some(ks(8_000, 4_000, 3_000)),
            ..LimitState::default()
        };
        assert_eq!(
            state.tokens_summary().map(|(k, _)| k),
            Some(LimitKind::InputTokens)
        );
    }

    #[test]
    fn tokens_summary_tie_breaks() {
        // Same fraction: the smaller remaining wins.
        let state = LimitState {
            tokens: Some(ks(100, 50, 1)),
            input_tokens: Some(ks(10, 5, 1)),
            ..LimitState::default()
        };
        assert_eq!(
            state.tokens_summary().map(|(k, _)| k),
            Some(LimitKind::InputTokens)
        );
        // Same fraction and remaining: the longer reset wins.
        let state = LimitState {
            input_tokens: Some(ks(10, 5, 1)),
            output_tokens: Some(ks(10, 5, 9)),
            ..LimitState::default()
        };
        assert_eq!(
            state.tokens_summary().map(|(k, _)| k),
            Some(LimitKind::OutputTokens)
        );
        // Identical: the first in order wins.
        let state = LimitState {
            tokens: Some(ks(10, 5, 1)),
            output_tokens: Some(ks(10, 5, 1)),
            ..LimitState::default()
        };
        assert_eq!(
            state.tokens_summary().map(|(k, _)| k),
            Some(LimitKind::Tokens)
        );
        // A zero limit is the most restrictive.
        let state = LimitState {
            tokens: Some(ks(10, 0, 1)),
            output_tokens: Some(ks(0, 0, 0)),
            ..LimitState::default()
        };
        assert_eq!(
            state.tokens_summary().map(|(k, _)| k),
            Some(LimitKind::OutputTokens)
        );
        assert_eq!(LimitState::default().tokens_summary(), None);
        let only_requests = LimitState {
            requests: Some(ks(1, 1, 0)),
            ..LimitState::default()
        };
        assert_eq!(only_requests.tokens_summary(), None);
    }

    #[test]
    fn anthropic_headers_use_rfc3339_resets() {
        // 2025-08-21T12:40:00.250Z
        let now = UNIX_EPOCH + Duration::from_millis(1_755_780_000_250);
        let state = LimitState {
            requests: Some(ks(1_000, 999, 58_000)),
            input_tokens: Some(ks(80_000, 80_000, 0)),
            output_tokens: Some(ks(16_000, 8_000, 59_000)),
            ..LimitState::default()
        };
        let got = state.anthropic_headers(now);
        let got: Vec<(&str, &str)> = got.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let want = [
            ("anthropic-ratelimit-requests-limit", "1000"),
            ("anthropic-ratelimit-requests-remaining", "999"),
            ("anthropic-ratelimit-requests-reset", "2025-08-21T12:40:59Z"),
            ("anthropic-ratelimit-input-tokens-limit", "80000"),
            ("anthropic-ratelimit-input-tokens-remaining", "80000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2025-08-21T12:40:01Z",
            ),
            ("anthropic-ratelimit-output-tokens-limit", "16000"),
            ("anthropic-ratelimit-output-tokens-remaining", "8000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2025-08-21T12:41:00Z",
            ),
            ("anthropic-ratelimit-tokens-limit", "16000"),
            ("anthropic-ratelimit-tokens-remaining", "8000"),
            ("anthropic-ratelimit-tokens-reset", "2025-08-21T12:41:00Z"),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn anthropic_headers_for_a_combined_tier_and_extremes() {
        let now = UNIX_EPOCH + Duration::from_secs(1_755_780_059);
        let state = LimitState {
            requests: Some(ks(5, 4, 0)),
            tokens: Some(ks(40_000, 39_000, 0)),
            ..LimitState::default()
        };
        let got = state.anthropic_headers(now);
        assert_eq!(got.len(), 6);
        assert!(got.contains(&("anthropic-ratelimit-tokens-limit", "40000".to_owned())));
        assert!(got.contains(&(
            "anthropic-ratelimit-tokens-reset",
            "2025-08-21T12:40:59Z".to_owned()
        )));
        assert!(!got.iter().any(|(n, _)| n.contains("input")));
        // Absurd resets and pre-epoch clocks do not panic.
        let huge = LimitState {
            requests: Some(ks(1, 0, u64::MAX)),
            ..LimitState::default()
        };
        assert_eq!(huge.anthropic_headers(now).len(), 3);
        assert!(huge.anthropic_headers(now)[2].1.ends_with('Z'));
        let idle = LimitState {
            requests: Some(ks(1, 1, 0)),
            ..LimitState::default()
        };
        let early = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(idle.anthropic_headers(early)[2].1, "1970-01-01T00:00:00Z");
        assert!(LimitState::default().anthropic_headers(now).is_empty());
    }

    #[test]
    fn retry_after_headers_round_up() {
        let r = rejection(LimitKind::Tokens, Some(Duration::from_millis(45_190)));
        assert_eq!(r.retry_after_header().as_deref(), Some("46"));
        assert_eq!(r.retry_after_ms_header().as_deref(), Some("45190"));
        let r = rejection(LimitKind::Tokens, Some(Duration::from_micros(1)));
        assert_eq!(r.retry_after_header().as_deref(), Some("1"));
        assert_eq!(r.retry_after_ms_header().as_deref(), Some("1"));
        let r = rejection(LimitKind::Tokens, Some(Duration::from_secs(2)));
        assert_eq!(r.retry_after_header().as_deref(), Some("2"));
        assert_eq!(r.retry_after_ms_header().as_deref(), Some("2000"));
        let r = rejection(LimitKind::Tokens, None);
        assert_eq!(r.retry_after_header(), None);
        assert_eq!(r.retry_after_ms_header(), None);
    }

    #[test]
    fn openai_messages() {
        let r = rejection(LimitKind::Tokens, Some(Duration::from_millis(45_190)));
        assert_eq!(
            r.openai_message("gpt-4o-mini"),
            "Rate limit reached for gpt-4o-mini on tokens per min (TPM): Limit 200000, \
             Used 170633, Requested 180002. Please try again in 45.19s."
        );
        assert_eq!(r.openai_error_type(), "tokens");
        let mut r = rejection(LimitKind::Requests, Some(Duration::from_micros(11_500)));
        (r.limit, r.used, r.requested) = (3, 3, 1);
        assert_eq!(
            r.openai_message("gpt-4o"),
            "Rate limit reached for gpt-4o on requests per min (RPM): Limit 3, Used 3, \
             Requested 1. Please try again in 12ms."
        );
        assert_eq!(r.openai_error_type(), "requests");
        let r = rejection(LimitKind::Tokens, None);
        assert_eq!(
            r.openai_message("gpt-4o"),
            "Request too large for gpt-4o on tokens per min (TPM): Limit 200000, Requested \
             180002. The input or output tokens must be reduced in order to run successfully."
        );
        let mut r = rejection(LimitKind::OutputTokens, Some(Duration::from_secs(2)));
        r.window = Duration::from_secs(5);
        assert_eq!(r.openai_error_type(), "tokens");
        assert!(
            r.openai_message("m")
                .contains("on output tokens per 5s (OTPM)"),
            "{}",
            r.openai_message("m")
        );
        let r = rejection(LimitKind::InputTokens, None);
        assert!(
            r.openai_message("m")
                .contains("input tokens per min (ITPM)")
        );
        assert!(
            r.openai_message("m")
                .ends_with("The input tokens must be reduced in order to run successfully.")
        );
    }

    #[test]
    fn anthropic_messages() {
        let mut r = rejection(LimitKind::InputTokens, Some(Duration::from_millis(12_500)));
        (r.limit, r.used, r.requested) = (30_000, 25_000, 8_000);
        assert_eq!(
            r.anthropic_message("claude-sonnet-4-5"),
            "This request would exceed your rate limit of 30,000 input tokens per minute for \
             claude-sonnet-4-5 (used 25,000, requested 8,000). Please try again in 12.5s, or \
             reduce the prompt length or the maximum tokens requested."
        );
        let mut r = rejection(LimitKind::Requests, Some(Duration::from_secs(3)));
        (r.limit, r.used, r.requested) = (5, 5, 1);
        assert_eq!(
            r.anthropic_message("claude-haiku-4-5"),
            "This request would exceed your rate limit of 5 requests per minute for \
             claude-haiku-4-5 (used 5, requested 1). Please try again in 3s."
        );
        let mut r = rejection(LimitKind::OutputTokens, None);
        (r.limit, r.requested) = (8_000, 10_000);
        assert_eq!(
            r.anthropic_message("m"),
            "This request would exceed your rate limit of 8,000 output tokens per minute for m \
             by itself (requested 10,000). The maximum output tokens must be reduced in order \
             to run successfully."
        );
        r.window = Duration::from_secs(2);
        assert!(
            r.anthropic_message("m")
                .contains("output tokens per 2s for m")
        );
    }
}

//! Model profiles: the latency model's parameters, the built-in profiles, profiles from a
//! TOML file, and the `PROFILE[:k=v,...]` model-name syntax that lets a test choose the
//! simulator's behaviour by input (STYLE.md habit 11).
//!
//! This module owns what a model *is*; when its tokens go out is `plan`'s job and what is
//! charged against a tier is `tier`'s.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::SimError;

/// Output length distribution: uniform over `[mean - spread, mean + spread]`, drawn with the
/// request's seeded generator, then capped by the request's `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthDist {
    /// Centre of the distribution, in tokens.
    pub mean: u32,
    /// Half-width of the distribution, in tokens.
    pub spread: u32,
}

impl LengthDist {
    /// The largest length the distribution can draw.
    pub fn max(&self) -> u32 {
        self.mean.saturating_add(self.spread)
    }
}

/// Seeded faults of a profile. Rates are probabilities per request in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    /// The first N requests for this exact model string fail with `fail_status`.
    pub fail_first: u32,
    /// Probability that a request fails with `fail_status` before any byte of the body.
    pub fail_rate: f64,
    /// Status of injected failures: 500, 503, 429 (carries `retry-after: 1`) or 529
    /// (`overloaded_error` on `/v1/messages`).
    pub fail_status: u16,
    /// Probability of a connection reset mid-stream.
    pub reset_rate: f64,
    /// Tokens sent before an injected reset (always reset when set by the model name).
    pub reset_after: Option<u32>,
    /// Probability of a stall before the first token.
    pub stall_rate: f64,
    /// Length of an injected stall.
    pub stall: Duration,
    /// Probability that a stream ends without its terminal event.
    pub truncate_rate: f64,
    /// Tokens sent before an injected truncation (always truncates when set by the model name).
    pub truncate_after: Option<u32>,
    /// Probability of an error event inside a 200 stream.
    pub error_rate: f64,
    /// Tokens sent before an injected in-stream error event (always when set by the model
    /// name).
    pub error_after: Option<u32>,
}

/// Everything the latency model needs to know about one simulated model.
///
/// TTFT = `net` + queue wait + `prefill_base` + `prefill_per_token` x input tokens (+ stall);
/// each further token takes `itl` x (1 + `batch_slowdown` x (occupied slots - 1)).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Name of the profile (the part of the model name before `:`).
    pub name: String,
    /// Network delay, added before the first byte of the response.
    pub net: Duration,
    /// Concurrent slots; excess requests wait FIFO. 0 means unlimited.
    pub slots: u32,
    /// Fixed part of prompt processing.
    pub prefill_base: Duration,
    /// Prompt processing per input token.
    pub prefill_per_token: Duration,
    /// Decode time per output token with one occupied slot.
    pub itl: Duration,
    /// Fractional decode slowdown per additional occupied slot (continuous batching).
    pub batch_slowdown: f64,
    /// Output length distribution.
    pub length: LengthDist,
    /// A fixed output length (`tokens=N`), overriding the distribution.
    pub fixed_tokens: Option<u32>,
    /// Tokens per SSE chunk.
    pub chunk_tokens: u32,
    /// Reasoning tokens generated before the visible answer.
    pub reasoning_tokens: u32,
    /// Seed mixed into every draw for this model.
    pub seed: u64,
    /// Injected faults.
    pub faults: Faults,
}

impl Profile {
    fn zero(name: &str) -> Profile {
        Profile {
            name: name.to_string(),
            net: Duration::ZERO,
            slots: 0,
            prefill_base: Duration::ZERO,
            prefill_per_token: Duration::ZERO,
            itl: Duration::ZERO,
            batch_slowdown: 0.0,
            length: LengthDist {
                mean: 32,
                spread: 0,
            },
            fixed_tokens: None,
            chunk_tokens: 1,
            reasoning_tokens: 0,
            seed: 0,
            faults: Faults {
                fail_status: 500,
                ..Faults::default()
            },
        }
    }

    /// The built-in profiles: `sim` (no delays at all), `sim-mini` (a small fast model, in
    /// the spirit of gpt-4o-mini or Haiku) and `sim-large` (a large slow one, like gpt-4o or
    /// Sonnet), mirroring the lesson's "larger models are slower".
    pub fn builtin(name: &str) -> Option<Profile> {
        let base = Profile::zero(name);
        match name {
            "sim" => Some(base),
            "sim-mini" => Some(Profile {
                net: Duration::from_millis(20),
                slots: 64,
                prefill_base: Duration::from_millis(80),
                prefill_per_token: Duration::from_micros(50),
                itl: Duration::from_millis(12),
                batch_slowdown: 0.01,
                length: LengthDist {
                    mean: 120,
                    spread: 80,
                },
                ..base
            }),
            "sim-large" => Some(Profile {
                net: Duration::from_millis(20),
                slots: 16,
                prefill_base: Duration::from_millis(250),
                prefill_per_token: Duration::from_micros(200),
                itl: Duration::from_millis(35),
                batch_slowdown: 0.03,
                length: LengthDist {
                    mean: 200,
                    spread: 120,
                },
                ..base
            }),
            _ => None,
        }
    }

    /// Names of the built-in profiles.
    pub fn builtin_names() -> &'static [&'static str] {
        &["sim", "sim-mini", "sim-large"]
    }

    /// The largest output this profile produces when the request sets no cap; the tier
    /// limiter reserves this many output tokens for such a request.
    pub fn max_output(&self) -> u32 {
        self.fixed_tokens
            .unwrap_or_else(|| self.length.max())
            .saturating_add(self.reasoning_tokens)
    }

    /// Applies the `k=v` overrides of a model name such as `sim:ttft=200ms,itl=20ms`.
    pub fn apply_overrides(&mut self, overrides: &str) -> Result<(), SimError> {
        for pair in overrides.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                SimError::BadModelOption(format!(
                    "'{pair}' is not of the form key=value (e.g. ttft=200ms)"
                ))
            })?;
            self.apply_one(key.trim(), value.trim())?;
        }
        Ok(())
    }

    fn apply_one(&mut self, key: &str, value: &str) -> Result<(), SimError> {
        match key {
            "ttft" => {
                let ttft = duration(key, value)?;
                self.prefill_base = ttft.saturating_sub(self.net);
                self.prefill_per_token = Duration::ZERO;
            }
            "itl" => self.itl = duration(key, value)?,
            "net" => self.net = duration(key, value)?,
            "tokens" => self.fixed_tokens = Some(number(key, value)?),
            "chunk" => {
                self.chunk_tokens = number(key, value)?;
                if self.chunk_tokens == 0 {
                    return Err(SimError::BadModelOption(
                        "chunk must be at least 1 token per SSE chunk".into(),
                    ));
                }
            }
            "reasoning" => self.reasoning_tokens = number(key, value)?,
            "seed" => self.seed = number(key, value)?,
            "slots" => self.slots = number(key, value)?,
            "fail_first" => self.faults.fail_first = number(key, value)?,
            "fail_status" => self.faults.fail_status = status(value)?,
            "fail_rate" => self.faults.fail_rate = rate(key, value)?,
            "stall" => {
                self.faults.stall = duration(key, value)?;
                self.faults.stall_rate = 1.0;
            }
            "reset_after" => {
                self.faults.reset_after = Some(number(key, value)?);
                self.faults.reset_rate = 1.0;
            }
            "truncate_after" => {
                self.faults.truncate_after = Some(number(key, value)?);
                self.faults.truncate_rate = 1.0;
            }
            "error_after" => {
                self.faults.error_after = Some(number(key, value)?);
                self.faults.error_rate = 1.0;
            }
            other => {
                return Err(SimError::BadModelOption(format!(
                    "unknown model option '{other}'; known options: {}",
                    MODEL_OPTIONS.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// The keys accepted after `:` in a model name.
pub const MODEL_OPTIONS: &[&str] = &[
    "ttft",
    "itl",
    "net",
    "tokens",
    "chunk",
    "reasoning",
    "seed",
    "slots",
    "fail_first",
    "fail_status",
    "fail_rate",
    "stall",
    "reset_after",
    "truncate_after",
    "error_after",
];

fn duration(key: &str, value: &str) -> Result<Duration, SimError> {
    protocol::ratelimit::parse_go_duration(value).map_err(|e| {
        SimError::BadModelOption(format!(
            "{key}={value}: {e}; write a duration with a unit, e.g. 200ms or 1.5s"
        ))
    })
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, SimError> {
    value
        .parse()
        .map_err(|_| SimError::BadModelOption(format!("{key}={value}: expected a whole number")))
}

fn rate(key: &str, value: &str) -> Result<f64, SimError> {
    match value.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(SimError::BadModelOption(format!(
            "{key}={value}: expected a probability between 0 and 1"
        ))),
    }
}

fn status(value: &str) -> Result<u16, SimError> {
    match value.parse::<u16>() {
        Ok(s @ (400..=599)) => Ok(s),
        _ => Err(SimError::BadModelOption(format!(
            "fail_status={value}: expected an HTTP error status between 400 and 599"
        ))),
    }
}

/// A profile as written in a `--profiles` TOML file under `[profiles.NAME]`. Every field is
/// optional and falls back to `base` (a built-in profile name, default `sim`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Built-in profile to start from.
    pub base: Option<String>,
    /// Network delay, e.g. "20ms".
    pub net: Option<String>,
    /// Concurrent slots (0 = unlimited).
    pub slots: Option<u32>,
    /// Fixed prefill time.
    pub prefill_base: Option<String>,
    /// Prefill time per input token, e.g. "50us".
    pub prefill_per_token: Option<String>,
    /// Decode time per token.
    pub itl: Option<String>,
    /// Decode slowdown per additional occupied slot.
    pub batch_slowdown: Option<f64>,
    /// Mean output length.
    pub length_mean: Option<u32>,
    /// Half-width of the output length distribution.
    pub length_spread: Option<u32>,
    /// Tokens per SSE chunk.
    pub chunk: Option<u32>,
    /// Reasoning tokens before the answer.
    pub reasoning: Option<u32>,
    /// Seed.
    pub seed: Option<u64>,
    /// Probability of an injected error status.
    pub fail_rate: Option<f64>,
    /// Status of injected errors.
    pub fail_status: Option<u16>,
    /// Probability of a reset mid-stream.
    pub reset_rate: Option<f64>,
    /// Tokens before a reset.
    pub reset_after: Option<u32>,
    /// Probability of a stall before the first token.
    pub stall_rate: Option<f64>,
    /// Stall length.
    pub stall: Option<String>,
    /// Probability of a truncated stream.
    pub truncate_rate: Option<f64>,
    /// Tokens before a truncation.
    pub truncate_after: Option<u32>,
    /// Probability of an in-stream error event.
    pub error_rate: Option<f64>,
    /// Tokens before an in-stream error event.
    pub error_after: Option<u32>,
}

impl RawProfile {
    /// Resolves the raw profile into a [`Profile`] named `name`.
    pub fn resolve(&self, name: &str) -> Result<Profile, SimError> {
        let field = |f: &str| format!("profiles.{name}.{f}");
        let base_name = self.base.as_deref().unwrap_or("sim");
        let mut p = Profile::builtin(base_name).ok_or_else(|| {
            SimError::Config(format!(
                "{}: unknown base profile '{base_name}'; built-in profiles are {}",
                field("base"),
                Profile::builtin_names().join(", ")
            ))
        })?;
        p.name = name.to_string();
        let dur = |f: &str, v: &Option<String>, into: &mut Duration| -> Result<(), SimError> {
            if let Some(v) = v {
                *into = protocol::ratelimit::parse_go_duration(v).map_err(|e| {
                    SimError::Config(format!(
                        "{}: '{v}' is not a duration ({e}); e.g. \"20ms\"",
                        field(f)
                    ))
                })?;
            }
            Ok(())
        };
        dur("net", &self.net, &mut p.net)?;
        dur("prefill_base", &self.prefill_base, &mut p.prefill_base)?;
        dur(
            "prefill_per_token",
            &self.prefill_per_token,
            &mut p.prefill_per_token,
        )?;
        dur("itl", &self.itl, &mut p.itl)?;
        dur("stall", &self.stall, &mut p.faults.stall)?;
        let prob = |f: &str, v: Option<f64>, into: &mut f64| -> Result<(), SimError> {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return Err(SimError::Config(format!(
                        "{}: {v} is not a probability; use a value between 0 and 1",
                        field(f)
                    )));
                }
                *into = v;
            }
            Ok(())
        };
        prob("fail_rate", self.fail_rate, &mut p.faults.fail_rate)?;
        prob("reset_rate", self.reset_rate, &mut p.faults.reset_rate)?;
        prob("stall_rate", self.stall_rate, &mut p.faults.stall_rate)?;
        prob(
            "truncate_rate",
            self.truncate_rate,
            &mut p.faults.truncate_rate,
        )?;
        if let Some(s) = self.batch_slowdown {
            if !(0.0..=10.0).contains(&s) {
                return Err(SimError::Config(format!(
                    "{}: {s} is out of range; use a fraction between 0 and 10",
                    field("batch_slowdown")
                )));
            }
            p.batch_slowdown = s;
        }
        if let Some(v) = self.slots {
            p.slots = v;
        }
        if let Some(v) = self.length_mean {
            p.length.mean = v;
        }
        if let Some(v) = self.length_spread {
            p.length.spread = v;
        }
        if let Some(v) = self.chunk {
            if v == 0 {
                return Err(SimError::Config(format!(
                    "{}: must be at least 1",
                    field("chunk")
                )));
            }
            p.chunk_tokens = v;
        }
        if let Some(v) = self.reasoning {
            p.reasoning_tokens = v;
        }
        if let Some(v) = self.seed {
            p.seed = v;
        }
        if let Some(v) = self.fail_status {
            p.faults.fail_status = status(&v.to_string()).map_err(|_| {
                SimError::Config(format!(
                    "{}: {v} is not an HTTP error status (400-599)",
                    field("fail_status")
                ))
            })?;
        }
        p.faults.reset_after = self.reset_after.or(p.faults.reset_after);
        p.faults.truncate_after = self.truncate_after.or(p.faults.truncate_after);
        p.faults.error_after = self.error_after.or(p.faults.error_after);
        if p.faults.reset_rate > 0.0 && p.faults.reset_after.is_none() {
            return Err(SimError::Config(format!(
                "{}: reset_rate needs reset_after (tokens before the reset)",
                field("reset_after")
            )));
        }
        if p.faults.truncate_rate > 0.0 && p.faults.truncate_after.is_none() {
            return Err(SimError::Config(format!(
                "{}: truncate_rate needs truncate_after (tokens before the truncation)",
                field("truncate_after")
            )));
        }
        Ok(p)
    }
}

/// The set of profiles a simulator knows: the built-ins plus those from a file.
#[derive(Debug, Clone, Default)]
pub struct ProfileSet {
    custom: BTreeMap<String, Profile>,
}

impl ProfileSet {
    /// A set with the given custom profiles (which may shadow built-ins).
    pub fn new(custom: BTreeMap<String, Profile>) -> Self {
        ProfileSet { custom }
    }

    /// Every model id this set serves without options, for `/v1/models`.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Profile::builtin_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        for name in self.custom.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Resolves a model name `PROFILE[:k=v,...]`.
    pub fn resolve(&self, model: &str) -> Result<Profile, SimError> {
        let (name, options) = match model.split_once(':') {
            Some((n, o)) => (n, Some(o)),
            None => (model, None),
        };
        let mut profile = self
            .custom
            .get(name)
            .cloned()
            .or_else(|| Profile::builtin(name))
            .ok_or_else(|| SimError::UnknownModel(model.to_string()))?;
        if let Some(options) = options {
            profile.apply_overrides(options)?;
        }
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_sim_has_zero_delays() {
        let p = ProfileSet::default().resolve("sim").unwrap();
        assert_eq!(p.net, Duration::ZERO);
        assert_eq!(p.prefill_base, Duration::ZERO);
        assert_eq!(p.itl, Duration::ZERO);
        assert_eq!(p.slots, 0);
    }

    #[test]
    fn large_is_slower_than_mini() {
        let mini = Profile::builtin("sim-mini").unwrap();
        let large = Profile::builtin("sim-large").unwrap();
        assert!(large.itl > mini.itl);
        assert!(large.prefill_base > mini.prefill_base);
        assert!(large.prefill_per_token > mini.prefill_per_token);
    }

    #[test]
    fn overrides_apply() {
        let p = ProfileSet::default()
            .resolve("sim:ttft=200ms,itl=20ms,tokens=50,fail_first=2,chunk=3,reasoning=4")
            .unwrap();
        assert_eq!(p.prefill_base, Duration::from_millis(200));
        assert_eq!(p.itl, Duration::from_millis(20));
        assert_eq!(p.fixed_tokens, Some(50));
        assert_eq!(p.faults.fail_first, 2);
        assert_eq!(p.chunk_tokens, 3);
        assert_eq!(p.reasoning_tokens, 4);
        assert_eq!(p.faults.fail_status, 500);
    }

    #[test]
    fn ttft_includes_network_delay() {
        let p = ProfileSet::default()
            .resolve("sim:net=50ms,ttft=200ms")
            .unwrap();
        assert_eq!(p.net + p.prefill_base, Duration::from_millis(200));
    }

    #[test]
    fn unknown_option_is_named() {
        let err = ProfileSet::default()
            .resolve("sim:ttft=1ms,bogus=3")
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bogus"), "{msg}");
        assert!(msg.contains("ttft"), "lists the known options: {msg}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let set = ProfileSet::default();
        assert!(
            set.resolve("sim:ttft=200").is_err(),
            "a duration needs a unit"
        );
        assert!(set.resolve("sim:fail_rate=2").is_err());
        assert!(set.resolve("sim:fail_status=200").is_err());
        assert!(set.resolve("sim:chunk=0").is_err());
        assert!(set.resolve("sim:tokens").is_err());
    }

    #[test]
    fn unknown_profile() {
        let err = ProfileSet::default().resolve("gpt-4o").unwrap_err();
        assert!(matches!(err, SimError::UnknownModel(m) if m == "gpt-4o"));
    }

    #[test]
    fn raw_profile_resolves_on_a_base() {
        let raw: RawProfile = toml::from_str(
            "base = \"sim-mini\"\nitl = \"5ms\"\nslots = 2\nfail_rate = 0.5\nfail_status = 503",
        )
        .unwrap();
        let p = raw.resolve("fast").unwrap();
        assert_eq!(p.name, "fast");
        assert_eq!(p.itl, Duration::from_millis(5));
        assert_eq!(p.slots, 2);
        assert_eq!(p.net, Duration::from_millis(20), "inherited from sim-mini");
        assert_eq!(p.faults.fail_status, 503);
    }

    #[test]
    fn raw_profile_errors_name_the_field() {
        let raw: RawProfile = toml::from_str("itl = \"fast\"").unwrap();
        let msg = raw.resolve("x").unwrap_err().to_string();
        assert!(msg.contains("profiles.x.itl"), "{msg}");
        let raw: RawProfile = toml::from_str("reset_rate = 0.1").unwrap();
        assert!(
            raw.resolve("x")
                .unwrap_err()
                .to_string()
                .contains("reset_after")
        );
        assert!(toml::from_str::<RawProfile>("itll = \"1ms\"").is_err());
    }
}

//! One request's plan: how many tokens it will produce (reasoning first, then visible), why
//! it will stop, and which faults strike it. Everything is drawn from one seeded generator
//! keyed by the profile's seed and a hash of the request, so the same request gives the same
//! answer every time.

use std::time::Duration;

use crate::profile::Profile;
use crate::text::SplitMix64;

/// Why generation stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer (`stop` / `end_turn`).
    Stop,
    /// The request's token cap was reached (`length` / `max_tokens`).
    Length,
}

/// What the request asked for that shapes the output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked {
    /// `max_completion_tokens` / `max_tokens`.
    pub cap: Option<u32>,
    /// vLLM's `ignore_eos`: generate until the cap.
    pub ignore_eos: bool,
    /// vLLM's `min_tokens`.
    pub min_tokens: Option<u32>,
}

/// The plan of one response.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Output tokens in total, reasoning included.
    pub output_tokens: u32,
    /// The first `reasoning_tokens` of the output are reasoning.
    pub reasoning_tokens: u32,
    /// Why it stops.
    pub finish: Finish,
    /// Seed of the output text.
    pub text_seed: u64,
    /// An injected stall before the first token.
    pub stall: Duration,
    /// Reset the connection after this many tokens.
    pub reset_after: Option<u32>,
    /// End the stream without its terminal event after this many tokens.
    pub truncate_after: Option<u32>,
    /// Send an error event (inside the 200 stream) after this many tokens.
    pub error_after: Option<u32>,
}

impl Plan {
    /// Draws the plan of a request with hash `request_hash`.
    pub fn draw(profile: &Profile, asked: Asked, request_hash: u64) -> Plan {
        let mut rng = SplitMix64::new(profile.seed ^ request_hash);
        let drawn = profile.fixed_tokens.unwrap_or_else(|| {
            let low = profile.length.mean.saturating_sub(profile.length.spread);
            let width = u64::from(profile.length.mean.saturating_add(profile.length.spread) - low);
            low + rng.below(width + 1) as u32
        });
        // Anthropic requires at least one output token; so do we.
        // `tokens=0` is the empty-response fault: a stream with no token at all.
        let floor = if profile.fixed_tokens == Some(0) {
            0
        } else {
            1
        };
        let mut visible = drawn.max(asked.min_tokens.unwrap_or(0)).max(floor);
        if asked.ignore_eos
            && let Some(cap) = asked.cap
        {
            visible = visible.max(cap);
        }
        let wanted = profile.reasoning_tokens.saturating_add(visible);
        let (output_tokens, finish) = match asked.cap {
            Some(cap) if wanted > cap => (cap, Finish::Length),
            Some(cap) if asked.ignore_eos && wanted == cap => (cap, Finish::Length),
            _ => (wanted, Finish::Stop),
        };
        let faults = &profile.faults;
        let stall = if rng.chance(faults.stall_rate) {
            faults.stall
        } else {
            Duration::ZERO
        };
        let reset_after = rng
            .chance(faults.reset_rate)
            .then(|| faults.reset_after.unwrap_or(output_tokens / 2));
        let truncate_after = rng
            .chance(faults.truncate_rate)
            .then(|| faults.truncate_after.unwrap_or(output_tokens / 2));
        let error_after = rng
            .chance(faults.error_rate)
            .then(|| faults.error_after.unwrap_or(output_tokens / 2));
        Plan {
            output_tokens,
            reasoning_tokens: profile.reasoning_tokens.min(output_tokens),
            finish,
            text_seed: rng.next_u64(),
            stall,
            reset_after,
            truncate_after,
            error_after,
        }
    }

    /// The number of injected faults in this plan (for `/stats`).
    pub fn fault_count(&self) -> u64 {
        u64::from(!self.stall.is_zero())
            + u64::from(self.reset_after.is_some())
            + u64::from(self.truncate_after.is_some())
            + u64::from(self.error_after.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileSet;

    fn profile(model: &str) -> Profile {
        ProfileSet::default().resolve(model).unwrap()
    }

    #[test]
    fn cap_limits_output_and_sets_length() {
        let p = Plan::draw(
            &profile("sim:tokens=50"),
            Asked {
                cap: Some(10),
                ..Default::default()
            },
            1,
        );
        assert_eq!(p.output_tokens, 10);
        assert_eq!(p.finish, Finish::Length);
        let p = Plan::draw(
            &profile("sim:tokens=5"),
            Asked {
                cap: Some(10),
                ..Default::default()
            },
            1,
        );
        assert_eq!(p.output_tokens, 5);
        assert_eq!(p.finish, Finish::Stop);
    }

    #[test]
    fn ignore_eos_and_min_tokens() {
        let asked = Asked {
            cap: Some(40),
            ignore_eos: true,
            min_tokens: None,
        };
        let p = Plan::draw(&profile("sim:tokens=5"), asked, 1);
        assert_eq!(p.output_tokens, 40);
        let asked = Asked {
            cap: Some(40),
            ignore_eos: false,
            min_tokens: Some(20),
        };
        let p = Plan::draw(&profile("sim:tokens=5"), asked, 1);
        assert_eq!(p.output_tokens, 20);
    }

    #[test]
    fn reasoning_counts_inside_the_cap() {
        let p = Plan::draw(
            &profile("sim:tokens=10,reasoning=8"),
            Asked {
                cap: Some(12),
                ..Default::default()
            },
            1,
        );
        assert_eq!(p.output_tokens, 12);
        assert_eq!(p.reasoning_tokens, 8);
    }

    #[test]
    fn lengths_follow_the_distribution_and_are_deterministic() {
        let prof = profile("sim-mini");
        let mut seen = std::collections::BTreeSet::new();
        for h in 0..500u64 {
            let a = Plan::draw(&prof, Asked::default(), h);
            let b = Plan::draw(&prof, Asked::default(), h);
            assert_eq!(a.output_tokens, b.output_tokens);
            assert_eq!(a.text_seed, b.text_seed);
            assert!((40..=200).contains(&a.output_tokens), "{}", a.output_tokens);
            seen.insert(a.output_tokens);
        }
        assert!(seen.len() > 50, "lengths vary: {}", seen.len());
    }

    #[test]
    fn faults_from_model_options_always_fire() {
        let p = Plan::draw(
            &profile("sim:tokens=9,reset_after=3,stall=5ms"),
            Asked::default(),
            1,
        );
        assert_eq!(p.reset_after, Some(3));
        assert_eq!(p.stall, Duration::from_millis(5));
        assert_eq!(p.fault_count(), 2);
    }
}

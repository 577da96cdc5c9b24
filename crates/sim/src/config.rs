//! Simulator settings: raw flags and the `--profiles` TOML file, resolved into the one
//! [`SimConfig`] the server accepts (STYLE.md habit 4: raw -> resolved).
//!
//! The tier of an API key is, in order: its `[keys."K"]` entry in the profiles file, else
//! `--tier NAME`, else `--rpm N` / `--tpm N`, else unlimited.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::SimError;
use crate::profile::{ProfileSet, RawProfile};
use crate::tier::{TierLimits, TierTable};

/// Default largest request body (OpenAI and Anthropic accept about 32 MB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Settings as given on the command line (before validation).
#[derive(Debug, Clone, Default)]
pub struct RawSimArgs {
    /// `--window`: the rate-limit window.
    pub window: Option<Duration>,
    /// `--tier NAME`.
    pub tier: Option<String>,
    /// `--rpm N`.
    pub rpm: Option<u64>,
    /// `--tpm N`.
    pub tpm: Option<u64>,
    /// `--max-body-bytes`.
    pub max_body_bytes: Option<usize>,
}

/// The `--profiles` file: `[profiles.NAME]`, `[tiers.NAME]` and `[keys."KEY"]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFile {
    /// Custom model profiles.
    #[serde(default)]
    pub profiles: BTreeMap<String, RawProfile>,
    /// Custom tiers (they may replace built-in ones).
    #[serde(default)]
    pub tiers: BTreeMap<String, TierLimits>,
    /// Per-API-key tiers.
    #[serde(default)]
    pub keys: BTreeMap<String, RawKey>,
}

/// The tier of one API key: a tier name, or limits written inline.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// A built-in tier or one from `[tiers]`.
    pub tier: Option<String>,
    /// Requests per window.
    pub rpm: Option<u64>,
    /// Tokens per window.
    pub tpm: Option<u64>,
    /// Input tokens per window.
    pub itpm: Option<u64>,
    /// Output tokens per window.
    pub otpm: Option<u64>,
}

/// Resolved simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The rate-limit window (60 s like the providers; shorter in tests).
    pub window: Duration,
    /// Limits of keys without an entry of their own.
    pub default_limits: TierLimits,
    /// Limits per API key.
    pub keys: BTreeMap<String, TierLimits>,
    /// The models served.
    pub profiles: ProfileSet,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            window: Duration::from_secs(60),
            default_limits: TierLimits::default(),
            keys: BTreeMap::new(),
            profiles: ProfileSet::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl SimConfig {
    /// Validates flags and the optional profiles file (`(path, text)`, the path only for
    /// messages) into a config. Every error names the flag or the field and the fix.
    pub fn resolve(args: RawSimArgs, file: Option<(&str, &str)>) -> Result<SimConfig, SimError> {
        let parsed: SimFile = match file {
            Some((path, text)) => toml::from_str(text)
                .map_err(|e| SimError::Config(format!("reading profiles from '{path}': {e}")))?,
            None => SimFile::default(),
        };
        let mut tiers = TierTable::builtin();
        for (name, limits) in &parsed.tiers {
            if name.is_empty() {
                return Err(SimError::Config("tiers: a tier name is empty".into()));
            }
            tiers.insert(name.clone(), *limits);
        }
        let tier_names = || tiers.names().collect::<Vec<_>>().join(", ");

        let default_limits = match (&args.tier, args.rpm, args.tpm) {
            (Some(name), _, _) => tiers.get(name).ok_or_else(|| {
                SimError::Config(format!(
                    "--tier {name}: no such tier; choose one of {} or define [tiers.{name}] in --profiles",
                    tier_names()
                ))
            })?,
            (None, rpm, tpm) => TierLimits { rpm, tpm, itpm: None, otpm: None },
        };
        if default_limits.rpm == Some(0) || default_limits.tpm == Some(0) {
            return Err(SimError::Config(
                "--rpm/--tpm: a limit of 0 admits nothing; leave the flag out for no limit".into(),
            ));
        }

        let mut keys = BTreeMap::new();
        for (key, raw) in parsed.keys {
            let inline = TierLimits {
                rpm: raw.rpm,
                tpm: raw.tpm,
                itpm: raw.itpm,
                otpm: raw.otpm,
            };
            let limits = match raw.tier {
                Some(name) if inline.is_unlimited() => tiers.get(&name).ok_or_else(|| {
                    SimError::Config(format!(
                        "keys.\"{key}\".tier: no tier named '{name}'; choose one of {}",
                        tier_names()
                    ))
                })?,
                Some(_) => {
                    return Err(SimError::Config(format!(
                        "keys.\"{key}\": give either tier = \"NAME\" or inline limits (rpm, tpm, itpm, otpm), not both"
                    )));
                }
                None => inline,
            };
            keys.insert(key, limits);
        }

        let mut profiles = BTreeMap::new();
        for (name, raw) in &parsed.profiles {
            if name.is_empty() || name.contains(':') {
                return Err(SimError::Config(format!(
                    "profiles.\"{name}\": a profile name must be non-empty and contain no ':'"
                )));
            }
            profiles.insert(name.clone(), raw.resolve(name)?);
        }

        let window = args.window.unwrap_or(Duration::from_secs(60));
        if window.is_zero() {
            return Err(SimError::Config(
                "--window: the rate-limit window must be longer than 0s (e.g. 60s, or 2s in tests)"
                    .into(),
            ));
        }
        Ok(SimConfig {
            window,
            default_limits,
            keys,
            profiles: ProfileSet::new(profiles),
            max_body_bytes: args.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        })
    }

    /// The limits that apply to an API key.
    pub fn limits_for(&self, key: &str) -> TierLimits {
        self.keys.get(key).copied().unwrap_or(self.default_limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_unlimited() {
        let c = SimConfig::resolve(RawSimArgs::default(), None).unwrap();
        assert!(c.limits_for("anyone").is_unlimited());
        assert_eq!(c.window, Duration::from_secs(60));
    }

    #[test]
    fn tier_flag_and_rpm_flags() {
        let c = SimConfig::resolve(
            RawSimArgs {
                tier: Some("tier-1".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(c.limits_for("k").rpm, Some(500));
        let c = SimConfig::resolve(
            RawSimArgs {
                rpm: Some(7),
                tpm: Some(900),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(c.limits_for("k").rpm, Some(7));
        assert_eq!(c.limits_for("k").tpm, Some(900));
        let err = SimConfig::resolve(
            RawSimArgs {
                tier: Some("gold".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--tier gold") && err.contains("tier-1"),
            "{err}"
        );
    }

    #[test]
    fn file_keys_take_precedence() {
        let text = r#"
[tiers.tiny]
rpm = 2
tpm = 100

[keys."sk-a"]
tier = "tiny"

[keys."sk-b"]
rpm = 9

[profiles.fast]
base = "sim-mini"
itl = "1ms"
"#;
        let c = SimConfig::resolve(
            RawSimArgs {
                tier: Some("free".into()),
                ..Default::default()
            },
            Some(("p.toml", text)),
        )
        .unwrap();
        assert_eq!(c.limits_for("sk-a").rpm, Some(2));
        assert_eq!(c.limits_for("sk-b").rpm, Some(9));
        assert_eq!(
            c.limits_for("sk-other").rpm,
            Some(3),
            "falls back to --tier free"
        );
        assert_eq!(
            c.profiles.resolve("fast").unwrap().itl,
            Duration::from_millis(1)
        );
        assert!(c.profiles.names().contains(&"fast".to_string()));
    }

    #[test]
    fn file_errors_name_the_problem() {
        let err = SimConfig::resolve(
            RawSimArgs::default(),
            Some(("p.toml", "[keys.\"k\"]\ntier = \"nope\"")),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("keys.\"k\".tier") && err.contains("nope"),
            "{err}"
        );
        let err = SimConfig::resolve(RawSimArgs::default(), Some(("p.toml", "[profile.x]")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.toml"), "{err}");
        let err = SimConfig::resolve(
            RawSimArgs {
                window: Some(Duration::ZERO),
                ..Default::default()
            },
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--window"), "{err}");
    }
}

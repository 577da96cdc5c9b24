//! Tier definitions: the per-window limits of one tier ([`TierLimits`]), the built-in tiers,
//! a table of named tiers that a TOML file can extend ([`TierTable`]), and what a request
//! costs ([`Charge`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The limits of one tier, each per window (a minute unless the [`Limiter`](super::Limiter)
/// was built with another window). `None` means unlimited.
///
/// OpenAI-style tiers set `rpm` and `tpm` (tokens = input + output). Anthropic-style tiers set
/// `itpm` and `otpm`, charged separately; a tier may also set `tpm`, which then limits the
/// combined total in addition.
///
/// In a TOML tier file each tier is a table: `[tiers.NAME] rpm = 50 itpm = 30000 otpm = 8000`;
/// unknown keys are rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Requests per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Combined (input + output) tokens per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Input tokens per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itpm: Option<u64>,
    /// Output tokens per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otpm: Option<u64>,
}

/// Built-in tiers in the order [`TierLimits::builtin_names`] lists them.
///
/// `free`, `tier-1`, `tier-5` and `anthropic-free` are the lesson's throughput table (OpenAI
/// Free 3 RPM / 40,000 TPM, Tier 1 500 / 200,000, Tier 5 10,000 / 30,000,000; Anthropic Free
/// 5 / 40,000, taken as combined tokens). `anthropic-tier-1`..`-4` are Anthropic's published
/// Claude Sonnet 4.x limits (RPM / ITPM / OTPM). `unlimited` sets nothing.
const BUILTIN: &[(&str, TierLimits)] = &[
    ("free", openai(3, 40_000)),
    ("tier-1", openai(500, 200_000)),
    ("tier-5", openai(10_000, 30_000_000)),
    ("anthropic-free", openai(5, 40_000)),
    ("anthropic-tier-1", anthropic(50, 30_000, 8_000)),
    ("anthropic-tier-2", anthropic(1_000, 450_000, 90_000)),
    ("anthropic-tier-3", anthropic(2_000, 800_000, 160_000)),
    ("anthropic-tier-4", anthropic(4_000, 2_000_000, 400_000)),
    (
        "unlimited",
        TierLimits {
            rpm: None,
            tpm: None,
            itpm: None,
            otpm: None,
        },
    ),
];

/// The names of [`BUILTIN`], kept in the same order (checked by a test).
const BUILTIN_NAMES: &[&str] = &[
    "free",
    "tier-1",
    "tier-5",
    "anthropic-free",
    "anthropic-tier-1",
    "anthropic-tier-2",
    "anthropic-tier-3",
    "anthropic-tier-4",
    "unlimited",
];

const fn openai(rpm: u64, tpm: u64) -> TierLimits {
    TierLimits {
        rpm: Some(rpm),
        tpm: Some(tpm),
        itpm: None,
        otpm: None,
    }
}

const fn anthropic(rpm: u64, itpm: u64, otpm: u64) -> TierLimits {
    TierLimits {
        rpm: Some(rpm),
        tpm: None,
        itpm: Some(itpm),
        otpm: Some(otpm),
    }
}

impl TierLimits {
    /// The built-in tier called `name` (see [`TierLimits::builtin_names`]), if any.
    #[must_use]
    pub fn builtin(name: &str) -> Option<TierLimits> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, limits)| *limits)
    }

    /// Names of the built-in tiers: `free`, `tier-1`, `tier-5` (OpenAI-style), `anthropic-free`
    /// and `anthropic-tier-1`..`anthropic-tier-4` (Anthropic-style), and `unlimited`.
    #[must_use]
    pub fn builtin_names() -> &'static [&'static str] {
        BUILTIN_NAMES
    }

    /// Whether no limit is set at all.
    #[must_use]
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.itpm.is_none() && self.otpm.is_none()
    }
}

/// What one request costs against a tier's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    /// Requests (1 for a request; 0 to charge tokens only).
    pub requests: u64,
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output tokens: `max_tokens` when admitting (providers reserve it), the actual
    /// completion tokens when settling.
    pub output_tokens: u64,
}

impl Charge {
    /// The charge of one request with `input_tokens` of prompt that may produce up to
    /// `max_output_tokens`.
    #[must_use]
    pub fn request(input_tokens: u64, max_output_tokens: u64) -> Self {
        Self {
            requests: 1,
            input_tokens,
            output_tokens: max_output_tokens,
        }
    }

    /// Component-wise minimum.
    #[must_use]
    pub(crate) fn min(self, other: Charge) -> Charge {
        Charge {
            requests: self.requests.min(other.requests),
            input_tokens: self.input_tokens.min(other.input_tokens),
            output_tokens: self.output_tokens.min(other.output_tokens),
        }
    }
}

/// Why a tier file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The text is not valid TOML, or a tier has an unknown key or a non-integer limit.
    #[error("invalid tier file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A tier has an empty name.
    #[error("invalid tier file: a tier name is empty")]
    EmptyName,
}

/// Named tiers: the built-ins, overlaid by any defined in a TOML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierTable {
    tiers: BTreeMap<String, TierLimits>,
}

/// The part of a tier file this module reads; other top-level keys belong to other modules.
#[derive(Deserialize)]
struct TierFile {
    #[serde(default)]
    tiers: BTreeMap<String, TierLimits>,
}

impl Default for TierTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl TierTable {
    /// A table holding only the built-in tiers.
    #[must_use]
    pub fn builtin() -> Self {
        let tiers = BUILTIN
            .iter()
            .map(|(name, limits)| ((*name).to_owned(), *limits))
            .collect();
        Self { tiers }
    }

    /// The built-in tiers overlaid by the `[tiers.NAME]` tables of a TOML document (a tier
    /// of the same name replaces the built-in). Top-level keys other than `tiers` are ignored
    /// so the tiers can live in a larger config file; keys inside a tier are checked.
    ///
    /// # Errors
    /// [`TierError`] when the TOML is invalid, a tier has an unknown key or a value that is
    /// not a non-negative integer, or a tier name is empty.
    pub fn from_toml_str(text: &str) -> Result<Self, TierError> {
        let file: TierFile = toml::from_str(text)?;
        let mut table = Self::builtin();
        for (name, limits) in file.tiers {
            if name.is_empty() {
                return Err(TierError::EmptyName);
            }
            table.tiers.insert(name, limits);
        }
        Ok(table)
    }

    /// Adds or replaces the tier `name`.
    pub fn insert(&mut self, name: impl Into<String>, limits: TierLimits) {
        self.tiers.insert(name.into(), limits);
    }

    /// The limits of the tier `name`, if defined.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<TierLimits> {
        self.tiers.get(name).copied()
    }

    /// All tier names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tiers.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_match_the_builtin_table() {
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, TierLimits::builtin_names());
        for name in TierLimits::builtin_names() {
            assert!(TierLimits::builtin(name).is_some(), "{name}");
        }
        assert_eq!(TierLimits::builtin("tier-2"), None);
        assert_eq!(TierLimits::builtin(""), None);
        assert_eq!(TierLimits::builtin("FREE"), None);
    }

    #[test]
    fn openai_builtins_follow_the_lesson_table() {
        assert_eq!(TierLimits::builtin("free"), Some(openai(3, 40_000)));
        assert_eq!(TierLimits::builtin("tier-1"), Some(openai(500, 200_000)));
        assert_eq!(
            TierLimits::builtin("tier-5"),
            Some(openai(10_000, 30_000_000))
        );
    }

    #[test]
    fn anthropic_builtins_follow_the_sonnet_column() {
        let free = TierLimits::builtin("anthropic-free");
        assert_eq!(
            free,
            Some(TierLimits {
                rpm: Some(5),
                tpm: Some(40_000),
                ..Default::default()
            })
        );
        let expect = [
            ("anthropic-tier-1", 50, 30_000, 8_000),
            ("anthropic-tier-2", 1_000, 450_000, 90_000),
            ("anthropic-tier-3", 2_000, 800_000, 160_000),
            ("anthropic-tier-4", 4_000, 2_000_000, 400_000),
        ];
        for (name, rpm, itpm, otpm) in expect {
            let limits = TierLimits::builtin(name);
            let want = TierLimits {
                rpm: Some(rpm),
                tpm: None,
                itpm: Some(itpm),
                otpm: Some(otpm),
            };
            assert_eq!(limits, Some(want), "{name}");
        }
    }

    #[test]
    fn only_unlimited_is_unlimited() {
        for name in TierLimits::builtin_names() {
            let limits = TierLimits::builtin(name).unwrap_or_default();
            assert_eq!(limits.is_unlimited(), *name == "unlimited", "{name}");
        }
        assert!(TierLimits::default().is_unlimited());
        assert!(
            !TierLimits {
                otpm: Some(1),
                ..Default::default()
            }
            .is_unlimited()
        );
    }

    #[test]
    fn tier_files_add_and_override_tiers() {
        let text = r#"
            listen = "127.0.0.1:0"
            [tiers.tiny]
            rpm = 2
            tpm = 100
            [tiers.split]
            itpm = 10
            otpm = 5
            [tiers.free]
            rpm = 7
        "#;
        let table = TierTable::from_toml_str(text).unwrap();
        assert_eq!(table.get("tiny"), Some(openai(2, 100)));
        assert_eq!(
            table.get("split"),
            Some(TierLimits {
                itpm: Some(10),
                otpm: Some(5),
                ..Default::default()
            })
        );
        assert_eq!(
            table.get("free"),
            Some(TierLimits {
                rpm: Some(7),
                ..Default::default()
            })
        );
        assert_eq!(table.get("tier-1"), TierLimits::builtin("tier-1"));
        assert_eq!(table.get("nope"), None);
        assert!(table.names().any(|n| n == "split"));
        assert_eq!(TierTable::from_toml_str("").unwrap(), TierTable::builtin());
    }

    #[test]
    fn tier_files_reject_unknown_keys_and_bad_values() {
        for bad in [
            "[tiers.x]\nrpms = 3\n",
            "[tiers.x]\nrpm = -1\n",
            "[tiers.x]\nrpm = \"3\"\n",
            "[tiers.x]\nrpm = 1.5\n",
            "[tiers\n",
            "tiers = 3\n",
        ] {
            let err = TierTable::from_toml_str(bad);
            assert!(matches!(err, Err(TierError::Toml(_))), "{bad:?}: {err:?}");
        }
        let err = TierTable::from_toml_str("[tiers.\"\"]\nrpm = 1\n");
        assert!(matches!(err, Err(TierError::EmptyName)), "{err:?}");
        let direct: Result<TierLimits, _> = toml::from_str("rpm = 1\nburst = 2\n");
        assert!(direct.is_err());
    }

    #[test]
    fn table_insert_replaces() {
        let mut table = TierTable::default();
        table.insert("free", openai(1, 1));
        assert_eq!(table.get("free"), Some(openai(1, 1)));
    }

    #[test]
    fn charge_helpers() {
        assert_eq!(
            Charge::request(10, 20),
            Charge {
                requests: 1,
                input_tokens: 10,
                output_tokens: 20
            }
        );
        let a = Charge {
            requests: 1,
            input_tokens: 5,
            output_tokens: 9,
        };
        let b = Charge {
            requests: 3,
            input_tokens: 2,
            output_tokens: 9,
        };
        assert_eq!(
            a.min(b),
            Charge {
                requests: 1,
                input_tokens: 2,
                output_tokens: 9
            }
        );
    }
}

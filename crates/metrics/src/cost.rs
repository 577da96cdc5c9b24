//! What calls cost: the versioned price table (`prices.toml`, embedded), model-name
//! resolution, and exact integer cost arithmetic.
//!
//! This module is the product's one price table (STYLE habit 9). It owns the rates and how
//! a request's [`BillableTokens`] turn into a [`Cost`]; it leaves reading usage from the
//! wire to the protocol and client crates, and reading a user's override file from disk to
//! the binary (it only parses the string it is given).
//!
//! Units: a [`Rate`] is an integer number of pico-dollars per token, which is the same as
//! micro-dollars per million tokens, so every published rate (e.g. $0.01875 / 1M) is exact.
//! A [`Cost`] is an integer number of pico-dollars (`u128`), so summing millions of
//! requests never drifts; floats appear only in [`Cost::usd`] for printing.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, AddAssign};

use serde::Deserialize;

use crate::recorder::TokenTotals;

/// The built-in table's text, embedded at compile time.
pub const BUILTIN_PRICES: &str = include_str!("../prices.toml");

/// Pico-dollars per dollar.
const PICO_PER_USD: f64 = 1e12;

/// A price per token in pico-dollars (= micro-dollars per 1M tokens).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(pub u64);

impl Rate {
    /// The rate for `usd` dollars per 1M tokens, rounded to the micro-dollar; `None` when
    /// negative, not finite, or above $1 000 000 per 1M tokens.
    pub fn from_per_million_usd(usd: f64) -> Option<Rate> {
        if !usd.is_finite() || !(0.0..=1e6).contains(&usd) {
            return None;
        }
        Some(Rate((usd * 1e6).round() as u64))
    }

    /// Dollars per 1M tokens, for printing.
    pub fn per_million_usd(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// The cost of `tokens` tokens at this rate.
    pub fn times(self, tokens: u64) -> Cost {
        Cost(u128::from(self.0) * u128::from(tokens))
    }
}

/// An amount of money in integer pico-dollars (10⁻¹² USD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost(pub u128);

impl Cost {
    /// Nothing.
    pub const ZERO: Cost = Cost(0);

    /// The amount in pico-dollars.
    pub fn pico_usd(self) -> u128 {
        self.0
    }

    /// The amount in nano-dollars, rounded to nearest.
    pub fn nano_usd(self) -> u128 {
        (self.0 + 500) / 1000
    }

    /// The amount in dollars, for printing and ratios.
    pub fn usd(self) -> f64 {
        self.0 as f64 / PICO_PER_USD
    }

    /// This amount divided over `count` items (rounded down), `None` when `count` is 0.
    pub fn per(self, count: u64) -> Option<Cost> {
        (count > 0).then(|| Cost(self.0 / u128::from(count)))
    }

    /// Cost per 1M of `tokens` (e.g. per 1M output tokens), `None` when `tokens` is 0.
    pub fn per_million(self, tokens: u64) -> Option<Cost> {
        (tokens > 0).then(|| Cost(self.0 * 1_000_000 / u128::from(tokens)))
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, rhs: Cost) -> Cost {
        Cost(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, rhs: Cost) {
        *self = *self + rhs;
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::ZERO, Add::add)
    }
}

impl fmt::Display for Cost {
    /// Dollars with six decimals (`$0.000123`), or more when that would print zero for a
    /// non-zero amount.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let usd = self.usd();
        if self.0 > 0 && usd < 0.000_000_5 {
            write!(f, "${usd:.3e}")
        } else {
            write!(f, "${usd:.6}")
        }
    }
}

/// The token counts a provider bills, split by rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BillableTokens {
    /// Input tokens billed at the standard input rate.
    pub input_uncached: u64,
    /// Input tokens read from the prompt cache (cache hits).
    pub cached_read: u64,
    /// Input tokens written to the prompt cache (Anthropic cache creation, 5-minute).
    pub cache_write: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
}

impl BillableTokens {
    /// From OpenAI usage: `cached_tokens` is a subset of `prompt_tokens`.
    pub fn openai(prompt_tokens: u64, cached_tokens: u64, completion_tokens: u64) -> Self {
        let cached = cached_tokens.min(prompt_tokens);
        BillableTokens {
            input_uncached: prompt_tokens - cached,
            cached_read: cached,
            cache_write: 0,
            output: completion_tokens,
        }
    }

    /// From Anthropic usage: `input_tokens` excludes both cache fields, which are billed
    /// at their own rates.
    pub fn anthropic(
        input_tokens: u64,
        cache_creation_input_tokens: u64,
        cache_read_input_tokens: u64,
        output_tokens: u64,
    ) -> Self {
        BillableTokens {
            input_uncached: input_tokens,
            cached_read: cache_read_input_tokens,
            cache_write: cache_creation_input_tokens,
            output: output_tokens,
        }
    }

    /// From normalised totals (cached input a subset of input; no cache writes known).
    pub fn from_totals(t: &TokenTotals) -> Self {
        Self::openai(t.input, t.cached_input, t.output)
    }
}

/// Whether a request runs through the synchronous API or a Batch API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Billing {
    /// Standard synchronous rates.
    Standard,
    /// Batch API rates.
    Batch,
}

/// One model's rates and their provenance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Price {
    /// `openai`, `anthropic`, `google`, `groq`, `simulator`, or a user's label.
    pub provider: String,
    /// Standard input.
    pub input: Rate,
    /// Cache hits; `None` bills them at `input`.
    pub cached_input: Option<Rate>,
    /// 5-minute cache writes; `None` bills them at `input`.
    pub cache_write: Option<Rate>,
    /// 1-hour cache writes (informational).
    pub cache_write_1h: Option<Rate>,
    /// Output.
    pub output: Rate,
    /// Batch API input; `None` when no batch price is confirmed.
    pub batch_input: Option<Rate>,
    /// Batch API output.
    pub batch_output: Option<Rate>,
    /// Where the numbers come from.
    pub source: Option<String>,
    /// When they were checked (YYYY-MM-DD).
    pub checked: Option<String>,
    /// Other names resolving to this entry.
    pub aliases: Vec<String>,
    /// True for the simulator's models.
    pub simulated: bool,
    /// Free text (caveats).
    pub note: Option<String>,
}

impl Price {
    /// The standard cost of one request.
    pub fn cost(&self, t: &BillableTokens) -> Cost {
        self.input.times(t.input_uncached)
            + self.cached_input.unwrap_or(self.input).times(t.cached_read)
            + self.cache_write.unwrap_or(self.input).times(t.cache_write)
            + self.output.times(t.output)
    }

    /// The Batch API cost, `None` when the model has no batch price. Cache reads and writes
    /// inside a batch are billed at half their standard rate (the 50 % rule; the providers'
    /// cached-in-batch rates are not confirmed).
    pub fn batch_cost(&self, t: &BillableTokens) -> Option<Cost> {
        let cached = self.cached_input.unwrap_or(self.input).times(t.cached_read)
            + self.cache_write.unwrap_or(self.input).times(t.cache_write);
        Some(
            self.batch_input?.times(t.input_uncached)
                + self.batch_output?.times(t.output)
                + Cost(cached.0 / 2),
        )
    }

    /// [`cost`](Self::cost) or [`batch_cost`](Self::batch_cost).
    pub fn cost_with(&self, billing: Billing, t: &BillableTokens) -> Option<Cost> {
        match billing {
            Billing::Standard => Some(self.cost(t)),
            Billing::Batch => self.batch_cost(t),
        }
    }
}

/// Accumulates costs over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CostTally {
    /// Sum of request costs.
    pub total: Cost,
    /// Requests priced.
    pub requests: u64,
    /// Output tokens of those requests.
    pub output_tokens: u64,
}

impl CostTally {
    /// Adds one priced request.
    pub fn add(&mut self, cost: Cost, output_tokens: u64) {
        self.total += cost;
        self.requests += 1;
        self.output_tokens = self.output_tokens.saturating_add(output_tokens);
    }

    /// Adds another tally.
    pub fn merge(&mut self, o: &CostTally) {
        self.total += o.total;
        self.requests += o.requests;
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
    }

    /// Mean cost per request.
    pub fn per_request(&self) -> Option<Cost> {
        self.total.per(self.requests)
    }

    /// Cost per 1M output tokens.
    pub fn per_million_output(&self) -> Option<Cost> {
        self.total.per_million(self.output_tokens)
    }
}

/// Why a price table did not load.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// Not TOML, or keys the table does not know.
    #[error("price table: {0}")]
    Toml(#[from] toml::de::Error),
    /// A field holds an impossible value.
    #[error("price table: model '{model}', field '{field}': {reason}")]
    Invalid {
        /// The model entry.
        model: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A TOML number: integer or float.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn value(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    version: Option<u32>,
    #[serde(default)]
    models: BTreeMap<String, RawPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    provider: String,
    input: Number,
    cached_input: Option<Number>,
    cache_write: Option<Number>,
    cache_write_1h: Option<Number>,
    output: Number,
    batch_input: Option<Number>,
    batch_output: Option<Number>,
    source: Option<String>,
    checked: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    simulated: bool,
    note: Option<String>,
}

impl RawPrice {
    fn resolve(self, model: &str) -> Result<Price, PriceError> {
        let rate = |field: &'static str, n: Number| {
            Rate::from_per_million_usd(n.value()).ok_or_else(|| PriceError::Invalid {
                model: model.to_string(),
                field,
                reason: format!(
                    "{} is not a price in USD per 1M tokens (0 to 1000000)",
                    n.value()
                ),
            })
        };
        let opt = |field, n: Option<Number>| n.map(|n| rate(field, n)).transpose();
        if self.batch_input.is_some() != self.batch_output.is_some() {
            return Err(PriceError::Invalid {
                model: model.to_string(),
                field: "batch_input",
                reason: "give both batch_input and batch_output, or neither".into(),
            });
        }
        if let Some(date) = &self.checked
            && !is_iso_date(date)
        {
            return Err(PriceError::Invalid {
                model: model.to_string(),
                field: "checked",
                reason: format!("'{date}' is not a YYYY-MM-DD date"),
            });
        }
        Ok(Price {
            provider: self.provider,
            input: rate("input", self.input)?,
            cached_input: opt("cached_input", self.cached_input)?,
            cache_write: opt("cache_write", self.cache_write)?,
            cache_write_1h: opt("cache_write_1h", self.cache_write_1h)?,
            output: rate("output", self.output)?,
            batch_input: opt("batch_input", self.batch_input)?,
            batch_output: opt("batch_output", self.batch_output)?,
            source: self.source,
            checked: self.checked,
            aliases: self.aliases,
            simulated: self.simulated,
            note: self.note,
        })
    }
}

fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// Model name → [`Price`], with alias and snapshot resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceTable {
    version: u32,
    models: BTreeMap<String, Price>,
}

impl PriceTable {
    /// The embedded table (`prices.toml`).
    pub fn builtin() -> PriceTable {
        // The embedded file is checked by a unit test; should it ever fail to parse, an
        // empty table (every lookup `None`, so costs print n/a) beats a panic.
        Self::parse_toml_str(BUILTIN_PRICES).unwrap_or(PriceTable {
            version: 0,
            models: BTreeMap::new(),
        })
    }

    /// The built-in table overridden and extended by `text` (same format): an entry in
    /// `text` replaces the built-in entry of the same name; new names are added.
    pub fn from_toml_str(text: &str) -> Result<PriceTable, PriceError> {
        let mut table = Self::builtin();
        let overrides = Self::parse_toml_str(text)?;
        table.models.extend(overrides.models);
        Ok(table)
    }

    /// Only the entries in `text`, without the built-ins.
    pub fn parse_toml_str(text: &str) -> Result<PriceTable, PriceError> {
        let raw: RawTable = toml::from_str(text)?;
        let mut models = BTreeMap::new();
        for (name, price) in raw.models {
            let price = price.resolve(&name)?;
            models.insert(name, price);
        }
        Ok(PriceTable {
            version: raw.version.unwrap_or(0),
            models,
        })
    }

    /// The table's `version` (of the built-in table when overridden).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every entry, by name.
    pub fn models(&self) -> impl Iterator<Item = (&str, &Price)> {
        self.models.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// The price for `model`, see [`resolve`](Self::resolve).
    pub fn lookup(&self, model: &str) -> Option<&Price> {
        self.resolve(model).map(|(_, p)| p)
    }

    /// The entry `model` resolves to, with its name. In order:
    /// 1. an entry or alias named exactly `model`;
    /// 2. without a dated-snapshot or `-latest` suffix (`gpt-4o-mini-2024-07-18` →
    ///    `gpt-4o-mini`, `claude-haiku-4-5-20251001` → `claude-haiku-4-5`);
    /// 3. a simulator model with options (`sim-mini:ttft=1ms` → `sim-mini`), only for
    ///    entries marked `simulated`;
    /// 4. without a `provider/` prefix naming the entry's provider (`openai/gpt-4o`).
    pub fn resolve(&self, model: &str) -> Option<(&str, &Price)> {
        if let Some(hit) = self.named(model) {
            return Some(hit);
        }
        if let Some(hit) = strip_snapshot(model).and_then(|base| self.named(base)) {
            return Some(hit);
        }
        if let Some((base, _options)) = model.split_once(':')
            && let Some(hit) = self.named(base).filter(|(_, p)| p.simulated)
        {
            return Some(hit);
        }
        if let Some((provider, rest)) = model.split_once('/')
            && let Some(hit) = self.resolve(rest).filter(|(_, p)| p.provider == provider)
        {
            return Some(hit);
        }
        None
    }

    fn named(&self, name: &str) -> Option<(&str, &Price)> {
        if let Some((n, p)) = self.models.get_key_value(name) {
            return Some((n.as_str(), p));
        }
        self.models
            .iter()
            .find(|(_, p)| p.aliases.iter().any(|a| a == name))
            .map(|(n, p)| (n.as_str(), p))
    }
}

/// `name` without a trailing `-YYYY-MM-DD`, `-YYYYMMDD` or `-latest`.
fn strip_snapshot(name: &str) -> Option<&str> {
    if let Some(base) = name.strip_suffix("-latest") {
        return Some(base);
    }
    let (base, tail) = name.rsplit_once('-')?;
    if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_digit()) {
        return Some(base);
    }
    // -YYYY-MM-DD: the last three dash-separated parts are 4, 2 and 2 digits.
    let mut parts = name.rsplitn(4, '-');
    let (dd, mm, yyyy, base) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (digits(yyyy, 4) && digits(mm, 2) && digits(dd, 2)).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(pico: u128) -> Cost {
        Cost(pico)
    }

    #[test]
    fn builtin_parses_with_provenance() {
        let t = PriceTable::parse_toml_str(BUILTIN_PRICES).unwrap();
        assert_eq!(t.version(), 1);
        assert_eq!(PriceTable::builtin(), t);
        for (name, p) in t.models() {
            assert!(p.source.is_some(), "{name} has no source");
            assert!(p.checked.is_some(), "{name} has no checked date");
            assert_eq!(p.simulated, p.provider == "simulator", "{name}");
        }
        for name in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "gpt-3.5-turbo",
            "o3-mini",
            "claude-3-5-haiku-20241022",
            "claude-3-5-sonnet-20240620",
            "claude-3-5-sonnet-20241022",
            "claude-3-7-sonnet-20250219",
            "claude-sonnet-4-20250514",
            "claude-opus-4-20250514",
            "claude-haiku-4-5",
            "gemini-2.0-flash",
            "gemini-2.5-flash",
            "llama-3.3-70b-versatile",
            "sim",
            "sim-mini",
            "sim-large",
        ] {
            assert!(t.models.contains_key(name), "missing {name}");
        }
    }

    #[test]
    fn rates_from_the_reference_table() {
        let t = PriceTable::builtin();
        let p = t.lookup("gpt-4o-mini").unwrap();
        assert_eq!(p.input, Rate(150_000));
        assert_eq!(p.cached_input, Some(Rate(75_000)));
        assert_eq!(p.output.per_million_usd(), 0.60);
        let g = t.lookup("gemini-1.5-flash").unwrap();
        assert_eq!(g.cached_input, Some(Rate(18_750)));
        let o = t.lookup("claude-opus-4-20250514").unwrap();
        assert_eq!(
            (o.cache_write, o.cached_input),
            (Some(Rate(18_750_000)), Some(Rate(1_500_000)))
        );
        // Simulator models are priced like what they imitate.
        assert_eq!(t.lookup("sim-mini").unwrap().input, p.input);
        assert_eq!(
            t.lookup("sim-large").unwrap().output,
            t.lookup("gpt-4o").unwrap().output
        );
        assert_eq!(t.lookup("sim").unwrap().output, Rate(0));
        // Groq has no confirmed batch price.
        assert_eq!(t.lookup("llama-3.1-8b-instant").unwrap().batch_input, None);
    }

    #[test]
    fn name_resolution() {
        let t = PriceTable::builtin();
        let name = |m| t.resolve(m).map(|(n, _)| n);
        assert_eq!(name("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(name("gpt-4.1-2025-04-14"), Some("gpt-4.1"));
        assert_eq!(name("claude-haiku-4-5-20251001"), Some("claude-haiku-4-5"));
        assert_eq!(
            name("claude-3-5-haiku-latest"),
            Some("claude-3-5-haiku-20241022")
        );
        assert_eq!(name("claude-sonnet-4-0"), Some("claude-sonnet-4-20250514"));
        assert_eq!(name("sim-mini:ttft=1ms,itl=2ms"), Some("sim-mini"));
        assert_eq!(name("sim:fail_first=2"), Some("sim"));
        assert_eq!(name("openai/gpt-4o"), Some("gpt-4o"));
        assert_eq!(name("anthropic/gpt-4o"), None);
        // ':' options only apply to simulator models (Ollama tags are not prices).
        assert_eq!(name("gpt-4o:latest"), None);
        assert_eq!(name("llama3:8b"), None);
        assert_eq!(name("gpt-5"), None);
        assert_eq!(
            name("meta-llama/llama-4-scout-17b-16e-instruct"),
            Some("meta-llama/llama-4-scout-17b-16e-instruct")
        );
    }

    #[test]
    fn openai_cost_bills_cached_subset() {
        let t = PriceTable::builtin();
        let p = t.lookup("gpt-4o-mini").unwrap();
        // 1000 prompt tokens of which 400 cached, 200 output:
        // 600 × 0.15 + 400 × 0.075 + 200 × 0.60 = 90 + 30 + 120 = 240 $/1M → $0.000240.
        let c = p.cost(&BillableTokens::openai(1000, 400, 200));
        assert_eq!(c, usd(240_000_000));
        assert_eq!(c.to_string(), "$0.000240");
        assert_eq!(c.nano_usd(), 240_000);
        // No cached price: cached tokens at the input rate.
        let p35 = t.lookup("gpt-3.5-turbo").unwrap();
        assert_eq!(
            p35.cost(&BillableTokens::openai(1000, 400, 0)),
            p35.cost(&BillableTokens::openai(1000, 0, 0))
        );
    }

    #[test]
    fn anthropic_cost_bills_cache_fields_separately() {
        let t = PriceTable::builtin();
        let p = t.lookup("claude-sonnet-4-20250514").unwrap();
        // 100 uncached × 3 + 1000 write × 3.75 + 2000 read × 0.30 + 500 out × 15
        // = 300 + 3750 + 600 + 7500 = 12150 µ$ = $0.01215.
        let b = BillableTokens::anthropic(100, 1000, 2000, 500);
        assert_eq!(p.cost(&b), usd(12_150_000_000));
        // Batch: 100 × 1.5 + 500 × 7.5 + (3750 + 600)/2 = 150 + 3750 + 2175 = 6075 µ$.
        assert_eq!(p.batch_cost(&b), Some(usd(6_075_000_000)));
        assert_eq!(p.cost_with(Billing::Batch, &b), p.batch_cost(&b));
        let groq = t.lookup("llama-3.3-70b-versatile").unwrap();
        assert_eq!(groq.cost_with(Billing::Batch, &b), None);
    }

    #[test]
    fn integer_costs_do_not_drift() {
        let p = PriceTable::builtin()
            .lookup("gemini-1.5-flash")
            .unwrap()
            .clone();
        let one = p.cost(&BillableTokens::openai(7, 3, 1));
        let mut tally = CostTally::default();
        for _ in 0..1_000_000 {
            tally.add(one, 1);
        }
        assert_eq!(tally.total, Cost(one.0 * 1_000_000));
        assert_eq!(tally.per_request(), Some(one));
        // 4 × 0.075 + 3 × 0.01875 + 1 × 0.30 = 0.65625 µ$ per request, per 1M output tokens
        // that is $0.65625.
        assert_eq!(tally.per_million_output().unwrap().usd(), 0.65625);
        assert_eq!(CostTally::default().per_request(), None);
    }

    #[test]
    fn overrides_replace_and_extend() {
        let t = PriceTable::from_toml_str(
            r#"
            version = 7
            [models.gpt-4o]
            provider = "openai"
            input = 5
            output = 15.0
            [models.my-model]
            provider = "vllm"
            input = 0
            output = 0.1
            "#,
        )
        .unwrap();
        assert_eq!(t.version(), 1);
        assert_eq!(t.lookup("gpt-4o").unwrap().input, Rate(5_000_000));
        assert_eq!(t.lookup("gpt-4o").unwrap().cached_input, None);
        assert_eq!(t.lookup("my-model").unwrap().output, Rate(100_000));
        assert_eq!(
            t.lookup("gpt-4o-2024-05-13").unwrap().input,
            Rate(5_000_000)
        );
        assert!(t.lookup("gpt-4o-mini").is_some());
    }

    #[test]
    fn bad_tables_name_the_problem() {
        let e = PriceTable::parse_toml_str("[models.x]\nprovider='a'\ninput=-1\noutput=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'x'") && e.contains("input"), "{e}");
        let e = PriceTable::parse_toml_str("[models.x]\nprovider='a'\ninput=1\noutput=1\nbogus=2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = PriceTable::parse_toml_str(
            "[models.x]\nprovider='a'\ninput=1\noutput=1\nbatch_input=0.5",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("batch_output"), "{e}");
        let e = PriceTable::parse_toml_str(
            "[models.x]\nprovider='a'\ninput=1\noutput=1\nchecked='May'",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("YYYY-MM-DD"), "{e}");
    }

    #[test]
    fn snapshot_suffixes() {
        assert_eq!(strip_snapshot("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(
            strip_snapshot("claude-opus-4-20250514"),
            Some("claude-opus-4")
        );
        assert_eq!(strip_snapshot("x-latest"), Some("x"));
        assert_eq!(strip_snapshot("gpt-4o"), None);
        assert_eq!(strip_snapshot("gpt-4.1-mini"), None);
        assert_eq!(strip_snapshot("a-12-34"), None);
    }

    #[test]
    fn cost_display_and_per() {
        assert_eq!(Cost(1).to_string(), "$1.000e-12");
        assert_eq!(Cost(1_500_000_000_000).to_string(), "$1.500000");
        assert_eq!(Cost(10).per(0), None);
        assert_eq!(Cost(10).per_million(0), None);
        assert_eq!([Cost(1), Cost(2)].into_iter().sum::<Cost>(), Cost(3));
        assert_eq!(Rate::from_per_million_usd(f64::NAN), None);
        assert_eq!(Rate::from_per_million_usd(0.01875), Some(Rate(18_750)));
    }
}

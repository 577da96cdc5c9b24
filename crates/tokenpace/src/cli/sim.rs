//! Arguments of `tokenpace sim`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Arguments of `tokenpace sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Rate-limit window (providers use a minute; shorten it for tests).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "60s",
        long_help = "Length of the sliding rate-limit window, as a duration such as 60s, 2s or 500ms. \
Providers count limits per minute; a short window makes tier behaviour quick to test."
    )]
    pub window: String,

    /// Tier of every API key without its own entry in --profiles.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["rpm", "tpm"],
          long_help = "Tier of every API key that has no [keys.\"KEY\"] entry in --profiles: free, tier-1, \
tier-5, anthropic-free, anthropic-tier-1 .. anthropic-tier-4, unlimited, or a [tiers.NAME] from --profiles.")]
    pub tier: Option<String>,

    /// Requests per window for keys without a tier.
    #[arg(long, value_name = "N")]
    pub rpm: Option<u64>,

    /// Tokens (input + max_tokens, settled to actual) per window for keys without a tier.
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,

    /// TOML file with [profiles.NAME], [tiers.NAME] and [keys."KEY"] tables.
    #[arg(long, value_name = "FILE")]
    pub profiles: Option<PathBuf>,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = sim::config::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
}

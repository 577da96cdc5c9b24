//! Gateway configuration, raw -> resolved (STYLE habit 4).
//!
//! [`RawConfig`] is what `gateway.toml` and the `serve` flags say, parsed with
//! `deny_unknown_fields`; [`RawConfig::resolve`] validates it into a [`Config`] with typed
//! durations, sizes, endpoints and API keys read from the environment, or fails with a
//! [`ConfigError`] that names the field and the fix. Engines accept only [`Config`].
//!
//! It owns parsing and validation; routing a model to an upstream is [`crate::route`]'s.

mod raw;
mod resolve;
mod size;

pub use raw::{
    RawAdmission, RawBatches, RawCache, RawConfig, RawKey, RawRetry, RawRoute, RawUpstream,
    SizeValue,
};
pub use resolve::{
    AdmissionBackend, AdmissionConfig, BatchesConfig, CacheConfig, CacheStore, Config, ConfigError,
    DEFAULT_LISTEN, GatewayKey, HedgeAfter, HedgeConfig, RouteConfig, UpstreamApi, UpstreamConfig,
    default_cache_path, default_data_dir,
};
pub use size::parse_size;

//! Arguments of `tokenpace serve`.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `tokenpace serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Gateway configuration file (TOML); flags override it.
    #[arg(
        long,
        value_name = "FILE",
        long_help = "Gateway configuration (TOML): listen, [upstreams.NAME] (url, api, api_key_env, \
timeout, connect_timeout, models), [aliases], [cache] (enabled, store, path, redis_url, ttl, \
memory_max_bytes, max_bytes, shared_across_tenants, deterministic_only), [[keys]] (tenant, \
key_env), data_dir (uploaded files, batch outputs and batch state) and [batches] (concurrency, \
max_file_bytes). docs/gateway.md describes every field. Flags given on the command line override it."
    )]
    pub config: Option<PathBuf>,

    /// An upstream: NAME=URL (repeatable).
    #[arg(
        long = "upstream",
        value_name = "NAME=URL",
        long_help = "An upstream provider as NAME=URL, e.g. openai=https://api.openai.com/v1 or \
sim=http://127.0.0.1:8090. Repeatable. With a single upstream every model goes to it; with several, \
address one as NAME/MODEL or list models in the config. The API key is read from OPENAI_API_KEY, \
ANTHROPIC_API_KEY or GROQ_API_KEY for those providers' hosts; set api_key_env in the config otherwise."
    )]
    pub upstreams: Vec<String>,

    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Allow a non-loopback address without gateway keys.
    #[arg(long)]
    pub allow_unauthenticated: bool,

    /// Cache store: sqlite (default), memory, redis or off.
    #[arg(long, value_name = "STORE")]
    pub cache: Option<String>,

    /// The SQLite cache file (default under $XDG_CACHE_HOME/tokenpace).
    #[arg(long, value_name = "FILE")]
    pub cache_path: Option<PathBuf>,

    /// Worker threads (default: the number of CPUs; 1 = one thread, lowest latency).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// The Redis URL for --cache redis.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
}

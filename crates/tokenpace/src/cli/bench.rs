//! Arguments of `tokenpace bench`. Parsing only; `commands::bench` validates them into a
//! resolved plan (a usage error names the flag and the fix).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// The wire API of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    /// OpenAI chat completions (also vLLM, llama.cpp, Ollama, Groq, ...).
    Openai,
    /// Anthropic Messages.
    Anthropic,
}

/// How requests arrive in rate mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalArg {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps (a Poisson process), seeded.
    Poisson,
}

/// Arguments of `tokenpace bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of an OpenAI- or Anthropic-compatible endpoint (with or without /v1).
    #[arg(
        long,
        value_name = "URL",
        long_help = "Base URL of the endpoint, with or without /v1, e.g. http://localhost:8000/v1. \
Defaults to OPENAI_BASE_URL. Without it (and without --targets) bench starts the simulator in-process."
    )]
    pub base_url: Option<String>,

    /// Model to measure; repeat to compare several.
    #[arg(
        long = "model",
        short = 'm',
        value_name = "MODEL",
        long_help = "Model to measure. Repeat the flag to compare several models side by side \
(a value is never split on commas). Names starting with sim run on the in-process simulator \
unless --base-url or --targets is given. local:smollm2 (after `tokenpace model pull smollm2`) or \
local:PATH.gguf runs a real model in-process on the CPU."
    )]
    pub models: Vec<String>,

    /// Wire API of --base-url.
    #[arg(long, value_enum, default_value = "openai")]
    pub api: ApiArg,

    /// Environment variable holding the API key (default OPENAI_API_KEY or ANTHROPIC_API_KEY).
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,

    /// Extra request header for --base-url, as 'NAME: VALUE' (repeatable).
    #[arg(
        long = "header",
        short = 'H',
        value_name = "NAME: VALUE",
        long_help = "An extra header sent with every request to --base-url, as 'NAME: VALUE' \
(repeatable), e.g. -H 'cache-control: no-store' to measure a tokenpace gateway with its cache off."
    )]
    pub headers: Vec<String>,

    /// TOML file of targets (name, base_url, api, model, api_key_env, headers).
    #[arg(long, value_name = "FILE", conflicts_with = "base_url")]
    pub targets: Option<PathBuf>,

    /// Sequential runs: same as --concurrency 1 --requests N.
    #[arg(long, value_name = "N", conflicts_with_all = ["requests", "rate", "duration", "concurrency"])]
    pub runs: Option<u64>,

    /// Requests in flight at once; a list (1,4,16,64) runs a sweep.
    #[arg(long, short = 'c', value_name = "C[,C...]")]
    pub concurrency: Option<String>,

    /// Requests per second on an open-loop schedule (latency counted from the intended send time).
    #[arg(long, value_name = "R", conflicts_with = "concurrency")]
    pub rate: Option<f64>,

    /// Arrival process in --rate mode.
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrival: ArrivalArg,

    /// Stop after N measured requests (per target and model).
    #[arg(long, short = 'n', value_name = "N")]
    pub requests: Option<u64>,

    /// Stop after this long (per target and model), e.g. 30s.
    #[arg(long, value_name = "DURATION", conflicts_with = "requests")]
    pub duration: Option<String>,

    /// Requests sent first and excluded from the figures.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warmup: u64,

    /// Start the --concurrency workers spread over this time instead of all at once.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0s",
        long_help = "Start the closed-loop workers spread evenly over this time (e.g. 10ms, 2s) \
instead of all at once: equal requests started together stay in lockstep, queue behind each \
other at every round, and measure that queue rather than the server."
    )]
    pub ramp_up: String,

    /// Per-request timeout, so a stalled server cannot hang the run.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub timeout: String,

    /// Run the prompt set sequentially and at --concurrency, and print the speedup.
    #[arg(long)]
    pub parallel_speedup: bool,

    /// Prompt text sent with every request.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["prompts", "input_tokens"])]
    pub prompt: Option<String>,

    /// JSONL file: each line a chat request body or {"prompt": "..."}.
    #[arg(long, value_name = "FILE", conflicts_with = "input_tokens")]
    pub prompts: Option<PathBuf>,

    /// Synthetic prompts of this many input tokens: MEAN or MEAN,STDDEV.
    #[arg(long, value_name = "MEAN[,STDDEV]")]
    pub input_tokens: Option<String>,

    /// Synthetic output length (sets max_tokens per request): MEAN or MEAN,STDDEV.
    #[arg(long, value_name = "MEAN[,STDDEV]")]
    pub output_tokens: Option<String>,

    /// Seed of synthetic prompts and Poisson arrivals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Output cap per request.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,

    /// System prompt.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,

    /// Send non-streamed requests (TTFT is then n/a).
    #[arg(long)]
    pub no_stream: bool,

    /// Do not send stream_options.include_usage (for servers that reject it).
    #[arg(long)]
    pub no_usage: bool,

    /// Service-level objective: chatbot, autocomplete, realtime, or ttft=200ms,e2e=2s,...
    #[arg(long, value_name = "SPEC")]
    pub slo: Option<String>,

    /// TOML price table that overrides or extends the built-in one.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,

    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the summary as CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Write the summary as Markdown.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Write one JSON line per request.
    #[arg(long, value_name = "FILE.jsonl")]
    pub requests_out: Option<PathBuf>,

    /// No live progress on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Compute threads of local:... models (default: half the cores, 1 to 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub local_threads: Option<u32>,

    /// Network engine of local:... models: candle, or llama-cpp in builds with the llama feature.
    #[arg(
        long,
        value_name = "ENGINE",
        value_parser = clap::builder::ValueParser::new(crate::cli::serve_local::parse_engine),
        long_help = "The implementation that runs the network: candle (pure Rust, always built) or llama-cpp \
(llama.cpp; only in builds with `--features llama`, where it is the default). Tokenizer, chat \
template and sampling are tokenpace's own either way, so both give the same prompt ids."
    )]
    pub local_engine: Option<local::engine::Engine>,

    /// Where local models are installed (default: TOKENPACE_MODEL_DIR, else the XDG cache).
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
}

//! Command-line arguments, one file per subcommand. Parsing only: validation into resolved
//! settings happens in `commands` (raw -> resolved, STYLE.md habit 4).

pub mod batch;
pub mod bench;
mod serve;
mod sim;

pub use serve::ServeArgs;
pub use sim::SimArgs;

use clap::{Parser, Subcommand};

/// Measure and cut the latency, throughput limits and cost of LLM API calls.
#[derive(Debug, Parser)]
#[command(name = "tokenpace", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); TOKENPACE_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure TTFT, TTLT, TPOT, tokens/s, goodput and cost of one or more models.
    #[command(long_about = BENCH_LONG_ABOUT)]
    Bench(Box<bench::BenchArgs>),
    /// Run a simulated LLM provider (OpenAI and Anthropic APIs) with realistic latency,
    /// tier rate limits and faults.
    #[command(long_about = SIM_LONG_ABOUT)]
    Sim(SimArgs),
    /// Run an OpenAI- and Anthropic-compatible gateway with an exact response cache,
    /// stream replay and request coalescing.
    #[command(long_about = SERVE_LONG_ABOUT)]
    Serve(Box<ServeArgs>),
    /// Run an OpenAI Batch input file (JSONL) now, in parallel, through the cache,
    /// coalescing, tier pacing and retries; resumable after Ctrl-C or a crash.
    Batch(batch::BatchArgs),
}

const SERVE_LONG_ABOUT: &str = "\
Run a gateway in front of OpenAI- or Anthropic-compatible providers: point an application's \
base URL at it and identical requests are answered from an exact response cache (persistent \
in SQLite by default, or shared through Redis), identical requests in flight share one upstream \
call, streams are relayed chunk by chunk, and /metrics reports tokens and dollars saved.

Routes: POST /v1/chat/completions, POST /v1/completions, POST /v1/messages, GET /v1/models, \
GET /health, GET /metrics. Per request: Cache-Control (no-cache, no-store, max-age=N), \
tokenpace-cache: on|off|read-only|write-only, tokenpace-replay: paced|instant.

Example: tokenpace sim & tokenpace serve --upstream sim=http://127.0.0.1:8090";

const BENCH_LONG_ABOUT: &str = "\
Measure the latency, throughput and cost of LLM API calls, exactly as docs/metrics.md \
defines them: TTFT, TTFC, TTLT, end-to-end latency, TPOT, inter-token gaps, tokens/s, \
goodput against an SLO, cost, and the network / queue / processing split.

Without --base-url or --targets, bench starts the provider simulator in-process and runs \
the lesson's Part 1: \"Explain machine learning in 3 sentences.\", max_tokens 100, 5 runs \
each on a small-fast (sim-mini) and a large-slow (sim-large) simulated model.

Modes: sequential (--runs N), fixed concurrency (--concurrency C), a concurrency sweep \
(--concurrency 1,4,16,64), an open-loop request rate (--rate R --arrival poisson|constant), \
and sequential vs parallel (--parallel-speedup). Stop with --requests N or --duration 30s.

Exit status: 0 all requests succeeded, 1 some failed, 2 usage or fatal error.";

const SIM_LONG_ABOUT: &str = "\
Run a simulated LLM provider on this machine: OpenAI-compatible /v1/chat/completions, \
/v1/completions and /v1/models, Anthropic-compatible /v1/messages, plus /health and /stats.

Latency follows the lesson's equation: TTFT = network + queue + prefill (base + per input \
token); each further token costs the decode time, slowed as concurrent slots fill. Tier \
limits per (API key, model) answer with real 429s and rate-limit headers.

Choose behaviour with the model name: sim (no delays), sim-mini, sim-large, a profile from \
--profiles, or options such as sim:ttft=200ms,itl=20ms,tokens=50,fail_first=2. \
See docs/sim.md for every parameter.

The first line on stdout is `listening on http://ADDR`.";

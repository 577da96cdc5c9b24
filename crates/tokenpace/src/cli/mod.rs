//! Command-line arguments, one file per subcommand. Parsing only: validation into resolved
//! settings happens in `commands` (raw -> resolved, STYLE.md habit 4).

pub mod batch;
pub mod bench;
pub mod model;
mod serve;
mod serve_local;
mod sim;

pub use serve::ServeArgs;
pub use serve_local::ServeLocalArgs;
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
    /// Pull and list the small real models that run on the CPU (smollm2, gemma3-270m).
    Model(model::ModelArgs),
    /// Serve a small real model on this machine's CPU behind an OpenAI-compatible API, one
    /// request at a time from a FIFO queue.
    #[command(long_about = SERVE_LOCAL_LONG_ABOUT)]
    ServeLocal(ServeLocalArgs),
}

const SERVE_LOCAL_LONG_ABOUT: &str = "\
Serve one small real model (SmolLM2-135M, Gemma 3 270M, or a GGUF file of your own) on this \
machine's CPU behind the OpenAI API: POST /v1/chat/completions and POST /v1/completions \
(streamed or not, with exact usage), GET /v1/models, GET /health. Point an OpenAI SDK, \
`tokenpace bench --base-url` or the gateway at it; nothing leaves the machine.

One request is generated at a time; the others wait in a FIFO queue (--queue-limit, then 503). \
Every response says how long it waited in server-timing (queue;dur=MS); non-streamed ones add \
prefill;dur= and decode;dur=. A streamed response starts when its generation starts, with one \
chunk per piece of text as soon as the model produces it. A client that disconnects cancels \
its request. Unsupported features (n > 1, logprobs, tools, JSON mode, echo, suffix, best_of, \
logit_bias) are refused with a 400 that names them.

Install a model first: tokenpace model pull smollm2

Example: tokenpace serve-local --model smollm2, then \
tokenpace bench --base-url http://127.0.0.1:8091/v1 --model smollm2

The first line on stdout is `listening on http://ADDR`.";

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

Without --base-url or --targets, bench runs the lesson's Part 1 in-process: \
\"Explain machine learning in 3 sentences.\", max_tokens 100, 5 runs each. With SmolLM2 \
installed (tokenpace model pull smollm2) it measures that real model on this CPU against the \
simulated large model, then the output-length experiment: the same question asked as is and \
with \"Answer in ONE sentence.\" Without it, a small-fast (sim-mini) and a large-slow \
(sim-large) simulated model.

Models: local:smollm2 or local:PATH.gguf run a real model in-process on the CPU; names \
starting with sim run on the in-process simulator; anything else goes to --base-url.

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

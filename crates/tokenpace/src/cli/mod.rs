//! Command-line arguments, one file per subcommand. Parsing only: validation into resolved
//! settings happens in `commands` (raw -> resolved, STYLE.md habit 4).

mod sim;

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
    /// Measure TTFT, TTLT, TPOT, tokens/s and cost of one or more models (not yet built).
    Bench,
    /// Run a simulated LLM provider (OpenAI and Anthropic APIs) with realistic latency,
    /// tier rate limits and faults.
    #[command(long_about = SIM_LONG_ABOUT)]
    Sim(SimArgs),
}

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

//! Arguments of `tokenpace batch` (one subcommand so far: `run`).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};

/// Arguments of `tokenpace batch`.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BatchCommand,
}

/// The `batch` subcommands.
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Run an OpenAI Batch input file (JSONL) now, through the cache, coalescing, tier
    /// pacing and retries; resumable.
    #[command(long_about = RUN_LONG_ABOUT)]
    Run(RunArgs),
}

const RUN_LONG_ABOUT: &str = "\
Run every line of an OpenAI Batch API input file now, in parallel, and write the results in \
the Batch API's output format: responses to --output, failures to --errors. Lines go through \
the same engine as `tokenpace serve`: identical lines share one upstream call or are answered \
from the cache, requests wait for tier capacity instead of drawing 429s, and transient \
failures are retried.

Input lines: {\"custom_id\": \"...\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\" \
(or /v1/completions, /v1/messages), \"body\": {...}}. The whole file is checked before \
anything is sent; every invalid line is reported with its number.

Resumable: a state file beside the output (OUT.tokenpace-state) records each finished line. \
After Ctrl-C or a crash, run the same command again: finished lines are skipped, and no line \
whose result was written is sent again.

Exit status: 0 every line succeeded, 1 some lines failed (or the run was stopped), 2 usage or \
fatal error (including an invalid input without --skip-invalid). See docs/batch.md.";

/// Arguments of `tokenpace batch run`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("upstream").required(true).args(["base_url", "config"])))]
pub struct RunArgs {
    /// The input: one request per line in the OpenAI Batch format.
    #[arg(
        value_name = "INPUT.jsonl",
        long_help = "The input file: one JSON object per line with custom_id (unique), method \
(POST), url (/v1/chat/completions, /v1/completions or /v1/messages) and body (the request, \
naming its model). Blank lines are skipped."
    )]
    pub input: PathBuf,

    /// Where responses go (appended to on resume).
    #[arg(
        long,
        short,
        value_name = "OUT.jsonl",
        long_help = "The output file: one line per successful request, {\"id\", \"custom_id\", \
\"response\": {\"status_code\", \"request_id\", \"body\"}, \"error\": null}, in completion order \
(match lines by custom_id). The run's state is kept beside it in OUT.jsonl.tokenpace-state."
    )]
    pub output: PathBuf,

    /// Where failed and invalid lines go (default: OUT's name with .errors).
    #[arg(
        long,
        value_name = "ERR.jsonl",
        long_help = "The error file: one line per failed request, {\"id\", \"custom_id\", \
\"response\": null, \"error\": {\"code\", \"message\"}} (invalid lines also carry error.line). \
Created on the first error. Default: the output's name with .errors before the extension, \
e.g. out.errors.jsonl."
    )]
    pub errors: Option<PathBuf>,

    /// The provider's base URL (one upstream, in-memory cache).
    #[arg(
        long,
        value_name = "URL",
        long_help = "The provider to send every line to, e.g. https://api.openai.com/v1 or \
http://127.0.0.1:8090 (tokenpace sim). The API key is read from OPENAI_API_KEY, \
ANTHROPIC_API_KEY or GROQ_API_KEY for those providers' hosts. Identical lines are answered \
once, from an in-memory cache; use --config for a persistent cache, tier limits or several \
upstreams."
    )]
    pub base_url: Option<String>,

    /// A gateway configuration (TOML) instead of --base-url.
    #[arg(
        long,
        value_name = "FILE",
        long_help = "A gateway configuration file, as for `tokenpace serve` (docs/gateway.md): \
upstreams and their tier limits (rpm, tpm, ...), aliases, routes, the cache and the retry \
policy all apply to the batch. Its listen address and keys are not used."
    )]
    pub config: Option<PathBuf>,

    /// Requests in flight at most.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
        long_help = "Requests in flight at most. Tier limits from --config (or learned from the \
provider's rate-limit headers) still pace them: lines wait for capacity rather than fail."
    )]
    pub concurrency: u32,

    /// Run the valid lines; write the invalid ones to the error file.
    #[arg(
        long,
        long_help = "Without it, any invalid line stops the batch before anything is sent, with \
every problem listed by line number. With it, valid lines run and each invalid line becomes an \
error line (with error.line set to its line number)."
    )]
    pub skip_invalid: bool,

    /// Most request lines (default 50000, the Batch API's limit).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50_000,
        long_help = "Most request lines in the input (blank lines do not count); lines past it \
are invalid. The default is the OpenAI Batch API's limit."
    )]
    pub max_lines: u64,

    /// Largest input file (default 200MB, the Batch API's limit).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "200MB",
        long_help = "Largest input file, in bytes or with a unit (200MB, 512MiB); lines ending \
past it are invalid. The default is the OpenAI Batch API's limit."
    )]
    pub max_bytes: String,

    /// Also write the summary as JSON to this file.
    #[arg(
        long,
        value_name = "SUMMARY.json",
        long_help = "Write the run's summary as JSON (counts, times, speedup, tokens, cost three \
ways; docs/batch.md lists the fields), also with --quiet."
    )]
    pub json: Option<PathBuf>,

    /// No progress line and no summary on stderr (errors still).
    #[arg(long, short)]
    pub quiet: bool,
}

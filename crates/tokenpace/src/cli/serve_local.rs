//! Arguments of `tokenpace serve-local`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Parses `--engine`, with the error that says how to get llama.cpp when it is not built in.
pub fn parse_engine(s: &str) -> Result<local::engine::Engine, String> {
    s.parse()
}

/// Arguments of `tokenpace serve-local`.
#[derive(Debug, Args)]
pub struct ServeLocalArgs {
    /// The model: smollm2, gemma3-270m, local:NAME or a .gguf file.
    #[arg(
        long,
        value_name = "MODEL",
        long_help = "The model to serve: a name tokenpace knows (smollm2, gemma3-270m; install it \
first with `tokenpace model pull NAME`), the same with a local: prefix, or the path of a GGUF \
file (local:PATH.gguf or PATH.gguf) with the llama or gemma3 architecture and a byte-level BPE \
or SentencePiece tokenizer. Requests name it by its name (the file stem for a path), with or without local:."
    )]
    pub model: String,

    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        default_value = local::server::DEFAULT_LISTEN,
        value_name = "ADDR",
        long_help = "Address to listen on, such as 127.0.0.1:8091 (the default) or 0.0.0.0:8091 \
to serve other machines (there are no API keys: anyone who can reach the port can use it). \
Port 0 picks a free port; the first stdout line names it."
    )]
    pub listen: SocketAddr,

    /// Compute threads (default: half the cores, 1 to 4).
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=256),
        long_help = "Threads of the model's matrix kernels (default: the available cores, at most \
4; a model this small gains little beyond that). One request runs at a time on all of them; \
HTTP handling takes a small extra thread pool."
    )]
    pub threads: Option<u32>,

    /// Network engine: candle, or llama-cpp in builds with the llama feature.
    #[arg(
        long,
        value_name = "ENGINE",
        value_parser = clap::builder::ValueParser::new(parse_engine),
        long_help = "The implementation that runs the network: candle (pure Rust, always built) or llama-cpp \
(llama.cpp; only in builds with `--features llama`, where it is the default). Tokenizer, chat \
template and sampling are tokenpace's own either way, so both give the same prompt ids."
    )]
    pub engine: Option<local::engine::Engine>,

    /// Reuse the KV cache when a prompt extends the previous one.
    #[arg(
        long,
        long_help = "Reuse the previous request's KV cache when its tokens are a prefix of the \
next prompt (a conversation that grows turn by turn): only the new tokens are prefilled, and \
usage.prompt_tokens_details.cached_tokens counts the reused ones. Off by default, so every \
request's time to first token includes its whole prefill, as the lesson measures it."
    )]
    pub prefix_reuse: bool,

    /// Requests that may wait behind the running one; more get 503.
    #[arg(
        long,
        value_name = "N",
        default_value_t = local::server::DEFAULT_QUEUE_LIMIT,
        long_help = "How many requests may wait in the FIFO queue behind the one being generated \
(default 64). A request over the limit is answered at once with 503 (code overloaded) and a \
retry-after header. 0 lets none wait. Each response's server-timing header says how long it \
waited (queue;dur=MS)."
    )]
    pub queue_limit: usize,

    /// Where models are installed (default: $TOKENPACE_MODEL_DIR or ~/.cache/tokenpace/models).
    #[arg(
        long,
        value_name = "DIR",
        long_help = "The model directory to find named models in. Default: $TOKENPACE_MODEL_DIR, \
else $XDG_CACHE_HOME/tokenpace/models, else ~/.cache/tokenpace/models."
    )]
    pub model_dir: Option<PathBuf>,
}

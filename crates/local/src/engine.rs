//! The inference engine: loads a checked GGUF file and generates text from token ids.
//!
//! The network is one of: candle's quantized Llama (`llama` architecture: SmolLM2, Llama,
//! TinyLlama), our Gemma 3 on candle's quantized kernels (`gemma3`, in the `gemma3` module), or,
//! built with the `llama` cargo feature, llama.cpp for either ([`Engine::LlamaCpp`]). Tokenizer,
//! template, sampling and stopping are the same whichever network runs.
//!
//! One [`Model`] decodes one request at a time (the server queues the rest). A request is a
//! prefill of the prompt (one forward pass over all its tokens; cold by default, or reusing the
//! KV cache when the previous request's tokens are a prefix of this prompt and reuse is on), then
//! one forward pass per further token. Sampling is greedy at temperature 0, otherwise
//! temperature with optional nucleus (`top_p`) from a seeded generator. Text goes out in pieces
//! that never split a UTF-8 character or reveal a stop sequence that is still being matched.
//!
//! The computation runs on a rayon pool of the configured size: candle's quantized kernels and
//! its matrix products split their work over the current rayon pool.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama;

use crate::LocalError;
use crate::gemma3::Gemma3;
use crate::template::{ChatTemplate, Message};
use crate::tokenizer::{Tokenizer, Utf8Stream};

/// Which implementation runs the network's forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Pure Rust (candle's quantized kernels): always built.
    Candle,
    /// llama.cpp through `llama-cpp-2`: only in builds with the `llama` cargo feature.
    LlamaCpp,
}

impl Engine {
    /// The engine a build uses unless told otherwise: llama.cpp when it is built in (it is
    /// faster), candle otherwise.
    pub fn default_for_build() -> Engine {
        if cfg!(feature = "llama") {
            Engine::LlamaCpp
        } else {
            Engine::Candle
        }
    }

    /// The engines this build has.
    pub fn available() -> &'static [Engine] {
        if cfg!(feature = "llama") {
            &[Engine::Candle, Engine::LlamaCpp]
        } else {
            &[Engine::Candle]
        }
    }

    /// The name used on the command line and in reports (`candle`, `llama-cpp`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Candle => "candle",
            Engine::LlamaCpp => "llama-cpp",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "candle" => Ok(Engine::Candle),
            "llama-cpp" | "llama.cpp" | "llamacpp" => {
                if cfg!(feature = "llama") {
                    Ok(Engine::LlamaCpp)
                } else {
                    Err("this tokenpace was built without llama.cpp: rebuild with `cargo build --release --features llama` (needs cmake and libclang-dev), or use --engine candle".into())
                }
            }
            other => Err(format!(
                "unknown engine '{other}': use candle{}",
                if cfg!(feature = "llama") {
                    " or llama-cpp"
                } else {
                    ""
                }
            )),
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Which implementation runs the network.
    pub engine: Engine,
    /// Compute threads (at least 1).
    pub threads: usize,
    /// The SHA-256 the file must have (catalog models), or `None` (a user's own file).
    pub expected_sha256: Option<String>,
    /// Reuse the KV cache of the previous request when it is a prefix of the next prompt.
    pub prefix_reuse: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            engine: Engine::default_for_build(),
            threads: default_threads(),
            expected_sha256: None,
            prefix_reuse: false,
        }
    }
}

/// The default number of compute threads: half the available cores, at least 1 and at most 4.
/// A model this small gains little from more threads, and its threads wait on each other at
/// every layer: measured on a 2-core machine, one thread decoded as fast as two when idle
/// (47 vs 43 tokens/s) and held up far better when other work shared the cores (two threads
/// fell to a few tokens/s), so the other half of the machine is left to the rest.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).clamp(1, 4))
        .unwrap_or(1)
}

/// The most prompt tokens one forward pass takes: a longer prompt is prefilled in chunks, with a
/// cancellation probe between them (about 4 s of work at 120 tokens/s). Prompts up to this size,
/// the usual case, run in one pass as before.
pub const PREFILL_CHUNK: usize = 512;

/// Sampling and stopping for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    /// Most tokens to generate (at least 1).
    pub max_tokens: u32,
    /// Stop sequences (at most 4, as OpenAI); the text ends before the first one found.
    pub stop: Vec<String>,
    /// 0 is greedy; OpenAI's default is 1.
    pub temperature: f64,
    /// Nucleus sampling mass in (0, 1]; 1 samples from the whole distribution.
    pub top_p: f64,
    /// Seed of the sampler; the same seed, prompt and parameters give the same text.
    pub seed: u64,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            max_tokens: 16,
            stop: Vec::new(),
            temperature: 1.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn, or a stop sequence was reached.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The caller cancelled (its client went away).
    Cancelled,
}

/// What one request produced.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV cache was reused from the previous request.
    pub cached_tokens: u32,
    /// Tokens generated (the end-of-turn token is not counted; a token that completed a stop
    /// sequence is).
    pub completion_tokens: u32,
    /// Why it ended.
    pub finish: Finish,
    /// The text (without the stop sequence).
    pub text: String,
    /// Time of the prompt's forward pass and the first sample.
    pub prefill: Duration,
    /// Time of the rest.
    pub decode: Duration,
}

/// What the text callback tells the engine. The callback also gets an empty string between
/// chunks of a long prefill ([`PREFILL_CHUNK`] tokens each): a probe, so a request whose client
/// left stops within one chunk instead of after its whole prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop now (the client left).
    Cancel,
}

/// The request-side half of a model: its name, tokenizer, chat template and context size.
/// Shared (`Arc`) with the threads that turn requests into prompt ids, while the weights stay
/// with the one thread that decodes.
#[derive(Debug)]
pub struct Prompter {
    name: String,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    context_length: usize,
}

impl Prompter {
    /// The name the model is served under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most tokens (prompt plus output) one request can hold.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Whether the model has a chat template.
    pub fn is_chat(&self) -> bool {
        self.template.is_chat()
    }

    /// The prompt ids of a chat (template applied, special tokens parsed).
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>, LocalError> {
        let text = self.template.render(messages)?;
        Ok(self.tokenizer.encode(&text, true))
    }

    /// The prompt ids of plain text (special tokens in it are text, as OpenAI treats them).
    pub fn text_prompt(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, false)
    }

    /// Checks that a request fits the context before it waits in a queue.
    pub fn check_fits(&self, prompt_tokens: usize, max_tokens: u32) -> Result<(), LocalError> {
        if prompt_tokens == 0 {
            return Err(LocalError::Invalid(
                "the prompt is empty: give at least one token of text".into(),
            ));
        }
        let total = prompt_tokens + max_tokens as usize;
        if total > self.context_length {
            return Err(LocalError::Invalid(format!(
                "this model's context is {} tokens, but the request needs {total} ({prompt_tokens} in the prompt + {max_tokens} max_tokens): \
                 shorten the prompt or lower max_tokens",
                self.context_length
            )));
        }
        Ok(())
    }
}

/// The network behind a model: ids in, logits of the last id out, with its own KV cache.
enum Network {
    Llama(Box<quantized_llama::ModelWeights>),
    Gemma3(Box<Gemma3>),
    #[cfg(feature = "llama")]
    LlamaCpp(Box<crate::llama_cpp::LlamaCppNet>),
}

/// A loaded model.
pub struct Model {
    prompter: Arc<Prompter>,
    network: Network,
    engine: Engine,
    pool: rayon::ThreadPool,
    threads: usize,
    prefix_reuse: bool,
    /// Ids whose keys and values are in the KV cache, in order.
    cached: Vec<u32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.prompter.name)
            .field("context_length", &self.prompter.context_length)
            .field("engine", &self.engine)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

fn metadata_string(content: &Content, key: &str) -> Option<String> {
    match content.metadata.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

impl Model {
    /// Checks and loads the GGUF file at `path`, served under `name`.
    pub fn load(path: &Path, name: &str, options: &LoadOptions) -> Result<Self, LocalError> {
        let content = crate::verify::check(path, options.expected_sha256.as_deref())?;
        let arch = metadata_string(&content, "general.architecture").unwrap_or_default();
        let (trained, cap) = match arch.as_str() {
            "llama" => (
                content
                    .metadata
                    .get("llama.context_length")
                    .and_then(|v| v.to_u32().ok())
                    .map(|n| n as usize),
                quantized_llama::MAX_SEQ_LEN,
            ),
            "gemma3" => (
                Gemma3::trained_context(&content),
                crate::gemma3::MAX_CONTEXT,
            ),
            _ => {
                return Err(LocalError::bad_file(
                    path,
                    format!(
                        "architecture '{arch}' is not supported by the built-in engine, which runs the llama \
                         (SmolLM2, Llama, TinyLlama, ...) and gemma3 (Gemma 3) architectures"
                    ),
                ));
            }
        };
        let context_length = trained.unwrap_or(cap).min(cap);
        let tokenizer = Tokenizer::from_gguf(&content)
            .map_err(|e| LocalError::bad_file(path, e.to_string()))?;
        let piece = |key: &str| {
            content
                .metadata
                .get(key)
                .and_then(|v| v.to_u32().ok())
                .map(|id| String::from_utf8_lossy(tokenizer.piece(id, true)).into_owned())
                .unwrap_or_default()
        };
        let bos = piece("tokenizer.ggml.bos_token_id");
        let eos = piece("tokenizer.ggml.eos_token_id");
        let template = ChatTemplate::new(
            metadata_string(&content, "tokenizer.chat_template").as_deref(),
            &bos,
            &eos,
        )?;
        let threads = options.threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tokenpace-model-{i}"))
            .build()
            .map_err(|e| LocalError::Engine(format!("starting {threads} compute threads: {e}")))?;
        let network = match options.engine {
            Engine::Candle => {
                let mut file = File::open(path).map_err(|e| LocalError::io(path, e))?;
                let loaded = pool.install(|| -> candle_core::Result<Network> {
                    Ok(if arch == "gemma3" {
                        Network::Gemma3(Box::new(Gemma3::from_gguf(
                            &content,
                            &mut file,
                            context_length,
                        )?))
                    } else {
                        Network::Llama(Box::new(quantized_llama::ModelWeights::from_gguf(
                            content,
                            &mut file,
                            &Device::Cpu,
                        )?))
                    })
                });
                loaded.map_err(|e| {
                    LocalError::bad_file(path, format!("cannot load the weights: {e}"))
                })?
            }
            #[cfg(feature = "llama")]
            Engine::LlamaCpp => Network::LlamaCpp(Box::new(crate::llama_cpp::LlamaCppNet::load(
                path,
                threads,
                context_length,
            )?)),
            #[cfg(not(feature = "llama"))]
            Engine::LlamaCpp => {
                return Err(LocalError::Engine(
                    "this build has no llama.cpp engine: rebuild with `--features llama`".into(),
                ));
            }
        };
        Ok(Model {
            prompter: Arc::new(Prompter {
                name: name.to_owned(),
                tokenizer,
                template,
                context_length,
            }),
            network,
            engine: options.engine,
            pool,
            threads,
            prefix_reuse: options.prefix_reuse,
            cached: Vec::new(),
        })
    }

    /// The request-side half: name, tokenizer, template, context size.
    pub fn prompter(&self) -> Arc<Prompter> {
        self.prompter.clone()
    }

    /// Compute threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The implementation that runs the network.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Runs `ids` at positions `pos..` after the `pos` positions in the KV cache and returns
    /// the logits of the last id.
    fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Tensor, LocalError> {
        let logits = match &mut self.network {
            Network::Llama(weights) => self.pool.install(|| -> candle_core::Result<Tensor> {
                let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
                weights.forward(&input, pos)?.squeeze(0)
            })?,
            Network::Gemma3(net) => self.pool.install(|| net.forward(ids, pos))?,
            #[cfg(feature = "llama")]
            Network::LlamaCpp(net) => {
                let logits = net.forward(ids, pos)?;
                let n = logits.len();
                Tensor::from_vec(logits, n, &Device::Cpu)?
            }
        };
        Ok(logits)
    }

    /// Generates from `prompt`, handing text pieces to `on_text` as they become final.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenParams,
        on_text: &mut dyn FnMut(&str) -> Control,
    ) -> Result<Generation, LocalError> {
        let max_tokens = params.max_tokens.max(1);
        let prompter = self.prompter.clone();
        let tokenizer = prompter.tokenizer();
        prompter.check_fits(prompt.len(), max_tokens)?;
        let vocab = tokenizer.len() as u32;
        if let Some(&bad) = prompt.iter().find(|&&id| id >= vocab) {
            return Err(LocalError::Invalid(format!(
                "token id {bad} is outside the model's vocabulary of {vocab}"
            )));
        }
        let started = Instant::now();
        // Prefix reuse: the KV cache can only grow, so it is reused when everything in it is a
        // prefix of this prompt (and at least one prompt token is left to compute logits from).
        let reuse = if self.prefix_reuse
            && !self.cached.is_empty()
            && self.cached.len() < prompt.len()
            && prompt.starts_with(&self.cached)
        {
            self.cached.len()
        } else {
            0
        };
        self.cached.truncate(reuse);
        // The prompt goes through in chunks, with a cancellation probe between them.
        let mut logits = None;
        for chunk in prompt[reuse..].chunks(PREFILL_CHUNK) {
            if logits.is_some() && on_text("") == Control::Cancel {
                return Ok(Generation {
                    prompt_tokens: prompt.len() as u32,
                    cached_tokens: reuse as u32,
                    completion_tokens: 0,
                    finish: Finish::Cancelled,
                    text: String::new(),
                    prefill: started.elapsed(),
                    decode: Duration::ZERO,
                });
            }
            let pos = self.cached.len();
            match self.forward(chunk, pos) {
                Ok(l) => logits = Some(l),
                Err(e) => {
                    self.cached.clear();
                    return Err(e);
                }
            }
            self.cached.extend_from_slice(chunk);
        }
        let Some(mut logits) = logits else {
            return Err(LocalError::Invalid(
                "the prompt is empty: give at least one token of text".into(),
            ));
        };
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else if params.top_p > 0.0 && params.top_p < 1.0 {
            Sampling::TopP {
                p: params.top_p,
                temperature: params.temperature,
            }
        } else {
            Sampling::All {
                temperature: params.temperature,
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);
        let mut stops = StopMatcher::new(&params.stop);
        let mut utf8 = Utf8Stream::default();
        let mut generated = 0u32;
        let mut prefill = None;
        let finish = loop {
            let next = sampler.sample(&logits)?;
            if prefill.is_none() {
                prefill = Some(started.elapsed());
            }
            if tokenizer.is_end_of_generation(next) {
                break Finish::Stop;
            }
            generated += 1;
            let text = utf8.push(tokenizer.piece(next, false));
            let (out, hit) = stops.push(&text);
            if !out.is_empty() && on_text(&out) == Control::Cancel {
                break Finish::Cancelled;
            }
            if hit {
                break Finish::Stop;
            }
            if generated >= max_tokens {
                break Finish::Length;
            }
            let pos = self.cached.len();
            logits = match self.forward(&[next], pos) {
                Ok(l) => l,
                Err(e) => {
                    self.cached.clear();
                    return Err(e);
                }
            };
            self.cached.push(next);
        };
        if finish != Finish::Cancelled {
            let tail = utf8.finish();
            let (mut out, _) = stops.push(&tail);
            out.push_str(&stops.flush());
            if !out.is_empty() {
                // The request is over either way; a cancel here changes nothing.
                let _ = on_text(&out);
            }
        }
        let prefill = prefill.unwrap_or_default();
        Ok(Generation {
            prompt_tokens: prompt.len() as u32,
            cached_tokens: reuse as u32,
            completion_tokens: generated,
            finish,
            text: stops.text,
            prefill,
            decode: started.elapsed().saturating_sub(prefill),
        })
    }
}

/// Finds stop sequences in streamed text: text goes out only once no stop sequence can start
/// in it.
#[derive(Debug)]
struct StopMatcher {
    stops: Vec<String>,
    /// All text accepted so far (up to a stop).
    text: String,
    /// How much of `text` has gone out.
    emitted: usize,
    done: bool,
}

impl StopMatcher {
    fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            emitted: 0,
            done: false,
        }
    }

    /// Adds text; returns what may go out now and whether a stop sequence was reached.
    fn push(&mut self, piece: &str) -> (String, bool) {
        if self.done {
            return (String::new(), true);
        }
        let search_from = self.emitted;
        self.text.push_str(piece);
        if self.stops.is_empty() {
            let out = self.text[self.emitted..].to_owned();
            self.emitted = self.text.len();
            return (out, false);
        }
        // The earliest stop sequence in the unreleased text.
        let hit = self
            .stops
            .iter()
            .filter_map(|s| {
                self.text[search_from..]
                    .find(s.as_str())
                    .map(|p| p + search_from)
            })
            .min();
        if let Some(at) = hit {
            self.text.truncate(at);
            self.done = true;
            let out = self.text[self.emitted..].to_owned();
            self.emitted = self.text.len();
            return (out, true);
        }
        // Hold back the longest tail that could still grow into a stop sequence.
        let mut safe = self.text.len();
        for s in &self.stops {
            for (k, _) in s.char_indices().skip(1) {
                if self.text.ends_with(&s[..k]) {
                    safe = safe.min(self.text.len() - k);
                }
            }
        }
        let safe = safe.max(self.emitted);
        let out = self.text[self.emitted..safe].to_owned();
        self.emitted = safe;
        (out, false)
    }

    /// Releases what was held back (generation ended without completing a stop sequence).
    fn flush(&mut self) -> String {
        let out = self.text[self.emitted..].to_owned();
        self.emitted = self.text.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut m = StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut outs = Vec::new();
        let mut hit = false;
        for p in pieces {
            let (o, h) = m.push(p);
            outs.push(o);
            if h {
                hit = true;
                break;
            }
        }
        if !hit {
            outs.push(m.flush());
        }
        (outs, hit, m.text.clone())
    }

    #[test]
    fn stop_sequence_across_pieces_is_never_emitted() {
        let (outs, hit, text) = run(&["\n\n"], &["Hello", "\n", "\nmore"]);
        assert!(hit);
        assert_eq!(text, "Hello");
        assert_eq!(outs.concat(), "Hello");
        // The lone "\n" was held back, not sent.
        assert_eq!(outs[1], "");
    }

    #[test]
    fn held_back_text_is_released_when_it_does_not_complete() {
        let (outs, hit, text) = run(&["END"], &["the E", "ND", "x"]);
        assert!(hit);
        assert_eq!(text, "the ");
        assert_eq!(outs.concat(), "the ");
        let (outs, hit, text) = run(&["END"], &["the E", "nd"]);
        assert!(!hit);
        assert_eq!(text, "the End");
        assert_eq!(outs.concat(), "the End");
    }

    #[test]
    fn earliest_of_several_stops_wins_and_multibyte_is_safe() {
        let (_, hit, text) = run(&["é!", "b"], &["aé", "!b"]);
        assert!(hit);
        assert_eq!(text, "a");
        let (outs, hit, _) = run(&[], &["a", "b"]);
        assert!(!hit);
        assert_eq!(outs.concat(), "ab");
    }
}

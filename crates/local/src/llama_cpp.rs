//! llama.cpp as the network (cargo feature `llama`): the forward pass of a GGUF model through
//! the `llama-cpp-2` crate, ids in and logits out. Tokenizer, chat template, sampling and
//! stopping stay ours ([`crate::engine`]); llama.cpp's own tokenizer and samplers are not used.
//!
//! What this module owns:
//! - the process's one llama.cpp backend (`LlamaBackend::init` may run once per process), with
//!   llama.cpp's logging switched off;
//! - one [`LlamaCppNet`]: a model, its context (one sequence, KV cache of `n_ctx` positions) and
//!   the thread they live on. The context borrows the model, so both sit on the stack of a
//!   dedicated thread that serves forward passes over a channel; dropping the net ends the thread
//!   and frees both, with no `unsafe` and nothing leaked however often models are loaded;
//! - the KV cache bookkeeping: how many positions are cached, dropping the ones a request
//!   rewrites, and feeding long inputs in chunks of the batch size.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread::JoinHandle;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

use crate::LocalError;

/// Tokens per `llama_decode` call (llama.cpp's `n_batch`; also its `n_ubatch`, the most it
/// computes at once). Longer inputs go in several calls. 512 is llama.cpp's default micro-batch.
const N_BATCH: usize = 512;

/// The one sequence of the context.
const SEQ: i32 = 0;

/// The process's llama.cpp backend, made on first use (or the reason it could not be).
static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend, LocalError> {
    BACKEND
        .get_or_init(|| {
            let mut backend =
                LlamaBackend::init().map_err(|e| format!("llama.cpp backend cannot start: {e}"))?;
            // llama.cpp logs every load and context to stderr; tokenpace reports for itself.
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| LocalError::Engine(e.clone()))
}

/// One forward pass asked of the worker thread.
struct Request {
    ids: Vec<u32>,
    pos: usize,
    reply: mpsc::SyncSender<Result<Vec<f32>, LocalError>>,
}

/// llama.cpp holding one model and one context (one sequence).
pub(crate) struct LlamaCppNet {
    /// To the thread that owns the model and context; `None` only while dropping.
    requests: Option<mpsc::Sender<Request>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LlamaCppNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppNet").finish_non_exhaustive()
    }
}

impl LlamaCppNet {
    /// Loads the GGUF at `path` with `threads` compute threads and a context of `n_ctx` tokens.
    pub(crate) fn load(path: &Path, threads: usize, n_ctx: usize) -> Result<Self, LocalError> {
        Self::open(path, threads, n_ctx, N_BATCH)
    }

    /// [`LlamaCppNet::load`] with a given batch size (tests use a small one to exercise chunks).
    fn open(path: &Path, threads: usize, n_ctx: usize, n_batch: usize) -> Result<Self, LocalError> {
        if !path.is_file() {
            return Err(LocalError::bad_file(path, "no such file"));
        }
        let ctx_tokens = u32::try_from(n_ctx)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                LocalError::Invalid(format!(
                    "llama.cpp context of {n_ctx} tokens: it must be between 1 and {}",
                    u32::MAX
                ))
            })?;
        let threads = i32::try_from(threads.max(1)).unwrap_or(i32::MAX);
        let n_batch = n_batch.clamp(1, n_ctx);
        let setup = Setup {
            path: path.to_path_buf(),
            threads,
            n_ctx,
            ctx_tokens,
            n_batch,
        };
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (requests, requests_rx) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("tokenpace-llama-cpp".into())
            // The thread computes too (it is thread 0 of llama.cpp's pool): a main thread's stack.
            .stack_size(8 << 20)
            .spawn(move || serve(setup, &ready_tx, &requests_rx))
            .map_err(|e| LocalError::Engine(format!("starting the llama.cpp thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(LlamaCppNet {
                requests: Some(requests),
                worker: Some(worker),
            }),
            Ok(Err(e)) => {
                let _ = worker.join();
                Err(e)
            }
            Err(_) => {
                let _ = worker.join();
                Err(LocalError::bad_file(
                    path,
                    "llama.cpp stopped while loading the model (it panicked)",
                ))
            }
        }
    }

    /// Runs `ids` at positions `pos..pos+ids.len()` after dropping every cached position >= `pos`
    /// from the KV cache, and returns the logits (length = vocabulary size) of the last id.
    /// `pos == 0` starts a fresh sequence.
    pub(crate) fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>, LocalError> {
        let stopped =
            || LocalError::Engine("the llama.cpp thread has stopped (it panicked)".into());
        let requests = self.requests.as_ref().ok_or_else(stopped)?;
        let (reply, answer) = mpsc::sync_channel(1);
        requests
            .send(Request {
                ids: ids.to_vec(),
                pos,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Drop for LlamaCppNet {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; joining frees the model before we return.
        drop(self.requests.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// What the worker thread loads.
struct Setup {
    path: PathBuf,
    threads: i32,
    n_ctx: usize,
    ctx_tokens: NonZeroU32,
    n_batch: usize,
}

/// The worker thread: loads the model and its context, reports the outcome on `ready`, then
/// serves forward passes until the net is dropped.
fn serve(
    setup: Setup,
    ready: &mpsc::SyncSender<Result<(), LocalError>>,
    requests: &mpsc::Receiver<Request>,
) {
    let model = match load_model(&setup.path) {
        Ok(model) => model,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut net = match Context::new(&model, &setup) {
        Ok(net) => net,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    while let Ok(request) = requests.recv() {
        let result = net.forward(&request.ids, request.pos);
        // The caller waits for the answer; if it is gone, so is the net.
        let _ = request.reply.send(result);
    }
}

fn load_model(path: &Path) -> Result<LlamaModel, LocalError> {
    let backend = backend()?;
    LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).map_err(|e| {
        LocalError::bad_file(
            path,
            format!("llama.cpp cannot load it ({e}): not a GGUF model llama.cpp supports"),
        )
    })
}

/// A context over a model: the KV cache of one sequence and what is in it.
struct Context<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    n_ctx: usize,
    n_vocab: usize,
    /// Positions `0..cached` are in the KV cache.
    cached: usize,
}

impl<'m> Context<'m> {
    fn new(model: &'m LlamaModel, setup: &Setup) -> Result<Self, LocalError> {
        let n_batch = u32::try_from(setup.n_batch).unwrap_or(u32::MAX);
        let params = LlamaContextParams::default()
            .with_n_ctx(Some(setup.ctx_tokens))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(1)
            .with_n_threads(setup.threads)
            .with_n_threads_batch(setup.threads)
            // A sliding-window model (Gemma 3) keeps every position, not just the window: then
            // dropping the tail of the cache and recomputing from any position is exact.
            .with_swa_full(true);
        let ctx = model.new_context(backend()?, params).map_err(|e| {
            LocalError::Engine(format!(
                "llama.cpp cannot make a context of {} tokens: {e}",
                setup.n_ctx
            ))
        })?;
        let n_vocab = usize::try_from(model.n_vocab())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                LocalError::bad_file(
                    &setup.path,
                    format!("llama.cpp reads a vocabulary of {} tokens", model.n_vocab()),
                )
            })?;
        Ok(Context {
            ctx,
            batch: LlamaBatch::new(setup.n_batch, 1),
            n_batch: setup.n_batch,
            n_ctx: setup.n_ctx,
            n_vocab,
            cached: 0,
        })
    }

    fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>, LocalError> {
        let Some(last_chunk_len) = ids.len().checked_sub(1).map(|l| l % self.n_batch + 1) else {
            return Err(LocalError::Invalid(
                "llama.cpp forward pass over no tokens".into(),
            ));
        };
        if pos > self.cached {
            return Err(LocalError::Engine(format!(
                "llama.cpp forward pass at position {pos}, but only {} positions are cached",
                self.cached
            )));
        }
        let end = pos + ids.len();
        if end > self.n_ctx {
            return Err(LocalError::Invalid(format!(
                "{end} tokens do not fit the llama.cpp context of {} tokens",
                self.n_ctx
            )));
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.n_vocab) {
            return Err(LocalError::Invalid(format!(
                "token id {id} is outside the model's vocabulary of {} tokens",
                self.n_vocab
            )));
        }
        if pos < self.cached {
            self.truncate(pos)?;
        }
        match self.decode(ids, pos) {
            Ok(()) => {
                let last = i32::try_from(last_chunk_len - 1).unwrap_or(i32::MAX);
                Ok(self.ctx.get_logits_ith(last).to_vec())
            }
            Err(e) => {
                // What a failed call left in the cache is unknown: forget it all.
                let _ = self.truncate(0);
                self.cached = 0;
                Err(e)
            }
        }
    }

    /// Drops every cached position >= `pos`.
    fn truncate(&mut self, pos: usize) -> Result<(), LocalError> {
        let from = u32::try_from(pos).unwrap_or(u32::MAX);
        let removed = self
            .ctx
            .clear_kv_cache_seq(Some(SEQ as u32), Some(from), None)
            .map_err(|e| LocalError::Engine(format!("llama.cpp KV cache: {e}")))?;
        if !removed {
            return Err(LocalError::Engine(format!(
                "llama.cpp cannot drop the cached positions from {pos} on for this model"
            )));
        }
        self.cached = pos;
        Ok(())
    }

    /// Runs `ids` from `pos` in chunks of `n_batch`, logits for the very last id only.
    fn decode(&mut self, ids: &[u32], pos: usize) -> Result<(), LocalError> {
        let chunks = ids.len().div_ceil(self.n_batch);
        for (i, chunk) in ids.chunks(self.n_batch).enumerate() {
            let start = pos + i * self.n_batch;
            self.batch.clear();
            for (j, &id) in chunk.iter().enumerate() {
                let logits = i + 1 == chunks && j + 1 == chunk.len();
                let at = i32::try_from(start + j).map_err(|_| {
                    LocalError::Invalid(format!("position {} is too large", start + j))
                })?;
                self.batch
                    .add(LlamaToken(id as i32), at, &[SEQ], logits)
                    .map_err(|e| LocalError::Engine(format!("llama.cpp batch: {e}")))?;
            }
            self.ctx.decode(&mut self.batch).map_err(|e| {
                LocalError::Engine(format!(
                    "llama.cpp forward pass over positions {start}..{}: {e}",
                    start + chunk.len()
                ))
            })?;
            self.cached = start + chunk.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Against llama.cpp's own greedy run of the Part 1 prompt, when SmolLM2 is installed
    //! (`tokenpace model pull smollm2`); without it the tests pass with "skipped", unless
    //! TOKENPACE_REQUIRE_MODEL=1 (scripts/test.sh), which makes a missing model a failure.

    use super::*;
    use crate::catalog::{self, ResolvedModel};

    /// llama.cpp's greedy continuation (Q4_1 file, 1 thread) of the fixture's ChatML prompt,
    /// as in tests/it/engine.rs: "Machine learning is a subset of artificial intelligence that
    /// leverages algorithms to make predictions or decisions based on".
    const LLAMA_CPP_GREEDY: [u32; 19] = [
        29968, 1380, 314, 253, 17769, 282, 6416, 5290, 338, 425, 11942, 7688, 288, 919, 10123, 355,
        3884, 1552, 335,
    ];

    /// The Q8_0 file follows the Q4_1 run until a near-tie at the 14th token ("make" vs
    /// "enable"): "... leverages algorithms to", the prefix tests/it/engine.rs asserts.
    const Q8_0_PREFIX: usize = 13;

    fn smollm2() -> Option<ResolvedModel> {
        match catalog::resolve("smollm2", None) {
            Ok(model) => Some(model),
            Err(e) => {
                assert!(
                    std::env::var("TOKENPACE_REQUIRE_MODEL").as_deref() != Ok("1"),
                    "TOKENPACE_REQUIRE_MODEL=1 but smollm2 cannot be used: {e}"
                );
                eprintln!("skipped: {e}");
                None
            }
        }
    }

    /// The ids of the fixture's ChatML case (the Part 1 prompt, made by llama.cpp's tokenizer).
    fn chat_prompt() -> Vec<u32> {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/smollm2_llama_cpp_ids.json"))
                .unwrap();
        let chat = cases
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["parse_special"] == true)
            .unwrap();
        chat["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| u32::try_from(v.as_u64().unwrap()).unwrap())
            .collect()
    }

    fn argmax(logits: &[f32]) -> u32 {
        let (i, _) = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        u32::try_from(i).unwrap()
    }

    /// Greedy ids after `prompt`: the prompt in one call, then one call per token.
    fn greedy(net: &mut LlamaCppNet, prompt: &[u32], n: usize) -> Vec<u32> {
        let mut next = argmax(&net.forward(prompt, 0).unwrap());
        let mut out = vec![next];
        while out.len() < n {
            let pos = prompt.len() + out.len() - 1;
            next = argmax(&net.forward(&[next], pos).unwrap());
            out.push(next);
        }
        out
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn greedy_run_equals_llama_cpps_own() {
        // The same weights as the reference run: the original Q4_1 file.
        let Some(model) = smollm2() else { return };
        let mut net = LlamaCppNet::load(&model.original_path, 2, 256).unwrap();
        let prompt = chat_prompt();
        let logits = net.forward(&prompt, 0).unwrap();
        assert_eq!(logits.len(), 49152, "SmolLM2's vocabulary");
        assert_eq!(greedy(&mut net, &prompt, 19), LLAMA_CPP_GREEDY);
    }

    #[test]
    fn q8_0_prefix_cache_rewrites_chunks_and_errors() {
        let Some(model) = smollm2() else { return };
        let prompt = chat_prompt();
        let mut net = LlamaCppNet::load(&model.engine_path, 2, 256).unwrap();
        let cold = net.forward(&prompt, 0).unwrap();
        let ids = greedy(&mut net, &prompt, 16);
        assert_eq!(ids[..Q8_0_PREFIX], LLAMA_CPP_GREEDY[..Q8_0_PREFIX]);

        // Re-running a suffix of the prompt (positions >= 20 dropped, generated ones included)
        // gives the cold run's logits; so does starting over at 0 after a longer sequence.
        let again = net.forward(&prompt[20..], 20).unwrap();
        assert_eq!(argmax(&again), argmax(&cold));
        assert!(
            max_diff(&again, &cold) < 1e-3,
            "{}",
            max_diff(&again, &cold)
        );
        let last = net
            .forward(&prompt[prompt.len() - 1..], prompt.len() - 1)
            .unwrap();
        assert_eq!(argmax(&last), argmax(&cold));
        assert!(max_diff(&last, &cold) < 1e-3, "{}", max_diff(&last, &cold));
        let restart = net.forward(&prompt, 0).unwrap();
        assert_eq!(argmax(&restart), argmax(&cold));
        assert!(
            max_diff(&restart, &cold) < 1e-3,
            "{}",
            max_diff(&restart, &cold)
        );

        // Refused, and the net still works afterwards.
        let e = net.forward(&[1], prompt.len() + 5).unwrap_err();
        assert!(e.to_string().contains("cached"), "{e}");
        let e = net.forward(&[], 0).unwrap_err();
        assert!(e.to_string().contains("no tokens"), "{e}");
        let e = net.forward(&[0; 250], 10).unwrap_err();
        assert!(e.to_string().contains("context of 256"), "{e}");
        let e = net.forward(&[49152], 0).unwrap_err();
        assert!(e.to_string().contains("vocabulary"), "{e}");
        assert_eq!(argmax(&net.forward(&prompt, 0).unwrap()), argmax(&cold));
        drop(net);

        // A prompt longer than the batch goes in chunks: 38 ids in batches of 8, then a
        // 10-token rewrite from position 25 spanning two chunks.
        let mut chunked = LlamaCppNet::open(&model.engine_path, 2, 256, 8).unwrap();
        let logits = chunked.forward(&prompt, 0).unwrap();
        assert_eq!(argmax(&logits), argmax(&cold));
        assert!(
            max_diff(&logits, &cold) < 1e-2,
            "{}",
            max_diff(&logits, &cold)
        );
        let rewrite = chunked.forward(&prompt[25..35], 25).unwrap();
        let cold_35 = chunked.forward(&prompt[..35], 0).unwrap();
        assert_eq!(argmax(&rewrite), argmax(&cold_35));
        let chunked_ids = greedy(&mut chunked, &prompt, 16);
        assert_eq!(chunked_ids[..Q8_0_PREFIX], ids[..Q8_0_PREFIX]);

        // Not a model: an error, not a crash.
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.gguf");
        std::fs::write(&bad, b"GGUF but not really").unwrap();
        let e = LlamaCppNet::load(&bad, 1, 64).unwrap_err();
        assert!(e.to_string().contains("llama.cpp cannot load it"), "{e}");
        let e = LlamaCppNet::load(&dir.path().join("missing.gguf"), 1, 64).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}

//! The `llama` cargo feature: llama.cpp (built from source by `llama-cpp-sys-2`) as the engine.
//! The forward pass itself is tested next to it (unit tests in `src/llama_cpp.rs`: greedy
//! tokens, KV-cache rewrites, chunked prompts); here, the engine through the public API with
//! tokenpace's own tokenizer and sampling: the same greedy text as the references, for SmolLM2
//! and (when installed) Gemma 3, and what the build must contain.

#![cfg(feature = "llama")]

use llama_cpp_2::{LlamaBackendDeviceType, list_llama_ggml_backend_devices};
use tokenpace_local::engine::{Control, Engine, GenParams, LoadOptions, Model};

use super::engine::{Q8_0_GREEDY_PREFIX, part1};
use super::server::smollm2;

#[test]
fn the_cpu_backend_is_built_in() {
    // `llama-cpp-2` comes without default features (no OpenMP): the CPU backend must remain,
    // and no GPU backend is built.
    let devices = list_llama_ggml_backend_devices();
    assert!(
        devices
            .iter()
            .any(|d| d.device_type == LlamaBackendDeviceType::Cpu),
        "no CPU device in {devices:?}"
    );
    assert!(
        devices.iter().all(|d| matches!(
            d.device_type,
            LlamaBackendDeviceType::Cpu | LlamaBackendDeviceType::Accelerator
        )),
        "{devices:?}"
    );
}

#[test]
fn llama_cpp_is_the_default_engine_of_this_build() {
    assert_eq!(Engine::default_for_build(), Engine::LlamaCpp);
    assert_eq!(Engine::available(), &[Engine::Candle, Engine::LlamaCpp]);
    assert_eq!("llama-cpp".parse::<Engine>(), Ok(Engine::LlamaCpp));
}

#[test]
fn smollm2_greedy_on_llama_cpp_equals_the_reference_and_reuses_prefixes() {
    let Some(resolved) = smollm2() else { return };
    let mut model = Model::load(
        &resolved.engine_path,
        &resolved.name,
        &LoadOptions {
            engine: Engine::LlamaCpp,
            threads: 2,
            expected_sha256: resolved.expected_sha256.clone(),
            prefix_reuse: true,
        },
    )
    .unwrap();
    assert_eq!(model.engine(), Engine::LlamaCpp);
    let prompt = part1(&model);
    let params = GenParams {
        max_tokens: 24,
        temperature: 0.0,
        ..GenParams::default()
    };
    let cold = model
        .generate(&prompt, &params, &mut |_| Control::Continue)
        .unwrap();
    assert!(
        cold.text.starts_with(Q8_0_GREEDY_PREFIX),
        "llama.cpp greedy text {:?} lost the prefix {Q8_0_GREEDY_PREFIX:?}",
        cold.text
    );
    assert_eq!(cold.prompt_tokens as usize, prompt.len());
    assert_eq!(cold.cached_tokens, 0);
    // With exactly the prompt in the cache (one token: the last one is never run), a longer
    // prompt that starts with it reuses it and gives the text a cold run gives.
    let one = GenParams {
        max_tokens: 1,
        ..params.clone()
    };
    model
        .generate(&prompt, &one, &mut |_| Control::Continue)
        .unwrap();
    let mut longer = prompt.clone();
    longer.extend(model.prompter().text_prompt(" Then give an example."));
    let reused = model
        .generate(&longer, &params, &mut |_| Control::Continue)
        .unwrap();
    assert_eq!(reused.cached_tokens as usize, prompt.len());
    // The cache now holds more than `longer`: the same prompt again runs cold.
    let cold_longer = model
        .generate(&longer, &params, &mut |_| Control::Continue)
        .unwrap();
    assert_eq!(cold_longer.cached_tokens, 0);
    assert_eq!(reused.text, cold_longer.text);
}

#[test]
fn gemma3_greedy_on_llama_cpp_equals_the_reference() {
    super::gemma::check_engine(Engine::LlamaCpp);
}

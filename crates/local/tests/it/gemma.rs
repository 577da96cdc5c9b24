//! Gemma 3 270M on the built-in engine against llama.cpp: greedy generation from fixed prompt
//! ids starts with the tokens llama.cpp generates on the same file
//! (`tests/fixtures/gemma3_llama_cpp_greedy.json`, made with llama.cpp's own forward pass;
//! each case asserts the tokens up to the first near-tie, where engines may part ways), including
//! a prompt longer than the 512-position sliding window. Prefix reuse past the window gives the
//! same text as a cold run.
//!
//! Gemma is not pulled by `scripts/test.sh` (its licence must be accepted by the user), so these
//! tests skip when it is absent unless TOKENPACE_REQUIRE_GEMMA=1.

use serde_json::Value;
use tokenpace_local::catalog::ResolvedModel;
use tokenpace_local::engine::{Control, Engine, GenParams, LoadOptions, Model};

/// A gap between the top two logits below this is a near-tie: the assertion stops before it.
const NEAR_TIE: f64 = 0.1;

/// Gemma 3 270M if installed (TOKENPACE_REQUIRE_GEMMA=1 makes its absence a failure).
pub fn gemma3() -> Option<ResolvedModel> {
    super::server::installed("gemma3-270m", "TOKENPACE_REQUIRE_GEMMA")
}

/// Loads Gemma with prefix reuse on. Reuse applies only when a prompt extends the previous
/// one; the fixture's prompts do not, so the greedy checks run cold either way.
fn load(resolved: &ResolvedModel, engine: Engine) -> Model {
    Model::load(
        &resolved.engine_path,
        &resolved.name,
        &LoadOptions {
            engine,
            threads: 2,
            expected_sha256: resolved.expected_sha256.clone(),
            prefix_reuse: true,
        },
    )
    .unwrap()
}

fn cases() -> Vec<Value> {
    let text = include_str!("../fixtures/gemma3_llama_cpp_greedy.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    fixture["cases"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn greedy(model: &mut Model, prompt: &[u32], max_tokens: u32) -> String {
    let params = GenParams {
        max_tokens,
        temperature: 0.0,
        ..GenParams::default()
    };
    model
        .generate(prompt, &params, &mut |_| Control::Continue)
        .unwrap()
        .text
}

/// One test per engine, so the model (a few seconds to load) loads once.
#[test]
fn greedy_generation_follows_llama_cpp_and_prefix_reuse_matches_cold() {
    check_engine(Engine::Candle);
}

/// The greedy fixture and prefix reuse past the window on `engine`.
pub fn check_engine(engine: Engine) {
    let Some(resolved) = gemma3() else { return };
    let mut model = load(&resolved, engine);
    let prompter = model.prompter();
    for case in cases() {
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["greedy"]);
        let margins: Vec<f64> = case["margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        let stable = margins
            .iter()
            .position(|&m| m < NEAR_TIE)
            .unwrap_or(margins.len());
        assert!(
            stable >= 5,
            "the fixture's case has too short a stable prefix"
        );
        let want = prompter.tokenizer().decode(&expected[..stable]);
        let got = greedy(&mut model, &prompt, expected.len() as u32);
        assert!(
            got.starts_with(&want),
            "prompt {:?} ({} tokens):\n  llama.cpp: {want:?}\n  ours:      {got:?}",
            case["prompt"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(60)
                .collect::<String>(),
            prompt.len()
        );
    }
    check_prefix_reuse_past_the_window(&mut model);
}

/// Prefix reuse past the window: a cold run of the long prompt, then its first 600 positions,
/// then the whole prompt again reusing those 600 (keys on both sides of the 512-position
/// window) must give the same text as the cold run.
fn check_prefix_reuse_past_the_window(model: &mut Model) {
    let long = cases()
        .into_iter()
        .map(|c| ids(&c["prompt_ids"]))
        .max_by_key(Vec::len)
        .unwrap();
    assert!(
        long.len() > 600,
        "the fixture needs a prompt past the window"
    );
    let cold = greedy(model, &long, 8);
    greedy(model, &long[..600], 1);
    let reused = greedy(model, &long, 8);
    assert_eq!(reused, cold);
}

//! The GGUF tokenizers against llama.cpp, without loading any weights: on Gemma 3 270M's
//! SentencePiece vocabulary the prompt ids, the end-of-generation ids and the token pieces
//! equal llama.cpp's for the same file (`tests/fixtures/gemma3_llama_cpp_ids.json`, made with
//! llama.cpp's own tokenizer; how is recorded in the fixture). SmolLM2's BPE prompt ids are
//! checked against its fixture in `engine.rs`; its end-of-generation ids here.
//!
//! Gemma is not pulled by `scripts/test.sh`, so its test prints "skipped: ..." and passes when
//! it is absent (TOKENPACE_REQUIRE_MODEL does not change that), unless
//! TOKENPACE_REQUIRE_GEMMA=1 makes a missing Gemma a failure. The SmolLM2 test skips like the
//! other SmolLM2 tests (a failure under TOKENPACE_REQUIRE_MODEL=1).

use serde_json::Value;
use tokenpace_local::tokenizer::Tokenizer;

use super::gemma::gemma3;
use super::server::smollm2;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn gemma3_tokenizer_equals_llama_cpp_fixture() {
    let Some(resolved) = gemma3() else { return };
    let fixture: Value =
        serde_json::from_str(include_str!("../fixtures/gemma3_llama_cpp_ids.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    // The engine's converted file and the original carry the same tokenizer.
    for path in [&resolved.engine_path, &resolved.original_path] {
        let content = tokenpace_local::verify::check(path, None).unwrap();
        let t = Tokenizer::from_gguf(&content).unwrap();
        assert_eq!(t.len(), 262_144);
        assert_eq!(
            t.pre_tokenizer(),
            None,
            "SentencePiece has no pre-tokenizer"
        );
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let special = case["parse_special"].as_bool().unwrap();
            let got = t.encode(text, special);
            assert_eq!(
                got,
                ids(&case["ids"]),
                "ids of {text:?} (parse_special {special}) from {}",
                path.display()
            );
            // And back (control tokens aside; a literal '▁' comes back as a space).
            if !special && !text.contains('\u{2581}') {
                assert_eq!(t.decode(&got), text);
            }
        }
        assert_eq!(
            t.end_of_generation(),
            ids(&fixture["end_of_generation"]),
            "end-of-generation ids"
        );
        for p in fixture["pieces_hex"].as_array().unwrap() {
            let id = p["id"].as_u64().unwrap() as u32;
            assert_eq!(
                t.piece(id, false),
                hex(p["piece"].as_str().unwrap()),
                "piece of {id}"
            );
            assert_eq!(
                t.piece(id, true),
                hex(p["piece_special"].as_str().unwrap()),
                "piece of {id} with special tokens"
            );
        }
    }
}

#[test]
fn smollm2_end_of_generation_equals_llama_cpp() {
    let Some(resolved) = smollm2() else { return };
    let content = tokenpace_local::verify::check(&resolved.engine_path, None).unwrap();
    let t = Tokenizer::from_gguf(&content).unwrap();
    // llama_vocab_is_eog (llama-cpp-python 0.3.36): <|endoftext|>, <|im_end|> (EOS) and
    // <reponame>, which llama.cpp takes as the fill-in-the-middle repo token.
    assert_eq!(t.end_of_generation(), [0, 2, 4]);
    assert_eq!(
        t.pre_tokenizer(),
        Some(tokenpace_local::tokenizer::PreTokenizer::DigitsThenGpt2)
    );
}

//! `verify::check` on good and bad files: every failure is a `BadModelFile` naming the file,
//! the problem and the fix, and nothing panics.

use std::path::{Path, PathBuf};

use tokenpace_local::LocalError;
use tokenpace_local::verify;

use crate::fixture;

/// The tiny model inside `<tmp>/smollm2/` (a catalog model's directory, so the fix names its
/// pull command).
fn tiny_in_model_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("smollm2");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.gguf");
    fixture::write_tiny_gguf(&path);
    path
}

fn problem(err: LocalError) -> (PathBuf, String) {
    match err {
        LocalError::BadModelFile { path, problem } => (path, problem),
        other => panic!("expected BadModelFile, got {other:?}"),
    }
}

#[test]
fn a_complete_file_passes_with_and_without_its_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_in_model_dir(tmp.path());
    let content = verify::check(&path, None).unwrap();
    assert_eq!(content.tensor_infos.len(), 6);
    let sha = verify::sha256_file(&path).unwrap();
    verify::check(&path, Some(&sha)).unwrap();
    verify::check(&path, Some(&sha.to_uppercase())).unwrap();
}

#[test]
fn truncation_is_reported_as_truncated_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_in_model_dir(tmp.path());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let (file, text) = problem(verify::check(&path, None).unwrap_err());
    assert_eq!(file, path);
    assert!(text.contains("is truncated"), "{text}");
    assert!(text.contains("bytes missing"), "{text}");
    assert!(
        text.contains("tokenpace model pull smollm2 --force"),
        "{text}"
    );
}

#[test]
fn every_truncated_prefix_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tiny_in_model_dir(tmp.path());
    let bytes = std::fs::read(&full).unwrap();
    let content = verify::check(&full, None).unwrap();
    // The data ends before the file does: the writer pads the last tensor to 32 bytes.
    let data_end = content
        .tensor_infos
        .values()
        .map(|info| {
            let blocks = info.shape.elem_count() / info.ggml_dtype.block_size();
            content.tensor_data_offset as usize
                + info.offset as usize
                + blocks * info.ggml_dtype.type_size()
        })
        .max()
        .unwrap();
    assert!(data_end < bytes.len());
    let cut = tmp.path().join("smollm2").join("cut.gguf");
    let header = content.tensor_data_offset as usize;
    let lengths = (0..header).step_by(3).chain((header..data_end).step_by(11));
    for len in lengths.chain([data_end - 1]) {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let result = verify::check(&cut, None);
        assert!(
            result.is_err(),
            "a prefix of {len} of {} bytes passed",
            bytes.len()
        );
        let (_, text) = problem(result.unwrap_err());
        assert!(text.contains("--force"), "at {len} bytes: {text}");
    }
    std::fs::write(&cut, &bytes[..data_end]).unwrap();
    verify::check(&cut, None).unwrap();
    let (_, header) = {
        std::fs::write(&cut, &bytes[..40]).unwrap();
        problem(verify::check(&cut, None).unwrap_err())
    };
    assert!(
        header.contains("corrupt or truncated GGUF header"),
        "{header}"
    );
}

#[test]
fn a_bad_magic_says_it_is_not_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_in_model_dir(tmp.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..4].copy_from_slice(b"GGML");
    std::fs::write(&path, &bytes).unwrap();
    let (_, text) = problem(verify::check(&path, None).unwrap_err());
    assert!(text.contains("is not a GGUF file"), "{text}");
    assert!(text.contains("47 47 4d 4c"), "{text}");

    std::fs::write(&path, b"").unwrap();
    let (_, text) = problem(verify::check(&path, None).unwrap_err());
    assert!(text.contains("the file is empty"), "{text}");

    let html = tmp.path().join("page.gguf");
    std::fs::write(&html, b"<!doctype html><html></html>").unwrap();
    let (_, text) = problem(verify::check(&html, None).unwrap_err());
    assert!(text.contains("is not a GGUF file"), "{text}");
    assert!(text.contains("complete copy"), "{text}");
}

#[test]
fn a_wrong_checksum_names_both_sums() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_in_model_dir(tmp.path());
    let actual = verify::sha256_file(&path).unwrap();
    let wrong = "ab".repeat(32);
    let (_, text) = problem(verify::check(&path, Some(&wrong)).unwrap_err());
    assert!(text.contains(&actual) && text.contains(&wrong), "{text}");
    assert!(
        text.contains("tokenpace model pull smollm2 --force"),
        "{text}"
    );
}

#[test]
fn crafted_headers_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("crafted.gguf");
    // GGUF v3, one tensor, no metadata; the tensor: name "t", 4 dims, F32, offset 0.
    let header = |dims: [u64; 4], dtype: u32, offset: u64| {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b't');
        b.extend_from_slice(&4u32.to_le_bytes());
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&dtype.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        b.resize(b.len() + 64, 0);
        b
    };
    // Dimensions whose product overflows 64 bits.
    std::fs::write(&path, header([1 << 40; 4], 0, 0)).unwrap();
    let (_, text) = problem(verify::check(&path, None).unwrap_err());
    assert!(text.contains("impossible shape"), "{text}");
    // An offset at the end of the address space.
    std::fs::write(&path, header([1; 4], 0, u64::MAX - 2)).unwrap();
    let (_, text) = problem(verify::check(&path, None).unwrap_err());
    assert!(text.contains("impossible offset"), "{text}");
    // An unknown tensor type.
    std::fs::write(&path, header([1; 4], 999, 0)).unwrap();
    let (_, text) = problem(verify::check(&path, None).unwrap_err());
    assert!(text.contains("corrupt or truncated GGUF header"), "{text}");
    // A Q4_1 tensor of 3 elements (not a whole block).
    std::fs::write(&path, header([3, 1, 1, 1], 3, 0)).unwrap();
    let (_, text) = problem(verify::check(&path, None).unwrap_err());
    assert!(text.contains("blocks"), "{text}");
}

#[test]
fn a_missing_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("absent.gguf");
    let (file, text) = problem(verify::check(&path, None).unwrap_err());
    assert_eq!(file, path);
    assert!(text.contains("cannot be opened"), "{text}");
}

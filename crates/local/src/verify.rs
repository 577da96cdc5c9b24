//! Checks a GGUF file before anything loads it, so that a corrupt, truncated or substituted
//! file is a clear error naming the file, the problem and the fix, never a panic or a read
//! past the end deep inside the engine.
//!
//! Owns: the magic check, reading the header with candle (which bounds-checks its own lengths
//! against the file size), the data extent of every tensor, and streamed SHA-256. It does not
//! judge whether the architecture is one the engine supports; that is the engine's call.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use candle_core::quantized::gguf_file;
use sha2::{Digest, Sha256};

use crate::LocalError;
use crate::catalog;

/// The buffer of the streamed checksum.
const HASH_BUFFER: usize = 1 << 20;

/// Checks that `path` is a complete GGUF file: the magic, a readable header, every tensor's
/// data inside the file, and, when `expected_sha256` is given, its SHA-256 (hex, any case).
/// Returns the parsed header.
pub fn check(path: &Path, expected_sha256: Option<&str>) -> Result<gguf_file::Content, LocalError> {
    let mut file = File::open(path).map_err(|e| {
        LocalError::bad_file(path, format!("cannot be opened ({e}); {}", fix(path)))
    })?;
    let file_size = file.metadata().map_err(|e| LocalError::io(path, e))?.len();

    let mut magic = [0u8; 4];
    let got = read_up_to(&mut file, &mut magic).map_err(|e| LocalError::io(path, e))?;
    if got < magic.len() || &magic != b"GGUF" {
        return Err(LocalError::bad_file(
            path,
            format!(
                "is not a GGUF file (it starts with {}, a GGUF file with the bytes 'GGUF'); {}",
                describe_start(&magic[..got]),
                fix(path)
            ),
        ));
    }

    let mut reader = BufReader::new(file);
    let seek = std::io::Seek::rewind(&mut reader);
    seek.map_err(|e| LocalError::io(path, e))?;
    let content = gguf_file::Content::read(&mut reader).map_err(|e| {
        LocalError::bad_file(
            path,
            format!(
                "has a corrupt or truncated GGUF header ({e}); {}",
                fix(path)
            ),
        )
    })?;
    check_extents(&content, file_size)
        .map_err(|problem| LocalError::bad_file(path, format!("{problem}; {}", fix(path))))?;

    if let Some(expected) = expected_sha256 {
        let actual = sha256_file(path)?;
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(LocalError::bad_file(
                path,
                format!(
                    "has SHA-256 {actual}, expected {}: the file is corrupt or was changed; {}",
                    expected.trim().to_ascii_lowercase(),
                    fix(path)
                ),
            ));
        }
    }
    Ok(content)
}

/// The SHA-256 of a file, lowercase hex, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String, LocalError> {
    let mut file = File::open(path).map_err(|e| LocalError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; HASH_BUFFER];
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LocalError::io(path, e)),
        };
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Every tensor's bytes must lie inside the file. Candle checks lengths while reading the
/// header, but the tensor data comes after it and is only read at load time, where a short
/// file would fail late (or, through a memory map, fault): check it here, with arithmetic
/// that cannot overflow on crafted dimensions.
fn check_extents(content: &gguf_file::Content, file_size: u64) -> Result<(), String> {
    let mut tensors: Vec<_> = content.tensor_infos.iter().collect();
    tensors.sort_by_key(|(name, info)| (info.offset, name.as_str()));
    let mut worst: Option<(u64, &str)> = None;
    for (name, info) in &tensors {
        let elems = info
            .shape
            .dims()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| format!("tensor '{name}' has an impossible shape {:?}", info.shape))?;
        let block = info.ggml_dtype.block_size() as u64;
        if block == 0 || elems % block != 0 {
            return Err(format!(
                "tensor '{name}' has {elems} elements, not a whole number of {:?} blocks of {block}",
                info.ggml_dtype
            ));
        }
        let end = (elems / block)
            .checked_mul(info.ggml_dtype.type_size() as u64)
            .and_then(|bytes| {
                content
                    .tensor_data_offset
                    .checked_add(info.offset)?
                    .checked_add(bytes)
            })
            .ok_or_else(|| format!("tensor '{name}' has an impossible offset or size"))?;
        if end > file_size && worst.is_none_or(|(e, _)| end > e) {
            worst = Some((end, name.as_str()));
        }
    }
    match worst {
        Some((end, name)) => Err(format!(
            "is truncated: it has {file_size} bytes but tensor '{name}' ends at byte {end} \
({} bytes missing; the download or copy was cut short)",
            end - file_size
        )),
        None => Ok(()),
    }
}

/// The fix for a bad file: pull again when it belongs to a catalog model's directory.
fn fix(path: &Path) -> String {
    let model = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .and_then(catalog::entry);
    match model {
        Some(entry) => format!("fix: run `{} --force`", entry.pull_command()),
        None => "fix: replace it with a complete copy of the GGUF file".to_string(),
    }
}

fn describe_start(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing (the file is empty)".to_string();
    }
    let shown: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("the bytes {}", shown.join(" "))
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_complete() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn sha256_of_a_known_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_fix_names_the_pull_command_inside_a_model_directory() {
        let fix_text = fix(Path::new("/cache/smollm2/SmolLM2.gguf"));
        assert!(
            fix_text.contains("tokenpace model pull smollm2 --force"),
            "{fix_text}"
        );
        let fix_text = fix(Path::new("/cache/gemma3-270m/g.gguf"));
        assert!(
            fix_text.contains("tokenpace model pull gemma3-270m --accept-license --force"),
            "{fix_text}"
        );
        assert!(fix(Path::new("/tmp/x.gguf")).contains("complete copy"));
    }

    #[test]
    fn garbage_of_every_length_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.gguf");
        // A GGUF v3 header declaring absurd counts, then progressively longer tails of
        // pseudo-random bytes: each prefix must be rejected cleanly.
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..512 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push((state >> 24) as u8);
        }
        for len in 0..bytes.len() {
            std::fs::write(&path, &bytes[..len]).unwrap();
            let err = check(&path, None).unwrap_err();
            assert!(matches!(err, LocalError::BadModelFile { .. }), "{err:?}");
        }
    }
}

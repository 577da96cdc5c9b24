//! The tokenizer a GGUF file carries: GPT-2-style byte-level BPE (`tokenizer.ggml.model =
//! "gpt2"`) with the vocabulary, merges, token types and special ids from the file's metadata.
//!
//! Text becomes ids in three steps, as llama.cpp does it:
//! 1. special tokens (control and user-defined, e.g. `<|im_start|>`) are cut out of the text
//!    first when the caller asks for them to be parsed (chat templates do);
//! 2. the rest is pre-tokenized into words by the pre-tokenizer the file names in
//!    `tokenizer.ggml.pre` (GPT-2's pattern, with single digits split off first for `smollm`);
//! 3. each word's bytes, mapped to GPT-2's printable byte alphabet, are merged pairwise by merge
//!    rank until no ranked pair is left.
//!
//! The pre-tokenizer is a hand-written scanner of GPT-2's pattern rather than a regex: the
//! pattern needs a look-ahead (`\s+(?!\S)`) that the `regex` crate does not support, and the
//! scanner is a few dozen lines. Letters are `char::is_alphabetic` minus numerics, numbers are
//! `char::is_numeric` (exactly `\p{N}`), spaces `char::is_whitespace` (exactly `\s`); the only
//! difference from `\p{L}` is the handful of combining marks Unicode counts as alphabetic.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::LocalError;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// Which pre-tokenizer splits text into words before BPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's pattern (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`).
    Gpt2,
    /// Every digit on its own first, then GPT-2's pattern (SmolLM, StarCoder-style vocabularies).
    DigitsThenGpt2,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` value.
    pub fn from_gguf_name(name: &str) -> Result<Self, LocalError> {
        match name {
            "default" | "gpt2" | "gpt-2" => Ok(PreTokenizer::Gpt2),
            "smollm" | "codeshell" | "exaone" | "minerva-7b" | "starcoder" | "refact" => {
                Ok(PreTokenizer::DigitsThenGpt2)
            }
            other => Err(LocalError::Tokenizer(format!(
                "the model's pre-tokenizer '{other}' is not supported (supported: gpt2, smollm, starcoder); \
                 its prompts would get different token ids than the model was trained on"
            ))),
        }
    }
}

/// A byte-level BPE tokenizer loaded from GGUF metadata.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// id -> the bytes the token stands for (control tokens: their text).
    pieces: Vec<Vec<u8>>,
    /// id -> GGUF token type.
    types: Vec<i32>,
    /// Token text (in the byte alphabet) -> id.
    vocab: HashMap<String, u32>,
    /// (left, right) -> (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// byte -> id of its single-byte token.
    byte_ids: [Option<u32>; 256],
    /// Special tokens to cut out of text, longest first.
    specials: Vec<(String, u32)>,
    pre: PreTokenizer,
    bos: Option<u32>,
    add_bos: bool,
    eog: Vec<u32>,
}

/// GPT-2's map from bytes to printable characters: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes take the characters from U+0100 on, in byte order.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\u{FFFD}');
            next += 1;
            c
        };
    }
    table
}

fn string_array(content: &Content, key: &str) -> Result<Vec<String>, LocalError> {
    let value = content
        .metadata
        .get(key)
        .ok_or_else(|| LocalError::Tokenizer(format!("the GGUF file has no '{key}'")))?;
    let Value::Array(items) = value else {
        return Err(LocalError::Tokenizer(format!("'{key}' is not an array")));
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(LocalError::Tokenizer(format!("'{key}' holds a non-string"))),
        })
        .collect()
}

fn u32_value(content: &Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

fn bool_value(content: &Content, key: &str) -> Option<bool> {
    content.metadata.get(key).and_then(|v| v.to_bool().ok())
}

fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !c.is_numeric()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Other,
    Space,
}

fn class(c: char) -> Class {
    if c.is_whitespace() {
        Class::Space
    } else if c.is_numeric() {
        Class::Number
    } else if is_letter(c) {
        Class::Letter
    } else {
        Class::Other
    }
}

/// Splits `text` into GPT-2 words, pushing byte ranges.
fn gpt2_words(text: &str, out: &mut Vec<(usize, usize)>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_byte = text.len();
    let at = |i: usize| chars.get(i).map(|&(b, _)| b).unwrap_or(end_byte);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        // Contractions: 's 't 're 've 'm 'll 'd (case-sensitive, as in GPT-2).
        if c == '\'' {
            let rest = &text[chars[i].0 + 1..];
            let len = ["s", "t", "re", "ve", "m", "ll", "d"]
                .iter()
                .find(|s| rest.starts_with(*s))
                .map(|s| s.len());
            if let Some(len) = len {
                out.push((at(i), at(i) + 1 + len));
                i += 1 + len;
                continue;
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`.
        let (start, run_class) = if c == ' ' {
            match chars.get(i + 1).map(|&(_, n)| class(n)) {
                Some(k) if k != Class::Space => (i + 1, Some(k)),
                _ => (i, None),
            }
        } else {
            match class(c) {
                Class::Space => (i, None),
                k => (i, Some(k)),
            }
        };
        if let Some(k) = run_class {
            let mut j = start;
            while j < chars.len() && class(chars[j].1) == k {
                j += 1;
            }
            out.push((at(i), at(j)));
            i = j;
            continue;
        }
        // `\s+(?!\S)|\s+`: a run of spaces, leaving its last one to the next word when a
        // non-space follows and the run is longer than one.
        let mut j = i;
        while j < chars.len() && chars[j].1.is_whitespace() {
            j += 1;
        }
        if j < chars.len() && j - i >= 2 {
            j -= 1;
        }
        out.push((at(i), at(j)));
        i = j;
    }
}

impl PreTokenizer {
    /// The words of `text`, as byte ranges.
    pub fn words(self, text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        match self {
            PreTokenizer::Gpt2 => gpt2_words(text, &mut out),
            PreTokenizer::DigitsThenGpt2 => {
                let mut seg_start = 0;
                for (b, c) in text.char_indices() {
                    if c.is_numeric() {
                        let mut sub = Vec::new();
                        gpt2_words(&text[seg_start..b], &mut sub);
                        out.extend(sub.into_iter().map(|(s, e)| (s + seg_start, e + seg_start)));
                        out.push((b, b + c.len_utf8()));
                        seg_start = b + c.len_utf8();
                    }
                }
                let mut sub = Vec::new();
                gpt2_words(&text[seg_start..], &mut sub);
                out.extend(sub.into_iter().map(|(s, e)| (s + seg_start, e + seg_start)));
            }
        }
        out
    }
}

impl Tokenizer {
    /// Loads the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(content: &Content) -> Result<Self, LocalError> {
        let model = content
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if model != "gpt2" {
            return Err(LocalError::Tokenizer(format!(
                "the model's tokenizer is '{model}'; tokenpace's built-in engine reads GPT-2-style \
                 byte-level BPE tokenizers (tokenizer.ggml.model = \"gpt2\"), as SmolLM2's"
            )));
        }
        let pre_name = content
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "default".into());
        let pre = PreTokenizer::from_gguf_name(&pre_name)?;
        let tokens = string_array(content, "tokenizer.ggml.tokens")?;
        let merges_text = string_array(content, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(items)) => items.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            _ => vec![TYPE_NORMAL; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(LocalError::Tokenizer(format!(
                "the GGUF file has {} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let to_char = byte_to_char_table();
        let mut from_char: HashMap<char, u8> = HashMap::with_capacity(256);
        for (b, &c) in to_char.iter().enumerate() {
            from_char.insert(c, b as u8);
        }
        let mut vocab = HashMap::with_capacity(tokens.len());
        let mut pieces = Vec::with_capacity(tokens.len());
        let mut specials = Vec::new();
        for (id, (text, &ty)) in tokens.iter().zip(&types).enumerate() {
            let id = id as u32;
            vocab.insert(text.clone(), id);
            let bytes = match ty {
                TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNKNOWN => text.as_bytes().to_vec(),
                TYPE_BYTE => text.as_bytes().to_vec(),
                _ => {
                    // A normal token's characters are the byte alphabet; one outside it (some
                    // converters leave raw text) stands for its own UTF-8.
                    let mut out = Vec::with_capacity(text.len());
                    for c in text.chars() {
                        match from_char.get(&c) {
                            Some(&b) => out.push(b),
                            None => {
                                let mut buf = [0u8; 4];
                                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            }
                        }
                    }
                    out
                }
            };
            if matches!(ty, TYPE_CONTROL | TYPE_USER_DEFINED) && !text.is_empty() {
                specials.push((text.clone(), id));
            }
            pieces.push(bytes);
        }
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let mut byte_ids = [None; 256];
        for (b, c) in to_char.iter().enumerate() {
            byte_ids[b] = vocab.get(&c.to_string()).copied();
        }
        let mut merges = HashMap::with_capacity(merges_text.len());
        for (rank, m) in merges_text.iter().enumerate() {
            let Some((left, right)) = m.split_once(' ') else {
                return Err(LocalError::Tokenizer(format!(
                    "merge {rank} ('{m}') is not two tokens separated by a space"
                )));
            };
            let (Some(&l), Some(&r), Some(&merged)) = (
                vocab.get(left),
                vocab.get(right),
                vocab.get(&format!("{left}{right}")),
            ) else {
                // llama.cpp skips merges whose parts are not in the vocabulary too.
                continue;
            };
            merges.entry((l, r)).or_insert((rank as u32, merged));
        }
        let bos = u32_value(content, "tokenizer.ggml.bos_token_id");
        let eos = u32_value(content, "tokenizer.ggml.eos_token_id");
        let add_bos = bool_value(content, "tokenizer.ggml.add_bos_token").unwrap_or(false);
        // End-of-generation tokens: the declared EOS and EOT, and the well-known end markers
        // of chat formats that the file has (llama.cpp does the same by name).
        let mut eog: Vec<u32> = eos
            .into_iter()
            .chain(u32_value(content, "tokenizer.ggml.eot_token_id"))
            .collect();
        for name in [
            "<|im_end|>",
            "<|endoftext|>",
            "<|eot_id|>",
            "<end_of_turn>",
            "<|end|>",
            "</s>",
            "<eos>",
        ] {
            if let Some(&id) = vocab.get(name)
                && matches!(types[id as usize], TYPE_CONTROL | TYPE_USER_DEFINED)
                && !eog.contains(&id)
            {
                eog.push(id);
            }
        }
        Ok(Tokenizer {
            pieces,
            types,
            vocab,
            merges,
            byte_ids,
            specials,
            pre,
            bos,
            add_bos,
            eog,
        })
    }

    /// The vocabulary size.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether the vocabulary is empty (never, for a loaded model).
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The id of a token given by its text, if the vocabulary has it.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.get(text).copied()
    }

    /// Whether `id` ends generation (EOS, EOT, `<|im_end|>` and kin).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The end-of-generation ids.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.eog
    }

    /// The pre-tokenizer in use.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// Token ids of `text`. With `parse_special`, special tokens written in the text (such as
    /// `<|im_start|>`) become their ids, as for a rendered chat template; without it they are
    /// ordinary text. The BOS token is prepended when the model asks for it (`add_bos_token`).
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if self.add_bos
            && let Some(bos) = self.bos
        {
            ids.push(bos);
        }
        if !parse_special || self.specials.is_empty() {
            self.encode_plain(text, &mut ids);
            return ids;
        }
        let mut rest = text;
        while !rest.is_empty() {
            // The earliest special token in `rest` (longest at equal positions).
            let mut best: Option<(usize, &str, u32)> = None;
            for (s, id) in &self.specials {
                if let Some(pos) = rest.find(s.as_str())
                    && best.is_none_or(|(bp, bs, _)| pos < bp || (pos == bp && s.len() > bs.len()))
                {
                    best = Some((pos, s.as_str(), *id));
                }
            }
            match best {
                Some((pos, s, id)) => {
                    self.encode_plain(&rest[..pos], &mut ids);
                    ids.push(id);
                    rest = &rest[pos + s.len()..];
                }
                None => {
                    self.encode_plain(rest, &mut ids);
                    break;
                }
            }
        }
        ids
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) {
        for (start, end) in self.pre.words(text) {
            self.bpe(&text.as_bytes()[start..end], ids);
        }
    }

    /// Merges one word's bytes by rank.
    fn bpe(&self, word: &[u8], ids: &mut Vec<u32>) {
        let mut symbols: Vec<u32> = Vec::with_capacity(word.len());
        for &b in word {
            match self.byte_ids[b as usize] {
                Some(id) => symbols.push(id),
                // A vocabulary without this byte (never for GPT-2 vocabularies): fall back to
                // the unknown token, as llama.cpp does.
                None => symbols.push(0),
            }
        }
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..symbols.len().saturating_sub(1) {
                if let Some(&(rank, merged)) = self.merges.get(&(symbols[i], symbols[i + 1]))
                    && best.is_none_or(|(r, _, _)| rank < r)
                {
                    best = Some((rank, i, merged));
                }
            }
            let Some((_, i, merged)) = best else { break };
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
        ids.extend_from_slice(&symbols);
    }

    /// The bytes token `id` stands for. Control tokens give nothing unless `special` is set
    /// (as llama.cpp renders them); an unknown id gives nothing.
    pub fn piece(&self, id: u32, special: bool) -> &[u8] {
        let Some(bytes) = self.pieces.get(id as usize) else {
            return &[];
        };
        if !special && self.types.get(id as usize) == Some(&TYPE_CONTROL) {
            return &[];
        }
        bytes
    }

    /// Decodes ids to text (invalid UTF-8 is replaced), control tokens omitted.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.piece(id, false));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Turns a stream of token bytes into text pieces that never split a UTF-8 character.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds a token's bytes; returns the text that is complete so far.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_owned();
                self.pending.clear();
                out
            }
            Err(e) => {
                let valid = e.valid_up_to();
                if e.error_len().is_some() {
                    // Bytes that can never become valid: replace them, keep going.
                    let out = String::from_utf8_lossy(&self.pending).into_owned();
                    self.pending.clear();
                    return out;
                }
                // An incomplete character at the end: hold it for the next token.
                let out = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                self.pending.drain(..valid);
                out
            }
        }
    }

    /// What is left at the end (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(p: PreTokenizer, s: &str) -> Vec<&str> {
        p.words(s).into_iter().map(|(a, b)| &s[a..b]).collect()
    }

    #[test]
    fn gpt2_pattern_splits_like_the_regex() {
        let g = PreTokenizer::Gpt2;
        assert_eq!(
            words(g, "Hello world, it's 2024!"),
            ["Hello", " world", ",", " it", "'s", " 2024", "!"]
        );
        // A run of spaces leaves its last space to the next word.
        assert_eq!(words(g, "a   b"), ["a", "  ", " b"]);
        // Trailing spaces stay together; a single newline before a word is its own word.
        assert_eq!(words(g, "a\nb  "), ["a", "\n", "b", "  "]);
        assert_eq!(words(g, "x\n\n\ny"), ["x", "\n\n", "\n", "y"]);
        // Contractions are case-sensitive; an apostrophe run joins other punctuation.
        assert_eq!(
            words(g, "I'M don't \"'quoted'\""),
            ["I", "'", "M", " don", "'t", " \"'", "quoted", "'\""]
        );
        assert_eq!(words(g, "naïve café"), ["naïve", " café"]);
        assert_eq!(words(g, ""), Vec::<&str>::new());
    }

    #[test]
    fn smollm_splits_every_digit_first() {
        let s = PreTokenizer::DigitsThenGpt2;
        assert_eq!(words(s, "in 2024."), ["in", " ", "2", "0", "2", "4", "."]);
        assert_eq!(words(s, "a1b"), ["a", "1", "b"]);
    }

    #[test]
    fn utf8_stream_holds_split_characters() {
        let mut u = Utf8Stream::default();
        let e = "é".as_bytes();
        assert_eq!(u.push(b"caf"), "caf");
        assert_eq!(u.push(&e[..1]), "");
        assert_eq!(u.push(&e[1..]), "é");
        assert_eq!(u.push(&[0xF0, 0x9F]), "");
        assert_eq!(u.finish(), "\u{FFFD}");
        assert_eq!(u.push(&[0xFF, b'a']), "\u{FFFD}a");
    }

    #[test]
    fn byte_alphabet_is_a_bijection() {
        let t = byte_to_char_table();
        let mut seen = std::collections::HashSet::new();
        for c in t {
            assert!(seen.insert(c));
        }
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], '\u{120}');
        assert_eq!(t[b'\n' as usize], '\u{10A}');
    }
}

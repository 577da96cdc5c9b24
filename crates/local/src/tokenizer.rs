//! The tokenizer a GGUF file carries, with the vocabulary, token types and special ids from the
//! file's metadata, giving the token ids llama.cpp gives for the same file. Two algorithms:
//! - GPT-2-style byte-level BPE (`tokenizer.ggml.model = "gpt2"`, SmolLM2): merge ranks from
//!   `tokenizer.ggml.merges`, after a pre-tokenizer;
//! - SentencePiece BPE (`tokenizer.ggml.model = "llama"`, Gemma, Llama 2): merge scores from
//!   `tokenizer.ggml.scores`, with byte fallback (see the `spm` submodule).
//!
//! Text becomes ids in these steps, as llama.cpp does it:
//! 1. the BOS token when the model asks for it (`tokenizer.ggml.add_bos_token`; SentencePiece
//!    vocabularies default to yes);
//! 2. special tokens are cut out of the text, longest text first, each at every place it occurs
//!    in what is left: user-defined tokens always (Gemma's runs of spaces, tabs and newlines,
//!    its HTML tags), control tokens (`<|im_start|>`, `<start_of_turn>`) only when the caller
//!    asks for special tokens to be parsed (chat templates do);
//! 3. each piece of text between them is tokenized on its own. BPE: pre-tokenized into words by
//!    the pre-tokenizer the file names in `tokenizer.ggml.pre` (GPT-2's pattern, with single
//!    digits split off first for `smollm`), then each word's bytes, mapped to GPT-2's printable
//!    byte alphabet, are merged pairwise by merge rank until no ranked pair is left.
//!    SentencePiece: spaces become `▁` and the characters are merged by score;
//! 4. the EOS token when the model asks for it (`tokenizer.ggml.add_eos_token`).
//!
//! End of generation is llama.cpp's set: the EOS, EOT and EOM ids the file declares, the
//! fill-in-the-middle pad/repo/separator tokens, and the tokens named like the end markers of
//! known chat formats (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, `</s>`, ...); those named
//! tokens count as control tokens from then on, as in llama.cpp.
//!
//! The pre-tokenizer is a hand-written scanner of GPT-2's pattern rather than a regex: the
//! pattern needs a look-ahead (`\s+(?!\S)`) that the `regex` crate does not support, and the
//! scanner is a few dozen lines. Letters are `char::is_alphabetic` minus numerics, numbers are
//! `char::is_numeric` (exactly `\p{N}`), spaces `char::is_whitespace` (exactly `\s`); the only
//! difference from `\p{L}` is the handful of combining marks Unicode counts as alphabetic.

mod spm;

use std::collections::{BTreeSet, HashMap};

use candle_core::quantized::gguf_file::{Content, Value};

use crate::LocalError;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_UNUSED: i32 = 5;
const TYPE_BYTE: i32 = 6;

/// Token attributes (llama.cpp's `llama_token_attr` bits that tokenizing and decoding read):
/// the token type, plus the control bit llama.cpp adds to tokens it recognises by name.
mod attr {
    pub const UNKNOWN: u8 = 1;
    pub const UNUSED: u8 = 1 << 1;
    pub const NORMAL: u8 = 1 << 2;
    pub const CONTROL: u8 = 1 << 3;
    pub const USER_DEFINED: u8 = 1 << 4;
    pub const BYTE: u8 = 1 << 5;
}

fn attr_of_type(ty: i32) -> u8 {
    match ty {
        TYPE_NORMAL => attr::NORMAL,
        TYPE_UNKNOWN => attr::UNKNOWN,
        TYPE_CONTROL => attr::CONTROL,
        TYPE_USER_DEFINED => attr::USER_DEFINED,
        TYPE_UNUSED => attr::UNUSED,
        TYPE_BYTE => attr::BYTE,
        _ => 0,
    }
}

/// Tokens llama.cpp takes as end of generation by their text.
const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
];

/// Tokens llama.cpp takes as the end-of-turn token by their text when the file names none.
const EOT_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<end_of_utterance>",
];

/// Fill-in-the-middle tokens llama.cpp ends generation on (pad, repo, file separator), by
/// metadata key and by the texts it recognises when the key is absent.
const FIM_EOG: &[(&str, &[&str])] = &[
    (
        "tokenizer.ggml.fim_pad_token_id",
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        "tokenizer.ggml.fim_rep_token_id",
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    ("tokenizer.ggml.fim_sep_token_id", &["<|file_sep|>"]),
];

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

/// A GGUF tokenizer: byte-level BPE or SentencePiece, loaded from the file's metadata.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// id -> the bytes the token stands for (control tokens: their text).
    pieces: Vec<Vec<u8>>,
    /// id -> attribute bits (`attr`).
    attrs: Vec<u8>,
    /// Token text (BPE: in the byte alphabet; SentencePiece: with `▁` for spaces) -> id.
    vocab: HashMap<String, u32>,
    /// The special tokens cut out of text before the algorithm runs.
    specials: Specials,
    algorithm: Algorithm,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    eog: Vec<u32>,
}

/// How text between special tokens becomes ids.
#[derive(Debug, Clone)]
enum Algorithm {
    Bpe(Bpe),
    Spm(spm::Spm),
}

/// Byte-level BPE's merge table.
#[derive(Debug, Clone)]
struct Bpe {
    /// (left, right) -> (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// byte -> id of its single-byte token.
    byte_ids: [Option<u32>; 256],
    pre: PreTokenizer,
}

/// The special tokens (control, user-defined and unknown types) as llama.cpp cuts them out.
#[derive(Debug, Clone, Default)]
struct Specials {
    /// (text, id, cut only when special tokens are parsed) in cutting order: longest text
    /// first, then by id.
    tokens: Vec<(String, u32, bool)>,
    /// text -> index in `tokens` (the first of equal texts).
    index: HashMap<Vec<u8>, usize>,
    /// first byte -> the distinct lengths of the texts that start with it.
    lengths: Vec<Vec<usize>>,
}

/// A piece of the input: text (a byte range) or a special token cut out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragment {
    Text(usize, usize),
    Token(u32),
}

impl Specials {
    fn new(texts: &[String], attrs: &[u8]) -> Self {
        let mut tokens: Vec<(String, u32, bool)> = Vec::new();
        for (id, (text, &a)) in texts.iter().zip(attrs).enumerate() {
            if !text.is_empty() && a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0 {
                let parsed_only = a & (attr::CONTROL | attr::UNKNOWN) != 0;
                tokens.push((text.clone(), id as u32, parsed_only));
            }
        }
        tokens.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let mut index = HashMap::with_capacity(tokens.len());
        let mut lengths = vec![Vec::new(); 256];
        for (i, (text, _, _)) in tokens.iter().enumerate() {
            index.entry(text.as_bytes().to_vec()).or_insert(i);
            let lens: &mut Vec<usize> = &mut lengths[text.as_bytes()[0] as usize];
            if !lens.contains(&text.len()) {
                lens.push(text.len());
            }
        }
        Specials {
            tokens,
            index,
            lengths,
        }
    }

    /// Cuts the special tokens out of `text` as llama.cpp does: for each special token in turn
    /// (longest first), every occurrence in the text that is left, from the left.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut fragments = Vec::new();
        if text.is_empty() {
            return fragments;
        }
        fragments.push(Fragment::Text(0, text.len()));
        // The special tokens that occur in the text at all (usually none or a few), found by
        // looking up the texts starting at each character; only they can cut anything.
        let bytes = text.as_bytes();
        let mut present = BTreeSet::new();
        for (start, _) in text.char_indices() {
            for &len in &self.lengths[bytes[start] as usize] {
                if let Some(&i) = bytes
                    .get(start..start + len)
                    .and_then(|candidate| self.index.get(candidate))
                    && (parse_special || !self.tokens[i].2)
                {
                    present.insert(i);
                }
            }
        }
        for i in present {
            let (special, id, _) = &self.tokens[i];
            let mut cut = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(mut start, end) = fragment else {
                    cut.push(fragment);
                    continue;
                };
                while let Some(at) = text[start..end].find(special.as_str()) {
                    if at > 0 {
                        cut.push(Fragment::Text(start, start + at));
                    }
                    cut.push(Fragment::Token(*id));
                    start += at + special.len();
                }
                if start < end {
                    cut.push(Fragment::Text(start, end));
                }
            }
            fragments = cut;
        }
        fragments
    }
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

fn string_value(content: &Content, key: &str) -> Option<String> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_string().ok().cloned())
}

fn u32_value(content: &Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

fn bool_value(content: &Content, key: &str) -> Option<bool> {
    content.metadata.get(key).and_then(|v| v.to_bool().ok())
}

/// The byte a byte token (`<0xXX>`) stands for.
fn byte_of_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The end-of-generation ids, as llama.cpp finds them; marks the tokens it recognises by name
/// as control tokens (so they are no longer cut out of plain text, nor printed), as it does.
fn end_of_generation(
    content: &Content,
    tokens: &[String],
    vocab: &HashMap<String, u32>,
    attrs: &mut [u8],
    eos: Option<u32>,
) -> Vec<u32> {
    let n = tokens.len();
    let declared = |key: &str| u32_value(content, key).filter(|&id| (id as usize) < n);
    // llama.cpp takes whichever matching token its hash map yields first; the lowest id here.
    let mut by_name = |names: &[&str]| {
        let id = names
            .iter()
            .filter_map(|name| vocab.get(*name).copied())
            .min();
        if let Some(id) = id {
            attrs[id as usize] |= attr::CONTROL;
        }
        id
    };
    let eot = declared("tokenizer.ggml.eot_token_id").or_else(|| by_name(EOT_NAMES));
    let eom = declared("tokenizer.ggml.eom_token_id").or_else(|| by_name(&["<|eom_id|>"]));
    let mut eog: Vec<u32> = Vec::new();
    for (key, names) in FIM_EOG {
        eog.extend(declared(key).or_else(|| by_name(names)));
    }
    for name in EOG_NAMES {
        if let Some(&id) = vocab.get(*name) {
            attrs[id as usize] |= attr::CONTROL;
            eog.push(id);
        }
    }
    eog.extend([eos, eot, eom].into_iter().flatten());
    eog.sort_unstable();
    eog.dedup();
    let find =
        |eog: &[u32], text: &str| eog.iter().copied().find(|&id| tokens[id as usize] == text);
    let has = |eog: &[u32], text: &str| find(eog, text).is_some();
    // llama.cpp's exceptions: `<|end|>` is no end when the format has `<|return|>`/`<|call|>`
    // (gpt-oss) or `<|calls|>`/`<|flush|>`; `</s>` is none beside `<|tool_response>`.
    let call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
    if let Some(end) = find(&eog, "<|end|>")
        && call
        && (has(&eog, "<|return|>") || has(&eog, "<|flush|>"))
    {
        eog.retain(|&id| id != end);
        attrs[end as usize] = attr::USER_DEFINED;
    }
    if let Some(s) = find(&eog, "</s>")
        && has(&eog, "<|tool_response>")
    {
        eog.retain(|&id| id != s);
        attrs[s as usize] = attr::NORMAL;
    }
    eog
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
        let model = string_value(content, "tokenizer.ggml.model").unwrap_or_default();
        let sentencepiece = match model.as_str() {
            "gpt2" => false,
            "llama" => true,
            other => {
                return Err(LocalError::Tokenizer(format!(
                    "the model's tokenizer is '{other}'; tokenpace's built-in engine reads GPT-2-style \
                     byte-level BPE (tokenizer.ggml.model = \"gpt2\", as SmolLM2's) and SentencePiece \
                     (\"llama\", as Gemma's) tokenizers"
                )));
            }
        };
        let tokens = string_array(content, "tokenizer.ggml.tokens")?;
        let n = tokens.len();
        let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(items)) => items.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            _ => vec![TYPE_NORMAL; n],
        };
        if types.len() != n {
            return Err(LocalError::Tokenizer(format!(
                "the GGUF file has {n} tokens but {} token types",
                types.len()
            )));
        }
        let mut attrs: Vec<u8> = types.iter().map(|&t| attr_of_type(t)).collect();
        let mut vocab = HashMap::with_capacity(n);
        for (id, text) in tokens.iter().enumerate() {
            // Of equal texts the last wins, as in llama.cpp.
            vocab.insert(text.clone(), id as u32);
        }
        // Special ids: the file's, else llama.cpp's defaults (SentencePiece: <unk> 0, <s> 1,
        // </s> 2); an id outside the vocabulary counts as absent.
        let id_of = |key: &str, default: u32| {
            u32_value(content, key)
                .filter(|&id| (id as usize) < n)
                .or((sentencepiece && (default as usize) < n).then_some(default))
        };
        let bos = id_of("tokenizer.ggml.bos_token_id", 1);
        let eos = id_of("tokenizer.ggml.eos_token_id", 2);
        let unknown = id_of("tokenizer.ggml.unknown_token_id", 0);
        let add_bos = bool_value(content, "tokenizer.ggml.add_bos_token").unwrap_or(sentencepiece);
        let add_eos = bool_value(content, "tokenizer.ggml.add_eos_token").unwrap_or(false);
        let eog = end_of_generation(content, &tokens, &vocab, &mut attrs, eos);

        let to_char = byte_to_char_table();
        let mut from_char: HashMap<char, u8> = HashMap::with_capacity(256);
        for (b, &c) in to_char.iter().enumerate() {
            from_char.insert(c, b as u8);
        }
        let pieces = tokens
            .iter()
            .zip(&attrs)
            .map(|(text, &a)| {
                if a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0 {
                    text.as_bytes().to_vec()
                } else if a & attr::NORMAL != 0 {
                    if sentencepiece {
                        text.replace('\u{2581}', " ").into_bytes()
                    } else {
                        // A normal token's characters are the byte alphabet; one outside it
                        // (some converters leave raw text) stands for its own UTF-8.
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
                } else if a & attr::BYTE != 0 {
                    byte_of_token(text).map_or_else(|| text.as_bytes().to_vec(), |b| vec![b])
                } else {
                    // Unused and undefined tokens print nothing, as in llama.cpp.
                    Vec::new()
                }
            })
            .collect();
        let specials = Specials::new(&tokens, &attrs);

        let algorithm = if sentencepiece {
            let scores: Vec<f32> = match content.metadata.get("tokenizer.ggml.scores") {
                Some(Value::Array(items)) => {
                    items.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect()
                }
                _ => vec![0.0; n],
            };
            if scores.len() != n {
                return Err(LocalError::Tokenizer(format!(
                    "the GGUF file has {n} tokens but {} scores",
                    scores.len()
                )));
            }
            // A byte is its `<0xXX>` token, else a token that is the byte itself.
            let mut byte_ids = [None; 256];
            for (b, slot) in byte_ids.iter_mut().enumerate() {
                *slot = vocab.get(&format!("<0x{b:02X}>")).copied().or_else(|| {
                    (1..128)
                        .contains(&b)
                        .then(|| vocab.get(&char::from(b as u8).to_string()).copied())
                        .flatten()
                });
            }
            Algorithm::Spm(spm::Spm {
                scores,
                byte_ids,
                unknown: unknown.unwrap_or(0),
                add_space_prefix: bool_value(content, "tokenizer.ggml.add_space_prefix")
                    .unwrap_or(true),
            })
        } else {
            let pre_name =
                string_value(content, "tokenizer.ggml.pre").unwrap_or_else(|| "default".into());
            let pre = PreTokenizer::from_gguf_name(&pre_name)?;
            let merges_text = string_array(content, "tokenizer.ggml.merges")?;
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
            Algorithm::Bpe(Bpe {
                merges,
                byte_ids,
                pre,
            })
        };
        Ok(Tokenizer {
            pieces,
            attrs,
            vocab,
            specials,
            algorithm,
            bos,
            eos,
            add_bos,
            add_eos,
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

    /// The id of a token given by its text, if the vocabulary has it (SentencePiece tokens
    /// write spaces as `▁`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.get(text).copied()
    }

    /// Whether `id` ends generation (EOS, EOT, `<|im_end|>`, `<end_of_turn>` and kin).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The end-of-generation ids, in increasing order.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.eog
    }

    /// The pre-tokenizer in use; `None` for SentencePiece, which has none.
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        match &self.algorithm {
            Algorithm::Bpe(bpe) => Some(bpe.pre),
            Algorithm::Spm(_) => None,
        }
    }

    /// Token ids of `text`, as llama.cpp's `llama_tokenize` with `add_special` gives them. With
    /// `parse_special`, control tokens written in the text (such as `<|im_start|>`) become
    /// their ids, as for a rendered chat template; without it they are ordinary text
    /// (user-defined tokens are cut out either way). The BOS token is prepended when the model
    /// asks for it (`add_bos_token`), the EOS token appended when it asks for that.
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if self.add_bos
            && let Some(bos) = self.bos
        {
            ids.push(bos);
        }
        let mut after_special = true;
        for fragment in self.specials.partition(text, parse_special) {
            match fragment {
                Fragment::Text(start, end) => {
                    self.encode_text(&text[start..end], after_special, &mut ids);
                    after_special = false;
                }
                Fragment::Token(id) => {
                    ids.push(id);
                    after_special = true;
                }
            }
        }
        if self.add_eos
            && let Some(eos) = self.eos
        {
            ids.push(eos);
        }
        ids
    }

    /// Ids of text holding no special token.
    fn encode_text(&self, text: &str, after_special: bool, ids: &mut Vec<u32>) {
        match &self.algorithm {
            Algorithm::Bpe(bpe) => {
                for (start, end) in bpe.pre.words(text) {
                    bpe.merge(&text.as_bytes()[start..end], ids);
                }
            }
            Algorithm::Spm(spm) => spm.encode(&self.vocab, text, after_special, ids),
        }
    }

    /// The bytes token `id` stands for. Control (and unknown) tokens give nothing unless
    /// `special` is set (as llama.cpp renders them); an unknown id gives nothing.
    pub fn piece(&self, id: u32, special: bool) -> &[u8] {
        let Some(bytes) = self.pieces.get(id as usize) else {
            return &[];
        };
        if !special && self.attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return &[];
        }
        bytes
    }

    /// Decodes ids to text (invalid UTF-8 is replaced), control tokens omitted. With a
    /// SentencePiece space prefix, the space `encode` put in front of the text is dropped
    /// (llama.cpp drops it only when the first id is not BOS); the ones it put after tokens cut
    /// out of the text stay. Without a prefix (Gemma, byte-level BPE) text comes back as it was,
    /// but for a literal `▁`, which SentencePiece reads as a space.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut strip = matches!(&self.algorithm, Algorithm::Spm(s) if s.add_space_prefix);
        let mut bytes = Vec::new();
        for &id in ids {
            let mut piece = self.piece(id, false);
            if piece.is_empty() {
                continue;
            }
            if strip {
                piece = piece.strip_prefix(b" ").unwrap_or(piece);
                strip = false;
            }
            bytes.extend_from_slice(piece);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Bpe {
    /// Merges one word's bytes by rank.
    fn merge(&self, word: &[u8], ids: &mut Vec<u32>) {
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

    use candle_core::quantized::gguf_file::VersionedMagic;

    /// A tiny SentencePiece vocabulary in Gemma's style: control tokens, user-defined runs and
    /// tags, normal pieces with scores, then the 256 byte tokens.
    const SPM_TOKENS: &[(&str, f32, i32)] = &[
        ("<pad>", 0.0, TYPE_CONTROL),           // 0
        ("<eos>", 0.0, TYPE_CONTROL),           // 1
        ("<bos>", 0.0, TYPE_CONTROL),           // 2
        ("<unk>", 0.0, TYPE_UNKNOWN),           // 3
        ("<start_of_turn>", 0.0, TYPE_CONTROL), // 4
        ("<end_of_turn>", 0.0, TYPE_CONTROL),   // 5
        ("\n", 0.0, TYPE_USER_DEFINED),         // 6
        ("  ", 0.0, TYPE_USER_DEFINED),         // 7
        ("</s>", 0.0, TYPE_USER_DEFINED),       // 8
        ("<s>", 0.0, TYPE_USER_DEFINED),        // 9
        ("xy", 0.0, TYPE_USER_DEFINED),         // 10
        ("yzw", 0.0, TYPE_USER_DEFINED),        // 11
        ("▁", -10.0, TYPE_NORMAL),              // 12
        ("a", -11.0, TYPE_NORMAL),              // 13
        ("b", -12.0, TYPE_NORMAL),              // 14
        ("c", -13.0, TYPE_NORMAL),              // 15
        ("h", -14.0, TYPE_NORMAL),              // 16
        ("i", -15.0, TYPE_NORMAL),              // 17
        ("ab", -30.0, TYPE_NORMAL),             // 18
        ("bc", -20.0, TYPE_NORMAL),             // 19
        ("▁a", -21.0, TYPE_NORMAL),             // 20
        ("hi", -22.0, TYPE_NORMAL),             // 21
        ("▁h", -23.0, TYPE_NORMAL),             // 22
        ("▁hi", -24.0, TYPE_NORMAL),            // 23
        ("é", -25.0, TYPE_NORMAL),              // 24
        ("<unused0>", 0.0, TYPE_UNUSED),        // 25
    ];
    const BYTE0: u32 = SPM_TOKENS.len() as u32;

    fn byte(b: u8) -> u32 {
        BYTE0 + u32::from(b)
    }

    fn content(metadata: Vec<(&str, Value)>) -> Content {
        Content {
            magic: VersionedMagic::GgufV3,
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    /// The tiny vocabulary as GGUF metadata, Gemma's settings, with `extra` entries on top.
    fn spm_metadata(extra: Vec<(&'static str, Value)>) -> Content {
        let mut tokens = Vec::new();
        let mut scores = Vec::new();
        let mut types = Vec::new();
        for &(t, s, ty) in SPM_TOKENS {
            tokens.push(Value::String(t.to_string()));
            scores.push(Value::F32(s));
            types.push(Value::I32(ty));
        }
        for b in 0..=255u8 {
            tokens.push(Value::String(format!("<0x{b:02X}>")));
            scores.push(Value::F32(0.0));
            types.push(Value::I32(TYPE_BYTE));
        }
        let mut metadata = vec![
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.pre", Value::String("default".into())),
            ("tokenizer.ggml.tokens", Value::Array(tokens)),
            ("tokenizer.ggml.scores", Value::Array(scores)),
            ("tokenizer.ggml.token_type", Value::Array(types)),
            ("tokenizer.ggml.bos_token_id", Value::U32(2)),
            ("tokenizer.ggml.eos_token_id", Value::U32(1)),
            ("tokenizer.ggml.unknown_token_id", Value::U32(3)),
            ("tokenizer.ggml.padding_token_id", Value::U32(0)),
            ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
            ("tokenizer.ggml.add_eos_token", Value::Bool(false)),
            ("tokenizer.ggml.add_space_prefix", Value::Bool(false)),
        ];
        for (key, value) in extra {
            metadata.retain(|(k, _)| *k != key);
            metadata.push((key, value));
        }
        content(metadata)
    }

    fn spm_tokenizer(extra: Vec<(&'static str, Value)>) -> Tokenizer {
        Tokenizer::from_gguf(&spm_metadata(extra)).unwrap()
    }

    #[test]
    fn sentencepiece_merges_by_score_with_byte_fallback() {
        let t = spm_tokenizer(vec![]);
        assert_eq!(t.len(), SPM_TOKENS.len() + 256);
        assert_eq!(t.pre_tokenizer(), None);
        // BOS first; "bc" outscores "ab", so "abc" is a + bc.
        assert_eq!(t.encode("abc", false), [2, 13, 19]);
        assert_eq!(t.encode("ab", false), [2, 18]);
        // Spaces are '▁': "▁h" + "i" loses to "▁" + "hi"? No: "hi" (-22) beats "▁h" (-23),
        // then "▁" + "hi" makes "▁hi".
        assert_eq!(t.encode("hi hi", false), [2, 21, 23]);
        assert_eq!(t.encode(" a", false), [2, 20]);
        // Characters outside the vocabulary: their UTF-8 bytes as byte tokens.
        assert_eq!(
            t.encode("é ĳ\r", false),
            [2, 24, 12, byte(0xC4), byte(0xB3), byte(b'\r')]
        );
        assert_eq!(t.encode("", false), [2]);
    }

    #[test]
    fn sentencepiece_special_tokens_are_cut_first() {
        let t = spm_tokenizer(vec![]);
        let chat = "<start_of_turn>hi<end_of_turn>\n";
        assert_eq!(t.encode(chat, true), [2, 4, 21, 5, 6]);
        // Not parsed, a control token is text (here: bytes), but user-defined tokens (newline,
        // runs of spaces, tags) are cut out all the same.
        let plain = t.encode(chat, false);
        assert_eq!(plain[..3], [2, byte(b'<'), byte(b's')]);
        assert_eq!(plain.last(), Some(&6));
        assert_eq!(t.encode("a  b\n<s>", false), [2, 13, 7, 14, 6, 9]);
        // Longest first, each everywhere: "yzw" is cut before "xy" is looked for.
        assert_eq!(t.encode("xyzw xy", false), [2, byte(b'x'), 11, 12, 10]);
        // `</s>` ends generation in llama.cpp, which makes it a control token.
        assert_eq!(t.encode("</s>", true), [2, 8]);
        assert_eq!(t.encode("</s>", false)[1], byte(b'<'));
    }

    #[test]
    fn sentencepiece_pieces_and_decoding() {
        let t = spm_tokenizer(vec![]);
        assert_eq!(t.piece(23, false), b" hi");
        assert_eq!(t.piece(byte(0xC4), false), [0xC4]);
        assert_eq!(t.piece(7, false), b"  ");
        assert_eq!(t.piece(4, false), b"");
        assert_eq!(t.piece(4, true), b"<start_of_turn>");
        assert_eq!(
            t.piece(3, false),
            b"",
            "unknown tokens print like control tokens"
        );
        assert_eq!(t.piece(25, true), b"", "unused tokens print nothing");
        assert_eq!(t.piece(1_000_000, true), b"");
        for text in [
            "hi hi",
            " a  b\n\n",
            "é ĳ\r\n🙂 x",
            "abc",
            "  leading and trailing  ",
        ] {
            assert_eq!(t.decode(&t.encode(text, false)), text);
        }
        assert_eq!(
            t.decode(&t.encode("<start_of_turn>hi<end_of_turn>\n", true)),
            "hi\n"
        );
        assert_eq!(t.token_id("▁hi"), Some(23));
    }

    #[test]
    fn sentencepiece_end_of_generation_follows_llama_cpp() {
        let t = spm_tokenizer(vec![]);
        // EOS, `<end_of_turn>` and `</s>` by name.
        assert_eq!(t.end_of_generation(), [1, 5, 8]);
        assert!(t.is_end_of_generation(5) && !t.is_end_of_generation(4));
        // A `</s>` beside `<|tool_response>` (Gemma 4) is no end; declared EOT/EOM ids are.
        let mut c = spm_metadata(vec![
            ("tokenizer.ggml.eot_token_id", Value::U32(13)),
            ("tokenizer.ggml.eom_token_id", Value::U32(14)),
        ]);
        if let Some(Value::Array(tokens)) = c.metadata.get_mut("tokenizer.ggml.tokens") {
            tokens[10] = Value::String("<|tool_response>".into());
        }
        let t = Tokenizer::from_gguf(&c).unwrap();
        assert_eq!(t.end_of_generation(), [1, 5, 10, 13, 14]);
        assert_eq!(t.piece(8, false), b"</s>", "</s> is a plain token again");
    }

    #[test]
    fn sentencepiece_space_prefix_bos_and_eos_settings() {
        let t = spm_tokenizer(vec![
            ("tokenizer.ggml.add_space_prefix", Value::Bool(true)),
            ("tokenizer.ggml.add_eos_token", Value::Bool(true)),
        ]);
        assert_eq!(t.encode("hi a", false), [2, 23, 20, 1]);
        // The prefix goes at the start and after each token cut out (user-defined ones too, as
        // in llama.cpp), not after other text.
        assert_eq!(
            t.encode("hi<start_of_turn>a\nhi", true),
            [2, 23, 4, 20, 6, 23, 1]
        );
        assert_eq!(t.encode("ahi", false), [2, 20, 21, 1]);
        assert_eq!(t.encode("", false), [2, 1]);
        assert_eq!(t.decode(&t.encode("hi a", false)), "hi a");
        let t = spm_tokenizer(vec![("tokenizer.ggml.add_bos_token", Value::Bool(false))]);
        assert_eq!(t.encode("a", false), [13]);
        // Without the keys: llama.cpp's SentencePiece defaults (BOS added, space prefix).
        let mut c = spm_metadata(vec![]);
        c.metadata.remove("tokenizer.ggml.add_bos_token");
        c.metadata.remove("tokenizer.ggml.add_space_prefix");
        let t = Tokenizer::from_gguf(&c).unwrap();
        assert_eq!(t.encode("a", false), [2, 20]);
    }

    #[test]
    fn unsupported_or_inconsistent_vocabularies_are_refused() {
        let e = Tokenizer::from_gguf(&spm_metadata(vec![(
            "tokenizer.ggml.model",
            Value::String("bert".into()),
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("'bert'"), "{e}");
        let e = Tokenizer::from_gguf(&spm_metadata(vec![(
            "tokenizer.ggml.scores",
            Value::Array(vec![Value::F32(0.0)]),
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("scores"), "{e}");
    }

    #[test]
    fn special_tokens_cut_the_same_for_bpe() {
        // A GPT-2 vocabulary: bytes a, b, space (Ġ), a control and a user-defined token.
        let tokens = ["a", "b", "\u{120}", "<|im_start|>", "<tag>"];
        let types = [1, 1, 1, TYPE_CONTROL, TYPE_USER_DEFINED];
        let c = content(vec![
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            (
                "tokenizer.ggml.tokens",
                Value::Array(
                    tokens
                        .iter()
                        .map(|t| Value::String(t.to_string()))
                        .collect(),
                ),
            ),
            (
                "tokenizer.ggml.token_type",
                Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
            ),
            ("tokenizer.ggml.merges", Value::Array(vec![])),
        ]);
        let t = Tokenizer::from_gguf(&c).unwrap();
        assert_eq!(t.pre_tokenizer(), Some(PreTokenizer::Gpt2));
        assert_eq!(t.encode("<|im_start|>a b<tag>", true), [3, 0, 2, 1, 4]);
        assert_eq!(t.encode("a<tag>", false), [0, 4]);
        assert_eq!(t.decode(&[3, 0, 2, 1, 4]), "a b<tag>");
    }
}

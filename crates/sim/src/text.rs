//! Deterministic output text and the seeded random source behind every draw.
//!
//! Output is produced token by token from a vocabulary in which every entry is exactly one
//! `o200k_base` token in context, so the text of N simulated tokens tokenizes back to N
//! tokens and a client's tokenizer agrees with the simulator's `usage` (a test checks it).
//! The random source is SplitMix64, chosen over a crate's RNG because its sequence is fixed
//! by its definition: the same seed gives the same text in every version of tokenpace.

/// Words that are each a single `o200k_base` token when preceded by a space.
const WORDS: &[&str] = &[
    "the", "model", "token", "time", "first", "latency", "request", "response", "data", "system",
    "stream", "answer", "simple", "fast", "small", "large", "cost", "price", "cache", "batch",
    "network", "queue", "server", "client", "window", "limit", "rate", "minute", "second", "value",
    "result", "number", "test", "work", "level", "point", "order", "state", "part", "light",
    "water", "river", "stone", "green", "blue", "red", "house", "city", "road", "tree", "book",
    "page", "line", "word", "note", "story", "world", "day", "night", "year", "people", "hand",
    "head", "voice", "music", "sound", "color", "paper", "field", "market", "energy", "power",
    "signal", "method", "process", "study", "group", "share", "start", "end", "of", "and", "to",
    "in", "is", "for", "on", "with", "as", "by", "at", "from", "that", "this", "it", "can", "will",
    "more", "each", "every", "new", "good", "long", "short", "clear", "quick", "slow", "early",
    "late", "open", "close", "high", "low", "full", "half",
];

/// Punctuation tokens that may follow a word.
const PUNCT: &[&str] = &[".", ","];

/// SplitMix64: a tiny, fixed, well-mixed 64-bit generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in [0, n) (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: bias is below 2^-32 for the small ranges used here.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

/// FNV-1a, 64-bit: a stable hash of request bytes (std's hasher may change between
/// releases, which would change the text for a given seed and request).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Generates the text of output tokens one at a time.
#[derive(Debug, Clone)]
pub struct TokenText {
    rng: SplitMix64,
    index: u64,
    after_punct: bool,
}

impl TokenText {
    /// A generator for one response.
    pub fn new(seed: u64) -> Self {
        TokenText {
            rng: SplitMix64::new(seed ^ 0x5EED_7E47),
            index: 0,
            after_punct: true,
        }
    }

    /// The text of the next token.
    pub fn next_token(&mut self) -> String {
        let first = self.index == 0;
        self.index += 1;
        // A punctuation token now and then, never first and never twice in a row.
        if !first && !self.after_punct && self.rng.below(8) == 0 {
            self.after_punct = true;
            return PUNCT[self.rng.below(PUNCT.len() as u64) as usize].to_string();
        }
        let word = WORDS[self.rng.below(WORDS.len() as u64) as usize];
        self.after_punct = false;
        if first {
            // Capitalised at the start: still one token for these words (tested).
            let mut chars = word.chars();
            match chars.next() {
                Some(c) => c.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        } else {
            format!(" {word}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vocabulary_entry_is_one_token() {
        let bpe = protocol::tokens::o200k();
        for w in WORDS {
            let spaced = format!(" {w}");
            assert_eq!(
                bpe.encode_ordinary(&spaced).len(),
                1,
                "' {w}' is not one token"
            );
        }
        for p in PUNCT {
            assert_eq!(bpe.encode_ordinary(p).len(), 1, "'{p}'");
        }
    }

    #[test]
    fn generated_text_tokenizes_back_to_its_length() {
        for seed in 0..40u64 {
            for n in [1usize, 2, 7, 64, 300] {
                let mut g = TokenText::new(seed);
                let text: String = (0..n).map(|_| g.next_token()).collect();
                assert_eq!(
                    protocol::tokens::count_text(&text),
                    n as u64,
                    "seed {seed}, {n} tokens: {text:?}"
                );
            }
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a: Vec<String> = {
            let mut g = TokenText::new(7);
            (0..50).map(|_| g.next_token()).collect()
        };
        let b: Vec<String> = {
            let mut g = TokenText::new(7);
            (0..50).map(|_| g.next_token()).collect()
        };
        let c: Vec<String> = {
            let mut g = TokenText::new(8);
            (0..50).map(|_| g.next_token()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn splitmix_is_fixed() {
        // The first outputs for seed 0 are part of the generator's definition.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(1);
        for n in [1u64, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
        assert_eq!(r.below(0), 0);
    }
}

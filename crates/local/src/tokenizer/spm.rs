//! SentencePiece BPE (`tokenizer.ggml.model = "llama"`) as llama.cpp's SPM tokenizer runs it on
//! one piece of text that holds no special token.
//!
//! Every ASCII space becomes `▁` (U+2581), with one more in front when the model asks for a
//! space prefix. The text's characters are the first symbols; the adjacent pair whose
//! concatenation is a vocabulary token with the highest score is merged, again and again
//! (ties: the leftmost pair), with a priority queue holding the candidate pairs. A symbol left
//! at the end that is no vocabulary token is written as its bytes through the byte tokens
//! `<0xXX>` (byte fallback), or as the unknown token when the vocabulary has no such byte.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// The SentencePiece part of a tokenizer: what merging needs besides the vocabulary.
#[derive(Debug, Clone)]
pub(super) struct Spm {
    /// id -> score (higher merges first).
    pub(super) scores: Vec<f32>,
    /// byte -> id of its byte token (`<0xXX>`, else a token that is the byte itself).
    pub(super) byte_ids: [Option<u32>; 256],
    /// The id written for a byte the vocabulary lacks.
    pub(super) unknown: u32,
    /// Whether a piece of text after the start or a special token gets a leading space.
    pub(super) add_space_prefix: bool,
}

/// A run of the text: `len` bytes from `start`, linked to its neighbours.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of the symbols `left` and `right` (`size` bytes together when queued).
#[derive(Debug, Clone, Copy)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    /// Higher score first; at equal scores the leftmost pair (llama.cpp's order: scores that
    /// compare neither greater nor smaller count as equal).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// `text` with every ASCII space as `▁`, and one `▁` in front if `prefix`.
pub(super) fn escape_whitespace(text: &str, prefix: bool) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4 + 3);
    if prefix {
        out.push('\u{2581}');
    }
    for c in text.chars() {
        out.push(if c == ' ' { '\u{2581}' } else { c });
    }
    out
}

impl Spm {
    /// Appends the ids of `text` (no special tokens in it) to `ids`; `after_special` says
    /// whether it starts the input or follows a special token (where the space prefix goes).
    pub(super) fn encode(
        &self,
        vocab: &HashMap<String, u32>,
        text: &str,
        after_special: bool,
        ids: &mut Vec<u32>,
    ) {
        if text.is_empty() {
            return;
        }
        let text = escape_whitespace(text, self.add_space_prefix && after_special);
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            let len = c.len_utf8();
            symbols.push(Symbol {
                start,
                len,
                prev: i.checked_sub(1),
                next: (start + len < text.len()).then_some(i + 1),
            });
        }
        let mut session = Session {
            spm: self,
            vocab,
            text: &text,
            queue: BinaryHeap::with_capacity(symbols.len()),
            symbols,
        };
        session.merge();
        let Session { symbols, .. } = session;
        let mut at = (!symbols.is_empty()).then_some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match vocab.get(piece) {
                Some(&id) => ids.push(id),
                // Only a single character can fail to be a token (every merge makes one).
                None => ids.extend(
                    piece
                        .bytes()
                        .map(|b| self.byte_ids[b as usize].unwrap_or(self.unknown)),
                ),
            }
            at = s.next;
        }
    }
}

/// The state of merging one text.
struct Session<'a> {
    spm: &'a Spm,
    vocab: &'a HashMap<String, u32>,
    text: &'a str,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
}

impl Session<'_> {
    /// Merges the best pair until no adjacent pair makes a token.
    fn merge(&mut self) {
        for right in 1..self.symbols.len() {
            self.queue_pair(Some(right - 1), Some(right));
        }
        while let Some(bigram) = self.queue.pop() {
            let (l, r) = (self.symbols[bigram.left], self.symbols[bigram.right]);
            // A symbol of the pair was merged since it was queued: the pair is gone.
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
                continue;
            }
            self.symbols[bigram.left].len += r.len;
            self.symbols[bigram.right].len = 0;
            self.symbols[bigram.left].next = r.next;
            if let Some(next) = r.next {
                self.symbols[next].prev = Some(bigram.left);
            }
            self.queue_pair(l.prev, Some(bigram.left));
            self.queue_pair(Some(bigram.left), r.next);
        }
    }

    /// Queues the merge of `left` and `right` if their concatenation is a token.
    fn queue_pair(&mut self, left: Option<usize>, right: Option<usize>) {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let start = self.symbols[left].start;
        let size = self.symbols[left].len + self.symbols[right].len;
        let Some(&id) = self.vocab.get(&self.text[start..start + size]) else {
            return;
        };
        self.queue.push(Bigram {
            score: self.spm.scores.get(id as usize).copied().unwrap_or(0.0),
            left,
            right,
            size,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary of `tokens` (ids in order) with `scores`, bytes without byte tokens.
    fn spm(tokens: &[(&str, f32)]) -> (Spm, HashMap<String, u32>) {
        let vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (t.to_string(), i as u32))
            .collect();
        let spm = Spm {
            scores: tokens.iter().map(|(_, s)| *s).collect(),
            byte_ids: [None; 256],
            unknown: 0,
            add_space_prefix: false,
        };
        (spm, vocab)
    }

    fn ids(spm: &Spm, vocab: &HashMap<String, u32>, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        spm.encode(vocab, text, true, &mut out);
        out
    }

    #[test]
    fn the_best_scored_pair_merges_first() {
        let base = [("<unk>", 0.0), ("a", -1.0), ("b", -1.0), ("c", -1.0)];
        // "bc" scores higher than "ab": a + bc.
        let (s, v) = spm(&[&base[..], &[("ab", -3.0), ("bc", -2.0)]].concat());
        assert_eq!(ids(&s, &v, "abc"), [1, 5]);
        // The other way round: ab + c.
        let (s, v) = spm(&[&base[..], &[("ab", -2.0), ("bc", -3.0)]].concat());
        assert_eq!(ids(&s, &v, "abc"), [4, 3]);
        // Equal scores: the leftmost pair.
        let (s, v) = spm(&[&base[..], &[("ab", -2.0), ("bc", -2.0)]].concat());
        assert_eq!(ids(&s, &v, "abc"), [4, 3]);
        // Merges go on from merged symbols: bc, then a + bc -> abc.
        let (s, v) = spm(&[&base[..], &[("ab", -3.0), ("bc", -2.0), ("abc", -1.0)]].concat());
        assert_eq!(ids(&s, &v, "abc"), [6]);
        // ab (leftmost of two equal pairs), the second ab, then ab + c -> abc.
        let (s, v) = spm(&[&base[..], &[("ab", -2.0), ("bc", -3.0), ("abc", -9.0)]].concat());
        assert_eq!(ids(&s, &v, "abcab"), [6, 4]);
    }

    #[test]
    fn stale_pairs_are_skipped() {
        // "aaaa": pairs (0,1), (1,2), (2,3) all "aa"; the leftmost merges, (1,2) is then stale,
        // (2,3) merges, then "aa" + "aa".
        let (s, v) = spm(&[("<unk>", 0.0), ("a", -1.0), ("aa", -2.0), ("aaaa", -3.0)]);
        assert_eq!(ids(&s, &v, "aaaa"), [3]);
        assert_eq!(ids(&s, &v, "aaa"), [2, 1]);
    }

    #[test]
    fn spaces_become_the_meta_symbol_and_the_prefix_is_optional() {
        assert_eq!(escape_whitespace(" a  b", false), "▁a▁▁b");
        assert_eq!(escape_whitespace("a\tb", true), "▁a\tb");
        let (mut s, v) = spm(&[("<unk>", 0.0), ("▁", -1.0), ("a", -1.0), ("▁a", -2.0)]);
        assert_eq!(ids(&s, &v, "a a"), [2, 3]);
        s.add_space_prefix = true;
        assert_eq!(ids(&s, &v, "a a"), [3, 3]);
        // No prefix after ordinary text, and none for empty text.
        let mut out = Vec::new();
        s.encode(&v, "a", false, &mut out);
        s.encode(&v, "", true, &mut out);
        assert_eq!(out, [2]);
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes() {
        let (mut s, v) = spm(&[
            ("<unk>", 0.0),
            ("a", -1.0),
            ("<0xC4>", 0.0),
            ("<0xB3>", 0.0),
        ]);
        s.byte_ids[0xC4] = Some(2);
        s.byte_ids[0xB3] = Some(3);
        // 'ĳ' is C4 B3; 'é' (C3 A9) has no byte tokens: unknown, byte by byte.
        assert_eq!(ids(&s, &v, "aĳaé"), [1, 2, 3, 1, 0, 0]);
    }
}

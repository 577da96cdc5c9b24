//! Gemma 3 (GGUF architecture `gemma3`, e.g. Gemma 3 270M) on candle's quantized kernels.
//!
//! This module owns the network only: token ids in, next-token logits out, with its own KV
//! cache. Tokenizer, sampling and stopping are the engine's ([`crate::engine`]).
//!
//! Written here rather than taken from `candle-transformers` (0.11), whose `quantized_gemma3`
//! builds a rotary table of 131,072 positions for each of the 18 layers (about 2.4 GB for the
//! 270M model) and applies SiLU where Gemma uses GELU. What the network computes, as llama.cpp
//! does for this architecture:
//!
//! - the token embedding, scaled by √hidden (the table is kept in f16 and only the prompt's
//!   rows are widened; the same quantized table is the output projection, tied weights);
//! - per layer: RMS norm → attention → RMS norm → residual; RMS norm → GELU(tanh)-gated MLP →
//!   RMS norm → residual (the GGUF's norm weights already include Gemma's `1 +`);
//! - attention: grouped-query heads, RMS norm on each query and key head, NeoX-style rotary
//!   positions (base 10,000 on sliding layers, `rope.freq_base` on global ones), scores scaled
//!   by 1/√head_dim; five of every six layers see only the last `attention.sliding_window`
//!   positions, every sixth layer sees all of them;
//! - a final RMS norm and the logits of the last position.

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

/// The longest context the engine serves for Gemma 3 (the model is trained for 32,768): the
/// rotary tables and the KV cache are sized for it (about 36 KB of cache per position).
pub const MAX_CONTEXT: usize = 8192;

/// Base of the rotary frequencies on sliding-window layers (not in Gemma 3's GGUF metadata).
const LOCAL_ROPE_BASE: f32 = 10_000.0;
/// One layer in this many attends globally (Gemma 3's pattern; `attention.sliding_window_pattern`
/// overrides it when the file has it).
const DEFAULT_SLIDING_PATTERN: usize = 6;

/// Rotary tables: cos and sin of position × frequency, `(positions, head_dim / 2)`.
#[derive(Debug)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(head_dim: usize, base: f32, positions: usize, device: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut angles = Vec::with_capacity(positions * half);
        for p in 0..positions {
            angles.extend(inv_freq.iter().map(|f| p as f32 * f));
        }
        let angles = Tensor::from_vec(angles, (positions, half), device)?;
        Ok(Rope {
            cos: angles.cos()?,
            sin: angles.sin()?,
        })
    }

    /// Rotates `x` `(1, heads, seq, head_dim)` whose first position is `pos`.
    fn apply(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    q_norm: Tensor,
    k_norm: Tensor,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    post_ffn_norm: Tensor,
    /// Sees only the last `window` positions.
    sliding: bool,
    /// Keys and values of every position so far, `(1, kv_heads, positions, head_dim)`.
    cache: Option<(Tensor, Tensor)>,
}

/// Gemma 3's shape, from the GGUF metadata.
#[derive(Debug, Clone, Copy)]
struct Shape {
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    window: usize,
}

/// A loaded Gemma 3 network.
#[derive(Debug)]
pub struct Gemma3 {
    shape: Shape,
    /// Token embedding table in f16, `(vocab, hidden)`.
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// The output projection (the quantized embedding table: tied weights).
    output: QMatMul,
    rope_local: Rope,
    rope_global: Rope,
    positions: usize,
}

fn meta_u32(content: &Content, key: &str) -> Result<usize> {
    match content.metadata.get(&format!("gemma3.{key}")) {
        Some(v) => Ok(v.to_u32()? as usize),
        None => candle_core::bail!("the file has no gemma3.{key} in its metadata"),
    }
}

fn meta_f32(content: &Content, key: &str) -> Option<f32> {
    content
        .metadata
        .get(&format!("gemma3.{key}"))
        .and_then(|v| v.to_f32().ok())
}

fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps)
}

impl Gemma3 {
    /// The context length the file declares (before the engine's own cap).
    pub fn trained_context(content: &Content) -> Option<usize> {
        meta_u32(content, "context_length").ok()
    }

    /// Loads the network from a checked GGUF file, sized for `positions` positions.
    pub fn from_gguf<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        positions: usize,
    ) -> Result<Self> {
        let device = &Device::Cpu;
        let heads = meta_u32(content, "attention.head_count")?;
        let kv_heads = meta_u32(content, "attention.head_count_kv")?;
        let head_dim = meta_u32(content, "attention.key_length")?;
        let shape = Shape {
            hidden: meta_u32(content, "embedding_length")?,
            heads,
            kv_heads,
            head_dim,
            eps: meta_f32(content, "attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            window: meta_u32(content, "attention.sliding_window")?,
        };
        if kv_heads == 0 || heads % kv_heads != 0 || head_dim % 2 != 0 {
            candle_core::bail!(
                "unusable attention shape: {heads} query heads, {kv_heads} key/value heads, head size {head_dim}"
            );
        }
        let pattern = meta_u32(content, "attention.sliding_window_pattern")
            .unwrap_or(DEFAULT_SLIDING_PATTERN)
            .max(1);
        let blocks = meta_u32(content, "block_count")?;
        let global_base = meta_f32(content, "rope.freq_base").unwrap_or(1_000_000.0);
        let local_base = meta_f32(content, "rope.local_freq_base").unwrap_or(LOCAL_ROPE_BASE);

        let mut q = |name: &str| -> Result<QTensor> { content.tensor(reader, name, device) };
        let embed_q = q("token_embd.weight")?;
        let embed = embed_q.dequantize_f16(device)?;
        let output = match q("output.weight") {
            Ok(t) => t,
            Err(_) => embed_q,
        };
        let norm = q("output_norm.weight")?.dequantize(device)?;
        let mut layers = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let mut t = |n: &str| q(&format!("blk.{i}.{n}.weight"));
            layers.push(Layer {
                attn_norm: t("attn_norm")?.dequantize(device)?,
                wq: QMatMul::from_qtensor(t("attn_q")?)?,
                wk: QMatMul::from_qtensor(t("attn_k")?)?,
                wv: QMatMul::from_qtensor(t("attn_v")?)?,
                wo: QMatMul::from_qtensor(t("attn_output")?)?,
                q_norm: t("attn_q_norm")?.dequantize(device)?,
                k_norm: t("attn_k_norm")?.dequantize(device)?,
                post_attn_norm: t("post_attention_norm")?.dequantize(device)?,
                ffn_norm: t("ffn_norm")?.dequantize(device)?,
                gate: QMatMul::from_qtensor(t("ffn_gate")?)?,
                up: QMatMul::from_qtensor(t("ffn_up")?)?,
                down: QMatMul::from_qtensor(t("ffn_down")?)?,
                post_ffn_norm: t("post_ffw_norm")?.dequantize(device)?,
                sliding: (i + 1) % pattern != 0,
                cache: None,
            });
        }
        Ok(Gemma3 {
            shape,
            embed,
            layers,
            norm,
            output: QMatMul::from_qtensor(output)?,
            rope_local: Rope::new(head_dim, local_base, positions, device)?,
            rope_global: Rope::new(head_dim, global_base, positions, device)?,
            positions,
        })
    }

    /// Runs `ids` at positions `pos..`, after the `pos` positions already in the KV cache (the
    /// cache is cut back to `pos`), and returns the logits of the last id, `(vocab)`.
    pub fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Tensor> {
        let seq = ids.len();
        if seq == 0 {
            candle_core::bail!("no tokens to run");
        }
        if pos + seq > self.positions {
            candle_core::bail!(
                "{} positions exceed the {} this model was loaded for",
                pos + seq,
                self.positions
            );
        }
        let device = &Device::Cpu;
        let s = self.shape;
        let input = Tensor::new(ids, device)?;
        let mut x = self
            .embed
            .index_select(&input, 0)?
            .to_dtype(DType::F32)?
            .affine((s.hidden as f64).sqrt(), 0.0)?
            .unsqueeze(0)?;
        // The masks depend only on the positions: one for the global layers and one for the
        // sliding ones, made once per pass rather than once per layer. A single query (decode)
        // needs none: its keys are cut to its window.
        let view = |sliding: bool| -> Result<KeyView> {
            let first = if sliding {
                (pos + 1).saturating_sub(s.window)
            } else {
                0
            };
            let mask = if seq > 1 {
                Some(mask(sliding, seq, pos, first, s.window)?)
            } else {
                None
            };
            Ok(KeyView { first, mask })
        };
        let views = [view(false)?, view(true)?];
        for layer in &mut self.layers {
            let (rope, keys) = if layer.sliding {
                (&self.rope_local, &views[1])
            } else {
                (&self.rope_global, &views[0])
            };
            let h = rms_norm(&x, &layer.attn_norm, s.eps)?;
            let a = layer.attention(&h, pos, rope, keys, &s)?;
            x = (x + rms_norm(&a, &layer.post_attn_norm, s.eps)?)?;
            let h = rms_norm(&x, &layer.ffn_norm, s.eps)?;
            let f = layer
                .down
                .forward(&(layer.gate.forward(&h)?.gelu()? * layer.up.forward(&h)?)?)?;
            x = (x + rms_norm(&f, &layer.post_ffn_norm, s.eps)?)?;
        }
        let last = x.narrow(1, seq - 1, 1)?;
        let last = rms_norm(&last, &self.norm, s.eps)?;
        self.output.forward(&last)?.flatten_all()
    }
}

/// Which keys a layer's queries read in one pass: from position `first` on, with `mask`
/// (`(seq, keys)`, additive) when several queries run at once.
struct KeyView {
    first: usize,
    mask: Option<Tensor>,
}

impl Layer {
    /// Self-attention of `h` `(1, seq, hidden)` at positions `pos..`, updating the KV cache.
    fn attention(
        &mut self,
        h: &Tensor,
        pos: usize,
        rope: &Rope,
        view: &KeyView,
        s: &Shape,
    ) -> Result<Tensor> {
        let seq = h.dim(1)?;
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            t.reshape((1, seq, n, s.head_dim))?.transpose(1, 2)
        };
        let q = heads(self.wq.forward(h)?, s.heads)?;
        let k = heads(self.wk.forward(h)?, s.kv_heads)?;
        let v = heads(self.wv.forward(h)?, s.kv_heads)?.contiguous()?;
        let q = rope.apply(&rms_norm(&q, &self.q_norm, s.eps)?, pos)?;
        let k = rope.apply(&rms_norm(&k, &self.k_norm, s.eps)?, pos)?;
        let (k, v) = match self.cache.take() {
            Some((ck, cv)) if pos > 0 => {
                if ck.dim(2)? < pos {
                    candle_core::bail!(
                        "the KV cache holds {} positions, {pos} were expected",
                        ck.dim(2)?
                    );
                }
                (
                    Tensor::cat(&[&ck.narrow(2, 0, pos)?, &k], 2)?,
                    Tensor::cat(&[&cv.narrow(2, 0, pos)?, &v], 2)?,
                )
            }
            _ if pos > 0 => candle_core::bail!("the KV cache is empty, {pos} positions expected"),
            _ => (k, v),
        };
        self.cache = Some((k.clone(), v.clone()));

        // Keys before the first query's window are invisible to every query: left out.
        let first = view.first;
        let total = pos + seq;
        let k = k.narrow(2, first, total - first)?;
        let v = v.narrow(2, first, total - first)?;
        let keys = total - first;

        // Grouped-query attention without copying keys: each key/value head's query heads are
        // contiguous, so they fold into the sequence dimension of one matrix product.
        let group = s.heads / s.kv_heads;
        let q = q.reshape((1, s.kv_heads, group * seq, s.head_dim))?;
        let scale = 1.0 / (s.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = match &view.mask {
            Some(mask) => scores
                .reshape((1, s.kv_heads, group, seq, keys))?
                .broadcast_add(mask)?
                .reshape((1, s.kv_heads, group * seq, keys))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)?
            .reshape((1, s.heads, seq, s.head_dim))?
            .transpose(1, 2)?
            .reshape((1, seq, s.heads * s.head_dim))?;
        self.wo.forward(&out)
    }
}

/// The additive mask `(seq, keys)`: query `i` (position `pos + i`) sees key `j` (position
/// `first + j`) when it is not in the future and, on a sliding layer, less than `window`
/// positions back.
fn mask(sliding: bool, seq: usize, pos: usize, first: usize, window: usize) -> Result<Tensor> {
    let keys = pos + seq - first;
    let mut m = Vec::with_capacity(seq * keys);
    for i in 0..seq {
        let p = pos + i;
        m.extend((0..keys).map(|j| {
            let key = first + j;
            if key > p || (sliding && p - key >= window) {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        }));
    }
    Tensor::from_vec(m, (seq, keys), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rotates_pairs_half_apart() {
        let rope = Rope::new(4, 10_000.0, 8, &Device::Cpu).expect("rope");
        // Position 0 is the identity.
        let x = Tensor::new(&[[[[1f32, 2.0, 3.0, 4.0]]]], &Device::Cpu).expect("x");
        let y = rope.apply(&x, 0).expect("apply");
        assert_eq!(
            y.flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("vec"),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        // Position 1, first frequency 1 rad: (x0, x2) rotate together (NeoX halves).
        let y = rope.apply(&x, 1).expect("apply");
        let y = y
            .flatten_all()
            .expect("flat")
            .to_vec1::<f32>()
            .expect("vec");
        let (c, s) = (1f32.cos(), 1f32.sin());
        assert!((y[0] - (1.0 * c - 3.0 * s)).abs() < 1e-5, "{y:?}");
        assert!((y[2] - (3.0 * c + 1.0 * s)).abs() < 1e-5, "{y:?}");
    }

    #[test]
    fn sliding_mask_hides_the_future_and_the_far_past() {
        let visible = |sliding, seq, pos, first, window| {
            mask(sliding, seq, pos, first, window)
                .expect("mask")
                .to_vec2::<f32>()
                .expect("vec")
                .into_iter()
                .map(|row| {
                    row.iter()
                        .map(|v| u8::from(v.is_finite()))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        // Global layer: causal.
        assert_eq!(
            visible(false, 3, 0, 0, 2),
            vec![vec![1, 0, 0], vec![1, 1, 0], vec![1, 1, 1]]
        );
        // Sliding window of 2: each query sees itself and one position back.
        assert_eq!(
            visible(true, 3, 0, 0, 2),
            vec![vec![1, 0, 0], vec![1, 1, 0], vec![0, 1, 1]]
        );
        // With 4 cached positions and keys from position 3 on (first = pos + 1 - window).
        assert_eq!(
            visible(true, 2, 4, 3, 2),
            vec![vec![1, 1, 0], vec![0, 1, 1]]
        );
    }
}

//! `Session`: the forward pass over a batch of tokens, with its KV cache and buffers.
//!
//! Per layer, in the order of the maths:
//! rms_norm → qkv matmul → RoPE → store K,V → attention → attn_output matmul → residual
//! → rms_norm → gate|up matmul → SwiGLU → ffn_down matmul → residual;
//! then output_norm and the logits. A prompt is evaluated in batches (matrix × matrix);
//! a generated token is a batch of one.

use phiq_kernels::attention::{attention, AttnShape};
use phiq_kernels::dynamic::matmul;
use phiq_kernels::matmul::MatmulScratch;
use phiq_kernels::ops;
use phiq_kernels::par;

use super::config::RopeStyle;
use super::kv_cache::{with_store, CacheType, KvCache, Store};
use super::weights::{GateUp, Matrix, Qkv};
use super::Model;
use crate::error::{Error, Result};

/// Default number of tokens evaluated per batch.
pub const DEFAULT_BATCH: usize = 512;

/// Activation buffers for one batch, sized for the batch on the first pass and reused
/// after (`Vec::resize` within the capacity never allocates again).
#[derive(Default)]
struct Buffers {
    /// `[n][n_embd]` the residual stream.
    x: Vec<f32>,
    /// `[n][n_embd]` x after an RMS norm: the input of the projections.
    xn: Vec<f32>,
    /// `[n][q_dim + 2 kv_dim]` the fused q | k | v projection.
    qkv: Vec<f32>,
    /// `[n][q_dim]` q after RoPE, contiguous for attention.
    q: Vec<f32>,
    /// `[n][q_dim]` attention's output, the input of attn_output.
    attn: Vec<f32>,
    /// `[n][n_embd]` attn_output's, then ffn_down's result, added to the residual stream.
    proj: Vec<f32>,
    /// `[n][2 n_ff]` the fused gate | up projection.
    gate_up: Vec<f32>,
    /// `[n][n_ff]` SwiGLU(gate, up), the input of ffn_down.
    ffn_hidden: Vec<f32>,
    /// `[n][width]` one separate tensor's result (q, k, v, or gate) before it is laid out
    /// as the fused rows; unused when the file fuses them.
    split: Vec<f32>,
    /// `[n][n_ff]` up's result beside `split`'s gate, when gate and up are separate.
    split_up: Vec<f32>,
    /// `[n][n_rot / 2]` the RoPE angles of the batch's positions.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// `[rows][n_vocab]`
    logits: Vec<f32>,
    /// The matmul's quantized activations.
    matmul: MatmulScratch,
}

impl Buffers {
    /// Sizes the per-token buffers for a batch of `d.n` tokens.
    fn fit(&mut self, d: &Dims) {
        let n = d.n;
        resize(&mut self.x, n * d.n_embd);
        resize(&mut self.xn, n * d.n_embd);
        resize(&mut self.qkv, n * d.qkv_dim);
        resize(&mut self.q, n * d.q_dim);
        resize(&mut self.attn, n * d.q_dim);
        resize(&mut self.proj, n * d.n_embd);
        resize(&mut self.gate_up, n * 2 * d.n_ff);
        resize(&mut self.ffn_hidden, n * d.n_ff);
        resize(&mut self.cos, n * d.half_rot);
        resize(&mut self.sin, n * d.half_rot);
    }
}

/// The sizes of one pass over `n` tokens.
#[derive(Clone, Copy)]
struct Dims {
    /// Tokens in the batch.
    n: usize,
    n_embd: usize,
    head_dim: usize,
    /// `n_head * head_dim`
    q_dim: usize,
    /// `n_kv_head * head_dim`
    kv_dim: usize,
    /// `q_dim + 2 kv_dim`: one row of the fused q | k | v projection.
    qkv_dim: usize,
    n_ff: usize,
    /// `n_rot / 2`: RoPE angles per position.
    half_rot: usize,
}

impl Dims {
    fn new(c: &super::config::Config, n: usize) -> Dims {
        let q_dim = c.n_head * c.head_dim;
        let kv_dim = c.n_kv_head * c.head_dim;
        Dims {
            n,
            n_embd: c.n_embd,
            head_dim: c.head_dim,
            q_dim,
            kv_dim,
            qkv_dim: q_dim + 2 * kv_dim,
            n_ff: c.n_ff,
            half_rot: c.n_rot / 2,
        }
    }
}

/// A conversation's state: the KV cache, its position, and the buffers of the pass.
pub struct Session<'m> {
    model: &'m Model,
    n_ctx: usize,
    n_past: usize,
    /// The ids in the cache, in order (`tokens.len() == n_past`), for prefix reuse.
    tokens: Vec<u32>,
    batch: usize,
    kv: KvCache,
    rope_factors: Option<&'m [f32]>,
    buf: Buffers,
    /// Time per part of the forward pass, when enabled ([`Session::enable_profile`]).
    profile: Option<Profile>,
}

/// Which rows of a batch get logits.
#[derive(Clone, Copy, Debug)]
enum Logits {
    None,
    Row(usize),
    All,
}

/// The parts of the forward pass that [`Profile`] times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    AttnQkv,
    /// RoPE, KV cache store and attention over the cache.
    Attention,
    AttnOutput,
    /// ffn_up (gate and up).
    FfnUp,
    FfnDown,
    Output,
    /// Embedding rows, RoPE angles, norms, SwiGLU, residual adds, the NaN check.
    Other,
}

impl Part {
    pub const ALL: [Part; 7] = [
        Part::AttnQkv,
        Part::Attention,
        Part::AttnOutput,
        Part::FfnUp,
        Part::FfnDown,
        Part::Output,
        Part::Other,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Part::AttnQkv => "matmul attn_qkv",
            Part::Attention => "attention (RoPE, KV store, softmax·V)",
            Part::AttnOutput => "matmul attn_output",
            Part::FfnUp => "matmul ffn_up (gate|up)",
            Part::FfnDown => "matmul ffn_down",
            Part::Output => "matmul output (logits)",
            Part::Other => "norms, SwiGLU, residuals, embeddings",
        }
    }
}

/// Accumulated wall-clock time per [`Part`] over the evaluations of a session.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub time: [std::time::Duration; 7],
    /// Tokens evaluated and calls to the forward pass.
    pub tokens: usize,
    pub calls: usize,
}

impl Profile {
    fn add(&mut self, lap: &Lap, n: usize) {
        for (t, l) in self.time.iter_mut().zip(&lap.time) {
            *t += *l;
        }
        self.tokens += n;
        self.calls += 1;
    }
}

/// Splits the time of one forward pass into parts: `mark(part)` books the time since the
/// previous mark to `part` (nothing at all when disabled).
struct Lap {
    last: Option<std::time::Instant>,
    time: [std::time::Duration; 7],
}

impl Lap {
    fn new(enabled: bool) -> Lap {
        Lap {
            last: enabled.then(std::time::Instant::now),
            time: Default::default(),
        }
    }
    fn mark(&mut self, part: Part) {
        if let Some(last) = self.last {
            let now = std::time::Instant::now();
            // `Part`'s discriminants are its index in `Part::ALL`.
            self.time[part as usize] += now - last;
            self.last = Some(now);
        }
    }
}

impl<'m> Session<'m> {
    pub(super) fn new(
        model: &'m Model,
        n_ctx: usize,
        batch: usize,
        cache: (CacheType, CacheType),
    ) -> Result<Session<'m>> {
        let c = &model.config;
        if n_ctx == 0 {
            return Err(Error::InvalidInput(
                "context size must be at least 1".into(),
            ));
        }
        // LongRoPE: long factors when the context exceeds the original one (llama.cpp's
        // rule; transformers decides by sequence length, equal when n_ctx = tokens).
        let w = &model.weights;
        let rope_factors = if let Some(f) = w.rope_freqs.as_deref() {
            Some(f)
        } else if n_ctx > c.n_ctx_orig {
            w.rope_factors_long
                .as_deref()
                .or(w.rope_factors_short.as_deref())
        } else {
            w.rope_factors_short
                .as_deref()
                .or(w.rope_factors_long.as_deref())
        };
        Ok(Session {
            model,
            n_ctx,
            n_past: 0,
            tokens: Vec::new(),
            batch: batch.max(1),
            kv: KvCache::new(
                cache.0,
                cache.1,
                c.n_layer,
                n_ctx,
                c.n_kv_head * c.head_dim,
                c.head_dim,
            )
            .map_err(Error::InvalidInput)?,
            rope_factors,
            buf: Buffers::default(),
            profile: None,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    /// Tokens in the KV cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }
    pub fn kv_cache_bytes(&self) -> usize {
        self.kv.bytes()
    }
    /// Forgets everything (the cache is overwritten as new tokens come).
    pub fn reset(&mut self) {
        self.n_past = 0;
        self.tokens.clear();
    }
    /// Keeps only the first `n` tokens (to reuse a common prompt prefix).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
        self.tokens.truncate(self.n_past);
    }

    /// The ids in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Keeps the longest cached prefix shared with `ids` and returns how many of `ids`
    /// are already evaluated (always leaving at least one to evaluate, for its logits).
    pub fn reuse_prefix(&mut self, ids: &[u32]) -> usize {
        let common = self
            .tokens
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len().saturating_sub(1));
        self.truncate(common);
        common
    }

    /// The model this session runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Evaluates `tokens` after those already in the cache and returns the logits of
    /// the last one (`[n_vocab]`).
    pub fn eval(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        if tokens.is_empty() {
            return Err(Error::InvalidInput("eval: no tokens".into()));
        }
        self.check_room(tokens.len())?;
        let n_vocab = self.model.weights.n_vocab;
        let n_chunks = tokens.len().div_ceil(self.batch);
        for (i, chunk) in tokens.chunks(self.batch).enumerate() {
            // Logits are needed for the very last token only: none for earlier chunks.
            let rows = if i + 1 == n_chunks {
                Logits::Row(chunk.len() - 1)
            } else {
                Logits::None
            };
            self.forward(chunk, rows)?;
        }
        Ok(&self.buf.logits[..n_vocab])
    }

    /// Starts timing the parts of every later evaluation (see [`Profile`]).
    pub fn enable_profile(&mut self) {
        self.profile.get_or_insert_with(Profile::default);
    }

    /// Stops timing and forgets the time so far.
    pub fn disable_profile(&mut self) {
        self.profile = None;
    }

    /// The time per part so far, if enabled.
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    /// Evaluates `tokens` and returns the logits of every one (`[n_tokens][n_vocab]`).
    pub fn eval_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.check_room(tokens.len())?;
        let n_vocab = self.model.weights.n_vocab;
        let mut out = Vec::with_capacity(tokens.len() * n_vocab);
        for chunk in tokens.chunks(self.batch) {
            self.forward(chunk, Logits::All)?;
            out.extend_from_slice(&self.buf.logits[..chunk.len() * n_vocab]);
        }
        Ok(out)
    }

    fn check_room(&self, n: usize) -> Result<()> {
        if self.n_past + n > self.n_ctx {
            return Err(Error::InvalidInput(format!(
                "context full: {} tokens in the cache + {n} new exceed the context size {} (use a larger -c/--ctx-size, up to the model's {})",
                self.n_past, self.n_ctx, self.model.config.n_ctx_train
            )));
        }
        Ok(())
    }

    /// One batch, with the logits `rows` asks for.
    ///
    /// Each step below is one call; the steps book their time to the profile's parts
    /// themselves (see [`Pass`]).
    fn forward(&mut self, tokens: &[u32], rows: Logits) -> Result<()> {
        let model = self.model;
        let (c, w) = (&model.config, &model.weights);
        let d = Dims::new(c, tokens.len());
        let b = &mut self.buf;
        b.fit(&d);
        let kv = &mut self.kv;
        let mut p = Pass {
            model,
            d,
            pos0: self.n_past,
            lap: Lap::new(self.profile.is_some()),
            scratch: &mut b.matmul,
        };

        // x = token_embd[tokens]
        p.embed(tokens, &mut b.x)?;
        // cos, sin = the RoPE angles of positions pos0.. (shared by all layers)
        p.rope_angles(self.rope_factors, &mut b.cos, &mut b.sin);
        for (l, layer) in w.layers.iter().enumerate() {
            // Attention block.
            // xn = rms_norm(x) * attn_norm
            p.rms_norm(&b.x, &layer.attn_norm, &mut b.xn);
            // qkv = xn · attn_qkvᵀ
            p.attn_qkv(&layer.qkv, &b.xn, &mut b.qkv, &mut b.split)?;
            // q, k = rope(q, k): each head rotated by its position
            p.rope(&mut b.qkv, &b.cos, &b.sin);
            // kv_cache[l][pos0..] = k, v (and q to rows of its own)
            p.kv_cache_write(kv, l, &b.qkv, &mut b.q);
            // attn = softmax(q · kᵀ / √head_dim, causal) · v over the cache
            p.attention(kv, l, &b.q, &mut b.attn);
            // proj = attn · attn_outputᵀ
            p.matmul(Part::AttnOutput, &layer.attn_output, &b.attn, &mut b.proj)?;
            // x = x + proj
            p.residual(&mut b.x, &b.proj);

            // Feed-forward block.
            // xn = rms_norm(x) * ffn_norm
            p.rms_norm(&b.x, &layer.ffn_norm, &mut b.xn);
            // gate | up = xn · ffn_upᵀ
            p.ffn_gate_up(
                &layer.gate_up,
                &b.xn,
                &mut b.gate_up,
                &mut b.split,
                &mut b.split_up,
            )?;
            // ffn_hidden = silu(gate) * up
            p.swiglu(&b.gate_up, &mut b.ffn_hidden);
            // proj = ffn_hidden · ffn_downᵀ
            p.matmul(Part::FfnDown, &layer.ffn_down, &b.ffn_hidden, &mut b.proj)?;
            // x = x + proj
            p.residual(&mut b.x, &b.proj);
            // NaN/inf here means corrupt weights: an error naming the layer, not garbage
            p.check_finite(l, &b.x)?;
        }

        // Only the rows whose logits are wanted: one, all, or none (a prompt's chunks
        // before its last: a 512-token chunk's logits would be 200 MiB and 4% of its
        // arithmetic, all thrown away).
        let rows = match rows {
            Logits::Row(r) => Some(r..r + 1),
            Logits::All => Some(0..d.n),
            Logits::None => None,
        };
        if let Some(rows) = rows {
            let x = &b.x[rows.start * d.n_embd..rows.end * d.n_embd];
            let xn = &mut b.xn[..x.len()];
            // xn = rms_norm(x) * output_norm
            p.rms_norm(x, &w.output_norm, xn);
            // logits = xn · outputᵀ
            p.matmul(Part::Output, &w.output, xn, &mut b.logits)?;
        }

        if let Some(profile) = &mut self.profile {
            profile.add(&p.lap, d.n);
        }
        self.n_past += d.n;
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }
}

/// One forward pass's context for its steps: the model, the sizes, the first position,
/// the matmul scratch, and the stopwatch. Each step ends by booking the time since the
/// previous step to its [`Part`] (nothing when profiling is off).
struct Pass<'a> {
    model: &'a Model,
    d: Dims,
    /// Position of the batch's first token (tokens already in the cache).
    pos0: usize,
    lap: Lap,
    scratch: &'a mut MatmulScratch,
}

impl Pass<'_> {
    /// `x[t] = token_embd[tokens[t]]`, dequantizing only the rows used.
    fn embed(&mut self, tokens: &[u32], x: &mut [f32]) -> Result<()> {
        let w = &self.model.weights;
        let e = self.d.n_embd;
        let embd = &w.token_embd;
        let embd_bytes = self.model.bytes(embd);
        let row_bytes = embd.row_bytes();
        for (t, &id) in tokens.iter().enumerate() {
            let id = id as usize;
            if id >= w.n_vocab {
                return Err(Error::InvalidInput(format!(
                    "token id {id} is out of range (the model has {} tokens)",
                    w.n_vocab
                )));
            }
            let row = &embd_bytes[id * row_bytes..(id + 1) * row_bytes];
            phiq_kernels::dynamic::dequantize(embd.ty, row, &mut x[t * e..(t + 1) * e])
                .map_err(|err| kernel_error(embd, err))?;
        }
        self.lap.mark(Part::Other);
        Ok(())
    }

    /// `cos`, `sin` `[n][n_rot / 2]`: the RoPE angles of positions `pos0..pos0 + n`,
    /// scaled by the LongRoPE `factors` when the file has them.
    fn rope_angles(&mut self, factors: Option<&[f32]>, cos: &mut [f32], sin: &mut [f32]) {
        let c = &self.model.config;
        let half_rot = self.d.half_rot;
        for t in 0..self.d.n {
            ops::rope_cache_scaled(
                self.pos0 + t,
                1.0 / c.rope_linear_factor,
                c.n_rot,
                c.rope_base,
                factors,
                c.rope_attn_factor,
                &mut cos[t * half_rot..(t + 1) * half_rot],
                &mut sin[t * half_rot..(t + 1) * half_rot],
            );
        }
        self.lap.mark(Part::Other);
    }

    /// `out[t] = rms_norm(x[t]) * weight` for every row of `x`.
    fn rms_norm(&mut self, x: &[f32], weight: &[f32], out: &mut [f32]) {
        let (eps, e) = (self.model.config.rms_eps, self.d.n_embd);
        // The rows split among the threads (each row's norm is the same whoever computes it).
        let rows = (x.len() / e).min(out.len() / e);
        self.model.team.install(|| {
            par::chunks_mut(&mut out[..rows * e], e, |t, o| {
                ops::rms_norm(&x[t * e..(t + 1) * e], weight, eps, o)
            })
        });
        self.lap.mark(Part::Other);
    }

    /// `qkv[t] = q | k | v` of `xn[t]`: one matmul when the file fuses the projections,
    /// else three whose results are laid out as the fused rows.
    fn attn_qkv(
        &mut self,
        weights: &Qkv,
        xn: &[f32],
        qkv: &mut Vec<f32>,
        split: &mut Vec<f32>,
    ) -> Result<()> {
        let Dims {
            n,
            q_dim,
            kv_dim,
            qkv_dim,
            ..
        } = self.d;
        match weights {
            Qkv::Fused(m) => self.matmul_weights(m, xn, qkv)?,
            Qkv::Separate { q, k, v } => {
                for (m, off, width) in [
                    (q, 0, q_dim),
                    (k, q_dim, kv_dim),
                    (v, q_dim + kv_dim, kv_dim),
                ] {
                    resize(split, n * width);
                    self.matmul_weights(m, xn, split)?;
                    for t in 0..n {
                        qkv[t * qkv_dim + off..t * qkv_dim + off + width]
                            .copy_from_slice(&split[t * width..(t + 1) * width]);
                    }
                }
            }
        }
        self.lap.mark(Part::AttnQkv);
        Ok(())
    }

    /// Rotates every head of q and k in place by its token's angles (NeoX RoPE for `phi3`:
    /// the two halves of a head are the pairs; normal RoPE for `llama`: adjacent
    /// dimensions); v is left as it is.
    fn rope(&mut self, qkv: &mut [f32], cos: &[f32], sin: &[f32]) {
        let Dims {
            n,
            head_dim,
            q_dim,
            kv_dim,
            qkv_dim,
            half_rot,
            ..
        } = self.d;
        for t in 0..n {
            let row = &mut qkv[t * qkv_dim..(t + 1) * qkv_dim];
            let (cos, sin) = (
                &cos[t * half_rot..(t + 1) * half_rot],
                &sin[t * half_rot..(t + 1) * half_rot],
            );
            let rotate = match self.model.config.rope_style {
                RopeStyle::Neox => ops::rope_neox,
                RopeStyle::Norm => ops::rope_norm,
            };
            for head in row[..q_dim + kv_dim].chunks_exact_mut(head_dim) {
                rotate(head, cos, sin);
            }
        }
        self.lap.mark(Part::Attention);
    }

    /// Stores each token's k and v in layer `l`'s cache at its position, and copies its
    /// q to `q` `[n][q_dim]` (attention reads q contiguous).
    fn kv_cache_write(&mut self, kv: &mut KvCache, l: usize, qkv: &[f32], q: &mut [f32]) {
        let Dims {
            n,
            q_dim,
            kv_dim,
            qkv_dim,
            ..
        } = self.d;
        for t in 0..n {
            let row = &qkv[t * qkv_dim..(t + 1) * qkv_dim];
            q[t * q_dim..(t + 1) * q_dim].copy_from_slice(&row[..q_dim]);
            kv.store(
                l,
                self.pos0 + t,
                &row[q_dim..q_dim + kv_dim],
                &row[q_dim + kv_dim..],
            );
        }
        self.lap.mark(Part::Attention);
    }

    /// `attn = softmax(q · kᵀ / √head_dim) · v` per head over layer `l`'s cached
    /// positions (causal; within the sliding window when the model has one).
    fn attention(&mut self, kv: &KvCache, l: usize, q: &[f32], attn: &mut [f32]) {
        let c = &self.model.config;
        let head_dim = self.d.head_dim;
        let shape = AttnShape {
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            head_dim,
            n_past: self.pos0,
            scale: 1.0 / (head_dim as f32).sqrt(),
            window: c.sliding_window,
            layout: kv.layout(),
        };
        let isa = self.model.isa;
        let per_layer = kv.layer_values();
        // The typed slices of layer `l` (each in its own elements: values / QK).
        fn layer<T: phiq_kernels::attention::KvElem>(b: &[T], l: usize, n: usize) -> &[T] {
            let n = n / T::QK;
            &b[l * n..(l + 1) * n]
        }
        self.model.team.install(|| {
            with_store!(&kv.k, kb => with_store!(&kv.v, vb => attention(
                q,
                layer(kb, l, per_layer),
                layer(vb, l, per_layer),
                shape,
                attn,
                isa,
            )))
        });
        self.lap.mark(Part::Attention);
    }

    /// `x += y`: the residual connection.
    fn residual(&mut self, x: &mut [f32], y: &[f32]) {
        let e = self.d.n_embd;
        // By token rows among the threads: a prompt's stream is megabytes.
        self.model
            .team
            .install(|| par::chunks_mut(x, e, |t, xr| ops::add(xr, &y[t * e..t * e + xr.len()])));
        self.lap.mark(Part::Other);
    }

    /// `gate_up[t] = gate | up` of `xn[t]`: one matmul when the file fuses them (ffn_up
    /// holds both), else two whose results are laid out as the fused rows.
    fn ffn_gate_up(
        &mut self,
        weights: &GateUp,
        xn: &[f32],
        gate_up: &mut Vec<f32>,
        split: &mut Vec<f32>,
        split_up: &mut Vec<f32>,
    ) -> Result<()> {
        match weights {
            GateUp::Fused(m) => self.matmul_weights(m, xn, gate_up)?,
            GateUp::Separate { gate, up } => {
                let (n, ff) = (self.d.n, self.d.n_ff);
                resize(split, n * ff);
                resize(split_up, n * ff);
                self.matmul_weights(gate, xn, split)?;
                self.matmul_weights(up, xn, split_up)?;
                for t in 0..n {
                    let row = &mut gate_up[t * 2 * ff..(t + 1) * 2 * ff];
                    row[..ff].copy_from_slice(&split[t * ff..(t + 1) * ff]);
                    row[ff..].copy_from_slice(&split_up[t * ff..(t + 1) * ff]);
                }
            }
        }
        self.lap.mark(Part::FfnUp);
        Ok(())
    }

    /// `hidden[t] = silu(gate[t]) * up[t]`, the rows split among the threads.
    fn swiglu(&mut self, gate_up: &[f32], hidden: &mut [f32]) {
        let ff = self.d.n_ff;
        let swiglu = ops::swiglu_kernel(self.model.isa);
        self.model.team.install(|| {
            par::chunks_mut(hidden, ff, |t, h| {
                swiglu(&gate_up[t * 2 * ff..(t + 1) * 2 * ff], h)
            })
        });
        self.lap.mark(Part::Other);
    }

    /// An error naming layer `l` when the residual stream holds a NaN or an infinity,
    /// which only corrupt or out-of-range weights produce.
    fn check_finite(&mut self, l: usize, x: &[f32]) -> Result<()> {
        if !x.iter().all(|v| v.is_finite()) {
            return Err(Error::InvalidModel(format!(
                "non-finite values (NaN/inf) in the hidden state after layer {l}: the weights of blk.{l} are corrupt or out of range"
            )));
        }
        self.lap.mark(Part::Other);
        Ok(())
    }

    /// `y = x · mᵀ`, its time booked to `part`.
    fn matmul(&mut self, part: Part, m: &Matrix, x: &[f32], y: &mut Vec<f32>) -> Result<()> {
        self.matmul_weights(m, x, y)?;
        self.lap.mark(part);
        Ok(())
    }

    /// `y = x · mᵀ` for a weight matrix of the model (`y` sized `[n_tokens][m.n_out]`),
    /// on the model's thread pool.
    fn matmul_weights(&mut self, m: &Matrix, x: &[f32], y: &mut Vec<f32>) -> Result<()> {
        let n_tokens = x.len() / m.n_in;
        resize(y, n_tokens * m.n_out);
        let (w, isa, scratch) = (self.model.bytes(m), self.model.isa, &mut *self.scratch);
        self.model
            .team
            .install(|| matmul(m.ty, w, m.n_in, x, y, scratch, isa))
            .map_err(|e| kernel_error(m, e))
    }
}

fn resize(v: &mut Vec<f32>, n: usize) {
    if v.len() != n {
        v.resize(n, 0.0);
    }
}

fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], e: usize) {
    for (xr, or) in x.chunks_exact(e).zip(out.chunks_exact_mut(e)) {
        ops::rms_norm(xr, weight, eps, or);
    }
}

fn kernel_error(m: &Matrix, err: phiq_kernels::KernelError) -> Error {
    match err {
        phiq_kernels::KernelError::Unsupported(t) => Error::UnsupportedType {
            tensor: m.name.clone(),
            ty: t.name().to_string(),
        },
        other => Error::InvalidModel(format!("tensor '{}': {other}", m.name)),
    }
}

impl Session<'_> {
    /// Evaluates `tokens` like [`Session::eval`] and returns the final hidden state of
    /// every one, after output_norm (`[n_tokens][n_embd]`): the vectors the logits are
    /// computed from, and what embeddings pool.
    pub fn eval_hidden(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidInput("eval_hidden: no tokens".into()));
        }
        self.check_room(tokens.len())?;
        let (c, w) = (&self.model.config, &self.model.weights);
        let e = c.n_embd;
        let mut out = vec![0.0; tokens.len() * e];
        for (chunk, rows) in tokens
            .chunks(self.batch)
            .zip(out.chunks_mut(self.batch * e))
        {
            // `forward` leaves the chunk's final residual stream in `buf.x`.
            self.forward(chunk, Logits::None)?;
            rms_norm_rows(
                &self.buf.x[..chunk.len() * e],
                &w.output_norm,
                c.rms_eps,
                rows,
                e,
            );
        }
        Ok(out)
    }
}

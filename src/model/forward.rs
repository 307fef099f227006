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

use super::kv_cache::{CacheType, KvCache};
use super::weights::{GateUp, Matrix, Qkv};
use super::Model;
use crate::error::{Error, Result};

/// Default number of tokens evaluated per batch.
pub const DEFAULT_BATCH: usize = 512;

/// Activation buffers for one batch, sized once for the batch capacity.
#[derive(Default)]
struct Buffers {
    x: Vec<f32>,       // [n][n_embd] residual stream
    xn: Vec<f32>,      // [n][n_embd] normed
    qkv: Vec<f32>,     // [n][q_dim + 2 kv_dim]
    q: Vec<f32>,       // [n][q_dim]
    attn: Vec<f32>,    // [n][q_dim]
    proj: Vec<f32>,    // [n][n_embd] attn_output / ffn_down results
    gate_up: Vec<f32>, // [n][2 n_ff]
    h: Vec<f32>,       // [n][n_ff]
    tmp: Vec<f32>,     // separate q/k/v or gate/up results before interleaving
    tmp2: Vec<f32>,
    cos: Vec<f32>, // [n][n_rot / 2]
    sin: Vec<f32>,
    logits: Vec<f32>, // [rows][n_vocab]
    mm: MatmulScratch,
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
        cache: CacheType,
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
        let rope_factors = if n_ctx > c.n_ctx_orig {
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
                cache,
                c.n_layer,
                n_ctx,
                c.n_kv_head * c.head_dim,
                c.head_dim,
            ),
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
            // Logits are needed for the very last token only.
            let last = i + 1 == n_chunks;
            self.forward(chunk, last.then_some(chunk.len() - 1))?;
        }
        Ok(&self.buf.logits[..n_vocab])
    }

    /// Starts timing the parts of every later evaluation (see [`Profile`]).
    pub fn enable_profile(&mut self) {
        self.profile.get_or_insert_with(Profile::default);
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
            self.forward(chunk, None)?;
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

    /// One batch. `only_row`: compute logits for that row only (`None`: every row).
    fn forward(&mut self, tokens: &[u32], only_row: Option<usize>) -> Result<()> {
        let model = self.model;
        let c = &model.config;
        let w = &model.weights;
        let n = tokens.len();
        let (e, hd) = (c.n_embd, c.head_dim);
        let q_dim = c.n_head * hd;
        let kv_dim = c.n_kv_head * hd;
        let qkv_dim = q_dim + 2 * kv_dim;
        let half_rot = c.n_rot / 2;
        let isa = model.isa;
        let mut lap = Lap::new(self.profile.is_some());
        let b = &mut self.buf;
        let pos0 = self.n_past;

        resize(&mut b.x, n * e);
        resize(&mut b.xn, n * e);
        resize(&mut b.qkv, n * qkv_dim);
        resize(&mut b.q, n * q_dim);
        resize(&mut b.attn, n * q_dim);
        resize(&mut b.proj, n * e);
        resize(&mut b.gate_up, n * 2 * c.n_ff);
        resize(&mut b.h, n * c.n_ff);
        resize(&mut b.cos, n * half_rot);
        resize(&mut b.sin, n * half_rot);

        // Token embeddings: dequantize only the rows used.
        let embd = &w.token_embd;
        let embd_bytes = model.bytes(embd);
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
            phiq_kernels::dynamic::dequantize(embd.ty, row, &mut b.x[t * e..(t + 1) * e])
                .map_err(|err| kernel_error(embd, err))?;
        }

        // RoPE angles of every position in the batch (shared by all layers).
        for t in 0..n {
            ops::rope_cache(
                pos0 + t,
                c.n_rot,
                c.rope_base,
                self.rope_factors,
                c.rope_attn_factor,
                &mut b.cos[t * half_rot..(t + 1) * half_rot],
                &mut b.sin[t * half_rot..(t + 1) * half_rot],
            );
        }

        let team = &model.team;
        lap.mark(Part::Other);
        for (l, layer) in w.layers.iter().enumerate() {
            // Attention block.
            rms_norm_rows(&b.x, &layer.attn_norm, c.rms_eps, &mut b.xn, e);
            lap.mark(Part::Other);
            match &layer.qkv {
                Qkv::Fused(m) => mm(model, m, &b.xn, &mut b.qkv, &mut b.mm)?,
                Qkv::Separate { q, k, v } => {
                    // Lay the three results out as the fused [q | k | v] rows.
                    for (m, off, width) in [
                        (q, 0, q_dim),
                        (k, q_dim, kv_dim),
                        (v, q_dim + kv_dim, kv_dim),
                    ] {
                        resize(&mut b.tmp, n * width);
                        mm(model, m, &b.xn, &mut b.tmp, &mut b.mm)?;
                        for t in 0..n {
                            b.qkv[t * qkv_dim + off..t * qkv_dim + off + width]
                                .copy_from_slice(&b.tmp[t * width..(t + 1) * width]);
                        }
                    }
                }
            }
            lap.mark(Part::AttnQkv);
            for t in 0..n {
                let row = &mut b.qkv[t * qkv_dim..(t + 1) * qkv_dim];
                let (cos, sin) = (
                    &b.cos[t * half_rot..(t + 1) * half_rot],
                    &b.sin[t * half_rot..(t + 1) * half_rot],
                );
                for head in row[..q_dim + kv_dim].chunks_exact_mut(hd) {
                    ops::rope_neox(head, cos, sin);
                }
                b.q[t * q_dim..(t + 1) * q_dim].copy_from_slice(&row[..q_dim]);
                self.kv.store(
                    l,
                    pos0 + t,
                    &row[q_dim..q_dim + kv_dim],
                    &row[q_dim + kv_dim..],
                );
            }
            let shape = AttnShape {
                n_head: c.n_head,
                n_kv_head: c.n_kv_head,
                head_dim: hd,
                n_past: pos0,
                scale: 1.0 / (hd as f32).sqrt(),
                window: c.sliding_window,
                layout: self.kv.layout(),
            };
            let (q, out) = (&b.q, &mut b.attn);
            team.install(|| match &self.kv {
                KvCache::F16(c) => {
                    let (k, v) = c.layer(l);
                    attention(q, k, v, shape, out, isa)
                }
                KvCache::F32(c) => {
                    let (k, v) = c.layer(l);
                    attention(q, k, v, shape, out, isa)
                }
            });
            lap.mark(Part::Attention);
            mm(model, &layer.attn_output, &b.attn, &mut b.proj, &mut b.mm)?;
            lap.mark(Part::AttnOutput);
            ops::add(&mut b.x, &b.proj);

            // Feed-forward block.
            rms_norm_rows(&b.x, &layer.ffn_norm, c.rms_eps, &mut b.xn, e);
            lap.mark(Part::Other);
            match &layer.gate_up {
                GateUp::Fused(m) => mm(model, m, &b.xn, &mut b.gate_up, &mut b.mm)?,
                GateUp::Separate { gate, up } => {
                    let ff = c.n_ff;
                    resize(&mut b.tmp, n * ff);
                    resize(&mut b.tmp2, n * ff);
                    mm(model, gate, &b.xn, &mut b.tmp, &mut b.mm)?;
                    mm(model, up, &b.xn, &mut b.tmp2, &mut b.mm)?;
                    for t in 0..n {
                        let row = &mut b.gate_up[t * 2 * ff..(t + 1) * 2 * ff];
                        row[..ff].copy_from_slice(&b.tmp[t * ff..(t + 1) * ff]);
                        row[ff..].copy_from_slice(&b.tmp2[t * ff..(t + 1) * ff]);
                    }
                }
            }
            lap.mark(Part::FfnUp);
            let ff = c.n_ff;
            let gate_up = &b.gate_up;
            let swiglu = ops::swiglu_kernel(isa);
            team.install(|| {
                par::chunks_mut(&mut b.h, ff, |t, h| {
                    swiglu(&gate_up[t * 2 * ff..(t + 1) * 2 * ff], h)
                })
            });
            lap.mark(Part::Other);
            mm(model, &layer.ffn_down, &b.h, &mut b.proj, &mut b.mm)?;
            lap.mark(Part::FfnDown);
            ops::add(&mut b.x, &b.proj);

            if !b.x.iter().all(|v| v.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "non-finite values (NaN/inf) in the hidden state after layer {l}: the weights of blk.{l} are corrupt or out of range"
                )));
            }
        }

        // Output norm and logits (of one row, or all).
        let rows = match only_row {
            Some(r) => r..r + 1,
            None => 0..n,
        };
        let m = rows.len();
        let xn = &mut b.xn[..m * e];
        rms_norm_rows(
            &b.x[rows.start * e..rows.end * e],
            &w.output_norm,
            c.rms_eps,
            xn,
            e,
        );
        resize(&mut b.logits, m * w.n_vocab);
        lap.mark(Part::Other);
        mm(model, &w.output, &b.xn[..m * e], &mut b.logits, &mut b.mm)?;
        lap.mark(Part::Output);
        if let Some(p) = &mut self.profile {
            p.add(&lap, n);
        }
        self.n_past += n;
        self.tokens.extend_from_slice(tokens);
        Ok(())
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
        other => Error::InvalidInput(format!("tensor '{}': {other}", m.name)),
    }
}

/// `y = x · Wᵀ` for a weight matrix of the model, on the model's thread pool.
fn mm(
    model: &Model,
    m: &Matrix,
    x: &[f32],
    y: &mut Vec<f32>,
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let n_tokens = x.len() / m.n_in;
    resize(y, n_tokens * m.n_out);
    let w = model.bytes(m);
    model
        .team
        .install(|| matmul(m.ty, w, m.n_in, x, y, scratch, model.isa))
        .map_err(|e| kernel_error(m, e))
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
            // `forward` leaves the chunk's final residual stream in `buf.x`; asking for
            // one row of logits is its cheapest mode (they are not used).
            self.forward(chunk, Some(chunk.len() - 1))?;
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

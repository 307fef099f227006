//! Text generation: evaluate a prompt, then sample one token at a time, streaming the
//! text as it becomes complete, until a stop token, a stop string, the token limit or a
//! full context.
//!
//! ```no_run
//! use phiq::{GenerateParams, Model, ModelOptions};
//! let model = Model::load("phi-4-Q4_K_M.gguf", &ModelOptions::default())?;
//! let tok = model.tokenizer()?;
//! let prompt = tok.encode("The capital of France is", true, false);
//! let mut session = model.session(2048)?;
//! let mut gen = session.generate(&prompt, GenerateParams::default())?;
//! for piece in &mut gen {
//!     print!("{}", piece?.text);
//! }
//! println!("\n[{:?}]", gen.stop_reason());
//! # Ok::<(), phiq::Error>(())
//! ```

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::Session;
use crate::sampling::{Sampler, SamplerParams};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// What to generate and when to stop.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Stop when the text contains one of these (the stop string is not emitted).
    pub stop_strings: Vec<String>,
    /// Stop tokens besides the model's own (eos, eot, `<|im_end|>`, ...).
    pub stop_tokens: Vec<u32>,
    /// Do not stop at the model's own stop tokens.
    pub ignore_eos: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            sampler: SamplerParams::default(),
            stop_strings: Vec::new(),
            stop_tokens: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` were generated.
    MaxTokens,
    /// A stop token was sampled (it is not part of the text).
    StopToken(u32),
    /// A stop string appeared in the text.
    StopString(String),
    /// The context is full.
    ContextFull,
    /// The caller stopped it ([`Generator::cancel`]).
    Cancelled,
}

/// A piece of generated text and the token that completed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub text: String,
    pub token: u32,
}

/// The log-probability of a generated token and of the most likely tokens at its
/// position, from the model's own distribution (log-softmax of the raw logits, before the
/// sampling settings reshape it), as OpenAI's `logprobs` reports them.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    /// The `n` most likely (token, logprob), most likely first.
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprob {
    /// The entry for `token` given the logits of its position, with the `top_n` best.
    pub fn from_logits(logits: &[f32], token: u32, top_n: usize) -> TokenLogprob {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // log-sum-exp in f64: 100k terms summed in f32 lose digits.
        let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
        let log_z = max as f64 + sum.ln();
        let lp = |id: u32| (logits[id as usize] as f64 - log_z) as f32;
        let mut top: Vec<u32> = (0..logits.len() as u32).collect();
        let n = top_n.min(top.len());
        let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        if n > 0 && n < top.len() {
            top.select_nth_unstable_by(n - 1, by_logit);
        }
        top.truncate(n);
        top.sort_by(by_logit);
        TokenLogprob {
            token,
            logprob: lp(token),
            top: top.into_iter().map(|id| (id, lp(id))).collect(),
        }
    }
}

/// Counts and times of a generation, like llama.cpp's timings.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub prompt_tokens: usize,
    /// Of the prompt, those that were already in the KV cache (not evaluated again).
    pub prompt_cached: usize,
    pub prompt_time: Duration,
    pub generated_tokens: usize,
    pub generation_time: Duration,
    pub sampling_time: Duration,
    /// Context shifts during the answer ([`Generator::shift_with`]), and the tokens they
    /// evaluated again (their time is in `generation_time`).
    pub context_shifts: usize,
    pub shift_tokens: usize,
}

/// The streaming generator: an iterator of text pieces. See the module doc.
pub struct Generator<'s, 'm> {
    session: &'s mut Session<'m>,
    tokenizer: &'m Tokenizer,
    decoder: StreamDecoder<'m>,
    sampler: Sampler,
    params: GenerateParams,
    logits: Vec<f32>,
    /// Text decoded but held back because it might begin a stop string.
    held: String,
    stop: Option<StopReason>,
    timings: Timings,
    /// With `Some(n)`, the log-probabilities of each generated token (and the n best).
    logprobs: Option<usize>,
    logprob_log: Vec<TokenLogprob>,
    /// The tokens generated so far (stop tokens excluded).
    generated: Vec<u32>,
    /// Called when the context is full: the tokens to go on from, or `None` to stop.
    shift: Option<ShiftFn<'s>>,
}

/// What [`Generator::shift_with`] takes: the answer so far → the tokens to continue from.
type ShiftFn<'s> = Box<dyn FnMut(&[u32]) -> Result<Option<Vec<u32>>> + Send + 's>;

impl<'m> Session<'m> {
    /// Evaluates `prompt` (reusing whatever prefix of it is already in the cache) and
    /// returns a generator of what follows.
    pub fn generate<'s>(
        &'s mut self,
        prompt: &[u32],
        params: GenerateParams,
    ) -> Result<Generator<'s, 'm>> {
        if prompt.is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        params.sampler.validate().map_err(Error::InvalidInput)?;
        let tokenizer = self.model().tokenizer()?;
        let mut sampler = Sampler::new(params.sampler.clone());
        for &id in prompt {
            sampler.accept(id);
        }
        let t0 = Instant::now();
        let cached = self.reuse_prefix(prompt);
        let logits = self.eval(&prompt[cached..])?.to_vec();
        let timings = Timings {
            prompt_tokens: prompt.len(),
            prompt_cached: cached,
            prompt_time: t0.elapsed(),
            ..Timings::default()
        };
        Ok(Generator {
            session: self,
            tokenizer,
            decoder: tokenizer.stream_decoder(),
            sampler,
            params,
            logits,
            held: String::new(),
            stop: None,
            timings,
            logprobs: None,
            logprob_log: Vec::new(),
            generated: Vec::new(),
            shift: None,
        })
    }
}

impl<'s> Generator<'s, '_> {
    /// Instead of stopping when the context is full, ask `f` what to continue from: given
    /// the tokens generated so far, it returns the whole token sequence the cache should
    /// hold next (a shorter prompt followed by those tokens, e.g.
    /// [`crate::ContextShift::shift`]), or `None` to stop with
    /// [`StopReason::ContextFull`]. The cache keeps the prefix it shares with the old one
    /// and evaluates the rest; generation goes on from its logits.
    pub fn shift_with(&mut self, f: impl FnMut(&[u32]) -> Result<Option<Vec<u32>>> + Send + 's) {
        self.shift = Some(Box::new(f));
    }

    /// The tokens generated so far (stop tokens excluded).
    pub fn tokens(&self) -> &[u32] {
        &self.generated
    }

    /// Why generation ended (`None` while it goes on).
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Records the log-probability of every token generated from now on, with the
    /// `top_n` most likely tokens at its position; [`Generator::take_logprobs`] hands
    /// them out.
    pub fn record_logprobs(&mut self, top_n: usize) {
        self.logprobs = Some(top_n);
    }

    /// The log-probabilities recorded since the last call, one per generated token (stop
    /// tokens excluded), in order.
    pub fn take_logprobs(&mut self) -> Vec<TokenLogprob> {
        std::mem::take(&mut self.logprob_log)
    }

    /// Ends the generation at the next call to `next` (e.g. on Ctrl-C).
    pub fn cancel(&mut self) {
        if self.stop.is_none() {
            self.stop = Some(StopReason::Cancelled);
        }
    }

    fn is_stop_token(&self, id: u32) -> bool {
        self.params.stop_tokens.contains(&id)
            || (!self.params.ignore_eos && self.tokenizer.is_stop(id))
    }

    /// The context is full and the last generated token is not evaluated yet: with a
    /// shift function, move to the sequence it gives (the prefix shared with the cache
    /// kept, the rest evaluated) and take its logits. `false`: no shift, stop.
    fn shift_context(&mut self) -> Result<bool> {
        let Some(f) = self.shift.as_mut() else {
            return Ok(false);
        };
        let Some(ids) = f(&self.generated)? else {
            return Ok(false);
        };
        if ids.is_empty() || ids.len() > self.session.n_ctx() {
            return Ok(false);
        }
        let t = Instant::now();
        let cached = self.session.reuse_prefix(&ids);
        let logits = self.session.eval(&ids[cached..])?;
        self.logits.clear();
        self.logits.extend_from_slice(logits);
        self.timings.generation_time += t.elapsed();
        self.timings.context_shifts += 1;
        self.timings.shift_tokens += ids.len() - cached;
        Ok(true)
    }

    /// Splits `held` into what can be emitted now and what must wait: text that could
    /// still grow into a stop string stays held.
    fn release(&mut self) -> String {
        if let Some((at, s)) = self
            .params
            .stop_strings
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s.clone())))
            .min_by_key(|(at, _)| *at)
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            self.stop = Some(StopReason::StopString(s));
            return out;
        }
        // Longest suffix of `held` that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.params.stop_strings {
            for (i, _) in self.held.char_indices() {
                let tail = &self.held[i..];
                if s.starts_with(tail) && tail.len() > keep {
                    keep = tail.len();
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        out
    }
}

impl Iterator for Generator<'_, '_> {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Result<Piece>> {
        loop {
            if self.stop.is_some() {
                // Flush what was held back for a stop string that never came.
                if !self.held.is_empty() && !matches!(self.stop, Some(StopReason::StopString(_))) {
                    let text = std::mem::take(&mut self.held);
                    return Some(Ok(Piece {
                        text,
                        token: u32::MAX,
                    }));
                }
                return None;
            }
            if self.timings.generated_tokens >= self.params.max_tokens {
                self.stop = Some(StopReason::MaxTokens);
                continue;
            }
            let t0 = Instant::now();
            let id = self.sampler.sample(&self.logits);
            self.sampler.accept(id);
            self.timings.sampling_time += t0.elapsed();
            if self.is_stop_token(id) {
                self.stop = Some(StopReason::StopToken(id));
                continue;
            }
            self.timings.generated_tokens += 1;
            self.generated.push(id);
            if let Some(top_n) = self.logprobs {
                // Before the eval below replaces the logits of this position.
                let entry = TokenLogprob::from_logits(&self.logits, id, top_n);
                self.logprob_log.push(entry);
            }
            let text = match self.decoder.push(id) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            // Evaluate the token now, so the next call has its logits (and the cache
            // holds the whole generated text when the caller stops).
            if self.session.n_past() >= self.session.n_ctx() {
                match self.shift_context() {
                    Ok(true) => {}
                    Ok(false) => self.stop = Some(StopReason::ContextFull),
                    Err(e) => return Some(Err(e)),
                }
            } else {
                let t1 = Instant::now();
                match self.session.eval(&[id]) {
                    Ok(l) => {
                        self.logits.clear();
                        self.logits.extend_from_slice(l);
                    }
                    Err(e) => return Some(Err(e)),
                }
                self.timings.generation_time += t1.elapsed();
            }
            self.held.push_str(&text);
            let out = self.release();
            if !out.is_empty() || self.stop.is_none() {
                return Some(Ok(Piece {
                    text: out,
                    token: id,
                }));
            }
        }
    }
}

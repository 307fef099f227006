//! Choosing the next token from the logits: greedy, or llama.cpp's default chain —
//! repetition/presence/frequency penalties over the last n tokens → top-k → top-p →
//! min-p → temperature → a seeded random draw.
//!
//! Over a 100k vocabulary a full sort per token would cost more than a small model's
//! forward pass, so top-k uses selection (`select_nth_unstable`, O(n)) and only the
//! k survivors are sorted. With top-k disabled, the candidates are sorted once.

use std::collections::{HashMap, VecDeque};

/// Sampling settings; the defaults are llama.cpp's.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// ≤ 0: greedy (argmax), deterministic.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the most likely one (0: none).
    pub min_p: f32,
    /// Divide positive / multiply negative logits of recent tokens (1: off).
    pub repeat_penalty: f32,
    /// Subtract from the logit of every recent token (0: off).
    pub presence_penalty: f32,
    /// Subtract count × this from the logit of recent tokens (0: off).
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repeat_last_n: 64,
            seed: 0x5eed,
        }
    }
}

impl SamplerParams {
    /// Greedy decoding.
    pub fn greedy() -> SamplerParams {
        SamplerParams {
            temperature: 0.0,
            ..SamplerParams::default()
        }
    }

    /// Checks ranges; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |what: &str| Err(what.to_string());
        if !self.temperature.is_finite() {
            return bad("--temp must be a finite number");
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad("--top-p must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("--min-p must be between 0 and 1");
        }
        if self.repeat_penalty <= 0.0 || !self.repeat_penalty.is_finite() {
            return bad("--repeat-penalty must be a positive number");
        }
        if !self.presence_penalty.is_finite() || !self.frequency_penalty.is_finite() {
            return bad("penalties must be finite numbers");
        }
        Ok(())
    }
}

/// splitmix64: small, fast, and the same sequence on every platform for a seed.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A stateful sampler: settings, random state, and the recent tokens for penalties.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplerParams,
    rng: Rng,
    recent: VecDeque<u32>,
    /// (logit, id) candidates, reused across tokens.
    candidates: Vec<(f32, u32)>,
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Sampler {
        let rng = Rng(params.seed);
        Sampler {
            params,
            rng,
            recent: VecDeque::new(),
            candidates: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Records a token of the context (prompt or generated) for the penalties.
    pub fn accept(&mut self, id: u32) {
        if self.params.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.params.repeat_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
    }

    /// Forgets the recent tokens (a new conversation).
    pub fn reset(&mut self) {
        self.recent.clear();
    }

    /// The next token for `logits` (`[n_vocab]`). Call [`Sampler::accept`] with it after.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = self.params.clone();
        let mut penalized: Option<HashMap<u32, usize>> = None;
        let penalties =
            p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
        if penalties && !self.recent.is_empty() {
            let mut counts = HashMap::new();
            for &id in &self.recent {
                *counts.entry(id).or_insert(0) += 1;
            }
            penalized = Some(counts);
        }
        let logit = |id: usize| -> f32 {
            let l = logits[id];
            match penalized.as_ref().and_then(|c| c.get(&(id as u32))) {
                None => l,
                Some(&count) => {
                    let l = if l > 0.0 {
                        l / p.repeat_penalty
                    } else {
                        l * p.repeat_penalty
                    };
                    l - count as f32 * p.frequency_penalty - p.presence_penalty
                }
            }
        };

        if p.temperature <= 0.0 {
            // Greedy: the first maximum (ties go to the lower id, as argmax does).
            let mut best = (f32::NEG_INFINITY, 0u32);
            for id in 0..logits.len() {
                let l = logit(id);
                if l > best.0 {
                    best = (l, id as u32);
                }
            }
            return best.1;
        }

        let c = &mut self.candidates;
        c.clear();
        c.extend(
            (0..logits.len())
                .map(|id| (logit(id), id as u32))
                .filter(|(l, _)| !l.is_nan()),
        );
        if c.is_empty() {
            return 0;
        }
        let by_logit_desc =
            |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if p.top_k > 0 && p.top_k < c.len() {
            c.select_nth_unstable_by(p.top_k - 1, by_logit_desc);
            c.truncate(p.top_k);
        }
        c.sort_unstable_by(by_logit_desc);

        // Probabilities at temperature 1 for top-p and min-p (llama.cpp applies the
        // temperature last).
        let max = c[0].0;
        let mut probs: Vec<f64> = c.iter().map(|(l, _)| ((l - max) as f64).exp()).collect();
        let sum: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= sum);
        let mut keep = c.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, q) in probs.iter().enumerate() {
                cum += q;
                if cum >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p as f64;
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
        }
        c.truncate(keep);

        // Temperature, then a draw.
        let t = p.temperature as f64;
        let weights: Vec<f64> = c
            .iter()
            .map(|(l, _)| (((l - max) as f64) / t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (w, (_, id)) in weights.iter().zip(c.iter()) {
            if r < *w {
                return *id;
            }
            r -= w;
        }
        c[c.len() - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(SamplerParams::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0]), 1);
    }

    #[test]
    fn seeded_runs_repeat_and_seeds_differ() {
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 300.0)
            .collect();
        let params = SamplerParams {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            temperature: 1.5,
            ..Default::default()
        };
        let draw = |seed| {
            let mut s = Sampler::new(SamplerParams {
                seed,
                ..params.clone()
            });
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn top_k_top_p_min_p_restrict_the_choice() {
        let logits = [5.0, 4.0, 3.0, -10.0, -10.0];
        for seed in 0..200 {
            let mut s = Sampler::new(SamplerParams {
                top_k: 2,
                seed,
                temperature: 5.0,
                top_p: 1.0,
                min_p: 0.0,
                ..Default::default()
            });
            assert!(s.sample(&logits) < 2);
            let mut s = Sampler::new(SamplerParams {
                top_k: 0,
                top_p: 0.5,
                seed,
                temperature: 5.0,
                min_p: 0.0,
                ..Default::default()
            });
            assert_eq!(s.sample(&logits), 0);
            let mut s = Sampler::new(SamplerParams {
                top_k: 0,
                top_p: 1.0,
                min_p: 0.3,
                seed,
                temperature: 5.0,
                ..Default::default()
            });
            assert!(s.sample(&logits) < 2); // p(2)/p(0) = e^-2 ≈ 0.135 < 0.3
        }
    }

    #[test]
    fn penalties_follow_llama_cpp() {
        let mut s = Sampler::new(SamplerParams {
            repeat_penalty: 4.0,
            ..SamplerParams::greedy()
        });
        s.accept(0);
        // 2.0 / 4 = 0.5 < 1.0: token 1 wins.
        assert_eq!(s.sample(&[2.0, 1.0]), 1);
        let mut s = Sampler::new(SamplerParams {
            frequency_penalty: 1.0,
            ..SamplerParams::greedy()
        });
        s.accept(0);
        s.accept(0);
        assert_eq!(s.sample(&[2.5, 1.0]), 1); // 2.5 - 2 = 0.5
    }

    #[test]
    fn validation_names_the_setting() {
        let e = SamplerParams {
            top_p: 2.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("--top-p"));
    }
}

//! Flags shared by the subcommands that run a model (`run`, `chat`, `bench`, …), named
//! as llama.cpp names them.

use std::path::PathBuf;

use phiq::model::CacheType;
use phiq::{Error, Model, ModelOptions, SamplerParams};

/// The demo model shipped in the repository, used when `-m` is not given.
pub const DEMO_MODEL: &str = "models/phiq-demo.gguf";

/// The context size when `-c` is not given (`phiq perplexity` has its own, llama.cpp's 512).
pub const DEFAULT_CTX: usize = 4096;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF model file [default: $PHIQ_MODEL, else the demo model models/phiq-demo.gguf].
    #[arg(short = 'm', long = "model", value_name = "FILE")]
    pub model: Option<PathBuf>,
    // `None` when not given, so that a subcommand with another default (perplexity) can
    // tell an explicit `-c 4096` from no `-c`.
    /// Context size in tokens, 0: the model's own [default: 4096; perplexity: 512].
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx_size: Option<usize>,
    /// Threads [default: the number of physical cores].
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    /// Tokens per batch when evaluating a prompt.
    #[arg(
        short = 'b',
        long = "batch-size",
        default_value_t = 512,
        value_name = "N"
    )]
    pub batch_size: usize,
    /// KV cache element type: f16 (half the memory) or f32.
    #[arg(long = "cache-type", default_value = "f16", value_name = "f16|f32")]
    pub cache_type: CacheType,
}

impl ModelArgs {
    pub fn model_path(&self) -> phiq::Result<PathBuf> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        if let Some(m) = std::env::var_os("PHIQ_MODEL") {
            return Ok(PathBuf::from(m));
        }
        let demo = PathBuf::from(DEMO_MODEL);
        if demo.exists() {
            Ok(demo)
        } else {
            Err(Error::InvalidInput(format!(
                "no model given: pass -m FILE (a Phi-4 GGUF), set PHIQ_MODEL, or run from the phiq repository, where {DEMO_MODEL} is the demo model"
            )))
        }
    }

    pub fn load(&self) -> phiq::Result<Model> {
        if self.threads == Some(0) {
            return Err(Error::InvalidInput(
                "-t/--threads must be at least 1".into(),
            ));
        }
        let opts = ModelOptions {
            threads: self.threads,
            batch_size: Some(self.batch_size.max(1)),
            cache_type: self.cache_type,
        };
        Model::load(self.model_path()?, &opts)
    }

    /// The context size to use: `-c` (else [`DEFAULT_CTX`]), 0 meaning the model's own;
    /// never above the model's.
    pub fn n_ctx(&self, model: &Model) -> usize {
        let train = model.config.n_ctx_train;
        match self.ctx_size.unwrap_or(DEFAULT_CTX) {
            0 => train,
            n => n.min(train),
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy (deterministic).
    #[arg(long = "temp", default_value_t = 0.8, value_name = "T")]
    pub temp: f32,
    /// Top-k sampling (0 = off).
    #[arg(long = "top-k", default_value_t = 40, value_name = "K")]
    pub top_k: usize,
    /// Top-p (nucleus) sampling (1.0 = off).
    #[arg(long = "top-p", default_value_t = 0.95, value_name = "P")]
    pub top_p: f32,
    /// Min-p sampling (0.0 = off).
    #[arg(long = "min-p", default_value_t = 0.05, value_name = "P")]
    pub min_p: f32,
    /// Penalise repeating the last --repeat-last-n tokens (1.0 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0, value_name = "R")]
    pub repeat_penalty: f32,
    /// Tokens the penalties look back over.
    #[arg(long = "repeat-last-n", default_value_t = 64, value_name = "N")]
    pub repeat_last_n: usize,
    /// Presence penalty (0.0 = off).
    #[arg(long = "presence-penalty", default_value_t = 0.0, value_name = "P")]
    pub presence_penalty: f32,
    /// Frequency penalty (0.0 = off).
    #[arg(long = "frequency-penalty", default_value_t = 0.0, value_name = "P")]
    pub frequency_penalty: f32,
    /// Random seed [default: a new one each run].
    #[arg(short = 's', long = "seed", value_name = "N")]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    pub fn params(&self) -> phiq::Result<SamplerParams> {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let p = SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        };
        p.validate().map_err(Error::InvalidInput)?;
        Ok(p)
    }
}

/// "12.3 tok/s" for `n` tokens in `secs`.
pub fn rate(n: usize, secs: f64) -> String {
    if secs > 0.0 && n > 0 {
        format!("{:.1} tok/s", n as f64 / secs)
    } else {
        "-".into()
    }
}

//! Flags shared by the subcommands that run a model (`run`, `chat`, `bench`, …), named
//! as llama.cpp names them.

use std::path::{Path, PathBuf};

use phiq::model::memory::{self, Footprint};
use phiq::model::CacheType;
use phiq::{Error, Model, ModelOptions, SamplerParams};

use super::hub::{self, cache::Cache, HfSpec};

/// The demo model shipped in the repository, used when `-m` is not given: relative to the
/// current directory (a checkout), else in the source tree phiq was built from (which
/// `cargo run` and `cargo install --path .` leave in place).
pub const DEMO_MODEL: &str = "models/phiq-demo.gguf";
const BUILT_DEMO_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/phiq-demo.gguf");

/// The context size when `-c` is not given (`phiq perplexity` has its own, llama.cpp's 512).
pub const DEFAULT_CTX: usize = 4096;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    #[command(flatten)]
    pub source: ModelSource,
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
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Check before starting that the weights, the KV cache and the scratch fit in the
    /// available memory (MemAvailable, the cgroup's limit, or $PHIQ_MEM_AVAILABLE): a
    /// context that does not is an error saying what would fit; with -c 0 (or no -c) the
    /// context shrinks to what fits. off: start anyway.
    #[arg(long = "fit", value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    pub fit: String,
    /// Allow -c past the context length the model was trained for (its
    /// `context_length`). The positions beyond it use the model's RoPE unscaled, as
    /// llama.cpp does (with a warning): they were never trained on, so expect the output to
    /// degrade there. Without this flag such a -c is an error.
    #[arg(long = "ctx-beyond-training")]
    pub ctx_beyond_training: bool,
}

/// The KV cache's element types, as llama.cpp's `-ctk`/`-ctv` (which phiq takes too).
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct CacheArgs {
    /// KV cache type of the keys: f16 (default), f32, bf16, q8_0 (53% of f16's memory) or
    /// q4_0 (28%). Also -ctk.
    #[arg(long = "cache-type-k", value_name = "TYPE")]
    pub k: Option<CacheType>,
    /// KV cache type of the values: as --cache-type-k. Also -ctv.
    #[arg(long = "cache-type-v", value_name = "TYPE")]
    pub v: Option<CacheType>,
    /// One KV cache type for keys and values (where --cache-type-k/-v are not given).
    #[arg(long = "cache-type", value_name = "TYPE")]
    pub both: Option<CacheType>,
}

impl CacheArgs {
    /// (keys, values): each its own flag, else --cache-type, else f16.
    pub fn types(&self) -> (CacheType, CacheType) {
        let both = self.both.unwrap_or_default();
        (self.k.unwrap_or(both), self.v.unwrap_or(both))
    }
}

/// Which model a subcommand reads: `-m FILE|NAME` or `-hf REPO[:QUANT]`, else
/// `$PHIQ_MODEL`, else the demo model.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ModelSource {
    /// GGUF model: a file, or a model in phiq's cache by name (`phiq list` shows the names:
    /// OWNER/REPO:QUANT, the file name, or its stem) [default: $PHIQ_MODEL, else the demo
    /// model models/phiq-demo.gguf].
    #[arg(short = 'm', long = "model", value_name = "FILE|NAME")]
    pub model: Option<PathBuf>,
    /// A GGUF from the Hugging Face hub, e.g. bartowski/phi-4-GGUF:Q4_K_M (QUANT matched in
    /// the file name; default Q4_K_M, then Q8_0). Downloaded once to the cache (`phiq pull`),
    /// then used offline. Also -hf, -hfr.
    #[arg(
        long = "hf-repo",
        value_name = "REPO[:QUANT]",
        conflicts_with = "model"
    )]
    pub hf_repo: Option<String>,
    /// With --hf-repo: this file of the repository, instead of choosing by QUANT (also -hff).
    #[arg(long = "hf-file", value_name = "FILE", requires = "hf_repo")]
    pub hf_file: Option<String>,
}

impl ModelSource {
    /// The model file: `--hf-repo` (cached, else downloaded), `-m` (a file, else a cached
    /// model of that name), `$PHIQ_MODEL` (the same), else the demo model.
    pub fn path(&self) -> phiq::Result<PathBuf> {
        if let Some(spec) = &self.hf_repo {
            let spec = HfSpec::parse(spec)?.with_file(self.hf_file.as_deref());
            return hub::resolve_hf(&spec);
        }
        if let Some(m) = &self.model {
            return file_or_cached(m, "-m");
        }
        if let Some(m) = std::env::var_os("PHIQ_MODEL").filter(|m| !m.is_empty()) {
            return file_or_cached(Path::new(&m), "$PHIQ_MODEL");
        }
        for demo in [DEMO_MODEL, BUILT_DEMO_MODEL] {
            let demo = PathBuf::from(demo);
            if demo.is_file() {
                return Ok(demo);
            }
        }
        Err(Error::InvalidInput(format!(
            "no model given: pass -m FILE (a Phi-4 GGUF), -hf REPO[:QUANT] (e.g. -hf bartowski/phi-4-GGUF:Q4_K_M downloads one), or set PHIQ_MODEL; the demo model {BUILT_DEMO_MODEL} is not there either"
        )))
    }
}

/// `given` if it is a file, else the cached model it names; else an error saying what was
/// looked for and how to get a model.
fn file_or_cached(given: &Path, flag: &str) -> phiq::Result<PathBuf> {
    if given.exists() {
        return Ok(given.to_path_buf());
    }
    let name = given.to_string_lossy();
    // Without a cache directory (no $HOME, no $PHIQ_CACHE) the file is all there is.
    let looked_in = match Cache::open() {
        Ok(cache) => {
            if let Some(path) = cache.lookup(&name)? {
                return Ok(path);
            }
            format!("in the cache ({})", cache.models.display())
        }
        Err(e) => format!("in the cache ({e})"),
    };
    Err(Error::InvalidInput(format!(
        "{flag} {name}: no such file, and no model of that name {looked_in}; `phiq list` shows the cached models, `phiq pull REPO[:QUANT]` (e.g. bartowski/phi-4-GGUF:Q4_K_M) downloads one"
    )))
}

impl ModelArgs {
    pub fn model_path(&self) -> phiq::Result<PathBuf> {
        self.source.path()
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
            cache_type_k: self.cache.types().0,
            cache_type_v: self.cache.types().1,
        };
        let mut model = Model::load(self.model_path()?, &opts)?;
        model.set_context_beyond_training(self.ctx_beyond_training);
        Ok(model)
    }

    /// The context size to use: `-c` (else `default`, or the model's own length when that
    /// is shorter), 0 meaning the model's own. An explicit `-c` beyond the model's training
    /// length is refused, in every subcommand alike, unless `--ctx-beyond-training` asks
    /// for it (then a note on stderr says what to expect). Then memory is checked (unless `--fit off`): an
    /// explicit `-c` that does not fit is an error naming what would; the default and
    /// `-c 0` shrink to the largest context that fits, with a note.
    pub fn n_ctx_or(&self, model: &Model, default: usize) -> phiq::Result<usize> {
        self.n_ctx_sessions(model, default, 1)
    }

    /// [`Self::n_ctx_or`] for `sessions` sessions of that context at once (serve's slots).
    pub fn n_ctx_sessions(
        &self,
        model: &Model,
        default: usize,
        sessions: usize,
    ) -> phiq::Result<usize> {
        let train = model.config.n_ctx_train;
        let (n, explicit) = match self.ctx_size {
            None => (default.min(train), false),
            Some(0) => (train, false),
            Some(n) if n > train && !self.ctx_beyond_training => return Err(Error::InvalidInput(format!(
                "-c/--ctx-size {n} is more than this model's training context length, {train} tokens (use -c {train} or less, -c 0 for the model's own; or --ctx-beyond-training to go past it, where output degrades)"
            ))),
            Some(n) => {
                if n > train {
                    eprintln!(
                        "phiq: -c {n} goes past the {train} tokens this model was trained on (--ctx-beyond-training): positions beyond {train} use its RoPE unscaled and were never trained on; expect the output to degrade there"
                    );
                }
                (n, true)
            }
        };
        if self.fit == "off" {
            return Ok(n);
        }
        let Some(avail) = memory::available()? else {
            return Ok(n);
        };
        let fp = Footprint::of(&model.file)?;
        let types = model.cache_types();
        let batch = self.batch_size.max(1);
        if fp.need(n, types, batch, sessions).total() <= avail.bytes {
            return Ok(n);
        }
        let what = match self.ctx_size {
            Some(0) => format!("-c 0 (the model's {train} tokens)"),
            Some(n) => format!("-c {n}"),
            None => format!("the default context of {n} tokens"),
        };
        if !explicit {
            if let Some(fit) = fp.largest_fit(avail.bytes, types, batch, sessions) {
                eprintln!(
                    "phiq: context {fit} tokens, not {n}: the most that fits in the {} available ({}) with a {}/{} KV cache (-c N and -ctk/-ctv choose; --fit off skips the check)",
                    memory::human(avail.bytes),
                    avail.source,
                    types.0.name(),
                    types.1.name(),
                );
                return Ok(fit);
            }
        }
        Err(Error::InvalidInput(memory::shortfall(
            &fp, &what, n, types, batch, sessions, avail,
        )))
    }

    /// [`Self::n_ctx_or`] with the default of run, chat and serve, [`DEFAULT_CTX`].
    pub fn n_ctx(&self, model: &Model) -> phiq::Result<usize> {
        self.n_ctx_or(model, DEFAULT_CTX)
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 (or below, as llama.cpp) = greedy (deterministic).
    #[arg(
        long = "temp",
        default_value_t = 0.8,
        value_name = "T",
        allow_negative_numbers = true
    )]
    pub temp: f32,
    /// Top-k sampling (0 or -1 = off).
    #[arg(
        long = "top-k",
        default_value_t = 40,
        value_name = "K",
        allow_negative_numbers = true
    )]
    pub top_k: i64,
    /// Top-p (nucleus) sampling (1.0 = off).
    #[arg(long = "top-p", default_value_t = 0.95, value_name = "P")]
    pub top_p: f32,
    /// Min-p sampling (0.0 = off).
    #[arg(long = "min-p", default_value_t = 0.05, value_name = "P")]
    pub min_p: f32,
    /// Penalise repeating the last --repeat-last-n tokens (1.0 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0, value_name = "R")]
    pub repeat_penalty: f32,
    /// Tokens the penalties look back over (0 = off, -1 = the whole context).
    #[arg(
        long = "repeat-last-n",
        default_value_t = 64,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub repeat_last_n: i64,
    /// Presence penalty (0.0 = off).
    #[arg(
        long = "presence-penalty",
        default_value_t = 0.0,
        value_name = "P",
        allow_negative_numbers = true
    )]
    pub presence_penalty: f32,
    /// Frequency penalty (0.0 = off).
    #[arg(
        long = "frequency-penalty",
        default_value_t = 0.0,
        value_name = "P",
        allow_negative_numbers = true
    )]
    pub frequency_penalty: f32,
    /// Random seed; -1 or none = a new one each run, printed on stderr.
    #[arg(short = 's', long = "seed", value_name = "N", allow_negative_numbers = true, value_parser = parse_seed)]
    pub seed: Option<Seed>,
}

/// `--seed`: a number, or -1 for a random one (llama.cpp's `LLAMA_DEFAULT_SEED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seed {
    Random,
    Fixed(u64),
}

fn parse_seed(s: &str) -> Result<Seed, String> {
    match s.trim() {
        "-1" => Ok(Seed::Random),
        t => t
            .parse::<u64>()
            .map(Seed::Fixed)
            .map_err(|_| format!("'{s}' is not a seed (a number >= 0, or -1 for a random one)")),
    }
}

impl SamplingArgs {
    pub fn params(&self) -> phiq::Result<SamplerParams> {
        let seed = match self.seed {
            Some(Seed::Fixed(seed)) => seed,
            Some(Seed::Random) | None => {
                let seed = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                // Only worth saying when the draw is random (greedy ignores the seed).
                if self.temp > 0.0 {
                    eprintln!("phiq: seed {seed} (--seed {seed} repeats this run)");
                }
                seed
            }
        };
        let repeat_last_n = match self.repeat_last_n {
            -1 => usize::MAX,
            n if n < -1 => {
                return Err(Error::InvalidInput(
                    "--repeat-last-n must be >= 0, or -1 for the whole context".into(),
                ))
            }
            n => n as usize,
        };
        let p = SamplerParams {
            temperature: if self.temp < 0.0 { 0.0 } else { self.temp },
            top_k: self.top_k.max(0) as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repeat_last_n,
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

/// A duration as people read it: "45 s", "12 min 5 s", "3 h 20 min".
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

//! The Phi-4 model: config from metadata, weights as views into the mapped file, and
//! the forward pass ([`Session`]).
//!
//! ```no_run
//! use phiq::{Model, ModelOptions};
//! let model = Model::load("phi-4-Q4_K_M.gguf", &ModelOptions::default())?;
//! let mut session = model.session(4096)?;
//! let logits = session.eval(&[100264, 882, 100266])?; // ids in, logits of the last out
//! assert_eq!(logits.len(), model.n_vocab());
//! # Ok::<(), phiq::Error>(())
//! ```

pub mod config;
pub mod forward;
pub mod kv_cache;
pub mod memory;
pub mod weights;

use std::path::Path;

use phiq_kernels::isa::Isa;

pub use config::Config;
pub use forward::{Part, Profile, Session};
pub use kv_cache::CacheType;
pub use weights::{Matrix, Weights};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    /// Worker threads (default: the number of physical cores; at most the CPUs this
    /// process may run on).
    pub threads: Option<usize>,
    /// Tokens per batch when evaluating a prompt (default 512).
    pub batch_size: Option<usize>,
    /// Element type of the KV cache's keys (default f16, as llama.cpp's `-ctk`).
    pub cache_type_k: CacheType,
    /// Element type of the KV cache's values (default f16, as llama.cpp's `-ctv`).
    pub cache_type_v: CacheType,
}

/// A loaded model: the mapped file, its config and weight views, and the thread pool
/// and kernel path its sessions use.
pub struct Model {
    pub file: GgufFile,
    pub config: Config,
    pub weights: Weights,
    /// The tokenizer in the file's metadata (`None` for files without one).
    tokenizer: Option<Tokenizer>,
    pub(crate) isa: Isa,
    /// The threads every parallel step of a forward pass runs on.
    pub(crate) team: Threads,
    threads: usize,
    batch: usize,
    cache_types: (CacheType, CacheType),
    beyond_training: bool,
}

/// The threads of a model's forward passes: by default a [`phiq_kernels::par::Team`]
/// (the caller's thread and `threads - 1` workers that spin briefly between the steps of a
/// pass, then sleep); `PHIQ_POOL=rayon` runs them on a rayon pool instead (to compare).
pub(crate) enum Threads {
    Team(phiq_kernels::par::Team),
    Rayon(rayon::ThreadPool),
}

impl Threads {
    fn new(threads: usize) -> std::result::Result<Threads, String> {
        if std::env::var("PHIQ_POOL").is_ok_and(|v| v == "rayon") {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("phiq-{i}"))
                .build()
                .map(Threads::Rayon)
                .map_err(|e| e.to_string())
        } else {
            phiq_kernels::par::Team::new(threads, "phiq")
                .map(Threads::Team)
                .map_err(|e| e.to_string())
        }
    }

    /// Runs `f` with these threads serving the kernels' parallel loops.
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Threads::Team(t) => t.install(f),
            Threads::Rayon(p) => p.install(f),
        }
    }
}

/// Physical cores (distinct (package, core) pairs in /proc/cpuinfo), else the logical
/// CPU count: hyper-threads share a core's vector units and only add contention here.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::HashSet::new();
    let mut phys = "";
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("physical id") {
            phys = v.trim_start_matches([' ', '\t', ':']);
        } else if let Some(v) = line.strip_prefix("core id") {
            cores.insert((
                phys.to_string(),
                v.trim_start_matches([' ', '\t', ':']).to_string(),
            ));
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

impl Model {
    /// Maps `path` and checks every tensor against the metadata. Nothing is copied.
    pub fn load(path: impl AsRef<Path>, opts: &ModelOptions) -> Result<Model> {
        Model::from_file(GgufFile::open(path)?, opts)
    }

    pub fn from_file(file: GgufFile, opts: &ModelOptions) -> Result<Model> {
        let config = Config::from_metadata(&file.header.metadata)?;
        let weights = Weights::load(&file, &config)?;
        let tokenizer = if file.header.metadata.get("tokenizer.ggml.model").is_some() {
            Some(Tokenizer::from_gguf(&file)?)
        } else {
            None
        };
        let isa = Isa::global().map_err(Error::Resource)?;
        // More threads than the CPUs the process may run on only take turns on them (and
        // wait for each other at every matmul): measured on 2 CPUs, -t 3 made prompts 21 %
        // slower. Asking for more is capped there.
        let cpus = std::thread::available_parallelism().map_or(usize::MAX, |n| n.get());
        let threads = opts.threads.unwrap_or_else(physical_cores).clamp(1, cpus);
        let team = Threads::new(threads)
            .map_err(|e| Error::Resource(format!("cannot start {threads} threads: {e}")))?;
        Ok(Model {
            file,
            config,
            weights,
            tokenizer,
            isa,
            team,
            threads,
            batch: opts.batch_size.unwrap_or(forward::DEFAULT_BATCH).max(1),
            cache_types: (opts.cache_type_k, opts.cache_type_v),
            beyond_training: false,
        })
    }

    /// Whether sessions may have more positions than the model was trained for
    /// (`context_length`; off by default). The positions past it are computed as the
    /// model's RoPE defines them (unscaled, as transformers does and llama.cpp allows with
    /// a warning) but were never trained on: expect the output to degrade there.
    pub fn set_context_beyond_training(&mut self, allow: bool) {
        self.beyond_training = allow;
    }

    /// See [`Self::set_context_beyond_training`].
    pub fn context_beyond_training(&self) -> bool {
        self.beyond_training
    }

    /// A session with a KV cache for `n_ctx` tokens: at most the model's context length,
    /// unless [`Self::set_context_beyond_training`] allows more.
    pub fn session(&self, n_ctx: usize) -> Result<Session<'_>> {
        if n_ctx > self.config.n_ctx_train && !self.beyond_training {
            return Err(Error::InvalidInput(format!(
                "context size {n_ctx} exceeds the model's training context length {} (Model::set_context_beyond_training allows it; the CLI's --ctx-beyond-training)",
                self.config.n_ctx_train
            )));
        }
        Session::new(self, n_ctx, self.batch, self.cache_types)
    }

    /// The model's tokenizer, or an error if the file carries none.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| Error::MissingKey {
            key: "tokenizer.ggml.model".into(),
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.weights.n_vocab
    }
    /// The element types of the sessions' KV caches: (keys, values).
    pub fn cache_types(&self) -> (CacheType, CacheType) {
        self.cache_types
    }
    pub fn threads(&self) -> usize {
        self.threads
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Reads every page of the mapped file once, so the first token does not wait on the
    /// disk; `progress(done, total)` is called every 64 MiB. The pages stay file-backed
    /// (page cache), nothing is copied.
    pub fn prefetch(&self, mut progress: impl FnMut(u64, u64)) {
        let bytes = self.file.bytes();
        let total = bytes.len() as u64;
        let mut sum = 0u8;
        const PAGE: usize = 4096;
        const REPORT: usize = 64 << 20;
        for (i, chunk) in bytes.chunks(REPORT).enumerate() {
            for page in chunk.iter().step_by(PAGE) {
                sum = sum.wrapping_add(*page);
            }
            progress(((i + 1) * REPORT).min(bytes.len()) as u64, total);
        }
        std::hint::black_box(sum);
    }

    /// The bytes of a weight matrix, borrowed from the mapping.
    pub fn bytes(&self, m: &Matrix) -> &[u8] {
        &self.file.bytes()[m.range.clone()]
    }
}

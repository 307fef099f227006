//! `phiq bench`: prompt and generation speed, like llama-bench.
//!
//! `pp` = tokens/s evaluating a p-token prompt in one batch; `tg` = tokens/s generating n
//! tokens one at a time; both optionally after `-d` tokens already in the KV cache. Each
//! test is repeated `-r` times after an untimed warm-up (which also pulls the weights into
//! memory: timing a cold mmap would measure the disk). Output: a markdown table, or CSV,
//! JSON or JSON lines with llama-bench's field names.

use std::time::Instant;

use phiq::{Error, Model, ModelOptions};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: super::common::ModelSource,
    /// Allow positions past the model's training context length (see `phiq run --help`).
    #[arg(long = "ctx-beyond-training")]
    ctx_beyond_training: bool,
    /// Thread counts to test, comma-separated as in llama-bench (`-t 1,2`)
    /// [default: the number of physical cores].
    #[arg(
        short = 't',
        long = "threads",
        alias = "threads-list",
        value_delimiter = ',',
        value_name = "N[,N...]"
    )]
    threads: Vec<usize>,
    /// Tokens per batch when evaluating a prompt.
    #[arg(
        short = 'b',
        long = "batch-size",
        default_value_t = 512,
        value_name = "N"
    )]
    batch_size: usize,
    #[command(flatten)]
    cache: super::common::CacheArgs,
    /// Prompt lengths to test (comma-separated; 0 skips pp).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    n_prompt: Vec<usize>,
    /// Generation lengths to test (comma-separated; 0 skips tg).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    n_gen: Vec<usize>,
    /// Repetitions per test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    repetitions: usize,
    /// Tokens already in the KV cache before each test.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    n_depth: Vec<usize>,
    /// Also measure the memory read bandwidth (a parallel read of 1 GiB of the model's
    /// weights with the same threads, best of 5) before and after each timed tg
    /// repetition, and report tg as a fraction of the roofline: bandwidth ÷ bytes read per
    /// token (every weight except the unused rows of token_embd, plus the KV cache at that
    /// depth). Each repetition is set against the mean of the probes on either side of it.
    #[arg(long)]
    roofline: bool,
    /// Time the parts of the forward pass (matmul per tensor, attention, norms, …) over
    /// the timed repetitions, and the sampler (llama.cpp's default chain) per token; printed
    /// on stderr and added to the JSON.
    #[arg(long)]
    profile: bool,
    /// Output format: a markdown table, or llama-bench's fields as CSV, JSON or JSON lines.
    #[arg(short = 'o', long = "output", default_value = "md", value_parser = ["md", "csv", "json", "jsonl"])]
    output: String,
}

struct Result_ {
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
    threads: usize,
    samples: Vec<f64>,
    /// For tg with --roofline: (read bandwidth in GB/s around each timed repetition, bytes
    /// read per token).
    roofline: Option<(Vec<f64>, f64)>,
    /// (part, seconds per token) with --profile.
    profile: Vec<(&'static str, f64)>,
}

impl Result_ {
    fn mean(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len().max(1) as f64
    }
    fn stddev(&self) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        (self.samples.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
    /// (mean read bandwidth GB/s, bytes per token, mean fraction of the roofline): each
    /// repetition's speed against the bandwidth probed right before and after it, so a
    /// bandwidth that moves between repetitions moves its roofline with it.
    fn roofline(&self) -> Option<(f64, f64, f64)> {
        let (bws, bytes) = self.roofline.as_ref()?;
        let n = self.samples.len().min(bws.len());
        if n == 0 {
            return None;
        }
        let bw = bws[..n].iter().sum::<f64>() / n as f64;
        let frac = self.samples[..n]
            .iter()
            .zip(bws)
            .map(|(ts, bw)| ts * bytes / (bw * 1e9))
            .sum::<f64>()
            / n as f64;
        Some((bw, *bytes, frac))
    }
    fn name(&self) -> String {
        let t = if self.n_gen == 0 {
            format!("pp{}", self.n_prompt)
        } else {
            format!("tg{}", self.n_gen)
        };
        if self.n_depth > 0 {
            format!("{t} @ d{}", self.n_depth)
        } else {
            t
        }
    }
}

/// Deterministic ordinary-token ids (avoiding control tokens at the top of the vocab).
fn prompt_ids(n: usize, n_vocab: usize, seed: usize) -> Vec<u32> {
    let range = (n_vocab.saturating_sub(512)).max(1);
    (0..n)
        .map(|i| ((i * 7919 + seed * 104729 + 13) % range) as u32)
        .collect()
}

/// Read bandwidth in GB/s with `threads` threads: the best of 5 parallel passes reading
/// 1 GiB of the model's own tensor data (already mapped, so the probe adds
/// nothing to the resident size), or of a 256 MiB buffer for models smaller than that.
fn read_bandwidth(model: &Model, threads: usize) -> f64 {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let f = &model.file;
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut total = 0usize;
    for t in &f.header.tensors {
        if total >= 1 << 30 {
            break;
        }
        if let Ok(d) = f.tensor_data(t) {
            total += d.len();
            chunks.extend(d.chunks(1 << 18));
        }
    }
    let owned: Vec<u8>;
    if total < 1 << 28 {
        owned = (0..1usize << 28).map(|i| i as u8).collect();
        chunks = owned.chunks(1 << 18).collect();
        total = owned.len();
    }
    let gbs: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let s: u64 = pool.install(|| {
                chunks
                    .par_iter()
                    .map(|c| phiq::kernels::select::read_all(c))
                    .reduce(|| 0, |a, b| a ^ b)
            });
            std::hint::black_box(s);
            total as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    // The best pass: the bandwidth this machine can deliver right now (the median of a
    // shared machine's passes undershoots what a streaming kernel can reach).
    gbs.into_iter().fold(0.0, f64::max)
}

/// Bytes one generated token reads: every tensor except token_embd (one row of it is
/// used) unless the output is tied to it, plus K and V of `depth` positions.
fn bytes_per_token(model: &Model, depth: usize) -> f64 {
    let h = &model.file.header;
    let tied = h.tensor("output.weight").is_none();
    let weights: u64 = h
        .tensors
        .iter()
        .filter(|t| tied || t.name != "token_embd.weight")
        .filter_map(|t| t.n_bytes)
        .sum();
    let c = &model.config;
    let (k, v) = model.cache_types();
    let values = c.n_layer * c.n_kv_head * c.head_dim * depth;
    let kv = k.bytes_for(values) + v.bytes_for(values);
    (weights as usize + kv) as f64
}

type Parts = Vec<(&'static str, f64)>;

/// A session for every test at depth `n_depth` (room for the longest prompt and
/// generation asked for), with the depth prefix evaluated once: each test and repetition
/// cuts the cache back to it.
fn depth_session<'m>(
    model: &'m Model,
    n_depth: usize,
    n_prompt: &[usize],
    n_gen: &[usize],
) -> phiq::Result<phiq::Session<'m>> {
    let most = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
    let n_ctx = n_depth + most(n_prompt) + most(n_gen) + 1;
    let n_ctx = if model.context_beyond_training() {
        n_ctx
    } else {
        n_ctx.min(model.config.n_ctx_train)
    };
    let mut session = model.session(n_ctx)?;
    if n_depth > 0 {
        let t = Instant::now();
        session.eval(&prompt_ids(n_depth, model.n_vocab(), 1))?;
        eprintln!(
            "phiq bench: depth {n_depth} evaluated in {:.1} s (once for all its tests)",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(session)
}

/// Runs one test on `session` (whose first `n_depth` tokens are the depth prefix):
/// `reps` timed repetitions after an untimed warm-up. With `probe` (tg only) the read
/// bandwidth is measured before the first timed repetition and after each one;
/// repetition i gets the mean of the probes on either side of it.
fn run_test(
    session: &mut phiq::Session<'_>,
    (n_prompt, n_gen, n_depth): (usize, usize, usize),
    reps: usize,
    profile: bool,
    probe: Option<&dyn Fn() -> f64>,
) -> phiq::Result<(Vec<f64>, Vec<f64>, Parts)> {
    let n_vocab = session.model().n_vocab();
    let mut samples = Vec::with_capacity(reps);
    session.disable_profile();
    // Warm-up (untimed): one repetition's worth of work.
    let mut sampling = 0.0;
    let mut probes = Vec::new();
    for rep in 0..=reps {
        session.truncate(n_depth);
        if let (Some(probe), true) = (probe, rep > 0 && n_gen > 0) {
            probes.push(probe());
        }
        if rep == 1 && profile {
            // After the warm-up: time the repetitions only.
            session.enable_profile();
        }
        let secs;
        if n_gen == 0 {
            let ids = prompt_ids(n_prompt, n_vocab, rep + 2);
            let t = Instant::now();
            session.eval(&ids)?;
            secs = t.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(n_prompt as f64 / secs);
            }
        } else {
            let mut id = prompt_ids(1, n_vocab, rep + 2)[0];
            let t = Instant::now();
            for i in 0..n_gen {
                let logits = session.eval(&[id])?;
                // A cheap stand-in for sampling that still depends on the logits.
                id = (logits[i % logits.len()].to_bits() as usize % (n_vocab - 512)) as u32;
            }
            secs = t.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(n_gen as f64 / secs);
            }
            if let (Some(probe), true) = (probe, rep == reps) {
                probes.push(probe());
            }
            if rep == reps && profile {
                // The sampler llama.cpp runs by default, on real logits.
                let logits = session.eval(&[id])?.to_vec();
                let mut sampler = phiq::Sampler::new(phiq::SamplerParams::default());
                let t = Instant::now();
                for _ in 0..20 {
                    std::hint::black_box(sampler.sample(&logits));
                }
                sampling = t.elapsed().as_secs_f64() / 20.0;
            }
        }
    }
    let mut parts = Vec::new();
    if let Some(p) = session.profile() {
        let tokens = p.tokens.max(1) as f64;
        for (part, t) in phiq::model::Part::ALL.iter().zip(p.time) {
            parts.push((part.name(), t.as_secs_f64() / tokens));
        }
        if n_gen > 0 {
            parts.push(("sampling (llama.cpp's default chain)", sampling));
        }
    }
    let bws = probes.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    Ok((samples, bws, parts))
}

pub fn run(args: Args) -> phiq::Result<()> {
    if args.repetitions == 0 {
        return Err(Error::InvalidInput(
            "-r/--repetitions must be at least 1".into(),
        ));
    }
    if args.n_prompt.iter().all(|&p| p == 0) && args.n_gen.iter().all(|&n| n == 0) {
        return Err(Error::InvalidInput(
            "nothing to measure: -p and -n are both 0 (give -p N for prompt speed, -n N for generation speed)".into(),
        ));
    }
    let path = args.model.path()?;
    if args.threads.contains(&0) {
        return Err(Error::InvalidInput(
            "-t/--threads: every thread count must be at least 1".into(),
        ));
    }
    let threads: Vec<Option<usize>> = if args.threads.is_empty() {
        vec![None]
    } else {
        args.threads.iter().map(|&t| Some(t)).collect()
    };
    let mut results = Vec::new();
    let mut info = None;
    let mut huge = None;
    for t in threads {
        let opts = ModelOptions {
            threads: t,
            batch_size: Some(args.batch_size.max(1)),
            cache_type_k: args.cache.types().0,
            cache_type_v: args.cache.types().1,
        };
        let mut model = Model::load(&path, &opts)?;
        model.set_context_beyond_training(args.ctx_beyond_training);
        let h = &model.file.header;
        let size: u64 = h.tensors.iter().filter_map(|t| t.n_bytes).sum();
        let mut mix: std::collections::BTreeMap<String, usize> = Default::default();
        for t in &h.tensors {
            *mix.entry(t.type_name()).or_default() += 1;
        }
        info.get_or_insert((
            model.file.name().to_string(),
            size,
            h.n_params(),
            model.isa().to_string(),
            mix.iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(","),
        ));
        for &d in &args.n_depth {
            let mut session = depth_session(&model, d, &args.n_prompt, &args.n_gen)?;
            for &p in args.n_prompt.iter().filter(|&&p| p > 0) {
                let (samples, _, profile) = run_test(
                    &mut session,
                    (p, 0, d),
                    args.repetitions,
                    args.profile,
                    None,
                )?;
                results.push(Result_ {
                    n_prompt: p,
                    n_gen: 0,
                    n_depth: d,
                    threads: model.threads(),
                    samples,
                    roofline: None,
                    profile,
                });
            }
            for &n in args.n_gen.iter().filter(|&&n| n > 0) {
                let probe = || read_bandwidth(&model, model.threads());
                let (samples, bws, profile) = run_test(
                    &mut session,
                    (0, n, d),
                    args.repetitions,
                    args.profile,
                    args.roofline.then_some(&probe as &dyn Fn() -> f64),
                )?;
                let roofline = args.roofline.then(|| (bws, bytes_per_token(&model, d)));
                huge = model.file.huge_pages().or(huge);
                results.push(Result_ {
                    n_prompt: 0,
                    n_gen: n,
                    n_depth: d,
                    threads: model.threads(),
                    samples,
                    roofline,
                    profile,
                });
            }
        }
    }
    let (name, size, params, isa, mix) = info.unwrap_or_default();
    if let Some((huge, rss)) = huge {
        // Decode speed depends on it (see GgufFile::huge_pages): say what this run had.
        eprintln!(
            "phiq bench: mapping after tg: {:.2} GiB resident, {:.0}% in 2 MiB pages",
            rss as f64 / (1u64 << 30) as f64,
            100.0 * huge as f64 / rss.max(1) as f64
        );
    }
    for r in results.iter().filter(|r| !r.profile.is_empty()) {
        let total: f64 = r.profile.iter().map(|p| p.1).sum();
        eprintln!(
            "phiq bench: {} ({} threads): {:.2} ms per token",
            r.name(),
            r.threads,
            total * 1e3
        );
        for (part, t) in &r.profile {
            eprintln!(
                "phiq bench:   {part:40} {:9.3} ms  {:5.1}%",
                t * 1e3,
                100.0 * t / total.max(1e-12)
            );
        }
    }
    if args.output != "md" {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                let mut row = json!({
                    "model_filename": name, "model_type": mix, "model_size": size,
                    "model_n_params": params, "backend": format!("CPU ({isa})"),
                    "n_threads": r.threads, "n_prompt": r.n_prompt, "n_gen": r.n_gen,
                    "n_depth": r.n_depth, "avg_ts": r.mean(), "stddev_ts": r.stddev(),
                    "samples_ts": r.samples, "test": r.name(),
                });
                if let (Some((h, rss)), true) = (huge, r.n_gen > 0) {
                    row["huge_page_frac"] = json!(h as f64 / rss.max(1) as f64);
                }
                if !r.profile.is_empty() {
                    row["profile_s_per_token"] = r
                        .profile
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v)))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                if let Some((bw, bytes, frac)) = r.roofline() {
                    row["membw_gbs"] = json!(bw);
                    row["membw_samples_gbs"] = json!(r.roofline.as_ref().map(|x| &x.0));
                    row["bytes_per_token"] = json!(bytes);
                    row["roofline_ts"] = json!(bw * 1e9 / bytes);
                    row["roofline_frac"] = json!(frac);
                }
                row
            })
            .collect();
        match args.output.as_str() {
            "json" => println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            ),
            "jsonl" => {
                for r in &rows {
                    println!("{r}");
                }
            }
            _ => print!("{}", csv(&rows)),
        }
    } else {
        // The roofline column only when measured (--roofline), so no column stays empty.
        let (roof_head, roof_rule) = match args.roofline {
            true => (" roofline |", " ---: |"),
            false => ("", ""),
        };
        println!("| model | size | params | backend | threads | test | t/s |{roof_head}");
        println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |{roof_rule}");
        for r in &results {
            let roof = match (args.roofline, r.roofline()) {
                (false, _) => String::new(),
                (true, Some((bw, bytes, frac))) => format!(
                    " {:.0}% of {:.2} t/s ({bw:.1} GB/s) |",
                    100.0 * frac,
                    bw * 1e9 / bytes
                ),
                // Prompt processing is compute-bound: no bandwidth roofline to set it against.
                (true, None) => " - (compute-bound) |".into(),
            };
            println!(
                "| {} | {:.2} GiB | {:.2} B | CPU ({isa}) | {} | {} | {:.2} ± {:.2} |{roof}",
                std::path::Path::new(&name)
                    .file_name()
                    .map_or(name.clone(), |f| f.to_string_lossy().into_owned()),
                size as f64 / (1u64 << 30) as f64,
                params as f64 / 1e9,
                r.threads,
                r.name(),
                r.mean(),
                r.stddev()
            );
        }
    }
    Ok(())
}

/// The rows as CSV (RFC 4180: a header of llama-bench's field names, fields with commas,
/// quotes or newlines quoted); lists (samples) are joined with `;`, nested maps (profile)
/// left out.
fn csv(rows: &[serde_json::Value]) -> String {
    let mut fields: Vec<&str> = Vec::new();
    for r in rows {
        for (k, v) in r.as_object().into_iter().flatten() {
            if !v.is_object() && !fields.contains(&k.as_str()) {
                fields.push(k);
            }
        }
    }
    let cell = |v: Option<&serde_json::Value>| -> String {
        let s = match v {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(";"),
            Some(v) => v.to_string(),
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = fields.join(",") + "\n";
    for r in rows {
        let line: Vec<String> = fields.iter().map(|f| cell(r.get(*f))).collect();
        out += &line.join(",");
        out.push('\n');
    }
    out
}

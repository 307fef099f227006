//! `phiq perplexity -m FILE -f TEXT [-c 512] [-b N] [--chunks N]`, with llama-perplexity's
//! definition: the text is tokenized once and cut into chunks of `-c` tokens; each chunk
//! is evaluated from an empty cache and only its second half is scored (each position
//! then has at least c/2 tokens of context). Running estimates per chunk, then
//! `Final estimate: PPL = X +/- Y` with llama.cpp's uncertainty (the standard error of
//! the mean negative log-likelihood, times the PPL).

use std::io::Write;
use std::path::PathBuf;

use phiq::Error;

use super::common::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Text file to score.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: PathBuf,
    /// Score at most this many chunks.
    #[arg(long)]
    chunks: Option<usize>,
    /// Save this (base) model's token distributions for a later --kl-divergence run.
    #[arg(long = "kl-divergence-base", value_name = "FILE")]
    kl_base: Option<PathBuf>,
    /// Compare against distributions saved by --kl-divergence-base (same text, same -c):
    /// KL divergence, top-1 agreement, Δp.
    #[arg(long = "kl-divergence", value_name = "FILE", requires = "kl_base")]
    kl_divergence: bool,
}

/// Top entries kept per scored position in the base file. The KL divergence is computed
/// exactly over these and with the remaining probability mass lumped into one bucket
/// (on each side): by the log-sum inequality this never overestimates, and it is exact when
/// the tail's shape is unchanged; with 64 entries a trained model's tail mass is ~1e-3, so
/// the omitted part is far below the quantization effects measured (llama.cpp instead
/// stores every logit, ~200 KB per position for Phi-4).
const KLD_TOP: usize = 64;
const KLD_MAGIC: &[u8; 8] = b"PHIQKLD1";
/// Tokens per chunk when `-c` is not given: llama-perplexity's default.
const DEFAULT_PERPLEXITY_CTX: usize = 512;

/// Base distributions: per scored position, the probability of the actual next token, the
/// mass outside the top entries, and the top entries (id, log-probability), descending.
struct KldBase {
    n_ctx: u32,
    tokens: Vec<u32>,
    rows: Vec<KldRow>,
}

struct KldRow {
    p_next: f32,
    p_rest: f32,
    top: Vec<(u32, f32)>,
}

impl KldBase {
    fn write(&self, path: &PathBuf) -> phiq::Result<()> {
        let mut b = Vec::new();
        b.extend_from_slice(KLD_MAGIC);
        for v in [
            self.n_ctx,
            self.tokens.len() as u32,
            self.rows.len() as u32,
            KLD_TOP as u32,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        self.tokens
            .iter()
            .for_each(|t| b.extend_from_slice(&t.to_le_bytes()));
        for r in &self.rows {
            b.extend_from_slice(&r.p_next.to_le_bytes());
            b.extend_from_slice(&r.p_rest.to_le_bytes());
            for &(id, lp) in &r.top {
                b.extend_from_slice(&id.to_le_bytes());
                b.extend_from_slice(&lp.to_le_bytes());
            }
        }
        std::fs::write(path, b).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })
    }

    fn read(path: &PathBuf) -> phiq::Result<KldBase> {
        let b = std::fs::read(path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        let bad = |what: &str| Error::InvalidFile(format!("{}: {what}", path.display()));
        if b.len() < 24 || &b[..8] != KLD_MAGIC {
            return Err(bad("not a phiq --kl-divergence-base file"));
        }
        let u32_at = |o: usize| -> phiq::Result<u32> {
            b.get(o..o + 4)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
                .ok_or_else(|| bad("file truncated"))
        };
        let (n_ctx, n_tok, n_rows, k) = (
            u32_at(8)?,
            u32_at(12)? as usize,
            u32_at(16)? as usize,
            u32_at(20)? as usize,
        );
        let need = 24usize
            .checked_add(n_tok.checked_mul(4).ok_or_else(|| bad("bad size"))?)
            .and_then(|x| x.checked_add(n_rows.checked_mul(8 + 8 * k)?))
            .ok_or_else(|| bad("bad size"))?;
        if k != KLD_TOP || b.len() != need {
            return Err(bad(
                "size does not match its header (truncated or another version)",
            ));
        }
        let tokens = (0..n_tok)
            .map(|i| u32_at(24 + 4 * i))
            .collect::<phiq::Result<Vec<_>>>()?;
        let f32_at = |o: usize| u32_at(o).map(f32::from_bits);
        let mut rows = Vec::with_capacity(n_rows);
        let mut o = 24 + 4 * n_tok;
        for _ in 0..n_rows {
            let (p_next, p_rest) = (f32_at(o)?, f32_at(o + 4)?);
            o += 8;
            let mut top = Vec::with_capacity(k);
            for _ in 0..k {
                top.push((u32_at(o)?, f32_at(o + 4)?));
                o += 8;
            }
            rows.push(KldRow {
                p_next,
                p_rest,
                top,
            });
        }
        Ok(KldBase {
            n_ctx,
            tokens,
            rows,
        })
    }
}

/// log-sum-exp of a row, in f64.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    row.iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max
}

pub fn run(args: Args) -> phiq::Result<()> {
    if matches!(args.model.ctx_size, Some(1..4)) {
        return Err(Error::InvalidInput(
            "-c/--ctx-size must be at least 4 for perplexity".into(),
        ));
    }
    if args.chunks == Some(0) {
        return Err(Error::InvalidInput(
            "--chunks must be at least 1 (leave it out to score every chunk)".into(),
        ));
    }
    let bytes = std::fs::read(&args.file).map_err(|e| Error::Io {
        path: args.file.clone(),
        source: e,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::InvalidFile(format!(
            "{}: not valid UTF-8 (byte {})",
            args.file.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let model = args.model.load()?;
    // -c defaults to 4096 for run/chat; perplexity's default is llama.cpp's 512 (0: the
    // model's own length; beyond it: refused, as everywhere).
    let n_ctx = args.model.n_ctx_or(&model, DEFAULT_PERPLEXITY_CTX)?;
    let tok = model.tokenizer()?;
    let ids = tok.encode(&text, true, false);
    let n_chunks_all = ids.len() / n_ctx;
    let n_chunks = args.chunks.map_or(n_chunks_all, |c| c.min(n_chunks_all));
    if n_chunks == 0 {
        return Err(Error::InvalidInput(format!(
            "{}: {} tokens, fewer than one chunk of {n_ctx} (use a longer text or a smaller -c)",
            args.file.display(),
            ids.len()
        )));
    }
    eprintln!(
        "phiq: {} tokens, {n_chunks} chunks of {n_ctx}, scoring the second half of each",
        ids.len()
    );
    let mut session = model.session(n_ctx)?;
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let n_vocab = model.n_vocab();
    let mut out = std::io::stdout().lock();
    let compare = if args.kl_divergence {
        let path = args.kl_base.as_ref().expect("clap: requires");
        let base = KldBase::read(path)?;
        if base.n_ctx as usize != n_ctx || base.tokens[..] != ids[..n_chunks * n_ctx] {
            return Err(Error::InvalidFile(format!(
                "{}: made from another text, tokenization or -c (it has {} tokens in chunks of {})",
                path.display(),
                base.tokens.len(),
                base.n_ctx
            )));
        }
        Some(base)
    } else {
        None
    };
    let mut saved = KldBase {
        n_ctx: n_ctx as u32,
        tokens: ids[..n_chunks * n_ctx].to_vec(),
        rows: Vec::new(),
    };
    let mut kld: Vec<f64> = Vec::new();
    let mut dp: Vec<f64> = Vec::new();
    let mut same_top = 0usize;
    let mut row_index = 0usize;
    let started = std::time::Instant::now();
    for c in 0..n_chunks {
        let mut chunk = ids[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let (true, Some(bos)) = (tok.add_bos(), tok.bos()) {
            chunk[0] = bos; // as llama-perplexity: every chunk starts with BOS
        }
        session.reset();
        let logits = session.eval_all(&chunk)?;
        for i in first..n_ctx - 1 {
            let row = &logits[i * n_vocab..(i + 1) * n_vocab];
            let lse = log_sum_exp(row);
            let lp = row[chunk[i + 1] as usize] as f64 - lse;
            nll -= lp;
            nll2 += lp * lp;
            count += 1;
            if args.kl_base.is_some() {
                let top = top_entries(row, lse);
                if let Some(base) = &compare {
                    let b = &base.rows[row_index];
                    // KL(base ‖ this) over the base's top entries plus one lumped tail.
                    let mut kl = 0.0;
                    let mut q_top = 0.0;
                    for &(id, lpb) in &b.top {
                        let lq = row[id as usize] as f64 - lse;
                        kl += (lpb as f64).exp() * (lpb as f64 - lq);
                        q_top += lq.exp();
                    }
                    let (pr, qr) = (b.p_rest as f64, (1.0 - q_top).max(1e-30));
                    if pr > 0.0 {
                        kl += pr * (pr.ln() - qr.ln());
                    }
                    kld.push(kl.max(0.0));
                    same_top += (top[0].0 == b.top[0].0) as usize;
                    dp.push(lp.exp() - b.p_next as f64);
                } else {
                    let p_top: f64 = top.iter().map(|&(_, l)| (l as f64).exp()).sum();
                    saved.rows.push(KldRow {
                        p_next: lp.exp() as f32,
                        p_rest: (1.0 - p_top).max(0.0) as f32,
                        top,
                    });
                }
                row_index += 1;
            }
        }
        let _ = write!(out, "[{}]{:.4},", c + 1, (nll / count as f64).exp());
        let _ = out.flush();
        if c == 0 {
            // As llama-perplexity: the time of one pass and the time left, after the first.
            let per = started.elapsed();
            eprintln!(
                "phiq: {:.2} s per chunk, ETA {}",
                per.as_secs_f64(),
                super::common::human_duration(per * (n_chunks - 1) as u32)
            );
        }
    }
    let _ = writeln!(out);
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let unc = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    let _ = writeln!(out, "Final estimate: PPL = {ppl:.4} +/- {unc:.5}");
    if let Some(path) = &args.kl_base {
        if compare.is_none() {
            saved.write(path)?;
            eprintln!(
                "phiq: saved {} positions' distributions to {}",
                saved.rows.len(),
                path.display()
            );
        } else {
            report_kld(&mut out, &mut kld, &mut dp, same_top);
        }
    }
    Ok(())
}

/// The `KLD_TOP` most likely entries of a row as (id, log-probability), descending.
fn top_entries(row: &[f32], lse: f64) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let k = KLD_TOP.min(idx.len());
    let by = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    idx.select_nth_unstable_by(k - 1, by);
    idx.truncate(k);
    idx.sort_unstable_by(by);
    idx.into_iter()
        .map(|i| (i, (row[i as usize] as f64 - lse) as f32))
        .collect()
}

/// llama.cpp-style KL-divergence statistics: mean with its standard error, percentiles,
/// top-1 agreement, and Δp (change in the probability of the actual next token).
fn report_kld(out: &mut impl Write, kld: &mut [f64], dp: &mut [f64], same_top: usize) {
    let n = kld.len().max(1) as f64;
    let mean = kld.iter().sum::<f64>() / n;
    let var = kld.iter().map(|k| (k - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    kld.sort_by(f64::total_cmp);
    dp.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let _ = writeln!(out, "====== KL divergence statistics ======");
    let _ = writeln!(out, "Mean    KLD: {mean:10.6} ± {:10.6}", (var / n).sqrt());
    for (name, p) in [
        ("Maximum", 1.0),
        ("99.9%", 0.999),
        ("99.0%", 0.99),
        ("Median", 0.5),
        ("10.0%", 0.1),
        ("Minimum", 0.0),
    ] {
        let _ = writeln!(out, "{name:7} KLD: {:10.6}", pct(kld, p));
    }
    let rms = (dp.iter().map(|d| d * d).sum::<f64>() / n).sqrt();
    let _ = writeln!(out, "====== Token probability statistics ======");
    let _ = writeln!(
        out,
        "Mean    Δp: {:8.3} %",
        100.0 * dp.iter().sum::<f64>() / n
    );
    let _ = writeln!(out, "RMS     Δp: {:8.3} %", 100.0 * rms);
    for (name, p) in [
        ("Maximum", 1.0),
        ("99.0%", 0.99),
        ("Median", 0.5),
        ("1.0%", 0.01),
        ("Minimum", 0.0),
    ] {
        let _ = writeln!(out, "{name:7} Δp: {:8.3} %", 100.0 * pct(dp, p));
    }
    let _ = writeln!(out, "Same top p: {:.3} %", 100.0 * same_top as f64 / n);
}

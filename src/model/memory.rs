//! What a context costs in memory, and whether it fits: the weights (the mapped file's
//! tensor data, which must stay in the page cache to run at memory speed), the KV cache of
//! the chosen types, and the forward pass's scratch buffers. Computed from the file's
//! header and metadata alone, before anything is allocated or read.

use super::config::Config;
use super::kv_cache::{CacheType, KvCache};
use crate::gguf::GgufFile;

/// The bytes one session of a model needs, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// Tensor data of the file: file-backed pages of the mapping, not the heap.
    pub weights: u64,
    /// Keys and values of every layer for the whole context.
    pub kv: u64,
    /// Activations of one batch, quantized activations, logits, the tokenizer and the
    /// runtime: a bound, not an estimate (the measured anonymous memory stays below it).
    pub scratch: u64,
}

impl Need {
    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.scratch
    }
}

/// What [`Footprint::need`] computes from: a model's shapes, its weights' size and its vocabulary.
#[derive(Clone, Debug)]
pub struct Footprint {
    pub config: Config,
    pub weights: u64,
    pub n_vocab: usize,
}

/// Anonymous memory beside the buffers [`Footprint::scratch`] counts: the tokenizer's
/// tables (Phi-4's 100k-token vocabulary and merges), thread stacks, the allocator's and
/// the runtime's own.
const FIXED_OVERHEAD: u64 = 96 << 20;

impl Footprint {
    /// From an opened file: [`Config`] from its metadata, the weights as the sum of its
    /// tensors' data, the vocabulary as `token_embd`'s row count.
    pub fn of(file: &GgufFile) -> crate::Result<Footprint> {
        let h = &file.header;
        let config = Config::from_metadata(&h.metadata)?;
        let weights = h.tensors.iter().filter_map(|t| t.n_bytes).sum();
        let n_vocab = h
            .tensors
            .iter()
            .find(|t| t.name == "token_embd.weight")
            .and_then(|t| t.dims.get(1))
            .map_or(0, |&d| d as usize);
        Ok(Footprint {
            config,
            weights,
            n_vocab,
        })
    }

    /// The KV cache of `n_ctx` tokens with keys of type `k` and values of type `v`.
    pub fn kv(&self, n_ctx: usize, (k, v): (CacheType, CacheType)) -> u64 {
        let c = &self.config;
        KvCache::bytes_needed(k, v, c.n_layer, n_ctx, c.n_kv_head * c.head_dim) as u64
    }

    /// The scratch of a pass over `batch` tokens keeping `logit_rows` rows of logits
    /// (1 for generation), with the context's attention scores: every buffer of the
    /// forward pass at its largest, plus a fixed overhead (tokenizer, threads, runtime: 96 MiB).
    pub fn scratch(&self, batch: usize, logit_rows: usize, n_ctx: usize) -> u64 {
        let c = &self.config;
        let (e, ff) = (c.n_embd as u64, c.n_ff as u64);
        let q = (c.n_head * c.head_dim) as u64;
        let kv = (c.n_kv_head * c.head_dim) as u64;
        // Per token, f32: x, xn, proj (3 e); q|k|v; q and attention's output (2 q);
        // gate|up, SwiGLU's output, a separate tensor's result and up's (5 ff); RoPE
        // angles.
        let per_token = 3 * e + (q + 2 * kv) + 2 * q + 5 * ff + c.n_rot as u64;
        // The matmul's quantized activations: at most 2 bytes per input value per token
        // (int8 values with block scales and sums).
        let act = 2 * e.max(ff).max(q);
        // Attention: the query quantized per head, and the scores of one query row.
        let attn = 4 * (q + n_ctx as u64);
        let batch = batch.max(1) as u64;
        batch * (4 * per_token + act + attn)
            + 4 * self.n_vocab as u64 * logit_rows.max(1) as u64
            + FIXED_OVERHEAD
    }

    /// Everything `sessions` sessions of `n_ctx` tokens need (the weights once, a KV
    /// cache and scratch per session: `phiq serve --parallel`'s slots each have theirs).
    pub fn need(
        &self,
        n_ctx: usize,
        types: (CacheType, CacheType),
        batch: usize,
        sessions: usize,
    ) -> Need {
        let s = sessions.max(1) as u64;
        Need {
            weights: self.weights,
            kv: s * self.kv(n_ctx, types),
            scratch: s * self.scratch(batch.min(n_ctx), 1, n_ctx),
        }
    }

    /// The largest context (a multiple of 256, else the model's own length) whose
    /// [`Need`] fits in `available` bytes, at most the model's context length; `None` when
    /// not even 256 tokens fit.
    pub fn largest_fit(
        &self,
        available: u64,
        types: (CacheType, CacheType),
        batch: usize,
        sessions: usize,
    ) -> Option<usize> {
        let train = self.config.n_ctx_train;
        let fits = |n: usize| self.need(n, types, batch, sessions).total() <= available;
        if fits(train) {
            return Some(train);
        }
        // `need` grows with n: binary search over multiples of 256.
        let (mut lo, mut hi) = (0usize, train / 256);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid * 256) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        (lo > 0).then_some(lo * 256)
    }
}

/// Why `n_ctx` tokens do not fit in `avail` and what would: the same session with
/// smaller KV cache types, a shorter context, fewer sessions. `what` names the request
/// (`-c 16384`, `the default context of 4096 tokens`).
pub fn shortfall(
    fp: &Footprint,
    what: &str,
    n_ctx: usize,
    types: (CacheType, CacheType),
    batch: usize,
    sessions: usize,
    avail: Available,
) -> String {
    let need = fp.need(n_ctx, types, batch, sessions);
    let per = if sessions > 1 {
        format!(" ({sessions} slots)")
    } else {
        String::new()
    };
    let mut msg = format!(
        "{what} needs {} of {}/{} KV cache{per} and {} of scratch beside {} of weights, {} in all, but {} are available ({})",
        human(need.kv),
        types.0.name(),
        types.1.name(),
        human(need.scratch),
        human(need.weights),
        human(need.total()),
        human(avail.bytes),
        avail.source,
    );
    // Not even the smallest cache of the shortest context: the weights and the scratch
    // are the problem, not the context.
    let least = fp.need(256.min(n_ctx), (CacheType::Q4_0, CacheType::Q4_0), batch, 1);
    if least.total() > avail.bytes {
        msg.push_str(&format!(
            ": the weights and one session's scratch alone take {}; close other programs or use a smaller quantization of the model (or a smaller -b/--batch-size), or pass --fit off to run anyway (reading weights from disk, slowly)",
            human(least.weights + least.scratch)
        ));
        return msg;
    }
    let mut fixes = Vec::new();
    let smaller = [
        (CacheType::Q8_0, CacheType::Q8_0),
        (CacheType::Q8_0, CacheType::Q4_0),
        (CacheType::Q4_0, CacheType::Q4_0),
    ];
    if let Some((t, kv)) = smaller
        .iter()
        .map(|&t| (t, fp.need(n_ctx, t, batch, sessions)))
        .find(|(_, n)| n.kv < need.kv && n.total() <= avail.bytes)
    {
        fixes.push(format!(
            "-ctk {} -ctv {} ({} of KV cache)",
            t.0.name(),
            t.1.name(),
            human(kv.kv)
        ));
    }
    if let Some(n) = fp.largest_fit(avail.bytes, types, batch, sessions) {
        fixes.push(format!("-c {n}"));
    }
    if sessions > 1 {
        if let Some(p) = (1..sessions)
            .rev()
            .find(|&p| fp.need(n_ctx, types, batch, p).total() <= avail.bytes)
        {
            fixes.push(format!("--parallel {p}"));
        }
    }
    fixes.push("--fit off to try anyway".into());
    let last = fixes.pop().unwrap_or_default();
    if fixes.is_empty() {
        msg.push_str(&format!(": use {last}"));
    } else {
        msg.push_str(&format!(": use {}, or {last}", fixes.join(" or ")));
    }
    msg
}

/// Memory this process can use, and where the figure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Available {
    pub bytes: u64,
    pub source: &'static str,
}

/// `$PHIQ_MEM_AVAILABLE` (bytes, or with a K/M/G/T suffix: binary units), else the
/// smaller of Linux's `MemAvailable` and the cgroup's room (`memory.max` −
/// `memory.current`); `None` where neither can be read (then nothing is checked).
pub fn available() -> crate::Result<Option<Available>> {
    if let Some(v) = std::env::var_os("PHIQ_MEM_AVAILABLE") {
        let v = v.to_string_lossy();
        let bytes = parse_size(&v).ok_or_else(|| {
            crate::Error::InvalidInput(format!(
                "$PHIQ_MEM_AVAILABLE={v}: not a size (bytes, or a number with K, M, G or T, e.g. 12G)"
            ))
        })?;
        return Ok(Some(Available {
            bytes,
            source: "$PHIQ_MEM_AVAILABLE",
        }));
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| meminfo_available(&s));
    // The smaller of the two; MemAvailable on a tie.
    Ok([
        meminfo.map(|bytes| Available {
            bytes,
            source: "MemAvailable",
        }),
        cgroup_room().map(|bytes| Available {
            bytes,
            source: "the cgroup's memory.max",
        }),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|a| a.bytes))
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn meminfo_available(s: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// cgroup v2: `memory.max − memory.current` of this process's group, when it has a limit.
/// Page cache counts in `memory.current` and is reclaimable, so this understates the room
/// a little: the check errs on the side of saying so.
fn cgroup_room() -> Option<u64> {
    let group = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = group.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let max: u64 = std::fs::read_to_string(dir.join("memory.max"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let current: u64 = std::fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(max.saturating_sub(current))
}

/// `123`, `512M`, `12G`, `1.5GiB`, `16gb`: binary units.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    (num.is_finite() && num >= 0.0).then(|| (num * (1u64 << shift) as f64) as u64)
}

/// `3.13 GiB`, `200 MiB`, `512 KiB`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("12G"), Some(12 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("16gb"), Some(16 << 30));
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn meminfo_available_is_read_in_kib() {
        let s = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(meminfo_available(s), Some(20_000_000 * 1024));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
    }
}

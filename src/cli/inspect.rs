//! `phiq inspect [FILE | -m FILE] [--json] [--kv] [--tensors] [--memory [-c N] [-ctk T -ctv T]]`

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use phiq::gguf::{Array, GgufFile, TensorInfo, Value};
use serde_json::{json, Map, Value as Json};

use phiq::model::memory::{self, Available, Footprint};
use phiq::model::CacheType;

use super::common::{CacheArgs, ModelSource};

/// Arrays longer than this are summarised (length and first items) unless `--kv`.
const ARRAY_HEAD: usize = 8;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file to inspect, or a cached model's name (as -m takes it) [default:
    /// $PHIQ_MODEL, else the demo model].
    #[arg(conflicts_with_all = ["model", "hf_repo"], value_name = "FILE|NAME")]
    file: Option<PathBuf>,
    #[command(flatten)]
    source: ModelSource,
    /// Print one JSON object (stable, for scripts) instead of text.
    #[arg(long)]
    json: bool,
    /// Print every metadata array in full instead of its length and first items.
    #[arg(long)]
    kv: bool,
    /// Also print the tensor table (always included with --json).
    #[arg(long)]
    tensors: bool,
    /// Print what running the model costs in memory instead: the weights, the KV cache of
    /// each type at context sizes up to the model's length, the scratch, and what fits in
    /// the memory available now (with -c N: that context's full account).
    #[arg(long)]
    memory: bool,
    /// With --memory: the context to account for [default: the model's own].
    #[arg(short = 'c', long = "ctx-size", value_name = "N", requires = "memory")]
    ctx_size: Option<usize>,
    /// With --memory: tokens per prompt batch (the scratch grows with it).
    #[arg(
        short = 'b',
        long = "batch-size",
        default_value_t = 512,
        value_name = "N",
        requires = "memory"
    )]
    batch_size: usize,
    /// With --memory: the sessions that would run at once (phiq serve's --parallel).
    #[arg(
        long = "parallel",
        default_value_t = 1,
        value_name = "N",
        requires = "memory"
    )]
    parallel: usize,
    #[command(flatten)]
    cache: CacheArgs,
}

pub fn run(args: Args) -> phiq::Result<()> {
    let source = match &args.file {
        Some(file) => ModelSource {
            model: Some(file.clone()),
            ..ModelSource::default()
        },
        None => args.source.clone(),
    };
    let path = source.path()?;
    let file = GgufFile::open(&path)?;
    let out = if args.memory {
        memory_report(&file, &args)?
    } else if args.json {
        let mut s = serde_json::to_string_pretty(&to_json(&file, args.kv))
            .map_err(|e| phiq::Error::Resource(format!("JSON output failed: {e}")))?;
        s.push('\n');
        s
    } else {
        to_text(&file, &args)
    };
    // A closed stdout (`| head`) is not an error worth a message.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

fn type_name(t: &TensorInfo) -> String {
    match t.ty {
        Some(ty) => ty.name().to_string(),
        None => format!("TYPE_{}", t.type_id),
    }
}

fn value_json(v: &Value, full: bool) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        // f32 → f64 is exact, so a reader gets the stored value back bit for bit.
        Value::F32(x) => json!(*x as f64),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::Array(a) => array_json(a, full),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
    }
}

fn array_json(a: &Array, full: bool) -> Json {
    let n = if full {
        a.len()
    } else {
        a.len().min(ARRAY_HEAD)
    };
    let items: Vec<Json> = (0..n)
        .filter_map(|i| a.get(i))
        .map(|v| value_json(&v, full))
        .collect();
    if full {
        Json::Array(items)
    } else {
        json!({ "type": a.elem_type().name(), "len": a.len(), "head": items })
    }
}

fn to_json(file: &GgufFile, full: bool) -> Json {
    let h = &file.header;
    let mut metadata = Map::new();
    let mut metadata_types = Map::new();
    for (k, v) in h.metadata.iter() {
        metadata.insert(k.to_string(), value_json(v, full));
        let ty = match v {
            Value::Array(a) => format!("ARRAY[{}]", a.elem_type()),
            other => other.value_type().to_string(),
        };
        metadata_types.insert(k.to_string(), json!(ty));
    }
    let tensors: Vec<Json> = h
        .tensors
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": type_name(t),
                "shape": t.dims,
                "offset": h.data_offset + t.offset,
                "n_bytes": t.n_bytes,
            })
        })
        .collect();
    json!({
        "version": h.version,
        "metadata": metadata,
        "metadata_types": metadata_types,
        "tensors": tensors,
        "n_params": h.n_params(),
        "file_size": h.file_size,
        "alignment": h.alignment,
        "data_offset": h.data_offset,
    })
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.2} {}", UNITS[u])
    }
}

fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.2} K", n as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.2} M", n as f64 / 1e6),
        _ => format!("{:.2} B", n as f64 / 1e9),
    }
}

fn value_text(v: &Value, full: bool) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => {
            let n = if full {
                a.len()
            } else {
                a.len().min(ARRAY_HEAD)
            };
            let items: Vec<String> = (0..n)
                .filter_map(|i| a.get(i))
                .map(|x| value_text(&x, full))
                .collect();
            let more = if n < a.len() { ", …" } else { "" };
            format!(
                "[{} × {}] [{}{more}]",
                a.len(),
                a.elem_type(),
                items.join(", ")
            )
        }
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
        other => other.as_i128().unwrap_or_default().to_string(),
    }
}

fn to_text(file: &GgufFile, args: &Args) -> String {
    use std::fmt::Write as _;
    let h = &file.header;
    let md = &h.metadata;
    let mut s = String::new();
    let arch = md.get_str("general.architecture").unwrap_or("(not set)");
    let name = md.get_str("general.name").unwrap_or("(not set)");
    let n_params = h.n_params();
    let tensor_bytes: u64 = h.tensors.iter().filter_map(|t| t.n_bytes).sum();
    let _ = writeln!(s, "file:          {}", file.name());
    let _ = writeln!(s, "GGUF version:  {}", h.version);
    let _ = writeln!(s, "architecture:  {arch}");
    let _ = writeln!(s, "name:          {name}");
    let _ = writeln!(s, "parameters:    {} ({n_params})", human_count(n_params));
    let _ = writeln!(
        s,
        "file size:     {} ({} bytes)",
        human_bytes(h.file_size),
        h.file_size
    );
    if n_params > 0 {
        let _ = writeln!(
            s,
            "bits/weight:   {:.2}",
            tensor_bytes as f64 * 8.0 / n_params as f64
        );
    }
    let _ = writeln!(s, "tensors:       {}", h.tensors.len());

    // Type mix: tensor count and bytes per type.
    let mut mix: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    for t in &h.tensors {
        let e = mix.entry(type_name(t)).or_default();
        e.0 += 1;
        e.1 += t.n_bytes.unwrap_or(0);
        e.2 += t.n_elements;
    }
    if !mix.is_empty() {
        let _ = writeln!(s, "type mix:");
        for (ty, (count, bytes, elems)) in &mix {
            let _ = writeln!(
                s,
                "  {ty:<8} {count:>5} tensors  {:>12}  {:>10} params",
                human_bytes(*bytes),
                human_count(*elems)
            );
        }
    }

    let _ = writeln!(s, "metadata ({} keys):", md.len());
    for (k, v) in md.iter() {
        let text = value_text(v, args.kv);
        let text = if !args.kv && text.chars().count() > 200 {
            let short: String = text.chars().take(200).collect();
            format!("{short}…")
        } else {
            text
        };
        let _ = writeln!(s, "  {k:<44} = {text}");
    }

    if args.tensors {
        let _ = writeln!(s, "tensors:");
        let _ = writeln!(
            s,
            "  {:<40} {:<8} {:<28} {:>14} {:>12}",
            "name", "type", "shape", "offset", "bytes"
        );
        for t in &h.tensors {
            let _ = writeln!(
                s,
                "  {:<40} {:<8} {:<28} {:>14} {:>12}",
                t.name,
                type_name(t),
                t.shape_string(),
                h.data_offset + t.offset,
                t.n_bytes.map(|b| b.to_string()).unwrap_or("?".into())
            );
        }
    } else if !h.tensors.is_empty() {
        let _ = writeln!(s, "(use --tensors for the tensor table)");
    }
    s
}

/// The context sizes `--memory` tabulates: powers of two from 1024 up to the model's
/// length, that length, and the one asked for.
fn memory_contexts(train: usize, asked: Option<usize>) -> Vec<usize> {
    let mut v: Vec<usize> = (10..=20)
        .map(|p| 1usize << p)
        .filter(|&n| n < train)
        .collect();
    v.push(train);
    if let Some(n) = asked.filter(|&n| n > 0) {
        v.push(n);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// `phiq inspect --memory`: text, or JSON with `--json`.
fn memory_report(file: &GgufFile, args: &Args) -> phiq::Result<String> {
    use std::fmt::Write as _;
    if args.parallel == 0 || args.batch_size == 0 {
        return Err(phiq::Error::InvalidInput(
            "--parallel and -b/--batch-size must be at least 1".into(),
        ));
    }
    let fp = Footprint::of(file)?;
    let train = fp.config.n_ctx_train;
    let n_ctx = match args.ctx_size {
        None | Some(0) => train,
        Some(n) => n,
    };
    let asked = args.cache.types();
    let mut pairs: Vec<(CacheType, CacheType)> = [
        CacheType::F32,
        CacheType::F16,
        CacheType::Bf16,
        CacheType::Q8_0,
        CacheType::Q4_0,
    ]
    .iter()
    .map(|&t| (t, t))
    .collect();
    if !pairs.contains(&asked) {
        pairs.push(asked);
    }
    let (batch, sessions) = (args.batch_size, args.parallel);
    let avail = memory::available()?;
    let contexts = memory_contexts(train, Some(n_ctx));
    let pair_name = |p: (CacheType, CacheType)| format!("{}/{}", p.0.name(), p.1.name());
    let need = fp.need(n_ctx, asked, batch, sessions);
    let fits = |a: &Available| need.total() <= a.bytes;
    if args.json {
        let kv: Vec<Json> = contexts
            .iter()
            .map(|&n| {
                let mut row = Map::new();
                row.insert("n_ctx".into(), json!(n));
                for &p in &pairs {
                    row.insert(pair_name(p), json!(fp.need(n, p, batch, sessions).kv));
                }
                Json::Object(row)
            })
            .collect();
        let largest: Map<String, Json> = pairs
            .iter()
            .map(|&p| {
                let fit = avail.and_then(|a| fp.largest_fit(a.bytes, p, batch, sessions));
                (pair_name(p), json!(fit))
            })
            .collect();
        let v = json!({
            "file": file.name(),
            "n_ctx_train": train,
            "n_ctx": n_ctx,
            "cache_type_k": asked.0.name(),
            "cache_type_v": asked.1.name(),
            "batch_size": batch,
            "parallel": sessions,
            "weights": need.weights,
            "kv_cache": need.kv,
            "scratch": need.scratch,
            "total": need.total(),
            "available": avail.map(|a| a.bytes),
            "available_source": avail.map(|a| a.source),
            "fits": avail.map(|a| fits(&a)),
            "kv_cache_by_context": kv,
            "largest_context_that_fits": largest,
        });
        let mut s = serde_json::to_string_pretty(&v)
            .map_err(|e| phiq::Error::Resource(format!("JSON output failed: {e}")))?;
        s.push('\n');
        return Ok(s);
    }
    let mut s = String::new();
    let c = &fp.config;
    let _ = writeln!(
        s,
        "memory of {} ({}, {} layers, {} KV heads × {}, context length {train})",
        file.name(),
        c.arch,
        c.n_layer,
        c.n_kv_head,
        c.head_dim
    );
    let _ = writeln!(
        s,
        "  weights    {:>10}  file-backed: the page cache holds them, not the heap",
        memory::human(need.weights)
    );
    let _ = writeln!(
        s,
        "  scratch    {:>10}  batch {batch}{}: activations, logits, tokenizer, runtime",
        memory::human(need.scratch),
        if sessions > 1 {
            format!(", {sessions} sessions")
        } else {
            String::new()
        }
    );
    match avail {
        Some(a) => {
            let _ = writeln!(
                s,
                "  available  {:>10}  {}",
                memory::human(a.bytes),
                a.source
            );
        }
        None => {
            let _ = writeln!(s, "  available  {:>10}  (not known on this system)", "?");
        }
    }
    let _ = writeln!(
        s,
        "\nKV cache{} (keys/values):",
        if sessions > 1 {
            format!(" of {sessions} sessions")
        } else {
            String::new()
        }
    );
    let _ = write!(s, "  {:>8}", "context");
    for &p in &pairs {
        let _ = write!(s, " {:>11}", pair_name(p));
    }
    s.push('\n');
    for &n in &contexts {
        let _ = write!(s, "  {n:>8}");
        for &p in &pairs {
            let _ = write!(
                s,
                " {:>11}",
                memory::human(fp.need(n, p, batch, sessions).kv)
            );
        }
        s.push('\n');
    }
    if let Some(a) = avail {
        let _ = write!(s, "  {:>8}", "fits");
        for &p in &pairs {
            let fit = fp.largest_fit(a.bytes, p, batch, sessions);
            let cell = match fit {
                Some(n) if n == train => format!("all {n}"),
                Some(n) => n.to_string(),
                None => "none".into(),
            };
            let _ = write!(s, " {cell:>11}");
        }
        s.push_str("  (the largest context whose total fits now)\n");
    }
    let _ = writeln!(
        s,
        "\n-c {n_ctx} with a {} cache: {} weights + {} KV cache + {} scratch = {}",
        pair_name(asked),
        memory::human(need.weights),
        memory::human(need.kv),
        memory::human(need.scratch),
        memory::human(need.total()),
    );
    match avail {
        Some(a) if fits(&a) => {
            let _ = writeln!(
                s,
                "fits: {} of the {} available remain",
                memory::human(a.bytes - need.total()),
                memory::human(a.bytes)
            );
        }
        Some(a) => {
            let why = memory::shortfall(
                &fp,
                &format!("-c {n_ctx}"),
                n_ctx,
                asked,
                batch,
                sessions,
                a,
            );
            let _ = writeln!(s, "does not fit: {why}");
        }
        None => {}
    }
    if n_ctx > train {
        let _ = writeln!(
            s,
            "note: -c {n_ctx} is past the model's training context length ({train}): run/chat/serve refuse it without --ctx-beyond-training"
        );
    }
    Ok(s)
}

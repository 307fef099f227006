//! `phiq quantize IN.gguf OUT.gguf TYPE [--pure] [--allow-requantize] [--imatrix FILE]
//! [--output-tensor-type T] [--token-embedding-type T]` (llama-quantize's argument order).

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use phiq::kernels::GgmlType;
use phiq::quantize::{quantize_file, Preset, QuantizeOptions};
use phiq::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Input GGUF (F32, F16 or BF16 weights).
    input: PathBuf,
    /// Output GGUF (written to OUT.tmp-PID first, renamed when complete).
    output: PathBuf,
    /// Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS F16 BF16 F32
    #[arg(value_name = "TYPE")]
    preset: String,
    /// Every 2-D tensor gets the base type (no "more bits" rules).
    #[arg(long)]
    pure: bool,
    /// Allow quantizing already-quantized tensors.
    #[arg(long = "allow-requantize")]
    allow_requantize: bool,
    /// Type for output.weight.
    #[arg(long = "output-tensor-type", value_name = "T")]
    output_tensor_type: Option<String>,
    /// Type for token_embd.weight.
    #[arg(long = "token-embedding-type", value_name = "T")]
    token_embedding_type: Option<String>,
    /// Importance matrix from llama-imatrix (GGUF or legacy .dat): quantize with its
    /// per-column weights, as llama-quantize --imatrix does.
    #[arg(long, value_name = "FILE")]
    imatrix: Option<PathBuf>,
    /// Threads [default: physical cores].
    #[arg(short = 't', long)]
    threads: Option<usize>,
}

fn ggml_type(name: &str) -> phiq::Result<GgmlType> {
    GgmlType::from_name(name)
        .filter(|t| t.is_supported() && !matches!(t, GgmlType::Q8_1 | GgmlType::Q8_K))
        .ok_or_else(|| Error::InvalidInput(format!("unknown or unsupported tensor type '{name}'")))
}

pub fn run(args: Args) -> phiq::Result<()> {
    let preset = Preset::from_name(&args.preset)?;
    let opts = QuantizeOptions {
        pure: args.pure,
        allow_requantize: args.allow_requantize,
        output_tensor_type: args
            .output_tensor_type
            .as_deref()
            .map(ggml_type)
            .transpose()?,
        token_embedding_type: args
            .token_embedding_type
            .as_deref()
            .map(ggml_type)
            .transpose()?,
        imatrix: match &args.imatrix {
            Some(path) => {
                let im = phiq::imatrix::Imatrix::load(path)?;
                eprintln!(
                    "phiq: {}: {} importance matrix entries{}{}",
                    path.display(),
                    im.entries.len(),
                    if im.chunk_count > 0 {
                        format!(" computed on {} chunks", im.chunk_count)
                    } else {
                        String::new()
                    },
                    if im.legacy { " (legacy format)" } else { "" }
                );
                Some((std::sync::Arc::new(im), path.display().to_string()))
            }
            None => None,
        },
    };
    let threads = args
        .threads
        .unwrap_or_else(phiq::model::physical_cores)
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Resource(format!("cannot start {threads} threads: {e}")))?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} tensors  {msg}  [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    pool.install(|| {
        quantize_file(&args.input, &args.output, preset, &opts, |d| {
            bar.set_length(d.count as u64);
            bar.set_position(d.index as u64 + 1);
            bar.set_message(format!("{} {} -> {}", d.name, d.from, d.to));
            bytes_in += d.bytes_in;
            bytes_out += d.bytes_out;
        })
    })?;
    bar.finish_and_clear();
    eprintln!(
        "phiq: {} -> {} ({}): {:.1} MiB -> {:.1} MiB",
        args.input.display(),
        args.output.display(),
        preset.name,
        bytes_in as f64 / 1048576.0,
        bytes_out as f64 / 1048576.0
    );
    Ok(())
}

//! `phiq quantize IN.gguf OUT.gguf TYPE [--pure] [--allow-requantize] [--imatrix FILE]
//! [--output-tensor-type T] [--token-embedding-type T] [--force]` (llama-quantize's argument
//! order). Ctrl-C or SIGTERM stops it with no file left behind (exit status 130).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use phiq::kernels::GgmlType;
use phiq::quantize::{quantize_file, Preset, Progress, QuantizeOptions};
use phiq::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Input GGUF (F32, F16 or BF16 weights).
    input: PathBuf,
    /// Output GGUF (written to OUT.tmp-PID first, renamed when complete; removed on an
    /// error or Ctrl-C).
    output: PathBuf,
    /// Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K
    /// IQ4_NL IQ4_XS IQ3_M IQ3_S IQ3_XS IQ3_XXS IQ2_M IQ2_S IQ2_XS IQ2_XXS IQ1_M IQ1_S F16
    /// BF16 F32, or llama-quantize's number for one (2 = Q4_0, 15 = Q4_K_M, …; the list is
    /// in the error for an unknown one). IQ1–IQ3 presets other than IQ3_S and IQ3_M need
    /// --imatrix, as in llama-quantize.
    #[arg(value_name = "TYPE")]
    preset: String,
    /// Every 2-D tensor gets the base type (no "more bits" rules).
    #[arg(long)]
    pure: bool,
    /// Allow quantizing already-quantized tensors.
    #[arg(long = "allow-requantize")]
    allow_requantize: bool,
    /// Type for output.weight (a ggml type name such as q6_k, or its number).
    #[arg(long = "output-tensor-type", value_name = "T")]
    output_tensor_type: Option<String>,
    /// Type for token_embd.weight (no effect when the output is tied to it: use
    /// --output-tensor-type).
    #[arg(long = "token-embedding-type", value_name = "T")]
    token_embedding_type: Option<String>,
    /// Importance matrix from llama-imatrix (GGUF or legacy .dat): quantize with its
    /// per-column weights, as llama-quantize --imatrix does.
    #[arg(long, value_name = "FILE")]
    imatrix: Option<PathBuf>,
    /// Threads [default: physical cores].
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Allow OUT to be IN: the input is replaced when the new file is complete.
    #[arg(long)]
    force: bool,
}

/// A tensor type by ggml name (case-insensitive) or ggml type id.
fn ggml_type(name: &str) -> phiq::Result<GgmlType> {
    let ty = match name.parse::<u32>() {
        Ok(id) => GgmlType::from_id(id),
        Err(_) => GgmlType::from_name(name),
    };
    use GgmlType as T;
    let ty = ty
        .filter(|t| t.is_supported() && !matches!(t, T::Q8_1 | T::Q8_K))
        .ok_or_else(|| {
            Error::InvalidInput(format!("unknown or unsupported tensor type '{name}'"))
        })?;
    Ok(ty)
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / 1048576.0)
    }
}

pub fn run(args: Args) -> phiq::Result<()> {
    let preset = Preset::from_name(&args.preset)?;
    // Ctrl-C and SIGTERM: stop between chunks of rows; the temporary file is removed.
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        ctrlc::set_handler(move || cancel.store(true, Ordering::SeqCst))
            .map_err(|e| Error::Resource(format!("cannot install the Ctrl-C handler: {e}")))?;
    }
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
        overwrite_input: args.force,
        cancel: Some(cancel.clone()),
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
    let result = pool.install(|| {
        quantize_file(&args.input, &args.output, preset, &opts, |p| match p {
            // (println on a hidden bar, when stderr is not a terminal, prints nothing)
            Progress::Note(n) => bar.suspend(|| eprintln!("phiq: note: {n}")),
            Progress::Tensor(d) => {
                bar.set_length(d.count as u64);
                bar.set_position(d.index as u64 + 1);
                bar.set_message(format!("{} {} -> {}", d.name, d.from, d.to));
            }
        })
    });
    bar.finish_and_clear();
    let s = match result {
        Err(Error::Interrupted) => {
            eprintln!(
                "phiq: interrupted: nothing written ({} not created)",
                args.output.display()
            );
            std::process::exit(130);
        }
        r => r?,
    };
    eprintln!(
        "phiq: {} ({}) -> {} ({}, {}): tensors {} -> {}, {:.2} bits/weight",
        args.input.display(),
        mib(s.input_file_bytes),
        args.output.display(),
        mib(s.output_file_bytes),
        preset.name,
        mib(s.tensor_bytes_in),
        mib(s.tensor_bytes_out),
        s.tensor_bytes_out as f64 * 8.0 / s.elements.max(1) as f64
    );
    Ok(())
}

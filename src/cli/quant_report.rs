//! `phiq quant-report -m BASE.gguf --types Q4_0,Q4_K_M,… -f TEXT -o DIR`: quantizes the base
//! model to each type and measures what each costs and gains: file size, bits per weight,
//! perplexity, KL divergence from the base model (mean, 99th percentile), top-1 agreement,
//! prompt (pp) and generation (tg) speed. Writes `DIR/index.md` (a table and how it was
//! made) and two plots as SVG and PNG: KLD vs bits per weight, tokens/s vs size.
//!
//! The measurements are `phiq perplexity` and `phiq bench` themselves, run as child
//! processes of this binary, so the report's figures are exactly what those commands print
//! (a test checks the table against a separate `phiq perplexity` run). Progress on stderr:
//! the quantize bar, the perplexity chunks with an ETA, and after each type the time it
//! took and an estimate of the time left (on the real Phi-4 a report takes hours).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use phiq::quantize::{quantize_file, Preset, Progress, QuantizeOptions};
use phiq::Error;

#[derive(clap::Args)]
pub struct Args {
    /// The base model (F32/F16/BF16 ideally; an already-quantized file is requantized).
    #[command(flatten)]
    model: super::common::ModelSource,
    /// Quantization types to compare (comma-separated llama-quantize presets).
    #[arg(long, value_delimiter = ',', required = true)]
    types: Vec<String>,
    /// Text for perplexity and KL divergence.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: PathBuf,
    /// Report directory (created).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: PathBuf,
    /// Context size for perplexity.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx_size: usize,
    /// Score at most this many chunks.
    #[arg(long)]
    chunks: Option<usize>,
    /// Importance matrix for the quantizations (llama-imatrix output).
    #[arg(long, value_name = "FILE")]
    imatrix: Option<PathBuf>,
    /// Prompt length for the pp speed test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Tokens generated for the tg speed test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Repetitions per speed test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    repetitions: usize,
    /// Threads [default: physical cores].
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Keep the quantized files in DIR/models (deleted after measuring by default).
    #[arg(long)]
    keep: bool,
}

/// One row of the report.
struct Row {
    name: String,
    size: u64,
    n_params: u64,
    ppl: f64,
    ppl_unc: f64,
    /// (mean KLD, its standard error, 99th percentile, same-top-1 %), absent for the base.
    kld: Option<(f64, f64, f64, f64)>,
    pp: Option<f64>,
    tg: Option<f64>,
}

impl Row {
    fn bpw(&self) -> f64 {
        self.size as f64 * 8.0 / self.n_params.max(1) as f64
    }
}

fn exe() -> phiq::Result<PathBuf> {
    std::env::current_exe()
        .map_err(|e| Error::Resource(format!("cannot find the phiq executable: {e}")))
}

/// A bar for one step (`len` units), drawn only when stderr is a terminal.
fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "  {what} {{bar:30}} {{pos}}/{{len}} {{msg}} [{{elapsed}} < {{eta}}]"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs `phiq ARGS` and returns its stdout, or an error with its stderr. Its stderr lines
/// are passed on (indented) as they come; `on_stdout` sees each new piece of stdout, for
/// progress.
fn phiq_child(
    args: &[String],
    bar: &ProgressBar,
    mut on_stdout: impl FnMut(&str),
) -> phiq::Result<String> {
    let mut child = Command::new(exe()?)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Resource(format!("cannot run phiq {}: {e}", args.join(" "))))?;
    let (mut stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
        (Some(o), Some(e)) => (o, e),
        _ => return Err(Error::Resource("cannot read phiq's output".into())),
    };
    let bar2 = bar.clone();
    let errors = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let shown = line.strip_prefix("phiq: ").unwrap_or(&line).to_string();
            if let Some((_, rest)) = shown.split_once(" tokens, ") {
                if let Some(Ok(k)) = rest.split_once(" chunks of").map(|(k, _)| k.parse()) {
                    bar2.set_length(k);
                }
            }
            bar2.suspend(|| eprintln!("phiq quant-report:   {shown}"));
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                on_stdout(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::Resource(format!("phiq {}: {e}", args.join(" "))))?;
    let err = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(Error::Resource(format!(
            "phiq {} failed: {}",
            args.join(" "),
            err.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The number after `label` in `phiq perplexity`'s output.
fn figure(out: &str, label: &str) -> phiq::Result<f64> {
    out.find(label)
        .and_then(|at| {
            out[at + label.len()..]
                .split_whitespace()
                .next()?
                .trim_end_matches('%')
                .parse()
                .ok()
        })
        .ok_or_else(|| Error::Resource(format!("no '{label}' in phiq perplexity's output")))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Args {
    fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(phiq::model::physical_cores)
            .max(1)
    }

    fn perplexity(&self, model: &Path, kld: &Path, compare: bool) -> phiq::Result<String> {
        let mut a: Vec<String> = vec![
            "perplexity".into(),
            "-m".into(),
            path_str(model),
            "-f".into(),
            path_str(&self.file),
            "-c".into(),
            self.ctx_size.to_string(),
            "-t".into(),
            self.threads().to_string(),
            "--kl-divergence-base".into(),
            path_str(kld),
        ];
        if let Some(c) = self.chunks {
            a.extend(["--chunks".into(), c.to_string()]);
        }
        if compare {
            a.push("--kl-divergence".into());
        }
        // Chunks done: perplexity prints "[i]ppl," on stdout after each.
        // (its stderr's "N tokens, K chunks of C" sets the bar's length)
        let bar = bar(0, "perplexity chunks");
        let out = phiq_child(&a, &bar, |so| bar.inc(so.matches('[').count() as u64));
        bar.finish_and_clear();
        out
    }

    /// (pp t/s, tg t/s, model size, parameters) from `phiq bench -o json`.
    fn bench(&self, model: &Path) -> phiq::Result<(Option<f64>, Option<f64>, u64, u64)> {
        let bar = ProgressBar::hidden();
        let out = phiq_child(
            &[
                "bench".into(),
                "-m".into(),
                path_str(model),
                "-p".into(),
                self.n_prompt.to_string(),
                "-n".into(),
                self.n_gen.to_string(),
                "-r".into(),
                self.repetitions.max(1).to_string(),
                "-t".into(),
                self.threads().to_string(),
                "-o".into(),
                "json".into(),
            ],
            &bar,
            |_| {},
        )?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| Error::Resource(format!("phiq bench's JSON: {e}")))?;
        let tests = v.as_array().cloned().unwrap_or_default();
        let rate = |gen: bool| {
            tests
                .iter()
                .find(|t| (t["n_gen"].as_u64().unwrap_or(0) > 0) == gen)
                .and_then(|t| t["avg_ts"].as_f64())
        };
        let size = tests.first().and_then(|t| t["model_size"].as_u64());
        let params = tests.first().and_then(|t| t["model_n_params"].as_u64());
        Ok((
            rate(false),
            rate(true),
            size.unwrap_or(0),
            params.unwrap_or(0),
        ))
    }

    /// Size and parameter count from the file itself (when no speed test ran).
    fn size_params(model: &Path) -> phiq::Result<(u64, u64)> {
        let f = phiq::gguf::GgufFile::open(model)?;
        let bytes = f.header.tensors.iter().filter_map(|t| t.n_bytes).sum();
        let params = f.header.tensors.iter().map(|t| t.n_elements).sum();
        Ok((bytes, params))
    }

    fn measure(&self, name: &str, model: &Path, kld: &Path, is_base: bool) -> phiq::Result<Row> {
        eprintln!("phiq quant-report: {name}: perplexity and KL divergence ...");
        let out = self.perplexity(model, kld, !is_base)?;
        let kld = if is_base {
            None
        } else {
            // "Mean    KLD:   0.157771 ±   0.006544": the ± after that label.
            let mean_line = &out[out.find("Mean    KLD:").unwrap_or(0)..];
            Some((
                figure(&out, "Mean    KLD:")?,
                figure(mean_line, "±")?,
                figure(&out, "99.0%   KLD:")?,
                figure(&out, "Same top p:")?,
            ))
        };
        let (ppl, ppl_unc) = (
            figure(&out, "Final estimate: PPL = ")?,
            figure(&out, "+/- ")?,
        );
        let (pp, tg, mut size, mut n_params) = if self.n_prompt > 0 || self.n_gen > 0 {
            eprintln!("phiq quant-report: {name}: speed ...");
            self.bench(model)?
        } else {
            (None, None, 0, 0)
        };
        if size == 0 || n_params == 0 {
            (size, n_params) = Self::size_params(model)?;
        }
        Ok(Row {
            name: name.to_string(),
            size,
            n_params,
            ppl,
            ppl_unc,
            kld,
            pp,
            tg,
        })
    }
}

pub fn run(args: Args) -> phiq::Result<()> {
    let started = Instant::now();
    let model = args.model.path()?;
    let presets: Vec<Preset> = args
        .types
        .iter()
        .map(|t| Preset::from_name(t.trim()))
        .collect::<phiq::Result<_>>()?;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::Io {
            path: p.clone(),
            source: e,
        }
    };
    let models_dir = args.output.join("models");
    std::fs::create_dir_all(&models_dir).map_err(io(&models_dir))?;
    let imatrix = match &args.imatrix {
        Some(p) => Some((
            std::sync::Arc::new(phiq::imatrix::Imatrix::load(p)?),
            path_str(p),
        )),
        None => None,
    };
    let base_file = phiq::gguf::GgufFile::open(&model)?;
    let base_quantized = base_file.header.tensors.iter().any(|t| {
        t.dims.len() >= 2
            && !matches!(
                t.ty,
                Some(phiq::kernels::GgmlType::F32)
                    | Some(phiq::kernels::GgmlType::F16)
                    | Some(phiq::kernels::GgmlType::BF16)
            )
    });
    drop(base_file);

    let kld_path = args.output.join("base.kld");
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    eprintln!(
        "phiq quant-report: [0/{}] the base model {} ...",
        presets.len(),
        model.display()
    );
    let mut rows = vec![args.measure(&format!("base ({stem})"), &model, &kld_path, true)?];
    let base_done = started.elapsed();
    let threads = args.threads();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Resource(format!("cannot start {threads} threads: {e}")))?;
    for (i, preset) in presets.iter().enumerate() {
        let out = models_dir.join(format!("{stem}-{}.gguf", preset.name));
        eprintln!(
            "phiq quant-report: [{}/{}] quantizing to {} ...",
            i + 1,
            presets.len(),
            preset.name
        );
        let opts = QuantizeOptions {
            allow_requantize: base_quantized,
            imatrix: imatrix.clone(),
            ..Default::default()
        };
        let step = Instant::now();
        let bar = bar(0, "quantize tensors");
        pool.install(|| {
            quantize_file(&model, &out, *preset, &opts, |p| match p {
                Progress::Note(n) => bar.suspend(|| eprintln!("phiq quant-report:   note: {n}")),
                Progress::Tensor(d) => {
                    bar.set_length(d.count as u64);
                    bar.set_position(d.index as u64 + 1);
                }
            })
        })?;
        bar.finish_and_clear();
        let row = args.measure(preset.name, &out, &kld_path, false);
        if !args.keep {
            let _ = std::fs::remove_file(&out);
        }
        rows.push(row?);
        // Time left: the types so far took this long each on average (the base's
        // measurement is one type without the quantization).
        let per_type = (started.elapsed() - base_done) / (i as u32 + 1);
        let left = presets.len() - i - 1;
        eprintln!(
            "phiq quant-report: [{}/{}] {} done in {}{}",
            i + 1,
            presets.len(),
            preset.name,
            super::common::human_duration(step.elapsed()),
            if left > 0 {
                format!(
                    "; about {} left ({left} more)",
                    super::common::human_duration(per_type * left as u32)
                )
            } else {
                String::new()
            }
        );
    }
    let _ = std::fs::remove_file(&kld_path);
    if !args.keep {
        let _ = std::fs::remove_dir(&models_dir);
    }

    let plots = plot::write_all(&args.output, &rows)?;
    let md = index_md(
        &args,
        &model,
        &rows,
        base_quantized,
        &plots,
        started.elapsed().as_secs_f64(),
    );
    let index = args.output.join("index.md");
    std::fs::write(&index, md).map_err(io(&index))?;
    eprintln!(
        "phiq quant-report: wrote {} ({:.0} s)",
        index.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn index_md(
    args: &Args,
    model: &Path,
    rows: &[Row],
    requant: bool,
    plots: &[(String, String)],
    secs: f64,
) -> String {
    let opt = |v: Option<f64>, prec: usize| v.map_or("–".to_string(), |v| format!("{v:.prec$}"));
    let base_ppl = rows[0].ppl;
    let mut s = String::new();
    s.push_str(&format!("# Quantization report: {}\n\n", model.display()));
    s.push_str("| type | size (MiB) | bits/weight | PPL | ΔPPL | mean KLD | KLD 99% | same top-1 | pp t/s | tg t/s |\n");
    s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rows {
        let (kld, kld99, top) = match r.kld {
            Some((m, e, p99, top)) => (
                format!("{m:.6} ± {e:.6}"),
                format!("{p99:.6}"),
                format!("{top:.3} %"),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        s.push_str(&format!(
            "| {} | {:.2} | {:.3} | {:.4} ± {:.4} | {:+.2} % | {} | {} | {} | {} | {} |\n",
            r.name,
            r.size as f64 / 1048576.0,
            r.bpw(),
            r.ppl,
            r.ppl_unc,
            100.0 * (r.ppl / base_ppl - 1.0),
            kld,
            kld99,
            top,
            opt(r.pp, 1),
            opt(r.tg, 1),
        ));
    }
    s.push('\n');
    // Each figure once (SVG), with its PNG linked for tools that do not show SVG.
    for (svg, png) in plots {
        s.push_str(&format!("![{svg}]({svg})\n\n(also as [{png}]({png}))\n\n"));
    }
    let version = format!(
        "phiq {} (kernels: {})",
        env!("CARGO_PKG_VERSION"),
        phiq::kernels::isa::Isa::global()
            .map(|i| i.to_string())
            .unwrap_or_else(|e| e.to_string())
    );
    s.push_str("## How it was made\n\n");
    s.push_str(&format!(
        "- `phiq quant-report -m {} --types {} -f {} -c {}{}{} -p {} -n {} -r {} -t {}` ({version}, {:.0} s).\n",
        model.display(),
        args.types.join(","),
        args.file.display(),
        args.ctx_size,
        args.chunks.map_or(String::new(), |c| format!(" --chunks {c}")),
        args.imatrix.as_ref().map_or(String::new(), |p| format!(" --imatrix {}", p.display())),
        args.n_prompt,
        args.n_gen,
        args.repetitions,
        args.threads(),
        secs
    ));
    s.push_str(&format!(
        "- Each type: `phiq quantize BASE OUT TYPE`{}{} (llama-quantize's presets and per-tensor rules).\n",
        if requant { " --allow-requantize (the base file is already quantized, so these are requantizations)" } else { "" },
        if args.imatrix.is_some() { " --imatrix" } else { "" },
    ));
    s.push_str(&format!(
        "- PPL: `phiq perplexity -f TEXT -c {}` (llama-perplexity's definition: chunks of {} tokens, the second half of each scored); ± is llama.cpp's uncertainty. ΔPPL is relative to the base.\n",
        args.ctx_size, args.ctx_size
    ));
    s.push_str("- KLD: `--kl-divergence` against the base model's distributions on the same text (phiq keeps the base's top 64 log-probabilities per position plus the remaining mass); mean ± standard error, 99th percentile, and the share of positions where the most likely token is the same.\n");
    s.push_str(&format!(
        "- Speed: `phiq bench -p {} -n {} -r {}` (pp = prompt tokens/s in one batch, tg = generated tokens/s), {} threads, mean of the repetitions after a warm-up.\n",
        args.n_prompt, args.n_gen, args.repetitions, args.threads()
    ));
    s.push_str("- Size = the tensors' bytes (as llama-bench counts it); bits/weight = size × 8 / parameters.\n");
    s
}

mod plot {
    //! The two plots, drawn once per backend (SVG and PNG) by the same code.

    use std::path::Path;

    use plotters::coord::Shift;
    use plotters::prelude::*;

    use super::Row;
    use phiq::Error;

    /// Font files tried for the labels (plotters' ab_glyph renderer needs one; PHIQ_FONT
    /// overrides). Without one the plots are drawn without text and index.md says so.
    const FONTS: &[&str] = &[
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/Library/Fonts/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ];

    fn register_font() -> bool {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            let candidates = std::env::var("PHIQ_FONT")
                .ok()
                .into_iter()
                .chain(FONTS.iter().map(|s| s.to_string()));
            for path in candidates {
                if let Ok(bytes) = std::fs::read(&path) {
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                        .is_ok()
                    {
                        return true;
                    }
                }
            }
            false
        })
    }

    struct Spec<'a> {
        title: &'a str,
        x_label: &'a str,
        y_label: &'a str,
        points: Vec<(String, f64, f64)>,
    }

    fn draw<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        spec: &Spec,
        text: bool,
    ) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (_, x, y) in &spec.points {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
            y0 = y0.min(*y);
            y1 = y1.max(*y);
        }
        let pad = |a: f64, b: f64| ((b - a).abs() * 0.1).max(b.abs() * 0.05).max(1e-9);
        let (px, py) = (pad(x0, x1), pad(y0, y1));
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if text {
            builder
                .caption(spec.title, ("sans-serif", 22))
                .x_label_area_size(45)
                .y_label_area_size(70);
        } else {
            builder.x_label_area_size(5).y_label_area_size(5);
        }
        let mut chart = builder
            .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py).max(0.0)..(y1 + py))
            .map_err(e)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc(spec.x_label)
                .y_desc(spec.y_label)
                .label_style(("sans-serif", 14));
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e)?;
        // Each point with its label beside it: 8 px right of and 14 px above the point's
        // centre, so the text never covers the marker.
        chart
            .draw_series(
                spec.points
                    .iter()
                    .map(|(_, x, y)| Circle::new((*x, *y), 5, BLUE.filled())),
            )
            .map_err(e)?;
        if text {
            chart
                .draw_series(spec.points.iter().map(|(name, x, y)| {
                    EmptyElement::at((*x, *y))
                        + Text::new(name.clone(), (8, -14), ("sans-serif", 14).into_font())
                }))
                .map_err(e)?;
        }
        root.present().map_err(e)?;
        Ok(())
    }

    /// Writes the plots into `dir`; returns their file names, (SVG, PNG) (for index.md).
    pub fn write_all(dir: &Path, rows: &[Row]) -> phiq::Result<Vec<(String, String)>> {
        let text = register_font();
        if !text {
            eprintln!(
                "phiq quant-report: no font found (set PHIQ_FONT=FILE.ttf): plots without labels"
            );
        }
        let kld = Spec {
            title: "KL divergence from the base vs bits per weight",
            x_label: "bits per weight",
            y_label: "mean KLD",
            points: rows
                .iter()
                .filter_map(|r| r.kld.map(|k| (r.name.clone(), r.bpw(), k.0)))
                .collect(),
        };
        let speed = Spec {
            title: "generation speed vs size",
            x_label: "size (MiB)",
            y_label: "tg tokens/s",
            points: rows
                .iter()
                .filter_map(|r| r.tg.map(|t| (r.name.clone(), r.size as f64 / 1048576.0, t)))
                .collect(),
        };
        let mut names = Vec::new();
        for (stem, spec) in [("kld_vs_bpw", &kld), ("speed_vs_size", &speed)] {
            if spec.points.is_empty() {
                continue;
            }
            let svg = dir.join(format!("{stem}.svg"));
            let png = dir.join(format!("{stem}.png"));
            let fail = |p: &Path, e: String| {
                Error::Resource(format!("{}: cannot draw the plot: {e}", p.display()))
            };
            draw(
                SVGBackend::new(&svg, (800, 500)).into_drawing_area(),
                spec,
                text,
            )
            .map_err(|e| fail(&svg, e))?;
            draw(
                BitMapBackend::new(&png, (800, 500)).into_drawing_area(),
                spec,
                text,
            )
            .map_err(|e| fail(&png, e))?;
            names.push((format!("{stem}.svg"), format!("{stem}.png")));
        }
        Ok(names)
    }
}

//! `phiq quant-report` on the demo model: the report and plots exist, and the table's
//! figures are the ones a separate `phiq quantize` + `phiq perplexity` gives.

mod common;

use common::*;

/// The cells of the table row whose first cell is `name`.
fn row<'a>(md: &'a str, name: &str) -> Vec<&'a str> {
    md.lines()
        .find(|l| l.starts_with(&format!("| {name} ")))
        .unwrap_or_else(|| panic!("no row {name} in\n{md}"))
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

fn first_number(cell: &str) -> f64 {
    cell.split_whitespace().next().unwrap().parse().unwrap()
}

fn final_ppl(out: &str) -> f64 {
    let at = out.find("Final estimate: PPL = ").unwrap() + "Final estimate: PPL = ".len();
    out[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn quant_report_on_the_demo_model() {
    let tmp = std::env::temp_dir().join(format!("phiq-quant-report-{}", std::process::id()));
    let report = tmp.join("report");
    let model = repo_root().join("models/phiq-demo.gguf");
    let text = repo_root().join("tests/fixtures/text/alice-ch3.txt");
    let (m, t) = (model.to_str().unwrap(), text.to_str().unwrap());
    // No -m: the demo model, as for every subcommand.
    let (code, _, err) = run_phiq(&[
        "quant-report",
        "--types",
        "Q4_0,Q6_K",
        "-f",
        t,
        "-c",
        "128",
        "--chunks",
        "6",
        "-p",
        "32",
        "-n",
        "8",
        "-r",
        "1",
        "-t",
        "2",
        "-o",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    // Progress on stderr: each step, perplexity's ETA, the time each type took and the
    // estimate of the time left.
    for said in [
        "quantizing to Q6_K",
        "6 chunks of 128",
        "s per chunk, ETA",
        "[1/2] Q4_0 done in",
        "left (1 more)",
        "[2/2] Q6_K done in",
    ] {
        assert!(err.contains(said), "'{said}' not on stderr: {err}");
    }
    for f in ["kld_vs_bpw", "speed_vs_size"] {
        let svg = std::fs::read_to_string(report.join(format!("{f}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<circle"), "{f}.svg");
        let png = std::fs::read(report.join(format!("{f}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "{f}.png"
        );
    }
    let md = std::fs::read_to_string(report.join("index.md")).unwrap();
    assert!(md.contains("## How it was made"), "{md}");
    assert!(
        md.starts_with("# Quantization report: models/phiq-demo.gguf"),
        "{md}"
    );
    // Each figure shown once (the SVG), the PNG linked.
    for f in ["kld_vs_bpw", "speed_vs_size"] {
        assert_eq!(md.matches(&format!("![{f}")).count(), 1, "{md}");
        assert!(md.contains(&format!("[{f}.png]({f}.png)")), "{md}");
    }
    // The labels sit beside their points: each label starts right of a marker's edge and
    // ends above its centre (SVG: text x/y is the top-left corner, circles cx/cy/r).
    let svg = std::fs::read_to_string(report.join("kld_vs_bpw.svg")).unwrap();
    let attr = |tag: &str, name: &str| -> f64 {
        let at = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        tag[at..].split('"').next().unwrap().parse().unwrap()
    };
    let circles: Vec<(f64, f64, f64)> = svg
        .split("<circle")
        .skip(1)
        .map(|t| (attr(t, "cx"), attr(t, "cy"), attr(t, "r")))
        .collect();
    let labels: Vec<(f64, f64)> = svg
        .split("<text")
        .skip(1)
        .filter(|t| t.contains("text-anchor=\"start\""))
        .map(|t| (attr(t, "x"), attr(t, "y")))
        .collect();
    let font = !err.contains("no font found");
    assert_eq!(
        (circles.len(), labels.len()),
        (2, if font { 2 } else { 0 }),
        "{svg}"
    );
    for ((cx, cy, r), (x, y)) in circles.iter().zip(&labels) {
        assert!(
            *x > cx + r && *y < *cy,
            "label at ({x}, {y}) on the point ({cx}, {cy})"
        );
    }
    assert!(
        !report.join("models").exists(),
        "quantized files are removed without --keep"
    );

    // The same measurements, made separately.
    let base_kld = tmp.join("base.kld");
    let (code, out, err) = run_phiq(&[
        "perplexity",
        "-m",
        m,
        "-f",
        t,
        "-c",
        "128",
        "--chunks",
        "6",
        "--kl-divergence-base",
        base_kld.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let base = row(&md, "base (phiq-demo)");
    assert_eq!(first_number(base[3]), (final_ppl(&out) * 1e4).round() / 1e4);
    let mut bpw_kld = Vec::new();
    for ty in ["Q4_0", "Q6_K"] {
        let q = tmp.join(format!("{ty}.gguf"));
        let (code, _, err) =
            run_phiq(&["quantize", m, q.to_str().unwrap(), ty, "--allow-requantize"]);
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = run_phiq(&[
            "perplexity",
            "-m",
            q.to_str().unwrap(),
            "-f",
            t,
            "-c",
            "128",
            "--chunks",
            "6",
            "--kl-divergence-base",
            base_kld.to_str().unwrap(),
            "--kl-divergence",
        ]);
        assert_eq!(code, 0, "{err}");
        let r = row(&md, ty);
        assert_eq!(
            first_number(r[3]),
            (final_ppl(&out) * 1e4).round() / 1e4,
            "{ty} PPL"
        );
        let line = out.lines().find(|l| l.starts_with("Mean    KLD:")).unwrap();
        let kld: f64 = line["Mean    KLD:".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(first_number(r[5]), kld, "{ty} KLD");
        // Size: the tensors' bytes of the file phiq writes; bits/weight consistent with it.
        let f = phiq::gguf::GgufFile::open(&q).unwrap();
        let bytes: u64 = f.header.tensors.iter().map(|t| t.n_bytes.unwrap()).sum();
        let params: u64 = f.header.tensors.iter().map(|t| t.n_elements).sum();
        assert_eq!(
            first_number(r[1]),
            (bytes as f64 / 1048576.0 * 100.0).round() / 100.0
        );
        let bpw = bytes as f64 * 8.0 / params as f64;
        assert_eq!(first_number(r[2]), (bpw * 1000.0).round() / 1000.0);
        assert!(
            first_number(r[9]) > 0.0 && first_number(r[8]) > 0.0,
            "{ty}: speeds"
        );
        bpw_kld.push((bpw, kld));
    }
    // More bits, less divergence.
    assert!(
        bpw_kld[1].0 > bpw_kld[0].0 && bpw_kld[1].1 < bpw_kld[0].1,
        "{bpw_kld:?}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

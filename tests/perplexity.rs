//! `phiq perplexity`: llama-perplexity's output, and KL divergence (zero against itself).

mod common;

use common::*;

fn phiq(args: &[&str]) -> (i32, String, String) {
    run_phiq(args)
}

#[test]
fn perplexity_and_kl_divergence() {
    let Some(dir) = tiny_models_dir() else { return };
    let tmp = std::env::temp_dir().join(format!("phiq-ppl-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    // The tokenizer corpus as a text (several chunks of 64 tokens).
    let corpus =
        std::fs::read_to_string(shared_fixtures().join("tokenizer/phi4-corpus.jsonl")).unwrap();
    let text: Vec<String> = corpus
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let text_path = tmp.join("text.txt");
    std::fs::write(&text_path, text.join(" ")).unwrap();
    let t = text_path.to_str().unwrap();
    let f32 = dir.join("tiny-phi4-F32.gguf");
    let q4 = dir.join("tiny-phi4-Q4_0.gguf");
    let base = tmp.join("base.kld");
    let b = base.to_str().unwrap();

    let (code, out, err) = phiq(&[
        "perplexity",
        "-m",
        f32.to_str().unwrap(),
        "-f",
        t,
        "-c",
        "64",
        "--chunks",
        "3",
        "--kl-divergence-base",
        b,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("[1]") && out.contains("[3]"), "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("Final estimate: PPL = ") && last.contains(" +/- "),
        "{last}"
    );
    let ppl: f64 = last["Final estimate: PPL = ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ppl.is_finite() && ppl > 1.0);

    // Against itself: zero divergence, same top token everywhere.
    let (code, out, err) = phiq(&[
        "perplexity",
        "-m",
        f32.to_str().unwrap(),
        "-f",
        t,
        "-c",
        "64",
        "--chunks",
        "3",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Mean    KLD:   0.000000"), "{out}");
    assert!(out.contains("Same top p: 100.000 %"), "{out}");
    // A 4-bit file diverges.
    let (code, out, _) = phiq(&[
        "perplexity",
        "-m",
        q4.to_str().unwrap(),
        "-f",
        t,
        "-c",
        "64",
        "--chunks",
        "3",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
    ]);
    assert_eq!(code, 0);
    let mean: f64 = out.lines().find(|l| l.starts_with("Mean    KLD:")).unwrap()
        ["Mean    KLD:".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(mean > 1e-3, "{out}");
    // Another -c than the base file: a clear error.
    let (code, _, err) = phiq(&[
        "perplexity",
        "-m",
        q4.to_str().unwrap(),
        "-f",
        t,
        "-c",
        "32",
        "--chunks",
        "3",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("another text"), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

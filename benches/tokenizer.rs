//! Tokenizer throughput on Phi-4's vocabulary: encode MB/s on ~1 MB of mixed text (the
//! fixture corpus — English, code, many scripts, emoji, long runs — repeated), decode, and
//! the time to build the tokenizer from the GGUF metadata.
//!
//! `cargo bench --bench tokenizer`; `tools/bench_tiktoken.py` measures tiktoken on the same
//! texts (built by the same recipe).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use phiq::gguf::GgufFile;
use phiq::Tokenizer;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

/// The corpus texts (those of at most `max_len` bytes) joined by newlines, repeated up to
/// at least 1 MiB. All texts: dominated by the corpus's stress cases (5000 `a`, 1000
/// spaces, 3000 `ab`, 600 `漢`: 70% of the bytes are pieces over 48 bytes). Texts up to
/// 256 bytes: the ordinary mix of English, code and other scripts.
fn bench_text(max_len: usize) -> String {
    let corpus = std::fs::read_to_string(fixtures().join("tokenizer/phi4-corpus.jsonl"))
        .expect("read the corpus");
    let texts: Vec<String> = corpus
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["text"].as_str().expect("text").to_string()
        })
        .filter(|t| t.len() <= max_len)
        .collect();
    let one = texts.join("\n");
    let mut text = String::new();
    while text.len() < 1 << 20 {
        text.push_str(&one);
        text.push('\n');
    }
    text
}

fn tokenizer(c: &mut Criterion) {
    let file = GgufFile::open(fixtures().join("vocab/ggml-vocab-phi-4.gguf")).expect("open");
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
    let text = bench_text(usize::MAX);
    let natural = bench_text(256);
    let ids = tok.encode(&natural, false, false);

    let mut g = c.benchmark_group("tokenizer");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(natural.len() as u64));
    g.bench_function("encode phi-4 (1 MiB mixed, texts <= 256 B)", |b| {
        b.iter(|| tok.encode(&natural, false, false))
    });
    g.bench_function("encode phi-4, parse special (texts <= 256 B)", |b| {
        b.iter(|| tok.encode(&natural, false, true))
    });
    g.bench_function("decode phi-4 (texts <= 256 B)", |b| {
        b.iter(|| tok.decode(&ids).unwrap())
    });
    let phi3_file =
        GgufFile::open(fixtures().join("vocab/ggml-vocab-phi-3.gguf")).expect("open phi-3");
    let phi3 = Tokenizer::from_gguf(&phi3_file).expect("phi-3 tokenizer");
    g.bench_function("encode phi-3 SentencePiece (texts <= 256 B)", |b| {
        b.iter(|| phi3.encode(&natural, false, false))
    });
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function(
        "encode phi-4 (1 MiB, whole corpus incl. stress cases)",
        |b| b.iter(|| tok.encode(&text, false, false)),
    );
    g.finish();

    let mut g = c.benchmark_group("tokenizer load");
    g.sample_size(10);
    g.bench_function("from_gguf phi-4 (100k tokens, 233k merges)", |b| {
        b.iter(|| Tokenizer::from_gguf(&file).unwrap())
    });
    g.finish();
}

criterion_group!(benches, tokenizer);
criterion_main!(benches);

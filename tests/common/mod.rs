//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use phiq::gguf::{Array, GgufWriter, TensorSpec, Value};
use phiq::kernels::GgmlType;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/fixtures` beside the repository (CI lays it there too).
pub fn shared_fixtures() -> PathBuf {
    repo_root().join("../shared/fixtures")
}

/// A Python with the reference packages (gguf, numpy), or `None`.
///
/// `PHIQ_PYTHON` names it; `tools/test.sh` sets it to the venv it builds. When
/// `PHIQ_REQUIRE_REFERENCES=1` (set by `tools/test.sh`, hence by CI) a missing reference
/// is a test failure, so a reference test can never pass by silently skipping.
pub fn reference_python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PHIQ_PYTHON").map(PathBuf::from),
        Some(repo_root().join("target/pyref/bin/python")),
    ];
    for py in candidates.into_iter().flatten() {
        let ok = Command::new(&py)
            .args(["-c", "import gguf, numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(py);
        }
    }
    if std::env::var("PHIQ_REQUIRE_REFERENCES").as_deref() == Ok("1") {
        panic!("PHIQ_REQUIRE_REFERENCES=1 but no Python with gguf+numpy (set PHIQ_PYTHON or run tools/test.sh)");
    }
    eprintln!("SKIPPED: no Python with gguf+numpy; run tools/test.sh to test against gguf-py");
    None
}

/// A Python with the reference packages and these extra `modules` (comma-separated,
/// e.g. "openai"), with the same skip / require rules as [`reference_python`].
pub fn python_with(modules: &str) -> Option<PathBuf> {
    let py = reference_python()?;
    let ok = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(py);
    }
    if std::env::var("PHIQ_REQUIRE_REFERENCES").as_deref() == Ok("1") {
        panic!("PHIQ_REQUIRE_REFERENCES=1 but {} lacks {modules} (tools/requirements-ci.txt; rerun tools/test.sh)", py.display());
    }
    eprintln!(
        "SKIPPED: {} lacks {modules}; run tools/test.sh",
        py.display()
    );
    None
}

/// Runs a `tools/` Python script and returns its stdout; panics with its output on failure.
pub fn run_tool(py: &Path, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg(repo_root().join("tools/gguf_ref.py"))
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gguf_ref.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Deterministic pseudo-random bytes (xorshift64 seeded by `seed`).
pub fn pattern_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Metadata with every value type, nested and empty arrays.
pub fn sample_metadata() -> Vec<(String, Value)> {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    vec![
        kv("general.architecture", Value::String("phi3".into())),
        kv("general.name", Value::String("sample ✓".into())),
        kv("test.u8", Value::U8(255)),
        kv("test.i8", Value::I8(-128)),
        kv("test.u16", Value::U16(65535)),
        kv("test.i16", Value::I16(-32768)),
        kv("test.u32", Value::U32(4_000_000_000)),
        kv("test.i32", Value::I32(-7)),
        kv("test.f32", Value::F32(1e-5)),
        kv("test.bool", Value::Bool(true)),
        kv("test.u64", Value::U64(u64::MAX)),
        kv("test.i64", Value::I64(i64::MIN)),
        kv("test.f64", Value::F64(-0.1)),
        kv("test.string", Value::String("<|im_start|>日本語\n".into())),
        kv("test.arr_u8", Value::Array(Array::U8(vec![1, 2, 3]))),
        kv("test.arr_i8", Value::Array(Array::I8(vec![-1, 2]))),
        kv("test.arr_u16", Value::Array(Array::U16(vec![9, 65535]))),
        kv("test.arr_i16", Value::Array(Array::I16(vec![-9]))),
        kv(
            "test.arr_u32",
            Value::Array(Array::U32(vec![0, 1, u32::MAX])),
        ),
        kv("test.arr_i32", Value::Array(Array::I32((-3..40).collect()))),
        kv(
            "test.arr_f32",
            Value::Array(Array::F32(vec![0.25, -1e30, 3.0])),
        ),
        kv(
            "test.arr_bool",
            Value::Array(Array::Bool(vec![false, true])),
        ),
        kv(
            "test.arr_str",
            Value::Array(Array::String(vec!["Ġa".into(), "".into(), "b c".into()])),
        ),
        kv("test.arr_u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        kv("test.arr_i64", Value::Array(Array::I64(vec![i64::MIN, 5]))),
        kv("test.arr_f64", Value::Array(Array::F64(vec![1e300, -2.0]))),
        kv(
            "test.arr_nested",
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, 2]),
                Array::I32(vec![3]),
                Array::I32(vec![]),
            ])),
        ),
    ]
}

/// Tensors of several types and ranks.
pub fn sample_tensors() -> Vec<TensorSpec> {
    let t = |name: &str, dims: &[u64], ty| TensorSpec {
        name: name.into(),
        dims: dims.to_vec(),
        ty,
    };
    vec![
        t("token_embd.weight", &[64, 3], GgmlType::F32),
        t("norm.bias", &[5], GgmlType::F32),
        t("f16.weight", &[32, 2], GgmlType::F16),
        t("q8.weight", &[64, 2], GgmlType::Q8_0),
        t("q4k.weight", &[256, 2], GgmlType::Q4_K),
        t("cube.weight", &[32, 2, 2], GgmlType::Q4_0),
        t("four.weight", &[2, 1, 3, 2], GgmlType::BF16),
    ]
}

/// A complete GGUF file from our writer, with its tensor data.
pub fn sample_file() -> (Vec<u8>, Vec<Vec<u8>>) {
    let meta = sample_metadata();
    let tensors = sample_tensors();
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let n: u64 = t.dims.iter().product();
            pattern_bytes(t.ty.bytes_for(n).unwrap() as usize, i as u64)
        })
        .collect();
    let mut w = GgufWriter::new(Vec::new(), "sample.gguf", &meta, &tensors).unwrap();
    for d in &data {
        // Write in two pieces to exercise streaming.
        let (a, b) = d.split_at(d.len() / 3);
        w.write_data(a).unwrap();
        w.write_data(b).unwrap();
    }
    (w.finish().unwrap(), data)
}

/// The tiny reference models of tools/tiny_models.py, generated once per test binary
/// into target/tiny-models, or reused when complete: tiny-phi4 and tiny-phi4-mini in
/// every type below, tiny-phi4-swa (a sliding window) in F32. `None` (after the skip
/// message) when no Python reference is available and it is not required.
pub fn tiny_models_dir() -> Option<PathBuf> {
    use std::sync::OnceLock;
    const TYPES: &str = "F32,F16,BF16,Q8_0,Q4_0,Q4_1,Q5_0,Q5_1";
    const SETS: [(&str, &str); 3] = [
        ("tiny-phi4,tiny-phi4-mini", TYPES),
        ("tiny-phi4-swa", "F32"),
        (
            "tiny-phi4-llama,tiny-llama-linear,tiny-phi4-reasoning",
            "F32",
        ),
    ];
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let py = reference_python()?;
        let dir = repo_root().join("target/tiny-models");
        std::fs::create_dir_all(&dir).unwrap();
        for (models, types) in SETS {
            let complete = models.split(',').all(|m| {
                types
                    .split(',')
                    .all(|t| dir.join(format!("{m}-{t}.gguf")).exists())
            });
            if complete {
                continue;
            }
            let out = Command::new(&py)
                .arg(repo_root().join("tools/tiny_models.py"))
                .arg(&dir)
                .args(["--models", models, "--types", types])
                .output()
                .expect("run tools/tiny_models.py");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(dir)
    })
    .clone()
}

/// Runs the `phiq` binary: (exit code, stdout, stderr).
/// A command running the `phiq` binary under test: directly, or through
/// `$PHIQ_TEST_RUNNER` (words split on spaces) when set, as `tools/test-aarch64.sh` runs
/// an aarch64 build under `qemu-aarch64`.
pub fn phiq_cmd() -> Command {
    let exe = env!("CARGO_BIN_EXE_phiq");
    match std::env::var("PHIQ_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap());
            cmd.args(words).arg(exe);
            cmd
        }
        _ => Command::new(exe),
    }
}

pub fn run_phiq(args: &[&str]) -> (i32, String, String) {
    let out = phiq_cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `n` greedy tokens after `prompt` (no stop tokens), one `eval` per token.
pub fn greedy_ids(model: &phiq::Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut session = model.session(prompt.len() + n).unwrap();
    let mut sampler = phiq::Sampler::new(phiq::SamplerParams::greedy());
    let mut logits = session.eval(prompt).unwrap().to_vec();
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let id = sampler.sample(&logits);
        got.push(id);
        logits = session.eval(&[id]).unwrap().to_vec();
    }
    got
}

/// A copy of the demo model (target/phiq-demo-think.gguf, made when missing) whose chat
/// template's generation prompt opens the thinking, as DeepSeek-R1-style reasoning
/// templates do (`…<|im_sep|><think>\n`): everything the model writes is then thinking.
#[allow(dead_code)]
pub fn demo_with_thinking_template() -> PathBuf {
    use phiq::gguf::{GgufFile, GgufWriter, TensorSpec, Value};
    use std::sync::OnceLock;
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let src = GgufFile::open(repo_root().join("models/phiq-demo.gguf")).unwrap();
        let metadata: Vec<(String, Value)> = src
            .header
            .metadata
            .iter()
            .map(|(k, v)| {
                let v = match (k, v) {
                    ("tokenizer.chat_template", Value::String(t)) => Value::String(format!(
                        "{t}{{% if add_generation_prompt %}}<think>\n{{% endif %}}"
                    )),
                    _ => v.clone(),
                };
                (k.to_string(), v)
            })
            .collect();
        let specs: Vec<TensorSpec> = src
            .header
            .tensors
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty.unwrap(),
            })
            .collect();
        let path = repo_root().join("target/phiq-demo-think.gguf");
        // Written under a name of this process's own, then renamed: test binaries run at
        // the same time may both make it.
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let f = std::fs::File::create(&tmp).unwrap();
        let mut w = GgufWriter::new(std::io::BufWriter::new(f), &tmp, &metadata, &specs).unwrap();
        for t in &src.header.tensors {
            w.write_data(src.tensor_data(t).unwrap()).unwrap();
        }
        w.finish().unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    })
    .clone()
}

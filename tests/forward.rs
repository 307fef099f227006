//! The forward pass on small models written by our GGUF writer: batch vs one token at a
//! time, split prompts, thread-count determinism, and every class of bad model input.
//! (Agreement with transformers is tested in tests/forward_reference.rs.)

mod common;

use phiq::gguf::{GgufFile, GgufWriter, TensorSpec, Value};
use phiq::kernels::GgmlType;
use phiq::{Error, Model, ModelOptions};

struct Spec {
    n_vocab: usize,
    n_embd: usize,
    n_ff: usize,
    n_layer: usize,
    n_head: usize,
    n_kv: usize,
    ty: GgmlType,
}

const SMALL: Spec = Spec {
    n_vocab: 300,
    n_embd: 64,
    n_ff: 128,
    n_layer: 2,
    n_head: 4,
    n_kv: 2,
    ty: GgmlType::F32,
};

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let r = common::pattern_bytes(n, seed);
    (0..n)
        .map(|i| (r[i] as f32 - 127.5) / 127.5 * scale)
        .collect()
}

fn encode(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    phiq::kernels::dynamic::quantize_to_vec(ty, x).unwrap()
}

/// A phi3 GGUF. `tweak` may edit metadata and tensors before writing.
fn write_model(
    s: &Spec,
    tweak: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<(TensorSpec, Vec<f32>)>),
) -> Vec<u8> {
    let hd = s.n_embd / s.n_head;
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("phi3".into())),
        ("phi3.context_length".into(), Value::U32(128)),
        ("phi3.embedding_length".into(), Value::U32(s.n_embd as u32)),
        ("phi3.feed_forward_length".into(), Value::U32(s.n_ff as u32)),
        ("phi3.block_count".into(), Value::U32(s.n_layer as u32)),
        (
            "phi3.attention.head_count".into(),
            Value::U32(s.n_head as u32),
        ),
        (
            "phi3.attention.head_count_kv".into(),
            Value::U32(s.n_kv as u32),
        ),
        (
            "phi3.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("phi3.rope.dimension_count".into(), Value::U32(hd as u32)),
        ("phi3.rope.freq_base".into(), Value::F32(10000.0)),
    ];
    let mut tensors: Vec<(TensorSpec, Vec<f32>)> = Vec::new();
    let mut add = |name: &str, dims: Vec<u64>, ty: GgmlType, scale: f32, bias: f32| {
        let n: u64 = dims.iter().product();
        let seed = tensors.len() as u64 + 1;
        let v: Vec<f32> = values(n as usize, seed, scale)
            .iter()
            .map(|x| x + bias)
            .collect();
        tensors.push((
            TensorSpec {
                name: name.into(),
                dims,
                ty,
            },
            v,
        ));
    };
    let (e, ff) = (s.n_embd as u64, s.n_ff as u64);
    let qkv = (s.n_head * hd + 2 * s.n_kv * hd) as u64;
    add(
        "token_embd.weight",
        vec![e, s.n_vocab as u64],
        s.ty,
        1.0,
        0.0,
    );
    for l in 0..s.n_layer {
        add(
            &format!("blk.{l}.attn_norm.weight"),
            vec![e],
            GgmlType::F32,
            0.1,
            1.0,
        );
        add(
            &format!("blk.{l}.attn_qkv.weight"),
            vec![e, qkv],
            s.ty,
            0.2,
            0.0,
        );
        add(
            &format!("blk.{l}.attn_output.weight"),
            vec![e, e],
            s.ty,
            0.2,
            0.0,
        );
        add(
            &format!("blk.{l}.ffn_norm.weight"),
            vec![e],
            GgmlType::F32,
            0.1,
            1.0,
        );
        add(
            &format!("blk.{l}.ffn_up.weight"),
            vec![e, 2 * ff],
            s.ty,
            0.2,
            0.0,
        );
        add(
            &format!("blk.{l}.ffn_down.weight"),
            vec![ff, e],
            s.ty,
            0.2,
            0.0,
        );
    }
    add("output_norm.weight", vec![e], GgmlType::F32, 0.1, 1.0);
    add("output.weight", vec![e, s.n_vocab as u64], s.ty, 0.3, 0.0);
    tweak(&mut meta, &mut tensors);
    let specs: Vec<TensorSpec> = tensors.iter().map(|(t, _)| t.clone()).collect();
    let mut w = GgufWriter::new(Vec::new(), "model.gguf", &meta, &specs).unwrap();
    for (t, v) in &tensors {
        w.write_data(&encode(t.ty, v)).unwrap();
    }
    w.finish().unwrap()
}

fn load(bytes: Vec<u8>, threads: usize, batch: usize) -> phiq::Result<Model> {
    let opts = ModelOptions {
        threads: Some(threads),
        batch_size: Some(batch),
        ..Default::default()
    };
    Model::from_file(GgufFile::from_bytes("model.gguf", bytes)?, &opts)
}

const PROMPT: [u32; 11] = [1, 17, 255, 3, 42, 42, 99, 0, 299, 150, 7];

#[test]
fn batch_equals_one_at_a_time_and_split_prompts() {
    for ty in [GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_0] {
        let bytes = write_model(&Spec { ty, ..SMALL }, |_, _| {});
        let model = load(bytes, 2, 512).unwrap();
        let mut s = model.session(64).unwrap();
        let all = s.eval_all(&PROMPT).unwrap();
        let n_vocab = model.n_vocab();
        assert_eq!(all.len(), PROMPT.len() * n_vocab);
        assert!(all.iter().all(|v| v.is_finite()));

        // One token at a time.
        let mut s1 = model.session(64).unwrap();
        for (t, &id) in PROMPT.iter().enumerate() {
            let logits = s1.eval(&[id]).unwrap().to_vec();
            for (a, b) in logits.iter().zip(&all[t * n_vocab..(t + 1) * n_vocab]) {
                // Same maths, different matmul tiling of the batch: f32 noise only.
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{ty} t={t}: {a} vs {b}"
                );
            }
        }
        // A prompt split across two eval calls equals one call.
        let mut s2 = model.session(64).unwrap();
        s2.eval(&PROMPT[..4]).unwrap();
        let last = s2.eval(&PROMPT[4..]).unwrap();
        let want = &all[(PROMPT.len() - 1) * n_vocab..];
        for (a, b) in last.iter().zip(want) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{ty}: {a} vs {b}");
        }
        // Small batches equal one big batch.
        let small = load(write_model(&Spec { ty, ..SMALL }, |_, _| {}), 2, 3).unwrap();
        let all3 = small.session(64).unwrap().eval_all(&PROMPT).unwrap();
        for (a, b) in all3.iter().zip(&all) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()));
        }
        // Truncate and re-evaluate the tail.
        s2.truncate(4);
        assert_eq!(s2.n_past(), 4);
        let again = s2.eval(&PROMPT[4..]).unwrap();
        assert_eq!(again, last_vec(&all, n_vocab, PROMPT.len()));
    }
}

fn last_vec(all: &[f32], n_vocab: usize, n: usize) -> Vec<f32> {
    all[(n - 1) * n_vocab..n * n_vocab].to_vec()
}

#[test]
fn logits_are_bit_identical_for_any_thread_count() {
    let bytes = write_model(
        &Spec {
            ty: GgmlType::Q4_0,
            ..SMALL
        },
        |_, _| {},
    );
    let mut first: Option<Vec<f32>> = None;
    for threads in [1, 2, 3] {
        let model = load(bytes.clone(), threads, 512).unwrap();
        let out = model.session(64).unwrap().eval_all(&PROMPT).unwrap();
        match &first {
            None => first = Some(out),
            Some(f) => assert!(
                f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{threads} threads differ from 1"
            ),
        }
    }
}

fn load_err(
    tweak: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<(TensorSpec, Vec<f32>)>),
) -> String {
    match load(write_model(&SMALL, tweak), 1, 512) {
        Ok(_) => panic!("expected a load error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_models_are_clear_errors() {
    let e = load_err(|m, _| m[0].1 = Value::String("mamba".into()));
    assert!(
        e.contains("unsupported architecture 'mamba'") && e.contains("phi3, llama"),
        "{e}"
    );
    // `llama` files: the keys are llama.*; each problem named.
    let to_llama = |m: &mut Vec<(String, Value)>| {
        m[0].1 = Value::String("llama".into());
        for (k, _) in m.iter_mut() {
            if let Some(rest) = k.strip_prefix("phi3.") {
                *k = format!("llama.{rest}");
            }
        }
    };
    let e = load_err(|m, _| {
        to_llama(m);
        m.retain(|(k, _)| k != "llama.feed_forward_length");
    });
    assert!(
        e.contains("missing metadata key 'llama.feed_forward_length'"),
        "{e}"
    );
    let e = load_err(|m, _| {
        to_llama(m);
        for (k, v) in m.iter_mut() {
            if k == "llama.attention.head_count_kv" {
                *v = Value::U32(3);
            }
        }
    });
    assert!(
        e.contains("llama.attention.head_count = 4")
            && e.contains("llama.attention.head_count_kv = 3"),
        "{e}"
    );
    let e = load_err(|m, _| {
        to_llama(m);
        m.push((
            "llama.rope.scaling.type".into(),
            Value::String("yarn".into()),
        ));
    });
    assert!(
        e.contains("llama.rope.scaling.type = 'yarn'") && e.contains("linear"),
        "{e}"
    );
    // Separate Q/K/V: a file with attn_q but no attn_k names the missing tensor.
    let e = load_err(|m, t| {
        to_llama(m);
        for (spec, v) in t.iter_mut() {
            if spec.name == "blk.0.attn_qkv.weight" {
                spec.name = "blk.0.attn_q.weight".into();
                spec.dims = vec![64, 64];
                v.truncate(64 * 64);
            }
        }
    });
    assert!(e.contains("missing tensor 'blk.0.attn_k.weight'"), "{e}");
    let e = load_err(|m, _| m.retain(|(k, _)| k != "phi3.block_count"));
    assert!(e.contains("phi3.block_count"), "{e}");
    let e = load_err(|_, t| t.retain(|(s, _)| s.name != "blk.1.ffn_down.weight"));
    assert!(e.contains("missing tensor 'blk.1.ffn_down.weight'"), "{e}");
    let e = load_err(|_, t| {
        let (spec, v) = t
            .iter_mut()
            .find(|(s, _)| s.name == "blk.0.attn_output.weight")
            .unwrap();
        spec.dims = vec![64, 32];
        v.truncate(64 * 32);
    });
    assert!(
        e.contains("blk.0.attn_output.weight") && e.contains("[64, 64]") && e.contains("[64, 32]"),
        "{e}"
    );
}

#[test]
fn bad_runtime_input_is_a_clear_error() {
    // NaN in a weight: reported with its layer.
    let bytes = write_model(&SMALL, |_, t| {
        let (_, v) = t
            .iter_mut()
            .find(|(s, _)| s.name == "blk.1.ffn_down.weight")
            .unwrap();
        v[5] = f32::NAN;
    });
    let model = load(bytes, 1, 512).unwrap();
    let e = model
        .session(16)
        .unwrap()
        .eval(&PROMPT)
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer 1"), "{e}");

    let model = load(write_model(&SMALL, |_, _| {}), 1, 512).unwrap();
    let mut s = model.session(8).unwrap();
    let e = s.eval(&PROMPT).unwrap_err().to_string();
    assert!(e.contains("context full") && e.contains("8"), "{e}");
    let e = s.eval(&[300]).unwrap_err().to_string();
    assert!(e.contains("token id 300"), "{e}");
    assert!(matches!(s.eval(&[]), Err(Error::InvalidInput(_))));
    assert!(model.session(1000).is_err());
}

#[test]
fn logits_cli_writes_npy_that_numpy_reads() {
    let Some(py) = common::reference_python() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("phiq-logits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.gguf");
    let bytes = write_model(&SMALL, |_, _| {});
    std::fs::write(&path, &bytes).unwrap();
    let npy = dir.join("out.npy");
    let ids = "1,17,255,3,42";
    let st = common::phiq_cmd()
        .args([
            "logits",
            "-m",
            path.to_str().unwrap(),
            "--ids",
            ids,
            "-o",
            npy.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    // The ids as `phiq tokenize --ids` prints them: the same logits.
    let npy2 = dir.join("out2.npy");
    let st = common::phiq_cmd()
        .args([
            "logits",
            "-m",
            path.to_str().unwrap(),
            "--ids",
            "[1, 17, 255, 3, 42]",
        ])
        .args(["-o", npy2.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(&npy).unwrap(), std::fs::read(&npy2).unwrap());
    let out = std::process::Command::new(&py)
        .args(["-c", "import numpy as np, sys; a = np.load(sys.argv[1]); print(a.dtype, a.shape, repr(float(a[2, 7])))"])
        .arg(&npy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let model = load(bytes, 2, 512).unwrap();
    let all = model
        .session(5)
        .unwrap()
        .eval_all(&[1, 17, 255, 3, 42])
        .unwrap();
    let want = all[2 * 300 + 7];
    assert!(text.starts_with("float32 (5, 300)"), "{text}");
    let got: f32 = text.split_whitespace().last().unwrap().parse().unwrap();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Random blocks of IQ type `ty` for `n` values, scaled so the weights have a standard
/// deviation near `std` (their d, an f16, set after one dequantization with d = 1).
fn iq_blocks(ty: GgmlType, n: usize, seed: u64, std: f32) -> Vec<u8> {
    use phiq::kernels::dynamic::dequantize;
    let size = ty.type_size() as usize;
    let n_blocks = n / 256;
    let mut bytes = common::pattern_bytes(n_blocks * size, seed);
    let set_d = |bytes: &mut [u8], d: half::f16| {
        for b in bytes.chunks_exact_mut(size) {
            if ty == GgmlType::IQ1_M {
                // The f16 is the top nibbles of the 4 u16 scale words at bytes 48..56.
                for k in 0..4 {
                    let at = 48 + 2 * k;
                    let w = u16::from_le_bytes([b[at], b[at + 1]]);
                    let w = (w & 0x0FFF) | ((d.to_bits() >> (4 * k)) & 0xF) << 12;
                    b[at..at + 2].copy_from_slice(&w.to_le_bytes());
                }
            } else {
                b[..2].copy_from_slice(&d.to_bits().to_le_bytes());
            }
        }
    };
    set_d(&mut bytes, half::f16::ONE);
    let mut v = vec![0f32; n];
    dequantize(ty, &bytes, &mut v).unwrap();
    let s = (v.iter().map(|x| (x * x) as f64).sum::<f64>() / n as f64).sqrt() as f32;
    set_d(&mut bytes, half::f16::from_f32(std / s));
    bytes
}

/// A model of `spec`'s shape whose 2-D weights come from `make(index, name, values)` as
/// (type, bytes), and the same model with those weights dequantized to F32.
fn model_and_dequantized(
    spec: &Spec,
    mut make: impl FnMut(usize, &str, &[f32]) -> (GgmlType, Vec<u8>),
) -> (Model, Model) {
    use phiq::kernels::dynamic::dequantize;
    let mut quant: Vec<(TensorSpec, Vec<u8>)> = Vec::new();
    let mut f32s: Vec<(TensorSpec, Vec<u8>)> = Vec::new();
    let mut meta = Vec::new();
    write_model(spec, |m, tensors| {
        meta = m.clone();
        let mut k = 0;
        for (t, v) in tensors.iter() {
            let plain: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            if t.dims.len() < 2 {
                quant.push((t.clone(), plain.clone()));
                f32s.push((t.clone(), plain));
                continue;
            }
            let (ty, bytes) = make(k, &t.name, v);
            k += 1;
            let mut deq = vec![0f32; v.len()];
            dequantize(ty, &bytes, &mut deq).unwrap();
            quant.push((TensorSpec { ty, ..t.clone() }, bytes));
            f32s.push((
                t.clone(),
                deq.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ));
        }
    });
    let file = |tensors: &[(TensorSpec, Vec<u8>)]| {
        let specs: Vec<TensorSpec> = tensors.iter().map(|(t, _)| t.clone()).collect();
        let mut w = GgufWriter::new(Vec::new(), "model.gguf", &meta, &specs).unwrap();
        for (_, b) in tensors {
            w.write_data(b).unwrap();
        }
        w.finish().unwrap()
    };
    (
        load(file(&quant), 2, 512).unwrap(),
        load(file(&f32s), 2, 512).unwrap(),
    )
}

/// A prompt long enough for the tile GEMM (phiq_kernels::matmul::MIN_TILE_TOKENS, 16):
/// PROMPT twice and a bit.
fn long_prompt() -> Vec<u32> {
    PROMPT
        .iter()
        .chain(&PROMPT)
        .chain(&PROMPT[..2])
        .copied()
        .collect()
}

/// Largest |Δ logit| between a model and its dequantized-F32 twin over [`long_prompt`]
/// (evaluated as one batch: the tile GEMM), and the quantized model's logits.
fn deviation(pair: &(Model, Model)) -> (f32, Vec<f32>) {
    let prompt = long_prompt();
    assert!(prompt.len() >= phiq::kernels::matmul::MIN_TILE_TOKENS);
    let got = pair.0.session(64).unwrap().eval_all(&prompt).unwrap();
    let want = pair.1.session(64).unwrap().eval_all(&prompt).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    (worst, got)
}

/// Files with the IQ1–IQ3 types run: a model whose 2-D weights are random blocks of all
/// seven types gives the logits of the same model with those weights dequantized to F32,
/// up to the activations' rounding to 8 bits (Q8_K), which differs from F32 by no more
/// than it does for a Q4_K model of the same shape and weight spread (an established
/// path, tested against llama.cpp elsewhere); a batched prompt (the tile GEMM, decoding
/// each block once) and one token at a time (the dot path) agree to f32 noise.
#[test]
fn iq_types_run_and_equal_their_dequantized_model() {
    let spec = Spec {
        n_vocab: 300,
        n_embd: 256,
        n_ff: 512,
        n_layer: 2,
        n_head: 4,
        n_kv: 2,
        ty: GgmlType::F32,
    };
    let types = [
        GgmlType::IQ3_S,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ1_M,
        GgmlType::IQ3_S,
        GgmlType::IQ2_XXS,
        GgmlType::IQ3_XXS,
    ];
    let std_of = |name: &str| {
        if name == "token_embd.weight" {
            0.5
        } else {
            0.1
        }
    };
    let iq = model_and_dequantized(&spec, |k, name, v| {
        let ty = types[k];
        (ty, iq_blocks(ty, v.len(), 1000 + k as u64, std_of(name)))
    });
    // Q4_K from the same spread: uniform values of that standard deviation.
    let q4k = model_and_dequantized(&spec, |k, name, v| {
        let s = std_of(name) * 3f32.sqrt() / 0.2;
        let x: Vec<f32> = v.iter().map(|x| x * s).collect();
        let _ = k;
        let ty = if name == "token_embd.weight" {
            GgmlType::Q8_0
        } else {
            GgmlType::Q4_K
        };
        (ty, phiq::kernels::dynamic::quantize_to_vec(ty, &x).unwrap())
    });
    let (worst_iq, got) = deviation(&iq);
    let (worst_q4k, _) = deviation(&q4k);
    eprintln!("max |Δ logit| vs dequantized F32: IQ {worst_iq}, Q4_K {worst_q4k}");
    assert!(
        worst_iq > 0.0,
        "the IQ model must differ from F32 by the activations' rounding"
    );
    assert!(
        worst_iq <= 1.5 * worst_q4k,
        "IQ vs its F32 twin: {worst_iq}, Q4_K vs its own: {worst_q4k}"
    );
    // One token at a time (the dot path) against the batch (the tile GEMM). The two add
    // in different orders, so an activation can round to the neighbouring Q8_K step at the
    // next layer: not bit-equal, but within the activations' rounding, bounded here by the
    // same Q4_K deviation.
    let n_vocab = iq.0.n_vocab();
    let mut s = iq.0.session(64).unwrap();
    let mut worst = 0f32;
    for (t, &id) in long_prompt().iter().enumerate() {
        let logits = s.eval(&[id]).unwrap();
        for (a, b) in logits.iter().zip(&got[t * n_vocab..(t + 1) * n_vocab]) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("one token at a time vs the batch: max |Δ logit| {worst}");
    assert!(
        worst <= 1.5 * worst_q4k,
        "dot path vs tile GEMM: {worst} (Q4_K vs F32: {worst_q4k})"
    );
}

//! `phiq quantize`: tensor bytes equal gguf-py's quantizer for the types it implements,
//! K-quant presets load and stay close to transformers, and failures never leave a file
//! under the final name.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use phiq::gguf::GgufFile;

fn phiq(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phiq"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("phiq-quant-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn same_tensors(a: &Path, b: &Path) {
    let (fa, fb) = (GgufFile::open(a).unwrap(), GgufFile::open(b).unwrap());
    assert_eq!(fa.header.tensors.len(), fb.header.tensors.len());
    for t in &fa.header.tensors {
        let u = fb.tensor(&t.name).unwrap();
        assert_eq!((t.ty, &t.dims), (u.ty, &u.dims), "{}", t.name);
        assert!(
            fa.tensor_data(t).unwrap() == fb.tensor_data(u).unwrap(),
            "{}: bytes differ",
            t.name
        );
    }
}

#[test]
fn pure_legacy_types_equal_gguf_py() {
    let Some(dir) = tiny_models_dir() else { return };
    let f32 = dir.join("tiny-phi4-F32.gguf");
    for ty in ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16"] {
        let out = tmp(&format!("tiny-{ty}.gguf"));
        let (code, err) = phiq(&[
            "quantize",
            f32.to_str().unwrap(),
            out.to_str().unwrap(),
            ty,
            "--pure",
        ]);
        assert_eq!(code, 0, "{err}");
        // tools/tiny_models.py quantizes the same weights with gguf-py.
        same_tensors(&out, &dir.join(format!("tiny-phi4-{ty}.gguf")));
        let f = GgufFile::open(&out).unwrap();
        assert!(f.header.metadata.get("tokenizer.ggml.merges").is_some());
        std::fs::remove_file(out).unwrap();
    }
}

#[test]
fn k_quant_presets_run() {
    use phiq::{Model, ModelOptions};
    let Some(dir) = tiny_models_dir() else { return };
    let f32 = dir.join("tiny-phi4-F32.gguf");
    for preset in [
        "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_XS", "Q3_K_M", "Q2_K", "IQ4_NL",
    ] {
        let out = tmp(&format!("tiny-{preset}.gguf"));
        let (code, err) = phiq(&[
            "quantize",
            f32.to_str().unwrap(),
            out.to_str().unwrap(),
            preset,
        ]);
        assert_eq!(code, 0, "{preset}: {err}");
        let model = Model::load(&out, &ModelOptions::default()).unwrap();
        let ft = model
            .file
            .header
            .metadata
            .get_u32("general.file_type")
            .unwrap();
        assert_eq!(
            ft,
            phiq::quantize::Preset::from_name(preset).unwrap().file_type
        );
        let logits = model
            .session(8)
            .unwrap()
            .eval(&[100264, 882, 100266, 9906])
            .unwrap()
            .to_vec();
        assert!(logits.iter().all(|v| v.is_finite()), "{preset}");
        std::fs::remove_file(out).unwrap();
    }
}

#[test]
fn requantizing_needs_the_flag_and_failures_leave_no_file() {
    let Some(dir) = tiny_models_dir() else { return };
    let q8 = dir.join("tiny-phi4-Q8_0.gguf");
    let out = tmp("requant.gguf");
    let (code, err) = phiq(&[
        "quantize",
        q8.to_str().unwrap(),
        out.to_str().unwrap(),
        "Q4_0",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("already quantized") && err.contains("--allow-requantize"),
        "{err}"
    );
    assert!(!out.exists());
    let (code, err) = phiq(&[
        "quantize",
        q8.to_str().unwrap(),
        out.to_str().unwrap(),
        "Q4_0",
        "--allow-requantize",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.exists());
    std::fs::remove_file(&out).unwrap();
    let (code, err) = phiq(&[
        "quantize",
        q8.to_str().unwrap(),
        out.to_str().unwrap(),
        "Q9_9",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown quantization type 'Q9_9'"), "{err}");

    // Killed mid-run: the final name never appears (only OUT.tmp-PID may remain).
    let f32 = dir.join("tiny-phi4-F32.gguf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_phiq"))
        .args([
            "quantize",
            f32.to_str().unwrap(),
            out.to_str().unwrap(),
            "Q6_K",
            "-t",
            "1",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let _ = child.kill();
    let status = child.wait().unwrap();
    if !status.success() {
        assert!(!out.exists(), "a killed run left {}", out.display());
    }
}

/// llama.cpp's own output for the same presets (tools/compare_quantize.py, committed in
/// tests/fixtures/reference/llamacpp-quantize.json): every tensor's chosen type and the
/// sha256 of its bytes. phiq's file must hold the same types and bytes, and its KL
/// divergence against transformers must then be llama.cpp's (checked on tiny-phi4).
#[test]
fn presets_equal_llama_quantize() {
    use sha2::{Digest, Sha256};
    let Some(dir) = tiny_models_dir() else { return };
    let path = repo_root().join("tests/fixtures/reference/llamacpp-quantize.json");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for (key, run) in r["files"].as_object().unwrap() {
        let model = run["model"].as_str().unwrap();
        let preset = run["phiq_preset"].as_str().unwrap();
        let pure = run["pure"].as_bool().unwrap();
        let input = dir.join(format!("{model}-F32.gguf"));
        let out = tmp(&format!("{key}.gguf"));
        let mut args = vec![
            "quantize",
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            preset,
        ];
        if pure {
            args.push("--pure");
        }
        let (code, err) = phiq(&args);
        assert_eq!(code, 0, "{key}: {err}");
        let f = GgufFile::open(&out).unwrap();
        for (name, want) in run["tensors"].as_object().unwrap() {
            let t = f.tensor(name).unwrap();
            let ty = t.ty.unwrap().name();
            assert_eq!(ty, want["type"].as_str().unwrap(), "{key}: {name}: type");
            let hash: String = Sha256::digest(f.tensor_data(t).unwrap())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                hash,
                want["sha256"].as_str().unwrap(),
                "{key}: {name}: bytes differ from llama-quantize's"
            );
        }
        std::fs::remove_file(out).unwrap();
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `phiq quantize --imatrix` against `llama-quantize --imatrix` (tools/imatrix_ref.py,
/// tests/fixtures/reference/imatrix/): the same importance matrix files (GGUF and legacy
/// .dat, made by llama-imatrix on tiny-phi4), the same presets (K-quants, IQ4, legacy, and
/// every IQ1–IQ3 preset, mixed and pure); every tensor's type and bytes must equal
/// llama.cpp's. The reference also differs from llama.cpp's output without an imatrix
/// (llamacpp-quantize.json), so the weights demonstrably took effect. The runs without an
/// imatrix: phiq writes the same file where llama-quantize does (IQ3_S, IQ3_M) and refuses,
/// naming --imatrix and leaving no file, where it refuses.
#[test]
fn imatrix_presets_equal_llama_quantize() {
    let Some(dir) = tiny_models_dir() else { return };
    let refdir = repo_root().join("tests/fixtures/reference/imatrix");
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(refdir.join("llamacpp-imatrix-quantize.json")).unwrap(),
    )
    .unwrap();
    let plain: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root().join("tests/fixtures/reference/llamacpp-quantize.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for (name, want) in r["imatrix_sha256"].as_object().unwrap() {
        let got = sha256_hex(&std::fs::read(refdir.join(name)).unwrap());
        assert_eq!(
            got,
            want.as_str().unwrap(),
            "{name}: not the committed file"
        );
    }
    let input = dir.join("tiny-phi4-F32.gguf");
    let mut checked = 0;
    let mut refused = 0;
    let mut differs_from_plain = 0;
    for (key, run) in r["files"].as_object().unwrap() {
        let preset = run["preset"].as_str().unwrap();
        let pure = run["pure"].as_bool().unwrap();
        let imatrix = run["imatrix"].as_str().map(|f| refdir.join(f));
        let out = tmp(&format!("imatrix-{key}.gguf"));
        let mut args = vec![
            "quantize",
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            preset,
        ];
        if let Some(imatrix) = &imatrix {
            args.extend(["--imatrix", imatrix.to_str().unwrap()]);
        }
        if pure {
            args.push("--pure");
        }
        let extra = run["args"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap()));
        args.extend(extra.into_iter().flatten());
        let (code, err) = phiq(&args);
        if run["refused"].as_bool() == Some(true) {
            assert_ne!(code, 0, "{key}: llama-quantize refuses this, phiq wrote it");
            assert!(err.contains("--imatrix"), "{key}: {err}");
            assert!(!out.exists(), "{key}: an output file was left");
            refused += 1;
            continue;
        }
        assert_eq!(code, 0, "{key}: {err}");
        let f = GgufFile::open(&out).unwrap();
        let want_tensors = run["tensors"].as_object().unwrap();
        assert_eq!(f.header.tensors.len(), want_tensors.len(), "{key}");
        for (name, want) in want_tensors {
            let t = f.tensor(name).unwrap();
            assert_eq!(
                t.ty.unwrap().name(),
                want["type"].as_str().unwrap(),
                "{key}: {name}: type"
            );
            let hash = sha256_hex(f.tensor_data(t).unwrap());
            assert_eq!(
                hash,
                want["sha256"].as_str().unwrap(),
                "{key}: {name}: bytes differ from llama-quantize --imatrix"
            );
            // Same preset without an imatrix (when llamacpp-quantize.json has it).
            let plain_key = format!("tiny-phi4-{preset}{}", if pure { "-pure" } else { "" });
            if let Some(p) = plain["files"][&plain_key]["tensors"][name]["sha256"].as_str() {
                if p != hash && name.contains("blk.") {
                    differs_from_plain += 1;
                }
            }
        }
        let md = &f.header.metadata;
        let entries = md.get_u32("quantize.imatrix.entries_count").ok();
        assert_eq!(entries, imatrix.as_ref().map(|_| 9), "{key}");
        std::fs::remove_file(out).unwrap();
        checked += 1;
    }
    assert!(checked >= 34 && refused >= 8, "{checked} {refused}");
    assert!(differs_from_plain > 20, "{differs_from_plain}");
}

/// IQ2_XXS, IQ2_XS and IQ1_S cannot be quantized without importance weights (ggml asserts
/// them; llama-quantize aborts): a tensor the imatrix has no entry for (token_embd.weight
/// under --pure), or an --output-tensor-type of one of them without --imatrix, is an error
/// naming the tensor, before any work, with no file left.
#[test]
fn iq_types_without_importance_weights_are_refused() {
    let Some(dir) = tiny_models_dir() else { return };
    let input = dir.join("tiny-phi4-F32.gguf");
    let imatrix = repo_root().join("tests/fixtures/reference/imatrix/tiny-phi4.imatrix.gguf");
    let out = tmp("iq-refused.gguf");
    let runs: [&[&str]; 3] = [
        &["IQ2_XXS", "--pure", "--imatrix", imatrix.to_str().unwrap()],
        &["IQ1_S", "--pure", "--imatrix", imatrix.to_str().unwrap()],
        &["Q4_K_M", "--output-tensor-type", "iq2_xs"],
    ];
    for extra in runs {
        let mut args = vec!["quantize", input.to_str().unwrap(), out.to_str().unwrap()];
        args.extend(extra);
        let (code, err) = phiq(&args);
        assert_ne!(code, 0, "{extra:?}");
        let tensor = if extra[0] == "Q4_K_M" {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        assert!(
            err.contains(tensor) && err.contains("importance"),
            "{extra:?}: {err}"
        );
        assert!(!out.exists(), "{extra:?}");
    }
}

/// Malformed importance matrices: a clear error naming the file (and offset or entry), no
/// panic, no output file.
#[test]
fn malformed_imatrix_files_are_refused() {
    let Some(dir) = tiny_models_dir() else { return };
    let input = dir.join("tiny-phi4-F32.gguf");
    let good =
        std::fs::read(repo_root().join("tests/fixtures/reference/imatrix/tiny-phi4.imatrix.dat"))
            .unwrap();
    let gguf =
        std::fs::read(repo_root().join("tests/fixtures/reference/imatrix/tiny-phi4.imatrix.gguf"))
            .unwrap();
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "byte 0"),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "file truncated",
        ),
        (
            "zero entries",
            0i32.to_le_bytes().to_vec(),
            "not an importance matrix",
        ),
        (
            "huge count",
            i32::MAX.to_le_bytes().to_vec(),
            "not an importance matrix",
        ),
        ("gguf truncated", gguf[..gguf.len() - 100].to_vec(), "byte"),
    ];
    // A name length that runs past the end.
    let mut bad_len = good.clone();
    bad_len[4..8].copy_from_slice(&1_000_000i32.to_le_bytes());
    cases.push(("name length", bad_len, "name length"));
    // A value count beyond the file.
    let name_len = i32::from_le_bytes(good[4..8].try_into().unwrap()) as usize;
    let mut bad_nval = good.clone();
    let at = 8 + name_len + 4;
    bad_nval[at..at + 4].copy_from_slice(&100_000_000i32.to_le_bytes());
    cases.push(("value count", bad_nval, "values"));
    // A NaN in the weights.
    let mut nan = good.clone();
    nan[at + 4..at + 8].copy_from_slice(&f32::NAN.to_le_bytes());
    cases.push(("nan", nan, "non-finite"));
    // The wrong model: an entry whose size differs from the tensor's row length.
    let mut other = good.clone();
    let nval = i32::from_le_bytes(good[at..at + 4].try_into().unwrap()) as usize;
    other.splice(at + 4 + 4 * (nval / 2)..at + 4 + 4 * nval, []);
    other[at..at + 4].copy_from_slice(&((nval / 2) as i32).to_le_bytes());
    cases.push(("other model", other, "of another model"));
    for (what, bytes, want) in cases {
        let path = tmp(&format!("bad-{}.imatrix", what.replace(' ', "-")));
        std::fs::write(&path, &bytes).unwrap();
        let out = tmp("bad-imatrix-out.gguf");
        let (code, err) = phiq(&[
            "quantize",
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "Q4_K_M",
            "--imatrix",
            path.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{what}: {err}");
        assert!(
            err.contains(path.to_str().unwrap()) || err.contains("importance matrix entry"),
            "{what}: {err}"
        );
        assert!(err.contains(want), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(!out.exists(), "{what}");
        std::fs::remove_file(path).unwrap();
    }
}

/// Checked before any work: an output that is a directory or in a directory that does not
/// exist, and the input itself (unless --force). Numeric type ids are llama-quantize's.
#[test]
fn output_path_checked_first_and_numeric_types() {
    let Some(dir) = tiny_models_dir() else { return };
    let f32 = dir.join("tiny-phi4-F32.gguf");
    let d = tmp("outdir");
    std::fs::create_dir_all(&d).unwrap();
    let (code, err) = phiq(&[
        "quantize",
        f32.to_str().unwrap(),
        d.to_str().unwrap(),
        "Q8_0",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("is a directory"), "{err}");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    assert!(
        std::fs::read_dir(d.parent().unwrap()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("outdir.tmp-")),
        "a temporary file was left"
    );
    let nodir = d.join("no/such/dir/out.gguf");
    let (code, err) = phiq(&[
        "quantize",
        f32.to_str().unwrap(),
        nodir.to_str().unwrap(),
        "Q8_0",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");

    // OUT = IN: refused (also through another spelling of the path), or replaced with --force.
    let copy = tmp("self.gguf");
    std::fs::copy(&f32, &copy).unwrap();
    let other_spelling = copy.parent().unwrap().join(".").join("self.gguf");
    let (code, err) = phiq(&[
        "quantize",
        copy.to_str().unwrap(),
        other_spelling.to_str().unwrap(),
        "Q8_0",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("is the input file") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&copy).unwrap().len(),
        std::fs::metadata(&f32).unwrap().len()
    );
    // `7` is llama-quantize's number for Q8_0; `8` is ggml's id of q8_0 for a tensor type.
    let (code, err) = phiq(&[
        "quantize",
        copy.to_str().unwrap(),
        copy.to_str().unwrap(),
        "7",
        "--force",
        "--pure",
        "--output-tensor-type",
        "8",
    ]);
    assert_eq!(code, 0, "{err}");
    // The replaced file is gguf-py's Q8_0 of the same weights.
    same_tensors(&copy, &dir.join("tiny-phi4-Q8_0.gguf"));
    // The summary gives both files' sizes as they are on disk.
    let out_mib = format!(
        "{:.1} MiB",
        std::fs::metadata(&copy).unwrap().len() as f64 / 1048576.0
    );
    let in_mib = format!(
        "{:.1} MiB",
        std::fs::metadata(&f32).unwrap().len() as f64 / 1048576.0
    );
    assert!(err.contains(&out_mib) && err.contains(&in_mib), "{err}");
    assert!(err.contains("bits/weight"), "{err}");
    std::fs::remove_file(&copy).unwrap();
    let (code, err) = phiq(&["quantize", f32.to_str().unwrap(), "x.gguf", "99"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("unknown quantization type id 99") && err.contains("15 Q4_K_M"),
        "{err}"
    );
}

/// The demo model (hidden 128, tied output): Q4_K's 256-weight blocks do not fit its rows,
/// so llama-quantize's fallback applies and is said; a token-embedding type is overridden by
/// the tied output, and that is said too.
#[test]
fn fallbacks_and_ineffective_options_are_said() {
    let demo = repo_root().join("models/phiq-demo.gguf");
    let out = tmp("demo-q4km.gguf");
    let (code, err) = phiq(&[
        "quantize",
        demo.to_str().unwrap(),
        out.to_str().unwrap(),
        "Q4_K_M",
        "--allow-requantize",
        "--token-embedding-type",
        "q8_0",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("rows of 128 are not a multiple of Q4_K's 256-weight blocks: using Q5_0"),
        "{err}"
    );
    assert!(
        err.contains("--token-embedding-type Q8_0 has no effect"),
        "{err}"
    );
    let f = GgufFile::open(&out).unwrap();
    let t = f.tensor("blk.0.attn_output.weight").unwrap();
    assert_eq!(t.type_name(), "Q5_0");
    std::fs::remove_file(out).unwrap();
}

/// SIGINT or SIGTERM in the middle: exit status 130, no OUT and no OUT.tmp-PID left.
#[cfg(unix)]
#[test]
fn interrupt_leaves_no_file() {
    use phiq::gguf::{GgufWriter, TensorSpec, Value};
    use phiq::kernels::GgmlType;
    // A file big enough that quantizing it takes a while: 4 tensors of 4096 x 1024 F32.
    let input = tmp("big-f32.gguf");
    {
        let specs: Vec<TensorSpec> = (0..4)
            .map(|i| TensorSpec {
                name: format!("blk.{i}.ffn_down.weight"),
                dims: vec![4096, 1024],
                ty: GgmlType::F32,
            })
            .collect();
        let md = vec![
            (
                "general.architecture".to_string(),
                Value::String("phi3".into()),
            ),
            ("phi3.block_count".to_string(), Value::U32(4)),
        ];
        let f = std::fs::File::create(&input).unwrap();
        let mut w = GgufWriter::new(std::io::BufWriter::new(f), &input, &md, &specs).unwrap();
        let row: Vec<u8> = (0..4096)
            .flat_map(|i| (0.1 + 2.0 * (i as f32).cos()).to_le_bytes())
            .collect();
        for _ in 0..4 * 1024 {
            w.write_data(&row).unwrap();
        }
        w.finish().unwrap();
    }
    for signal in ["INT", "TERM"] {
        let out = tmp(&format!("interrupted-{signal}.gguf"));
        let child = Command::new(env!("CARGO_BIN_EXE_phiq"))
            .args([
                "quantize",
                input.to_str().unwrap(),
                out.to_str().unwrap(),
                "Q3_K_S",
                "-t",
                "1",
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let tmp_name = format!("interrupted-{signal}.gguf.tmp-{}", child.id());
        let tmp_path = out.with_file_name(&tmp_name);
        // Wait until the work has started (the temporary file exists), then interrupt.
        let start = std::time::Instant::now();
        while !tmp_path.exists() && start.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            // Finished before the signal landed: nothing to check about cleanup.
            eprintln!("quantize finished before SIG{signal}");
            std::fs::remove_file(&out).unwrap();
            continue;
        }
        assert_eq!(output.status.code(), Some(130), "SIG{signal}: {err}");
        assert!(err.contains("interrupted"), "{err}");
        assert!(!out.exists(), "SIG{signal} left {}", out.display());
        assert!(
            !tmp_path.exists(),
            "SIG{signal} left {}",
            tmp_path.display()
        );
    }
    std::fs::remove_file(input).unwrap();
}

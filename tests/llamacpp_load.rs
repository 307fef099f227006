//! llama.cpp loads and evaluates what `phiq quantize` writes (optional: needs a Python with
//! llama-cpp-python, named by `PHIQ_LLAMACPP_PYTHON`; skipped with a message otherwise).
//!
//! For each preset, phiq quantizes tiny-phi4-F32 and tools/llamacpp_load.py has llama.cpp
//! quantize the same input itself, loads both files through llama-cpp-python and evaluates the
//! same ids: phiq's file must load and give logits equal to those of llama.cpp's own file.

mod common;

use std::process::Command;

use common::*;

#[test]
fn llama_cpp_evaluates_phiq_quantized_files() {
    let Some(py) = std::env::var_os("PHIQ_LLAMACPP_PYTHON") else {
        eprintln!("SKIPPED: set PHIQ_LLAMACPP_PYTHON to a Python with llama-cpp-python to check that llama.cpp loads phiq's files");
        return;
    };
    let ok = Command::new(&py)
        .args(["-c", "import llama_cpp, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "SKIPPED: {} cannot import llama_cpp and numpy",
            py.to_string_lossy()
        );
        return;
    }
    let Some(dir) = tiny_models_dir() else { return };
    let src = dir.join("tiny-phi4-F32.gguf");
    let tmp = std::env::temp_dir().join(format!("phiq-llamacpp-load-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for (preset, pure) in [
        ("Q4_K_M", false),
        ("Q6_K", false),
        ("IQ4_XS", false),
        ("Q2_K", false),
        ("Q4_0", true),
        ("Q5_1", true),
    ] {
        let out = tmp.join(format!("{preset}.gguf"));
        let mut args = vec![
            "quantize",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            preset,
        ];
        if pure {
            args.push("--pure");
        }
        let (code, _, err) = run_phiq(&args);
        assert_eq!(code, 0, "{preset}: {err}");
        let mut cmd = Command::new(&py);
        cmd.arg(repo_root().join("tools/llamacpp_load.py"))
            .arg(&src)
            .arg(&out)
            .arg(preset);
        if pure {
            cmd.arg("--pure");
        }
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "{preset}: llama.cpp failed on phiq's file:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
        eprintln!("{preset}{}: {r}", if pure { " --pure" } else { "" });
        assert_eq!(r["loaded"], true);
        assert_eq!(r["n_positions"], 10);
        assert_eq!(r["finite"], true, "{preset}");
        // Identical tensor bytes: llama.cpp computes the very same logits from both files.
        assert_eq!(r["max_abs_diff"].as_f64().unwrap(), 0.0, "{preset}: {r}");
        std::fs::remove_file(out).unwrap();
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

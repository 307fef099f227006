//! `phiq inspect` end to end: text and JSON output, and errors as one or two lines.

mod common;

use common::*;

fn phiq(args: &[&str]) -> (i32, String, String) {
    run_phiq(args)
}

#[test]
fn inspect_text_and_json() {
    let dir = std::env::temp_dir().join(format!("phiq-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sample.gguf");
    let (bytes, _) = sample_file();
    std::fs::write(&path, &bytes).unwrap();
    let p = path.to_str().unwrap();

    let (code, out, _) = phiq(&["inspect", p, "--tensors"]);
    assert_eq!(code, 0);
    assert!(out.contains("architecture:  phi3"), "{out}");
    assert!(out.contains("q4k.weight") && out.contains("Q4_K"), "{out}");
    assert!(out.contains("type mix:"), "{out}");
    // Long arrays are summarised unless --kv.
    assert!(out.contains("[43 × INT32]") && out.contains('…'), "{out}");
    let (_, full, _) = phiq(&["inspect", p, "--kv"]);
    assert!(full.contains(", 39]"), "{full}");

    let (code, out, _) = phiq(&["inspect", p, "--json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["version"], 3);
    assert_eq!(j["file_size"], bytes.len() as u64);
    assert_eq!(j["metadata"]["test.arr_i32"]["type"], "INT32");
    assert_eq!(j["metadata"]["test.arr_i32"]["len"], 43);
    assert_eq!(j["metadata"]["test.arr_i32"]["head"][0], -3);
    assert_eq!(j["metadata"]["test.u64"], u64::MAX);
    let t = &j["tensors"][4];
    assert_eq!(t["name"], "q4k.weight");
    assert_eq!(t["type"], "Q4_K");
    assert_eq!(t["shape"], serde_json::json!([256, 2]));
    let total: u64 = sample_tensors()
        .iter()
        .map(|s| s.dims.iter().product::<u64>())
        .sum();
    assert_eq!(j["n_params"], total);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_are_short_and_exit_non_zero() {
    let dir = std::env::temp_dir().join(format!("phiq-cli-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("model.gguf");
    std::fs::write(&html, "<!doctype html><html>Not Found</html>").unwrap();
    let (code, out, err) = phiq(&["inspect", html.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("not a GGUF file") && err.contains("HTML"),
        "{err}"
    );
    assert!(err.lines().count() <= 2, "{err}");

    let (bytes, _) = sample_file();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let (code, _, err) = phiq(&["inspect", cut.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("file truncated") && err.contains("cut.gguf"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && err.lines().count() <= 2,
        "{err}"
    );

    let (code, _, err) = phiq(&["inspect", dir.join("missing.gguf").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.gguf"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

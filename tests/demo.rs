//! The demo model shipped in models/: greedy generation equals transformers' greedy
//! generation of the same weights (tests/fixtures/reference/demo-greedy.json, made by
//! tools/train_demo.py), token for token, through the library and through `phiq run` —
//! the README's first command.

mod common;

use common::*;
use phiq::{Model, ModelOptions};
use serde_json::Value;

fn reference() -> Value {
    let path = repo_root().join("tests/fixtures/reference/demo-greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn demo_greedy_equals_transformers() {
    let model = Model::load(
        repo_root().join("models/phiq-demo.gguf"),
        &ModelOptions::default(),
    )
    .expect("the demo model ships in models/");
    let r = reference();
    let cases = r["greedy"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let prompt = ids(&case["prompt_ids"]);
        let want = ids(&case["new_ids"]);
        assert!(want.len() >= 64);
        // The tokenizer agrees with the reference's tokenization of the prompt.
        let tok = model.tokenizer().unwrap();
        assert_eq!(
            tok.encode(case["prompt"].as_str().unwrap(), true, false),
            prompt
        );
        let got = greedy_ids(&model, &prompt, want.len());
        assert_eq!(got, want, "prompt {:?}", case["prompt"]);
        assert_eq!(tok.decode(&got).unwrap(), case["text"].as_str().unwrap());
    }
}

#[test]
fn readme_first_command_continues_the_text() {
    let r = reference();
    let case = &r["greedy"][0];
    let prompt = case["prompt"].as_str().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phiq"))
        .current_dir(repo_root())
        .args(["run", "-p", prompt, "-n", "48", "--temp", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let want = case["text"].as_str().unwrap();
    // 48 of the reference's greedy tokens (it stops earlier only at an end-of-text token).
    let n = text.trim_end_matches('\n').len();
    assert!(n > 20, "{text:?}");
    assert_eq!(
        &text[..n],
        &want[..n],
        "phiq run output is not the reference continuation"
    );
}

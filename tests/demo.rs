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
    let out = common::phiq_cmd()
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

#[test]
fn logits_from_text_predict_the_reference_token() {
    let r = reference();
    let case = &r["greedy"][0];
    let npy = std::env::temp_dir().join(format!("phiq-demo-logits-{}.npy", std::process::id()));
    let (code, _, err) = run_phiq(&[
        "logits",
        "-m",
        repo_root().join("models/phiq-demo.gguf").to_str().unwrap(),
        "-p",
        case["prompt"].as_str().unwrap(),
        "-o",
        npy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&npy).unwrap();
    std::fs::remove_file(&npy).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let data: Vec<f32> = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let n_prompt = ids(&case["prompt_ids"]).len();
    assert_eq!(data.len(), n_prompt * 100352);
    let last = &data[(n_prompt - 1) * 100352..];
    let argmax = last
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0;
    assert_eq!(argmax as u32, ids(&case["new_ids"])[0]);
}

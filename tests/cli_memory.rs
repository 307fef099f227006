//! What fits: `phiq inspect --memory` accounts for the KV cache as the model's shapes
//! dictate, run's context shrinks to the available memory or the request is refused with
//! what would fit, and the scratch the account assumes bounds the heap the OS measures.

mod common;

use std::process::Command;

use common::*;

fn demo() -> String {
    repo_root()
        .join("models/phiq-demo.gguf")
        .display()
        .to_string()
}

/// `phiq ARGS` with `$PHIQ_MEM_AVAILABLE` set (or unset): (exit code, stdout, stderr).
fn phiq_with_memory(avail: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phiq"));
    cmd.args(args);
    match avail {
        Some(a) => cmd.env("PHIQ_MEM_AVAILABLE", a),
        None => cmd.env_remove("PHIQ_MEM_AVAILABLE"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn memory_json(args: &[&str]) -> serde_json::Value {
    let m = demo();
    let mut all = vec!["inspect", m.as_str(), "--memory", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = phiq_with_memory(Some("16G"), &all);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The demo model's shapes as its metadata states them (independent of phiq's loader):
/// 4 layers, 2 KV heads of 32 values, context length 512.
const LAYERS: u64 = 4;
const KV_DIM: u64 = 2 * 32;

#[test]
fn kv_cache_sizes_follow_the_shapes_and_block_formats() {
    let v = memory_json(&["-c", "512", "-ctk", "q8_0", "-ctv", "q4_0"]);
    assert_eq!(v["n_ctx_train"], 512);
    let values = LAYERS * 512 * KV_DIM;
    // f16: 2 bytes a value; q8_0: 34 bytes per 32; q4_0: 18 bytes per 32 (ggml's blocks).
    assert_eq!(v["kv_cache"], values * 34 / 32 + values * 18 / 32);
    let rows = v["kv_cache_by_context"].as_array().unwrap();
    let at512 = rows.iter().find(|r| r["n_ctx"] == 512).unwrap();
    assert_eq!(at512["f16/f16"], 2 * values * 2);
    assert_eq!(at512["f32/f32"], 2 * values * 4);
    assert_eq!(at512["q4_0/q4_0"], 2 * values * 18 / 32);
    let total = v["weights"].as_u64().unwrap()
        + v["kv_cache"].as_u64().unwrap()
        + v["scratch"].as_u64().unwrap();
    assert_eq!(v["total"], total);
    assert_eq!(v["fits"], true);
    // Two slots: twice the cache.
    let two = memory_json(&["-c", "512", "--parallel", "2"]);
    let one = memory_json(&["-c", "512"]);
    assert_eq!(two["kv_cache"], 2 * one["kv_cache"].as_u64().unwrap());
}

#[test]
fn a_context_that_does_not_fit_shrinks_or_is_refused_with_what_fits() {
    let m = demo();
    let need = memory_json(&["-c", "512"])["total"].as_u64().unwrap();
    let short = (need - 1).to_string();
    let run = |avail: &str, extra: &[&str]| {
        let mut args = vec!["run", "-m", m.as_str(), "-p", "Alice was", "-n", "4"];
        args.extend_from_slice(&["--temp", "0"]);
        args.extend_from_slice(extra);
        phiq_with_memory(Some(avail), &args)
    };
    // An explicit -c that does not fit: an error naming the need, the room and a fix.
    let (code, out, err) = run(&short, &["-c", "512"]);
    assert!(code != 0 && out.is_empty(), "{err}");
    assert!(
        err.contains("-c 512 needs")
            && err.contains("$PHIQ_MEM_AVAILABLE")
            && err.contains("-ctk q8_0 -ctv q8_0")
            && err.contains(" or -c 256")
            && err.contains("--fit off"),
        "{err}"
    );
    // No -c (the default, the model's 512 here) and -c 0: the largest context that fits.
    for extra in [&[][..], &["-c", "0"][..]] {
        let (code, out, err) = run(&short, extra);
        assert!(code == 0 && !out.is_empty(), "{err}");
        assert!(err.contains("context 256 tokens, not 512"), "{err}");
    }
    // --fit off starts anyway; enough memory says nothing.
    let (code, _, err) = run(&short, &["-c", "512", "--fit", "off"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&need.to_string(), &["-c", "512"]);
    assert!(code == 0 && !err.contains("fits"), "{err}");
    // A smaller cache type is suggested where it fits and the context does not: with
    // the cache the larger part of the account (f32 keys and values, 2 slots).
    let v = memory_json(&["-c", "512", "-ctk", "f32", "-ctv", "f32", "--parallel", "2"]);
    let room = v["total"].as_u64().unwrap() - v["kv_cache"].as_u64().unwrap() / 2;
    let (code, out, _) = phiq_with_memory(
        Some(&room.to_string()),
        &[
            "inspect",
            &m,
            "--memory",
            "-c",
            "512",
            "--cache-type",
            "f32",
            "--parallel",
            "2",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("does not fit") && out.contains("-ctk q8_0 -ctv q8_0"),
        "{out}"
    );
    // A bad size is an error naming the variable.
    let (code, _, err) = run("lots", &[]);
    assert!(
        code != 0 && err.contains("PHIQ_MEM_AVAILABLE=lots"),
        "{err}"
    );
}

/// The scratch in the account is a bound on what the OS measures: after a full 512-token
/// batch, RssAnon (the heap: weights are file-backed) ≤ KV cache + scratch.
#[test]
fn measured_heap_stays_within_the_account() {
    let m = demo();
    let v = memory_json(&["-c", "512"]);
    let bound = v["kv_cache"].as_u64().unwrap() + v["scratch"].as_u64().unwrap();
    let prompt =
        "Alice was beginning to get very tired of sitting by her sister on the bank. ".repeat(25);
    let (code, _, err) = phiq_with_memory(
        None,
        &["run", "-m", &m, "-p", &prompt, "-n", "2", "-c", "512", "-v"],
    );
    assert_eq!(code, 0, "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("RssAnon"))
        .unwrap_or_else(|| panic!("no memory line: {err}"));
    let mib = line
        .split("RssAnon ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        mib << 20 <= bound,
        "RssAnon {mib} MiB > KV cache + scratch {} MiB: {line}",
        bound >> 20
    );
}

/// The demo model was trained on 512 positions: `-c 700` is refused, naming the flag that
/// allows it; with `--ctx-beyond-training` a prompt and answer that run past position 512
/// complete, with a note saying what to expect. (That the positions beyond compute as
/// transformers does is `forward_reference`'s
/// `context_beyond_training_is_refused_unless_asked_and_then_equals_transformers`.)
#[test]
fn a_context_past_training_needs_the_flag() {
    let m = demo();
    let prompt = "the cat sat on the mat and ".repeat(70);
    let args = [
        "run", "-m", &m, "-c", "700", "-p", &prompt, "-n", "40", "--temp", "0",
    ];
    let (code, _, err) = phiq_with_memory(Some("16G"), &args);
    assert_ne!(code, 0);
    assert!(
        err.contains("training context length, 512 tokens")
            && err.contains("--ctx-beyond-training"),
        "{err}"
    );
    let mut with = args.to_vec();
    with.extend(["--ctx-beyond-training", "--ignore-eos"]);
    let (code, _, err) = phiq_with_memory(Some("16G"), &with);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("goes past the 512 tokens this model was trained on"),
        "{err}"
    );
    // The prompt's tokens and the 40 generated ones end past position 512.
    let n_prompt: usize = err
        .split("prompt eval")
        .nth(1)
        .and_then(|s| s.split('/').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no prompt token count in {err}"));
    assert!(err.contains("/    40 tokens"), "{err}");
    assert!(
        n_prompt + 40 > 512 && n_prompt < 512,
        "prompt of {n_prompt} tokens"
    );
}

//! `phiq tokenize` / `phiq detokenize` as a user runs them.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn phi4_vocab() -> PathBuf {
    common::shared_fixtures().join("vocab/ggml-vocab-phi-4.gguf")
}

fn phiq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phiq"))
        .args(args)
        .output()
        .expect("run phiq")
}

/// `phiq ARGS` with `input` on standard input.
fn phiq_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_phiq"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run phiq");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "phiq failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn tokenize_ids_is_exactly_one_json_array() {
    let v = phi4_vocab();
    let v = v.to_str().unwrap();
    let o = phiq(&["tokenize", "-m", v, "--ids", "Hello, world"]);
    assert_eq!(stdout(&o), "[9906, 11, 1917]\n");
    assert!(o.stderr.is_empty());
    // Control-token text is plain text unless --special.
    let plain = stdout(&phiq(&["tokenize", "-m", v, "--ids", "<|im_end|>"]));
    assert_ne!(plain, "[100265]\n");
    let special = stdout(&phiq(&[
        "tokenize",
        "-m",
        v,
        "--ids",
        "--special",
        "<|im_end|>",
    ]));
    assert_eq!(special, "[100265]\n");
    // Empty text: an empty array.
    assert_eq!(stdout(&phiq(&["tokenize", "-m", v, "--ids", ""])), "[]\n");
}

#[test]
fn tokenize_file_bytes_exactly() {
    let dir = std::env::temp_dir().join(format!("phiq-cli-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("prompt.txt");
    std::fs::write(&text, "a\nb\n\n").unwrap();
    let v = phi4_vocab();
    let v = v.to_str().unwrap();
    let o = phiq(&[
        "tokenize",
        "-m",
        v,
        "--ids",
        "--file",
        text.to_str().unwrap(),
    ]);
    // The trailing newlines are kept: "a", "\n", "b", "\n\n".
    assert_eq!(stdout(&o), "[64, 198, 65, 271]\n");

    let bad = dir.join("bad.txt");
    std::fs::write(&bad, b"ok\xff").unwrap();
    let o = phiq(&[
        "tokenize",
        "-m",
        v,
        "--ids",
        "--file",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not valid UTF-8") && err.contains("offset 2"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn pieces_and_detokenize() {
    let v = phi4_vocab();
    let v = v.to_str().unwrap();
    let o = stdout(&phiq(&["tokenize", "-m", v, "--pieces", "Hello world"]));
    assert_eq!(o, "   9906 \"Hello\"\n   1917 \" world\"\n");
    let o = phiq(&["detokenize", "-m", v, "[9906, 11, 1917]"]);
    assert_eq!(
        stdout(&o),
        "Hello, world",
        "exact bytes when not a terminal"
    );
    let o = phiq(&["detokenize", "-m", v, "9906", "100265"]);
    assert_eq!(stdout(&o), "Hello");
    let o = phiq(&["detokenize", "-m", v, "--special", "9906", "100265"]);
    assert_eq!(stdout(&o), "Hello<|im_end|>");
    // What `tokenize --ids` prints, piped in: `tokenize --ids TEXT | detokenize`.
    let o = phiq_stdin(&["detokenize", "-m", v], "[9906, 11, 1917]\n");
    assert_eq!(stdout(&o), "Hello, world");
    let o = phiq_stdin(&["detokenize", "-m", v], "");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no token ids"));
    let o = phiq(&["detokenize", "-m", v, "9906", "100352"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("token id 100352 is out of range"), "{err}");
}

/// Every subcommand finds its model the same way: `-m FILE`, else `$PHIQ_MODEL`, else the
/// demo model; `tokenize -f` is `--file`; `inspect` takes the file as `-m` too.
#[test]
fn model_from_env_and_short_flags() {
    let v = phi4_vocab();
    let with_env = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_phiq"))
            .args(args)
            .env("PHIQ_MODEL", &v)
            .output()
            .unwrap()
    };
    assert_eq!(
        stdout(&with_env(&["tokenize", "--ids", "Hello, world"])),
        "[9906, 11, 1917]\n"
    );
    assert_eq!(
        stdout(&with_env(&["detokenize", "9906", "11", "1917"])),
        "Hello, world"
    );
    let text = std::env::temp_dir().join(format!("phiq-tok-f-{}.txt", std::process::id()));
    std::fs::write(&text, "Hello, world").unwrap();
    let o = with_env(&["tokenize", "--ids", "-f", text.to_str().unwrap()]);
    std::fs::remove_file(&text).unwrap();
    assert_eq!(stdout(&o), "[9906, 11, 1917]\n");
    let by_flag = stdout(&phiq(&["inspect", "-m", v.to_str().unwrap()]));
    let positional = stdout(&phiq(&["inspect", v.to_str().unwrap()]));
    assert_eq!(by_flag, positional);
    assert_eq!(stdout(&with_env(&["inspect"])), positional);
}
